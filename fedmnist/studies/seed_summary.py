"""One scenario over several seeds: every curve kept, mean ± std, rounds to each target, paired comparisons.

Owns resumen.json: writes it, with resumen.png, beside the per-seed folders (semilla_<s>/simulacion.json and
the centralized baseline's centralizado.json), and reads it back validated.
Accuracies are in percent; std is the sample standard deviation (n − 1). Two
strategies are compared on the same seeds, hence the same partitions, initial
weights and sampled clients: the paired differences of their final accuracies
give a mean, a 95 % t-interval and the paired t-test's p-value.
"""

import itertools
import json

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import FuncFormatter, MaxNLocator
from scipy import stats

from fedmnist.defaults import ACCURACY_TARGETS
from fedmnist.evaluation import legend_below, log_axis, write_json_and_figures
from fedmnist.strategies import label_of
from fedmnist.studies import StudyError
from fedmnist.studies.significance import VERDICT_WORDS, compare_family, oriented

SUMMARY_FILE, SUMMARY_FIGURE = "resumen.json", "resumen.png"
VERDICT_FIGURE = "veredictos.png"  # beside a tuned study's summary: every strategy against FedAvg


class SummaryError(StudyError):
    """A resumen.json that is not a summary over seeds; the message names it and the command that rewrites it."""


def mean_std(values):
    values = np.asarray(values, dtype=np.float64)
    return {
        "mean": round(float(values.mean()), 2),
        "std": round(float(values.std(ddof=1)), 2) if len(values) > 1 else None,
        "values": [round(float(v), 2) for v in values],
    }


def paired(a, b):
    """a − b over the same seeds: mean, the 95 % t-interval and the paired t-test's p-value (points)."""
    differences = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    n = len(differences)
    mean = float(differences.mean())
    if n < 2 or np.all(differences == differences[0]):
        return {"mean": round(mean, 2), "ci95": [round(mean, 2), round(mean, 2)], "p_value": None, "n": n}
    half = float(stats.t.ppf(0.975, n - 1) * differences.std(ddof=1) / np.sqrt(n))
    p_value = float(stats.ttest_rel(a, b).pvalue)
    return {
        "mean": round(mean, 2),
        "ci95": [round(mean - half, 2), round(mean + half, 2)],
        "p_value": round(p_value, 4),
        "n": n,
    }


def strategy_summary(runs, name):
    curves = [[100 * row["accuracy"] for row in run["history"][name]] for run in runs]
    rounds = min(len(curve) for curve in curves)
    stacked = np.array([curve[:rounds] for curve in curves])
    drift = [
        [row["drift"]["mean_client_distance"] if row.get("drift") else np.nan for row in run["history"][name][:rounds]]
        for run in runs
    ]
    return {
        "label": label_of(name),
        "final_accuracy": mean_std(stacked[:, -1]),
        "last_5_rounds_accuracy": mean_std(stacked[:, -5:].mean(axis=1)),
        **{
            f"rounds_to_{int(100 * t)}": [run["summary"][name][f"rounds_to_{int(100 * t)}"] for run in runs]
            for t in ACCURACY_TARGETS
        },
        "curve_mean": [round(float(v), 2) for v in stacked.mean(axis=0)],
        "curve_std": [round(float(v), 2) for v in stacked.std(axis=0, ddof=1)] if len(runs) > 1 else None,
        "curves": [[round(v, 2) for v in curve] for curve in stacked.tolist()],
        "drift_mean": [round(float(v), 4) for v in np.nanmean(np.array(drift, np.float64), axis=0)],
        "seconds": [run["summary"][name]["seconds"] for run in runs],
    }


def baseline_summary(baselines):
    """The centralized baseline over the seeds: final accuracy, and the curve by equivalent round."""
    curves = np.array([[100 * row["accuracy"] for row in baseline["epochs"]] for baseline in baselines])
    return {
        "label": "centralizado",
        "epochs": baselines[0]["config"]["epochs"],
        "final_accuracy": mean_std(curves[:, -1]),
        "equivalent_rounds": [row["equivalent_round"] for row in baselines[0]["epochs"]],
        "curve_mean": [round(float(v), 2) for v in curves.mean(axis=0)],
        "curve_std": [round(float(v), 2) for v in curves.std(axis=0, ddof=1)] if len(baselines) > 1 else None,
        "seconds": [baseline["seconds"] for baseline in baselines],
    }


def summarize_runs(runs, label, baselines=()):
    """The summary of finished runs of one scenario, one per seed, with the same strategies (and baselines)."""
    names = runs[0]["config"]["strategies"]
    config = {k: v for k, v in runs[0]["config"].items() if k not in ("seed", "partition_seed", "data")}
    summary = {
        "label": label,
        "config": {**config, "seeds": [run["config"]["seed"] for run in runs], "rounds": runs[0]["rounds_completed"]},
        "strategies": {name: strategy_summary(runs, name) for name in names},
    }
    finals = {name: summary["strategies"][name]["final_accuracy"]["values"] for name in names}
    summary["paired_final_accuracy"] = {
        f"{a} - {b}": paired(finals[a], finals[b]) for a, b in itertools.combinations(names, 2)
    }
    if baselines and all(baselines):
        summary["centralized"] = baseline_summary(baselines)
        central = summary["centralized"]["final_accuracy"]["values"]
        summary["paired_final_accuracy"].update(
            {f"{name} - centralized": paired(finals[name], central) for name in names}
        )
    summary["comparisons"] = {endpoint: compared_pairs(summary, names, endpoint) for endpoint in ENDPOINTS}
    return summary


ENDPOINTS = ("final_accuracy", "last_5_rounds_accuracy")  # the last round, and the mean of the last 5 (less noisy)
# The tuned study's primary endpoint, declared before its report ran: the test accuracy averaged over the last 5
# rounds, the quantity tuning scores on validation; the last round alone is reported beside it.
PRIMARY_ENDPOINT = "last_5_rounds_accuracy"
ENDPOINT_LABELS = {"final_accuracy": "exactitud final", "last_5_rounds_accuracy": "media de las 5 últimas rondas"}


def compared_pairs(summary, names, endpoint):
    """Every pair of strategies as one family (studies/significance.py): Holm-corrected, equivalence against the
    declared margin, and the word (better, worse, equivalent or inconclusive) for the first of each pair."""
    values = {name: summary["strategies"][name][endpoint]["values"] for name in names}
    return compare_family({f"{a} - {b}": (values[a], values[b]) for a, b in itertools.combinations(names, 2)})


def write_seed_summary(out_dir, runs, label, baselines=(), verdicts=False):
    """Summarise `runs` into out_dir/resumen.json and resumen.png together (and, with `verdicts`, VERDICT_FIGURE:
    every strategy against FedAvg); returns (summary, paths)."""
    summary = summarize_runs(runs, label, baselines)
    figures = {out_dir / SUMMARY_FIGURE: plot_seed_summary(summary)}
    if verdicts and "fedavg" in summary["strategies"]:
        figures[out_dir / VERDICT_FIGURE] = plot_verdicts(summary)
    paths = write_json_and_figures(out_dir / SUMMARY_FILE, summary, figures)
    return summary, list(paths)


def read_seed_summary(path, name, rewrite=None):
    """A scenario's resumen.json, checked; SummaryError naming the command that rewrites it (`rewrite`; by default
    the simulation's) if it is not one."""
    try:
        summary = json.loads(path.read_text())
    except ValueError:
        summary = None
    config = summary.get("config") if isinstance(summary, dict) else None
    if not (isinstance(config, dict) and "seeds" in config and isinstance(summary.get("strategies"), dict)):
        rewrite = rewrite or f"python experiments/simulation.py --scenario {name} --resume"
        raise SummaryError(f"{path}: not a summary over seeds; rewrite it from its runs with {rewrite}")
    return summary


def plot_seed_summary(summary):
    """Accuracy per round (mean over seeds, band ± 1 std, axis from 0), final accuracy per seed, client drift.

    The final accuracies are a dot plot with error bars, so their axis spans the points, not 0 to 100: strategies
    a few tenths apart would otherwise overlap. Drift is on a log scale: a diverging strategy would otherwise
    flatten every other line.
    """
    fig, axes = plt.subplots(1, 3, figsize=(17, 5), gridspec_kw={"width_ratios": [1.3, 1, 1]})
    names = list(summary["strategies"])
    colors = dict(zip(names, plt.cm.tab10.colors))
    short = {name: label_of(name, short=True) for name in names}
    for name, row in summary["strategies"].items():
        rounds = np.arange(1, len(row["curve_mean"]) + 1)
        mean = np.array(row["curve_mean"])
        axes[0].plot(rounds, mean, "-", color=colors[name], label=short[name])
        if row["curve_std"]:
            std = np.array(row["curve_std"])
            axes[0].fill_between(rounds, mean - std, mean + std, color=colors[name], alpha=0.2)
        axes[2].plot(rounds, row["drift_mean"], "-", color=colors[name])
    if "centralized" in summary:
        central = summary["centralized"]
        axes[0].plot(central["equivalent_rounds"], central["curve_mean"], "k--", label="centralizado (mismas épocas)")
    for target in ACCURACY_TARGETS:
        axes[0].axhline(100 * target, color="gray", linestyle=":", linewidth=1)
    axes[0].set_ylim(0, 100)
    axes[0].set_ylabel("exactitud en test (%), media ± desv. típica")
    for position, name in enumerate(names):
        final = summary["strategies"][name]["final_accuracy"]
        axes[1].plot(final["values"], [position] * len(final["values"]), "o", color=colors[name], alpha=0.5)
        if final["std"] is not None:
            axes[1].errorbar(final["mean"], position, xerr=final["std"], fmt="D", color="black", capsize=4)
    labels = [short[name] for name in names]
    if "centralized" in summary:
        final = summary["centralized"]["final_accuracy"]
        axes[1].plot(final["values"], [len(names)] * len(final["values"]), "o", color="gray", alpha=0.5)
        if final["std"] is not None:
            axes[1].errorbar(final["mean"], len(names), xerr=final["std"], fmt="D", color="black", capsize=4)
        labels.append("centralizado")
    axes[1].set_yticks(range(len(labels)), labels)
    axes[1].invert_yaxis()
    low, high = axes[1].get_xlim()
    axes[1].set_xlim(max(low, 0), min(high, 100))  # a bar of ± 1 std may pass 100 %, an accuracy cannot
    axes[1].set_xlabel("exactitud final (%): eje recortado; cada semilla, y media ± desv. típica")
    log_axis(axes[2])
    axes[2].set_ylabel("deriva media de los clientes ‖w_k − w‖ (escala log.)")
    for ax in (axes[0], axes[2]):
        ax.set_xlabel("ronda")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in axes:
        ax.grid(alpha=0.3)
    seeds = ", ".join(map(str, summary["config"]["seeds"]))
    fig.suptitle(f"{summary['label']}: K = {summary['config']['num_clients']}, semillas {seeds}")
    fig.tight_layout()
    legend_below(fig, axes[0])
    return fig


SYMLOG_FROM = 10  # points: past this reach, the verdict figure's axis turns logarithmic beyond ± 1 point
VERDICT_COLORS = {"better": "tab:green", "worse": "tab:red", "equivalent": "tab:blue", "inconclusive": "tab:gray"}


def plot_verdicts(summary, reference="fedavg", endpoint=PRIMARY_ENDPOINT):
    """Every strategy minus `reference` on `endpoint`, in points: each seed's paired difference, the mean, and the
    interval at Holm's level for the family of every pair, coloured by its verdict; zero and the declared
    equivalence margin marked. A dot plot: the axis spans the intervals, and zero is always on it."""
    family = summary["comparisons"][endpoint]
    others = [name for name in summary["strategies"] if name != reference]
    fig, ax = plt.subplots(figsize=(9, 0.7 * len(others) + 2))
    margin = next(iter(family.values()))["margin"]
    ax.axvspan(-margin, margin, color="tab:blue", alpha=0.12, label=f"margen de equivalencia (± {margin:g} puntos)")
    ax.axvline(0, color="black", linewidth=1)
    base = np.array(summary["strategies"][reference][endpoint]["values"])
    shown, reach = set(), 0.0
    for position, name in enumerate(others):
        compared = oriented(family, name, reference)
        low, high = compared["holm_interval"] or compared["ci95"]
        seeds = np.array(summary["strategies"][name][endpoint]["values"]) - base
        ax.plot(seeds, [position] * len(seeds), "o", color="gray", alpha=0.45, markersize=4)
        reach = max(reach, abs(low), abs(high), *np.abs(seeds))
        word = compared["verdict"]
        ax.errorbar(
            compared["mean"],
            position,
            xerr=[[compared["mean"] - low], [high - compared["mean"]]],
            fmt="D",
            color=VERDICT_COLORS[word],
            capsize=5,
            label=None if word in shown else VERDICT_WORDS[word],
        )
        shown.add(word)
        ax.annotate(
            f"{compared['mean']:+.2f} [{low:+.2f}, {high:+.2f}]",
            (high, position),
            xytext=(6, 4),
            textcoords="offset points",
            fontsize=8,
        )
    ax.set_yticks(range(len(others)), [label_of(name, short=True) for name in others])
    ax.invert_yaxis()
    scale = ""
    if reach > SYMLOG_FROM:  # a diverged seed spans tens of points: a linear axis would flatten every other interval
        ax.set_xscale("symlog", linthresh=1)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))  # -100, -10, -1, 0, 1, 10
        scale = "; escala lineal en ± 1 punto, logarítmica fuera"
    ax.set_xlabel(
        f"{ENDPOINT_LABELS[endpoint]}: estrategia − {label_of(reference, short=True)} (puntos{scale})\n"
        "gris: cada semilla; rombo: media e intervalo de Holm"
    )
    ax.grid(alpha=0.3, axis="x")
    ax.margins(x=0.2)  # room for the labels right of each interval
    seeds = ", ".join(map(str, summary["config"]["seeds"]))
    ax.set_title(f"{summary['label']}: frente a {label_of(reference, short=True)}, semillas {seeds}")
    fig.tight_layout()
    legend_below(fig, ax)
    return fig


def print_seed_summary(summary):
    seeds = summary["config"]["seeds"]
    print(f"\n{'strategy':<22} {'final accuracy (%)':>20} {'rounds to 97%':>18} {'rounds to 99%':>18}   seeds {seeds}")
    for name, row in summary["strategies"].items():
        final = row["final_accuracy"]
        spread = f"{final['mean']:.2f} ± {final['std']:.2f}" if final["std"] is not None else f"{final['mean']:.2f}"
        print(f"{name:<22} {spread:>20} {str(row['rounds_to_97']):>18} {str(row['rounds_to_99']):>18}")
    if "centralized" in summary:
        final = summary["centralized"]["final_accuracy"]
        epochs = summary["centralized"]["epochs"]
        print(f"{'centralized':<22} {final['mean']:>12.2f} ± {final['std'] or 0:.2f}   ({epochs} epochs)")
