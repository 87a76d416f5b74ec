"""What the ServerApp reads from Flower's run config and sends to every client in each round's config.

A run-config value of "" means the project's default (fedmnist/defaults.py and the
strategy registry), so those defaults are written in one place. Relative folders
resolve against the working directory of the process that reads them; the
ServerApp sends clients its resolved data folder, and a SuperNode's own node
config `data-dir` takes precedence.
"""

from dataclasses import dataclass
from pathlib import Path

from fedmnist import defaults, strategies
from fedmnist.settings import SETTINGS

EQUAL_WEIGHT = "equal-weight"  # a reply metric of 1: what a FedAvg that weighs clients equally weighs them by


@dataclass(frozen=True)
class TrainingConfig:
    """Local training, as the ServerApp resolves it and every ClientApp receives it."""

    data_dir: str
    epochs: int
    batch_size: int
    learning_rate: float
    seed: int
    optimizer: str = defaults.OPTIMIZER

    def to_record(self):
        """The round's config for the clients: data-dir, then each setting under its run-config key."""
        return {"data-dir": self.data_dir, **{SETTINGS[name].flower: getattr(self, name) for name in TRAINING}}

    @classmethod
    def from_record(cls, record):
        return cls(
            str(record["data-dir"]),
            **{name: SETTINGS[name].kind(record[SETTINGS[name].flower]) for name in TRAINING},
        )


TRAINING = ("epochs", "batch_size", "optimizer", "learning_rate", "seed")  # what a client trains with


def value(config, key, default, kind):
    """config[key] as `kind`, the default where it is missing or ""; ValueError naming the key otherwise."""
    raw = config.get(key, "")
    if raw == "":
        return default
    try:
        converted = kind(raw)
    except (TypeError, ValueError, OverflowError):
        converted = None
    if converted is None or isinstance(raw, bool) or (kind is int and converted != raw):
        raise ValueError(f"run config {key}={repr(raw)[:40]}: must be {'an integer' if kind is int else 'a number'}")
    return converted


def resolve_folder(raw, default):
    """A folder from a config: the default where "", else as given, relative to the working directory."""
    return (Path(str(raw)).expanduser() if str(raw) else default).resolve()


def setting(config, name):
    """The run config's value of the run setting `name` (fedmnist/settings.py): its default where missing or "";
    ValueError naming the key where it is not allowed."""
    row = SETTINGS[name]
    raw = config.get(row.flower, "")
    if raw == "":
        return row.default
    converted = str(raw) if row.kind is str else value(config, row.flower, row.default, row.kind)
    if problem := row.problem(converted, f"run config {row.flower}="):
        raise ValueError(problem)
    return converted


def training_config(config, data_dir):
    optimizer = setting(config, "optimizer")
    learning_rate = setting(config, "learning_rate")
    return TrainingConfig(
        str(data_dir),
        setting(config, "epochs"),
        setting(config, "batch_size"),
        defaults.LEARNING_RATES[optimizer] if learning_rate is None else learning_rate,
        setting(config, "seed"),
        optimizer,
    )


def configured_strategy(config):
    """The registry row named by the run config's `strategy`, with its parameters (strategies.Configured)."""
    row = strategies.get(str(config.get("strategy", "")) or defaults.ROUND_STRATEGIES[0])
    if row.flower is None:
        raise ValueError(
            f"run config strategy={row.key!r}: has no Flower counterpart; choose from "
            + ", ".join(key for key, r in strategies.REGISTRY.items() if r.flower)
        )
    values = {p.name: p.check(value(config, p.config_key, p.default, p.kind)) for p in row.parameters}
    return strategies.Configured(row, values)


def client_data_dir(node_config, train_config):
    """A SuperNode's own partition folder (node config data-dir), else the folder the ServerApp sent."""
    return resolve_folder(node_config.get("data-dir", ""), Path(train_config.data_dir))


def client_id(node_config, num_clients):
    """The project's client id (1..K) of this node: its partition-id (0..K-1) plus one."""
    partition_id = int(node_config["partition-id"])
    num_partitions = int(node_config.get("num-partitions", num_clients))
    if num_partitions != num_clients or not 0 <= partition_id < num_clients:
        raise ValueError(
            f"node config partition-id={partition_id} num-partitions={num_partitions}: the partition in "
            f"data-dir has K = {num_clients} clients, so use num-partitions={num_clients} and "
            f"partition-id 0..{num_clients - 1}"
        )
    return partition_id + 1
