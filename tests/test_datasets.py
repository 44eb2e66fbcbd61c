"""Tests of the mnas.datasets entry points: dispatch by task and argument errors."""

import numpy as np
import pytest
from PIL import Image

from mnas import datasets
from mnas.errors import DatasetError, UnknownNameError


@pytest.fixture
def images(tmp_path):
    for folder in ("person", "non_person"):
        (tmp_path / folder).mkdir()
        for n in range(10):
            Image.new("RGB", (12, 12), (n * 20, 0, 0)).save(tmp_path / folder / f"{n}.png")
    return tmp_path


def test_tasks():
    assert datasets.TASKS == ("kws", "vww", "ad")


def test_load_split_dispatches_to_the_task_reader(images):
    split = datasets.load_split("vww", images, "train", image_size=16, validation_share=0,
                                test_share=0)
    assert isinstance(split, datasets.Split) and split.task == "vww" and split.name == "train"
    assert split.x.shape == (20, 16, 16, 3) and len(split) == 20
    assert "x=(20, 16, 16, 3)" in repr(split)


def test_unknown_task_and_missing_directories(tmp_path):
    with pytest.raises(UnknownNameError, match="expected one of \\('kws', 'vww', 'ad'\\), "
                                               "received 'asr'"):
        datasets.load_split("asr", tmp_path, "train")
    for task in datasets.TASKS:
        with pytest.raises(DatasetError, match="make data"):
            datasets.load_split(task, tmp_path / "missing", "train")
    (tmp_path / "file").write_text("x")
    with pytest.raises(DatasetError, match="received a path that is not a folder"):
        datasets.load_split("kws", tmp_path / "file", "train")


def test_training_dataset_checks_the_task(images):
    split = datasets.load_split("vww", images, "train", image_size=16, validation_share=0,
                                test_share=0)
    with pytest.raises(ValueError, match="expected a 'kws' split, received a 'vww' split"):
        datasets.training_dataset("kws", split, 4, seed=0)
    x, y = next(iter(datasets.training_dataset("vww", split, 4, seed=0)))
    assert x.shape == (4, 16, 16, 3) and y.dtype == np.int32


def test_batch_size_must_be_positive(images):
    split = datasets.load_split("vww", images, "train", image_size=16)
    with pytest.raises(ValueError, match="Invalid value for `batch_size`.*received 0"):
        datasets.training_dataset("vww", split, 0, seed=0)
