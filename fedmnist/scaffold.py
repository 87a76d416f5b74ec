"""SCAFFOLD's control variates (Karimireddy et al., 2020), pure NumPy: the server's step and the client's correction.

The server keeps a control variate c, each client its own cᵢ (zero until it first
trains). A sampled client trains K steps with every gradient corrected by c − cᵢ
(fedmnist/training.py), from the round's global model x to yᵢ, then sets

    cᵢ⁺ = cᵢ − c + (x − yᵢ) / (K·η_l)

(the paper's option II: the mean corrected step, turned back into a gradient;
exact for plain SGD with learning rate η_l, only an approximation with Adam) and
sends yᵢ and Δcᵢ = cᵢ⁺ − cᵢ. The server then takes, as the paper does,

    x ← x + η_g·(mean(yᵢ) − x)        c ← c + (|S| / N)·mean(Δcᵢ)

with S the round's clients and N all of them, so c stays the uniform mean of
every client's cᵢ. With `weighted`, both means weight each client by its example
count nᵢ instead, consistently: x ← x + η_g·(FedAvg(yᵢ) − x) and
c ← c + Σ_S nᵢ·Δcᵢ / Σ_all nᵢ, so c stays the count-weighted mean of the cᵢ (and
with zero control variates and η_g = 1 SCAFFOLD is exactly FedAvg). A client
sends twice the model's size.
"""

import numpy as np

from fedmnist.aggregation import fedavg

SERVER_CONTROL = "control"


def zeros_like(weights):
    return [np.zeros(np.shape(w), np.float32) for w in weights]


def correction(server_state, client_control, like):
    """c − cᵢ, the correction a client adds to every local gradient (zeros before any round)."""
    server = server_state.get(SERVER_CONTROL) or zeros_like(like)
    client = client_control or zeros_like(like)
    return [(np.asarray(c, np.float64) - ci).astype(np.float32) for c, ci in zip(server, client)]


def new_client_control(correction, start, trained, steps, learning_rate):
    """cᵢ⁺ = cᵢ − c + (x − yᵢ) / (K·η_l), with `correction` = c − cᵢ, x = `start`, yᵢ = `trained`, K = `steps`."""
    scale = 1.0 / (steps * learning_rate)
    corrections = correction or zeros_like(start)
    return [
        (scale * (np.asarray(x, np.float64) - y) - d).astype(np.float32) for d, x, y in zip(corrections, start, trained)
    ]


def control_delta(new_control, old_control):
    """Δcᵢ = cᵢ⁺ − cᵢ (cᵢ zero before the client's first round)."""
    old = old_control or zeros_like(new_control)
    return [(np.asarray(n, np.float64) - o).astype(np.float32) for n, o in zip(new_control, old)]


def round_inputs(context):
    """What SCAFFOLD's step takes besides the updates, from a round's strategies.RoundContext: the Δcᵢ that arrived,
    N and every client's examples."""
    return {
        "control_deltas": context.state_deltas,
        "num_clients": context.num_clients,
        "total_examples": context.total_examples,
    }


def server_step(current, pairs, state, *, control_deltas, num_clients, total_examples, server_lr, weighted):
    """(new global weights, new server state) from the round's (yᵢ, nᵢ) `pairs` and `control_deltas`, the
    [(Δcᵢ, nᵢ)] of the clients whose cᵢ⁺ arrived; `weighted` 0 is the paper's uniform means, 1 weights by nᵢ."""
    aggregate = fedavg(pairs if weighted else ((y, 1) for y, _ in pairs))
    new = [
        (np.asarray(x, np.float64) + server_lr * (np.asarray(a, np.float64) - x)).astype(np.float32)
        for x, a in zip(current, aggregate)
    ]
    control = [np.asarray(c, np.float64) for c in (state.get(SERVER_CONTROL) or zeros_like(current))]
    if control_deltas:
        if weighted:
            shares = [count / total_examples for _, count in control_deltas]
        else:
            shares = [1 / num_clients] * len(control_deltas)
        for layer, c in enumerate(control):
            c += sum(share * np.asarray(delta[layer], np.float64) for (delta, _), share in zip(control_deltas, shares))
    return new, {SERVER_CONTROL: [c.astype(np.float32) for c in control]}
