"""What mnas's commands print: their own lines only.

TensorFlow's native code writes start-up lines ("All log messages before absl::InitializeLog()
...", oneDNN, cudart stubs, CPU features) straight to file descriptor 2, on some machines and
not others, and before `TF_CPP_MIN_LOG_LEVEL` is read. A command calls `own_lines_only()`
before anything imports TensorFlow: from then on file descriptor 2 is a pipe whose lines are
forwarded to the real standard error unless they have the form of a native log line, and
Python's `sys.stderr` writes to the real standard error directly.
"""

import atexit
import contextlib
import io
import os
import re
import sys
import tempfile
import threading

# glog/absl lines ("I0000 00:00:1733.5 123 port.cc:153] ..."), TensorFlow's older C++ log lines
# ("2026-01-01 10:00:00.000000: I tensorflow/...]"), absl's pre-init warning, and the line that
# continues the CPU-feature notice.
NATIVE_LOG_LINE = re.compile(
    rb"^(?:[IWE]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ \S+:\d+\] "
    rb"|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWE] \S+:\d+\] "
    rb"|WARNING: All log messages before absl::InitializeLog\(\) is called"
    rb"|To enable the following instructions: .* rebuild TensorFlow)")

_installed = []


def _pump(source, real):
    with os.fdopen(source, "rb") as lines:
        for line in lines:
            if NATIVE_LOG_LINE.match(line):
                continue
            try:
                os.write(real, line)
            except OSError:
                return


def own_lines_only():
    """Keeps native log lines off this process's standard error, for the rest of the process.

    Only for commands (`python -m mnas.*`): a library must not take over a user's file
    descriptors. Child processes inherit the filtered descriptor. Calling it again does nothing.
    """
    if _installed:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    real = os.dup(2)
    source, sink = os.pipe()
    os.dup2(sink, 2)
    os.close(sink)
    sys.stderr = io.TextIOWrapper(io.FileIO(os.dup(real), "w"), line_buffering=True,
                                  errors="backslashreplace")
    pump = threading.Thread(target=_pump, args=(source, real), daemon=True)
    pump.start()
    _installed.append(pump)

    def restore():
        # Putting the real descriptor back closes the pipe's last writer: the pump forwards
        # what is left and ends.
        os.dup2(real, 2)
        pump.join(timeout=5)

    atexit.register(restore)


class Captured:
    """What native code wrote to file descriptor 2 inside a `native_stderr` block."""

    text = ""


_capture_lock = threading.Lock()


@contextlib.contextmanager
def native_stderr(silent_on=()):
    """Sends what is written to file descriptor 2 in the block to a `Captured`, not the terminal.

    Native code (the TFLite Micro interpreter's allocation report, TensorFlow's C++ logs, the
    converter's progress lines) writes to the descriptor itself, which no log level silences.

    If an exception escapes the block, the captured text is written back to standard error
    as context, unless the exception is one of `silent_on`.

    Args:
        silent_on: Exception classes that escape without the captured text (errors already
            explained in one line). Defaults to none.

    Yields:
        A `Captured`, whose `text` is set when the block ends.

    Example:

    >>> with native_stderr() as captured:
    ...     _ = os.write(2, b"native line\\n")
    >>> captured.text
    'native line\\n'
    """
    captured = Captured()
    with _capture_lock, tempfile.TemporaryFile() as f:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(f.fileno(), 2)
        try:
            yield captured
        except silent_on:
            raise
        except BaseException:
            _restore(saved)
            sys.stderr.write(_read(f))
            raise
        finally:
            _restore(saved)
            os.close(saved)
            captured.text = _read(f)


def _restore(saved):
    sys.stderr.flush()
    os.dup2(saved, 2)


def _read(f):
    f.seek(0)
    return f.read().decode(errors="replace")
