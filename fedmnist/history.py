"""The multi-round history format: simulacion.json, its curves, and the checkpoints of a run in progress.

One writer for every multi-round run, the project's own simulation and the Flower
ServerApp alike, so every field means the same in both:

    config            the run's settings (`run_config`)
    rounds_completed  R so far
    history           {strategy name: [row per round]}, rows made by `round_row`:
        round, accuracy, loss, macro_f1    the global model on the common test set after the round
        seconds           wall time of the round for this strategy: local training, aggregation, drift, evaluation
                          (the simulation runs the strategies of a round together and gives each an equal share)
        clients           the client ids (1..K) sampled in the round
        rejected          the client ids whose update failed validation and was left out
        rejected_unknown  further replies left out that were no client's one reply: an invalid client id,
                          or a second reply (Flower only; always 0 in the simulation)
        drift             the accepted updates' drift (fedmnist/drift.py): each client's distance to the
                          round's global model, their mean pairwise cosine, the aggregate update's norm
        bytes_received_per_client, bytes_sent_per_client   what each client receives and sends: the model
                          (SCAFFOLD: the model and a control variate of the same size)
        privacy           DP-FedAvg's rows (fedmnist/privacy.py): the clipping norm S used in the round, and the
                          ε spent after it at δ (None for the other strategies)
    summary           per strategy: final accuracy, rounds to each target, total seconds (`summarize`)

A run in progress keeps its state in PARTIAL_FILE and, for its last round, each
strategy's global weights and server state (StrategyState) under
pesos_globales/<digest of the config>/; finished results are replaced only when
a new run finishes.
"""

import hashlib
import json
from dataclasses import dataclass, field

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

from fedmnist.data import read_slots_archive, read_weights_archive, slots_archive_bytes, weights_archive_bytes
from fedmnist.defaults import ACCURACY_TARGETS, OPTIMIZER, SAMPLING
from fedmnist.evaluation import legend_below, log_axis, save_figure
from fedmnist.files import OutputSet, write_bytes_atomically, write_text_atomically
from fedmnist.partition import PartitionError
from fedmnist.strategies import label_of, parse_spec

RESULTS_FILE, FIGURE_FILE = "simulacion.json", "simulacion.png"
PARTIAL_FILE = "simulacion.en_curso.json"  # the state of a run that has not finished; --resume continues it
CHECKPOINT_DIR = "pesos_globales"


class HistoryError(PartitionError):
    """Results or a state in an output folder that cannot be used as asked; the message says what to do."""


@dataclass(frozen=True)
class StrategyState:
    """Where one strategy stands after a round: what a resumed run needs to continue it exactly."""

    weights: list  # the global model
    server: dict = field(default_factory=dict)  # the server step's state: {slot: [arrays]} (momentum, moments, c)
    clients: dict = field(default_factory=dict)  # {client id: [arrays]}: SCAFFOLD's cᵢ, which the clients keep

    def slots(self):
        return {
            **{f"server_{k}": v for k, v in self.server.items()},
            **{f"client_{c}": v for c, v in self.clients.items()},
        }

    @classmethod
    def from_slots(cls, weights, slots):
        server = {k.removeprefix("server_"): v for k, v in slots.items() if k.startswith("server_")}
        clients = {int(k.removeprefix("client_")): v for k, v in slots.items() if k.startswith("client_")}
        return cls(weights, server, clients)


def run_config(
    *,
    runtime,
    data,
    manifest,
    fraction,
    epochs,
    batch_size,
    learning_rate,
    strategies,
    seed,
    scenario=None,
    attack=None,
    malicious=0,
    parameters=None,
    optimizer=OPTIMIZER,
    training_threads=None,
    sampling=SAMPLING,
    trainer="per-client",
):
    """The config block of a history: the same keys for every runtime."""
    return {
        "runtime": runtime,
        "scenario": scenario,
        "data": data,
        "partition": manifest["partition"],
        "num_clients": manifest["num_clients"],
        "fraction": fraction,
        "sampling": sampling,
        "epochs": epochs,
        "batch_size": batch_size,
        "optimizer": optimizer,
        "learning_rate": learning_rate,
        "trainer": trainer,  # "batched" (fedmnist/batched_training.py) or "per-client" (LocalTrainer)
        # 1: each client trained in a single-thread worker process (the same result for any number of workers);
        # None: TensorFlow's default threading
        "training_threads": training_threads,
        "strategies": list(strategies),
        "parameters": parameters or {},
        "attack": attack,
        "malicious": malicious,
        "seed": seed,
        "partition_seed": manifest["seed"],
    }


# Config keys added after runs were recorded, with the value those runs implied: such a run still resumes.
ADDED_CONFIG_KEYS = {"sampling": "fixed", "trainer": "per-client"}


def upgraded(config):
    """A recorded config with the keys added since, as run_config writes it today."""
    return {**ADDED_CONFIG_KEYS, **config} if isinstance(config, dict) else config


def new_history(config):
    return {"config": config, "rounds_completed": 0, "history": {name: [] for name in config["strategies"]}}


def round_row(
    round_number, metrics, seconds, clients, rejected, model_bytes, rejected_unknown=0, drift=None, privacy=None
):
    """One round of one strategy, as every runtime records it (`drift` from fedmnist.drift.round_drift)."""
    return {
        "round": round_number,
        "accuracy": metrics["accuracy"],
        "validation_accuracy": metrics.get("validation_accuracy"),  # None: no validation set in the split
        "loss": metrics["loss"],
        "macro_f1": metrics["macro_f1"],
        "seconds": round(seconds, 2),
        "clients": sorted(clients),
        "rejected": sorted(rejected),
        "rejected_unknown": rejected_unknown,
        "bytes_received_per_client": model_bytes,
        "bytes_sent_per_client": model_bytes,
        "drift": drift,
        "privacy": privacy,
    }


def rounds_to(rows, target):
    return next((row["round"] for row in rows if row["accuracy"] >= target), None)


LAST_ROUNDS = 5  # the endpoint that a last round's swing does not decide: the mean of the last 5 rounds


def mean_of_last(rows, key, count=LAST_ROUNDS):
    """The mean of `key` over the last `count` rounds (None if any of them lacks it)."""
    values = [row.get(key) for row in rows[-count:]]
    return float(np.mean(values)) if values and None not in values else None


def summarize(history):
    """Final accuracy, the mean of the last rounds (test, and validation where recorded), rounds to each target and
    total seconds, per strategy."""
    return {
        name: {
            "final_accuracy": rows[-1]["accuracy"],
            "last_rounds_accuracy": mean_of_last(rows, "accuracy"),
            "last_rounds_validation_accuracy": mean_of_last(rows, "validation_accuracy"),
            **{f"rounds_to_{int(100 * t)}": rounds_to(rows, t) for t in ACCURACY_TARGETS},
            "seconds": round(sum(row["seconds"] for row in rows), 1),
        }
        for name, rows in history.items()
    }


def run_digest(config):
    """A short name for one configuration: checkpoints of different runs never share a file."""
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12]


def checkpoint_path(out_dir, config, strategy_name, round_number, what="pesos"):
    name = f"{strategy_name.replace(':', '_')}_{what}_ronda_{round_number:03d}.npz"
    return out_dir / CHECKPOINT_DIR / run_digest(config) / name


def save_state(out_dir, results, states):
    """Checkpoint one finished round: each strategy's StrategyState, then PARTIAL_FILE (finished results stay).

    The previous round's checkpoints are removed once this round's are written.
    """
    round_number = results["rounds_completed"]
    written = set()
    for name, state in states.items():
        path = checkpoint_path(out_dir, results["config"], name, round_number)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomically(path, weights_archive_bytes(state.weights))
        written.add(path)
        if state.slots():
            path = checkpoint_path(out_dir, results["config"], name, round_number, "estado")
            write_bytes_atomically(path, slots_archive_bytes(state.slots()))
            written.add(path)
    write_text_atomically(out_dir / PARTIAL_FILE, json.dumps(results, indent=2) + "\n")
    for stale in set(path.parent.glob("*.npz")) - written:
        stale.unlink(missing_ok=True)


def check_fresh_start(out_dir, force):
    """A new run may not replace finished or interrupted results unless told to (--force)."""
    for name, what in ((RESULTS_FILE, "finished results"), (PARTIAL_FILE, "an interrupted run")):
        if (out_dir / name).exists() and not force:
            raise HistoryError(
                f"{out_dir / name} holds {what}; pass --resume to continue them, --force to start "
                f"over (they stay until the new run finishes), or choose another --out"
            )


def load_state(out_dir, config, rounds_wanted=None):
    """The results and {strategy: StrategyState} to resume from: an interrupted run, else finished results to extend.

    Finished results that already have `rounds_wanted` rounds need no checkpoint
    (a fresh clone has none): they come back with states None.
    """
    path = out_dir / PARTIAL_FILE if (out_dir / PARTIAL_FILE).is_file() else out_dir / RESULTS_FILE
    if not path.is_file():
        raise HistoryError(f"{out_dir}: nothing to resume; run without --resume first")
    try:
        results = json.loads(path.read_text())
        recorded = results["config"]
        same_config = upgraded(recorded) == config
        rounds, history = int(results["rounds_completed"]), results["history"]
        if same_config and (rounds < 1 or set(history) != set(config["strategies"])):
            raise ValueError("rounds or strategies do not match")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError):
        raise HistoryError(f"{path}: not a simulation state this project wrote; run again with --force") from None
    if not same_config:
        raise HistoryError(
            f"{path}: was written with another configuration; resume with the same options or use another --out"
        )
    results["config"] = config
    results.pop("summary", None)
    if path.name == RESULTS_FILE and rounds_wanted is not None and rounds >= rounds_wanted:
        return results, None
    states = {}
    for name in history:
        checkpoint = checkpoint_path(out_dir, recorded, name, rounds)  # where the recorded run saved them
        extra = checkpoint_path(out_dir, recorded, name, rounds, "estado")
        try:
            if not extra.is_file() and parse_spec(name).strategy.multi_round_only:
                raise OSError(f"no {extra.name}")
            slots = read_slots_archive(extra) if extra.is_file() else {}
            states[name] = StrategyState.from_slots(read_weights_archive(checkpoint), slots)
        except (OSError, ValueError) as err:
            raise HistoryError(
                f"{checkpoint}: cannot resume from this checkpoint ({type(err).__name__}); run again with --force"
            ) from None
    return results, states


def write_results(out_dir, results, title, extra_files=()):
    """Add the summary, then replace RESULTS_FILE, its curves FIGURE_FILE and `extra_files` ((name, bytes)) together.

    The state of the run in progress (PARTIAL_FILE) is removed in the same step.
    """
    results["summary"] = summarize(results["history"])
    out_dir.mkdir(parents=True, exist_ok=True)
    with OutputSet(remove=[out_dir / PARTIAL_FILE]) as outputs:
        outputs.write_text(out_dir / RESULTS_FILE, json.dumps(results, indent=2) + "\n")
        save_figure(plot_history(results, title), outputs.stage(out_dir / FIGURE_FILE))
        for name, data in extra_files:
            outputs.write_bytes(out_dir / name, data)


def plot_history(results, title):
    """Test accuracy (axis from 0), test loss and (where recorded) the clients' drift per round, a line per strategy.

    Loss and drift are on log scales: a diverging strategy would otherwise flatten every other line.
    """
    has_drift = any(row.get("drift") for rows in results["history"].values() for row in rows)
    fig, axes = plt.subplots(1, 3 if has_drift else 2, figsize=(16 if has_drift else 12, 4.5))
    for name, rows in results["history"].items():
        rounds = [row["round"] for row in rows]
        label = label_of(name, short=True)
        axes[0].plot(rounds, [100 * row["accuracy"] for row in rows], "o-", label=label, markersize=3)
        axes[1].plot(rounds, [row["loss"] for row in rows], "o-", label=label, markersize=3)
        drifted = [(row["round"], row["drift"]["mean_client_distance"]) for row in rows if row.get("drift")]
        if drifted:
            axes[2].plot(*zip(*drifted), "o-", label=label, markersize=3)
    for target in ACCURACY_TARGETS:
        axes[0].axhline(100 * target, color="gray", linestyle=":", linewidth=1)
    axes[0].set_ylim(0, 100)
    axes[0].set_ylabel("exactitud en test (%)")
    axes[1].set_ylabel("pérdida en test (escala log.)")
    log_axis(axes[1])
    if has_drift:
        axes[2].set_ylabel("deriva media de los clientes ‖w_k − w‖ (escala log.)")
        log_axis(axes[2])
    for ax in axes:
        ax.set_xlabel("ronda")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    legend_below(fig, axes[0])
    return fig
