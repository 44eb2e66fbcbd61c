"""The `Split` container and helpers the dataset readers share."""

import dataclasses
import hashlib
from pathlib import Path
from typing import Any, Optional

import numpy as np

from mnas.errors import DatasetError

SPLITS = ("train", "validation", "test")


@dataclasses.dataclass
class Split:
    """One split of a dataset, with features ready for a model.

    Attributes:
        task: "kws", "ad" or "vww".
        name: "train", "validation" or "test".
        x: float32 features (N, H, W, C).
        y: int32 labels (N,).
        labels: class names in label order.
        clip: AD only: the index of each window's source clip in `files`.
        anomaly: AD only: True for windows of anomalous clips.
        files: the source file of each example (AD: of each clip; KWS silence: the noise file).
        entry: the `cache.Entry` the features are streamed from (arrays "x" as stored, "y").
        extras: what the task's training pipeline needs besides the examples (KWS: feature
            settings, augmentation, noise spectra).

    `x` may be a `cache.Sharded` array read by memory map: index it, or `np.asarray(x)` to
    read it all into memory.
    """

    task: str
    name: str
    x: Any
    y: np.ndarray
    labels: tuple
    clip: Optional[np.ndarray] = None
    anomaly: Optional[np.ndarray] = None
    files: tuple = ()
    entry: Any = dataclasses.field(default=None, repr=False)
    extras: dict = dataclasses.field(default_factory=dict, repr=False)

    def __len__(self):
        return len(self.y)

    def __repr__(self):
        return (
            f"Split(task={self.task!r}, name={self.name!r}, x={self.x.shape}, "
            f"classes={len(self.labels)})"
        )


def check_split(split):
    if split not in SPLITS:
        raise ValueError(
            f"Invalid value for `split`: expected one of {SPLITS}, received {split!r}."
        )


def check_max_per_class(value):
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                              or value < 1):
        raise ValueError(
            f"Invalid value for `max_per_class`: expected a positive integer or None, received "
            f"{value!r}.")


def unit_hash(text):
    """A number in [0, 1) fixed by `text`, to assign files to splits stably."""
    return int(hashlib.sha1(text.encode()).hexdigest()[:12], 16) / 16**12


def carve(name, validation_share, test_share=0.0):
    """The split a file of a folder without split lists belongs to, from a hash of its name."""
    u = unit_hash(name)
    if u < test_share:
        return "test"
    if u < test_share + validation_share:
        return "validation"
    return "train"


def require_dir(data_dir, task_title, layout, real_source):
    """Returns `data_dir` as a Path, or raises `DatasetError` describing what belongs there."""
    path = Path(data_dir)
    if not path.is_dir():
        raise DatasetError(
            f"Missing {task_title} dataset directory: expected a folder at {str(path)!r} "
            f"laid out as {layout}; received a path that "
            f"{'is not a folder' if path.exists() else 'does not exist'}. Get the real dataset "
            f"from {real_source}, or run `make data` (python -m mnas.datasets.generate) for the "
            f"embedded synthetic one under data/embedded/."
        )
    return path


def as_arrays(features, labels, shape):
    """Stacks per-example features and labels into the float32 / int32 arrays of a Split."""
    if not len(features):
        return np.zeros((0,) + tuple(shape), np.float32), np.zeros((0,), np.int32)
    return np.asarray(np.stack(features), np.float32), np.asarray(labels, np.int32)
