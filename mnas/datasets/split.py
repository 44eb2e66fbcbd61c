"""The `Split` container and helpers the dataset readers share."""

import dataclasses
import hashlib
from pathlib import Path
from typing import Callable, Optional

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
        augmenter: KWS train only: a function `(copies, seed) -> float32 (copies, N, H, W, C)`
            giving features of waveform-augmented copies, used by `training_dataset`.
    """

    task: str
    name: str
    x: np.ndarray
    y: np.ndarray
    labels: tuple
    clip: Optional[np.ndarray] = None
    anomaly: Optional[np.ndarray] = None
    files: tuple = ()
    augmenter: Optional[Callable] = dataclasses.field(default=None, repr=False)

    def __len__(self):
        return len(self.y)

    def __repr__(self):
        return (
            f"Split(task={self.task!r}, name={self.name!r}, x={self.x.shape}, "
            f"classes={len(self.labels)})"
        )


def subset(split, indices):
    """The examples `indices` of `split`, as a `Split` of the same task and name.

    Per-example fields (`clip`, `anomaly`, and `files` when it has one entry per example)
    and the augmenter's copies are cut the same way.
    """
    indices = np.asarray(indices)
    per_example = len(split.files) == len(split)
    augmenter = split.augmenter
    return dataclasses.replace(
        split, x=split.x[indices], y=split.y[indices],
        clip=None if split.clip is None else split.clip[indices],
        anomaly=None if split.anomaly is None else split.anomaly[indices],
        files=tuple(split.files[i] for i in indices) if per_example else split.files,
        augmenter=None if augmenter is None else (
            lambda copies, seed: augmenter(copies, seed)[:, indices]))


def standardize(split, mean, std):
    """`split` with its features as (x - mean) / std, the augmenter's copies too.

    `mean` and `std` broadcast against one example (e.g. shape (1, W, 1): one value per MFCC
    coefficient), so an int8 input scale resolves every coefficient alike, not only the
    widest-ranging one.
    """
    mean, std = np.asarray(mean, np.float32), np.asarray(std, np.float32)
    augmenter = split.augmenter
    return dataclasses.replace(
        split, x=(split.x - mean) / std,
        augmenter=None if augmenter is None else (
            lambda copies, seed: (augmenter(copies, seed) - mean) / std))


def check_split(split):
    if split not in SPLITS:
        raise ValueError(
            f"Invalid value for `split`: expected one of {SPLITS}, received {split!r}."
        )


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
