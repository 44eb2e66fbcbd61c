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
        rows: the rows of `entry` the split holds, in order (`subset`), or None for all.
        standardization: (mean, std) that `x` is standardised with (`standardize`), for the
            training pipeline to apply to what it streams from `entry`; None when `x` is
            as stored.

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
    rows: Optional[np.ndarray] = dataclasses.field(default=None, repr=False)
    standardization: Optional[tuple] = dataclasses.field(default=None, repr=False)

    def __len__(self):
        return len(self.y)

    def __repr__(self):
        return (
            f"Split(task={self.task!r}, name={self.name!r}, x={self.x.shape}, "
            f"classes={len(self.labels)})"
        )


def subset(split, indices):
    """The examples `indices` of `split`, as a `Split` of the same task and name.

    Per-example fields (`clip`, `anomaly`, and `files` when it has one entry per example) are
    cut the same way; features in the cache stay there (`x` and the rows the training
    pipeline streams are views of the same entry).
    """
    indices = np.asarray(indices, np.int64)
    per_example = len(split.files) == len(split)
    rows = None
    if split.entry is not None:
        rows = indices if split.rows is None else split.rows[indices]
    return dataclasses.replace(
        split, x=split.x.take(indices) if hasattr(split.x, "take") else split.x[indices],
        y=split.y[indices], clip=None if split.clip is None else split.clip[indices],
        anomaly=None if split.anomaly is None else split.anomaly[indices],
        files=tuple(split.files[i] for i in indices) if per_example else split.files,
        rows=rows)


def standardize(split, mean, std):
    """`split` with its features as (x - mean) / std, in what its training pipeline streams
    too.

    `mean` and `std` broadcast against one example (e.g. shape (1, W, 1): one value per MFCC
    coefficient), so an int8 input scale resolves every coefficient alike, not only the
    widest-ranging one.
    """
    if split.standardization is not None:
        raise ValueError(
            f"Invalid value for `split`: expected features as stored, received the {split.name!r} "
            f"split standardised already.")
    mean, std = np.asarray(mean, np.float32), np.asarray(std, np.float32)

    def scale(x):
        return ((np.asarray(x, np.float32) - mean) / std).astype(np.float32)

    x = split.x
    return dataclasses.replace(split, x=x.map(scale) if hasattr(x, "map") else scale(x),
                               standardization=(mean, std))


def moments(x, axis=(0, 1), chunk=8192):
    """Mean and standard deviation of `x` over `axis` (which holds the examples' axis 0),
    read `chunk` examples at a time, so a memory-mapped array is never read whole.

    Returns:
        (mean, std) as float32 arrays with the reduced axes kept, the first dropped (shape of
        one example, e.g. (1, W, 1) for `axis=(0, 1)`).
    """
    axis = tuple(axis)
    if 0 not in axis:
        raise ValueError(f"Invalid value for `axis`: expected axes with 0, received {axis}.")
    total = total_sq = None
    count = 0
    for start in range(0, len(x), chunk):
        part = np.asarray(x[start:start + chunk], np.float64)
        sums = part.sum(axis=axis, keepdims=True)
        squares = (part * part).sum(axis=axis, keepdims=True)
        total = sums if total is None else total + sums
        total_sq = squares if total_sq is None else total_sq + squares
        count += part.size // sums.size
    if not count:
        raise ValueError("Invalid value for `x`: expected at least one example, received none.")
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean * mean, 0.0))
    return mean[0].astype(np.float32), std[0].astype(np.float32)


def stored(split, name="x"):
    """Array `name` of the split's cache entry as stored (not standardised), its rows only."""
    array = split.entry.array(name)
    return array if split.rows is None else array.take(split.rows)


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
