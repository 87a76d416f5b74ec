"""Faulty and malicious clients, simulated: pure NumPy, weights in, weights out.

Model poisoning works on the update Δ = w − w⁰ (w⁰ the global weights the
client started from) and is applied on the server side, before validation, so
a crashed client's NaN is caught by the same checks as a real one. ALIE and IPM
are omniscient, as their papers assume: every attacker sends the same update,
computed from the honest clients' updates of the round. Label flipping is data
poisoning: it changes what a client trains on.
"""

import dataclasses
from pathlib import Path

import numpy as np
from scipy import stats

from fedmnist.updates import UpdateError, validate_weights

OMNISCIENT = ("alie", "ipm")  # computed from the round's honest updates
MODEL_POISONING = ("sign_flip", "scale", "noise", "zeros", "nan") + OMNISCIENT
ATTACKS = MODEL_POISONING + ("label_flip",)
# IPM: Xie et al. (2020) use ε = 0.1 (small enough to pass distance-based rules) and ε = 100; ALIE's z comes from K, M
DEFAULT_STRENGTH = {"sign_flip": 4.0, "scale": 10.0, "noise": 10.0, "ipm": 0.1}


def label(attack):
    """The attack's Spanish name for figures and tables, with its default strength."""
    strength = f"{DEFAULT_STRENGTH.get(attack, 0):g}"
    return {
        "sign_flip": f"signo invertido (w⁰ − {strength}Δ)",
        "scale": f"escalado (w⁰ + {strength}Δ)",
        "noise": f"ruido ({strength}·σ(Δ)·N(0, 1))",
        "zeros": "ceros (w = 0)",
        "nan": "NaN",
        "label_flip": "etiquetas invertidas (y → 9 − y)",
        "alie": "ALIE (μ − z·σ de los honestos)",
        "ipm": f"IPM (−{strength}·media de los honestos)",
    }[attack]


def poison(weights, initial_weights, attack, strength=None, rng=None):
    """Return an attacked copy of one client's weights.

    sign_flip  w⁰ − λΔ        scale  w⁰ + λΔ
    noise      w⁰ + λ·σ(Δ)·N(0, 1), Gaussian noise in place of Δ at λ times its scale, per array
    zeros      all weights 0 (a crashed client)
    nan        all weights NaN (a crashed client; validation must reject it)
    """
    strength = DEFAULT_STRENGTH.get(attack) if strength is None else strength
    deltas = [np.asarray(w, np.float64) - np.asarray(w0, np.float64) for w, w0 in zip(weights, initial_weights)]
    if attack == "sign_flip":
        new = [-strength * d for d in deltas]
    elif attack == "scale":
        new = [strength * d for d in deltas]
    elif attack == "noise":
        rng = rng if rng is not None else np.random.default_rng(0)
        new = [strength * d.std() * rng.standard_normal(d.shape) for d in deltas]
    elif attack == "zeros":
        return [np.zeros_like(w, dtype=np.float32) for w in weights]
    elif attack == "nan":
        return [np.full_like(w, np.nan, dtype=np.float32) for w in weights]
    else:
        raise ValueError(f"unknown model-poisoning attack {attack!r}; choose one of {', '.join(MODEL_POISONING)}")
    return [(np.asarray(w0, np.float64) + d).astype(np.float32) for w0, d in zip(initial_weights, new)]


def alie_z(num_clients, num_malicious):
    """ALIE's z (Baruch et al., 2019): s = ⌊K/2 + 1⌋ − M honest clients must side with the attackers;
    z = Φ⁻¹((K − s)/K)."""
    supporters = num_clients // 2 + 1 - num_malicious
    return float(stats.norm.ppf((num_clients - supporters) / num_clients))


def omniscient_update(honest_weights, initial_weights, attack, num_clients, num_malicious, strength=None):
    """The one update every attacker sends, from the honest clients' weights of the round.

    alie  w⁰ + μ − z·σ: the honest Δs' coordinate-wise mean and standard deviation, z from K and M
    ipm   w⁰ − ε·μ: inner-product manipulation (Xie et al., 2020), ε = `strength`
    """
    if not honest_weights:
        raise ValueError(f"the {attack} attack needs at least one honest update to compute from")
    strength = DEFAULT_STRENGTH.get(attack) if strength is None else strength
    attacked = []
    for layer, w0 in enumerate(initial_weights):
        deltas = np.stack([np.asarray(w[layer], np.float64) for w in honest_weights]) - np.asarray(w0, np.float64)
        mean = deltas.mean(axis=0)
        if attack == "alie":
            new = mean - alie_z(num_clients, num_malicious) * deltas.std(axis=0)
        elif attack == "ipm":
            new = -strength * mean
        else:
            raise ValueError(f"unknown omniscient attack {attack!r}; choose one of {', '.join(OMNISCIENT)}")
        attacked.append((np.asarray(w0, np.float64) + new).astype(np.float32))
    return attacked


def flip_labels(labels, num_classes=10):
    """Data poisoning: y → 9 − y."""
    return (num_classes - 1 - np.asarray(labels)).astype(np.asarray(labels).dtype)


def malicious_ids(client_ids, num_malicious):
    """The clients that attack: the first M ids in sorted order, so every rule faces the same attackers."""
    if not 0 <= num_malicious <= len(client_ids):
        raise ValueError(f"--malicious {num_malicious}: must be between 0 and the {len(client_ids)} valid clients")
    return sorted(client_ids)[:num_malicious]


def attack_updates(updates, initial_weights, attack, attackers, strength=None, seed=0):
    """Poison the ClientUpdates of `attackers`, then validate them again; returns (kept, rejected [(path, reason)]).

    An omniscient attack computes its update from the other ClientUpdates of `updates` (the honest ones); in a
    round of attackers only, from the attackers' own trained updates, as Baruch et al.'s non-omniscient attacker.
    """
    rng = np.random.default_rng(seed)
    shapes = [w.shape for w in initial_weights]
    shared = None
    if attack in OMNISCIENT:
        honest = [u.weights for u in updates if u.client_id not in attackers] or [u.weights for u in updates]
        present = sum(u.client_id in attackers for u in updates)
        shared = omniscient_update(honest, initial_weights, attack, len(updates), present, strength)
    kept, rejected = [], []
    for update in updates:
        if update.client_id in attackers:
            poisoned = shared if shared is not None else poison(update.weights, initial_weights, attack, strength, rng)
            try:
                weights = validate_weights(poisoned, shapes, f"{Path(update.path).name} ({attack} attack)")
            except UpdateError as err:
                rejected.append((update.path, str(err)))
                continue
            update = dataclasses.replace(update, weights=weights)
        kept.append(update)
    return kept, rejected
