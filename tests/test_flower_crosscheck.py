"""The project's aggregation rules agree with Flower's on the same updates (skipped without flwr)."""

import numpy as np
import pytest

from fedmnist.aggregation import fedavg, fedmed, krum, trimmed_mean

flower = pytest.importorskip("flwr.server.strategy.aggregate")


@pytest.fixture
def updates():
    rng = np.random.default_rng(3)
    shapes = [(3, 3, 1, 4), (4,), (36, 5), (5,)]
    return [([rng.standard_normal(s).astype(np.float32) for s in shapes], int(n)) for n in rng.integers(1, 50, 8)]


def close(ours, theirs, atol):
    return all(np.allclose(a, b, atol=atol, rtol=0) for a, b in zip(ours, theirs))


def test_fedavg_matches_flower(updates):
    assert close(fedavg(updates), flower.aggregate(updates), 1e-6)


def test_fedmed_matches_flower_bitwise(updates):
    assert all(np.array_equal(a, b) for a, b in zip(fedmed(updates), flower.aggregate_median(updates)))


def test_trimmed_mean_matches_flower(updates):
    assert close(trimmed_mean(updates, 0.25), flower.aggregate_trimmed_avg(updates, 0.25), 1e-6)


def test_krum_selects_the_same_update_as_flower(updates):
    assert close(krum(updates, f=2), flower.aggregate_krum(updates, 2, 0), 0)
