"""SCAFFOLD's control variates (Karimireddy et al., 2020), pure NumPy: the server's step and the client's correction.

The server keeps a control variate c, each client its own cᵢ (zero until it first
trains). A sampled client trains K steps with every gradient corrected by c − cᵢ
(fedmnist/training.py), from the round's global model x to yᵢ, then sets

    cᵢ⁺ = cᵢ − c + (x − yᵢ) / (K·η_l)

(the paper's option II: the mean corrected step, turned back into a gradient;
exact for plain SGD with learning rate η_l, only an approximation with Adam) and
sends yᵢ and Δcᵢ = cᵢ⁺ − cᵢ. The server then takes

    x ← x + η_g·(FedAvg(yᵢ) − x)        c ← c + (|S| / N)·mean(Δcᵢ)

with S the round's clients and N all of them, so c stays the mean of every
client's cᵢ. The paper averages the yᵢ uniformly; this takes FedAvg's mean
weighted by example counts, so that with zero control variates and η_g = 1
SCAFFOLD is exactly FedAvg. A client sends twice the model's size.
"""

import numpy as np

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


def server_step(current, aggregate, state, *, control_deltas, num_clients, server_lr):
    """(new global weights, new server state) from the round's FedAvg `aggregate` and the clients' Δcᵢ."""
    new = [
        (np.asarray(x, np.float64) + server_lr * (np.asarray(a, np.float64) - x)).astype(np.float32)
        for x, a in zip(current, aggregate)
    ]
    control = [np.asarray(c, np.float64) for c in (state.get(SERVER_CONTROL) or zeros_like(current))]
    if control_deltas:
        share = len(control_deltas) / num_clients
        for layer, c in enumerate(control):
            c += share * np.mean([np.asarray(d[layer], np.float64) for d in control_deltas], axis=0)
    return new, {SERVER_CONTROL: [c.astype(np.float32) for c in control]}
