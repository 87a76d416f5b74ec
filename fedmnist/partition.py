"""The partition registry: how the organizer's training pool is dealt among K clients.

One row per partitioner. A partitioner takes the pool's labels, K, the
"partition" random stream and its own options (Dirichlet's α, the shards per
client) as keywords, and returns one sorted index array per client. Its options
are declared on its row, with their default, bounds and help: split_data.py and
demo.py build their options from them, the manifest records them, scenarios and
figures name them. Adding a partition is its function here, one
`register(Partitioner(...))` and its tests.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from fedmnist import seeds
from fedmnist.defaults import DIRICHLET_ALPHA, PARTITION, SHARDS_PER_CLIENT
from fedmnist.errors import FedMnistError
from fedmnist.restricted_pickle import printable

NUM_CLASSES = 10


class PartitionError(FedMnistError, ValueError):
    """A partition request, or an organizer's data folder or file, that cannot be used."""


@dataclass(frozen=True)
class Option:
    """One option of a partitioner: its keyword (and the manifest's and a scenario's [split] key), and its bounds."""

    name: str
    kind: type  # int or float
    default: float
    low: float  # the bound values must reach: at least `low`, or strictly above it with `above`
    above: bool
    help: str  # for the command line
    caption: str  # Spanish, for the partition figure's title: "{value}" is filled in

    @property
    def flag(self):
        return "--" + self.name.replace("_", "-")

    def check(self, value):
        """`value` as this option's type; PartitionError naming the option and its bounds if it cannot be one."""
        integral = isinstance(value, int) and not isinstance(value, bool)
        number = integral or (isinstance(value, float) and self.kind is float)
        try:
            converted = self.kind(value) if number else None
        except OverflowError:  # an integer of hundreds of digits, for a float option
            converted = None
        if converted is not None and (self.kind is int or math.isfinite(converted)):
            if converted > self.low if self.above else converted >= self.low:
                return converted
        noun = "an integer" if self.kind is int else "a number"
        words = f"{noun} {'above' if self.above else 'at least'} {self.low:g}"
        if self.above and self.low == 0:
            words = f"a positive {noun.split()[-1]}"
        raise PartitionError(f"{self.flag} {printable(repr(value), 40)}: must be {words}")


@dataclass(frozen=True)
class Partitioner:
    """One partition: a registry row."""

    key: str  # in CLI choices, manifests and scenarios
    split: Callable  # (labels, num_clients, rng, **options) -> [sorted index array per client]
    help: str
    options: tuple = ()

    def values(self, given):
        """Every option's value: `given` ({name: value}) over the defaults, checked; PartitionError for an option of
        another partition."""
        known = {option.name: option for option in self.options}
        if unknown := sorted(set(given) - set(known)):
            flags = ", ".join(f"--{name.replace('_', '-')}" for name in unknown)
            raise PartitionError(f"{flags}: not an option of the {self.key} partition; {self.takes()}")
        return {name: option.check(given.get(name, option.default)) for name, option in known.items()}

    def takes(self):
        if not self.options:
            return f"{self.key} takes no options"
        return f"{self.key} takes {', '.join(option.flag for option in self.options)}"

    def caption(self, values):
        """The Spanish title fragment naming the options' values: ", α = 0.1"."""
        return "".join(", " + option.caption.format(value=values.get(option.name)) for option in self.options)


REGISTRY = {}


def register(row):
    REGISTRY[row.key] = row
    return row


def shuffled_by_class(labels, rng):
    """All indices, shuffled within each class (by NumPy Generator `rng`) and laid out class after class."""
    return np.concatenate([rng.permutation(np.flatnonzero(labels == c)) for c in range(NUM_CLASSES)])


def iid_partition(labels, num_clients, rng):
    """Stratified IID split: each client's count of each class is within 1 of proportional.

    Dealing the class-ordered indices round-robin keeps both each class count
    and each client's total within one of K's share.
    """
    dealt = shuffled_by_class(labels, rng)
    return [np.sort(dealt[k::num_clients]) for k in range(num_clients)]


def dirichlet_partition(labels, num_clients, rng, alpha, max_draws=100):
    """Per-class Dirichlet(α) proportions across clients (Hsu et al., 2019); smaller α, more skew.

    Draws again (same generator) until every client has at least one example.
    """
    for _ in range(max_draws):
        parts = [[] for _ in range(num_clients)]
        for c in range(NUM_CLASSES):
            indices = rng.permutation(np.flatnonzero(labels == c))
            cuts = (np.cumsum(rng.dirichlet(np.full(num_clients, alpha)))[:-1] * len(indices)).astype(int)
            for part, piece in zip(parts, np.split(indices, cuts)):
                part.append(piece)
        parts = [np.sort(np.concatenate(part)) for part in parts]
        if min(len(part) for part in parts) > 0:
            return parts
    raise PartitionError(
        f"--alpha {alpha} left a client with no examples in {max_draws} draws; raise --alpha or lower --clients"
    )


def shards_partition(labels, num_clients, rng, shards_per_client):
    """McMahan et al.'s pathological non-IID split: sort by label, cut K·s shards, give each client s of them."""
    num_shards = num_clients * shards_per_client
    if num_shards > len(labels):
        each = printable(str(shards_per_client), 20)
        raise PartitionError(f"K={num_clients} clients x {each} shards per client: need K*s <= {len(labels)}")
    by_label = shuffled_by_class(labels, rng)  # label order, random order within each label
    shards = np.array_split(by_label, num_shards)
    order = rng.permutation(num_shards)
    return [
        np.sort(np.concatenate([shards[i] for i in order[k * shards_per_client : (k + 1) * shards_per_client]]))
        for k in range(num_clients)
    ]


register(Partitioner("iid", iid_partition, "stratified: every client sees every digit in proportion"))
register(
    Partitioner(
        "dirichlet",
        dirichlet_partition,
        "per-class Dirichlet(alpha) proportions (Hsu et al., 2019)",
        (
            Option(
                "alpha",
                float,
                DIRICHLET_ALPHA,
                0.0,
                True,
                "alpha, the Dirichlet concentration: 0.1 is very skewed, 100 nearly IID",
                "α = {value}",
            ),
        ),
    )
)
register(
    Partitioner(
        "shards",
        shards_partition,
        "label-sorted shards (McMahan et al., 2017)",
        (
            Option(
                "shards_per_client",
                int,
                SHARDS_PER_CLIENT,
                1,
                False,
                "s, label-sorted shards per client",
                "{value} fragmentos por cliente",
            ),
        ),
    )
)
PARTITIONERS = tuple(REGISTRY)


def get(partition):
    """The registry row of `partition`; PartitionError naming the choices otherwise."""
    if partition not in REGISTRY:
        raise PartitionError(f"--partition {printable(repr(partition), 40)}: choose one of {', '.join(REGISTRY)}")
    return REGISTRY[partition]


def option_names():
    """Every partitioner's option names, in registry order."""
    return tuple(dict.fromkeys(option.name for row in REGISTRY.values() for option in row.options))


def make_partition(labels, num_clients, seed, partition, **options):
    """Deal `labels`' indices among `num_clients` clients by the registry's `partition`, with its `options` (any
    left out take their defaults); one sorted index array per client."""
    row = get(partition)
    values = row.values(options)
    if not 1 <= num_clients <= len(labels):
        raise PartitionError(f"K={num_clients} clients: need 1 <= K <= {len(labels)} (the number of training examples)")
    return row.split(labels, num_clients, seeds.rng(seed, "partition"), **values)


def class_histogram(labels):
    return np.bincount(labels, minlength=NUM_CLASSES).tolist()


def stratified_subset(labels, size, seed, part=0):
    """Indices of a seeded, class-stratified subset of `size` examples (for quick runs and tests); `part` tells
    the subsets of one seed apart (0: training pool, 1: test set)."""
    if size is None or size >= len(labels):
        return np.arange(len(labels))
    evenly_spaced = (np.arange(size) * len(labels)) // size
    return np.sort(shuffled_by_class(labels, seeds.rng(seed, "subset", part))[evenly_spaced])


def hold_out(labels, fraction, seed):
    """(pool, held out): a seeded, class-stratified `fraction` of the indices held out, the rest in the pool."""
    count = int(round(fraction * len(labels)))
    if not 0 <= count < len(labels):
        raise PartitionError(f"a validation fraction of {fraction} leaves no training examples")
    dealt = shuffled_by_class(labels, seeds.rng(seed, "validation"))
    chosen = np.zeros(len(labels), bool)
    chosen[dealt[(np.arange(count) * len(labels)) // count] if count else []] = True
    return np.flatnonzero(~chosen), np.flatnonzero(chosen)


def add_partition_options(parser, default=None):
    """--partition and every partitioner's options, from the registry (an option left out takes its default)."""
    default = default or PARTITION
    parser.add_argument(
        "--partition",
        choices=PARTITIONERS,
        default=default,
        help="; ".join(f"{key}: {row.help}" for key, row in REGISTRY.items()) + f" (default: {default})",
    )
    for row in REGISTRY.values():
        for option in row.options:
            parser.add_argument(
                option.flag,
                type=option.kind,
                default=None,
                help=f"{option.help}, with --partition {row.key} (default: {option.default:g})",
            )


def given_options(args):
    """{option name: value} of the partition options given on the command line."""
    return {name: getattr(args, name) for name in option_names() if getattr(args, name, None) is not None}
