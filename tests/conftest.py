from pathlib import Path

import numpy as np
import pytest

import mnas  # noqa: F401  (Keras 2 before TensorFlow)
import tf_keras as keras

# The MLPerf Tiny reference models, in the shared folder beside the project's.
REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"


@pytest.fixture(autouse=True, scope="session")
def feature_cache(tmp_path_factory):
    """Keeps the tests' feature caches (theirs and their commands') out of the user's."""
    mp = pytest.MonkeyPatch()
    mp.setenv("MNAS_CACHE_DIR", str(tmp_path_factory.mktemp("feature_cache")))
    yield
    mp.undo()


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


@pytest.fixture(scope="session")
def ad_data(tmp_path_factory):
    """A tenth of the embedded anomaly-detection data, generated once per test session."""
    from mnas import datasets

    root = tmp_path_factory.mktemp("embedded")
    return str(datasets.generate_embedded(root, seed=0, tasks=["ad"], scale=0.1,
                                          verbose=False)["ad"])


@pytest.fixture(scope="session")
def tiny_ad_flags(ad_data):
    """`mnas.train` flags of a tiny anomaly-detection run with a one-epoch black-box search."""
    return ["--task=ad", f"--data_dir={ad_data}", "--max_width=16", "--num_blocks=2",
            "--width_steps=4", "--batch_size=32", "--train_epochs=1", "--quantization=ptq",
            "--calibration_samples=16", "--verbose=0", "--trial_epochs=1"]
