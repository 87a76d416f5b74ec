"""DP-FedAvg's mechanism and its accountant, checked by hand and against an independent computation."""

import math

import numpy as np
import pytest

from fedmnist import privacy, strategies


def vector(*values):
    return [np.array(values, np.float32)]


# ---------------------------------------------------------------------------
# Clipping and noise
# ---------------------------------------------------------------------------


def test_clipping_bounds_the_norm_and_leaves_short_updates_alone():
    long = [np.array([3.0, 0.0]), np.array([[4.0]])]  # norm 5 across both arrays
    clipped, norm = privacy.clip_update(long, 2.0)
    assert norm == 5.0
    assert privacy.global_norm(clipped) == pytest.approx(2.0)
    assert clipped[0].tolist() == pytest.approx([1.2, 0.0]) and clipped[1].ravel().tolist() == pytest.approx([1.6])
    short = [np.array([0.3, 0.4])]
    same, norm = privacy.clip_update(short, 2.0)
    assert norm == pytest.approx(0.5) and same[0].tolist() == [0.3, 0.4]


def test_without_noise_dp_fedavg_is_the_clipped_sum_over_the_expected_cohort():
    current = vector(1.0, 1.0)
    # Δ₁ = (3, 4) has norm 5, clipped to (0.6, 0.8); Δ₂ = (0.5, 0) stays. Example counts are ignored.
    pairs = [(vector(4.0, 5.0), 1000), (vector(1.5, 1.0), 1)]
    new, state = privacy.dp_fedavg(
        current, pairs, {}, noise_seed=[0], expected_clients=4, noise_multiplier=0.0, clip=1.0
    )
    assert new[0].tolist() == pytest.approx([1.0 + (0.6 + 0.5) / 4, 1.0 + 0.8 / 4])
    assert state == {}


def test_the_noise_on_the_sum_has_standard_deviation_z_times_s():
    size, z, clip, cohort = 400_000, 0.7, 2.5, 10.0
    current = [np.zeros(size, np.float32)]
    pairs = [([np.zeros(size, np.float32)], 1)]  # a zero update: the output is the noise alone, over q·N
    new, _ = privacy.dp_fedavg(
        current, pairs, {}, noise_seed=[1, 2, 3], expected_clients=cohort, noise_multiplier=z, clip=clip
    )
    noise_on_sum = new[0].astype(np.float64) * cohort
    assert abs(noise_on_sum.mean()) < 0.01
    assert noise_on_sum.std() == pytest.approx(z * clip, rel=0.005)


def test_the_noise_is_drawn_from_its_seed_alone():
    current, pairs = vector(0.0, 0.0), [(vector(1.0, 1.0), 1)]
    step = dict(expected_clients=1, noise_multiplier=1.0, clip=1.0)
    first, _ = privacy.dp_fedavg(current, pairs, {}, noise_seed=[42, 1, 2], **step)
    again, _ = privacy.dp_fedavg(current, pairs, {}, noise_seed=[42, 1, 2], **step)
    other, _ = privacy.dp_fedavg(current, pairs, {}, noise_seed=[42, 2, 2], **step)
    assert first[0].tolist() == again[0].tolist() != other[0].tolist()


def test_a_round_without_updates_or_cohort_is_refused():
    with pytest.raises(ValueError, match="no update"):
        privacy.dp_fedavg(vector(0.0), [], {}, noise_seed=[0], expected_clients=1, noise_multiplier=1, clip=1)
    with pytest.raises(ValueError, match="expected number of clients"):
        privacy.dp_fedavg(
            vector(0.0), [(vector(1.0), 1)], {}, noise_seed=[0], expected_clients=0, noise_multiplier=1, clip=1
        )


# ---------------------------------------------------------------------------
# Adaptive clipping
# ---------------------------------------------------------------------------

ADAPTIVE = dict(initial_clip=2.0, target_quantile=0.5, clip_lr=0.2, count_noise_ratio=0.05)


def test_adaptive_clipping_shrinks_s_when_every_update_fits_and_grows_it_when_none_does():
    current = vector(0.0, 0.0)
    short = [(vector(0.3, 0.4), 1), (vector(0.0, 1.0), 1)]  # norms 0.5 and 1: both within S = 2
    _, state = privacy.dp_fedavg_adaptive(
        current, short, {}, noise_seed=[0], expected_clients=2, noise_multiplier=0.0, **ADAPTIVE
    )
    assert state[privacy.CLIP_SLOT][0] == pytest.approx(2.0 * math.exp(-0.2 * (1.0 - 0.5)))
    long = [(vector(30.0, 40.0), 1), (vector(0.0, 10.0), 1)]
    _, state = privacy.dp_fedavg_adaptive(
        current, long, state, noise_seed=[0], expected_clients=2, noise_multiplier=0.0, **ADAPTIVE
    )
    assert state[privacy.CLIP_SLOT][0] == pytest.approx(2.0 * math.exp(-0.1) * math.exp(-0.2 * (0.0 - 0.5)))


def test_adaptive_clipping_converges_to_the_target_quantile_of_the_norms():
    rng = np.random.default_rng(0)
    state, current = {}, vector(0.0)
    for round_number in range(300):
        norms = rng.uniform(0.0, 10.0, size=50)  # the median norm is 5
        pairs = [(vector(n), 1) for n in norms]
        _, state = privacy.dp_fedavg_adaptive(
            current, pairs, state, noise_seed=[round_number], expected_clients=50, noise_multiplier=0.5, **ADAPTIVE
        )
    assert state[privacy.CLIP_SLOT][0] == pytest.approx(5.0, rel=0.15)


def test_the_update_noise_leaves_room_for_the_counts_noise():
    # Andrew et al., Theorem 1: z = (z_Δ⁻² + (2σ_b)⁻²)^(−1/2)
    z_delta = privacy.update_noise_multiplier(1.0, 1.0)
    assert z_delta == pytest.approx(1 / math.sqrt(0.75))
    assert (z_delta**-2 + 2.0**-2) ** -0.5 == pytest.approx(1.0)
    assert privacy.update_noise_multiplier(0.0, 0.0) == 0.0
    with pytest.raises(ValueError, match="count noise"):
        privacy.update_noise_multiplier(1.0, 0.5)


# ---------------------------------------------------------------------------
# The accountant, against an independent computation
# ---------------------------------------------------------------------------


def independent_rdp(q, z, order):
    """Mironov et al. (2019), integer orders: log Σₖ C(α, k)·(1 − q)^(α−k)·qᵏ·exp((k² − k)/(2z²)) / (α − 1)."""
    terms = [
        math.lgamma(order + 1)
        - math.lgamma(k + 1)
        - math.lgamma(order - k + 1)
        + (order - k) * math.log1p(-q)
        + (k * math.log(q) if k else 0.0)
        + (k * k - k) / (2 * z * z)
        for k in range(order + 1)
    ]
    top = max(terms)
    return (top + math.log(sum(math.exp(t - top) for t in terms))) / (order - 1)


def independent_epsilon(q, z, rounds, delta):
    """The RDP curve above over orders 2..256, converted with Balle et al.'s (2020) bound."""
    best = math.inf
    for order in range(2, 257):
        rdp = rounds * (order / (2 * z * z) if q == 1 else independent_rdp(q, z, order))
        best = min(best, rdp + math.log1p(-1 / order) - math.log(delta * order) / (order - 1))
    return best


def test_the_independent_rdp_reproduces_dp_accountings_published_values():
    # dp-accounting's own test: q = 0.01, z = 2.5, 50 rounds; RDP at orders 5 and 50
    assert 50 * independent_rdp(0.01, 2.5, 5) == pytest.approx(2.18075656e-03, rel=1e-4)
    assert 50 * independent_rdp(0.01, 2.5, 50) == pytest.approx(2.38460375e-02, rel=1e-4)


@pytest.mark.parametrize(
    "q, z, rounds", [(0.1, 1.0, 30), (0.1, 2.0, 50), (0.01, 1.1, 1000), (1.0, 1.0, 1), (1.0, 5.0, 20)]
)
def test_the_accountant_agrees_with_the_independent_computation(q, z, rounds):
    assert privacy.epsilon(z, q, rounds, 1e-5) == pytest.approx(independent_epsilon(q, z, rounds, 1e-5), rel=1e-6)


def test_epsilon_grows_with_rounds_and_falls_with_noise():
    eps = [privacy.epsilon(1.0, 0.1, r, 1e-3) for r in (0, 1, 10, 100)]
    assert eps[0] == 0.0 and eps == sorted(eps) and len(set(eps)) == 4
    assert privacy.epsilon(2.0, 0.1, 10, 1e-3) < privacy.epsilon(1.0, 0.1, 10, 1e-3)
    assert privacy.epsilon(0.0, 0.1, 1, 1e-3) == math.inf


def test_noise_for_epsilon_inverts_epsilon():
    z = privacy.noise_for_epsilon(1.0, 0.1, 30, 1e-3)
    assert privacy.epsilon(z, 0.1, 30, 1e-3) == pytest.approx(1.0, abs=1e-3)
    assert privacy.epsilon(0.95 * z, 0.1, 30, 1e-3) > 1.0


@pytest.mark.parametrize("bad", [dict(sampling_rate=0), dict(sampling_rate=1.5), dict(delta=0), dict(delta=1)])
def test_the_accountant_refuses_meaningless_settings(bad):
    arguments = dict(noise_multiplier=1.0, sampling_rate=0.1, rounds=1, delta=1e-3) | bad
    with pytest.raises(ValueError):
        privacy.epsilon(**arguments)


# ---------------------------------------------------------------------------
# Through the registry
# ---------------------------------------------------------------------------


def test_the_private_rows_run_in_one_shot_from_the_initial_model():
    initial = vector(0.0, 0.0)
    pairs = [(vector(3.0, 4.0), 10), (vector(0.0, 1.0), 30)]
    row = strategies.get("dpfedavg")
    weights = strategies.one_shot(row, pairs, initial, {"noise_multiplier": 0.0, "clip": 1.0}, seed=0, num_clients=2)
    assert weights[0].tolist() == pytest.approx([0.3, 0.9])  # ((0.6, 0.8) + (0, 1)) / 2
    assert row in strategies.one_shot_rows() and strategies.get("dpfedavg_adaptive") in strategies.one_shot_rows()
    record = row.privacy_spent({"noise_multiplier": 1.0}, 1.0, 1, 5)
    assert record["delta"] == pytest.approx(5**-1.1) and record["delta"] < 1 / 5
    assert record["epsilon"] == pytest.approx(privacy.epsilon(1.0, 1.0, 1, record["delta"]))
    assert strategies.get("fedavg").privacy_spent({}, 1.0, 1, 5) is None
    alone = row.privacy_spent({"noise_multiplier": 1.0}, 1.0, 1, 1)  # one client: no one to hide among
    assert alone["epsilon"] is None and alone["delta"] is None


@pytest.mark.parametrize("population", [0, 1, 2.5, True, "100"])
def test_delta_needs_a_population_of_at_least_two(population):
    with pytest.raises(ValueError, match="must be an integer of at least 2"):
        privacy.delta_for(population)


def test_delta_shrinks_faster_than_one_over_the_population():
    assert privacy.delta_for(100) == pytest.approx(100**-1.1)
    assert privacy.delta_for(1000) * 1000 < privacy.delta_for(100) * 100 < 1  # N·δ falls as N grows
