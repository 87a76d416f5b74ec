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

from fedmnist.data import (
    check_archive_sizes,
    read_slots_archive,
    read_weights_archive,
    slots_archive_bytes,
    weights_archive_bytes,
)
from fedmnist.defaults import ACCURACY_TARGETS, MAX_ROUNDS, OPTIMIZER, SAMPLING
from fedmnist.errors import FedMnistError
from fedmnist.evaluation import legend_below, log_axis, save_figure
from fedmnist.files import OutputSet, complete_interrupted_set, write_bytes_atomically, write_text_atomically
from fedmnist.mnist import sha256_bytes, sha256_file
from fedmnist.restricted_pickle import printable
from fedmnist.strategies import label_of, parse_spec
from model import weight_shapes

RESULTS_FILE, FIGURE_FILE = "simulacion.json", "simulacion.png"
CHECKPOINT_HASHES = "checkpoint_sha256"  # in the state of a run in progress: each checkpoint file's SHA-256
STATE_LIMIT = 256_000_000  # bytes: a state of MAX_ROUNDS rounds of several strategies stays far below
SAFE_MAGNITUDE = 1e30  # a checkpointed value beyond this (float32 ends at 3.4e38) overflows the next round
PARTIAL_FILE = "simulacion.en_curso.json"  # the state of a run that has not finished; --resume continues it
CHECKPOINT_DIR = "pesos_globales"


class HistoryError(FedMnistError, ValueError):
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


PLACE_KEYS = ("data",)  # where the split lies: a moved checkout or another clone runs the same federation


def same_run(recorded, config):
    """True if a recorded config describes the run `config` describes, wherever its data folder lies."""
    recorded = upgraded(recorded)
    return isinstance(recorded, dict) and {k: v for k, v in recorded.items() if k not in PLACE_KEYS} == {
        k: v for k, v in config.items() if k not in PLACE_KEYS
    }


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
    """A short name for one configuration, wherever its data folder lies (same_run): checkpoints of different runs
    never share a file."""
    identity = {key: value for key, value in config.items() if key not in PLACE_KEYS}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]


def checkpoint_path(out_dir, config, strategy_name, round_number, what="pesos"):
    name = f"{strategy_name.replace(':', '_')}_{what}_ronda_{round_number:03d}.npz"
    return out_dir / CHECKPOINT_DIR / run_digest(config) / name


def save_state(out_dir, results, states):
    """Checkpoint one finished round: each strategy's StrategyState, then PARTIAL_FILE (finished results stay).

    The previous round's checkpoints are removed once this round's are written.
    """
    round_number = results["rounds_completed"]
    written, hashes = set(), {}
    for name, state in states.items():
        files = [("pesos", weights_archive_bytes(state.weights))]
        if state.slots():
            files.append(("estado", slots_archive_bytes(state.slots())))
        for what, data in files:
            path = checkpoint_path(out_dir, results["config"], name, round_number, what)
            path.parent.mkdir(parents=True, exist_ok=True)
            write_bytes_atomically(path, data)
            written.add(path)
            hashes[path.name] = sha256_bytes(data)
    state = {**results, CHECKPOINT_HASHES: hashes}  # what load_state checks each checkpoint against
    write_text_atomically(out_dir / PARTIAL_FILE, json.dumps(state, indent=2) + "\n")
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
    complete_interrupted_set(out_dir)
    path = out_dir / PARTIAL_FILE if (out_dir / PARTIAL_FILE).is_file() else out_dir / RESULTS_FILE
    if not path.is_file():
        raise HistoryError(f"{out_dir}: nothing to resume; run without --resume first")
    try:
        if path.stat().st_size > STATE_LIMIT:
            raise ValueError("larger than any state this project writes")
        results = json.loads(path.read_text())
        recorded = results["config"]
        same_config = same_run(recorded, config)
        rounds, history = results["rounds_completed"], results["history"]
        hashes = results.pop(CHECKPOINT_HASHES, None)
        if same_config and (problem := history_problem(rounds, history, config["strategies"])):
            raise ValueError(problem)
    except (OSError, UnicodeDecodeError, KeyError, TypeError, ValueError, RecursionError, OverflowError):
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
            for file in (checkpoint, extra):
                if file.is_file() and hashes is not None and sha256_file(file) != hashes.get(file.name):
                    raise ValueError("its SHA-256 is not the one the state recorded")
            slots = read_checked_archive(extra, read_slots_archive) if extra.is_file() else {}
            weights = read_checked_archive(checkpoint, read_weights_archive)
            diverged = not np.isfinite(history[name][-1].get("loss", 0.0))  # recorded, so resumed as it was
            if problem := weights_problem(weights, [w for ws in slots.values() for w in ws], diverged):
                raise ValueError(problem)
            states[name] = StrategyState.from_slots(weights, slots)
        except (OSError, ValueError) as err:
            raise HistoryError(
                f"{checkpoint}: cannot resume from this checkpoint ({printable(err, 120)}); run again with --force"
            ) from None
    return results, states


def history_problem(rounds, history, strategies):
    """What makes a resumed history unusable (rounds, strategies and rows of the right types), or None."""
    if isinstance(rounds, bool) or not isinstance(rounds, int) or not 1 <= rounds <= MAX_ROUNDS:
        return "rounds_completed is not an integer in 1..MAX_ROUNDS"
    if not isinstance(history, dict) or set(history) != set(strategies):
        return "strategies do not match"
    for rows in history.values():
        if not isinstance(rows, list) or len(rows) != rounds:
            return "a strategy without one row per round"
        for number, row in enumerate(rows, start=1):
            accuracy = row.get("accuracy") if isinstance(row, dict) else None
            if row.get("round") != number if isinstance(row, dict) else True:
                return f"row {number} is not round {number}"
            if isinstance(accuracy, bool) or not isinstance(accuracy, (int, float)) or not 0 <= accuracy <= 1:
                return f"round {number}'s accuracy is not a number in [0, 1]"
    return None


def read_checked_archive(path, read):
    """An archive of ours read after its headers are checked (sizes, no Python objects): a tampered checkpoint
    cannot make it allocate more than an array of the model's could hold."""
    check_archive_sizes(path)
    return read(path)


def weights_problem(weights, slots, diverged=False):
    """What makes checkpointed weights unusable: other shapes than the model's, weights not float32 (states not
    float32 or float64), a value that is not finite or beyond float32's safe range (unless the history records that
    the strategy `diverged`: its last loss was not finite); None if they can resume."""
    if [tuple(w.shape) for w in weights] != [tuple(s) for s in weight_shapes()]:
        return "its weights do not have the model's shapes"
    for w in weights:
        if w.dtype != np.float32:
            return f"global weights of {w.dtype}, not float32"
    for w in slots:
        if w.dtype not in (np.float32, np.float64):  # a server optimizer's moments are kept in float64
            return f"a server or client state of {w.dtype}, not a float"
    for w in [*weights, *slots]:
        if not diverged and (not np.all(np.isfinite(w)) or np.max(np.abs(w), initial=0.0) > SAFE_MAGNITUDE):
            return "a value that is not finite or beyond 1e30"
    return None


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
