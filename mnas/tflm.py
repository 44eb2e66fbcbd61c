"""Measurements in the real TFLite Micro interpreter (PyPI `tflite-micro`), on the host.

The interpreter's recording allocator reports the tensor arena it used: the head (activations
planned by TFLite Micro's greedy memory planner) and the tail (persistent allocations). It
writes those figures only to the process's standard error, at the file-descriptor level, so
they are read here by redirecting descriptor 2.

Example:

>>> from mnas import tflm
>>> usage = tflm.arena_usage("kws_ref_model.tflite")  # doctest: +SKIP
>>> usage.total_bytes  # doctest: +SKIP
24272
"""

import dataclasses
import os
import re
import sys
import tempfile
import threading
import time

import numpy as np

from mnas import errors

_lock = threading.Lock()
_LINE = re.compile(r"Arena allocation (total|head|tail) (\d+) bytes")
_KIND = re.compile(
    r"'([^']+)' used (\d+) bytes with alignment overhead \(requested (\d+) bytes for (\d+)")


@dataclasses.dataclass(frozen=True)
class ArenaUsage:
    """What TFLite Micro's recording allocator reports for one model.

    Attributes:
        total_bytes: Arena size the model needs (head + tail).
        planned_bytes: The head: activations and scratch buffers placed by the memory planner.
        persistent_bytes: The tail: allocations that live as long as the interpreter.
        by_kind: Persistent allocations per kind: name -> (used bytes, requested bytes, count).
    """

    total_bytes: int
    planned_bytes: int
    persistent_bytes: int
    by_kind: dict


def load_bytes(model):
    """Returns `(data, name)` for flatbuffer bytes or a file path, unchecked.

    Raises:
        InvalidModelFileError: The file is missing or unreadable.
    """
    if isinstance(model, (bytes, bytearray)):
        return bytes(model), "model"
    name = os.fspath(model)
    try:
        with open(name, "rb") as f:
            return f.read(), name
    except OSError as e:
        raise errors.InvalidModelFileError(
            f"Cannot read model file {name!r}: {e.strerror}.") from None


def read_model(model):
    """Returns the bytes of `model` (bytes, or a path), checked to look like a TFLite file.

    Raises:
        InvalidModelFileError: The file is missing, unreadable, not a TFLite flatbuffer, or
            truncated or corrupt (a field points outside the file).
    """
    from mnas import estimate

    data, name = load_bytes(model)

    # A full structural check: the native interpreter does not verify the flatbuffer, and a
    # truncated or corrupt file would crash the process instead of raising.
    estimate.parse_model(data, name, check_operators=False)
    return data


def _interpreter(data, arena_size=None):
    from tflite_micro.python.tflite_micro import runtime

    return runtime.Interpreter.from_bytes(data, arena_size=arena_size)


def _capture_stderr(fn):
    """Runs fn() and returns what it wrote to file descriptor 2."""
    with _lock, tempfile.TemporaryFile() as f:
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            os.dup2(f.fileno(), 2)
            fn()
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
        f.seek(0)
        return f.read().decode(errors="replace")


def arena_usage(model, arena_size=None):
    """Measures the tensor arena TFLite Micro allocates for `model`.

    Args:
        model: TFLite flatbuffer bytes, or the path of a `.tflite` file.
        arena_size: Arena to offer the interpreter. Defaults to TFLite Micro's own heuristic
            (ten times the model size), raised to 1 MiB for small models.

    Returns:
        An `ArenaUsage`.
    """
    data = read_model(model)
    if arena_size is None:
        arena_size = max(10 * len(data), 1 << 20)
    interpreter = _interpreter(data, arena_size)
    text = _capture_stderr(interpreter.print_allocations)
    totals = {m.group(1): int(m.group(2)) for m in _LINE.finditer(text)}
    if set(totals) != {"total", "head", "tail"}:
        raise RuntimeError(f"TFLite Micro printed no arena figures; it printed: {text!r}")
    kinds = {m.group(1): tuple(int(m.group(i)) for i in (2, 3, 4)) for m in _KIND.finditer(text)}
    return ArenaUsage(totals["total"], totals["head"], totals["tail"], kinds)


class MicroRunner:
    """Runs a TFLite model in the TFLite Micro interpreter one sample at a time.

    Args:
        model: TFLite flatbuffer bytes, or the path of a `.tflite` file.
        arena_size: Arena size in bytes. Defaults to the size `arena_usage` measures plus 1 KiB.

    Example:

    >>> runner = MicroRunner("model.tflite")  # doctest: +SKIP
    >>> scores = runner.predict(features)  # float features in, dequantized outputs out
    """

    def __init__(self, model, arena_size=None):
        self.data = read_model(model)
        if arena_size is None:
            arena_size = arena_usage(self.data).total_bytes + 1024
        self._interpreter = _interpreter(self.data, arena_size)
        self.input_details = self._interpreter.get_input_details(0)
        self.output_details = self._interpreter.get_output_details(0)

    def invoke_raw(self, sample):
        """Runs one sample already in the input's dtype; returns the raw output."""
        sample = np.asarray(sample, dtype=self.input_details["dtype"])
        self._interpreter.set_input(sample.reshape(self.input_details["shape"]), 0)
        self._interpreter.invoke()
        return np.array(self._interpreter.get_output(0))

    def quantize(self, x):
        """Quantizes float inputs with the model's input scale and zero point."""
        return quantize(x, self.input_details)

    def dequantize(self, y):
        """Dequantizes raw outputs with the model's output scale and zero point."""
        return dequantize(y, self.output_details)

    def predict_raw(self, samples):
        """Runs a batch of samples in the input's dtype; returns stacked raw outputs."""
        return np.stack([self.invoke_raw(s)[0] for s in samples])

    def predict(self, x):
        """Runs a batch of float inputs; returns float outputs."""
        return self.dequantize(self.predict_raw(self.quantize(x)))

    def time_invoke_ms(self, repeats=20, warmup=3):
        """Median host wall time of one invocation, in milliseconds."""
        shape = self.input_details["shape"][1:]
        sample = np.zeros(shape, dtype=self.input_details["dtype"])
        for _ in range(warmup):
            self.invoke_raw(sample)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            self.invoke_raw(sample)
            times.append(time.perf_counter() - start)
        return float(np.median(times) * 1e3)


def _qparams(details):
    q = details["quantization_parameters"]
    scale = float(q["scales"][0]) if len(q["scales"]) else 0.0
    zero = int(q["zero_points"][0]) if len(q["zero_points"]) else 0
    return scale, zero


def quantize(x, details):
    """Float -> the tensor's integer dtype, with its scale and zero point (identity for floats)."""
    dtype = details["dtype"]
    if not np.issubdtype(dtype, np.integer):
        return np.asarray(x, dtype=dtype)
    scale, zero = _qparams(details)
    info = np.iinfo(dtype)
    q = np.round(np.asarray(x, dtype=np.float64) / scale) + zero
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize(y, details):
    """The tensor's integer dtype -> float (identity for floats)."""
    if not np.issubdtype(details["dtype"], np.integer):
        return np.asarray(y, dtype=np.float32)
    scale, zero = _qparams(details)
    return (np.asarray(y, dtype=np.float32) - zero) * scale
