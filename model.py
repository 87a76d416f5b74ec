"""The one CNN shared by every client and the server (390,410 parameters).

This module knows nothing about training: every other script imports the
architecture from here, so all parties build exactly the same model.
"""

import logging

import keras
from keras import layers

from fedmnist.defaults import LEARNING_RATE, OPTIMIZER
from fedmnist.files import atomic_path
from fedmnist.seeds import int_seeds

INPUT_SHAPE = (28, 28, 1)
NUM_CLASSES = 10
# Run 16 optimizer steps per call into TensorFlow: the same steps in the same order, without Keras's
# per-step Python overhead (about 9 ms a step on a 2-core CPU; see benchmarks/training.py).
STEPS_PER_EXECUTION = 16


def build_model(seed=None):
    """Return the uncompiled CNN; `seed` fixes the initial weights (each layer's initializer seed drawn from the
    "initial_weights" stream, so no two seeds share a layer's draw) and the dropout masks."""
    initializer_seeds = iter(int_seeds(seed, "initial_weights", 5) if seed is not None else [None] * 5)

    def kernel_init():
        return keras.initializers.GlorotUniform(seed=next(initializer_seeds))

    return keras.Sequential(
        [
            keras.Input(shape=INPUT_SHAPE),
            layers.Conv2D(32, 3, padding="same", activation="relu", kernel_initializer=kernel_init()),
            layers.MaxPooling2D(),
            layers.Conv2D(64, 3, padding="same", activation="relu", kernel_initializer=kernel_init()),
            layers.MaxPooling2D(),
            layers.Conv2D(128, 3, padding="same", activation="relu", kernel_initializer=kernel_init()),
            layers.MaxPooling2D(),
            layers.Flatten(),
            layers.Dense(256, activation="relu", kernel_initializer=kernel_init()),
            layers.Dropout(0.5, seed=seed),
            layers.Dense(NUM_CLASSES, activation="softmax", kernel_initializer=kernel_init()),
        ],
        name="mnist_cnn",
    )


OPTIMIZERS = {"adam": keras.optimizers.Adam, "sgd": keras.optimizers.SGD}


def compile_model(model, learning_rate=LEARNING_RATE, optimizer=OPTIMIZER):
    """Compile with sparse categorical cross-entropy and `optimizer`: Adam (the course's choice) or plain SGD."""
    model.compile(
        optimizer=OPTIMIZERS[optimizer](learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        steps_per_execution=STEPS_PER_EXECUTION,
    )
    return model


def weight_shapes():
    """Shapes of `build_model().get_weights()`, in order: what every client update must match."""
    return [tuple(w.shape) for w in build_model().weights]


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
