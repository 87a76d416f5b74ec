"""Multi-round federated learning on one machine: R rounds of sample → local training → aggregation.

    python federated_simulation.py --scenario curso-iid
    python federated_simulation.py --data data --rounds 10 --strategies fedavg fedprox:0.01 fedmed

Each round samples a fraction C of the K clients (the same clients for every
strategy), trains each with the project's LocalTrainer from that strategy's
current global weights, and aggregates with the rules of global_aggregation.py.
Records per round and strategy: test accuracy and loss, wall time, and the bytes
a client sends and receives. Each round's global weights are saved atomically;
--resume continues an interrupted run to the same result.
"""

import argparse
import hashlib
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from atomic import OutputSet, write_bytes_atomically, write_text_atomically
from attacks import ATTACKS, MODEL_POISONING, flip_labels
from global_aggregation import METHODS, AggregationError, aggregate, attack_updates
from split_data import SCENARIOS_DIR, PartitionError, ensure_split, load_client_data, load_initial_weights, load_test_data, npz_bytes, read_manifest
from updates import ClientUpdate, UpdateError, validate_weights

PROJECT_DIR = Path(__file__).resolve().parent
TARGETS = (0.97, 0.99)
RESULTS_FILE, FIGURE_FILE = "simulacion.json", "simulacion.png"  # what every multi-round run writes, Flower's included
PARTIAL_FILE = "simulacion.en_curso.json"  # the state of a run that has not finished; --resume continues it

# Named scenarios: the partition they need and the simulation's settings (the paper's symbols).
SCENARIOS = {
    "curso-iid": {"split": {"clients": 5, "partition": "iid"},
                  "run": {"rounds": 10, "fraction": 1.0, "epochs": 1, "batch_size": 64, "strategies": ["fedavg", "fedprox:0.01", "fedmed"]}},
    "curso-dirichlet": {"split": {"clients": 5, "partition": "dirichlet", "alpha": 0.1},
                        "run": {"rounds": 10, "fraction": 1.0, "epochs": 1, "batch_size": 64, "strategies": ["fedavg", "fedprox:0.01", "fedmed"]}},
    "fedavg-iid": {"split": {"clients": 100, "partition": "iid"},
                   "run": {"rounds": 10, "fraction": 0.1, "epochs": 5, "batch_size": 10, "strategies": ["fedavg", "fedprox:0.01"]}},
    "fedavg-shards": {"split": {"clients": 100, "partition": "shards", "shards_per_client": 2},
                      "run": {"rounds": 10, "fraction": 0.1, "epochs": 5, "batch_size": 10, "strategies": ["fedavg", "fedprox:0.01"]}},
}


@dataclass(frozen=True)
class Strategy:
    name: str  # as given on the command line: fedavg, fedprox:0.01, ...
    method: object  # a global_aggregation.Method
    mu: float

    @classmethod
    def parse(cls, spec, default_mu):
        key, _, mu = spec.partition(":")
        methods = {m.key: m for m in METHODS}
        if key not in methods:
            raise ValueError(f"--strategies {spec}: choose from {', '.join(methods)} (fedprox may carry mu: fedprox:0.01)")
        if key != "fedprox":
            if mu:
                raise ValueError(f"--strategies {spec}: only fedprox takes a mu")
            return cls(key, methods[key], 0.0)
        try:
            value = float(mu) if mu else float(default_mu)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"--strategies {spec}: mu must be a finite number >= 0, as in fedprox:0.01")
        return cls(f"fedprox:{mu or default_mu}", methods[key], value)


def sample_clients(num_clients, fraction, seed, round_number):
    """The clients of one round: max(1, round(C·K)) of them, drawn from (seed, round) alone."""
    count = max(1, int(round(fraction * num_clients)))
    rng = np.random.default_rng([seed, round_number])
    return sorted(int(c) + 1 for c in rng.choice(num_clients, size=count, replace=False))


def rounds_to(history, target):
    return next((row["round"] for row in history if row["accuracy"] >= target), None)


def train_round(trainer, clients, sampled, global_weights, strategy, args, round_number, malicious):
    """Local training of the sampled clients for one strategy; returns (updates, rejected ids)."""
    from client import client_seed

    updates, rejected = [], []
    for client_id in sampled:
        x, y = clients[client_id]
        attacking = client_id in malicious
        trainer.train(x, flip_labels(y) if attacking and args.attack == "label_flip" else y,
                      initial_weights=global_weights, epochs=args.epochs, batch_size=args.batch_size,
                      seed=client_seed(args.seed, round_number, client_id), mu=strategy.mu, verbose=0)
        try:
            weights = validate_weights(trainer.model.get_weights(), [w.shape for w in global_weights], f"client {client_id}")
        except UpdateError:
            rejected.append(client_id)
            continue
        update = [ClientUpdate(Path(f"client_{client_id}"), client_id, weights, len(x), None)]
        if attacking and args.attack in MODEL_POISONING:
            update, attacked_out = attack_updates(update, global_weights, args.attack, {client_id}, None,
                                                  seed=[args.seed, round_number, client_id, 1])
            rejected += [client_id for _ in attacked_out]
        updates += update
    return updates, rejected


def run_rounds(args, strategies, trainer, clients, test_set, results, global_weights):
    """Play the rounds after results["rounds_completed"], saving the state after each one."""
    from evaluation import evaluate_weights

    model_bytes = sum(w.nbytes for w in next(iter(global_weights.values())))
    malicious = set(range(1, args.malicious + 1))
    first = results["rounds_completed"] + 1
    for round_number in tqdm(range(first, args.rounds + 1), desc="rounds", unit="round", initial=first - 1, total=args.rounds):
        sampled = sample_clients(len(clients), args.fraction, args.seed, round_number)
        for strategy in strategies:
            started = time.perf_counter()
            updates, rejected = train_round(trainer, clients, sampled, global_weights[strategy.name], strategy, args, round_number, malicious)
            try:
                global_weights[strategy.name], _ = aggregate(strategy.method, updates, args.trim, args.krum_f)
            except (AggregationError, ValueError) as err:
                tqdm.write(f"round {round_number} {strategy.name}: kept the previous global model ({err})")
            metrics, _ = evaluate_weights(trainer.model, global_weights[strategy.name], *test_set)
            results["history"][strategy.name].append({
                "round": round_number, "accuracy": metrics["accuracy"], "loss": metrics["loss"], "macro_f1": metrics["macro_f1"],
                "seconds": round(time.perf_counter() - started, 2), "clients": sampled, "rejected": rejected,
                "bytes_received_per_client": model_bytes, "bytes_sent_per_client": model_bytes,
            })
        results["rounds_completed"] = round_number
        save_state(args.out, results, global_weights)
        tqdm.write(f"round {round_number}: " + ", ".join(f"{s.name} {100 * results['history'][s.name][-1]['accuracy']:.2f}%" for s in strategies))


def summarize(history):
    """Final accuracy, rounds to each target and total seconds, per strategy."""
    return {
        name: {"final_accuracy": rows[-1]["accuracy"], **{f"rounds_to_{int(100 * t)}": rounds_to(rows, t) for t in TARGETS},
               "seconds": round(sum(row["seconds"] for row in rows), 1)}
        for name, rows in history.items()
    }


def print_summary(summary):
    print(f"\n{'strategy':<16} {'final acc':>9} {'rounds to 97%':>14} {'rounds to 99%':>14} {'seconds':>8}")
    for name, row in summary.items():
        print(f"{name:<16} {100 * row['final_accuracy']:>8.2f}% {str(row['rounds_to_97'] or '-'):>14} {str(row['rounds_to_99'] or '-'):>14} {row['seconds']:>8.0f}")


def run_digest(config):
    """A short name for one configuration: checkpoints of different runs never share a file."""
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12]


def checkpoint_path(out_dir, config, strategy_name, round_number):
    return out_dir / "pesos_globales" / run_digest(config) / f"{strategy_name.replace(':', '_mu')}_ronda_{round_number:03d}.npz"


def save_state(out_dir, results, global_weights):
    """Checkpoint one finished round: each strategy's global weights, then PARTIAL_FILE (finished results stay untouched)."""
    round_number = results["rounds_completed"]
    for name, weights in global_weights.items():
        path = checkpoint_path(out_dir, results["config"], name, round_number)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomically(path, npz_bytes(**{f"w{i:02d}": w for i, w in enumerate(weights)}))
    write_text_atomically(out_dir / PARTIAL_FILE, json.dumps(results, indent=2) + "\n")


def write_results(out_dir, results, title, extra_files=()):
    """Add the summary, then replace RESULTS_FILE, its curves FIGURE_FILE and `extra_files` ((name, bytes)) together.

    The state of the run in progress (PARTIAL_FILE) is removed in the same step.
    """
    from evaluation import save_figure

    results["summary"] = summarize(results["history"])
    out_dir.mkdir(parents=True, exist_ok=True)
    with OutputSet(remove=[out_dir / PARTIAL_FILE]) as outputs:
        outputs.write_text(out_dir / RESULTS_FILE, json.dumps(results, indent=2) + "\n")
        save_figure(plot_history(results, title), outputs.stage(out_dir / FIGURE_FILE))
        for name, data in extra_files:
            outputs.write_bytes(out_dir / name, data)


def check_fresh_start(out_dir, force):
    """A new run may not replace finished or interrupted results unless told to (--force)."""
    for name, what in ((RESULTS_FILE, "finished results"), (PARTIAL_FILE, "an interrupted run")):
        if (out_dir / name).exists() and not force:
            raise PartitionError(f"{out_dir / name} holds {what}; pass --resume to continue them, --force to start over "
                                 f"(they stay until the new run finishes), or choose another --out")


def load_state(out_dir, config):
    """The results and global weights to resume from: an interrupted run, else finished results to extend."""
    path = out_dir / PARTIAL_FILE if (out_dir / PARTIAL_FILE).is_file() else out_dir / RESULTS_FILE
    if not path.is_file():
        raise PartitionError(f"{out_dir}: nothing to resume; run without --resume first")
    try:
        results = json.loads(path.read_text())
        same_config = results["config"] == config
        rounds, history = int(results["rounds_completed"]), results["history"]
        if same_config and (rounds < 1 or set(history) != set(config["strategies"])):
            raise ValueError("rounds or strategies do not match")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError):
        raise PartitionError(f"{path}: not a simulation state this script wrote; run again with --force") from None
    if not same_config:
        raise PartitionError(f"{path}: was written with another configuration; resume with the same options or use another --out")
    global_weights = {}
    for name in history:
        checkpoint = checkpoint_path(out_dir, config, name, rounds)
        try:
            with np.load(checkpoint, allow_pickle=False) as npz:
                global_weights[name] = [npz[key] for key in sorted(npz.files)]
        except (OSError, ValueError) as err:
            raise PartitionError(f"{checkpoint}: cannot resume from this checkpoint ({type(err).__name__}); run again with --force") from None
    results.pop("summary", None)
    return results, global_weights


def plot_history(results, title):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for name, history in results["history"].items():
        rounds = [row["round"] for row in history]
        axes[0].plot(rounds, [100 * row["accuracy"] for row in history], "o-", label=name, markersize=4)
        axes[1].plot(rounds, [row["loss"] for row in history], "o-", label=name, markersize=4)
    for target in TARGETS:
        axes[0].axhline(100 * target, color="gray", linestyle=":", linewidth=1)
    lowest = min((row["accuracy"] for h in results["history"].values() for row in h), default=0.9)
    axes[0].set_ylim(max(0, 100 * lowest - 2), 100)
    axes[0].set_ylabel("exactitud en test (%)")
    axes[1].set_ylabel("pérdida en test")
    axes[1].set_yscale("log")
    for ax in axes:
        ax.set_xlabel("ronda")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", choices=SCENARIOS, help="a named scenario: splits its data if needed and sets the defaults below")
    parser.add_argument("--data", type=Path, help="split_data.py's output folder (default: data/, or data/escenarios/<scenario>)")
    parser.add_argument("--out", type=Path, help="output folder (default: results/simulacion/<scenario or 'run'>)")
    parser.add_argument("--rounds", "-R", type=int, help="R, communication rounds (default: 10)")
    parser.add_argument("--fraction", "-C", type=float, help="C, fraction of clients sampled per round (default: 1.0)")
    parser.add_argument("--epochs", "-E", type=int, help="E, local epochs per round (default: 1)")
    parser.add_argument("--batch-size", "-B", type=int, help="B, local batch size (default: 64)")
    parser.add_argument("--learning-rate", "--lr", type=float, default=1e-3, help="local Adam learning rate (default: 0.001)")
    parser.add_argument("--mu", type=float, default=0.01, help="mu for a bare 'fedprox' strategy (default: 0.01)")
    parser.add_argument("--strategies", nargs="+", help="fedavg, fedprox[:mu], fedmed, trimmed_mean, krum (default: fedavg fedprox fedmed)")
    parser.add_argument("--trim", type=float, default=0.2, help="beta of the trimmed mean (default: 0.2)")
    parser.add_argument("--krum-f", type=int, default=1, help="f of Krum (default: 1)")
    parser.add_argument("--attack", choices=ATTACKS, help="simulate M malicious clients with this attack")
    parser.add_argument("--malicious", "-M", type=int, default=0, help="M, malicious clients: the lowest ids (default: 0)")
    parser.add_argument("--seed", type=int, default=42, help="seed of client sampling and local training (default: 42)")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run in --out, or extend finished results to more --rounds")
    parser.add_argument("--force", action="store_true", help="start over in an --out that holds results (they stay until the new run finishes)")
    args = parser.parse_args(argv)
    scenario = SCENARIOS.get(args.scenario, {"run": {}})["run"]
    defaults = {"rounds": 10, "fraction": 1.0, "epochs": 1, "batch_size": 64, "strategies": ["fedavg", "fedprox", "fedmed"], **scenario}
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    label = args.scenario or "run"
    args.data = args.data or (SCENARIOS_DIR / args.scenario if args.scenario else PROJECT_DIR / "data")
    args.out = args.out or PROJECT_DIR / "results" / "simulacion" / label
    return args


def ensure_scenario_data(args):
    """Split the scenario's partition into --data unless a matching one is there."""
    wanted = dict(SCENARIOS[args.scenario]["split"])
    ensure_split(args.data, wanted.pop("clients"), args.seed, **wanted)


def main(argv=None):
    args = parse_args(argv)
    try:
        strategies = [Strategy.parse(spec, args.mu) for spec in args.strategies]
        if len({s.name for s in strategies}) != len(strategies):
            raise ValueError(f"--strategies {' '.join(args.strategies)}: each strategy may appear once")
        for name, value, low in (("--rounds", args.rounds, 1), ("--epochs", args.epochs, 1), ("--batch-size", args.batch_size, 1)):
            if value < low:
                raise ValueError(f"{name} {value}: must be at least {low}")
        if not 0 < args.fraction <= 1:
            raise ValueError(f"--fraction {args.fraction}: must be in (0, 1]")
        if not (math.isfinite(args.learning_rate) and args.learning_rate > 0):
            raise ValueError(f"--learning-rate {args.learning_rate}: must be a positive number")
        if not (math.isfinite(args.trim) and 0 <= args.trim < 0.5):
            raise ValueError(f"--trim {args.trim}: must be in [0, 0.5)")
        if args.krum_f < 0:
            raise ValueError(f"--krum-f {args.krum_f}: must be at least 0")
        if args.resume and args.force:
            raise ValueError("--resume and --force: choose one")
        if args.scenario:
            ensure_scenario_data(args)
        manifest = read_manifest(args.data)
        num_clients = manifest["num_clients"]
        if not 0 <= args.malicious < num_clients or (args.malicious and not args.attack):
            raise ValueError(f"--malicious {args.malicious}: must be below K = {num_clients}, with --attack")
    except (ValueError, PartitionError) as err:
        sys.exit(f"federated_simulation.py: error: {err}")

    config = {"scenario": args.scenario, "data": str(args.data), "partition": manifest["partition"], "num_clients": num_clients,
              "fraction": args.fraction, "epochs": args.epochs, "batch_size": args.batch_size, "learning_rate": args.learning_rate,
              "strategies": [s.name for s in strategies], "trim": args.trim, "krum_f": args.krum_f, "attack": args.attack,
              "malicious": args.malicious, "seed": args.seed, "partition_seed": manifest["seed"]}
    print("federated_simulation: " + ", ".join(f"{k}={v}" for k, v in config.items()) + f", rounds={args.rounds}")

    from client import LocalTrainer
    from model import build_model

    try:
        initial_weights, _ = load_initial_weights(args.data)
        x_test, y_test = load_test_data(args.data)
        clients = {cid: load_client_data(args.data, cid) for cid in range(1, num_clients + 1)}
        if args.resume:
            results, global_weights = load_state(args.out, config)
        else:
            check_fresh_start(args.out, args.force)
            results = {"config": config, "rounds_completed": 0, "history": {s.name: [] for s in strategies}}
            global_weights = {s.name: initial_weights for s in strategies}
        args.out.mkdir(parents=True, exist_ok=True)
    except (PartitionError, OSError) as err:
        sys.exit(f"federated_simulation.py: error: {err}")

    trainer = LocalTrainer(build_model(), args.learning_rate)
    run_rounds(args, strategies, trainer, clients, (x_test, y_test), results, global_weights)
    title = f"{args.scenario or 'Simulación'}: K = {num_clients}, C = {args.fraction}, E = {args.epochs}, B = {args.batch_size}, partición {manifest['partition']}"
    partition_figure = args.data / "particion.png"
    write_results(args.out, results, title, [("particion.png", partition_figure.read_bytes())] if partition_figure.is_file() else [])
    print_summary(results["summary"])
    print(f"Wrote {args.out / RESULTS_FILE} and {args.out / FIGURE_FILE}")

if __name__ == "__main__":
    main()
