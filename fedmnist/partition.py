"""Partitioners: labels, K and a seed in, one sorted index array per client out.

iid (stratified), dirichlet (per-class Dirichlet(alpha), Hsu et al., 2019) and
shards (McMahan et al., 2017) each take labels, K and a seed, plus their own parameter (alpha, shards per
client); make_partition dispatches by name and returns one index array per client from each.
"""

import math

import numpy as np

from fedmnist import seeds
from fedmnist.defaults import DIRICHLET_ALPHA, PARTITION, SHARDS_PER_CLIENT

NUM_CLASSES = 10


class PartitionError(ValueError):
    """A partition folder, file or request that cannot be used."""


def shuffled_by_class(labels, rng):
    """All indices, shuffled within each class (by NumPy Generator `rng`) and laid out class after class."""
    return np.concatenate([rng.permutation(np.flatnonzero(labels == c)) for c in range(NUM_CLASSES)])


def iid_partition(labels, num_clients, seed):
    """Stratified IID split: each client's count of each class is within 1 of proportional.

    Dealing the class-ordered indices round-robin keeps both each class count
    and each client's total within one of K's share.
    """
    if not 1 <= num_clients <= len(labels):
        raise PartitionError(f"K={num_clients} clients: need 1 <= K <= {len(labels)} (the number of training examples)")
    dealt = shuffled_by_class(labels, seeds.rng(seed, "partition"))
    return [np.sort(dealt[k::num_clients]) for k in range(num_clients)]


def dirichlet_partition(labels, num_clients, seed, alpha, max_draws=100):
    """Per-class Dirichlet(α) proportions across clients (Hsu et al., 2019); smaller α, more skew.

    Draws again (same seeded generator) until every client has at least one example.
    """
    if not (math.isfinite(alpha) and alpha > 0):
        raise PartitionError(f"--alpha {alpha}: must be a positive number (0.1 is very skewed, 100 is nearly IID)")
    if not 1 <= num_clients <= len(labels):
        raise PartitionError(f"K={num_clients} clients: need 1 <= K <= {len(labels)} (the number of training examples)")
    rng = seeds.rng(seed, "partition")
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


def shards_partition(labels, num_clients, seed, shards_per_client):
    """McMahan et al.'s pathological non-IID split: sort by label, cut K·s shards, give each client s of them."""
    num_shards = num_clients * shards_per_client
    if shards_per_client < 1 or not 1 <= num_shards <= len(labels):
        raise PartitionError(f"K={num_clients} clients x {shards_per_client} shards: need 1 <= K*s <= {len(labels)}")
    rng = seeds.rng(seed, "partition")
    by_label = shuffled_by_class(labels, rng)  # label order, random order within each label
    shards = np.array_split(by_label, num_shards)
    order = rng.permutation(num_shards)
    return [
        np.sort(np.concatenate([shards[i] for i in order[k * shards_per_client : (k + 1) * shards_per_client]]))
        for k in range(num_clients)
    ]


PARTITIONERS = ("iid", "dirichlet", "shards")


def make_partition(
    labels, num_clients, seed, partition=PARTITION, alpha=DIRICHLET_ALPHA, shards_per_client=SHARDS_PER_CLIENT
):
    """Dispatch to one partitioner by name, passing it its own parameter; one index array per client."""
    if partition == "iid":
        return iid_partition(labels, num_clients, seed)
    if partition == "dirichlet":
        return dirichlet_partition(labels, num_clients, seed, alpha)
    if partition == "shards":
        return shards_partition(labels, num_clients, seed, shards_per_client)
    raise PartitionError(f"--partition {partition!r}: choose one of {', '.join(PARTITIONERS)}")


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
