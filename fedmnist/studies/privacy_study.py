"""The privacy study: accuracy against ε for client-level DP-FedAvg, and what updates and models leak.

It reads the runs of the privacidad-* scenarios (experiments/simulation.py, one
folder per seed) and, for each seed, measures with the final global models of
that run (the last round's checkpoint):

- label inference (fedmnist/studies/leakage.py) on every client's update, trained for one
  round from the initial model and from FedAvg's final model, as the server sees
  it and as it would arrive if the client clipped it to S and added its own noise
  N(0, (z·S)²) for each z of LOCAL_NOISE (local DP; central DP-FedAvg does not
  hide an update from the server that clips it);
- membership inference (Yeom et al., 2018) against MEMBERSHIP_CLIENTS clients that
  took part in the run: their local model after one more round from FedAvg's
  final model, and every strategy's final global model; the non-members are
  NONMEMBERS images of the clients that never took part in a round (no model of
  the run saw them, and they come from the same distribution as the members),
  the same for every model; the test set only if every client took part. With
  test images as non-members every AUC of privacidad-iid, the local models'
  included, came out between 47 % and 49 %: the hypothesis is that MNIST's test
  images are easier than its training images, which says nothing of membership.

Each seed's measures go to fuga.json beside its simulacion.json. The summary over
seeds and scenarios (privacidad.json, privacidad.png in results/privacidad/) adds,
per strategy, the final accuracy, its paired difference from FedAvg, the spent ε
and the noise on the mean update σ = z·S/(q·N); and the trend's answer to how many
clients a round would keep DP-FedAvg within a point of FedAvg at ε = 1: the
largest σ measured within a point, σ*, reached with m clients a round when
z(ε = 1)·S/m ≤ σ*, z from the accountant. That extrapolation assumes, as McMahan
et al. (2018) do, that accuracy depends on the noise on the mean update and that
more clients a round do not hurt; it is a hypothesis, not a measurement.
"""

import json
import math

import matplotlib.pyplot as plt
import numpy as np

from fedmnist import privacy, seeds
from fedmnist.data import load_initial_weights, read_manifest, read_weights_archive
from fedmnist.defaults import DP_DELTA_EXPONENT, PROJECT_DIR, RESULTS_DIR
from fedmnist.evaluation import per_example_loss, write_json_and_figure
from fedmnist.files import write_text_atomically
from fedmnist.history import RESULTS_FILE, checkpoint_path, upgraded
from fedmnist.simulation import ClientTask, Executor, Federation, RoundSettings
from fedmnist.strategies import label_of, parse_spec
from fedmnist.studies import StudyError, leakage
from fedmnist.studies.seed_summary import mean_std, paired
from model import build_model

LEAKAGE_FILE = "fuga.json"
SUMMARY_DIR = RESULTS_DIR / "privacidad"
SUMMARY_FILE, SUMMARY_FIGURE = "privacidad.json", "privacidad.png"
MEMBERSHIP_CLIENTS = 10
NONMEMBERS = 1000  # per client: images no model of the run trained on, with the client's class proportions
# Each measure takes (member losses, their labels, non-member losses, their labels)
MEMBERSHIP_MEASURES = {
    "membership_auc": lambda members, _, others, __: leakage.membership_auc(members, others),
    "membership_tpr_at_1pct_fpr": lambda members, _, others, __: leakage.tpr_at_fpr(members, others),
    "membership_auc_within_class": leakage.within_class_auc,
}
LOCAL_NOISE = (0.0, 0.01, 0.1, 1.0, 10.0)  # z of a client that noises its own update (0: clipped only)
TARGET_EPSILON = 1.0
TARGET_LOSS = 1.0  # points of accuracy
COHORT_RATES = (0.1, 0.01)  # the sampling rates q at which the cohort is extrapolated
COHORT_ITERATIONS = 20  # at most, to settle the population and its δ together (cohort_for)


# ---------------------------------------------------------------------------
# One seed's run
# ---------------------------------------------------------------------------


def load_run(run_dir):
    """(results, federation, {strategy: final global weights}) of a finished run, or StudyError."""
    path = run_dir / RESULTS_FILE
    if not path.is_file():
        raise StudyError(f"{path}: no finished run; run experiments/simulation.py --scenario <name> first")
    results = json.loads(path.read_text())
    config, rounds = results["config"], results["rounds_completed"]
    data_dir = PROJECT_DIR / config["data"]
    federation = Federation.load(data_dir, read_manifest(data_dir))
    final = {}
    for name in results["history"]:
        checkpoint = checkpoint_path(run_dir, config, name, rounds)
        if not checkpoint.is_file():
            raise StudyError(
                f"{checkpoint}: the final global model is gone (checkpoints stay only on the machine that ran it); "
                f"remove {run_dir} and run make privacy again"
            )
        final[name] = read_weights_archive(checkpoint)
    return results, federation, final


def round_settings(config, workers):
    return RoundSettings(
        epochs=config["epochs"],
        batch_size=config["batch_size"],
        optimizer=config["optimizer"],
        learning_rate=config["learning_rate"],
        seed=config["seed"],
        trainer=upgraded(config)["trainer"],  # the run's own trainer, so a client's update is the one it sent
        workers=workers,
    )


def train_clients(executor, federation, start, settings, round_number, ids):
    """{client id: weights after one round of local training from `start`} for the clients `ids`."""
    tasks = [
        ClientTask(
            cid,
            start,
            settings.epochs,
            settings.batch_size,
            seeds.client_training_seed(settings.seed, round_number, cid),
        )
        for cid in ids
    ]
    return {cid: weights for cid, (weights, _) in zip(ids, executor.train([tasks])[0])}


def label_inference(federation, start, trained, clip, seed):
    """Label inference on every client's update from `start`: {"z": scores} for each local noise z."""
    ids = sorted(trained)
    held = np.array([leakage.held_classes(federation.clients[cid][1]) for cid in ids])
    deltas = {cid: [t - s for t, s in zip(trained[cid], start)] for cid in ids}
    scores = {}
    for z in LOCAL_NOISE:
        rng = seeds.rng(seed, "leakage_noise", round(z * 1000))
        changes = [
            leakage.locally_noised(deltas[cid], clip, z, rng)[-1] if z else deltas[cid][-1].astype(np.float64)
            for cid in ids
        ]
        scores[f"{z:g}"] = leakage.label_inference_scores(held, changes)
    return scores


def trained_clients(results):
    """The client ids that trained in at least one round of the run."""
    return {cid for rows in results["history"].values() for row in rows for cid in row["clients"]}


def nonmember_pool(trained, federation):
    """(x, y, source): images no model of the run trained on. The validation set where the split has one (held
    out of every client before the partition); else the clients that never took part in a round, or the test
    set if every client took part."""
    if federation.validation_set is not None:
        return (*federation.validation_set, "the validation set")
    idle = [cid for cid in sorted(federation.clients) if cid not in trained]
    if not idle:
        return (*federation.test_set, "test")
    x = np.concatenate([federation.clients[cid][0] for cid in idle])
    y = np.concatenate([federation.clients[cid][1] for cid in idle])
    return x, y, f"the {len(idle)} clients that never trained"


def membership(model, federation, final, local, clients, nonmembers, seed):
    """Membership against each client, its non-members drawn with its own class proportions, so the attack cannot
    win by the classes a client holds: {"membership_auc" | "membership_tpr_at_1pct_fpr": {"local": [per client],
    "global": {strategy: [per client]}}}."""
    x_pool, y_pool, _ = nonmembers
    found = {key: {"local": [], "global": {name: [] for name in final}} for key in MEMBERSHIP_MEASURES}
    for cid in clients:
        x_in, y_in = federation.clients[cid]
        chosen = leakage.class_matched(y_pool, y_in, NONMEMBERS, seeds.rng(seed, "nonmembers", cid))
        for name, weights in [(None, local[cid]), *final.items()]:
            members = per_example_loss(model, weights, x_in, y_in)
            others = per_example_loss(model, weights, x_pool[chosen], y_pool[chosen])
            for key, measure in MEMBERSHIP_MEASURES.items():
                place = found[key]["local"] if name is None else found[key]["global"][name]
                place.append(measure(members, y_in, others, y_pool[chosen]))
    return found


def leakage_of_run(run_dir, workers=2, log=print):
    """Measure one seed's run and write its fuga.json; returns what it wrote."""
    results, federation, final = load_run(run_dir)
    config = results["config"]
    settings = round_settings(config, workers)
    initial = load_initial_weights(federation.data_dir)[0]
    next_round = results["rounds_completed"] + 1
    clip = parse_spec("dpfedavg").values["clip"]
    trained = trained_clients(results)
    clients = sorted(trained)[:MEMBERSHIP_CLIENTS]
    infer_labels = config["partition"] != "iid"  # with IID data every client holds every class: nothing to infer
    everyone = sorted(federation.clients)
    executor = Executor(federation, settings)
    try:
        log(f"{run_dir}: updates from FedAvg's final model" + (" and from the initial one" if infer_labels else ""))
        from_final = train_clients(
            executor, federation, final["fedavg"], settings, next_round, everyone if infer_labels else clients
        )
        from_initial = train_clients(executor, federation, initial, settings, 1, everyone) if infer_labels else None
    finally:
        executor.close()
    nonmembers = nonmember_pool(trained, federation)
    log(f"{run_dir}: membership against clients {clients}; non-members from {nonmembers[2]}")
    model = build_model()
    labels = None
    if infer_labels:
        labels = {
            "initial": label_inference(federation, initial, from_initial, clip, config["seed"]),
            "final": label_inference(federation, final["fedavg"], from_final, clip, config["seed"]),
        }
    found = {
        "config": {
            "scenario": config["scenario"],
            "seed": config["seed"],
            "clip": clip,
            "local_noise": list(LOCAL_NOISE),
            "held_share": leakage.HELD_SHARE,
            "membership_clients": clients,
            "nonmembers": min(NONMEMBERS, len(nonmembers[1])),
            "nonmember_source": nonmembers[2],
        },
        "label_inference": labels,
        **membership(model, federation, final, from_final, clients, nonmembers, config["seed"]),
    }
    write_text_atomically(run_dir / LEAKAGE_FILE, json.dumps(found, indent=2) + "\n")
    return found


# ---------------------------------------------------------------------------
# The summary over seeds and scenarios
# ---------------------------------------------------------------------------


CLIP_ONLY = "dpfedavg:0"  # DP-FedAvg's control: the same clipping and equal weights, no noise


def strategy_rows(runs):
    """Per strategy over the seeds: z, S, σ, ε, final accuracy, its paired difference from FedAvg and, for a noised
    DP-FedAvg row of a scenario that ran it, from its clip-only control (what the noise alone costs)."""
    config = runs[0]["config"]
    cohort = config["fraction"] * config["num_clients"]

    def finals_of(name):
        return [100 * run["history"][name][-1]["accuracy"] for run in runs]

    fedavg = finals_of("fedavg")
    rows = {}
    for name in config["strategies"]:
        finals = finals_of(name)
        spent = [row["privacy"] for run in runs for row in run["history"][name] if row["privacy"]]
        entry = {"label": label_of(name), "final_accuracy": mean_std(finals), "minus_fedavg": paired(finals, fedavg)}
        if name.startswith("dpfedavg:") and name != CLIP_ONLY and CLIP_ONLY in config["strategies"]:
            entry["minus_clip_only"] = paired(finals, finals_of(CLIP_ONLY))
        if spent:
            z = parse_spec(name).values["noise_multiplier"]
            clip = float(np.mean([s["clip"] for s in spent]))
            entry.update(noise_multiplier=z, clip=round(clip, 4), noise_std=z * clip / cohort)
            entry["epsilon"] = spent_epsilon(z, runs)
        rows[name] = entry
    return rows


def spent_epsilon(z, runs):
    """ε after the runs' rounds at multiplier z, Poisson rate C over their K clients, at δ = K^−1.1 (privacy.delta_for):
    computed here, not read from the histories, so that runs recorded at another δ are reported at this one."""
    config = runs[0]["config"]
    delta = privacy.delta_for(config["num_clients"])
    spent = privacy.epsilon(z, config["fraction"], runs[0]["rounds_completed"], delta)
    return spent if math.isfinite(spent) else None


def cohort_for(rate, rounds, clip, sigma):
    """(z, clients a round, population) for ε = TARGET_EPSILON at Poisson rate `rate` with noise σ on the mean, at
    δ = N^−1.1 for the population N = clients / rate: N and δ depend on each other, so the population is iterated
    from K = 100 until it stops moving (δ enters ε through its logarithm: a few steps)."""
    population = 100
    for _ in range(COHORT_ITERATIONS):
        z = privacy.noise_for_epsilon(TARGET_EPSILON, rate, rounds, privacy.delta_for(population))
        clients = math.ceil(z * clip / sigma)
        population, previous = max(2, round(clients / rate)), population
        if population == previous:
            break
    return z, clients, population


def cohort_needed(rows, rounds):
    """The trend's answer: the largest σ within TARGET_LOSS of FedAvg, and the clients a round for ε = 1."""
    within = [
        row["noise_std"]
        for name, row in rows.items()
        if name.startswith("dpfedavg:") and row["noise_multiplier"] > 0 and -row["minus_fedavg"]["mean"] <= TARGET_LOSS
    ]
    if not within:
        return {"noise_std_within": None, "clients_per_round": None}
    sigma = max(within)
    clip = rows[next(n for n in rows if n.startswith("dpfedavg:"))]["clip"]
    needed = {}
    for rate in COHORT_RATES:
        z, clients, population = cohort_for(rate, rounds, clip, sigma)
        needed[f"{rate:g}"] = {
            "noise_multiplier": round(z, 4),
            "clients_per_round": clients,
            "population": population,
            "delta": privacy.delta_for(population),
        }
    return {"noise_std_within": sigma, "clients_per_round": needed}


def mean_of_measured(values):
    """The mean over clients of a measure, leaving out the clients it could not be measured on (None)."""
    measured = [v for v in values if v is not None]
    return float(np.mean(measured)) if measured else np.nan


def leakage_summary(found):
    """mean ± std over seeds of every leakage measure."""

    def over(pick):
        return mean_std([pick(f) for f in found])

    starts = found[0]["label_inference"]
    return {
        "label_inference": starts
        and {
            start: {
                z: {
                    k: over(lambda f, s=start, z=z, k=k: 100 * f["label_inference"][s][z][k])
                    for k in ("exact", "recall")
                }
                for z in by_z
            }
            for start, by_z in starts.items()
        },
        **{
            key: {
                "local": over(lambda f, k=key: 100 * mean_of_measured(f[k]["local"])),
                "global": {
                    name: over(lambda f, k=key, n=name: 100 * mean_of_measured(f[k]["global"][n]))
                    for name in found[0][key]["global"]
                },
            }
            for key in MEMBERSHIP_MEASURES
            if all(key in f for f in found)  # runs measured before the TPR was recorded have only the AUC
        },
    }


def summarize(scenario_runs):
    """{scenario: (label, [results per seed], [fuga per seed])} -> what privacidad.json holds."""
    config = {"delta_exponent": DP_DELTA_EXPONENT, "target_epsilon": TARGET_EPSILON, "target_loss": TARGET_LOSS}
    summary = {"config": config}
    summary["scenarios"] = {}
    for name, (label, runs, found) in scenario_runs.items():
        rows = strategy_rows(runs)
        config = runs[0]["config"]
        summary["scenarios"][name] = {
            "label": label,
            "seeds": [run["config"]["seed"] for run in runs],
            "setting": {k: config[k] for k in ("num_clients", "fraction", "sampling", "epochs", "batch_size")},
            "rounds": runs[0]["rounds_completed"],
            "delta": privacy.delta_for(config["num_clients"]),
            "strategies": rows,
            "cohort": cohort_needed(rows, runs[0]["rounds_completed"]),
            **leakage_summary(found),
        }
    return summary


def plot_summary(summary):
    """Accuracy against the noise on the mean update (ε beside each point), label inference, membership AUC."""
    scenarios = summary["scenarios"]
    fig, axes = plt.subplots(1, 3, figsize=(18, 5.5))
    names = ["local"] + list(dict.fromkeys(n for s in scenarios.values() for n in s["membership_auc"]["global"]))
    epsilon_at = epsilon_by_noise(scenarios.values())
    for index, (name, scenario) in enumerate(scenarios.items()):
        marker, color = "os^v"[index % 4], f"C{index}"
        plot_accuracy_against_noise(axes[0], scenario, marker, color, annotate=epsilon_at is None)
        for start, style in (("initial", "--"), ("final", "-")):
            by_z = (scenario["label_inference"] or {}).get(start)
            if by_z:
                axes[1].errorbar(
                    [float(z) for z in by_z],
                    [v["exact"]["mean"] for v in by_z.values()],
                    yerr=[v["exact"]["std"] or 0 for v in by_z.values()],
                    fmt=marker + style,
                    color=color,
                    capsize=3,
                    label=f"{scenario['label']}, desde el modelo {'inicial' if start == 'initial' else 'final'}",
                )
        auc = {"local": scenario["membership_auc"]["local"], **scenario["membership_auc"]["global"]}
        rows = [len(names) - 1 - names.index(n) + 0.2 * (index - 1) for n in auc]
        axes[2].errorbar(
            [v["mean"] for v in auc.values()],
            rows,
            xerr=[v["std"] or 0 for v in auc.values()],
            fmt=marker,
            color=color,
            capsize=3,
            label=scenario["label"],
        )
    axes[0].set_xscale("log")
    axes[0].set_ylim(0, 100)
    axes[0].set_xlabel("ruido sobre la actualización media, σ = z·S/(q·N) (escala log)")
    axes[0].set_ylabel("exactitud final en test (%), media ± d.t. por semilla")
    exponent = summary["config"]["delta_exponent"]
    axes[0].set_title(f"DP-FedAvg: exactitud frente al ruido (ε con δ = N^−{exponent:g})", pad=28)
    if epsilon_at:
        top = axes[0].secondary_xaxis("top")
        top.set_xticks(list(epsilon_at), [f"{e:.3g}" for e in epsilon_at.values()], fontsize=8)
        top.set_xlabel("ε gastado en la ejecución (el mismo en todas las particiones)", fontsize=8)
    axes[1].set_xscale("symlog", linthresh=0.01)
    axes[1].set_ylim(0, 100)
    axes[1].set_xlabel("z del ruido que añade el propio cliente (0: solo recorte a S)")
    axes[1].set_ylabel("clientes cuyas clases se nombran exactamente (%)")
    axes[1].set_title("Inferencia de etiquetas desde una actualización")
    axes[2].set_yticks(np.arange(len(names))[::-1], ["modelo local"] + [short_label(n) for n in names[1:]])
    axes[2].axvline(50, color="gray", ls=":")
    axes[2].set_xlabel("AUC del ataque de pertenencia (%); 50 = azar")
    axes[2].set_title("Pertenencia (Yeom et al.): modelo local y modelos globales")
    for ax in axes:
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def epsilon_by_noise(scenarios):
    """{σ: ε} of every noisy DP-FedAvg row, or None when one σ spends different ε in different scenarios."""
    found = {}
    noisy = [
        row
        for scenario in scenarios
        for name, row in scenario["strategies"].items()
        if name.startswith("dpfedavg:") and row["noise_multiplier"] > 0
    ]
    for row in noisy:
        if found.setdefault(row["noise_std"], row["epsilon"]) != row["epsilon"]:
            return None
    return dict(sorted(found.items()))


def plot_accuracy_against_noise(ax, scenario, marker, color, annotate=True):
    """DP-FedAvg's final accuracy against σ (with each point's ε if `annotate`); FedAvg and clipping as lines."""
    rows = scenario["strategies"]
    noisy = [r for n, r in rows.items() if n.startswith("dpfedavg:") and r["noise_multiplier"] > 0]
    ax.errorbar(
        [r["noise_std"] for r in noisy],
        [r["final_accuracy"]["mean"] for r in noisy],
        yerr=[r["final_accuracy"]["std"] or 0 for r in noisy],
        fmt=marker + "-",
        color=color,
        capsize=3,
        label=f"{scenario['label']}: DP-FedAvg",
    )
    for index, r in enumerate(noisy if annotate else []):
        ax.annotate(
            f"ε={r['epsilon']:.3g}",
            (r["noise_std"], r["final_accuracy"]["mean"]),
            textcoords="offset points",
            xytext=(0, -16 if index % 2 else 8),
            ha="center",
            fontsize=7,
            color=color,
        )
    ax.axhline(rows["fedavg"]["final_accuracy"]["mean"], color=color, ls=":", label=f"{scenario['label']}: FedAvg")
    if "dpfedavg:0" in rows:
        clipped = rows["dpfedavg:0"]["final_accuracy"]["mean"]
        ax.axhline(clipped, color=color, ls="--", lw=0.8, label=f"{scenario['label']}: solo recorte (z = 0)")


def short_label(name):
    """A strategy of the study, in a few characters: FedAvg, DP z = 0.1, DP adapt. z = 0.01."""
    row = parse_spec(name)
    if not row.strategy.private:
        return row.strategy.label
    adaptive = " adapt." if "initial_clip" in row.values else ""
    return f"DP{adaptive} z = {row.values['noise_multiplier']:g}"


def write_summary(summary, out_dir=SUMMARY_DIR):
    return write_json_and_figure(out_dir / SUMMARY_FILE, summary, out_dir / SUMMARY_FIGURE, plot_summary(summary))
