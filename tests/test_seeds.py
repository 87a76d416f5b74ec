"""One seeding helper: named streams that share no state, and initial weights that share no draws across seeds."""

import itertools

import numpy as np
import pytest

from fedmnist import seeds
from fedmnist.training import seeded_model


def test_every_named_stream_has_its_own_number():
    assert len(set(seeds.STREAMS.values())) == len(seeds.STREAMS)


def test_no_two_streams_or_places_share_entropy_and_spawn_key():
    places = [(stream, path) for stream in seeds.STREAMS for path in [(), (1,), (1, 2), (2, 1)]]
    states = {(s.entropy, s.spawn_key) for s in (seeds.sequence(42, stream, *path) for stream, path in places)}
    assert len(states) == len(places)


def test_a_stream_is_reproducible_and_differs_between_run_seeds():
    assert seeds.rng(42, "sampling", 3).random(4).tolist() == seeds.rng(42, "sampling", 3).random(4).tolist()
    assert seeds.rng(42, "sampling", 3).random(4).tolist() != seeds.rng(43, "sampling", 3).random(4).tolist()


def test_training_and_dp_noise_of_one_round_come_from_different_streams():
    # the old scheme drew both from [seed, round, 2]: client 2's training and round r's DP noise shared a state
    training, noise = seeds.sequence(42, "training", 5, 2), seeds.sequence(42, "dp_noise", 5)
    assert training.spawn_key != noise.spawn_key
    assert seeds.client_training_seed(42, 5, 2) != seeds.int_seed(42, "dp_noise", 5)


def test_an_unknown_stream_is_named():
    with pytest.raises(KeyError, match="unknown random stream 'partitions'"):
        seeds.sequence(42, "partitions")


def test_integer_seeds_fit_keras():
    drawn = [seeds.client_training_seed(s, r, c) for s, r, c in itertools.product((0, 42, 2**32 - 1), (1, 9), (1, 100))]
    assert all(0 <= s < 2**31 - 1 for s in drawn) and len(set(drawn)) == len(drawn)


def test_initial_weights_of_different_seeds_are_uncorrelated():
    # seed + i per layer made run 43's first kernel a rescaled prefix of run 42's second (correlation 0.99999999)
    a, b = seeded_model(42).get_weights(), seeded_model(43).get_weights()
    kernels = [i for i, w in enumerate(a) if w.ndim > 1]
    for i, j in itertools.product(kernels, kernels):
        n = min(a[i].size, b[j].size)
        correlation = np.corrcoef(a[i].ravel()[:n], b[j].ravel()[:n])[0, 1]
        assert abs(correlation) < 0.2, (i, j, correlation)
    assert all(np.array_equal(x, y) for x, y in zip(a, seeded_model(42).get_weights()))
