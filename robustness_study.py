"""Robustness study: every aggregation rule against faulty and malicious clients, with numbers.

    python robustness_study.py --data data --out results

Each client trains once (plain and FedProx), plus the label-flipped variant of
the clients that may attack; those updates are then reused for every attack,
every number M of attackers and every rule. Writes results/robustez.json and
results/robustez.png (with each honest local model's accuracy, for reference), and
prints the points each rule loses.
"""

import argparse
import json
import sys
import time
from pathlib import Path

from tqdm import tqdm

from atomic import check_writable, write_text_atomically
from attacks import ATTACKS, flip_labels
from client import DEFAULT_BATCH_SIZE, DEFAULT_EPOCHS, DEFAULT_MU
from global_aggregation import METHODS, AggregationError, aggregate, attack_updates
from split_data import (DEFAULT_DATA_DIR, PartitionError, load_client_data, load_initial_weights, load_test_data,
                        read_manifest)
from updates import ClientUpdate

PROJECT_DIR = Path(__file__).resolve().parent
RESULTS_FILE = "robustez.json"
FIGURE_FILE = "robustez.png"


def train_all_clients(args, manifest, initial_weights, malicious_pool):
    """Return {variant: {client_id: weights}} for variants plain, fedprox, and their label-flipped twins."""
    from client import LocalTrainer
    from model import build_model

    model = build_model()
    trainer = LocalTrainer(model)
    client_ids = [int(c) for c in manifest["clients"]]
    jobs = [(cid, flipped, mu) for flipped in (False, True) for cid in client_ids
            if not flipped or cid in malicious_pool for mu in (0.0, args.mu)]
    trained = {}
    for cid, flipped, mu in tqdm(jobs, desc="local training (once per client and variant)", unit="model"):
        x, y = load_client_data(args.data, cid)
        trainer.train(x, flip_labels(y) if flipped else y, initial_weights=initial_weights, epochs=args.epochs,
                      batch_size=args.batch_size, seed=args.seed + cid, mu=mu, verbose=0)
        variant = ("fedprox" if mu > 0 else "plain") + ("_flipped" if flipped else "")
        trained.setdefault(variant, {})[cid] = model.get_weights()
    return model, trained


def as_updates(weights_by_client, manifest, label):
    return [ClientUpdate(Path(f"cliente_{cid}_{label}"), cid, w, manifest["clients"][str(cid)]["num_samples"], None)
            for cid, w in sorted(weights_by_client.items())]


def scenario_updates(trained, manifest, initial_weights, attack, attackers, strength, seed):
    """The plain and FedProx updates that the server receives in one scenario."""
    updates = {}
    for kind in ("plain", "fedprox"):
        honest = as_updates(trained[kind], manifest, kind)
        if attack == "label_flip":
            flipped = trained[f"{kind}_flipped"]
            updates[kind] = [ClientUpdate(u.path, u.client_id, flipped[u.client_id], u.num_samples, None) if u.client_id in attackers else u
                             for u in honest]
        elif attackers:
            updates[kind], _ = attack_updates(honest, initial_weights, attack, attackers, strength, seed)
        else:
            updates[kind] = honest
    return updates


def evaluate_scenario(model, updates, x_test, y_test, args):
    from evaluation import evaluate_weights

    accuracy = {}
    for method in METHODS:
        chosen = updates["fedprox" if method.fedprox_updates else "plain"]
        try:
            weights, _ = aggregate(method, chosen, args.trim, args.krum_f)
        except AggregationError:
            accuracy[method.key] = None
            continue
        accuracy[method.key] = evaluate_weights(model, weights, x_test, y_test)[0]["accuracy"]
    return accuracy


def plot_robustness(results, labels):
    import matplotlib.pyplot as plt

    attacks = list(results["attacks"])
    fig, axes = plt.subplots(2, (len(attacks) + 1) // 2, figsize=(4.2 * ((len(attacks) + 1) // 2), 7.5), sharey=True)
    for ax, attack in zip(axes.flat, attacks):
        for key, label in labels.items():
            points = [(int(m), 100 * row[key]) for m, row in results["attacks"][attack].items() if row[key] is not None]
            if points:
                ax.plot(*zip(*points), "o-", label=label)
        ax.set_title(attack)
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


def print_table(results, labels):
    header = f"{'attack':<11} {'M':>2} " + " ".join(f"{label:>13}" for label in labels.values())
    print("\n" + header + "\n" + "-" * len(header))
    for attack, rows in results["attacks"].items():
        for m, row in rows.items():
            print(f"{attack:<11} {m:>2} " + " ".join(f"{'n/a':>13}" if row[k] is None else f"{100 * row[k]:>12.2f}%" for k in labels))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR, help="split_data.py's output folder (default: data/)")
    parser.add_argument("--out", type=Path, default=PROJECT_DIR / "results", help="output folder (default: results/)")
    parser.add_argument("--malicious", type=int, nargs="+", default=[1, 2], help="the values of M to study (default: 1 2)")
    parser.add_argument("--epochs", "-E", type=int, default=DEFAULT_EPOCHS, help=f"E, local epochs (default: {DEFAULT_EPOCHS})")
    parser.add_argument("--batch-size", "-B", type=int, default=DEFAULT_BATCH_SIZE, help=f"B, local batch size (default: {DEFAULT_BATCH_SIZE})")
    parser.add_argument("--mu", type=float, default=DEFAULT_MU, help=f"mu, FedProx's proximal weight (default: {DEFAULT_MU})")
    parser.add_argument("--trim", type=float, default=0.2, help="beta of the trimmed mean (default: 0.2)")
    parser.add_argument("--krum-f", type=int, default=2, help="f, the attackers Krum is told to tolerate (default: 2)")
    parser.add_argument("--seed", type=int, default=42, help="seed of local training and of the noise attack (default: 42)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    print(f"robustness_study: data={args.data} out={args.out} M={args.malicious} E={args.epochs} B={args.batch_size} "
          f"mu={args.mu} trim={args.trim} krum-f={args.krum_f} seed={args.seed}")
    started = time.perf_counter()
    try:
        check_writable(args.out)
        manifest = read_manifest(args.data)
        num_clients = manifest["num_clients"]
        if not all(0 < m < num_clients for m in args.malicious):
            raise PartitionError(f"--malicious {args.malicious}: each M must be between 1 and K - 1 = {num_clients - 1}")
        initial_weights, _ = load_initial_weights(args.data)
        x_test, y_test = load_test_data(args.data)
    except (PartitionError, OSError) as err:
        sys.exit(f"robustness_study.py: error: {err}")

    malicious_pool = list(range(1, max(args.malicious) + 1))
    model, trained = train_all_clients(args, manifest, initial_weights, malicious_pool)
    training_seconds = time.perf_counter() - started

    from evaluation import evaluate_weights

    local_accuracy = {str(cid): evaluate_weights(model, weights, x_test, y_test)[0]["accuracy"]
                      for cid, weights in sorted(trained["plain"].items())}
    counts = [0] + sorted(set(args.malicious))
    baseline = None
    results = {"attacks": {}, "local_accuracy": local_accuracy}
    scenarios = [(attack, m) for attack in ATTACKS for m in counts]
    for attack, m in tqdm(scenarios, desc="attacks × M × rules", unit="scenario"):
        if m == 0 and baseline is not None:
            row = baseline
        else:
            updates = scenario_updates(trained, manifest, initial_weights, attack, malicious_pool[:m], None, args.seed)
            row = evaluate_scenario(model, updates, x_test, y_test, args)
            baseline = baseline or row
        results["attacks"].setdefault(attack, {})[str(m)] = row

    labels = {m.key: m.label for m in METHODS}
    results["points_lost"] = {
        attack: {str(m): {k: None if rows[str(m)][k] is None else round(100 * (baseline[k] - rows[str(m)][k]), 2) for k in labels}
                 for m in counts if m}
        for attack, rows in results["attacks"].items()
    }
    results["config"] = {
        "num_clients": num_clients, "malicious_counts": counts, "malicious_clients": "the lowest ids: 1..M",
        "epochs": args.epochs, "batch_size": args.batch_size, "mu": args.mu, "trim": args.trim, "krum_f": args.krum_f,
        "seed": args.seed, "partition_seed": manifest.get("seed"), "test_samples": int(len(y_test)),
        "training_seconds": round(training_seconds, 1), "total_seconds": round(time.perf_counter() - started, 1),
    }
    from evaluation import save_figure

    write_text_atomically(args.out / RESULTS_FILE, json.dumps(results, indent=2) + "\n")
    save_figure(plot_robustness(results, labels), args.out / FIGURE_FILE)
    print_table(results, labels)
    print(f"\nWrote {args.out / RESULTS_FILE} and {args.out / FIGURE_FILE} in {results['config']['total_seconds']:.0f} s")


if __name__ == "__main__":
    main()
