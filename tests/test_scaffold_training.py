"""SCAFFOLD's client side: the correction c − cᵢ enters every gradient, and cᵢ⁺ follows from the local steps."""

import numpy as np
import pytest

from fedmnist import scaffold
from fedmnist.training import LocalTrainer, seeded_model
from model import build_model


@pytest.fixture(scope="module")
def batch(mnist):
    return (mnist[0][:64].astype(np.float32) / 255.0)[..., None], mnist[1][:64]


@pytest.fixture(scope="module")
def trainer():
    return LocalTrainer(build_model(), learning_rate=0.1, optimizer="sgd")


def test_with_sgd_one_step_moves_by_minus_lr_times_the_correction(trainer, batch):
    x, y = batch
    start = seeded_model(3).get_weights()
    correction = [np.full(w.shape, 0.5, np.float32) for w in start]
    runs = []
    for given in (None, correction):
        trainer.train(x, y, initial_weights=start, epochs=1, batch_size=64, seed=4, correction=given, verbose=0)
        runs.append(trainer.model.get_weights())
    # w − lr·(g + d) − (w − lr·g) = −lr·d = −0.05 everywhere
    assert all(np.allclose(b - a, -0.05, rtol=0, atol=1e-5) for a, b in zip(*runs))


def test_option_two_recovers_the_gradient_of_plain_sgd(trainer, batch):
    # one full-batch SGD step: y = x − η(g + d), so cᵢ⁺ = −d + (x − y)/(1·η) = g, whatever the correction d
    x, y = batch
    start = seeded_model(3).get_weights()
    controls = []
    for value in (0.0, 0.5):
        correction = [np.full(w.shape, value, np.float32) for w in start]
        trainer.train(x, y, initial_weights=start, epochs=1, batch_size=64, seed=4, correction=correction, verbose=0)
        controls.append(scaffold.new_client_control(correction, start, trainer.model.get_weights(), 1, 0.1))
    assert all(np.allclose(a, b, rtol=0, atol=1e-4) for a, b in zip(*controls))
    assert sum(float(np.abs(g).sum()) for g in controls[0]) > 0
