"""Local training and FedProx's proximal term."""

import numpy as np
import pytest

from fedmnist.training import (
    LocalTrainer,
    ProximalModel,
    compile_model,
    epoch_dataset,
    epoch_orders,
    reset_random_state,
    seeded_model,
    squared_distance,
    train_local,
)
from model import build_model


@pytest.fixture(scope="module")
def small_client(mnist):
    x = (mnist[0][:768].astype(np.float32) / 255.0)[..., None]
    return x, mnist[1][:768]


@pytest.fixture(scope="module")
def initial_weights():
    return seeded_model(5).get_weights()


def trained(x, y, w0, mu):
    model = build_model()
    train_local(model, x, y, initial_weights=w0, epochs=1, batch_size=32, seed=11, mu=mu, verbose=0)
    return model.get_weights()


def test_proximal_term_is_half_mu_times_squared_norm(initial_weights):
    model = seeded_model(6)
    wrapped = ProximalModel(model)
    wrapped.set_anchor(initial_weights, mu=0.3)
    expected = 0.5 * 0.3 * squared_distance(model.get_weights(), initial_weights)
    assert float(wrapped.proximal_term()) == pytest.approx(expected, rel=1e-5)


def test_mu_zero_is_plain_training(small_client, initial_weights):
    x, y = small_client
    plain = build_model()
    plain.set_weights(initial_weights)
    reset_random_state(plain, 11)
    compile_model(plain)
    plain.fit(epoch_dataset(x, y, epoch_orders(11, len(x), 1)[0], 32), epochs=1, verbose=0)
    via_train_local = trained(x, y, initial_weights, mu=0.0)
    assert all(np.array_equal(a, b) for a, b in zip(plain.get_weights(), via_train_local))


def test_proximal_wrapper_with_mu_zero_matches_plain_fit(small_client, initial_weights):
    x, y = small_client
    results = []
    for wrap in (False, True):
        model = build_model()
        model.set_weights(initial_weights)
        reset_random_state(model, 11)
        trainer = model
        if wrap:
            trainer = ProximalModel(model)
            trainer.set_anchor(initial_weights, mu=0.0)
        compile_model(trainer)
        trainer.fit(epoch_dataset(x, y, epoch_orders(11, len(x), 1)[0], 32), epochs=1, verbose=0)
        results.append(model.get_weights())
    assert all(np.array_equal(a, b) for a, b in zip(*results))


def test_training_is_deterministic_under_a_seed(small_client, initial_weights):
    x, y = small_client
    first, second = trained(x, y, initial_weights, 0.0), trained(x, y, initial_weights, 0.0)
    assert all(np.array_equal(a, b) for a, b in zip(first, second))


def test_large_mu_keeps_weights_close_to_the_start(small_client, initial_weights):
    x, y = small_client
    free = squared_distance(trained(x, y, initial_weights, 0.0), initial_weights)
    anchored = squared_distance(trained(x, y, initial_weights, 10.0), initial_weights)
    assert anchored < 0.1 * free


def test_negative_mu_is_refused(small_client, initial_weights):
    with pytest.raises(ValueError, match="mu"):
        train_local(
            build_model(), *small_client, initial_weights=initial_weights, epochs=1, batch_size=32, seed=1, mu=-1
        )


def test_a_reused_trainer_gives_the_same_result_as_a_fresh_one(small_client, initial_weights):
    x, y = small_client
    trainer = LocalTrainer(build_model())
    trainer.train(
        x[:256],
        y[:256],
        initial_weights=seeded_model(9).get_weights(),
        epochs=1,
        batch_size=32,
        seed=3,
        mu=1.0,
        verbose=0,
    )
    trainer.train(x, y, initial_weights=initial_weights, epochs=1, batch_size=32, seed=11, mu=0.0, verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(trainer.model.get_weights(), trained(x, y, initial_weights, 0.0)))


@pytest.mark.parametrize(
    "epochs, batch_size, mu", [(0, 64, 0.0), (3, 0, 0.0), (3, 64, -1.0), (3, 64, float("inf")), (3, 64, float("nan"))]
)
def test_notebook_parameters_that_cannot_train_are_refused(epochs, batch_size, mu):
    from fedmnist.training import check_training_parameters

    with pytest.raises(ValueError, match="must be"):
        check_training_parameters(epochs, batch_size, mu)
