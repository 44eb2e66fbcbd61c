"""The use cases the job runs, one `Task` record each: what the job needs to know of a task.

- `kws`: keyword spotting on MFCCs (Speech Commands layout), accuracy; features standardised
  per coefficient; the search space may take DS-CNN's strided stem.
- `vww`: visual wake words on grayscale or RGB images of `image_size`, accuracy.
- `ad`: anomaly detection as machine-ID classification on log-mels (DCASE2020 task 2 layout),
  ROC AUC of the anomaly scores per machine ID; mixup.

A new use case is one module (its reader and its search space) and one `Task` naming them,
registered with `register`; the job holds no test of a task's name. A task names its reader and
space by import path, resolved when first used: this module imports nothing heavy, so that
settings can be checked before TensorFlow loads.

Example:

>>> from mnas import tasks
>>> tasks.get("ad").metric
'auc'
"""

import dataclasses
import importlib
from collections.abc import Callable

from mnas import errors


def _no_options(config):
    return {}


@dataclasses.dataclass(frozen=True)
class Task:
    """One use case.

    Attributes:
        name: The `--task` name; also the search space's.
        reader: Import path of the reader module, which has `load(data_dir, split, **options)`
            returning a `mnas.datasets.Split` and `training_dataset(split, batch_size, seed,
            augment, **options)` returning a `tf.data.Dataset` (see `mnas.datasets.kws`).
        space: `module:function` building the task's search space from its options.
        metric: `accuracy`, or `auc` (ROC AUC of anomaly scores per machine ID, from the
            negative softmax score of the true ID).
        reader_options: The reader's options from the run's `Config` (e.g. image size).
        space_options: The search space's options from the run's `Config`.
        standardizes: Features can be standardised per coefficient (`--standardize_features`).
        mixes_up: Training mixes examples (`--mixup`), so labels are one-hot.
        strided_stem: The search space takes `--stem_stride=2`.
    """

    name: str
    reader: str
    space: str
    metric: str = "accuracy"
    reader_options: Callable = _no_options
    space_options: Callable = _no_options
    standardizes: bool = False
    mixes_up: bool = False
    strided_stem: bool = False

    def standardized(self, config):
        """Whether this run standardises its features."""
        return self.standardizes and config.standardize_features

    def mixed(self, config):
        """Whether this run trains on mixed examples (one-hot labels)."""
        return self.mixes_up and bool(config.mixup) and config.augment

    def training_options(self, config):
        """Options of `mnas.datasets.training_dataset` for this run."""
        return {"mixup": config.mixup} if self.mixes_up else {}

    def reader_module(self):
        """The reader module, imported."""
        return importlib.import_module(self.reader)

    def search_space(self, **options):
        """The task's search space (a `mnas.search_spaces.SearchSpace`) with `options`."""
        module, function = self.space.split(":")
        return getattr(importlib.import_module(module), function)(**options)


def _image_options(config):
    return {"image_size": config.image_size, "grayscale": config.grayscale}


def _vww_space(config):
    channels = 1 if config.grayscale else 3
    return {"input_shape": (config.image_size, config.image_size, channels)}


def _kws_space(config):
    return {"stem_stride": config.stem_stride} if config.stem_stride != 1 else {}


def _ad_reader(config):
    return {"machine": config.machine} if config.machine else {}


TASKS = {}
NAMES = ()


def register(task):
    """Adds a `Task` (or replaces the one of its name); `--task` then accepts its name."""
    global NAMES
    if not isinstance(task, Task):
        raise TypeError(f"Invalid value for `task`: expected a `mnas.tasks.Task`, received "
                        f"{type(task).__name__}.")
    TASKS[task.name] = task
    NAMES = tuple(TASKS)
    return task


register(Task("kws", "mnas.datasets.kws", "mnas.search_spaces:kws", space_options=_kws_space,
              standardizes=True, strided_stem=True))
register(Task("vww", "mnas.datasets.vww", "mnas.search_spaces:vww",
              reader_options=_image_options, space_options=_vww_space))
register(Task("ad", "mnas.datasets.ad", "mnas.search_spaces:ad", metric="auc",
              reader_options=_ad_reader, mixes_up=True))


def get(name):
    """The `Task` called `name`.

    Raises:
        UnknownNameError: No task has that name.
    """
    if name not in TASKS:
        raise errors.UnknownNameError(
            f"Invalid value for `task`: expected one of {NAMES}, received {name!r}.")
    return TASKS[name]
