"""Server-side optimizers: the aggregate's step from the round's global model, taken as a pseudo-gradient.

Pure NumPy. Each function takes the round's global weights x, the aggregated
weights (FedAvg's weighted mean of the clients' models) and the optimizer's
state from earlier rounds ({slot: [arrays]}, empty at the first round), and
returns (new global weights, new state). With Δ = aggregate − x:

    FedAvgM  (Hsu et al., 2019)    v ← β·v + (x − aggregate);  x ← x − η·v
    FedAdam  (Reddi et al., 2021)  m ← β₁·m + (1 − β₁)·Δ;  v ← β₂·v + (1 − β₂)·Δ²;  x ← x + η·m / (√v + τ)
    FedYogi  (Reddi et al., 2021)  as FedAdam, with v ← v − (1 − β₂)·Δ²·sign(v − Δ²)

m and v start at zero and FedAdam has no bias correction, as in Reddi et al.'s
Algorithm 2. (Flower's FedAdam multiplies η by √(1 − β₂^(t+1)) / (1 − β₁^(t+1))
in round t; tests/test_flower_app.py checks the two agree once that factor is
applied.) FedAvgM with β = 0 and η = 1 is FedAvg; FedAdam with β₁ = 0, β₂ = 1
and η = τ is FedAvg too, since v stays zero. Arithmetic is float64; the weights
come back float32.
"""

import numpy as np


def as_float64(weights):
    return [np.asarray(w, dtype=np.float64) for w in weights]


def as_float32(weights):
    return [w.astype(np.float32) for w in weights]


def fedavgm(current, aggregate, state, *, server_lr, momentum):
    """One FedAvgM step: heavy-ball momentum on the pseudo-gradient x − aggregate."""
    pseudo_gradient = [x - a for x, a in zip(as_float64(current), as_float64(aggregate))]
    velocity = [momentum * v + g for v, g in zip(state["velocity"], pseudo_gradient)] if state else pseudo_gradient
    new = [x - server_lr * v for x, v in zip(as_float64(current), velocity)]
    return as_float32(new), {"velocity": velocity}


def adaptive_moments(current, aggregate, state, beta1):
    """Δ and FedAdam's and FedYogi's first moment m; the second moment v as it was (zeros at first)."""
    delta = [a - x for x, a in zip(as_float64(current), as_float64(aggregate))]
    first = state["first_moment"] if state else [np.zeros_like(d) for d in delta]
    second = state["second_moment"] if state else [np.zeros_like(d) for d in delta]
    first = [beta1 * m + (1 - beta1) * d for m, d in zip(first, delta)]
    return delta, first, second


def adaptive_step(current, first, second, server_lr, tau):
    new = [x + server_lr * m / (np.sqrt(v) + tau) for x, m, v in zip(as_float64(current), first, second)]
    return as_float32(new), {"first_moment": first, "second_moment": second}


def fedadam(current, aggregate, state, *, server_lr, beta1, beta2, tau):
    """One FedAdam step (Reddi et al., 2021, Algorithm 2)."""
    delta, first, second = adaptive_moments(current, aggregate, state, beta1)
    second = [beta2 * v + (1 - beta2) * d**2 for v, d in zip(second, delta)]
    return adaptive_step(current, first, second, server_lr, tau)


def fedyogi(current, aggregate, state, *, server_lr, beta1, beta2, tau):
    """One FedYogi step: FedAdam with Yogi's additive second moment (Reddi et al., 2021)."""
    delta, first, second = adaptive_moments(current, aggregate, state, beta1)
    second = [v - (1 - beta2) * d**2 * np.sign(v - d**2) for v, d in zip(second, delta)]
    return adaptive_step(current, first, second, server_lr, tau)
