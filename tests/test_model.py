import numpy as np

from fedmnist.training import seeded_model
from model import build_model


def test_parameter_count_and_layer_shapes():
    model = build_model()
    assert model.count_params() == 390_410
    shapes = [tuple(layer.output.shape[1:]) for layer in model.layers]
    assert shapes == [
        (28, 28, 32),
        (14, 14, 32),
        (14, 14, 64),
        (7, 7, 64),
        (7, 7, 128),
        (3, 3, 128),
        (1152,),
        (256,),
        (256,),
        (10,),
    ]
    assert [type(layer).__name__ for layer in model.layers] == [
        "Conv2D",
        "MaxPooling2D",
        "Conv2D",
        "MaxPooling2D",
        "Conv2D",
        "MaxPooling2D",
        "Flatten",
        "Dense",
        "Dropout",
        "Dense",
    ]
    assert model.layers[-1].activation.__name__ == "softmax"
    assert model.layers[-2].rate == 0.5


def test_seed_fixes_initial_weights():
    a, b, c = seeded_model(1).get_weights(), seeded_model(1).get_weights(), seeded_model(2).get_weights()
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], c[0])
