"""Local training, the one function that the notebook, the simulation and any Flower client call.

FedProx (Li et al., 2020) is a client-side method: each client minimises its
local loss plus μ/2·‖w − w⁰‖², the squared distance to the global weights w⁰ it
started from. With μ = 0 this is plain local training (FedAvg's client step).
"""

import keras
import numpy as np
import tensorflow as tf

from model import LEARNING_RATE, compile_model

# The course's local-training defaults; local_training.ipynb's parameters cell repeats them (a test checks).
DEFAULT_EPOCHS = 3
DEFAULT_BATCH_SIZE = 64
DEFAULT_MU = 0.01


class ProximalModel(keras.Model):
    """Wraps a model so that training adds μ/2·‖w − w⁰‖² to the compiled loss; shares its variables."""

    def __init__(self, inner, anchor_weights, mu):
        super().__init__(name=f"{inner.name}_fedprox")
        self.inner = inner
        self.mu = float(mu)
        self._anchors = tuple(tf.constant(w, dtype=tf.float32) for w in anchor_weights)

    def call(self, inputs, training=False):
        return self.inner(inputs, training=training)

    def proximal_term(self):
        squared = [tf.reduce_sum(tf.square(w - a)) for w, a in zip(self.inner.trainable_weights, self._anchors)]
        return 0.5 * self.mu * tf.add_n(squared)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        loss = super().compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training)
        return loss + self.proximal_term() if training else loss


def make_dataset(x, y, batch_size, seed=None, shuffle=False):
    """A tf.data pipeline over in-memory arrays: seeded reshuffle each epoch, batched, prefetched."""
    dataset = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle:
        dataset = dataset.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def reset_random_state(model, seed):
    """Seed Python, NumPy, TensorFlow and every dropout layer, so one call is reproducible on its own."""
    keras.utils.set_random_seed(seed)
    for layer in model.layers:
        generator = getattr(layer, "seed_generator", None)
        if generator is not None:
            generator.state.assign(np.array([seed, 0], dtype=generator.state.dtype))


def train_local(model, x, y, *, initial_weights, epochs, batch_size, seed, mu=0.0,
                learning_rate=LEARNING_RATE, validation_data=None, verbose=1):
    """Train `model` from `initial_weights` on (x, y); return the Keras History.

    The trained weights are left in `model` (read them with `model.get_weights()`).
    mu > 0 adds FedProx's proximal term anchored at `initial_weights`.
    """
    if mu < 0:
        raise ValueError(f"mu must be >= 0, got {mu}")
    model.set_weights(initial_weights)
    reset_random_state(model, seed)
    trainer = ProximalModel(model, initial_weights, mu) if mu > 0 else model
    compile_model(trainer, learning_rate)
    validation = None if validation_data is None else make_dataset(*validation_data, batch_size=256)
    return trainer.fit(
        make_dataset(x, y, batch_size, seed=seed, shuffle=True),
        epochs=epochs,
        validation_data=validation,
        shuffle=False,  # the dataset already reshuffles each epoch, with the seed
        verbose=verbose,
    )


def squared_distance(weights_a, weights_b):
    """‖a − b‖² over all arrays, in float64."""
    return float(sum(np.sum((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2) for a, b in zip(weights_a, weights_b)))


def check_training_parameters(epochs, batch_size, mu):
    """Raise ValueError with a clear message for parameters that cannot train."""
    for name, value in (("EPOCHS", epochs), ("BATCH_SIZE", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}={value!r}: must be a positive integer")
    if isinstance(mu, bool) or not isinstance(mu, (int, float)) or not mu >= 0:
        raise ValueError(f"MU={mu!r}: must be a number >= 0 (0 disables FedProx)")
