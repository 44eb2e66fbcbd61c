"""Tests of the `python -m mnas.datasets.generate` command line."""

import subprocess
import sys

import pytest
from absl import flags

from mnas.datasets import generate


def run(*args):
    return subprocess.run([sys.executable, "-m", "mnas.datasets.generate", *args],
                          capture_output=True, text=True, timeout=120)


def test_generates_the_asked_tasks(tmp_path):
    first = run(f"--out={tmp_path}", "--tasks=vww,ad", "--seed=1", "--scale=0.01")
    assert first.returncode == 0, first.stderr
    assert "vww: written to" in first.stdout and "ad: written to" in first.stdout
    assert len(list((tmp_path / "vww" / "person").iterdir())) == 10


def test_rejects_unknown_tasks():
    values = flags.FlagValues()
    generate.define_flags(values)
    with pytest.raises(flags.IllegalFlagValueError, match="--tasks must list names among kws"):
        values(["generate", "--tasks=kws,asr"])
    values(["generate", "--tasks=ad", "--seed=4"])
    assert values.tasks == ["ad"] and values.seed == 4 and values.out == "data/embedded"
