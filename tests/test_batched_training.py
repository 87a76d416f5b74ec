"""The batched trainer computes, for each client of a group, what LocalTrainer computes for that client alone."""

import numpy as np
import pytest

from fedmnist.batched_training import BatchedClient, BatchedTrainer, step_schedule, training_groups
from fedmnist.training import LocalTrainer, seeded_model, squared_distance
from model import build_model

B = 10


@pytest.fixture(scope="module")
def images(mnist):
    return (mnist[0][:400].astype(np.float32) / 255.0)[..., None], mnist[1][:400]


@pytest.fixture(scope="module")
def start():
    return seeded_model(1).get_weights()


def group(images, start, sizes):
    """Clients of `sizes` examples: plain, FedProx (μ = 0.5), SCAFFOLD (a correction), then plain again."""
    x, y = images
    offsets = np.cumsum([0, *sizes])
    corrections = [None, None, [np.full(w.shape, 0.02, np.float32) for w in start], None]
    return [
        BatchedClient(x[a:b], y[a:b], start, seed=100 + i, mu=0.5 if i == 1 else 0.0, correction=corrections[i % 4])
        for i, (a, b) in enumerate(zip(offsets[:-1], offsets[1:]))
    ]


def separately(clients, optimizer, learning_rate, epochs):
    trainer = LocalTrainer(build_model(), learning_rate, optimizer)
    trained = []
    for c in clients:
        trainer.train(
            c.x, c.y, initial_weights=c.weights, epochs=epochs, batch_size=B, seed=c.seed, mu=c.mu,
            correction=c.correction, verbose=0,
        )  # fmt: skip
        trained.append(trainer.model.get_weights())
    return trained


def largest_difference(a, b):
    return max(float(np.max(np.abs(x - y))) for x, y in zip(a, b))


@pytest.mark.parametrize("optimizer, learning_rate", [("sgd", 0.05), ("adam", 1e-3)])
def test_each_client_of_a_group_equals_its_separate_training_for_the_first_steps(
    images, start, optimizer, learning_rate
):
    """Two steps each (the last of 7 images; one client stops after one): plain, FedProx, SCAFFOLD, plain.

    A grouped convolution sums in another order than Keras's, so activations differ in the last bit; where two
    values of a max-pooling window tie (identical patches), the gradient can go to the other one, which moves
    the lower layers' kernels apart by more than rounding (after one step the layers above are still equal to
    rounding; from the second step on, through the forward pass, they are not). So: most weights equal to
    rounding, and none far off.
    """
    clients = group(images, start, (20, 17, 20, 7))
    together = BatchedTrainer(learning_rate, optimizer).train(clients, 1, B)
    alone = separately(clients, optimizer, learning_rate, 1)
    for mine, reference in zip(together, alone):
        assert largest_difference(mine, start) > 1e-4  # it trained
        assert share_within(mine, reference, 1e-6) > 0.8
        assert largest_difference(mine, reference) < 0.01


@pytest.mark.parametrize("mu, correction", [(5.0, 0.0), (0.0, 0.05)])
def test_fedprox_and_scaffold_terms_act_in_a_group_as_in_separate_training(images, start, mu, correction):
    x, y = images
    plain = BatchedClient(x[:40], y[:40], start, seed=3)
    shifted = [np.full(w.shape, correction, np.float32) for w in start] if correction else None
    term = BatchedClient(x[40:80], y[40:80], start, seed=4, mu=mu, correction=shifted)
    together = BatchedTrainer(0.05, "sgd").train([plain, term], 2, B)
    alone = separately([plain, term], "sgd", 0.05, 2)
    moved = [squared_distance(w, start) for w in (*together, *alone)]
    assert moved[1] == pytest.approx(moved[3], rel=0.01)  # the term's client, grouped and alone
    assert abs(moved[1] / moved[0] - 1) > 0.2  # and the term matters


def share_within(a, b, tolerance):
    return sum(int(np.sum(np.abs(x - y) <= tolerance)) for x, y in zip(a, b)) / sum(x.size for x in a)


def test_a_client_whose_steps_are_over_keeps_its_weights(images, start):
    x, y = images
    short, long = BatchedClient(x[:10], y[:10], start, seed=1), BatchedClient(x[10:60], y[10:60], start, seed=2)
    trainer = BatchedTrainer(1e-3, "adam", group_size=2)
    assert largest_difference(trainer.train([short, long], 1, B)[0], trainer.train([short], 1, B)[0]) < 1e-6


def test_groups_hold_similar_step_counts_and_depend_on_the_counts_alone():
    assert training_groups([3, 9, 5, 9, 1], group_size=2) == [[1, 3], [2, 0], [4]]
    assert training_groups([4, 4, 4], group_size=10) == [[0, 1, 2]]


def test_a_schedule_visits_every_example_once_an_epoch_in_batches_of_b():
    indices, lengths = step_schedule(23, 2, 10, seed=5)
    assert lengths.tolist() == [10, 10, 3, 10, 10, 3]
    for epoch in (0, 1):
        visited = np.concatenate([indices[3 * epoch + s, : lengths[3 * epoch + s]] for s in range(3)])
        assert sorted(visited.tolist()) == list(range(23))
    assert not np.array_equal(indices[:3], indices[3:])  # each epoch its own order
