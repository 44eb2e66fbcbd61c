"""Tests of mnas.reproducible: a fit resumed at any epoch repeats the uninterrupted one."""

import os
import subprocess
import sys

from mnas import reproducible

# Deterministic ops and layer generators are process-wide switches: the fits run in a child.
_CHILD = """
import sys
import numpy as np
import mnas
import tf_keras as keras
from mnas import checkpoints, reproducible
from mnas.datasets import pipeline

reproducible.make_deterministic()
folder, first, last = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = np.random.default_rng(0)
x = rng.normal(size=(60, 6)).astype("float32")
y = rng.integers(0, 3, 60)
keras.utils.set_random_seed(reproducible.stage_seed(0, "train"))
model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(16, activation="relu"),
                          keras.layers.Dropout(0.5), keras.layers.Dense(3)])
model.compile(keras.optimizers.Adam(0.01),
              keras.losses.SparseCategoricalCrossentropy(from_logits=True))
data = pipeline.batches(x, y, 16, seed=0, epochs=(first, last))
model.fit(data, epochs=last, initial_epoch=first, steps_per_epoch=pipeline.steps_per_epoch(60, 16),
          verbose=0, callbacks=[reproducible.EpochRandomness(0, "train"),
                                checkpoints.EpochCheckpoint(folder)])
np.save(folder + "/weights.npy", np.concatenate([w.ravel() for w in model.get_weights()]))
"""


def fit(folder, first, last):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    subprocess.run([sys.executable, "-c", _CHILD, str(folder), str(first), str(last)],
                   check=True, env=env, capture_output=True, timeout=300)
    import numpy as np

    return np.load(folder / "weights.npy")


def test_a_fit_resumed_in_a_new_process_ends_with_the_same_weights(tmp_path):
    import numpy as np

    whole = fit(tmp_path / "whole", 0, 3)
    (tmp_path / "resumed").mkdir()
    fit(tmp_path / "resumed", 0, 1)
    resumed = fit(tmp_path / "resumed", 1, 3)
    np.testing.assert_array_equal(resumed, whole)


def test_stage_seeds_differ_by_stage_and_seed():
    seeds = {reproducible.stage_seed(s, stage) for s in (0, 1) for stage in ("search", "train")}
    assert len(seeds) == 4 and all(0 <= s < 2**31 for s in seeds)
    assert reproducible.stage_seed(0, "train") == reproducible.stage_seed(0, "train")
