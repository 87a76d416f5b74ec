"""SCAFFOLD's client side: the correction c − cᵢ enters every gradient, and cᵢ⁺ is the mean local gradient."""

import numpy as np
import pytest

from fedmnist.training import LocalTrainer
from model import build_model


@pytest.fixture(scope="module")
def batch(mnist):
    return (mnist[0][:64].astype(np.float32) / 255.0)[..., None], mnist[1][:64]


@pytest.fixture(scope="module")
def trainer():
    return LocalTrainer(build_model(), learning_rate=0.1, optimizer="sgd")


def test_with_sgd_one_step_moves_by_minus_lr_times_the_correction(trainer, batch):
    x, y = batch
    start = build_model(seed=3).get_weights()
    correction = [np.full(w.shape, 0.5, np.float32) for w in start]
    runs = []
    for given in (None, correction):
        trainer.train(x, y, initial_weights=start, epochs=1, batch_size=64, seed=4, correction=given, verbose=0)
        runs.append(trainer.model.get_weights())
    # w − lr·(g + d) − (w − lr·g) = −lr·d = −0.05 everywhere
    assert all(np.allclose(b - a, -0.05, rtol=0, atol=1e-5) for a, b in zip(*runs))


def test_the_mean_gradient_does_not_depend_on_the_batching(trainer, batch):
    x, y = batch
    weights = build_model(seed=3).get_weights()
    whole = trainer.mean_gradient(x, y, weights, batch_size=64)
    pieces = trainer.mean_gradient(x, y, weights, batch_size=10)
    assert all(np.allclose(a, b, rtol=1e-4, atol=1e-7) for a, b in zip(whole, pieces))
    assert sum(float(np.abs(g).sum()) for g in whole) > 0
