"""ServerApp: Flower's strategies over the project's shared start, with central evaluation each round.

Starts from split_data.py's pesos_iniciales.npz, runs R rounds of the strategy named in the run
config (Flower's FedAvg, FedProx, FedMedian, FedTrimmedAvg or Krum), evaluates every global model on
the common test set, and writes simulacion.json and simulacion.png in federated_simulation.py's
format, plus the final global model as modelo_global_flower_<strategy>.h5.
"""

import time

from flwr.app import ArrayRecord, Context, MetricRecord
from flwr.serverapp import Grid, ServerApp

from fedmnist.settings import STRATEGIES, project_path

app = ServerApp()



def checked_replies(strategy_class):
    """`strategy_class` whose aggregate_train first drops replies that fail the project's update checks."""
    from updates import UpdateError, validate_weights

    class Checked(strategy_class):
        expected_keys, expected_shapes, expected_counts, last_round = (), (), {}, {}

        def check_reply(self, msg, source, seen):
            """The reply's client id, if the reply passes the checks the instructor's loader applies to a file."""
            cid = msg.content["client"]["client-id"]
            if not isinstance(cid, int) or isinstance(cid, bool) or cid not in self.expected_counts:
                raise UpdateError(f"{source}: client-id is not one of the partition's clients 1..{len(self.expected_counts)}")
            if cid in seen:
                raise UpdateError(f"{source}: a second reply for client {cid} in this round")
            examples = msg.content["metrics"]["num-examples"]
            if examples != self.expected_counts[cid]:
                raise UpdateError(f"{source}: num-examples must equal the manifest's {self.expected_counts[cid]} for client {cid}")
            arrays = msg.content["arrays"]
            if list(arrays.keys()) != list(self.expected_keys):
                raise UpdateError(f"{source}: the arrays are not the model's")
            validate_weights(arrays.to_numpy_ndarrays(), self.expected_shapes, source)
            return cid

        def aggregate_train(self, server_round, replies):
            kept, clients, rejected = [], [], []
            for msg in replies:
                if msg.has_error():  # Flower logs and drops it
                    kept.append(msg)
                    continue
                source = f"round {server_round}, node {msg.metadata.src_node_id}"
                try:
                    cid = self.check_reply(msg, source, set(clients))
                except (UpdateError, KeyError, TypeError, ValueError) as err:
                    print(f"rejected: {err}", flush=True)
                    rejected.append(msg.metadata.src_node_id)
                    continue
                kept.append(msg)
                clients.append(cid)
            self.last_round = {"clients": sorted(clients), "rejected": rejected}
            return super().aggregate_train(server_round, kept)

    Checked.__name__ = strategy_class.__name__
    return Checked


def make_strategy(config, num_clients):
    """The Flower strategy named by config["strategy"], and its name in the results (fedprox carries mu)."""
    from flwr.serverapp import strategy as flower

    key = str(config["strategy"])
    if key not in STRATEGIES:
        raise ValueError(f"run config strategy={key!r}: choose from {', '.join(STRATEGIES)}")
    fraction = float(config["fraction-train"])
    if not 0 < fraction <= 1:
        raise ValueError(f"run config fraction-train={fraction}: must be in (0, 1]")
    common = {"fraction_train": fraction, "fraction_evaluate": 0.0, "min_available_nodes": num_clients,
              "min_train_nodes": max(1, round(fraction * num_clients))}
    extra = {"fedprox": {"proximal_mu": float(config["proximal-mu"])}, "trimmed_mean": {"beta": float(config["trim-beta"])},
             "krum": {"num_malicious_nodes": int(config["krum-f"])}}.get(key, {})
    name = f"fedprox:{float(config['proximal-mu'])}" if key == "fedprox" else key
    return checked_replies(getattr(flower, STRATEGIES[key]))(**common, **extra), name


class CentralEvaluation:
    """evaluate_fn for Strategy.start: test-set metrics of each round's global model, kept as history rows."""

    def __init__(self, model, test_set, strategy, model_bytes):
        self.model, self.test_set, self.strategy, self.model_bytes = model, test_set, strategy, model_bytes
        self.history, self.started = [], time.perf_counter()

    def __call__(self, server_round, arrays):
        from evaluation import evaluate_weights

        metrics, _ = evaluate_weights(self.model, arrays.to_numpy_ndarrays(), *self.test_set)
        now = time.perf_counter()
        if server_round > 0:
            self.history.append({
                "round": server_round, **metrics, "seconds": round(now - self.started, 2),
                **self.strategy.last_round, "bytes_received_per_client": self.model_bytes,
                "bytes_sent_per_client": self.model_bytes,
            })
            print(f"round {server_round}: test accuracy {100 * metrics['accuracy']:.2f}%", flush=True)
        self.started = now
        return MetricRecord(metrics)


@app.main()
def main(grid: Grid, context: Context) -> None:
    from federated_simulation import RESULTS_FILE, write_results
    from model import build_model, save_model
    from split_data import load_initial_weights, load_test_data, read_manifest

    config = context.run_config
    data_dir, out_dir = project_path(config["data-dir"]), project_path(config["out-dir"])
    manifest = read_manifest(data_dir)
    num_clients, rounds = manifest["num_clients"], int(config["num-server-rounds"])
    initial_weights, _ = load_initial_weights(data_dir)
    strategy, name = make_strategy(config, num_clients)
    initial_arrays = ArrayRecord(initial_weights)
    strategy.expected_keys, strategy.expected_shapes = list(initial_arrays.keys()), [w.shape for w in initial_weights]
    strategy.expected_counts = {int(cid): info["num_samples"] for cid, info in manifest["clients"].items()}

    model = build_model()
    evaluation = CentralEvaluation(model, load_test_data(data_dir), strategy, sum(w.nbytes for w in initial_weights))
    started = time.perf_counter()
    result = strategy.start(grid=grid, initial_arrays=initial_arrays, num_rounds=rounds, evaluate_fn=evaluation)
    wall_seconds = time.perf_counter() - started

    results = {
        "config": {"runtime": "flower", "data": str(data_dir), "partition": manifest["partition"], "num_clients": num_clients,
                   "fraction": float(config["fraction-train"]), "epochs": int(config["local-epochs"]),
                   "batch_size": int(config["batch-size"]), "learning_rate": float(config["learning-rate"]),
                   "strategies": [name], "flower_strategy": type(strategy).__name__, "seed": int(config["seed"]),
                   "partition_seed": manifest["seed"]},
        "rounds_completed": rounds,
        "history": {name: evaluation.history},
        "wall_seconds": round(wall_seconds, 1),
    }
    title = f"Flower, {name}: K = {num_clients}, C = {config['fraction-train']}, E = {config['local-epochs']}, B = {config['batch-size']}"
    write_results(out_dir, results, title)
    model.set_weights(result.arrays.to_numpy_ndarrays())
    save_model(model, out_dir / f"modelo_global_flower_{config['strategy']}.h5")
    print(f"Wrote {out_dir / RESULTS_FILE}, its figure and the final global model in {wall_seconds:.0f} s", flush=True)
