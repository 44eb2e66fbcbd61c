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
