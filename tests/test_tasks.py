"""Tests of mnas.tasks: one registration makes a use case."""

import sys

import pytest

from mnas import datasets, errors, runconfig, search_spaces, tasks
from mnas.datasets import kws

SPACE_MODULE = '''
from mnas import search_spaces

def tiny_space(max_width=32):
    return search_spaces.kws(max_width=max_width, num_blocks=1)
'''


@pytest.fixture
def registered(tmp_path, monkeypatch):
    """A task `tiny` in a module of its own (the KWS reader, a one-block space)."""
    (tmp_path / "tiny_task.py").write_text(SPACE_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(tasks, "TASKS", dict(tasks.TASKS))
    monkeypatch.setattr(tasks, "NAMES", tasks.NAMES)
    yield tasks.register(tasks.Task("tiny", "mnas.datasets.kws", "tiny_task:tiny_space",
                                    space_options=lambda config: {"max_width": 16}))
    sys.modules.pop("tiny_task", None)


def test_one_registration_gives_the_job_its_reader_space_and_settings(registered):
    assert "tiny" in tasks.NAMES and tasks.get("tiny") is registered
    assert datasets._module("tiny") is kws
    space = search_spaces.get("tiny", **registered.space_options(None))
    assert space.max_width == 16 and len(space.strides) == 1
    runconfig.check(runconfig.Config(task="tiny", data_dir="data/embedded/kws", out_dir="runs/t"))


def test_the_built_in_tasks_resolve_their_reader_and_space():
    for task in tasks.TASKS.values():
        assert hasattr(task.reader_module(), "load")
        assert hasattr(task.reader_module(), "training_dataset")
        assert search_spaces.get(task.name).name == task.name


def test_unknown_tasks_and_bad_registrations_are_refused():
    with pytest.raises(errors.UnknownNameError, match="expected one of .*received 'speech'"):
        tasks.get("speech")
    with pytest.raises(TypeError, match="expected a `mnas.tasks.Task`, received dict"):
        tasks.register({"name": "x"})
