"""Server optimizers and SCAFFOLD's server step: the reductions to FedAvg, and small cases computed by hand."""

import numpy as np
import pytest

from fedmnist import scaffold, strategies
from fedmnist.aggregation import fedavg
from fedmnist.server_optimizers import fedadam, fedavgm, fedyogi


@pytest.fixture
def round_inputs():
    rng = np.random.default_rng(2)
    shapes = [(3, 3, 1, 2), (2,), (5, 4)]
    current = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    pairs = [([rng.standard_normal(s).astype(np.float32) for s in shapes], n) for n in (10, 30, 60)]
    return current, pairs


def scalar(value):
    return [np.array([value], np.float32)]


def test_fedavgm_without_momentum_at_rate_one_is_fedavg_exactly(round_inputs):
    current, pairs = round_inputs
    state = {}
    for _ in range(3):  # also from a state
        new, state = strategies.get("fedavgm").step(pairs, current, state, {"momentum": 0.0, "server_lr": 1.0})
        assert all(np.array_equal(a, b) for a, b in zip(new, fedavg(pairs)))


@pytest.mark.parametrize("key", ["fedadam", "fedyogi"])
def test_adaptive_optimizers_reduce_to_fedavg_with_beta1_0_beta2_1_and_eta_tau(round_inputs, key):
    current, pairs = round_inputs
    values = {"server_lr": 0.5, "beta1": 0.0, "beta2": 1.0, "tau": 0.5}  # v stays 0, so the step is η·Δ/τ = Δ
    new, state = strategies.get(key).step(pairs, current, {}, values)
    assert all(np.allclose(a, b, rtol=0, atol=1e-6) for a, b in zip(new, fedavg(pairs)))
    assert all(np.all(v == 0) for v in state["second_moment"])


def test_fedavgm_by_hand():
    # x = 1, FedAvg gives 3: pseudo-gradient −2, v = −2, x = 1 + 2 = 3; then FedAvg 4: g = −1, v = 0.9·(−2) − 1 = −2.8
    x, state = fedavgm(scalar(1.0), scalar(3.0), {}, server_lr=1.0, momentum=0.9)
    assert x[0][0] == 3.0
    x, state = fedavgm(x, scalar(4.0), state, server_lr=1.0, momentum=0.9)
    assert x[0][0] == pytest.approx(5.8) and state["velocity"][0][0] == pytest.approx(-2.8)


def test_fedadam_and_fedyogi_by_hand():
    # Δ = 2: m = 0.1·2 = 0.2, v = 0.01·4 = 0.04 (Yogi: 0 − 0.01·4·sign(0 − 4) = 0.04), step 0.1·0.2 / (0.2 + 0.001)
    hyper = {"server_lr": 0.1, "beta1": 0.9, "beta2": 0.99, "tau": 0.001}
    adam, adam_state = fedadam(scalar(1.0), scalar(3.0), {}, **hyper)
    yogi, yogi_state = fedyogi(scalar(1.0), scalar(3.0), {}, **hyper)
    assert adam[0][0] == yogi[0][0] == pytest.approx(1 + 0.1 * 0.2 / 0.201)
    # A second round with Δ = 0 from x = 0: m = 0.18; Adam v = 0.99·0.04 = 0.0396, Yogi v = 0.04 − 0 = 0.04
    adam, _ = fedadam(scalar(0.0), scalar(0.0), adam_state, **hyper)
    yogi, _ = fedyogi(scalar(0.0), scalar(0.0), yogi_state, **hyper)
    assert adam[0][0] == pytest.approx(0.1 * 0.18 / (np.sqrt(0.0396) + 0.001))
    assert yogi[0][0] == pytest.approx(0.1 * 0.18 / (np.sqrt(0.04) + 0.001))


def test_count_weighted_scaffold_with_zero_control_variates_is_fedavg_exactly(round_inputs):
    current, pairs = round_inputs
    zero = [(scaffold.zeros_like(current), n) for _, n in pairs]
    new, state = strategies.get("scaffold").step(
        pairs, current, {}, {"weighted": 1}, control_deltas=zero, num_clients=10, total_examples=1000
    )
    assert all(np.array_equal(a, b) for a, b in zip(new, fedavg(pairs)))
    assert all(np.all(c == 0) for c in state["control"])


def test_scaffold_by_hand():
    # N = 4 clients, 2 sampled: y = 3 and 5 with n = 1 and 3, Δc = 1 and 3.
    # Uniform (the paper's): x = 1 + 0.5·(mean(3, 5) − 1) = 2.5, c = (1 + 3)/4 = 1.
    # Weighted, all clients holding 8 examples: x = 1 + 0.5·((3 + 15)/4 − 1) = 2.75, c = (1·1 + 3·3)/8 = 1.25.
    pairs, deltas = [(scalar(3.0), 1), (scalar(5.0), 3)], [(scalar(1.0), 1), (scalar(3.0), 3)]
    for weighted, expected_x, expected_c in ((0, 2.5, 1.0), (1, 2.75, 1.25)):
        x, state = scaffold.server_step(
            scalar(1.0), pairs, {}, control_deltas=deltas, num_clients=4, total_examples=8, server_lr=0.5,
            weighted=weighted,
        )  # fmt: skip
        assert (x[0][0], state["control"][0][0]) == (expected_x, expected_c)
    x, state = scaffold.server_step(
        scalar(1.0), pairs, {}, control_deltas=deltas, num_clients=4, total_examples=8, server_lr=0.5, weighted=0
    )
    assert scaffold.correction(state, scalar(0.25), x)[0][0] == 0.75  # c − cᵢ
    assert scaffold.correction({}, None, x)[0][0] == 0.0  # before any round
    assert scaffold.control_delta(scalar(2.0), None)[0][0] == 2.0


def test_stateful_rows_are_multi_round_only_and_the_one_shot_rules_are_the_rest():
    stateful = {"fedavgm", "fedadam", "fedyogi", "scaffold"}
    assert {row.key for row in strategies.REGISTRY.values() if row.multi_round_only} == stateful
    assert {row.key for row in strategies.one_shot_rows()} == set(strategies.REGISTRY) - stateful


def test_beta2_may_be_one_but_not_more():
    beta2 = strategies.get("fedadam").parameters[2]
    assert beta2.check(1) == 1.0
    with pytest.raises(ValueError, match="--fedadam-beta2 1.5: must be a number at least 0 and at most 1"):
        beta2.check(1.5)
