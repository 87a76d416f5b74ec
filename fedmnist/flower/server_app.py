"""ServerApp: a registered strategy's Flower counterpart over the project's shared start, evaluated centrally.

Starts from the split's pesos_iniciales.npz, runs R rounds of the strategy named in
the run config (the registry's Flower class: FedAvg, FedProx, FedMedian,
FedTrimmedAvg, Krum, FedAvgM, FedAdam, FedYogi, or a server-side DP wrapper around
FedAvg whose ε the project's accountant reports), checks every reply as the instructor's loader checks a
file, evaluates each round's global model on the common test set, and writes
simulacion.json and simulacion.png through fedmnist/history.py (the own
simulation's format), plus the final global model as modelo_global_flower_<strategy>.h5.
"""

import json
import math
import os
import time
from pathlib import Path

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, MetricRecord, RecordDict
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp import strategy as flower

from fedmnist import defaults, privacy
from fedmnist.data import load_initial_weights, load_test_data, read_manifest
from fedmnist.drift import round_drift
from fedmnist.errors import FedMnistError
from fedmnist.evaluation import evaluate_weights
from fedmnist.files import os_error_text, project_relative
from fedmnist.flower.settings import EQUAL_WEIGHT, configured_strategy, setting, training_config
from fedmnist.history import (
    RESULTS_FILE,
    StrategyState,
    load_state,
    new_history,
    round_row,
    run_config,
    save_state,
    write_results,
)
from fedmnist.partition import PartitionError
from fedmnist.restricted_pickle import printable
from fedmnist.training import save_model
from fedmnist.updates import UpdateError, validate_weights
from model import build_model

app = ServerApp()


# A reply is exactly what the ClientApp sends: these records, these metrics, these types; anything else is rejected.
REPLY_RECORDS = {"arrays": ArrayRecord, "metrics": MetricRecord, "client": ConfigRecord}
REPLY_METRICS = {"num-examples": int, EQUAL_WEIGHT: int, "train-loss": float}
NODE_CLIENTS_LIMIT = 1_000_000  # bytes of a node-clients file: 10,000 nodes take about 300 kB


class NodeIdentities:
    """Which client each node is, never what a reply says it is.

    With a node-clients file (run config, {"<node id>": client id}) the server holds the mapping: a reply from a
    node outside it, or claiming another id, is rejected. Without one, each node is bound for the run to the first
    id it claims in a reply that passes every check, and no other node may claim that id (trust on first use: with
    SuperNode authentication the node ids are the SuperLink's, so a node cannot take another's once bound).
    """

    def __init__(self, fixed=None):
        self.fixed = fixed is not None
        self.client = dict(fixed or {})  # node id -> client id
        self.node = {cid: node for node, cid in self.client.items()}

    def client_of(self, node, claimed, source):
        if node in self.client:
            if claimed != self.client[node]:
                raise UpdateError(f"{source}: claims client {claimed}, but node {node} is client {self.client[node]}")
            return claimed
        if self.fixed:
            raise UpdateError(f"{source}: node {node} is not in the run config's node-clients")
        if claimed in self.node:
            raise UpdateError(f"{source}: claims client {claimed}, which is node {self.node[claimed]}")
        return claimed

    def bind(self, node, cid):
        self.client[node], self.node[cid] = cid, node


def read_node_clients(path, num_clients):
    """{node id: client id} from a node-clients JSON file; ValueError naming the file and what is wrong."""
    try:
        if path.stat().st_size > NODE_CLIENTS_LIMIT:
            raise ValueError(f"more than {NODE_CLIENTS_LIMIT:,} bytes")
        raw = json.loads(path.read_text())
        if not isinstance(raw, dict):
            raise ValueError("not a JSON object")
        mapping = {int(node): cid for node, cid in raw.items()}
    except (OSError, ValueError, RecursionError) as err:
        raise ValueError(f"run config node-clients={path}: cannot be read ({printable(err, 80)})") from None
    if not all(isinstance(c, int) and not isinstance(c, bool) and 1 <= c <= num_clients for c in mapping.values()):
        raise ValueError(f"run config node-clients={path}: every value must be a client id in 1..{num_clients}")
    if len(set(mapping.values())) != len(mapping):
        raise ValueError(f"run config node-clients={path}: two nodes are mapped to the same client")
    return mapping


def checked_record(content, name, kind, keys, source):
    """content[name], if it is a `kind` with exactly `keys` (for arrays, also in the model's order)."""
    record = content[name]
    same = list(record.keys()) == list(keys) if kind is ArrayRecord else set(record.keys()) == set(keys)
    if not isinstance(record, kind) or not same:
        raise UpdateError(
            f"{source}: the {name} record is not the ClientApp's ({printable(sorted(record.keys()), 80)})"
        )
    return record


def checked_metrics(metrics, source):
    """{metric: value} of a reply's metrics record, each of the type the ClientApp sends."""
    checked = {}
    for key, kind in REPLY_METRICS.items():
        value = metrics[key]
        whole = isinstance(value, int) and not isinstance(value, bool)
        number = whole or (isinstance(value, float) and math.isfinite(value))
        if not (whole if kind is int else number):
            raise UpdateError(f"{source}: metric {key} is {printable(repr(value), 40)}, not {kind.__name__}")
        checked[key] = kind(value)
    if checked[EQUAL_WEIGHT] != 1:
        raise UpdateError(f"{source}: metric {EQUAL_WEIGHT} must be 1 (the server weighs DP-FedAvg's clients)")
    return checked


def checked_replies(strategy_class):
    """`strategy_class` whose aggregate_train first checks every reply and rebuilds the ones that pass.

    Flower's own aggregation then reads only records the server wrote: the validated float32 weights, the
    manifest's example count and an equal weight of 1, under the client id the node is (NodeIdentities).
    """

    class Checked(strategy_class):
        expected_keys, expected_shapes, expected_counts, last_round = (), (), {}, {}
        current_global = None  # the round's starting weights, kept by CentralEvaluation for the drift
        identities = None  # NodeIdentities, set by main(); a fresh trust-on-first-use one otherwise

        def check_reply(self, msg, source, seen):
            """(client id, weights, train loss) of a reply that passes every check."""
            content = msg.content
            if set(content.keys()) != set(REPLY_RECORDS):
                raise UpdateError(
                    f"{source}: records {printable(sorted(content.keys()), 80)}, not {sorted(REPLY_RECORDS)}"
                )
            arrays = checked_record(content, "arrays", ArrayRecord, self.expected_keys, source)
            metrics = checked_metrics(checked_record(content, "metrics", MetricRecord, REPLY_METRICS, source), source)
            claimed = checked_record(content, "client", ConfigRecord, ["client-id"], source)["client-id"]
            if not (isinstance(claimed, int) and not isinstance(claimed, bool)) or claimed not in self.expected_counts:
                raise UpdateError(
                    f"{source}: client-id is not one of the partition's clients 1..{len(self.expected_counts)}"
                )
            cid = self.identities.client_of(msg.metadata.src_node_id, claimed, source)
            if cid in seen:
                raise UpdateError(f"{source}: a second reply for client {cid} in this round")
            if metrics["num-examples"] != self.expected_counts[cid]:
                raise UpdateError(
                    f"{source}: num-examples must equal the manifest's {self.expected_counts[cid]} for client {cid}"
                )
            weights = validate_weights(arrays.to_numpy_ndarrays(), self.expected_shapes, source)
            return cid, weights, metrics["train-loss"]

        def aggregate_train(self, server_round, replies):
            if self.identities is None:
                self.identities = NodeIdentities()
            kept, clients, client_weights, claims = [], [], [], []
            for msg in replies:
                if msg.has_error():  # Flower logs and drops it
                    kept.append(msg)
                    continue
                source = f"round {server_round}, node {msg.metadata.src_node_id}"
                try:
                    cid, weights, loss = self.check_reply(msg, source, set(clients))
                except Exception as err:  # noqa: BLE001 - nothing one reply holds may stop the round
                    reason = err if isinstance(err, UpdateError) else f"{source}: not a reply ({type(err).__name__})"
                    print(f"rejected: {printable(str(reason), 300)}", flush=True)
                    claims.append(self.identities.client.get(msg.metadata.src_node_id, reply_client_id(msg)))
                    continue
                self.identities.bind(msg.metadata.src_node_id, cid)
                msg.content = RecordDict(
                    {
                        "arrays": ArrayRecord(weights),
                        "metrics": MetricRecord(
                            {"num-examples": self.expected_counts[cid], EQUAL_WEIGHT: 1, "train-loss": loss}
                        ),
                        "client": ConfigRecord({"client-id": cid}),
                    }
                )
                kept.append(msg)
                clients.append(cid)
                client_weights.append(weights)
            rejected = []
            for claimed in claims:  # each client's one reply; the rest (bad ids, second replies) are unknown
                if claimed in self.expected_counts and claimed not in clients and claimed not in rejected:
                    rejected.append(claimed)
            clip = getattr(self, "clipping_norm", None)  # a DP wrapper's, before adaptive clipping moves it
            arrays, metrics = super().aggregate_train(server_round, kept)
            new_global = arrays.to_numpy_ndarrays() if arrays is not None else self.current_global
            self.last_round = {
                "clients": sorted(clients + rejected),
                "rejected": sorted(rejected),
                "rejected_unknown": len(claims) - len(rejected),
                "drift": round_drift(self.current_global, client_weights, new_global) if self.current_global else None,
                "clip": clip,
            }
            return arrays, metrics

    Checked.__name__ = strategy_class.__name__
    return Checked


def toward_the_target_quantile(adaptive_class):
    """Flower's server-side adaptive clipping with S moved toward the target quantile, as Andrew et al. move it.

    Flower 1.41 feeds its update S ← S·exp(−η·(b − γ)) the fraction b of clipped
    updates where the paper has the unclipped ones, so S runs away from the
    quantile: with update norms uniform on [0, 10], S fell from 1 to 0.025 in 40
    rounds (tests/test_flower_app.py) where the median is 5. This counts the
    unclipped ones; the noise on the count is Flower's.
    """

    class TowardTheQuantile(adaptive_class):
        def _noisy_fraction(self, count, total):
            return 1.0 - super()._noisy_fraction(count, total)  # count is the clipped updates

    TowardTheQuantile.__name__ = adaptive_class.__name__
    return TowardTheQuantile


def reply_client_id(msg):
    """The client id a reply claims, or None."""
    try:
        cid = msg.content["client"]["client-id"]
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    return cid if isinstance(cid, int) and not isinstance(cid, bool) else None


def make_strategy(config, num_clients):
    """The checked Flower strategy for the run config, and its strategies.Configured.

    A private row's Flower class is one of Flower's server-side DP wrappers, around
    a FedAvg that weighs every client equally (the replies' "equal-weight" metric),
    as DP-FedAvg's noise assumes. The checks run before the wrapper clips.
    """
    configured = configured_strategy(config)
    row = configured.strategy
    fraction = setting(config, "fraction")
    sampled = max(1, round(fraction * num_clients))
    common = {
        "fraction_train": fraction,
        "fraction_evaluate": 0.0,
        "min_available_nodes": num_clients,
        "min_train_nodes": sampled,
    }
    extra = {p.flower_kwarg: configured.values[p.name] for p in row.parameters if p.flower_kwarg}
    strategy_class = checked_replies(getattr(flower, row.flower))
    if hasattr(strategy_class, "_noisy_fraction"):  # adaptive clipping
        strategy_class = toward_the_target_quantile(strategy_class)
    if not row.private:
        strategy = strategy_class(**common, **extra)
    else:
        if problem := privacy.problem(configured.values, sampled):
            raise ValueError(f"strategy {configured.name}: {problem}")
        if "count_noise_ratio" in configured.values:
            extra["clipped_count_stddev"] = privacy.count_noise(sampled, configured.values["count_noise_ratio"])
        equal = flower.FedAvg(**common, weighted_by_key=EQUAL_WEIGHT)
        strategy = strategy_class(equal, num_sampled_clients=sampled, **extra)
    strategy.fraction = fraction
    return strategy, configured


class CentralEvaluation:
    """evaluate_fn for Strategy.start: test-set metrics of each round's global model, kept as history rows and
    written as the run's state after every round (fedmnist/history.py), so a stopped run keeps what it did."""

    def __init__(self, model, test_set, strategy, model_bytes, configured, run):
        self.model, self.test_set, self.strategy, self.model_bytes = model, test_set, strategy, model_bytes
        self.configured = configured
        self.out_dir, self.results, self.offset = run  # where to write, the history so far, rounds done before
        self.rows, self.started = self.results["history"][configured.name], time.perf_counter()

    def __call__(self, server_round, arrays):
        weights = arrays.to_numpy_ndarrays()
        metrics, _ = evaluate_weights(self.model, weights, *self.test_set)
        now = time.perf_counter()
        if server_round > 0:
            last, number = self.strategy.last_round, server_round + self.offset
            self.rows.append(
                round_row(
                    number,
                    metrics,
                    now - self.started,
                    last["clients"],
                    last["rejected"],
                    self.model_bytes,
                    last["rejected_unknown"],
                    drift=last["drift"],
                    privacy=self.privacy(number, last["clip"]),
                )
            )
            self.results["rounds_completed"] = number
            save_state(self.out_dir, self.results, {self.configured.name: StrategyState(weights)})
            print(f"round {number}: test accuracy {100 * metrics['accuracy']:.2f}%", flush=True)
        self.strategy.current_global = weights  # the next round starts here
        self.started = time.perf_counter()  # the drift and this evaluation's bookkeeping count for no round
        return MetricRecord(metrics)

    def privacy(self, server_round, clip):
        """A private strategy's record: the round's clipping norm and ε by the project's accountant.

        Flower samples a fixed number of clients, not each with probability C, so the
        accountant takes no amplification by sampling (q = 1): exact when C = 1, an
        upper bound otherwise.
        """
        population = len(self.strategy.expected_counts)
        record = self.configured.strategy.privacy_spent(self.configured.values, 1.0, server_round, population)
        return record and {**record, "clip": clip}


def server_folder(config, key, default):
    """A folder of the run config: as given (relative: to the working directory of the process running the
    ServerApp, the SuperLink's), or the project's default when empty. Under a SuperLink the app runs from Flower's
    unpacked copy, where the project's default is not the organizer's folder: there the key is required."""
    raw = str(config.get(key, ""))
    if raw:
        return Path(raw).expanduser().resolve()
    flower_home = Path(os.environ.get("FLWR_HOME", "~/.flwr")).expanduser().resolve()
    if defaults.PROJECT_DIR.resolve().is_relative_to(flower_home):
        raise ValueError(
            f"run config {key} is empty and this ServerApp runs from Flower's copy of the app "
            f"({defaults.PROJECT_DIR}); pass it with an absolute path, e.g. flwr run . --run-config "
            "\"data-dir='/ruta/a/data' out-dir='/ruta/a/resultados'\" (data-dir: the organizer's folder, with "
            "manifest.json, test.npz and pesos_iniciales.npz)"
        )
    return default.resolve()


def resumed(out_dir, config, row, rounds):
    """(results, start weights or None, rounds already done) of a run that continues from its last round."""
    if row.multi_round_only or row.key == "dpfedavg_adaptive":
        raise ValueError(
            f"run config resume: {row.key} keeps a server state that Flower's strategies do not checkpoint; "
            "start over (resume=false) or run it in the project's own simulation, which resumes it"
        )
    results, states = load_state(out_dir, config, rounds)
    done = results["rounds_completed"]
    weights = states[next(iter(states))].weights if states else None
    return results, weights, done


@app.main()
def main(grid: Grid, context: Context) -> None:
    try:
        run(grid, context.run_config)
    except (ValueError, FedMnistError, OSError) as err:  # a setting or a folder: one line, in the run's log
        message = os_error_text(err) if isinstance(err, OSError) and not isinstance(err, PartitionError) else err
        print(f"ServerApp: error: {message}", flush=True)
        raise SystemExit(f"ServerApp: error: {message}") from None


def run(grid, config):
    data_dir = server_folder(config, "data-dir", defaults.DATA_DIR)
    out_dir = server_folder(config, "out-dir", defaults.RESULTS_DIR / "flower")
    manifest = read_manifest(data_dir)
    num_clients, rounds = manifest["num_clients"], setting(config, "rounds")
    initial_weights, _ = load_initial_weights(data_dir)
    strategy, configured = make_strategy(config, num_clients)
    training = training_config(config, data_dir)
    node_clients = str(config.get("node-clients", ""))
    strategy.identities = NodeIdentities(read_node_clients(Path(node_clients), num_clients) if node_clients else None)
    initial_arrays = ArrayRecord(initial_weights)
    strategy.expected_keys, strategy.expected_shapes = list(initial_arrays.keys()), [w.shape for w in initial_weights]
    strategy.expected_counts = {int(cid): info["num_samples"] for cid, info in manifest["clients"].items()}
    history_config = run_config(
        runtime="flower",
        data=project_relative(data_dir),
        manifest=manifest,
        fraction=strategy.fraction,
        epochs=training.epochs,
        batch_size=training.batch_size,
        optimizer=training.optimizer,
        learning_rate=training.learning_rate,
        strategies=[configured.name],
        seed=training.seed,
        parameters={configured.name: configured.values} if configured.values else {},
    )
    results, start, done = new_history(history_config), None, 0
    if str(config.get("resume", "")).lower() in ("true", "1"):
        results, start, done = resumed(out_dir, history_config, configured.strategy, rounds)
        print(f"resuming after round {done} of {rounds} from {out_dir}", flush=True)
    title = (
        f"Flower, {configured.label()}: K = {num_clients}, C = {strategy.fraction}, "
        f"E = {training.epochs}, B = {training.batch_size}"
    )
    model = build_model()
    if done < rounds:
        evaluation = CentralEvaluation(
            model,
            load_test_data(data_dir),
            strategy,
            sum(w.nbytes for w in initial_weights),
            configured,
            (out_dir, results, done),
        )
        strategy.start(
            grid=grid,
            initial_arrays=ArrayRecord(start) if start is not None else initial_arrays,
            num_rounds=rounds - done,
            train_config=ConfigRecord(training.to_record()),
            evaluate_fn=evaluation,
        )
    final = strategy.current_global if done < rounds else start
    write_results(out_dir, results, title)
    if final is None or not all(np.all(np.isfinite(w)) for w in final):
        print(f"Wrote {out_dir / RESULTS_FILE} and its figure; the final model is not finite: not saved", flush=True)
        return
    model.set_weights(final)
    save_model(model, out_dir / f"modelo_global_flower_{configured.strategy.key}.h5")
    print(f"Wrote {out_dir / RESULTS_FILE}, its figure and the final global model", flush=True)
