"""The factors study: what heterogeneity (α), the number of clients (K), FedProx's μ and local work against
rounds (E at R·E fixed) change.

Each factor moves one setting of deriva-dirichlet-k5 (K = 5, all clients every round, SGD, B = 64, seeds 42,
43 and 44) and keeps the rest; the factores-* scenarios hold the other levels: α = 1, K = 20 (the same images,
fewer per client), μ = 0.1 and 1, E = 5 with R = 4. Few levels: each costs as much local training as one of
deriva-dirichlet-k5's strategies. A level is a strategy of one of those scenarios over the same seeds, so two
levels are paired by seed: the same seed gives the same initial weights, and for the same α and K the same
partition. Each point is compared with its factor's reference, paired:

- α: FedAvg against FedAvg at α = 0.1 (the factor's own effect), each other rule against FedAvg at the same α
  (which rule wins as the data grow more skewed);
- K: likewise, FedAvg against FedAvg at K = 5, each other rule against FedAvg at the same K;
- μ: FedProx at each μ against FedAvg (μ = 0);
- E: each rule at E local epochs and R = 20/E rounds against itself at E = 1, R = 20 (the same local epochs).

Reads each scenario's resumen.json (fedmnist/studies/seed_summary.py); writes results/factores.json and factores.png.
"""

from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np

from fedmnist.defaults import RESULTS_DIR
from fedmnist.evaluation import write_json_and_figure
from fedmnist.strategies import label_of
from fedmnist.studies import StudyError, scenarios
from fedmnist.studies.seed_summary import SUMMARY_FILE, mean_std, paired, read_seed_summary

REFERENCE = "deriva-dirichlet-k5"
SUMMARY_JSON, SUMMARY_FIGURE = RESULTS_DIR / "factores.json", RESULTS_DIR / "factores.png"


@dataclass(frozen=True)
class Factor:
    symbol: str  # the table's first column
    label: str  # Spanish: the axis of the figure
    scenarios: tuple  # where its levels were run, the reference first
    strategies: tuple  # the result names it follows (a prefix followed by ":" matches every value)


FACTORS = {
    "alpha": Factor(
        "α",
        "α de Dirichlet (menor: clientes más desiguales)",
        (REFERENCE, "factores-alfa-1"),
        ("fedavg", "fedprox:0.01", "fedmed"),
    ),
    "clients": Factor(
        "K",
        "K clientes, todos en cada ronda (más: menos imágenes cada uno)",
        (REFERENCE, "factores-k20"),
        ("fedavg", "fedmed"),
    ),
    "mu": Factor("μ", "μ de FedProx (0: FedAvg)", (REFERENCE, "factores-mu"), ("fedavg", "fedprox:")),
    "epochs": Factor(
        "E",
        "E épocas locales por ronda, R = 20/E rondas",
        (REFERENCE, "factores-e5"),
        ("fedavg", "fedprox:0.01"),
    ),
}


def read_summaries(names, results_dir=RESULTS_DIR):
    """{scenario: resumen.json} for those of `names` that have one; StudyError if they ran over other seeds."""
    found = {}
    for name in names:
        path = scenarios.results_dir(name, results_dir) / SUMMARY_FILE
        if path.is_file():
            found[name] = read_seed_summary(path, name)
    seeds = {name: summary["config"]["seeds"] for name, summary in found.items()}
    if len({tuple(s) for s in seeds.values()}) > 1:
        raise StudyError(f"the factor scenarios ran over different seeds ({seeds}): they cannot be paired")
    return found


def level_of(key, scenario_name, summary, name):
    """The factor's value at this point, read from the scenario file (α) or the run's recorded settings."""
    config = summary["config"]
    if key == "alpha":
        return scenarios.load(scenario_name).split["alpha"]
    if key == "clients":
        return config["num_clients"]
    if key == "mu":
        return config["parameters"].get(name, {}).get("mu", 0.0)
    return config["epochs"]


def comparison_of(key, factor, scenario_name, name):
    """(scenario, strategy) a point is compared with: for α and K, FedAvg at the reference level for FedAvg and
    FedAvg at the same level for the other rules; FedAvg for μ; the same rule at E = 1 for E."""
    if key in ("alpha", "clients"):
        return (factor.scenarios[0] if name == "fedavg" else scenario_name), "fedavg"
    if key == "mu":
        return factor.scenarios[0], "fedavg"
    return factor.scenarios[0], name


def finals(summary, name):
    return summary["strategies"][name]["final_accuracy"]["values"]


def factor_rows(key, factor, summaries):
    """One row per (scenario, followed strategy): its level, final accuracy over the seeds, paired difference."""
    rows = []
    for scenario_name in factor.scenarios:
        summary = summaries[scenario_name]
        for name in (n for n in summary["strategies"] if series_of(factor, n)):
            against_scenario, against_name = comparison_of(key, factor, scenario_name, name)
            against = finals(summaries[against_scenario], against_name)
            rows.append(
                {
                    "scenario": scenario_name,
                    "strategy": name,
                    "label": label_of(name),
                    "level": level_of(key, scenario_name, summary, name),
                    "rounds": summary["config"]["rounds"],
                    "epochs": summary["config"]["epochs"],
                    "final_accuracy": mean_std(finals(summary, name)),
                    "is_reference": (against_scenario, against_name) == (scenario_name, name),
                    "difference": paired(finals(summary, name), against),
                    "against": point_text(key, factor, against_scenario, summaries[against_scenario], against_name),
                }
            )
    return sorted(rows, key=lambda row: (row["level"], factor.strategies.index(series_of(factor, row["strategy"]))))


def series_of(factor, name):
    """The entry of factor.strategies that `name` belongs to (FedProx's values are one series in μ), or None."""
    return next((s for s in factor.strategies if name == s or (s.endswith(":") and name.startswith(s))), None)


def summarize(summaries):
    """Every factor whose scenarios have all run; the others are listed as pending, with what they still lack.

    StudyError when no factor can be summarized yet, naming the command that runs the first missing scenario.
    """
    ready = {key: f for key, f in FACTORS.items() if all(name in summaries for name in f.scenarios)}
    pending = {key: missing_scenarios(f, summaries) for key, f in FACTORS.items() if key not in ready}
    if not ready:
        first = next(iter(pending.values()))[0]
        raise StudyError(
            f"no factor has all its runs yet; start with: python experiments/simulation.py --scenario {first} --resume"
        )
    return {
        "reference": REFERENCE,
        "seeds": next(iter(summaries.values()))["config"]["seeds"],
        "factors": {
            key: {
                "symbol": factor.symbol,
                "label": factor.label,
                "scenarios": list(factor.scenarios),
                "rows": factor_rows(key, factor, summaries),
            }
            for key, factor in ready.items()
        },
        "pending": {
            key: {"symbol": FACTORS[key].symbol, "label": FACTORS[key].label, "missing": missing}
            for key, missing in pending.items()
        },
    }


def missing_scenarios(factor, summaries):
    return [name for name in factor.scenarios if name not in summaries]


def all_scenarios():
    return list(dict.fromkeys(name for factor in FACTORS.values() for name in factor.scenarios))


def plot_factors(summary):
    """One dot plot per factor: each seed's final accuracy, and the mean ± std, series side by side."""
    columns = min(2, len(summary["factors"]))
    rows_of_plots = -(-len(summary["factors"]) // columns)
    fig, axes = plt.subplots(rows_of_plots, columns, figsize=(6 * columns, 4.6 * rows_of_plots), squeeze=False)
    for ax, (key, factor) in zip(axes.flat, summary["factors"].items()):
        levels = sorted({row["level"] for row in factor["rows"]})
        series = list(dict.fromkeys("FedProx" if key == "mu" else row["label"] for row in factor["rows"]))
        width = 0.7 / len(series)
        for index, label in enumerate(series):
            color = plt.cm.tab10.colors[index]
            rows = [row for row in factor["rows"] if key == "mu" or row["label"] == label]
            x = np.array([levels.index(row["level"]) for row in rows]) + (index - (len(series) - 1) / 2) * width
            for position, row in zip(x, rows):
                values = row["final_accuracy"]["values"]
                ax.plot([position] * len(values), values, "o", color=color, alpha=0.4)
            means = [row["final_accuracy"]["mean"] for row in rows]
            stds = [row["final_accuracy"]["std"] or 0 for row in rows]
            ax.errorbar(x, means, yerr=stds, fmt="D", color=color, capsize=4, label=label)
        first = {row["level"]: row for row in reversed(factor["rows"])}
        ax.set_xticks(range(len(levels)), [level_text(key, first[level]) for level in levels])
        ax.set_xlabel(factor["label"])
        ax.set_ylabel("exactitud final en test (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for unused in axes.flat[len(summary["factors"]) :]:
        unused.remove()
    seeds = ", ".join(map(str, summary["seeds"]))
    fig.suptitle(
        "Cada factor movido desde Dirichlet α = 0.1, K = 5, E = 1, R = 20\n"
        f"cada semilla ({seeds}) y media ± desv. típica"
        + "".join(f"; {p['symbol']} pendiente" for p in summary["pending"].values())
    )
    fig.tight_layout()
    return fig


def point_text(key, factor, scenario_name, summary, name):
    """A point named in Spanish for the table's "frente a" column: its rule and its level ("FedAvg, K = 5")."""
    config = summary["config"]
    if key == "epochs":
        level = local_work_text(config["epochs"], config["rounds"])
    else:
        level = f"{factor.symbol} = {level_of(key, scenario_name, summary, name):g}"
    return f"{label_of(name)}, {level}"


def level_text(key, row):
    """How tables and figures name a point's level: its value, or E and R for local work."""
    return local_work_text(row["epochs"], row["rounds"]) if key == "epochs" else f"{row['level']:g}"


def local_work_text(epochs, rounds):
    return f"E = {epochs}, R = {rounds}"


def write_summary(summary):
    return write_json_and_figure(SUMMARY_JSON, summary, SUMMARY_FIGURE, plot_factors(summary))
