"""The robustness study: every aggregation rule without noise against faulty and malicious clients, over seeds.

Each client trains once (plain and FedProx), plus the label-flipped variant of
the clients that may attack; those updates are then reused for every attack,
every number M of attackers and every strategy. experiments/robustness.py and
experiments/seeds.py are the command lines.
"""

import time
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
from tqdm import tqdm

from fedmnist import attacks as attack_names
from fedmnist import seeds, strategies
from fedmnist.seeds import client_training_seed
from fedmnist.attacks import ATTACKS, attack_updates, flip_labels
from fedmnist.data import load_client_data, load_initial_weights, load_test_data, read_manifest
from fedmnist.defaults import BATCH_SIZE, EPOCHS, MALICIOUS_COUNTS, SEED
from fedmnist.evaluation import evaluate_weights, write_json_and_figure
from fedmnist.partition import PartitionError
from fedmnist.training import LocalTrainer
from fedmnist.updates import ClientUpdate
from model import build_model

STUDY_FILE, STUDY_FIGURE = "robustez.json", "robustez.png"
SUMMARY_FILE, SUMMARY_FIGURE = "semillas.json", "semillas.png"


@dataclass(frozen=True)
class StudySettings:
    malicious_counts: tuple = MALICIOUS_COUNTS  # the values of M
    epochs: int = EPOCHS
    batch_size: int = BATCH_SIZE
    seed: int = SEED  # of local training and of the noise attack
    values: dict | None = None  # {strategy key: {parameter: value}} over the registry's defaults

    def chosen(self, strategy):
        return {**strategy.defaults(), **(self.values or {}).get(strategy.key, {})}


def train_variants(data_dir, manifest, initial_weights, malicious_pool, settings):
    """Return (model, {variant: {client_id: weights}}) for plain, fedprox, and the label-flipped twins."""
    model = build_model()
    trainer = LocalTrainer(model)
    mu = settings.chosen(strategies.get("fedprox"))["mu"]
    client_ids = [int(c) for c in manifest["clients"]]
    jobs = [
        (cid, flipped, m)
        for flipped in (False, True)
        for cid in client_ids
        if not flipped or cid in malicious_pool
        for m in (0.0, mu)
    ]
    trained = {}
    for cid, flipped, m in tqdm(jobs, desc="local training (once per client and variant)", unit="model"):
        x, y = load_client_data(data_dir, cid)
        trainer.train(
            x,
            flip_labels(y) if flipped else y,
            initial_weights=initial_weights,
            epochs=settings.epochs,
            batch_size=settings.batch_size,
            seed=client_training_seed(settings.seed, 1, cid),  # the course's one round is round 1
            mu=m,
            verbose=0,
        )
        variant = ("fedprox" if m > 0 else "plain") + ("_flipped" if flipped else "")
        trained.setdefault(variant, {})[cid] = model.get_weights()
    return model, trained


def as_updates(weights_by_client, manifest, label):
    return [
        ClientUpdate(f"cliente_{cid}_{label}", cid, w, manifest["clients"][str(cid)]["num_samples"], None)
        for cid, w in sorted(weights_by_client.items())
    ]


def scenario_updates(trained, manifest, initial_weights, attack, attackers, seed):
    """The plain and FedProx updates that the server receives in one scenario."""
    updates = {}
    for kind in ("plain", "fedprox"):
        honest = as_updates(trained[kind], manifest, kind)
        if attack == "label_flip":
            flipped = trained[f"{kind}_flipped"]
            updates[kind] = [
                ClientUpdate(u.path, u.client_id, flipped[u.client_id], u.num_samples, None)
                if u.client_id in attackers
                else u
                for u in honest
            ]
        elif attackers:
            updates[kind], _ = attack_updates(
                honest, initial_weights, attack, attackers, None, seeds.sequence(seed, "attack", 1)
            )
        else:
            updates[kind] = honest
    return updates


def evaluate_scenario(model, updates, test_set, settings, initial_weights, num_clients):
    """Each strategy's test accuracy and loss on one scenario's updates (None where the strategy cannot run)."""
    accuracy, loss = {}, {}
    for strategy in strategies.noiseless_one_shot_rows():
        chosen = updates["fedprox" if strategy.fedprox_updates else "plain"]
        pairs = [(u.weights, u.num_samples) for u in chosen]
        try:
            weights = strategies.one_shot(
                strategy, pairs, initial_weights, settings.chosen(strategy), settings.seed, num_clients
            )
        except ValueError:
            accuracy[strategy.key] = loss[strategy.key] = None
            continue
        metrics = evaluate_weights(model, weights, *test_set)[0]
        accuracy[strategy.key], loss[strategy.key] = metrics["accuracy"], metrics["loss"]
    return accuracy, loss


def run_study(data_dir, settings=StudySettings()):
    """Train once, then every attack × M × strategy; returns the results (what robustez.json holds)."""
    started = time.perf_counter()
    manifest = read_manifest(data_dir)
    num_clients = manifest["num_clients"]
    if not all(0 < m < num_clients for m in settings.malicious_counts):
        raise PartitionError(
            f"--malicious {list(settings.malicious_counts)}: each M must be between 1 and K - 1 = {num_clients - 1}"
        )
    initial_weights, _ = load_initial_weights(data_dir)
    test_set = load_test_data(data_dir)
    malicious_pool = list(range(1, max(settings.malicious_counts) + 1))
    model, trained = train_variants(data_dir, manifest, initial_weights, malicious_pool, settings)
    training_seconds = time.perf_counter() - started
    local = {
        str(cid): evaluate_weights(model, weights, *test_set)[0] for cid, weights in sorted(trained["plain"].items())
    }
    counts = [0] + sorted(set(settings.malicious_counts))
    baseline = baseline_loss = None
    results = {
        "attacks": {},
        "loss": {},
        "local_accuracy": {cid: metrics["accuracy"] for cid, metrics in local.items()},
        "local_loss": {cid: metrics["loss"] for cid, metrics in local.items()},
    }
    for attack, m in tqdm([(a, m) for a in ATTACKS for m in counts], desc="attacks × M × rules", unit="scenario"):
        if m == 0 and baseline is not None:
            row, row_loss = baseline, baseline_loss
        else:
            updates = scenario_updates(trained, manifest, initial_weights, attack, malicious_pool[:m], settings.seed)
            row, row_loss = evaluate_scenario(model, updates, test_set, settings, initial_weights, num_clients)
            baseline, baseline_loss = baseline or row, baseline_loss or row_loss
        results["attacks"].setdefault(attack, {})[str(m)] = row
        results["loss"].setdefault(attack, {})[str(m)] = row_loss
    results["points_lost"] = {
        attack: {
            str(m): {
                k: None if rows[str(m)][k] is None else round(100 * (baseline[k] - rows[str(m)][k]), 2)
                for k in strategy_labels()
            }
            for m in counts
            if m
        }
        for attack, rows in results["attacks"].items()
    }
    results["config"] = {
        "num_clients": num_clients,
        "malicious_counts": counts,
        "malicious_clients": "the lowest ids: 1..M",
        "epochs": settings.epochs,
        "batch_size": settings.batch_size,
        "parameters": {row.key: settings.chosen(row) for row in strategies.noiseless_one_shot_rows() if row.parameters},
        "seed": settings.seed,
        "partition_seed": manifest.get("seed"),
        "test_samples": len(test_set[1]),
        "training_seconds": round(training_seconds, 1),
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    return results


def strategy_labels():
    """{strategy key: Spanish label} of the rules the study compares, in registry order."""
    return {row.key: row.label for row in strategies.noiseless_one_shot_rows()}


def plot_robustness(results):
    labels = strategy_labels()
    attacks = list(results["attacks"])
    fig, axes = plt.subplots(2, (len(attacks) + 1) // 2, figsize=(4.2 * ((len(attacks) + 1) // 2), 7.5), sharey=True)
    for ax, attack in zip(axes.flat, attacks):
        for key, label in labels.items():
            points = [
                (int(m), 100 * row[key]) for m, row in results["attacks"][attack].items() if row.get(key) is not None
            ]
            if points:
                ax.plot(*zip(*points), "o-", label=label)
        ax.set_title(attack_names.label(attack), fontsize=10)
        ax.set_xticks(results["config"]["malicious_counts"])
        ax.set_xlabel("clientes maliciosos M")
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
    for ax in axes[:, 0]:
        ax.set_ylabel("exactitud en test (%)")
    axes.flat[0].legend(loc="lower left", fontsize=8)
    fig.suptitle(f"Robustez de la agregación: {results['config']['num_clients']} clientes, M maliciosos")
    fig.tight_layout()
    return fig


def spread(values, scale=100):
    """Mean and sample standard deviation of `scale` × values (accuracies as fractions: percent); None if any is."""
    if any(v is None for v in values):
        return None
    percent = scale * np.asarray(values, dtype=np.float64)
    return {
        "mean": float(percent.mean()),
        "std": float(percent.std(ddof=1)) if len(percent) > 1 else 0.0,
        "values": [float(v) for v in percent],
    }


def over_seeds(runs, key, scale):
    """{attack: {M: {rule: spread}}} of one per-run table (accuracy or loss) over the runs."""
    return {
        attack: {
            m: {rule: spread([run[key][attack][m][rule] for run in runs], scale) for rule in row}
            for m, row in rows.items()
        }
        for attack, rows in runs[0][key].items()
    }


def with_local_models(baseline, runs, key, scale):
    """The no-attack row, plus the mean and the best local model of each run (best: highest accuracy)."""
    local = [run[key] for run in runs]
    best = [max(run["local_accuracy"], key=run["local_accuracy"].get) for run in runs]
    return {
        **baseline,
        "local_mean": spread([np.mean(list(values.values())) for values in local], scale),
        "local_best": spread([values[cid] for values, cid in zip(local, best)], scale),
    }


def summarize_seeds(runs, seeds, seconds):
    """Mean ± std over seeds of every strategy's accuracy (%) and test loss, per attack and M, with the local models."""
    attacks, loss = over_seeds(runs, "attacks", 100), over_seeds(runs, "loss", 1)
    config = {
        key: value
        for key, value in runs[0]["config"].items()
        if key not in ("seed", "partition_seed", "training_seconds", "total_seconds")
    }
    return {
        "config": {**config, "seeds": list(seeds), "seconds": round(seconds, 1)},
        "one_shot": with_local_models(next(iter(attacks.values()))["0"], runs, "local_accuracy", 100),
        "one_shot_loss": with_local_models(next(iter(loss.values()))["0"], runs, "local_loss", 1),
        "attacks": attacks,
        "loss": loss,
    }


def dot_with_error_bar(ax, y, cell, **style):
    """One mean ± std as a dot with a horizontal error bar, and each seed's value as a faint dot."""
    ax.errorbar(cell["mean"], y, xerr=cell["std"], fmt="o", capsize=3, **style)
    ax.plot(cell["values"], [y] * len(cell["values"]), ".", alpha=0.35, color=style.get("color"))


def plot_seed_summary(summary):
    """Dot plots, mean ± std over the seeds: one round without attacks above, every attack with M = 1, 2 below."""
    labels = strategy_labels()
    colors = dict(zip(labels, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    counts = [m for m in map(str, summary["config"]["malicious_counts"]) if m != "0"]
    fig = plt.figure(figsize=(13, 10.5))
    grid = fig.add_gridspec(2, len(counts), height_ratios=[1, 1.3])
    top = fig.add_subplot(grid[0, :])
    names = {**labels, "local_mean": "modelo local (media de 5)", "local_best": "modelo local (el mejor)"}
    for y, (key, name) in enumerate(reversed(names.items())):
        dot_with_error_bar(top, y, summary["one_shot"][key], color=colors.get(key, "tab:gray"))
    top.set_yticks(range(len(names)), list(reversed(names.values())))
    top.set_xlabel("exactitud en test (%): eje recortado, los puntos llevan barras de error")
    top.set_title("Una ronda, sin ataques")
    attacks = list(summary["attacks"])
    offsets = np.linspace(0.3, -0.3, len(labels))
    bottom = [fig.add_subplot(grid[1, i]) for i in range(len(counts))]
    for ax, m in zip(bottom, counts):
        for offset, (key, name) in zip(offsets, labels.items()):
            for y, attack in enumerate(reversed(attacks)):
                cell = summary["attacks"][attack][m].get(key)
                if cell is not None:
                    dot_with_error_bar(ax, y + offset, cell, color=colors[key], label=name if y == 0 else None)
        ax.set_yticks(
            range(len(attacks)), [attack_names.label(a) for a in reversed(attacks)] if ax is bottom[0] else []
        )
        ax.set_xlim(0, 100)
        ax.set_xlabel("exactitud en test (%)")
        plural = "" if m == "1" else "s"
        ax.set_title(f"M = {m} cliente{plural} malicioso{plural} de {summary['config']['num_clients']}")
    handles, names_ = bottom[0].get_legend_handles_labels()
    fig.legend(handles, names_, ncol=len(labels), loc="lower center", fontsize=9)
    for ax in (top, *bottom):
        ax.grid(axis="x", alpha=0.3)
    seeds = summary["config"]["seeds"]
    listed = ", ".join(map(str, seeds))
    fig.suptitle(f"Media ± desviación típica sobre {len(seeds)} semillas ({listed}); puntos claros: cada semilla")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig


def write_study(out_dir, results):
    """robustez.json and robustez.png of one study, replaced together; returns their paths."""
    return write_json_and_figure(out_dir / STUDY_FILE, results, out_dir / STUDY_FIGURE, plot_robustness(results))


def write_summary(out_dir, summary):
    """semillas.json and semillas.png of the summary over seeds, replaced together; returns their paths."""
    return write_json_and_figure(out_dir / SUMMARY_FILE, summary, out_dir / SUMMARY_FIGURE, plot_seed_summary(summary))
