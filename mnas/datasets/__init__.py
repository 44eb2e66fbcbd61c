"""Datasets of the three MicroNets use cases: readers of the real data, features, and the
embedded synthetic datasets that `make data` generates without any download.

- "kws": keyword spotting, Speech Commands v2 layout, 12 classes, 49x10x1 MFCCs.
- "ad": anomaly detection, DCASE2020 task 2 layout, machine-ID labels, 32x32x1 log-mel windows.
- "vww": visual wake words, `person/` and `non_person/` image folders, HxWx1 or HxWx3 in [0, 1].

Example:
    >>> from mnas import datasets
    >>> train = datasets.load_split("kws", "data/embedded/kws", "train")  # doctest: +SKIP
    >>> batches = datasets.training_dataset("kws", train, batch_size=100, seed=0)  # doctest: +SKIP
"""

from mnas.datasets import ad, kws, pipeline, vww  # noqa: F401 (the readers, as attributes)
from mnas.datasets.ad import anomaly_auc, roc_auc
from mnas.datasets.embedded import generate_embedded
from mnas.datasets.pipeline import over_epochs
from mnas.datasets.split import SPLITS, Split, moments, standardize, subset
from mnas import tasks

TASKS = tasks.NAMES  # The built-in tasks; `mnas.tasks.register` adds more.


def _module(task):
    return tasks.get(task).reader_module()


def steps_per_epoch(split, batch_size):
    """Batches in one epoch of `split` (what `fit` needs for data made in `over_epochs`)."""
    return pipeline.steps_per_epoch(len(split), batch_size)


def load_split(task, data_dir, split, **options):
    """Reads one split of a task's dataset as model-ready features (cached on disk).

    Args:
        task: "kws", "ad" or "vww".
        data_dir: the dataset folder, real or embedded (e.g. "data/embedded/kws").
        split: "train", "validation" or "test".
        **options: the task reader's options (`kws.load`, `ad.load`, `vww.load`), e.g.
            `cache_dir` (default `cache.default_cache_dir()`, outside the dataset),
            `max_per_class`, feature settings such as `image_size=50, grayscale=True`.

    Returns:
        A `Split`.

    Raises:
        DatasetError: `data_dir` is missing or not in the task's layout.
        UnknownNameError: `task` is not a registered task (`mnas.tasks`).
    """
    return _module(task).load(data_dir, split, **options)


def training_dataset(task, split, batch_size, seed, augment=True, **options):
    """A `tf.data.Dataset` of shuffled, augmented (x, y) training batches.

    Streamed from the split's sharded feature cache (or from RAM with `in_memory=True`),
    augmented afresh every epoch. KWS: time shift, background noise and SpecAugment; AD:
    optional mixup (`mixup=0.3`, labels become one-hot); VWW: flips and crops. Inside
    `pipeline.over_epochs(e, E)` the dataset holds epochs e .. E-1, each a function of (seed,
    epoch) only, so a resumed run reads the same batches (pass `steps_per_epoch` to `fit`).

    Args:
        task: "kws", "ad" or "vww".
        split: a `Split` of that task (usually the train split).
        batch_size: examples per batch.
        seed: seed of shuffling and augmentation.
        augment: False for plain shuffled batches.
        **options: `in_memory` (read the cache into RAM first), and the task's augmentation
            options (see `kws.training_dataset`, `ad.training_dataset`,
            `vww.training_dataset`).

    Returns:
        A `tf.data.Dataset` that covers the split once per iteration, or once per epoch of
        the enclosing `over_epochs` block.
    """
    module = _module(task)
    if split.task != task:
        raise ValueError(
            f"Invalid value for `split`: expected a {task!r} split, received a {split.task!r} "
            f"split."
        )
    return module.training_dataset(split, batch_size, seed, augment=augment, **options)


__all__ = [
    "SPLITS",
    "Split",
    "TASKS",
    "anomaly_auc",
    "generate_embedded",
    "load_split",
    "moments",
    "over_epochs",
    "roc_auc",
    "standardize",
    "steps_per_epoch",
    "subset",
    "training_dataset",
]
