"""The instructor's step: aggregate every client's update and compare the methods.

    python global_aggregation.py --weights-dir outputs --out outputs

Loads every pesos_cliente_N.pkl (and pesos_cliente_N_fedprox.pkl) through the
restricted loader, checks each against model.py's shapes and the shared initial
weights, then computes FedAvg, FedProx, FedMed, the trimmed mean and Krum,
evaluates each global model on the common test set beside every local model,
and names the best method. Writes modelo_global_<method>.h5,
comparacion_metodos.png and resultados.json.
"""

import argparse
import dataclasses
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import aggregation
from atomic import OutputSet, check_writable
from attacks import MODEL_POISONING, malicious_ids, poison
from split_data import DEFAULT_DATA_DIR, PartitionError, load_initial_weights, load_test_data, read_manifest
from updates import Expected, UpdateError, display, load_updates, scan_update_folder, validate_weights

RESULTS_FILE = "resultados.json"
FIGURE_FILE = "comparacion_metodos.png"


@dataclass
class Method:
    key: str  # used in file names: modelo_global_<key>.h5
    label: str
    fedprox_updates: bool  # aggregate the _fedprox pickles instead of the plain ones


METHODS = (
    Method("fedavg", "FedAvg", False),
    Method("fedprox", "FedProx", True),
    Method("fedmed", "FedMed", False),
    Method("trimmed_mean", "Trimmed mean", False),
    Method("krum", "Krum", False),
)


class AggregationError(RuntimeError):
    """The run cannot go on; nothing has been written."""


def aggregate(method, updates, trim, krum_f):
    """Apply one method's rule to accepted updates; returns (weights, note)."""
    weight_lists = [u.weights for u in updates]
    if method.key in ("fedavg", "fedprox"):
        return aggregation.fedavg((u.weights, u.num_samples) for u in updates), None
    if method.key == "fedmed":
        return aggregation.fedmed(weight_lists), None
    if method.key == "trimmed_mean":
        return aggregation.trimmed_mean(weight_lists, trim), f"beta={trim}, {int(trim * len(updates))} trimmed per side"
    if method.key == "krum":
        if len(updates) <= krum_f + 2:
            raise AggregationError(f"Krum needs more than f + 2 = {krum_f + 2} clients, got {len(updates)}")
        return aggregation.krum(weight_lists, krum_f), f"f={krum_f}"
    raise ValueError(method.key)


def attack_updates(updates, initial_weights, attack, attackers, strength=None, seed=0):
    """Poison the updates of `attackers`, then validate them again; returns (kept, rejected [(path, reason)])."""
    rng = np.random.default_rng(seed)
    shapes = [w.shape for w in initial_weights]
    kept, rejected = [], []
    for update in updates:
        if update.client_id in attackers:
            poisoned = poison(update.weights, initial_weights, attack, strength, rng)
            try:
                update = dataclasses.replace(update, weights=validate_weights(poisoned, shapes, f"{update.path} ({attack} attack)"))
            except UpdateError as err:
                rejected.append((update.path, str(err)))
                continue
        kept.append(update)
    return kept, rejected


def load_kind(paths, expected, log):
    accepted, rejected = load_updates(paths, expected)
    for _, reason in rejected:
        log(f"REJECTED {reason}")
    for update in accepted:
        if update.metadata.get("legacy"):
            log(f"note: {update.path.name} is a bare list of arrays (older format, --allow-legacy): weighted by the "
                f"manifest's count; nothing shows which weights it started from")
    return accepted, rejected


def load_client_updates(args, expected, log):
    """The valid plain and _fedprox updates (after any simulated attack), and every rejection."""
    folder = scan_update_folder(args.weights_dir, expected.num_clients)
    if not folder.plain:
        raise AggregationError(f"{args.weights_dir}: no pesos_cliente_<id>.pkl for clients 1..{expected.num_clients}; run "
                               f"local_training.ipynb for each client first, or point --weights-dir at their pickles")
    for _, reason in folder.rejected:
        log(f"REJECTED {reason}")
    plain, rejected = load_kind(folder.plain, expected, log)
    prox, prox_rejected = load_kind(folder.fedprox, expected, log)
    rejected = folder.rejected + rejected + prox_rejected
    attackers = []
    if args.attack:
        try:
            attackers = malicious_ids([u.client_id for u in plain], args.malicious)
        except ValueError as err:
            raise AggregationError(str(err)) from None
        initial_weights, _ = load_initial_weights(args.data)
        log(f"SIMULATED ATTACK: {args.attack} on clients {attackers}")
        plain, attacked_out = attack_updates(plain, initial_weights, args.attack, attackers, args.attack_strength, args.seed)
        prox, prox_attacked_out = attack_updates(prox, initial_weights, args.attack, attackers, args.attack_strength, args.seed)
        for _, reason in attacked_out + prox_attacked_out:
            log(f"REJECTED {reason}")
        rejected += attacked_out + prox_attacked_out
    if len(plain) < args.min_clients:
        raise AggregationError(f"only {len(plain)} valid client update(s) in {args.weights_dir}, need at least --min-clients {args.min_clients}")
    return plain, prox, bool(folder.fedprox), rejected, attackers


def evaluate_methods(model, plain, prox, any_prox_files, args, x_test, y_test):
    """Aggregate with every method and evaluate each global model: returns ({key: entry}, {key: weights})."""
    from evaluation import evaluate_weights

    entries, global_weights = {}, {}
    for method in METHODS:
        updates = prox if method.fedprox_updates else plain
        entry = {"label": method.label, "clients": [u.client_id for u in updates]}
        if method.fedprox_updates and not updates:
            entry["status"] = ("not computed: every _fedprox update was rejected" if any_prox_files
                               else "not computed: no valid pesos_cliente_*_fedprox.pkl (run the notebook with MU > 0)")
        elif method.fedprox_updates and len(updates) < args.min_clients:
            entry["status"] = f"not computed: {len(updates)} valid _fedprox update(s), need --min-clients {args.min_clients}"
        else:
            try:
                weights, note = aggregate(method, updates, args.trim, args.krum_f)
            except AggregationError as err:
                entry["status"] = f"not computed: {err}"
            else:
                metrics, _ = evaluate_weights(model, weights, x_test, y_test)
                entry.update(status="ok", note=note, **metrics)
                global_weights[method.key] = weights
        entries[method.key] = entry
    return entries, global_weights


def compute_all(args, log=print):
    """Everything that can fail, before anything is written: returns the model, the results and the global weights."""
    manifest = read_manifest(args.data)

    from evaluation import evaluate_weights
    from model import build_model

    model = build_model()
    expected = Expected.from_manifest(manifest, [tuple(w.shape) for w in model.weights], args.allow_legacy)
    plain, prox, any_prox_files, rejected, attackers = load_client_updates(args, expected, log)
    x_test, y_test = load_test_data(args.data)
    methods, global_weights = evaluate_methods(model, plain, prox, any_prox_files, args, x_test, y_test)
    local_models = {}
    for update in plain:
        metrics, _ = evaluate_weights(model, update.weights, x_test, y_test)
        local_models[str(update.client_id)] = {"file": update.path.name, "num_samples": update.num_samples, **metrics}
    computed = {k: v for k, v in methods.items() if v["status"] == "ok"}
    results = {
        "methods": methods,
        "local_models": local_models,
        "rejected": [{"file": display(path.name), "reason": reason} for path, reason in rejected],
        "best_method": max(computed, key=lambda k: computed[k]["accuracy"]),
        "config": {
            "weights_dir": str(args.weights_dir), "data": str(args.data), "test_samples": int(len(y_test)),
            "seed": manifest.get("seed"), "num_clients_in_partition": manifest["num_clients"],
            "trim": args.trim, "krum_f": args.krum_f, "initial_weights_sha256": expected.initial_weights_sha256,
            "allow_legacy": args.allow_legacy,
            "attack": args.attack, "malicious_clients": attackers, "attack_strength": args.attack_strength,
        },
    }
    return model, results, global_weights


def model_file(key):
    return f"modelo_global_{key}.h5"


def write_outputs(out_dir, model, results, global_weights):
    """Replace the models, the figure and the JSON together; a method not computed this time loses its old model."""
    from evaluation import plot_method_comparison, save_figure
    from model import save_model

    stale = [out_dir / model_file(m.key) for m in METHODS if m.key not in global_weights]
    with OutputSet(remove=stale) as outputs:
        for key, weights in global_weights.items():
            model.set_weights(weights)
            save_model(model, outputs.stage(out_dir / model_file(key)))
        methods = {v["label"]: v["accuracy"] for v in results["methods"].values() if v["status"] == "ok"}
        local = {cid: v["accuracy"] for cid, v in results["local_models"].items()}
        fig = plot_method_comparison(methods, local, f"Métodos de agregación sobre {len(local)} clientes ({results['config']['test_samples']} imágenes de test)")
        save_figure(fig, outputs.stage(out_dir / FIGURE_FILE))
        outputs.write_text(out_dir / RESULTS_FILE, json.dumps(results, indent=2, allow_nan=False) + "\n")


def print_table(results):
    print(f"\n{'method':<14} {'clients':>7} {'accuracy':>9} {'loss':>7} {'macro-F1':>9}")
    print("-" * 50)
    for key, v in results["methods"].items():
        if v["status"] == "ok":
            print(f"{v['label']:<14} {len(v['clients']):>7} {100 * v['accuracy']:>8.2f}% {v['loss']:>7.4f} {v['macro_f1']:>9.4f}" + (f"   ({v['note']})" if v.get("note") else ""))
        else:
            print(f"{v['label']:<14} {'-':>7}   {v['status']}")
    for cid, v in results["local_models"].items():
        print(f"{'local ' + cid:<14} {'':>7} {100 * v['accuracy']:>8.2f}% {v['loss']:>7.4f} {v['macro_f1']:>9.4f}")
    best = results["methods"][results["best_method"]]
    print(f"\nBest method: {best['label']} ({100 * best['accuracy']:.2f}% test accuracy)")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights-dir", type=Path, default=Path("."), help="folder with pesos_cliente_*.pkl (default: the working folder)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR, help="split_data.py's output folder (default: data/)")
    parser.add_argument("--out", type=Path, default=Path("."), help="where to write the models, figure and JSON (default: the working folder)")
    parser.add_argument("--min-clients", type=int, default=2, help="fewest valid updates needed to aggregate (default: 2)")
    parser.add_argument("--trim", type=float, default=0.2, help="beta, the fraction trimmed from each side by the trimmed mean (default: 0.2)")
    parser.add_argument("--krum-f", type=int, default=1, help="f, the number of Byzantine clients Krum tolerates (default: 1)")
    parser.add_argument("--allow-legacy", action="store_true",
                        help="also read bare lists of arrays (older format), weighted by the manifest's counts; nothing checks their starting point")
    attack = parser.add_argument_group("simulated attacks (model poisoning of M clients' updates Δ = w − w⁰)")
    attack.add_argument("--attack", choices=MODEL_POISONING, default=None, help="the attack to simulate (label flipping is data poisoning: see the notebook's LABEL_FLIP)")
    attack.add_argument("--malicious", "-M", type=int, default=1, help="M, the number of attacking clients: the lowest client ids (default: 1)")
    attack.add_argument("--attack-strength", type=float, default=None, help="lambda for sign_flip (default 4), scale (default 10) and noise (default 10)")
    attack.add_argument("--seed", type=int, default=0, help="seed of the noise attack (default: 0)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    print(f"global_aggregation: weights-dir={args.weights_dir} data={args.data} out={args.out} min-clients={args.min_clients} trim={args.trim} krum-f={args.krum_f}"
          + (f" attack={args.attack} M={args.malicious} strength={args.attack_strength}" if args.attack else ""))
    try:
        check_options(args)
        check_writable(args.out)
        model, results, global_weights = compute_all(args)
        write_outputs(args.out, model, results, global_weights)
    except (AggregationError, PartitionError, UpdateError, OSError) as err:
        sys.exit(f"global_aggregation.py: error: {err}; earlier outputs in {args.out} are unchanged")
    print_table(results)
    print(f"Wrote {', '.join(model_file(k) for k in global_weights)}, {FIGURE_FILE} and {RESULTS_FILE} to {args.out}")


def check_options(args):
    if not args.weights_dir.is_dir():
        raise AggregationError(f"{args.weights_dir}: no such folder; pass the folder holding the clients' pesos_cliente_*.pkl with --weights-dir")
    if args.min_clients < 1:
        raise AggregationError(f"--min-clients {args.min_clients}: must be at least 1")
    if not (math.isfinite(args.trim) and 0 <= args.trim < 0.5):
        raise AggregationError(f"--trim {args.trim}: must be in [0, 0.5)")
    if args.krum_f < 0:
        raise AggregationError(f"--krum-f {args.krum_f}: must be at least 0")
    if args.attack_strength is not None and not math.isfinite(args.attack_strength):
        raise AggregationError(f"--attack-strength {args.attack_strength}: must be a finite number")


if __name__ == "__main__":
    main()
