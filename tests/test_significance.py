"""Paired comparisons with Holm's correction, equivalence by TOST, and McNemar's exact test, checked by hand."""

import numpy as np
import pytest

from fedmnist.evaluation import mcnemar_exact
from fedmnist.studies.significance import compare_family, equivalence_p, holm, holm_levels, paired_t


def test_holm_adjusts_four_p_values_step_down():
    # sorted: 0.005·4 = 0.02, 0.01·3 = 0.03, 0.03·2 = 0.06, 0.04·1 = 0.04 → kept at 0.06 (monotone)
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])


def test_holm_caps_at_one_and_skips_untested_comparisons():
    assert holm([0.6, None, 0.5]) == pytest.approx([1.0, None, 1.0])
    assert holm_levels([0.01, 0.2]) == pytest.approx([1 - 0.05 / 2, 1 - 0.05])


def test_tost_on_a_toy_pair():
    small = paired_t([0.1, -0.1, 0.05, -0.05, 0.0], [0.0] * 5)  # mean 0, se 0.0354
    assert equivalence_p(small, margin=0.3) < 0.001  # t = 8.5 on 4 df against either bound
    assert equivalence_p(small, margin=0.01) > 0.3  # t = 0.28: p = 0.39


def test_mcnemar_exact_on_a_two_by_two_table():
    # 10 images only the first gets right, 2 only the second, 88 both: p = 2·P(X ≤ 2 | 12, ½) = 2·79/4096
    first = np.array([True] * 10 + [False] * 2 + [True] * 88)
    second = np.array([False] * 10 + [True] * 2 + [True] * 88)
    result = mcnemar_exact(first, second)
    assert (result["only_first_right"], result["only_second_right"]) == (10, 2)
    assert result["p_value"] == pytest.approx(158 / 4096)


def test_a_family_says_better_equivalent_or_inconclusive():
    seeds = 5
    baseline = np.linspace(97.0, 98.0, seeds)
    verdicts = compare_family(
        {
            "clearly higher": (baseline + [1.9, 2.1, 2.0, 1.95, 2.05], baseline),
            "within the margin": (baseline + [0.02, -0.02, 0.01, -0.01, 0.0], baseline),
            "noisy": (baseline + [1.5, -1.2, 0.8, -0.9, 0.3], baseline),
        }
    )
    assert [v["verdict"] for v in verdicts.values()] == ["better", "equivalent", "inconclusive"]
    higher = verdicts["clearly higher"]
    assert higher["holm_interval"][0] > 0 and higher["holm_p_value"] >= higher["p_value"]


def test_the_same_difference_on_every_seed_is_decided_without_a_variance():
    assert compare_family({"same": ([98.0, 98.0, 98.0], [97.0, 97.0, 97.0])})["same"]["verdict"] == "better"
    assert compare_family({"tie": ([98.0, 98.0], [98.0, 98.0])})["tie"]["verdict"] == "equivalent"
