from pathlib import Path

import numpy as np
import pytest

import mnas  # noqa: F401  (Keras 2 before TensorFlow)
import tf_keras as keras

# The MLPerf Tiny reference models, in the shared folder beside the project's.
REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"


@pytest.fixture(autouse=True)
def seed():
    """Seeds Python, NumPy and TensorFlow for every test."""
    keras.utils.set_random_seed(0)
    keras.backend.clear_session()
    yield
    keras.backend.clear_session()


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def converted(model, rng):
    """The int8 flatbuffer of `model` with trained-like batch-norm statistics and biases.

    Fresh batch norms fold into all-zero biases, which the converter stores once, and a zero
    dense bias is dropped; trained models have distinct biases, one buffer each.
    """
    from mnas import export

    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.set_weights([rng.uniform(0.5, 1.5, w.shape).astype("float32")
                               for w in layer.get_weights()])
        elif isinstance(layer, keras.layers.Dense):
            layer.bias.assign(rng.normal(0.0, 0.1, layer.bias.shape).astype("float32"))
    x = rng.normal(size=(8,) + tuple(model.input_shape[1:])).astype("float32")
    return export.convert_int8(model, x, num_samples=8)
