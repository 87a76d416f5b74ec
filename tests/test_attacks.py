import numpy as np
import pytest

from fedmnist.attacks import (
    ATTACKS,
    MODEL_POISONING,
    REGISTRY,
    Attack,
    attack_updates,
    flip_labels,
    label,
    malicious_ids,
    omniscient_update,
    poison,
    register,
    trains_on,
)
from fedmnist.updates import ClientUpdate

W0 = [np.array([1.0, 2.0], np.float32)]
W = [np.array([1.5, 1.0], np.float32)]  # Δ = [0.5, -1.0]


def test_sign_flip_and_scale_act_on_the_update():
    assert poison(W, W0, "sign_flip", 2.0)[0].tolist() == [0.0, 4.0]
    assert poison(W, W0, "scale", 3.0)[0].tolist() == [2.5, -1.0]


def test_noise_replaces_the_update_at_its_scale():
    rng = np.random.default_rng(0)
    big = [np.zeros(10_000, np.float32)]
    update = [rng.normal(0, 0.1, 10_000).astype(np.float32)]
    noisy = poison(update, big, "noise", 2.0, rng=np.random.default_rng(1))[0]
    assert noisy.std() == pytest.approx(0.2, rel=0.05)
    assert abs(np.corrcoef(noisy, update[0])[0, 1]) < 0.05


def test_crashed_clients():
    assert poison(W, W0, "zeros")[0].tolist() == [0.0, 0.0]
    assert np.isnan(poison(W, W0, "nan")[0]).all()
    assert poison(W, W0, "zeros")[0].dtype == np.float32


def test_unknown_attack_is_refused():
    with pytest.raises(ValueError, match="unknown"):
        poison(W, W0, "label_flip")


def test_label_flip():
    assert flip_labels(np.array([0, 3, 9], np.uint8)).tolist() == [9, 6, 0]


def test_malicious_ids_are_the_first_m():
    assert malicious_ids([5, 1, 3], 2) == [1, 3]
    with pytest.raises(ValueError):
        malicious_ids([1, 2], 3)


def test_alie_shifts_the_honest_mean_by_z_standard_deviations():
    # honest Δ = 1, 2, 3: μ = 2, σ = √(2/3); K = 5, M = 2: s = ⌊5/2 + 1⌋ − 2 = 1, z = Φ⁻¹(4/5) = 0.8416
    honest = [[np.array([v], np.float32)] for v in (1.0, 2.0, 3.0)]
    attacked = omniscient_update(honest, [np.zeros(1, np.float32)], "alie", num_clients=5, num_malicious=2)
    assert attacked[0].tolist() == pytest.approx([2 - 0.841621 * np.sqrt(2 / 3)], abs=1e-6)


def test_ipm_sends_minus_epsilon_times_the_honest_mean():
    honest = [[np.array([v], np.float32)] for v in (1.0, 2.0, 3.0)]
    start = [np.array([10.0], np.float32)]  # Δ = w − w⁰: the honest Δs are −9, −8, −7
    assert omniscient_update(honest, start, "ipm", 4, 1)[0].tolist() == pytest.approx([10.0 + 0.1 * 8])


def test_every_attacker_sends_the_omniscient_update_computed_from_the_others():
    start = [np.zeros(1, np.float32)]
    updates = [ClientUpdate(f"c{i}", i, [np.array([float(i)], np.float32)], 10, None) for i in (1, 2, 3, 4)]
    kept, rejected = attack_updates(updates, start, "ipm", {1, 2})
    # the honest Δs are 3 and 4: IPM sends −0.1 · 3.5 from both attackers
    assert rejected == [] and [float(u.weights[0][0]) for u in kept] == pytest.approx([-0.35, -0.35, 3.0, 4.0])


@pytest.mark.parametrize("attack", [key for key, row in REGISTRY.items() if row.kind == "update"])
def test_every_update_attack_returns_float32_weights_of_the_same_shapes(attack):
    start = [np.zeros((2, 3), np.float32), np.ones(4, np.float32)]
    trained = [w + 0.5 for w in start]
    attacked = poison(trained, start, attack, rng=np.random.default_rng(0))
    assert [w.shape for w in attacked] == [(2, 3), (4,)] and all(w.dtype == np.float32 for w in attacked)


def test_the_registry_is_what_the_command_lines_offer():
    assert ATTACKS == tuple(REGISTRY) and set(MODEL_POISONING) | {"label_flip"} == set(ATTACKS)
    assert trains_on("label_flip", np.array([0, 9])).tolist() == [9, 0]
    assert trains_on("sign_flip", np.array([0, 9])).tolist() == [0, 9] and trains_on(None, [1]) == [1]
    assert label("ipm") == "IPM (−0.1·media de los honestos)"
    with pytest.raises(ValueError, match="kind"):
        register(Attack("odd", "network", None, "", ""))
