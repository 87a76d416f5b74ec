"""Local training, the one function that the notebook, the simulation and any Flower client call.

FedProx (Li et al., 2020) is a client-side method: each client minimises its
local loss plus μ/2·‖w − w⁰‖², the squared distance to the global weights w⁰ it
started from. With μ = 0 this is plain local training (FedAvg's client step).

SCAFFOLD (Karimireddy et al., 2020) corrects every local gradient g by c − cᵢ,
the server's control variate minus the client's. Adding the linear term
⟨w, c − cᵢ⟩ to the loss does exactly that, whichever optimizer follows; with a
zero correction it contributes exact zeros (fedmnist/scaffold.py has the rest).
"""

import keras
import numpy as np
import tensorflow as tf

from fedmnist.defaults import LEARNING_RATE, OPTIMIZER
from model import compile_model


class ProximalModel(keras.Model):
    """Wraps a model so that training adds μ/2·‖w − w⁰‖² + ⟨w, c − cᵢ⟩ to the compiled loss; shares its variables.

    μ, the anchor w⁰ and the correction c − cᵢ are non-trainable variables,
    assigned before each local training, so one compiled wrapper serves every
    client and round without retracing. With μ = 0 and a zero correction both
    terms contribute exact zeros: training is plain local training.
    """

    def __init__(self, inner):
        super().__init__(name=f"{inner.name}_proximal")
        self.inner = inner
        self.mu = self.add_weight(shape=(), initializer="zeros", trainable=False, name="mu")
        self.anchors = [
            self.add_weight(shape=w.shape, initializer="zeros", trainable=False, name=f"anchor_{i}")
            for i, w in enumerate(inner.trainable_weights)
        ]
        self.corrections = [
            self.add_weight(shape=w.shape, initializer="zeros", trainable=False, name=f"correction_{i}")
            for i, w in enumerate(inner.trainable_weights)
        ]

    def set_anchor(self, anchor_weights, mu, correction=None):
        self.mu.assign(float(mu))
        for variable, value in zip(self.anchors, anchor_weights):
            variable.assign(value)
        for variable in self.corrections:
            variable.assign(np.zeros(variable.shape, np.float32))
        for variable, value in zip(self.corrections, correction or ()):
            variable.assign(value)

    def call(self, inputs, training=False):
        return self.inner(inputs, training=training)

    def proximal_term(self):
        squared = [tf.reduce_sum(tf.square(w - a)) for w, a in zip(self.inner.trainable_weights, self.anchors)]
        return 0.5 * self.mu * tf.add_n(squared)

    def correction_term(self):
        return tf.add_n([tf.reduce_sum(w * c) for w, c in zip(self.inner.trainable_weights, self.corrections)])

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        loss = super().compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training)
        return loss + self.proximal_term() + self.correction_term() if training else loss


class LocalTrainer:
    """Local training with one compiled model per process, reused across clients and rounds."""

    def __init__(self, model, learning_rate=LEARNING_RATE, optimizer=OPTIMIZER):
        if len(model.trainable_weights) != len(model.weights):
            raise ValueError("LocalTrainer expects a model whose weights are all trainable, as build_model()'s are")
        self.model, self.learning_rate = model, learning_rate
        self.proximal = compile_model(ProximalModel(model), learning_rate, optimizer)
        self.proximal.optimizer.build(self.proximal.trainable_variables)
        self.fresh_optimizer_state = [v.numpy() for v in self.proximal.optimizer.variables]

    def train(
        self,
        x,
        y,
        *,
        initial_weights,
        epochs,
        batch_size,
        seed,
        mu=0.0,
        correction=None,
        validation_data=None,
        verbose=1,
    ):
        """Train from `initial_weights` on (x, y); return the Keras History. Weights stay in `self.model`.

        mu > 0 adds FedProx's proximal term anchored at `initial_weights`;
        `correction` (SCAFFOLD's c − cᵢ, one array per weight) is added to every
        gradient. Every call starts from a fresh optimizer and reseeded
        randomness, so the result depends only on the arguments, not on earlier calls.
        """
        if mu < 0:
            raise ValueError(f"mu must be >= 0, got {mu}")
        self.model.set_weights(initial_weights)
        self.proximal.set_anchor(initial_weights, mu, correction)
        for variable, value in zip(self.proximal.optimizer.variables, self.fresh_optimizer_state):
            variable.assign(value)
        reset_random_state(self.model, seed)
        validation = None if validation_data is None else make_dataset(*validation_data, batch_size=256)
        return self.proximal.fit(
            make_dataset(x, y, batch_size, seed=seed, shuffle=True),
            epochs=epochs,
            validation_data=validation,
            shuffle=False,  # the dataset already reshuffles each epoch, with the seed
            verbose=verbose,
        )


def client_seed(seed, round_number, client_id):
    """The local-training seed of one client in one round, drawn from (seed, round, client) alone."""
    return int(np.random.default_rng([seed, round_number, client_id]).integers(2**31 - 1))


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


def train_local(
    model,
    x,
    y,
    *,
    initial_weights,
    epochs,
    batch_size,
    seed,
    mu=0.0,
    learning_rate=LEARNING_RATE,
    validation_data=None,
    verbose=1,
):
    """One-off local training of `model` (see LocalTrainer.train); reuse a LocalTrainer when training many times."""
    return LocalTrainer(model, learning_rate).train(
        x,
        y,
        initial_weights=initial_weights,
        epochs=epochs,
        batch_size=batch_size,
        seed=seed,
        mu=mu,
        validation_data=validation_data,
        verbose=verbose,
    )


def squared_distance(weights_a, weights_b):
    """‖a − b‖² over all arrays, in float64."""
    return float(
        sum(np.sum((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2) for a, b in zip(weights_a, weights_b))
    )


def check_training_parameters(epochs, batch_size, mu):
    """Raise ValueError with a clear message for parameters that cannot train."""
    for name, value in (("EPOCHS", epochs), ("BATCH_SIZE", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}={value!r}: must be a positive integer")
    if isinstance(mu, bool) or not isinstance(mu, (int, float)) or not 0 <= mu < float("inf"):
        raise ValueError(f"MU={mu!r}: must be a finite number >= 0 (0 disables FedProx)")
