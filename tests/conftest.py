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
