import numpy as np
import pytest

from fedmnist.attacks import flip_labels, malicious_ids, poison

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
