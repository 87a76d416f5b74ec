"""What the ClientApp and the ServerApp both read from Flower's configs."""

from pathlib import Path

STRATEGIES = {  # the run config's strategy (the project's method key) -> Flower's strategy class
    "fedavg": "FedAvg", "fedprox": "FedProx", "fedmed": "FedMedian", "trimmed_mean": "FedTrimmedAvg", "krum": "Krum",
}


def project_path(value):
    """A path from a config: absolute as given, relative to the project root (where split_data.py lives)."""
    try:
        import split_data
    except ModuleNotFoundError:
        raise RuntimeError("the project's modules are not importable: run with PYTHONPATH set to the repository root "
                           "(PYTHONPATH=$PWD flwr run flower_app), or use flower_app/run_local.py") from None

    path = Path(str(value)).expanduser()
    return path if path.is_absolute() else split_data.PROJECT_DIR / path


def client_data_dir(context):
    """A SuperNode's own partition folder (node config data-dir), else the run's data-dir."""
    return project_path(context.node_config.get("data-dir", context.run_config["data-dir"]))


def client_id(context, num_clients):
    """The project's client id (1..K) of this node: its partition-id (0..K-1) plus one."""
    partition_id = int(context.node_config["partition-id"])
    num_partitions = int(context.node_config.get("num-partitions", num_clients))
    if num_partitions != num_clients or not 0 <= partition_id < num_clients:
        raise ValueError(f"node config partition-id={partition_id} num-partitions={num_partitions}: the partition in "
                         f"data-dir has K = {num_clients} clients, so use num-partitions={num_clients} and partition-id 0..{num_clients - 1}")
    return partition_id + 1
