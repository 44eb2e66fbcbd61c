"""Tests of `mnas.console`: a command prints its own lines only, on any machine."""

import os
import subprocess
import sys

import pytest
from conftest import REFERENCE

from mnas import console

# Written by the child straight to file descriptor 2, as TensorFlow's native code does.
_NATIVE = [
    b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    b"I0000 00:00:1733000000.123456   12345 port.cc:153] oneDNN custom operations are on.",
    b"E0000 00:00:1796281908.159590    2415 cuda_platform.cc:52] failed call to cuInit: 303",
    b"W0000 00:00:1796281908.159590    2415 tf_tfl_flatbuffer_helpers.cc:365] Ignored format.",
    b"2026-01-01 10:00:00.123456: I tensorflow/core/platform/cpu_feature_guard.cc:182] CPU.",
    b"To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow "
    b"with the appropriate compiler flags.",
]

_CHILD = """
import os, sys
from mnas import console
console.own_lines_only()
for line in {native!r}:
    os.write(2, line + b"\\n")
os.write(2, b"native but not a log line\\n")
print("error: one line", file=sys.stderr)
"""


@pytest.mark.parametrize("line", _NATIVE)
def test_native_log_lines_are_recognised(line):
    assert console.NATIVE_LOG_LINE.match(line)


@pytest.mark.parametrize("line", [b"error: Invalid model file 'x.tflite'", b"Traceback (most",
                                  b"F0000 00:00:1.5 1 check.cc:3] Check failed: a fatal one"])
def test_other_lines_are_kept(line):
    assert not console.NATIVE_LOG_LINE.match(line)


def test_command_stderr_holds_its_own_lines_only():
    result = subprocess.run([sys.executable, "-c", _CHILD.format(native=_NATIVE)],
                            capture_output=True, timeout=60)
    assert result.returncode == 0
    assert sorted(result.stderr.decode().splitlines()) == [
        "error: one line", "native but not a log line"]


def test_tensorflow_start_up_lines_are_kept_off(tmp_path):
    code = ("import os, sys\nfrom mnas import console\nconsole.own_lines_only()\n"
            "import tensorflow as tf\ntf.constant(1.0) + 1.0\nprint('done', file=sys.stderr)\n")
    env = {"PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "0"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120,
                            env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr.decode().splitlines() == ["done"]


def test_profiling_a_tflite_file_does_not_import_tensorflow(tmp_path):
    code = ("import sys\nfrom mnas import profile\nfrom absl import flags\n"
            "profile.define_flags()\nflags.FLAGS(['profile'])\n"
            f"profile.main(['profile', {str(REFERENCE / 'kws_ref_model.tflite')!r}])\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('tensorflow', 'tf_keras', 'keras')))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().splitlines()[-1] == "[]"



def test_native_stderr_is_captured_and_replayed_on_a_bug(capfd):
    with console.native_stderr() as captured:
        os.write(2, b"I0000 converter chatter\n")
    assert captured.text == "I0000 converter chatter\n"
    assert capfd.readouterr().err == ""
    with pytest.raises(ValueError), console.native_stderr(silent_on=ValueError):
        os.write(2, b"explained already\n")
        raise ValueError("one line")
    assert capfd.readouterr().err == ""
    with pytest.raises(ZeroDivisionError), console.native_stderr(silent_on=ValueError):
        os.write(2, b"context for a bug\n")
        1 / 0
    assert "context for a bug" in capfd.readouterr().err
