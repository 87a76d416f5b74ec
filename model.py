"""The one CNN shared by every client and the server (390,410 parameters): its architecture and nothing else.

Every party builds the model from here, so all build exactly the same one. It imports Keras and nothing of the
project: how it is compiled and saved lives with local training (fedmnist/training.py), and where its seeds come
from with the project's one seeding helper (fedmnist.training.seeded_model).
"""

import keras
from keras import layers

INPUT_SHAPE = (28, 28, 1)
NUM_CLASSES = 10
NUM_INITIALIZED_LAYERS = 5  # the layers with a kernel initializer: one seed each


def build_model(layer_seeds=None, dropout_seed=None):
    """Return the uncompiled CNN; `layer_seeds` (one per initialized layer) fix the initial weights and
    `dropout_seed` the dropout masks. None: Keras's own randomness."""
    initializer_seeds = iter(layer_seeds if layer_seeds is not None else [None] * NUM_INITIALIZED_LAYERS)

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
            layers.Dropout(0.5, seed=dropout_seed),
            layers.Dense(NUM_CLASSES, activation="softmax", kernel_initializer=kernel_init()),
        ],
        name="mnist_cnn",
    )


def weight_shapes():
    """Shapes of `build_model().get_weights()`, in order: what every client update must match."""
    return [tuple(w.shape) for w in build_model().weights]
