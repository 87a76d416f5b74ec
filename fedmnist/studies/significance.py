"""Which of two methods is better: paired tests over seeds, corrected for the comparisons made together.

A family is every comparison one question makes at once (every strategy against
FedAvg in one scenario, say). Within it:
- "better" or "worse": Holm's step-down adjusted p-value (Holm, 1979) below α;
  the interval reported with it is the paired t-interval at Holm's level for
  that comparison's rank, which then excludes zero;
- "equivalent": two one-sided paired t-tests (TOST; Schuirmann, 1987) against a
  margin declared before looking, Holm-adjusted the same way: the difference
  is shown to lie within ±margin;
- "inconclusive": neither, with the interval that says how far the data are
  from settling it.
McNemar's exact test compares two models on the same test images (one seed).
"""

import numpy as np
from scipy import stats

from fedmnist.defaults import ALPHA

MARGIN_POINTS = 0.3  # the equivalence margin, in accuracy points, declared before the study runs


def paired_t(a, b):
    """a − b over the same seeds: {"n", "mean", "se"} (se None below two seeds or for identical differences)."""
    differences = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    n = len(differences)
    se = float(differences.std(ddof=1) / np.sqrt(n)) if n >= 2 else None
    return {"n": n, "mean": float(differences.mean()), "se": se if se else None}


def two_sided_p(t):
    """The paired t-test's two-sided p-value that a − b is 0."""
    if t["se"] is None:  # fewer than two seeds, or every seed the same difference
        return None if t["n"] < 2 else (1.0 if t["mean"] == 0 else 0.0)
    return float(2 * stats.t.sf(abs(t["mean"]) / t["se"], t["n"] - 1))


def equivalence_p(t, margin):
    """TOST's p-value: the larger of the one-sided p-values against −margin and +margin."""
    if t["se"] is None:
        return None if t["n"] < 2 else float(abs(t["mean"]) >= margin)
    lower = stats.t.sf((t["mean"] + margin) / t["se"], t["n"] - 1)
    upper = stats.t.cdf((t["mean"] - margin) / t["se"], t["n"] - 1)
    return float(max(lower, upper))


def interval(t, level):
    """The paired t-interval of a − b at confidence `level`."""
    if t["se"] is None:
        return [t["mean"], t["mean"]]
    half = float(stats.t.ppf(0.5 + level / 2, t["n"] - 1) * t["se"])
    return [t["mean"] - half, t["mean"] + half]


def holm(p_values):
    """Holm's step-down adjusted p-values, in the given order (None stays None and does not count)."""
    tested = [(p, i) for i, p in enumerate(p_values) if p is not None]
    m = len(tested)
    adjusted, running = [None] * len(p_values), 0.0
    for rank, (p, i) in enumerate(sorted(tested)):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted


def holm_levels(p_values, alpha=ALPHA):
    """The confidence level Holm's procedure tests each comparison at: 1 − α/(m − rank), rank by ascending p."""
    tested = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    levels = [None] * len(p_values)
    for rank, (_, i) in enumerate(tested):
        levels[i] = 1 - alpha / (len(tested) - rank)
    return levels


def compare_family(pairs, margin=MARGIN_POINTS, alpha=ALPHA):
    """{name: verdict} for a family {name: (a, b)} of paired samples (a, b over the same seeds).

    Each verdict has the mean difference a − b, the raw 95 % interval and p-value,
    Holm's adjusted p-value and the interval at Holm's level, the TOST p-value
    (Holm-adjusted) against ±margin, and the word: better, worse, equivalent or
    inconclusive.
    """
    names = list(pairs)
    tests = [paired_t(*pairs[name]) for name in names]
    raw = [two_sided_p(t) for t in tests]
    adjusted, levels = holm(raw), holm_levels(raw, alpha)
    equivalent = holm([equivalence_p(t, margin) for t in tests])
    verdicts = {}
    for name, t, p, p_holm, level, p_equivalent in zip(names, tests, raw, adjusted, levels, equivalent):
        verdicts[name] = {
            "n": t["n"],
            "mean": t["mean"],
            "ci95": interval(t, 0.95),
            "p_value": p,
            "holm_p_value": p_holm,
            "holm_interval": interval(t, level) if level is not None else None,
            "holm_level": level,
            "margin": margin,
            "equivalence_p_value": p_equivalent,
            "verdict": verdict(t["mean"], p_holm, p_equivalent, alpha),
        }
    return verdicts


VERDICT_WORDS = {"better": "mejor", "worse": "peor", "equivalent": "equivalente", "inconclusive": "no concluyente"}


def verdict(mean, p_holm, p_equivalent, alpha=ALPHA):
    if p_holm is not None and p_holm < alpha:
        return "better" if mean > 0 else "worse"
    if p_equivalent is not None and p_equivalent < alpha:
        return "equivalent"
    return "inconclusive"


FLIPPED = {"better": "worse", "worse": "better"}


def oriented(family, a, b):
    """a − b from a family whose pairs are named "x - y" in either order: the verdict turned to read as a − b."""
    if f"{a} - {b}" in family:
        return family[f"{a} - {b}"]
    stored = family[f"{b} - {a}"]

    def negated(bounds):
        return None if bounds is None else [-bounds[1], -bounds[0]]

    return {
        **stored,
        "mean": -stored["mean"],
        "ci95": negated(stored["ci95"]),
        "holm_interval": negated(stored["holm_interval"]),
        "verdict": FLIPPED.get(stored["verdict"], stored["verdict"]),
    }
