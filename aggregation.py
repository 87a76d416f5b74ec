"""Aggregation rules: pure NumPy, lists of weight arrays in, one list of weight arrays out.

Every rule accumulates in float64 and returns float32 arrays in the input's order.
FedProx needs no rule of its own: its server step is FedAvg's weighted mean over
updates trained with the proximal term (see client.py).
"""

import numpy as np


def fedavg(weighted_updates):
    """Mean of the updates weighted by their example counts (McMahan et al., 2017).

    `weighted_updates` is an iterable of (weights, num_examples); it is consumed
    one update at a time, so extra memory stays near one model whatever K is.
    """
    total, count = None, 0
    for weights, num_examples in weighted_updates:
        if num_examples <= 0:
            raise ValueError(f"num_examples must be positive, got {num_examples}")
        if total is None:
            total = [np.zeros(w.shape, dtype=np.float64) for w in weights]
        for acc, w in zip(total, weights):
            acc += num_examples * np.asarray(w, dtype=np.float64)
        count += num_examples
    if total is None:
        raise ValueError("fedavg needs at least one update")
    return [(acc / count).astype(np.float32) for acc in total]


def _stack_layer(weight_lists, layer):
    return np.stack([np.asarray(weights[layer], dtype=np.float64) for weights in weight_lists])


def coordinate_wise(weight_lists, reduce_stacked):
    """Apply `reduce_stacked` (K, ...) -> (...) layer by layer; returns float32 arrays."""
    if not weight_lists:
        raise ValueError("aggregation needs at least one update")
    return [reduce_stacked(_stack_layer(weight_lists, layer)).astype(np.float32) for layer in range(len(weight_lists[0]))]


def fedmed(weight_lists):
    """Coordinate-wise median of the updates."""
    return coordinate_wise(weight_lists, lambda stacked: np.median(stacked, axis=0))


def trimmed_mean(weight_lists, beta):
    """Coordinate-wise β-trimmed mean: drop the ⌊βK⌋ largest and smallest values per coordinate (Yin et al., 2018)."""
    if not 0 <= beta < 0.5:
        raise ValueError(f"trim fraction beta must be in [0, 0.5), got {beta}")
    cut = int(beta * len(weight_lists))

    def trim(stacked):
        kept = np.sort(stacked, axis=0)[cut: stacked.shape[0] - cut]
        return kept.mean(axis=0)

    return coordinate_wise(weight_lists, trim)


def pairwise_squared_distances(weight_lists):
    """K×K squared Euclidean distances between flattened updates, via the Gram matrix."""
    flat = np.stack([np.concatenate([np.ravel(w).astype(np.float64) for w in weights]) for weights in weight_lists])
    gram = flat @ flat.T
    norms = np.diag(gram)
    return np.maximum(norms[:, None] + norms[None, :] - 2.0 * gram, 0.0)


def krum_scores(weight_lists, num_malicious):
    """Krum score of each update: the sum of squared distances to its K − f − 2 nearest neighbours."""
    k = len(weight_lists)
    neighbours = k - num_malicious - 2
    if neighbours < 1:
        raise ValueError(f"Krum needs K > f + 2 (K={k}, f={num_malicious})")
    distances = pairwise_squared_distances(weight_lists)
    np.fill_diagonal(distances, np.inf)
    return np.sort(distances, axis=1)[:, :neighbours].sum(axis=1)


def krum(weight_lists, num_malicious, num_selected=1):
    """(Multi-)Krum (Blanchard et al., 2017): average the `num_selected` updates with the lowest scores."""
    chosen = np.argsort(krum_scores(weight_lists, num_malicious), kind="stable")[:num_selected]
    return coordinate_wise([weight_lists[i] for i in chosen], lambda stacked: stacked.mean(axis=0))
