"""The data side of a run of the job: its splits read (through the feature cache) and
standardised as the task wants, its training batches per epoch, labels and loss.
"""

import json
import os
import subprocess
import sys
import time

import numpy as np
import tf_keras as keras

from mnas import datasets, distribute, tasks
from mnas.datasets import pipeline


class RunData:
    """A run's data, from its `Config`: read once, kept for every stage."""

    def __init__(self, config):
        self.config = config
        self.task = tasks.get(config.task)
        self.data = None
        self.standardization = None  # Set by `load_data` when the features are standardised.

    def load_data(self):
        if self.data is not None:
            return self.data
        config = self.config
        options = self.task.reader_options(config)
        options.update({k: getattr(config, k) for k in ("cache_dir", "max_per_class")
                        if getattr(config, k) is not None})
        started = time.time()
        fill_feature_cache(config.task, config.data_dir, options)
        splits = self._standardized(
            {name: datasets.load_split(config.task, config.data_dir, name, **options)
             for name in datasets.SPLITS})
        print(f"data: {config.data_dir}: " + ", ".join(
            f"{name} {len(split)}" for name, split in splits.items())
            + f" examples of {splits['train'].x.shape[1:]} ({time.time() - started:.1f} s)")
        self.data = splits
        return splits

    def _standardized(self, splits):
        """KWS: each MFCC coefficient standardised with the training split's statistics.

        Coefficient 0 spans ~20x the range of the last ones: with the raw features one int8
        input scale leaves the last coefficients a few steps. The statistics go to
        `features.json` and `model_data.h` with the model: the firmware applies them before
        quantizing the input.
        """
        if not self.task.standardized(self.config):
            return splits
        # Over the cached features a chunk at a time: the training split may not fit in RAM.
        mean, std = datasets.moments(splits["train"].x, axis=(0, 1))
        std = std + 1e-6
        self.standardization = {"axis": "coefficient", "mean": mean.ravel().tolist(),
                                "std": std.ravel().tolist()}
        return {name: datasets.standardize(split, mean, std) for name, split in splits.items()}

    def _training_batches(self, train, first, last):
        """Epochs `first .. last - 1` of training batches, each fixed by (seed, epoch)."""
        config = self.config
        with pipeline.over_epochs(first, last):
            batches = datasets.training_dataset(config.task, train, config.batch_size,
                                                config.seed, augment=config.augment,
                                                **self.task.training_options(config))
        return distribute.shard_by_data(batches)

    def _validation(self, splits):
        return np.asarray(splits["validation"].x), self._labels(splits["validation"])

    def _labels(self, split):
        """Labels in the form the loss takes: one-hot when mixup mixes them."""
        if self.task.mixed(self.config):
            return keras.utils.to_categorical(split.y, len(split.labels))
        return split.y

    def _loss(self):
        return ("categorical_crossentropy" if self.task.mixed(self.config)
                else "sparse_categorical_crossentropy")

    def _steps_per_epoch(self, train=None):
        train = self.load_data()["train"] if train is None else train
        return pipeline.steps_per_epoch(len(train), self.config.batch_size)


def calibration(x, samples):
    """The training examples that calibrate the int8 ranges: the draw `export.convert_int8`
    makes from the whole set, read from the (possibly memory-mapped) features alone."""
    if len(x) <= samples:
        return np.asarray(x)
    return x[np.sort(np.random.default_rng(0).choice(len(x), samples, replace=False))]


def fill_feature_cache(task, data_dir, options):
    """Computes features missing from the feature cache in a child process.

    A run whose features were computed in its own process was seen to train to other
    figures than one that read them from the cache (its batches and initial weights being
    bit-identical), so a resumed run could differ from an uninterrupted one. Computed in a
    child, the features always reach the run from the cache. A failure is left to the run's
    own reading, which reports it.
    """
    code = ("import sys, json\nfrom mnas import datasets\n"
            "task, data_dir, options = json.loads(sys.argv[1])\n"
            "try:\n"
            "    for name in datasets.SPLITS:\n"
            "        datasets.load_split(task, data_dir, name, **options)\n"
            "except Exception:\n"
            "    sys.exit(1)\n")
    # The child's progress lines reach standard error; its warnings are left to the run,
    # which reads the skipped-file counts from the cache.
    subprocess.run([sys.executable, "-c", code, json.dumps([task, data_dir, options])],
                   stdout=subprocess.DEVNULL, env=dict(os.environ, PYTHONWARNINGS="ignore"),
                   check=False)
