"""DP-SGD in local training: per-example clipping and the noise scale checked against a loop over examples."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from fedmnist import privacy
from fedmnist.training import LocalTrainer, PrivateModel, compile_model, seeded_model


def tiny_private_model(clip, noise_multiplier, batch_size):
    """A softmax regression (no dropout, so per-example gradients are deterministic) in the DP-SGD wrapper."""
    inner = keras.Sequential(
        [keras.Input((4, 4, 1)), keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax")]
    )
    inner.set_weights([np.random.default_rng(0).normal(0, 0.3, (16, 10)).astype(np.float32), np.zeros(10, "f4")])
    model = compile_model(PrivateModel(inner), 0.1, "sgd")
    model.clip.assign(clip)
    model.noise_multiplier.assign(noise_multiplier)
    model.batch_size.assign(batch_size)
    return model


def batch(size=8):
    rng = np.random.default_rng(1)
    return rng.random((size, 4, 4, 1), dtype=np.float32), rng.integers(0, 10, size)


def gradients_one_by_one(model, x, y):
    found = []
    for i in range(len(y)):
        with tf.GradientTape() as tape:
            loss = keras.losses.sparse_categorical_crossentropy(y[i : i + 1], model(x[i : i + 1]))
        found.append([g.numpy() for g in tape.gradient(loss, model.inner.trainable_variables)])
    return found


def test_each_examples_gradient_is_clipped_to_c_and_the_sum_divided_by_b():
    x, y = batch()
    model = tiny_private_model(clip=0.05, noise_multiplier=0.0, batch_size=10.0)
    private, _ = model.private_gradients(x, y)
    expected = [np.zeros(v.shape) for v in model.inner.trainable_variables]
    for example in gradients_one_by_one(model, x, y):
        norm = np.sqrt(sum(np.sum(g.astype(np.float64) ** 2) for g in example))
        assert norm > 0.05  # every example is clipped here
        expected = [e + g * 0.05 / norm for e, g in zip(expected, example)]
    for got, want in zip(private, expected):
        np.testing.assert_allclose(got.numpy(), want / 10.0, rtol=1e-4, atol=1e-7)


def test_without_clipping_or_noise_it_is_the_mean_gradient():
    x, y = batch()
    model = tiny_private_model(clip=1e6, noise_multiplier=0.0, batch_size=8.0)
    private, _ = model.private_gradients(x, y)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, model(x)))
    for got, want in zip(private, tape.gradient(loss, model.inner.trainable_variables)):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-4, atol=1e-7)


def test_the_noise_on_the_mean_gradient_has_standard_deviation_sigma_c_over_b():
    x, y = batch()
    clean, _ = tiny_private_model(clip=0.5, noise_multiplier=0.0, batch_size=8.0).private_gradients(x, y)
    noisy, _ = tiny_private_model(clip=0.5, noise_multiplier=3.0, batch_size=8.0).private_gradients(x, y)
    noise = np.concatenate([(n.numpy() - c.numpy()).ravel() for n, c in zip(noisy, clean)])
    assert noise.std() == pytest.approx(3.0 * 0.5 / 8.0, rel=0.05)  # 170 coordinates


def test_local_training_with_dp_sgd_is_reproducible_and_refuses_fedprox(mnist):
    x, y = (mnist[0][:64].astype(np.float32) / 255.0)[..., None], mnist[1][:64]
    trainer = LocalTrainer(seeded_model(3), learning_rate=0.05, optimizer="sgd")
    start = trainer.model.get_weights()
    runs = []
    for _ in range(2):
        trainer.train(x, y, initial_weights=start, epochs=1, batch_size=16, seed=5, dp_sgd=(1.0, 1.0), verbose=0)
        runs.append(trainer.model.get_weights())
    assert all(np.array_equal(a, b) for a, b in zip(*runs)) and not np.array_equal(runs[0][-1], start[-1])
    with pytest.raises(ValueError, match="without FedProx"):
        trainer.train(x, y, initial_weights=start, epochs=1, batch_size=16, seed=5, mu=0.1, dp_sgd=(1.0, 1.0))


def test_dp_sgd_epsilon_counts_every_step_at_rate_b_over_n():
    assert privacy.dp_sgd_epsilon(1.1, 10, 600, 2, 1e-5) == pytest.approx(privacy.epsilon(1.1, 10 / 600, 120, 1e-5))
    assert privacy.dp_sgd_epsilon(1.1, 10, 605, 1, 1e-5) == pytest.approx(privacy.epsilon(1.1, 10 / 605, 61, 1e-5))
