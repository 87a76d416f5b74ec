"""The one-shot comparison and the robustness study over several seeds: mean ± standard deviation.

    python seed_study.py --seeds 42 43 44

For each seed s it splits full MNIST for K clients with seed s (data/semillas/semilla_s: a new
split and new initial weights), runs robustness_study.py with seed s (local training and the
noise attack) into results/semillas/semilla_s/, and summarises every accuracy over the seeds in
results/semillas.json (percent; std is the sample standard deviation, n - 1) and
results/semillas.png.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

import robustness_study
from atomic import check_writable, write_text_atomically
from split_data import PartitionError, ensure_split

PROJECT_DIR = Path(__file__).resolve().parent
SUMMARY_FILE = "semillas.json"
FIGURE_FILE = "semillas.png"


def spread(values):
    """Mean and sample standard deviation of accuracies given as fractions, in percent (None if a run had none)."""
    if any(v is None for v in values):
        return None
    percent = 100 * np.asarray(values, dtype=np.float64)
    return {"mean": float(percent.mean()), "std": float(percent.std(ddof=1)) if len(percent) > 1 else 0.0,
            "values": [float(v) for v in percent]}


def summarize_seeds(runs):
    """Mean ± std over seeds of every rule's accuracy (per attack and M), and of the mean and best local model."""
    first = runs[0]
    attacks = {
        attack: {m: {rule: spread([run["attacks"][attack][m][rule] for run in runs]) for rule in row}
                 for m, row in rows.items()}
        for attack, rows in first["attacks"].items()
    }
    baseline = next(iter(attacks.values()))["0"]
    local = [list(run["local_accuracy"].values()) for run in runs]
    one_shot = {**baseline, "local_mean": spread([np.mean(acc) for acc in local]), "local_best": spread([max(acc) for acc in local])}
    return {"one_shot": one_shot, "attacks": attacks}


def plot_seed_summary(summary, labels):
    """Left: one-shot accuracy per rule with the local models; right: each rule under one attacker, per attack."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(15, 4.8), gridspec_kw={"width_ratios": [1, 1.6]})
    one_shot = summary["one_shot"]
    names = {**labels, "local_mean": "local (media)", "local_best": "local (mejor)"}
    means = [one_shot[k]["mean"] for k in names]
    bars = axes[0].bar(list(names.values()), means, yerr=[one_shot[k]["std"] for k in names], capsize=4,
                       color=["tab:blue"] * len(labels) + ["tab:gray"] * 2)
    axes[0].bar_label(bars, fmt="%.2f", fontsize=8, padding=6)
    axes[0].set_ylim(min(means) - 2, 100)
    axes[0].set_ylabel("exactitud en test (%)")
    axes[0].set_title("Una ronda, sin ataques")
    plt.setp(axes[0].get_xticklabels(), rotation=20, ha="right")

    attacks = list(summary["attacks"])
    width = 0.8 / len(labels)
    for i, (key, label) in enumerate(labels.items()):
        rows = [summary["attacks"][a]["1"][key] or {"mean": np.nan, "std": np.nan} for a in attacks]
        axes[1].bar(np.arange(len(attacks)) + (i - (len(labels) - 1) / 2) * width, [r["mean"] for r in rows], width,
                    yerr=[r["std"] for r in rows], capsize=2, label=label)
    axes[1].set_xticks(np.arange(len(attacks)), attacks)
    axes[1].set_ylim(0, 100)
    axes[1].set_title("Con 1 cliente malicioso de 5")
    axes[1].legend(fontsize=8, ncol=len(labels), loc="upper center", bbox_to_anchor=(0.5, -0.08))
    for ax in axes:
        ax.grid(axis="y", alpha=0.3)
    seeds = summary["config"]["seeds"]
    fig.suptitle(f"Media ± desviación típica sobre {len(seeds)} semillas ({', '.join(map(str, seeds))})")
    fig.tight_layout()
    return fig


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44], help="the seeds (default: 42 43 44)")
    parser.add_argument("--clients", "-K", type=int, default=5, help="K, the number of clients (default: 5)")
    parser.add_argument("--data", type=Path, default=PROJECT_DIR / "data" / "semillas", help="where each seed's split goes")
    parser.add_argument("--out", type=Path, default=PROJECT_DIR / "results", help="output folder (default: results/)")
    parser.add_argument("--epochs", "-E", type=int, help="E, local epochs (default: robustness_study.py's)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if len(set(args.seeds)) < 2 or len(set(args.seeds)) != len(args.seeds):
        sys.exit(f"seed_study.py: error: --seeds {' '.join(map(str, args.seeds))}: give at least two different seeds, each once")
    try:
        check_writable(args.out)
    except OSError as err:
        sys.exit(f"seed_study.py: error: {err}")
    started = time.perf_counter()
    runs = []
    for seed in args.seeds:
        data, out = args.data / f"semilla_{seed}", args.out / "semillas" / f"semilla_{seed}"
        print(f"\n==> seed {seed}: split into {data}, robustness study into {out}")
        try:
            ensure_split(data, args.clients, seed)
        except PartitionError as err:
            sys.exit(f"seed_study.py: error: {err}")
        robustness_study.main(["--data", str(data), "--out", str(out), "--seed", str(seed),
                               *(["--epochs", str(args.epochs)] if args.epochs else [])])
        runs.append(json.loads((out / robustness_study.RESULTS_FILE).read_text()))

    summary = {"config": {**runs[0]["config"], "seeds": args.seeds, "seconds": round(time.perf_counter() - started, 1)}}
    for key in ("seed", "partition_seed", "training_seconds", "total_seconds"):
        summary["config"].pop(key)
    summary.update(summarize_seeds(runs))
    from evaluation import save_figure
    from global_aggregation import METHODS

    write_text_atomically(args.out / SUMMARY_FILE, json.dumps(summary, indent=2) + "\n")
    save_figure(plot_seed_summary(summary, {m.key: m.label for m in METHODS}), args.out / FIGURE_FILE)
    print(f"\n{'one shot, no attack':<22} mean ± std over seeds {args.seeds}")
    for key, row in summary["one_shot"].items():
        print(f"{key:<22} {row['mean']:6.2f} ± {row['std']:.2f}")
    print(f"Wrote {args.out / SUMMARY_FILE} and {args.out / FIGURE_FILE} in {summary['config']['seconds']:.0f} s")


if __name__ == "__main__":
    main()
