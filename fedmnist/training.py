"""Local training, the one function that the notebook, the simulation and any Flower client call.

FedProx (Li et al., 2020) is a client-side method: each client minimises its
local loss plus μ/2·‖w − w⁰‖², the squared distance to the global weights w⁰ it
started from. With μ = 0 this is plain local training (FedAvg's client step).

SCAFFOLD (Karimireddy et al., 2020) corrects every local gradient g by c − cᵢ,
the server's control variate minus the client's. Adding the linear term
⟨w, c − cᵢ⟩ to the loss does exactly that, whichever optimizer follows; with a
zero correction it contributes exact zeros (fedmnist/scaffold.py has the rest).

DP-SGD (Abadi et al., 2016) protects each example of the client instead: every
example's gradient is clipped to norm C, the batch's sum gets N(0, (σ·C)²)
noise and is divided by the batch size B before the optimizer's step. The
per-example gradients come from one batched forward pass and the Jacobian of the
per-example losses, vectorised by TensorFlow (the model has no layer that mixes
the examples of a batch). Its ε is fedmnist/privacy.py's dp_sgd_epsilon.
"""

import logging

import keras
import numpy as np
import tensorflow as tf

from fedmnist.defaults import LEARNING_RATE, MAX_BATCH_SIZE, MAX_EPOCHS, OPTIMIZER
from fedmnist.files import atomic_path
from fedmnist.restricted_pickle import printable
from fedmnist.seeds import int_seeds
from model import NUM_INITIALIZED_LAYERS, build_model

# Run 16 optimizer steps per call into TensorFlow: the same steps in the same order, without Keras's
# per-step Python overhead (about 9 ms a step on a 2-core CPU; see benchmarks/training.py).
STEPS_PER_EXECUTION = 16
OPTIMIZERS = {"adam": keras.optimizers.Adam, "sgd": keras.optimizers.SGD}


def seeded_model(seed=None):
    """model.py's CNN with its initial weights and dropout masks fixed by `seed`: each layer's initializer seed
    drawn from the "initial_weights" stream, so no two seeds share a layer's draw. None: unseeded."""
    if seed is None:
        return build_model()
    return build_model(int_seeds(seed, "initial_weights", NUM_INITIALIZED_LAYERS), seed)


def compile_model(model, learning_rate=LEARNING_RATE, optimizer=OPTIMIZER):
    """Compile with sparse categorical cross-entropy and `optimizer`: Adam (the course's choice) or plain SGD."""
    model.compile(
        optimizer=OPTIMIZERS[optimizer](learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        steps_per_execution=STEPS_PER_EXECUTION,
    )
    return model


def save_model(model, path):
    """Save `model` to `path` (.h5 or .keras) atomically, so a crash never leaves half a file.

    The course fixed `.h5` names on purpose, so Keras's "HDF5 is legacy" warning is muted here.
    """
    absl_logger = logging.getLogger("absl")
    previous_level = absl_logger.level
    absl_logger.setLevel(logging.ERROR)
    try:
        with atomic_path(path) as tmp:
            keras.saving.save_model(model, tmp)
    finally:
        absl_logger.setLevel(previous_level)


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


class PrivateModel(keras.Model):
    """Wraps a model so that each training step is DP-SGD's; shares its variables.

    The clipping norm C, the noise multiplier σ and the batch size B are
    non-trainable variables, assigned before each local training.
    """

    def __init__(self, inner):
        super().__init__(name=f"{inner.name}_private")
        self.inner = inner
        self.clip = self.add_weight(shape=(), initializer="ones", trainable=False, name="clip")
        self.noise_multiplier = self.add_weight(shape=(), initializer="zeros", trainable=False, name="noise")
        self.batch_size = self.add_weight(shape=(), initializer="ones", trainable=False, name="batch_size")
        self.noise_seed = keras.random.SeedGenerator(0)

    def call(self, inputs, training=False):
        return self.inner(inputs, training=training)

    def private_gradients(self, x, y):
        """(the clipped, noised mean gradients, the per-example losses) of one batch."""
        variables = self.inner.trainable_variables
        with tf.GradientTape() as tape:
            losses = keras.losses.sparse_categorical_crossentropy(y, self(x, training=True))
        jacobians = tape.jacobian(losses, variables)  # per variable: (examples, *shape)
        squared = tf.add_n([tf.reduce_sum(tf.reshape(tf.square(j), [tf.shape(j)[0], -1]), axis=1) for j in jacobians])
        scale = tf.minimum(1.0, self.clip / tf.maximum(tf.sqrt(squared), 1e-12))
        gradients = []
        for jacobian, variable in zip(jacobians, variables):
            noise = keras.random.normal(variable.shape, stddev=self.noise_multiplier * self.clip, seed=self.noise_seed)
            gradients.append((tf.tensordot(scale, jacobian, axes=1) + noise) / self.batch_size)
        return gradients, losses

    def train_step(self, data):
        x, y = data
        gradients, losses = self.private_gradients(x, y)
        self.optimizer.apply_gradients(zip(gradients, self.inner.trainable_variables))
        return {"loss": tf.reduce_mean(losses)}


class LocalTrainer:
    """Local training with one compiled model per process, reused across clients and rounds."""

    def __init__(self, model, learning_rate=LEARNING_RATE, optimizer=OPTIMIZER):
        if len(model.trainable_weights) != len(model.weights):
            raise ValueError("LocalTrainer expects a model whose weights are all trainable, as build_model()'s are")
        self.model, self.learning_rate = model, learning_rate
        self.proximal = compile_model(ProximalModel(model), learning_rate, optimizer)
        self.proximal.optimizer.build(self.proximal.trainable_variables)
        self.fresh_optimizer_state = [v.numpy() for v in self.proximal.optimizer.variables]
        self.optimizer_name, self.private = optimizer, None  # the DP-SGD wrapper, compiled when first asked for

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
        dp_sgd=None,
        validation_data=None,
        verbose=1,
    ):
        """Train from `initial_weights` on (x, y); return the Keras History. Weights stay in `self.model`.

        mu > 0 adds FedProx's proximal term anchored at `initial_weights`;
        `correction` (SCAFFOLD's c − cᵢ, one array per weight) is added to every
        gradient; `dp_sgd` = (C, σ) trains with DP-SGD instead (without either).
        Every call starts from a fresh optimizer and reseeded randomness, so the
        result depends only on the arguments, not on earlier calls.
        """
        if mu < 0:
            raise ValueError(f"mu must be >= 0, got {mu}")
        if dp_sgd is not None:
            if mu or correction is not None:
                raise ValueError("DP-SGD trains without FedProx's or SCAFFOLD's terms")
            return self.train_private(x, y, initial_weights, epochs, batch_size, seed, dp_sgd, validation_data, verbose)
        self.model.set_weights(initial_weights)
        self.proximal.set_anchor(initial_weights, mu, correction)
        for variable, value in zip(self.proximal.optimizer.variables, self.fresh_optimizer_state):
            variable.assign(value)
        reset_random_state(self.model, seed)
        return fit_epochs(self.proximal, x, y, epoch_orders(seed, len(x), epochs), batch_size, validation_data, verbose)

    def train_private(self, x, y, initial_weights, epochs, batch_size, seed, dp_sgd, validation_data, verbose):
        """DP-SGD from `initial_weights` with `dp_sgd` = (clipping norm C, noise multiplier σ)."""
        clip, noise_multiplier = dp_sgd
        if not (clip > 0 and noise_multiplier >= 0):
            raise ValueError(f"DP-SGD needs C > 0 and σ >= 0, got C = {clip}, σ = {noise_multiplier}")
        if self.private is None:
            self.private = PrivateModel(self.model)  # its train_step reports the loss itself: no compiled metrics
            self.private.compile(
                optimizer=OPTIMIZERS[self.optimizer_name](self.learning_rate), steps_per_execution=STEPS_PER_EXECUTION
            )
            self.private.optimizer.build(self.model.trainable_variables)
            self.fresh_private_state = [v.numpy() for v in self.private.optimizer.variables]
        self.model.set_weights(initial_weights)
        for variable, value in zip(self.private.optimizer.variables, self.fresh_private_state):
            variable.assign(value)
        self.private.clip.assign(float(clip))
        self.private.noise_multiplier.assign(float(noise_multiplier))
        self.private.batch_size.assign(float(batch_size))
        reset_random_state(self.model, seed)
        self.private.noise_seed.state.assign(np.array([seed, 1], dtype=self.private.noise_seed.state.dtype))
        return fit_epochs(self.private, x, y, epoch_orders(seed, len(x), epochs), batch_size, validation_data, verbose)


def epoch_orders(seed, num_examples, epochs):
    """The order in which local training visits a client's examples: one seeded permutation per epoch.

    The per-client trainer and the batched one both read it, so a client sees the
    same batches whichever trains it.
    """
    rng = np.random.default_rng(seed)
    return [rng.permutation(num_examples) for _ in range(epochs)]


def epoch_dataset(x, y, order, batch_size):
    """One epoch of (x, y) in `order`, batched (the last batch may be smaller) and prefetched."""
    images, labels = tf.constant(x), tf.constant(y)
    batches = tf.data.Dataset.from_tensor_slices(order).batch(batch_size)
    return batches.map(lambda i: (tf.gather(images, i), tf.gather(labels, i))).prefetch(tf.data.AUTOTUNE)


def make_dataset(x, y, batch_size):
    """A tf.data pipeline over in-memory arrays, in order: batched, prefetched (for evaluation)."""
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size).prefetch(tf.data.AUTOTUNE)


class _ProgressOfAllEpochs(keras.callbacks.ProgbarLogger):
    """Keras's progress bar, numbering one fit call's epoch out of the whole training's."""

    def __init__(self, epochs):
        super().__init__()
        self.total_epochs = epochs

    def set_params(self, params):
        super().set_params({**params, "epochs": self.total_epochs})


def fit_epochs(model, x, y, orders, batch_size, validation_data, verbose):
    """Train `model` one epoch per order (one `fit` call each: each epoch has its own order); one History."""
    validation = None if validation_data is None else make_dataset(*validation_data, batch_size=256)
    history = keras.callbacks.History()
    history.history, history.epoch = {}, []
    progress = [_ProgressOfAllEpochs(len(orders))] if verbose else []
    for epoch, order in enumerate(orders):
        done = model.fit(
            epoch_dataset(x, y, order, batch_size),
            initial_epoch=epoch,
            epochs=epoch + 1,
            validation_data=validation,
            callbacks=progress,
            shuffle=False,  # each epoch's order is `order`
            verbose=verbose,
        )
        history.epoch += done.epoch
        for key, values in done.history.items():
            history.history.setdefault(key, []).extend(values)
    history.set_params({**done.params, "epochs": len(orders)})
    history.set_model(model)
    return history


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


def integer_problem(name, value, high):
    """A message if `value` is not an integer in 1..high (`name` as the user wrote the setting), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 1 <= value <= high:
        return f"{name} {printable(repr(value), 39)}: must be an integer in 1..{high:,}"
    return None


def check_training_parameters(epochs, batch_size, mu):
    """Raise ValueError with a clear message for parameters that cannot train."""
    for name, value, high in (("EPOCHS", epochs, MAX_EPOCHS), ("BATCH_SIZE", batch_size, MAX_BATCH_SIZE)):
        if problem := integer_problem(f"{name} =", value, high):
            raise ValueError(problem)
    if isinstance(mu, bool) or not isinstance(mu, (int, float)) or not 0 <= mu < float("inf"):
        raise ValueError(f"MU={mu!r}: must be a finite number >= 0 (0 disables FedProx)")
