"""The one-round study: every aggregation rule of the course's round, without and with faulty or malicious clients.

Each client trains once from the shared initial weights (plain and FedProx,
with the course's local optimizer, and both again with plain SGD local steps,
which tests whether FedProx's proximal term behaves differently under Adam),
plus a variant per data-poisoning attack (label flipping) of the clients that may attack. Those updates are
then reused for every rule, every attack and every number M of attackers. Every
model is scored on the validation set (the "best local model" is chosen there)
and on the test set (reported). experiments/robustness.py (one seed) and
experiments/seeds.py (over seeds) are the command lines.
"""

import itertools
import json
import time
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
from tqdm import tqdm

from fedmnist import attacks as attack_names
from fedmnist import comparison, seeds, strategies
from fedmnist.attacks import ATTACKS, attack_updates, poisons_data, trains_on
from fedmnist.batched_training import BatchedClient, BatchedTrainer
from fedmnist.data import load_client_data, load_initial_weights, load_test_data, load_validation_data, read_manifest
from fedmnist.defaults import BATCH_SIZE, EPOCHS, LEARNING_RATES, MALICIOUS_COUNTS, MU, OPTIMIZER, SEED
from fedmnist.evaluation import evaluate_weights, mcnemar_exact, write_json_and_figure
from fedmnist.files import write_text_atomically
from fedmnist.seeds import client_training_seed
from fedmnist.studies import StudyError
from fedmnist.studies.significance import ALPHA, compare_family, holm
from fedmnist.updates import ClientUpdate
from model import build_model

STUDY_FILE, STUDY_FIGURE = "robustez.json", "robustez.png"
SUMMARY_FILE, SUMMARY_FIGURE = "semillas.json", "semillas.png"
CONTRAST_OPTIMIZER = "sgd"  # FedProx's local steps in Li et al. (2020); the course's are Adam's


@dataclass(frozen=True)
class StudySettings:
    malicious_counts: tuple = MALICIOUS_COUNTS  # the values of M
    epochs: int = EPOCHS
    batch_size: int = BATCH_SIZE
    seed: int = SEED  # of local training and of the noise attack
    values: dict | None = None  # {strategy key: {parameter: value}} over the registry's defaults
    attacks: bool = True  # False: the round without attackers only (no label-flipped training either)
    contrast_mu: float | None = MU  # the μ of the Adam-against-SGD contrast, the course's (None: no contrast)

    def chosen(self, strategy):
        return {**strategy.defaults(), **(self.values or {}).get(strategy.key, {})}


@dataclass(frozen=True)
class Job:
    """One local training of the study: a client, the data attack it trains under (None: its own labels), μ and
    local optimizer."""

    variant: str  # plain, fedprox, plain_<data attack>, fedprox_<data attack>, plain_sgd, fedprox_sgd
    client_id: int
    attack: str | None
    mu: float
    optimizer: str


def data_attacks(settings):
    """The data-poisoning attacks the study trains attackers for (none without attacks)."""
    return [attack for attack in ATTACKS if poisons_data(attack)] if settings.attacks else []


def study_jobs(client_ids, malicious_pool, settings):
    """Every local training the study needs, each client's variants together."""
    mu = settings.chosen(strategies.get("fedprox"))["mu"]
    jobs = []
    for cid in client_ids:
        jobs += [Job("plain", cid, None, 0.0, OPTIMIZER), Job("fedprox", cid, None, mu, OPTIMIZER)]
        for attack in data_attacks(settings) if cid in malicious_pool else ():
            jobs += [
                Job(f"plain_{attack}", cid, attack, 0.0, OPTIMIZER),
                Job(f"fedprox_{attack}", cid, attack, mu, OPTIMIZER),
            ]
        if settings.contrast_mu is not None:
            if settings.contrast_mu != mu:
                jobs.append(Job("fedprox_contrast", cid, None, settings.contrast_mu, OPTIMIZER))
            jobs += [
                Job(f"plain_{CONTRAST_OPTIMIZER}", cid, None, 0.0, CONTRAST_OPTIMIZER),
                Job(f"fedprox_{CONTRAST_OPTIMIZER}", cid, None, settings.contrast_mu, CONTRAST_OPTIMIZER),
            ]
    return jobs


def train_jobs(data_dir, jobs, initial_weights, settings):
    """{variant: {client_id: weights}}: the jobs on the batched trainer, one group of clients after another.

    A client's variants share its seed (the same data order and dropout masks), so
    plain, FedProx and SGD differ only in what the comparison is about.
    """
    data = {cid: load_client_data(data_dir, cid) for cid in sorted({job.client_id for job in jobs})}
    trained = {}
    for optimizer in sorted({job.optimizer for job in jobs}):
        mine = [job for job in jobs if job.optimizer == optimizer]
        print(f"local training: {len(mine)} models with {optimizer}, E = {settings.epochs}, B = {settings.batch_size}")
        clients = [
            BatchedClient(
                data[job.client_id][0],
                trains_on(job.attack, data[job.client_id][1]),
                initial_weights,
                client_training_seed(settings.seed, 1, job.client_id),  # the course's one round is round 1
                job.mu,
            )
            for job in mine
        ]
        trainer = BatchedTrainer(LEARNING_RATES[optimizer], optimizer)
        for job, weights in zip(mine, trainer.train(clients, settings.epochs, settings.batch_size)):
            trained.setdefault(job.variant, {})[job.client_id] = weights
    return trained


def as_updates(weights_by_client, manifest, label):
    return [
        ClientUpdate(f"cliente_{cid}_{label}", cid, w, manifest["clients"][str(cid)]["num_samples"], None)
        for cid, w in sorted(weights_by_client.items())
    ]


def scenario_updates(trained, manifest, initial_weights, attack, attackers, seed, kinds=("plain", "fedprox")):
    """The updates of each kind (plain, FedProx) that the server receives in one scenario."""
    updates = {}
    for kind in kinds:
        honest = as_updates(trained[kind], manifest, kind)
        if poisons_data(attack):
            poisoned = trained[f"{kind}_{attack}"]
            updates[kind] = [
                ClientUpdate(u.path, u.client_id, poisoned[u.client_id], u.num_samples, None)
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


def rule_weights(strategy, updates, settings, initial_weights, num_clients):
    """One rule's global weights from a scenario's updates, aggregated as the instructor's comparison does
    (fedmnist/comparison.py); None if the rule cannot run on them."""
    chosen = comparison.updates_for(strategy, updates["plain"], updates["fedprox"])
    try:
        return comparison.one_round_weights(
            strategy, chosen, settings.values or {}, (initial_weights, settings.seed, num_clients)
        )
    except ValueError:
        return None


def evaluate_scenario(model, updates, test_set, settings, initial_weights, num_clients):
    """Each strategy's test accuracy and loss on one scenario's updates (None where the strategy cannot run)."""
    accuracy, loss = {}, {}
    for strategy in strategies.noiseless_one_shot_rows():
        weights = rule_weights(strategy, updates, settings, initial_weights, num_clients)
        if weights is None:
            accuracy[strategy.key] = loss[strategy.key] = None
            continue
        metrics = evaluate_weights(model, weights, *test_set)[0]
        accuracy[strategy.key], loss[strategy.key] = metrics["accuracy"], metrics["loss"]
    return accuracy, loss


def scored(model, weights, test_set, validation_set):
    """A model's test accuracy, loss and per-image correctness, and its validation accuracy."""
    test, predictions = evaluate_weights(model, weights, *test_set)
    validation = evaluate_weights(model, weights, *validation_set)[0]
    metrics = {"accuracy": test["accuracy"], "loss": test["loss"], "validation_accuracy": validation["accuracy"]}
    return metrics, predictions == test_set[1]


def round_without_attacks(model, trained, manifest, sets, settings, initial_weights):
    """The round without attackers: every rule and every local model on validation and test, the best local model
    (chosen on validation), McNemar's test of each against FedAvg on the test images, and the SGD contrast."""
    num_clients = manifest["num_clients"]
    updates = scenario_updates(trained, manifest, initial_weights, "none", [], settings.seed, kinds=list(trained))
    rules, correct = {}, {}
    for strategy in strategies.noiseless_one_shot_rows():
        weights = rule_weights(strategy, updates, settings, initial_weights, num_clients)
        if weights is not None:
            rules[strategy.key], correct[strategy.key] = scored(model, weights, *sets)
    local = {}
    for cid, weights in sorted(trained["plain"].items()):
        local[str(cid)], correct[f"local_{cid}"] = scored(model, weights, *sets)
    best = max(local, key=lambda cid: (local[cid]["validation_accuracy"], -int(cid)))
    correct["local_best"] = correct[f"local_{best}"]
    contrast = contrast_of_optimizers(model, trained, updates, sets, settings, initial_weights, num_clients)
    mcnemar = {key: mcnemar_exact(correct[key], correct["fedavg"]) for key in (*rules, "local_best") if key != "fedavg"}
    return {
        "rules": rules,
        "local": local,
        "local_best": {"client": int(best), **local[best]},
        "mcnemar_against_fedavg": mcnemar,
        "contrast": contrast,
    }


def contrast_of_optimizers(model, trained, updates, sets, settings, initial_weights, num_clients):
    """FedProx at the contrast's μ against FedAvg, with the course's local optimizer and with SGD (None without the
    contrast): {"mu", optimizer: {"fedavg": metrics, "fedprox": metrics}}."""
    if settings.contrast_mu is None:
        return None
    found = {"mu": settings.contrast_mu}
    course_fedprox = "fedprox_contrast" if "fedprox_contrast" in trained else "fedprox"
    for optimizer, plain, proximal in (
        (OPTIMIZER, "plain", course_fedprox),
        (CONTRAST_OPTIMIZER, f"plain_{CONTRAST_OPTIMIZER}", f"fedprox_{CONTRAST_OPTIMIZER}"),
    ):
        chosen = {"plain": updates[plain], "fedprox": updates[proximal]}
        found[optimizer] = {
            key: scored(
                model, rule_weights(strategies.get(key), chosen, settings, initial_weights, num_clients), *sets
            )[0]
            for key in ("fedavg", "fedprox")
        }
    return found


def run_study(data_dir, settings=StudySettings()):
    """Train once, then the round without attackers and every attack × M × rule; returns what robustez.json holds."""
    started = time.perf_counter()
    manifest = read_manifest(data_dir)
    num_clients = manifest["num_clients"]
    if settings.attacks and not all(0 < m < num_clients for m in settings.malicious_counts):
        raise StudyError(
            f"--malicious {list(settings.malicious_counts)}: each M must be between 1 and K - 1 = {num_clients - 1}"
        )
    initial_weights, _ = load_initial_weights(data_dir)
    test_set, validation_set = load_test_data(data_dir), load_validation_data(data_dir)
    malicious_pool = list(range(1, max(settings.malicious_counts) + 1))
    client_ids = [int(c) for c in manifest["clients"]]
    trained = train_jobs(data_dir, study_jobs(client_ids, malicious_pool, settings), initial_weights, settings)
    training_seconds = time.perf_counter() - started
    model = build_model()
    one_round = round_without_attacks(model, trained, manifest, (test_set, validation_set), settings, initial_weights)
    results = {
        "one_round": one_round,
        "local_accuracy": {cid: metrics["accuracy"] for cid, metrics in one_round["local"].items()},
        "local_loss": {cid: metrics["loss"] for cid, metrics in one_round["local"].items()},
        **(
            attack_scenarios(model, trained, manifest, test_set, settings, initial_weights, one_round["rules"])
            if settings.attacks
            else {}
        ),
    }
    results["config"] = {
        "num_clients": num_clients,
        "malicious_counts": [0] + sorted(set(settings.malicious_counts)) if settings.attacks else [0],
        "malicious_clients": "the lowest ids: 1..M",
        "epochs": settings.epochs,
        "batch_size": settings.batch_size,
        "optimizer": OPTIMIZER,
        "learning_rate": LEARNING_RATES[OPTIMIZER],
        "parameters": {row.key: settings.chosen(row) for row in strategies.noiseless_one_shot_rows() if row.parameters},
        "contrast": None
        if settings.contrast_mu is None
        else {
            "optimizers": [OPTIMIZER, CONTRAST_OPTIMIZER],
            "learning_rates": [LEARNING_RATES[OPTIMIZER], LEARNING_RATES[CONTRAST_OPTIMIZER]],
            "mu": settings.contrast_mu,
        },
        "trainer": "batched",
        "seed": settings.seed,
        "partition_seed": manifest.get("seed"),
        "test_samples": len(test_set[1]),
        "validation_samples": len(validation_set[1]),
        "training_seconds": round(training_seconds, 1),
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    return results


def attack_scenarios(model, trained, manifest, test_set, settings, initial_weights, rules):
    """{"attacks", "loss", "points_lost"}: every rule's test accuracy and loss under every attack and M, and the
    points each loses against its own baseline: M = 0, the round without attackers already scored (`rules`)."""
    num_clients = manifest["num_clients"]
    malicious_pool = list(range(1, max(settings.malicious_counts) + 1))
    counts = [0] + sorted(set(settings.malicious_counts))
    baseline = {k: rules[k]["accuracy"] if k in rules else None for k in strategy_labels()}
    baseline_loss = {k: rules[k]["loss"] if k in rules else None for k in strategy_labels()}
    results = {"attacks": {}, "loss": {}}
    for attack, m in tqdm([(a, m) for a in ATTACKS for m in counts], desc="attacks × M × rules", unit="scenario"):
        if m == 0:
            row, row_loss = baseline, baseline_loss
        else:
            updates = scenario_updates(trained, manifest, initial_weights, attack, malicious_pool[:m], settings.seed)
            row, row_loss = evaluate_scenario(model, updates, test_set, settings, initial_weights, num_clients)
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
    return results


def tune_fedprox_mu(data_dir, settings, grid):
    """FedProx's μ for each local optimizer (the course's and the SGD contrast), chosen on the validation set.

    Every client trains at every μ of `grid` with each optimizer; a point's score is
    the validation accuracy of FedProx's aggregate. The chosen μ is the best point
    (the smaller μ on a tie). Returns {"grid": [...], "chosen": {optimizer: μ}}.
    """
    manifest = read_manifest(data_dir)
    initial_weights, _ = load_initial_weights(data_dir)
    validation_set = load_validation_data(data_dir)
    jobs = [
        Job(f"{optimizer}@{mu!r}", int(cid), False, float(mu), optimizer)
        for optimizer in (OPTIMIZER, CONTRAST_OPTIMIZER)
        for mu in grid
        for cid in manifest["clients"]
    ]
    trained = train_jobs(data_dir, jobs, initial_weights, settings)
    model, points = build_model(), []
    for optimizer in (OPTIMIZER, CONTRAST_OPTIMIZER):
        for mu in grid:
            updates = {"fedprox": as_updates(trained[f"{optimizer}@{mu!r}"], manifest, "fedprox")}
            weights = rule_weights(
                strategies.get("fedprox"), updates, settings, initial_weights, manifest["num_clients"]
            )
            accuracy = evaluate_weights(model, weights, *validation_set)[0]["accuracy"]
            points.append({"optimizer": optimizer, "mu": float(mu), "validation_accuracy": accuracy})
    chosen = {
        optimizer: max(
            (p for p in points if p["optimizer"] == optimizer), key=lambda p: (p["validation_accuracy"], -p["mu"])
        )["mu"]
        for optimizer in (OPTIMIZER, CONTRAST_OPTIMIZER)
    }
    return {"grid": points, "chosen": chosen}


def strategy_labels():
    """{strategy key: Spanish label} of the rules the study compares, in registry order."""
    return {row.key: row.label for row in strategies.noiseless_one_shot_rows()}


def one_round_labels():
    """{row of the one-round summary: Spanish label}: the rules, the local models, and the SGD contrast."""
    return {
        **strategy_labels(),
        "local_mean": "modelo local (media de los clientes)",
        "local_best": "modelo local (el mejor en validación)",
        f"fedprox_{OPTIMIZER}_contrast": f"FedProx (μ del curso), pasos locales {OPTIMIZER.capitalize()}",
        f"fedavg_{CONTRAST_OPTIMIZER}_contrast": f"FedAvg, pasos locales {CONTRAST_OPTIMIZER.upper()}",
        f"fedprox_{CONTRAST_OPTIMIZER}_contrast": f"FedProx (μ del curso), pasos locales {CONTRAST_OPTIMIZER.upper()}",
    }


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


def one_round_values(run, measure):
    """{row: value} of one seed's round without attackers: `measure` (accuracy, loss or validation_accuracy) of
    every rule, of the local models (their mean, and the one best on validation) and of the SGD contrast."""
    one_round = run["one_round"]
    local = [metrics[measure] for metrics in one_round["local"].values()]
    values = {key: metrics[measure] for key, metrics in one_round["rules"].items()}
    values |= {"local_mean": float(np.mean(local)), "local_best": one_round["local_best"][measure]}
    contrast = one_round.get("contrast") or {}
    values |= {
        f"{key}_{optimizer}_contrast": metrics[measure]
        for optimizer in (OPTIMIZER, CONTRAST_OPTIMIZER)
        for key, metrics in contrast.get(optimizer, {}).items()
        if (key, optimizer) != ("fedavg", OPTIMIZER)  # the course's FedAvg is the fedavg row itself
    }
    return values


def one_round_spread(runs, measure, scale):
    """{row: spread} over the seeds (rows every seed has)."""
    tables = [one_round_values(run, measure) for run in runs]
    return {key: spread([t[key] for t in tables], scale) for key in tables[0] if all(key in t for t in tables)}


def one_round_comparisons(one_shot):
    """The round's families (test accuracy, points; fedmnist/studies/significance.py): every pair of rules and the best
    local model; and FedProx at the course's μ − FedAvg with the course's optimizer, with SGD, and the difference of
    the two gaps."""
    rows = [key for key in (*strategy_labels(), "local_best") if key in one_shot]
    values = {key: np.asarray(one_shot[key]["values"]) for key in one_shot}
    families = {
        "one_round": compare_family({f"{a} - {b}": (values[a], values[b]) for a, b in itertools.combinations(rows, 2)})
    }
    course = values.get(f"fedprox_{OPTIMIZER}_contrast")
    sgd = {key: values.get(f"{key}_{CONTRAST_OPTIMIZER}_contrast") for key in ("fedavg", "fedprox")}
    if course is not None and all(v is not None for v in sgd.values()):
        course_gap, sgd_gap = course - values["fedavg"], sgd["fedprox"] - sgd["fedavg"]
        families["fedprox_local_optimizer"] = compare_family(
            {
                f"fedprox - fedavg ({OPTIMIZER})": (course, values["fedavg"]),
                f"fedprox - fedavg ({CONTRAST_OPTIMIZER})": (sgd["fedprox"], sgd["fedavg"]),
                f"gap with {OPTIMIZER} - gap with {CONTRAST_OPTIMIZER}": (course_gap, sgd_gap),
            }
        )
    return families


def attack_comparisons(attacks):
    """For each attack and M ≥ 1, one family: every rule against FedAvg under the same attack (test accuracy)."""
    families = {}
    for attack, rows in attacks.items():
        for m, row in rows.items():
            if m == "0" or row.get("fedavg") is None:
                continue
            pairs = {
                f"{key} - fedavg": (cell["values"], row["fedavg"]["values"])
                for key, cell in row.items()
                if key != "fedavg" and cell is not None
            }
            families.setdefault(attack, {})[m] = compare_family(pairs)
    return families


def mcnemar_over_seeds(runs):
    """{row: McNemar's p-values against FedAvg per seed, and in how many seeds Holm's correction over the rows of
    that seed still rejects}: the test-image view of one seed at a time."""
    keys = list(runs[0]["one_round"]["mcnemar_against_fedavg"])
    rejected = {key: 0 for key in keys}
    for run in runs:
        tests = run["one_round"]["mcnemar_against_fedavg"]
        for key, p in zip(keys, holm([tests[key]["p_value"] for key in keys])):
            rejected[key] += p < ALPHA
    return {
        key: {
            "p_values": [run["one_round"]["mcnemar_against_fedavg"][key]["p_value"] for run in runs],
            "seeds_rejected_after_holm": rejected[key],
        }
        for key in keys
    }


def summarize_seeds(runs, seeds, seconds):
    """The study over seeds: mean ± std (percent) of every row of the round without attackers, on test and on
    validation, with its families of paired comparisons and McNemar per seed; and every rule under every attack
    and M, over the seeds that ran the attacks."""
    config = {
        key: value
        for key, value in runs[0]["config"].items()
        if key not in ("seed", "partition_seed", "training_seconds", "total_seconds", "malicious_counts")
    }
    attacked = [(seed, run) for seed, run in zip(seeds, runs) if "attacks" in run]
    one_shot = one_round_spread(runs, "accuracy", 100)
    summary = {
        "config": {
            **config,
            "seeds": list(seeds),
            "attack_seeds": [seed for seed, _ in attacked],
            "malicious_counts": attacked[0][1]["config"]["malicious_counts"] if attacked else [0],
            "seconds": round(seconds, 1),
        },
        "one_shot": one_shot,
        "one_shot_validation": one_round_spread(runs, "validation_accuracy", 100),
        "one_shot_loss": one_round_spread(runs, "loss", 1),
        "comparisons": one_round_comparisons(one_shot),
        "mcnemar_against_fedavg": mcnemar_over_seeds(runs),
    }
    if attacked:
        summary["attacks"] = over_seeds([run for _, run in attacked], "attacks", 100)
        summary["loss"] = over_seeds([run for _, run in attacked], "loss", 1)
        summary["comparisons"]["attacks"] = attack_comparisons(summary["attacks"])
    return summary


def dot_with_error_bar(ax, y, cell, **style):
    """One mean ± std as a dot with a horizontal error bar, and each seed's value as a faint dot."""
    ax.errorbar(cell["mean"], y, xerr=cell["std"], fmt="o", capsize=3, **style)
    ax.plot(cell["values"], [y] * len(cell["values"]), ".", alpha=0.35, color=style.get("color"))


def plot_seed_summary(summary):
    """Dot plots, mean ± std over the seeds: the round without attacks above, every attack with each M below."""
    labels = strategy_labels()
    colors = dict(zip(labels, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    counts = [m for m in map(str, summary["config"]["malicious_counts"]) if m != "0"]
    fig = plt.figure(figsize=(13, 11.5 if counts else 6))
    grid = fig.add_gridspec(2 if counts else 1, max(len(counts), 1), height_ratios=[1, 1.3] if counts else [1])
    top = fig.add_subplot(grid[0, :])
    names = {key: name for key, name in one_round_labels().items() if key in summary["one_shot"]}
    for y, (key, name) in enumerate(reversed(names.items())):
        dot_with_error_bar(top, y, summary["one_shot"][key], color=colors.get(key, "tab:gray"))
    top.set_yticks(range(len(names)), list(reversed(names.values())))
    top.set_xlabel("exactitud en test (%): eje recortado, los puntos llevan barras de error")
    top.set_title(f"Una ronda, sin ataques ({len(summary['config']['seeds'])} semillas)")
    top.grid(axis="x", alpha=0.3)
    if counts:
        plot_attack_panels(fig, grid, summary, counts, labels, colors)
    seeds = summary["config"]["seeds"]
    fig.suptitle(f"Media ± desviación típica sobre las semillas {seeds[0]}–{seeds[-1]}; puntos claros: cada semilla")
    fig.tight_layout(rect=(0, 0.04 if counts else 0, 1, 1))
    return fig


def plot_attack_panels(fig, grid, summary, counts, labels, colors):
    """One panel per M: every rule under every attack, mean ± std over the attack seeds, on a 0-100 axis."""
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
        ax.set_xlabel(f"exactitud en test (%), {len(summary['config']['attack_seeds'])} semillas")
        plural = "" if m == "1" else "s"
        ax.set_title(f"M = {m} cliente{plural} malicioso{plural} de {summary['config']['num_clients']}")
        ax.grid(axis="x", alpha=0.3)
    handles, names_ = bottom[0].get_legend_handles_labels()
    fig.legend(handles, names_, ncol=(len(labels) + 1) // 2, loc="lower center", fontsize=9)


def write_study(out_dir, results):
    """robustez.json and robustez.png of one study, replaced together; returns their paths."""
    if "attacks" not in results:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomically(out_dir / STUDY_FILE, json.dumps(results, indent=2) + "\n")
        return [out_dir / STUDY_FILE]
    return write_json_and_figure(out_dir / STUDY_FILE, results, out_dir / STUDY_FIGURE, plot_robustness(results))


def write_summary(out_dir, summary):
    """semillas.json and semillas.png of the summary over seeds, replaced together; returns their paths."""
    return write_json_and_figure(out_dir / SUMMARY_FILE, summary, out_dir / SUMMARY_FIGURE, plot_seed_summary(summary))
