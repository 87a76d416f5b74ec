"""Aggregation rules: pure NumPy, (weights, num_examples) pairs in, one list of weight arrays out.

Every rule accumulates in float64 (the median selects exactly in float32) and
returns float32 arrays in the input's order. The rules that do not weight by
example counts (median, trimmed mean, Krum's choice) ignore them. FedProx needs
no rule of its own: its server step is FedAvg's weighted mean over updates
trained with the proximal term (see fedmnist/training.py). Which rules exist,
and their parameters, is fedmnist/strategies.py's registry.
"""

import math

import numpy as np

CHUNK_BYTES = 16 * 1024 * 1024  # working block of the coordinate-wise rules


SCRATCH_ELEMENTS = 1 << 16  # FedAvg converts each update to float64 this many values at a time


def fedavg(weighted_updates):
    """Mean of the updates weighted by their example counts (McMahan et al., 2017).

    `weighted_updates` is an iterable of (weights, num_examples); it is consumed
    one update at a time (a generator can load each from disk only when needed).
    Extra memory is the float64 accumulator, a small scratch buffer and the
    float32 result, whatever K is.
    """
    total, count = None, 0
    scratch = np.empty(SCRATCH_ELEMENTS, dtype=np.float64)
    for weights, num_examples in weighted_updates:
        factor = float(num_examples) if abs(num_examples) < 2**1000 else math.inf
        if not (math.isfinite(factor) and factor > 0):
            raise ValueError(f"num_examples must be a positive count, got {factor}")
        if total is None:
            total = [np.zeros(np.shape(w), dtype=np.float64) for w in weights]
        for acc, w in zip(total, weights):
            acc_flat, w_flat = acc.reshape(-1), np.ravel(w)
            for start in range(0, w_flat.size, SCRATCH_ELEMENTS):
                part = w_flat[start : start + SCRATCH_ELEMENTS]
                term = scratch[: part.size]
                term[:] = part  # widen first: float32 products of large weights and counts overflow
                term *= factor
                acc_flat[start : start + part.size] += term
        count += factor
    if total is None:
        raise ValueError("fedavg needs at least one update")
    result = []
    for layer in range(len(total)):
        total[layer] /= count
        result.append(total[layer].astype(np.float32))
        total[layer] = None  # free each float64 layer as soon as it is cast
    return result


def coordinate_blocks(weight_lists, dtype=np.float64, chunk_bytes=None):
    """Yield (layer, start, stop, block): block[c, k] is update k's coordinate start + c of `layer`, as `dtype`.

    Blocks hold at most `chunk_bytes`, so the coordinate-wise rules run in
    bounded memory whatever K is, and each row (one coordinate across all
    updates) is contiguous for fast partitioning.
    """
    if not weight_lists:
        raise ValueError("aggregation needs at least one update")
    k = len(weight_lists)
    step = max(1, (chunk_bytes or CHUNK_BYTES) // (np.dtype(dtype).itemsize * k))
    for layer in range(len(weight_lists[0])):
        flat = [np.ravel(weights[layer]) for weights in weight_lists]
        size = flat[0].size
        for start in range(0, size, step):
            stop = min(start + step, size)
            block = np.empty((k, stop - start), dtype=dtype)
            for row, values in zip(block, flat):
                row[:] = values[start:stop]
            yield layer, start, stop, np.ascontiguousarray(block.T)


def coordinate_wise(weight_lists, reduce_rows, dtype=np.float64):
    """Apply `reduce_rows` ((c, K) -> (c,)) block by block; returns float32 arrays shaped like the input."""
    result = [np.empty(np.shape(w), dtype=np.float32) for w in weight_lists[0]] if weight_lists else None
    for layer, start, stop, block in coordinate_blocks(weight_lists, dtype):
        result[layer].reshape(-1)[start:stop] = reduce_rows(block)
    return result


def weights_only(pairs):
    return [weights for weights, _ in pairs]


def fedmed(pairs):
    """Coordinate-wise median of the updates.

    Selection is exact in float32, and the mean of the two middle values for even
    K rounds the same in float32 as in float64, so no float64 copy is needed.
    """
    return coordinate_wise(
        weights_only(pairs), lambda block: np.median(block, axis=1, overwrite_input=True), dtype=np.float32
    )


def trimmed_mean(pairs, beta):
    """Coordinate-wise β-trimmed mean (Yin et al., 2018): drop the ⌊βK⌋ largest and smallest values per coordinate."""
    weight_lists = weights_only(pairs)
    if not 0 <= beta < 0.5:
        raise ValueError(f"trim fraction beta must be in [0, 0.5), got {beta}")
    k = len(weight_lists)
    cut = int(beta * k)

    def trim(block):
        kept = np.partition(block, (cut, k - cut - 1), axis=1)[:, cut : k - cut] if cut else block
        return kept.mean(axis=1)

    return coordinate_wise(weight_lists, trim)


def pairwise_squared_distances(weight_lists):
    """K×K squared Euclidean distances between flattened updates, via a Gram matrix built block by block.

    Each block is centred on the first update first: distances do not change,
    and the Gram identity ‖a‖² + ‖b‖² − 2a·b loses less to cancellation.
    """
    k = len(weight_lists)
    gram = np.zeros((k, k), dtype=np.float64)
    for _, _, _, block in coordinate_blocks(weight_lists):
        block -= block[:, :1]
        gram += block.T @ block
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


def krum(pairs, f, num_selected=1):
    """(Multi-)Krum (Blanchard et al., 2017): average the `num_selected` updates with the lowest scores."""
    weight_lists = weights_only(pairs)
    chosen = np.argsort(krum_scores(weight_lists, f), kind="stable")[:num_selected]
    return fedavg((weight_lists[i], 1) for i in chosen)


def krum_selection(weight_lists, f, count):
    """Indices of `count` updates chosen one at a time by Krum, each time among those not chosen yet.

    Each choice scores the remaining r updates over their r − f − 2 nearest
    neighbours (at least one), from one matrix of pairwise distances.
    """
    distances = pairwise_squared_distances(weight_lists)
    np.fill_diagonal(distances, np.inf)
    remaining, chosen = list(range(len(weight_lists))), []
    for _ in range(count):
        among = distances[np.ix_(remaining, remaining)]
        neighbours = max(1, len(remaining) - f - 2)
        scores = np.sort(among, axis=1)[:, :neighbours].sum(axis=1)
        chosen.append(remaining.pop(int(np.argmin(scores))))
    return chosen


def bulyan(pairs, f):
    """Bulyan (El Mhamdi et al., 2018): Krum chooses θ = K − 2f updates one at a time; then, per coordinate, the
    mean of the β = θ − 2f chosen values closest to their median. Needs K ≥ 4f + 3."""
    weight_lists = weights_only(pairs)
    k = len(weight_lists)
    if f < 0 or k < 4 * f + 3:
        raise ValueError(f"Bulyan needs K ≥ 4f + 3 (K={k}, f={f})")
    chosen = [weight_lists[i] for i in krum_selection(weight_lists, f, k - 2 * f)]
    beta = k - 4 * f

    def closest_to_median(block):
        median = np.median(block, axis=1, keepdims=True)
        nearest = np.argsort(np.abs(block - median), axis=1, kind="stable")[:, :beta]
        return np.take_along_axis(block, nearest, axis=1).mean(axis=1)

    return coordinate_wise(chosen, closest_to_median)


def centered_clipping(center, pairs, tau, iterations):
    """Centered clipping (Karimireddy et al., 2021): from v = `center`, `iterations` times
    v ← v + (1/K)·Σ min(1, τ/‖wᵢ − v‖)·(wᵢ − v). τ = 0 takes the median of the ‖wᵢ − v‖ of each iteration.

    Unweighted, as the paper's; the paper's centre is the previous aggregate of the clients' momenta, here the
    global model the clients started from.
    """
    weight_lists = weights_only(pairs)
    if not weight_lists:
        raise ValueError("centered clipping needs at least one update")
    v = [np.asarray(c, np.float64) for c in center]
    for _ in range(iterations):
        offsets = [[np.asarray(w, np.float64) - c for w, c in zip(weights, v)] for weights in weight_lists]
        norms = np.array([math.sqrt(sum(float(np.sum(d * d)) for d in offset)) for offset in offsets])
        radius = float(np.median(norms)) if tau == 0 else tau
        scales = np.minimum(1.0, radius / np.maximum(norms, 1e-300))
        v = [c + sum(s * offset[i] for s, offset in zip(scales, offsets)) / len(offsets) for i, c in enumerate(v)]
    return [layer.astype(np.float32) for layer in v]
