"""The attack registry: faulty and malicious clients, simulated, in pure NumPy.

One row per attack, of one of three kinds:

- "update": the server replaces each attacker's update Δ = w − w⁰ (w⁰ the global
  weights the client started from) with `change(w⁰, Δ, λ, rng)`, layer by layer,
  before validation, so a crashed client's NaN is caught by the same checks as a
  real one;
- "omniscient": every attacker sends the same update, `change(Δs, λ, K, M)` of the
  honest clients' stacked updates of the round, layer by layer, as the ALIE and
  IPM papers assume;
- "data": the attacker trains on `change(labels)` instead of its labels.

The command lines take their choices from the registry, and the tables their
Spanish labels. Adding an attack is its function here, one `register(Attack(...))`
and its tests.
"""

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats

from fedmnist.updates import UpdateError, validate_weights

KINDS = ("update", "omniscient", "data")


@dataclass(frozen=True)
class Attack:
    """One attack: a registry row."""

    key: str  # in CLI choices, results and tables
    kind: str  # one of KINDS: what `change` receives and returns (see the module's docstring)
    change: Callable
    label: str  # Spanish, for tables and figures; "{strength}" is filled with the default strength
    reference: str
    strength: float | None = None  # λ (or IPM's ε) when the command line gives none; None: the attack takes none

    def describe(self):
        """The Spanish label with the default strength."""
        return self.label.format(strength=f"{self.strength or 0:g}")


REGISTRY = {}


def register(row):
    if row.kind not in KINDS:
        raise ValueError(f"attack {row.key!r}: kind {row.kind!r} is not one of {', '.join(KINDS)}")
    REGISTRY[row.key] = row
    return row


def sign_flip(initial, delta, strength, rng):
    return -strength * delta


def scale(initial, delta, strength, rng):
    return strength * delta


def noise(initial, delta, strength, rng):
    """Gaussian noise in place of Δ, at λ times its scale (per array)."""
    return strength * delta.std() * rng.standard_normal(delta.shape)


def zeros(initial, delta, strength, rng):
    """Every weight 0: a crashed client."""
    return -initial


def nan(initial, delta, strength, rng):
    """Every weight NaN: a crashed client; validation must reject it."""
    return np.full_like(delta, np.nan)


def alie_z(num_clients, num_malicious):
    """ALIE's z (Baruch et al., 2019): s = ⌊K/2 + 1⌋ − M honest clients must side with the attackers;
    z = Φ⁻¹((K − s)/K)."""
    supporters = num_clients // 2 + 1 - num_malicious
    return float(stats.norm.ppf((num_clients - supporters) / num_clients))


def alie(deltas, strength, num_clients, num_malicious):
    """μ − z·σ of the honest Δs, coordinate-wise, z from K and M."""
    return deltas.mean(axis=0) - alie_z(num_clients, num_malicious) * deltas.std(axis=0)


def ipm(deltas, strength, num_clients, num_malicious):
    """Inner-product manipulation (Xie et al., 2020): −ε times the honest Δs' mean."""
    return -strength * deltas.mean(axis=0)


def flip_labels(labels, num_classes=10):
    """Data poisoning: y → 9 − y."""
    return (num_classes - 1 - np.asarray(labels)).astype(np.asarray(labels).dtype)


register(Attack("sign_flip", "update", sign_flip, "signo invertido (w⁰ − {strength}Δ)", "Li et al. (2019), RSA", 4.0))
register(Attack("scale", "update", scale, "escalado (w⁰ + {strength}Δ)", "Bhagoji et al. (2019)", 10.0))
register(Attack("noise", "update", noise, "ruido ({strength}·σ(Δ)·N(0, 1))", "Blanchard et al. (2017)", 10.0))
register(Attack("zeros", "update", zeros, "ceros (w = 0)", "a crashed client"))
register(Attack("nan", "update", nan, "NaN", "a crashed client"))
register(Attack("alie", "omniscient", alie, "ALIE (μ − z·σ de los honestos)", "Baruch et al. (2019)"))
# IPM: Xie et al. (2020) use ε = 0.1 (small enough to pass distance-based rules) and ε = 100
register(Attack("ipm", "omniscient", ipm, "IPM (−{strength}·media de los honestos)", "Xie et al. (2020)", 0.1))
register(Attack("label_flip", "data", flip_labels, "etiquetas invertidas (y → 9 − y)", "Tolpegin et al. (2020)"))

ATTACKS = tuple(REGISTRY)
OMNISCIENT = tuple(key for key, row in REGISTRY.items() if row.kind == "omniscient")
MODEL_POISONING = tuple(key for key, row in REGISTRY.items() if row.kind in ("update", "omniscient"))
DEFAULT_STRENGTH = {key: row.strength for key, row in REGISTRY.items() if row.strength is not None}


def label(attack):
    """The attack's Spanish name for figures and tables, with its default strength."""
    return REGISTRY[attack].describe()


def trains_on(attack, labels):
    """The labels a client trains on under `attack`: changed for a data-poisoning attack, else its own."""
    row = REGISTRY.get(attack)
    return row.change(labels) if row is not None and row.kind == "data" else labels


def poisons_data(attack):
    return attack in REGISTRY and REGISTRY[attack].kind == "data"


def row_of_kind(attack, kinds):
    """The registry row of `attack` if it is of one of `kinds`; ValueError naming the choices otherwise."""
    row = REGISTRY.get(attack)
    if row is None or row.kind not in kinds:
        choices = ", ".join(key for key, r in REGISTRY.items() if r.kind in kinds)
        raise ValueError(f"unknown {' or '.join(kinds)} attack {attack!r}; choose one of {choices}")
    return row


def poison(weights, initial_weights, attack, strength=None, rng=None):
    """Return an attacked copy of one client's weights (an "update" attack)."""
    row = row_of_kind(attack, ("update",))
    strength = row.strength if strength is None else strength
    rng = rng if rng is not None else np.random.default_rng(0)
    attacked = []
    for w, w0 in zip(weights, initial_weights):
        w0 = np.asarray(w0, np.float64)
        attacked.append((w0 + row.change(w0, np.asarray(w, np.float64) - w0, strength, rng)).astype(np.float32))
    return attacked


def omniscient_update(honest_weights, initial_weights, attack, num_clients, num_malicious, strength=None):
    """The one update every attacker sends, from the honest clients' weights of the round."""
    row = row_of_kind(attack, ("omniscient",))
    if not honest_weights:
        raise ValueError(f"the {attack} attack needs at least one honest update to compute from")
    strength = row.strength if strength is None else strength
    attacked = []
    for layer, w0 in enumerate(initial_weights):
        w0 = np.asarray(w0, np.float64)
        deltas = np.stack([np.asarray(w[layer], np.float64) for w in honest_weights]) - w0
        attacked.append((w0 + row.change(deltas, strength, num_clients, num_malicious)).astype(np.float32))
    return attacked


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
    if REGISTRY[attack].kind == "omniscient":
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
