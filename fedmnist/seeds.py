"""Every random stream of the project, by name, from one run seed.

A stream is a `np.random.SeedSequence` whose entropy is the run's seed and whose
spawn key starts with the stream's own number, followed by where it is used
(a round, a client): no two named streams, and no two places of one stream,
share a state, and two run seeds share nothing. Keras and TensorFlow take an
integer seed; `int_seed` draws it from the stream, so those seeds are as
independent as the streams they come from.

    rng(42, "sampling", 3)            the client sampling of round 3 of run 42
    int_seed(42, "training", 3, 7)    client 7's local training in round 3
"""

import numpy as np

# The stream numbers are part of every result: renumbering one changes the runs that use it.
STREAMS = {
    "partition": 1,  # which client holds which training image
    "subset": 2,  # the stratified subsets of quick runs (train and test)
    "initial_weights": 3,  # each layer's initializer
    "sampling": 4,  # the clients of each round
    "training": 5,  # each client's data order and dropout masks, per round
    "attack": 6,  # the noise attack's noise, per round and attacker
    "dp_noise": 7,  # DP-FedAvg's Gaussian noise, per round
    "leakage_noise": 8,  # the privacy study's noised updates, per noise multiplier
    "nonmembers": 9,  # the privacy study's non-member images
    "validation": 10,  # the validation split held out of the training pool
}
INT_SEED_BOUND = 2**31 - 1  # what Keras and TensorFlow accept as a seed
SCHEME = 2  # recorded in every split's manifest: a folder split under another scheme is not this seed's split


def sequence(seed, stream, *path):
    """The SeedSequence of `stream` under run `seed`, at `path` (non-negative integers: round, client, ...)."""
    if stream not in STREAMS:
        raise KeyError(f"unknown random stream {stream!r}; the streams are {', '.join(STREAMS)}")
    return np.random.SeedSequence(entropy=int(seed), spawn_key=(STREAMS[stream], *(int(p) for p in path)))


def rng(seed, stream, *path):
    """A NumPy Generator on `stream` (see `sequence`)."""
    return np.random.default_rng(sequence(seed, stream, *path))


def int_seed(seed, stream, *path):
    """An integer seed for Keras or TensorFlow, drawn from `stream` (see `sequence`)."""
    return int(sequence(seed, stream, *path).generate_state(1, np.uint64)[0] % INT_SEED_BOUND)


def int_seeds(seed, stream, count, *path):
    """`count` integer seeds from one stream, for the parts of one thing (the layers of a model)."""
    state = sequence(seed, stream, *path).generate_state(count, np.uint64)
    return [int(s % INT_SEED_BOUND) for s in state]


def client_training_seed(seed, round_number, client_id):
    """The seed of one client's local training in one round: its data order and its dropout masks.

    The course's one round is round 1: a teammate's notebook and the simulation's
    first round train client N with the same seed.
    """
    return int_seed(seed, "training", round_number, client_id)
