"""Aggregation rules on tiny hand-made arrays whose answers can be checked by eye."""

import numpy as np
import pytest

from fedmnist import aggregation
from fedmnist.aggregation import fedavg, fedmed, krum, krum_scores, pairwise_squared_distances, trimmed_mean


def arrays(*values):
    return [np.array(values, dtype=np.float32)]


def unweighted(updates):
    """(weights, num_examples) pairs, each counting one example, as the rules take them."""
    return [(weights, 1) for weights in updates]


def test_fedavg_is_the_weighted_mean():
    # (1·1 + 2·4) / 3 = 3
    assert fedavg([(arrays(1.0), 1), (arrays(4.0), 2)])[0].tolist() == [3.0]


def test_fedavg_accepts_a_generator_and_returns_float32_in_order():
    updates = ((([np.full((2, 2), i, np.float32), np.full(3, -i, np.float32)]), 1) for i in range(1, 4))
    result = fedavg(updates)
    assert [w.dtype for w in result] == [np.float32, np.float32]
    assert np.array_equal(result[0], np.full((2, 2), 2.0)) and np.array_equal(result[1], np.full(3, -2.0))


def test_fedavg_accumulates_in_float64():
    # In float32, 1e8 + 1 - 1e8 would lose the 1.
    result = fedavg([(arrays(1e8), 1), (arrays(1.0), 1), (arrays(-1e8), 1)])
    assert result[0][0] == pytest.approx(1 / 3)


def test_fedavg_rejects_empty_and_nonpositive_counts():
    with pytest.raises(ValueError):
        fedavg([])
    with pytest.raises(ValueError):
        fedavg([(arrays(1.0), 0)])


def test_fedmed_ignores_one_outlier():
    updates = [arrays(1.0, 10.0), arrays(2.0, 20.0), arrays(1e6, -1e6)]
    assert fedmed(unweighted(updates))[0].tolist() == [2.0, 10.0]


def test_trimmed_mean_drops_extremes_per_coordinate():
    updates = [arrays(v) for v in (1.0, 2.0, 3.0, 4.0, 1e6)]
    assert trimmed_mean(unweighted(updates), 0.2)[0].tolist() == [3.0]  # drops 1 and 1e6
    assert trimmed_mean(unweighted(updates), 0.0)[0][0] == pytest.approx((10 + 1e6) / 5)
    with pytest.raises(ValueError):
        trimmed_mean(unweighted(updates), 0.5)


def test_robust_rules_stay_in_honest_range_against_huge_client():
    rng = np.random.default_rng(0)
    honest = [[rng.normal(size=(4, 3)).astype(np.float32)] for _ in range(4)]
    attacker = [np.full((4, 3), 1e6, np.float32)]
    low = np.min([h[0] for h in honest], axis=0)
    high = np.max([h[0] for h in honest], axis=0)
    for result in (fedmed(unweighted(honest + [attacker])), trimmed_mean(unweighted(honest + [attacker]), 0.2)):
        assert np.all(result[0] >= low) and np.all(result[0] <= high)


def test_gram_distances_match_direct_computation():
    rng = np.random.default_rng(1)
    updates = [[rng.normal(size=(3, 2)), rng.normal(size=4)] for _ in range(5)]
    flat = [np.concatenate([w.ravel() for w in u]) for u in updates]
    direct = np.array([[np.sum((a - b) ** 2) for b in flat] for a in flat])
    assert np.allclose(pairwise_squared_distances(updates), direct)


def test_krum_picks_an_honest_update():
    # Honest updates sit near 0; two attackers sit far away and near each other.
    updates = [arrays(0.0), arrays(0.1), arrays(-0.1), arrays(0.05), arrays(100.0), arrays(101.0)]
    scores = krum_scores(updates, num_malicious=2)
    assert np.argmin(scores) in (0, 3)
    assert abs(krum(unweighted(updates), f=2)[0][0]) <= 0.1
    assert abs(krum(unweighted(updates), f=2, num_selected=4)[0][0]) <= 0.1


def test_krum_needs_enough_clients():
    with pytest.raises(ValueError):
        krum(unweighted([arrays(0.0), arrays(1.0), arrays(2.0)]), f=1)


@pytest.fixture
def random_updates():
    rng = np.random.default_rng(7)
    return [[rng.normal(size=(5, 4)).astype(np.float32), rng.normal(size=7).astype(np.float32)] for _ in range(6)]


def test_small_blocks_give_the_same_answers(random_updates, monkeypatch):
    whole = [
        fedmed(unweighted(random_updates)),
        trimmed_mean(unweighted(random_updates), 0.2),
        pairwise_squared_distances(random_updates),
    ]
    monkeypatch.setattr(aggregation, "CHUNK_BYTES", 8 * 6 * 3)  # three coordinates per block
    assert len(list(aggregation.coordinate_blocks(random_updates))) == 7 + 3  # ceil(20 / 3) + ceil(7 / 3)
    chunked = [
        fedmed(unweighted(random_updates)),
        trimmed_mean(unweighted(random_updates), 0.2),
        pairwise_squared_distances(random_updates),
    ]
    assert all(np.array_equal(a, b) for a, b in zip(whole[0], chunked[0]))
    assert all(np.array_equal(a, b) for a, b in zip(whole[1], chunked[1]))
    assert np.allclose(whole[2], chunked[2])


def test_fedmed_is_bitwise_numpy_median_of_float32(random_updates):
    # Even K: the median averages the two middle values, which must round exactly as in float32.
    expected = [np.median(np.stack([u[i] for u in random_updates]), axis=0) for i in range(2)]
    assert all(np.array_equal(a, b) for a, b in zip(fedmed(unweighted(random_updates)), expected))


def test_trimmed_mean_matches_full_sort(random_updates):
    stacked = np.sort(np.stack([u[0] for u in random_updates]).astype(np.float64), axis=0)
    assert np.allclose(trimmed_mean(unweighted(random_updates), 0.34)[0], stacked[2:4].mean(axis=0))


def test_multikrum_averages_the_m_lowest_scores():
    updates = unweighted([arrays(v) for v in (1.0, 2.0, 3.0, 50.0)])
    assert krum(updates, 1, 3)[0].tolist() == [2.0]  # the three honest values, not the outlier


def test_bulyan_keeps_the_values_closest_to_the_median_of_the_krum_chosen():
    # K = 7, f = 1: Krum chooses the 5 honest values; their median is 3 and the 3 closest to it are 2, 3, 4
    updates = unweighted([arrays(v) for v in (1.0, 2.0, 3.0, 4.0, 5.0, 100.0, 1000.0)])
    assert aggregation.bulyan(updates, f=1)[0].tolist() == [3.0]


def test_bulyan_needs_four_f_plus_three_clients():
    with pytest.raises(ValueError, match="K ≥ 4f \\+ 3"):
        aggregation.bulyan(unweighted([arrays(float(v)) for v in range(6)]), f=1)


def test_centered_clipping_clips_each_distance_to_tau():
    updates = unweighted([arrays(v) for v in (1.0, 1.0, 10.0)])
    center = arrays(0.0)
    assert aggregation.centered_clipping(center, updates, tau=2.0, iterations=1)[0].tolist() == pytest.approx([4 / 3])
    assert aggregation.centered_clipping(center, updates, tau=0.0, iterations=1)[0].tolist() == pytest.approx([1.0])
