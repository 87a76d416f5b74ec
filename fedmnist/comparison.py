"""The one-shot comparison: every registered strategy over the clients' updates, on the common test set.

What global_aggregation.py (the instructor) and demo.py run: load every update
through the restricted loader, optionally simulate an attack on some of them,
aggregate with each strategy of the registry, evaluate each global model beside
every local model, and write the models, the figure and resultados.json as one set.
"""

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fedmnist import strategies
from fedmnist.attacks import attack_updates, malicious_ids
from fedmnist.data import load_test_data, load_validation_data, read_manifest
from fedmnist.defaults import ALPHA, MIN_CLIENTS
from fedmnist.errors import FedMnistError
from fedmnist.evaluation import (
    evaluate_weights,
    mcnemar_exact,
    plot_accuracy_by_round,
    plot_method_comparison,
    save_figure,
)
from fedmnist.files import OutputSet, complete_interrupted_set, project_relative
from fedmnist.mnist import sha256_file
from fedmnist.rounds import (
    accuracy_by_round,
    checked_round,
    latest_round,
    load_round_weights,
    publish_next_round,
    round_starts,
)
from fedmnist.training import save_model
from fedmnist.updates import Expected, display, load_updates, other_round, scan_update_folder, weights_sha256
from model import build_model

RESULTS_FILE = "resultados.json"
FIGURE_FILE = "comparacion_metodos.png"
ROUNDS_FIGURE_FILE = "evolucion_rondas.png"  # drawn once the comparison follows more than one round


class ComparisonError(FedMnistError, RuntimeError):
    """The comparison cannot go on; nothing has been written."""


@dataclass(frozen=True)
class Attack:
    """A simulated model-poisoning attack on the M lowest client ids (see fedmnist/attacks.py)."""

    kind: str
    malicious: int = 1
    strength: float | None = None
    seed: int = 0


@dataclass
class Comparison:
    model: object  # the compiled CNN, holding the last weights evaluated
    results: dict  # what resultados.json holds
    global_weights: dict  # strategy key -> weights, for the strategies computed


def model_file(key):
    return f"modelo_global_{key}.h5"


def load_kind(paths, expected, log):
    accepted, rejected = load_updates(paths, expected)
    for _, reason in rejected:
        log(f"REJECTED {reason}")
    for update in accepted:
        if update.metadata.get("legacy"):
            log(
                f"note: {update.path.name} is a bare list of arrays (older format, --allow-legacy): weighted by "
                f"the manifest's count; nothing shows which weights it started from"
            )
    return accepted, rejected


def load_client_updates(weights_dir, data_dir, expected, attack, min_clients, log):
    """The round compared and its starting weights, then the valid plain and _fedprox updates of that round (after
    any simulated attack, relative to those weights), whether _fedprox files exist, every rejection, the attackers.

    The round is `expected.round`, or else the latest round any valid plain update declares: re-running the
    comparison on a round's pickles after its successor was published compares that round again.
    """
    folder = scan_update_folder(weights_dir, expected.num_clients)
    if not folder.plain:
        raise ComparisonError(
            f"{weights_dir}: no pesos_cliente_<id>.pkl for clients 1..{expected.num_clients}; "
            f"run local_training.ipynb for each client first, or point --weights-dir at their pickles"
        )
    for _, reason in folder.rejected:
        log(f"REJECTED {reason}")
    plain, rejected = load_kind(folder.plain, expected, log)
    prox, prox_rejected = load_kind(folder.fedprox, expected, log)
    round_number = expected.round or max([u.metadata["round"] for u in plain], default=max(expected.round_starts))
    plain, other_plain = of_round(plain, round_number, log)
    prox, other_prox = of_round(prox, round_number, log)
    prox, without_mu = split_plain_in_disguise(prox, log)
    rejected = folder.rejected + rejected + prox_rejected + other_plain + other_prox + without_mu
    start = load_round_weights(data_dir, round_number)
    attackers = []
    if attack:
        try:
            attackers = malicious_ids([u.client_id for u in plain], attack.malicious)
        except ValueError as err:
            raise ComparisonError(str(err)) from None
        log(f"SIMULATED ATTACK: {attack.kind} on clients {attackers}")
        for kind in ("plain", "prox"):
            kept, attacked_out = attack_updates(
                plain if kind == "plain" else prox,
                start[1],
                attack.kind,
                attackers,
                attack.strength,
                attack.seed,
            )
            plain, prox = (kept, prox) if kind == "plain" else (plain, kept)
            for _, reason in attacked_out:
                log(f"REJECTED {reason}")
            rejected += attacked_out
    if len(plain) < min_clients:
        raise ComparisonError(
            f"only {len(plain)} valid client update(s) of round {round_number} in {weights_dir}, "
            f"need at least --min-clients {min_clients}"
        )
    return start, plain, prox, bool(folder.fedprox), rejected, attackers


def of_round(updates, round_number, log):
    """(kept, rejected): the updates trained in `round_number`, and a one-line refusal of each other one."""
    kept, rejected = [], []
    for update in updates:
        if update.metadata["round"] == round_number:
            kept.append(update)
        else:
            reason = other_round(display(update.path.name), update.metadata["round"], round_number)
            log(f"REJECTED {reason}")
            rejected.append((update.path, reason))
    return kept, rejected


DECLARED = ("mu", "epochs", "batch_size", "seed", "round")  # what each client says it trained with (the notebook's)


def split_plain_in_disguise(prox, log):
    """(kept, rejected): a _fedprox update that declares μ = 0 trained FedAvg's objective, not FedProx's."""
    kept, rejected = [], []
    for update in prox:
        if update.metadata.get("mu") == 0:
            reason = (
                f"{display(update.path.name)}: declares μ = 0, FedAvg's local objective, not FedProx's; "
                "train it with MU > 0 or remove it"
            )
            log(f"REJECTED {reason}")
            rejected.append((update.path, reason))
        else:
            kept.append(update)
    return kept, rejected


def declared(update):
    """What a client says it trained with (None where an older update does not say)."""
    return {key: update.metadata.get(key) for key in DECLARED}


def unchanged(update, start_weights):
    """True if the update is the round's starting weights themselves: the client trained nothing (a free rider)."""
    return all(np.array_equal(w, w0) for w, w0 in zip(update.weights, start_weights))


def fedprox_notes(entry, updates):
    """FedProx's row labelled with its clients' μ, and a note where they differ."""
    mus = sorted({u.metadata.get("mu") for u in updates if u.metadata.get("mu") is not None})
    entry["client_mu"] = mus
    if len(mus) == 1:
        entry["label"] = f"FedProx (μ = {mus[0]:g})"
    elif len(mus) > 1:
        entry["note"] = f"the clients trained with different μ ({', '.join(f'{m:g}' for m in mus)})"


def not_computed(strategy, updates, any_prox_files, min_clients):
    """Why `strategy` cannot run on `updates`, or None."""
    if strategy.fedprox_updates and not updates:
        return (
            "not computed: every _fedprox update was rejected"
            if any_prox_files
            else "not computed: no valid pesos_cliente_*_fedprox.pkl (run the notebook with MU > 0)"
        )
    if strategy.fedprox_updates and len(updates) < min_clients:
        return f"not computed: {len(updates)} valid _fedprox update(s), need --min-clients {min_clients}"
    return None


def updates_for(strategy, plain, prox):
    """The updates a one-round row aggregates: FedProx's rows take those trained with μ, the others the plain ones."""
    return prox if strategy.fedprox_updates else plain


def one_round_weights(strategy, updates, values, federation):
    """A one-round row's global weights from `updates` (ValueError if its rule cannot run on them), with `values`
    ({strategy key: {parameter: value}}) over the registry's defaults.

    `federation` is (the round's starting weights, seed, K): a private strategy clips each
    update relative to them and takes all K clients as its cohort. The instructor's comparison
    (aggregate_all) and the one-round study (fedmnist/studies/robustness.py) both aggregate here.
    """
    initial_weights, seed, num_clients = federation
    chosen = {**strategy.defaults(), **values.get(strategy.key, {})}
    pairs = [(u.weights, u.num_samples) for u in updates]
    return strategies.one_shot(strategy, pairs, initial_weights, chosen, seed, num_clients)


def evaluate_held_out(model, weights, test_set, validation_set, correct=None, key=None):
    """Test metrics, plus the validation accuracy (what every choice is made on) where the split has a validation
    set; each test image's correctness goes into `correct[key]` (McNemar's test of ties) if given."""
    metrics, predictions = evaluate_weights(model, weights, *test_set)
    if correct is not None:
        correct[key] = predictions == test_set[1]
    if validation_set is not None:
        metrics["validation_accuracy"] = evaluate_weights(model, weights, *validation_set)[0]["accuracy"]
    return metrics


def aggregate_all(model, plain, prox, any_prox_files, values, min_clients, held_out, federation, private=False):
    """Aggregate with every one-shot strategy and evaluate each global model: ({key: entry}, {key: weights}).

    `held_out` is (test set, validation set or None).

    `federation` is (the round's starting weights, seed, K), as one_round_weights takes it.
    """
    entries, global_weights, correct = {}, {}, {}
    for strategy in strategies.one_shot_rows():
        if strategy.private and not private:
            continue  # DP's rows only when asked: at K = 5 its noise is what the row measures
        updates = updates_for(strategy, plain, prox)
        entry = {"label": strategy.label, "clients": [u.client_id for u in updates]}
        if strategy.fedprox_updates:
            fedprox_notes(entry, updates)
        status = not_computed(strategy, updates, any_prox_files, min_clients)
        if status:
            entry["status"] = status
            entries[strategy.key] = entry
            continue
        chosen = {**strategy.defaults(), **values.get(strategy.key, {})}
        try:
            weights = one_round_weights(strategy, updates, values, federation)
        except ValueError as err:
            entry["status"] = f"not computed: {err}"
        else:
            if bad := non_finite_count(weights):
                entry["status"] = (
                    f"failed: the aggregate has {bad:,} non-finite values (an overflow in the rule or its settings); "
                    "no model written"
                )
                entries[strategy.key] = entry
                continue
            metrics = evaluate_held_out(model, weights, *held_out, correct, strategy.key)
            note = strategy.notes(len(updates), **strategy.server_parameters(chosen)) if strategy.notes else None
            entry.update(status="ok", note=note or entry.get("note"), **metrics)
            if strategy.private:
                entry["privacy"] = strategy.privacy_spent(chosen, 1.0, 1, federation[2])  # all K clients, once
            if selected := returned_client(weights, updates):
                entry["returned_client"] = selected
            global_weights[strategy.key] = weights
        entries[strategy.key] = entry
    return entries, global_weights, correct


def returned_client(weights, updates):
    """The client whose update a rule returned unchanged (Krum), or None."""
    return next((u.client_id for u in updates if all(np.array_equal(a, b) for a, b in zip(weights, u.weights))), None)


def ties_with(best, correct, alpha=ALPHA):
    """{method: McNemar's p} of every method whose test-image correctness does not differ from `best`'s at α: the
    methods the common test set cannot tell from the best."""
    tied = {}
    for key, right in correct.items():
        if key != best:
            p = mcnemar_exact(right, correct[best])["p_value"]
            if p >= alpha:
                tied[key] = p
    return tied


def non_finite_count(weights):
    """How many values of `weights` are NaN or infinite."""
    return int(sum(np.size(w) - np.count_nonzero(np.isfinite(w)) for w in weights))


def compare(
    weights_dir,
    data_dir,
    values=None,
    min_clients=MIN_CLIENTS,
    allow_legacy=False,
    attack=None,
    log=print,
    private=False,
    round_number=None,
):
    """Everything that can fail, before anything is written: returns a Comparison.

    `values` ({strategy key: {parameter: value}}) overrides the registry's defaults; `round_number` is the round
    whose updates are compared (None: the latest published, fedmnist/rounds.py).
    """
    values = values or {}
    manifest = read_manifest(data_dir)
    model = build_model()
    if round_number is not None:
        checked_round(data_dir, round_number, "--round ")
    shapes = [tuple(w.shape) for w in model.weights]
    expected = Expected.from_manifest(manifest, shapes, allow_legacy, round_starts(data_dir), round_number)
    start, plain, prox, any_prox_files, rejected, attackers = load_client_updates(
        weights_dir, data_dir, expected, attack, min_clients, log
    )
    round_number, start_weights, start_sha = start
    test_set = load_test_data(data_dir)
    validation_set = load_validation_data(data_dir) if "validation" in manifest else None
    chosen_on = "validation_accuracy" if validation_set is not None else "accuracy"
    federation = (start_weights, manifest["seed"], manifest["num_clients"])
    methods, global_weights, correct = aggregate_all(
        model, plain, prox, any_prox_files, values, min_clients, (test_set, validation_set), federation, private
    )
    local_models = {}
    for update in plain:
        metrics = evaluate_held_out(model, update.weights, test_set, validation_set)
        local_models[str(update.client_id)] = {
            "file": update.path.name,
            "num_samples": update.num_samples,
            "declared": declared(update),
            **metrics,
        }
        if unchanged(update, federation[0]):
            local_models[str(update.client_id)]["note"] = "equal to the initial weights: this client trained nothing"
            log(f"note: {display(update.path.name)} equals the initial weights: this client trained nothing")
    computed = {k: v for k, v in methods.items() if v["status"] == "ok"}
    accuracy = {key: entry["accuracy"] for key, entry in computed.items()}
    parameters = {
        row.key: row.server_parameters({**row.defaults(), **values.get(row.key, {})})
        for row in strategies.one_shot_rows()
        if row.server_parameters(row.defaults())
    }
    results = {
        "methods": methods,
        "local_models": local_models,
        "fedprox_updates": {str(u.client_id): {"file": u.path.name, "declared": declared(u)} for u in prox},
        "rejected": [{"file": display(path.name), "reason": reason} for path, reason in rejected],
        "best_method": (best := max(computed, key=lambda k: computed[k][chosen_on])),
        "tied_with_best_on_test": ties_with(best, correct),
        "best_chosen_on": "validation" if validation_set is not None else "test (this split has no validation set)",
        "round": round_number,
        "by_round": accuracy_by_round(data_dir, round_number, accuracy),
        "published": None,  # the next round's starting weights, once publish_next_round has written them
        "config": {
            "weights_dir": project_relative(weights_dir),
            "data": project_relative(data_dir),
            "test_samples": int(len(test_set[1])),
            "validation_samples": int(len(validation_set[1])) if validation_set is not None else None,
            "seed": manifest.get("seed"),
            "num_clients_in_partition": manifest["num_clients"],
            "parameters": parameters,
            "initial_weights_sha256": manifest["initial_weights"]["sha256"],
            "round_start_sha256": start_sha,
            "allow_legacy": allow_legacy,
            "attack": attack.kind if attack else None,
            "malicious_clients": attackers,
            "attack_strength": attack.strength if attack else None,
        },
    }
    return Comparison(model, results, global_weights)


def write_outputs(out_dir, comparison):
    """Replace the models, the figure and the JSON together; a strategy not computed this time loses its old model."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results, model = comparison.results, comparison.model
    stale = [out_dir / model_file(key) for key in strategies.REGISTRY if key not in comparison.global_weights]
    several_rounds = len(results["by_round"]) > 1
    stale += [] if several_rounds else [out_dir / ROUNDS_FIGURE_FILE]
    with OutputSet(remove=stale) as outputs:
        for key, weights in comparison.global_weights.items():
            model.set_weights(weights)
            save_model(model, outputs.stage(out_dir / model_file(key)))
        methods = {v["label"]: v["accuracy"] for v in results["methods"].values() if v["status"] == "ok"}
        local = {cid: v["accuracy"] for cid, v in results["local_models"].items()}
        title = (
            f"Métodos de agregación sobre {len(local)} clientes ({results['config']['test_samples']} imágenes de test)"
        )
        save_figure(
            plot_method_comparison(methods, local, title, results["config"]["test_samples"]),
            outputs.stage(out_dir / FIGURE_FILE),
        )
        if several_rounds:
            labels = {key: entry["label"] for key, entry in results["methods"].items()}
            figure = plot_accuracy_by_round(results["by_round"], labels, results["config"]["test_samples"])
            save_figure(figure, outputs.stage(out_dir / ROUNDS_FIGURE_FILE))
        record = {**results, "files": {target.name: sha256_file(tmp) for target, tmp in outputs.staged.items()}}
        outputs.write_text(out_dir / RESULTS_FILE, json.dumps(record, indent=2, allow_nan=False) + "\n")
    return (
        [model_file(key) for key in comparison.global_weights]
        + [FIGURE_FILE]
        + [ROUNDS_FIGURE_FILE] * several_rounds
        + [RESULTS_FILE]
    )


def plan_next_round(comparison, data_dir, method):
    """Record in the results which method's model starts the next round (`method` None: publish nothing).

    ComparisonError if `method` was not computed. A comparison of an earlier round publishes nothing: its successor
    is already published and teammates may be training from it.
    """
    results = comparison.results
    if method is None:
        return None
    if method not in comparison.global_weights:
        status = results["methods"].get(method, {}).get("status", "not a one-round method")
        raise ComparisonError(f"--publish {method}: cannot start the next round ({status})")
    if results["round"] != latest_round(data_dir):
        return None
    results["published"] = {
        "round": results["round"] + 1,
        "method": method,
        "weights_sha256": weights_sha256(comparison.global_weights[method]),
    }
    return method


def publish(comparison, data_dir, method, by="global_aggregation.py"):
    """Write the next round's starting weights and its record entry into the data folder (one set); its number."""
    results = comparison.results
    accuracy = results["by_round"][-1]["accuracy"]  # this round's, as compare recorded it
    clients = results["methods"][method]["clients"]
    return publish_next_round(data_dir, results["round"], comparison.global_weights[method], method, clients, accuracy)


def read_comparison(out_dir):
    """resultados.json of `out_dir`, after completing a set a killed run was replacing, with every file it records
    (the models, the figure) checked against its SHA-256: ComparisonError naming the first that does not match."""
    out_dir = Path(out_dir)
    try:
        complete_interrupted_set(out_dir)
        results = json.loads((out_dir / RESULTS_FILE).read_text())
    except (OSError, ValueError, RecursionError) as err:
        raise ComparisonError(
            f"{out_dir / RESULTS_FILE}: cannot be read ({type(err).__name__}); run global_aggregation.py again"
        ) from None
    files = results.get("files", {}) if isinstance(results, dict) else None
    if not isinstance(files, dict):
        raise ComparisonError(f"{out_dir / RESULTS_FILE}: not a comparison's results; run global_aggregation.py again")
    for name, expected in files.items():
        path = out_dir / Path(str(name)).name
        if not path.is_file() or sha256_file(path) != expected:
            raise ComparisonError(
                f"{path}: does not match the {RESULTS_FILE} beside it (a set from two runs); "
                "run global_aggregation.py again"
            )
    return results


def format_table(results):
    """The comparison as the CLI prints it: one line per strategy and per local model, then the best."""
    validation = results["config"].get("validation_samples") is not None
    names = {key: strategies.REGISTRY[key].name if key in strategies.REGISTRY else key for key in results["methods"]}
    width = max([14, *(len(name) for name in names.values())])
    lines = [
        f"{'method':<{width}} {'clients':>7} {'accuracy':>9} {'loss':>7} {'macro-F1':>9}"
        + ("  validation" * validation),
        "-" * (width + 36 + 12 * validation),
    ]

    def validation_column(v):
        return f" {100 * v['validation_accuracy']:>10.2f}%" if validation else ""

    for key, v in results["methods"].items():
        if v["status"] == "ok":
            said = [v["note"]] if v.get("note") else []
            said += [f"the model of client {v['returned_client']}"] if v.get("returned_client") else []
            note = f"   ({'; '.join(said)})" if said else ""
            lines.append(
                f"{names[key]:<{width}} {len(v['clients']):>7} {100 * v['accuracy']:>8.2f}% {v['loss']:>7.4f} "
                f"{v['macro_f1']:>9.4f}{validation_column(v)}{note}"
            )
        else:
            lines.append(f"{names[key]:<{width}} {'-':>7}   {v['status']}")
    for cid, v in results["local_models"].items():
        lines.append(
            f"{'local ' + cid:<{width}} {'':>7} {100 * v['accuracy']:>8.2f}% {v['loss']:>7.4f} {v['macro_f1']:>9.4f}"
            f"{validation_column(v)}"
        )
    best = results["methods"][results["best_method"]]
    best_name = strategies.REGISTRY[results["best_method"]].name
    chosen = f"{100 * best['validation_accuracy']:.2f}% validation, " if validation else ""
    lines.append(
        f"\nBest method on {'validation' if validation else 'the test set (no validation set)'}: {best_name} "
        f"({chosen}{100 * best['accuracy']:.2f}% test accuracy)"
    )
    tied = results.get("tied_with_best_on_test") or {}
    if tied:
        lines.append(
            f"Not distinguishable from it on the {results['config']['test_samples']:,} test images (McNemar's exact "
            f"test, p ≥ 0.05): " + ", ".join(names[key] for key in tied)
        )
    if len(results.get("by_round", [])) > 1:
        lines.append("\nTest accuracy by round (each rule on the updates that started from the published model):")
        for key in results["methods"]:
            path = [
                f"{100 * entry['accuracy'][key]:.2f}%" if key in entry["accuracy"] else "-"
                for entry in results["by_round"]
            ]
            lines.append(f"  {names[key]:<{width}} " + " → ".join(path))
    return f"Round {results.get('round', 1)}\n" + "\n".join(lines)
