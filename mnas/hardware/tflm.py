"""Measurements in the real TFLite Micro interpreter (PyPI `tflite-micro`), on the host.

The interpreter's recording allocator reports the tensor arena it used: the head (activations
planned by TFLite Micro's greedy memory planner) and the tail (persistent allocations). It
writes those figures only to the process's standard error, at the file-descriptor level, so
they are read here by redirecting descriptor 2.

The native interpreter aborts its process, instead of returning an error, on a truncated
flatbuffer and on quantization parameters its kernels assert on (an int8 softmax whose logits
span almost nothing, as in an untrained model): `read_model` checks both first and raises an
`InvalidModelFileError` that says which tensor and which bound.

Example:

>>> from mnas.hardware import tflm
>>> usage = tflm.arena_usage("kws_ref_model.tflite")  # doctest: +SKIP
>>> usage.total_bytes  # doctest: +SKIP
24272
"""

import dataclasses
import os
import re
import sys
import time

import numpy as np

from mnas import console, errors
from mnas.hardware import tflite_file
from mnas.hardware.tflite_file import load_bytes

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


def read_model(model):
    """Returns the bytes of `model` (bytes, or a path), checked to be safe for TFLite Micro.

    The native interpreter neither verifies the flatbuffer nor returns an error for every
    quantization its kernels cannot handle: it aborts the process instead. So the file's
    structure is checked first, then the quantization parameters those kernels assert on
    (`check_kernel_limits`).

    Raises:
        InvalidModelFileError: The file is missing, unreadable, not a TFLite flatbuffer,
            truncated or corrupt (a field points outside the file), or has quantization
            parameters on which TFLite Micro would abort.
    """
    data, name = load_bytes(model)
    check_kernel_limits(tflite_file.parse_model(data, name), name)
    return data


# TFLite Micro's int8 softmax turns beta * input_scale into a fixed-point multiplier with
# kScaledDiffIntegerBits = 5 integer bits (softmax_common.cc, PreprocessSoftmaxScaling) and
# asserts that it exceeds 1 (QuantizeMultiplierGreaterThanOne), or aborts.
_SOFTMAX_MULTIPLIER_SCALE = float(1 << (31 - 5))
# Its int8 ADD rescales the inputs to twice the larger input scale, shifted left by 20 bits,
# and asserts that each multiplier is in (0, 1) (add_common.cc,
# QuantizeMultiplierSmallerThanOneExp), or aborts.
_ADD_LEFT_SHIFT = 20


def softmax_min_input_scale(beta=1.0):
    """The input scale an int8 SOFTMAX needs in TFLite Micro: it must be strictly above this.

    TFLite Micro requires `beta * input_scale * 2**26 > 1`.

    Example:

    >>> softmax_min_input_scale()
    1.4901161193847656e-08
    """
    return 1.0 / (beta * _SOFTMAX_MULTIPLIER_SCALE) if beta > 0 else float("inf")


def check_kernel_limits(info, name="model"):
    """Raises if TFLite Micro's kernels would abort on the quantization of `info`.

    Args:
        info: A `mnas.hardware.tflite_file.ModelInfo`, from `tflite_file.parse_model`.
        name: Label of the model in the error message. Defaults to `"model"`.

    Raises:
        InvalidModelFileError: An int8 SOFTMAX's input scale is too small for TFLite Micro's
            fixed-point softmax (the logits span almost nothing, as in an untrained or
            degenerate model), or an int8 ADD's output scale is too small for its inputs.
    """
    tensors = info.tensors
    for index, op in enumerate(info.operators):
        if not op.inputs or op.inputs[0] < 0 or not op.outputs:
            continue
        x, out = tensors[op.inputs[0]], tensors[op.outputs[0]]
        if op.name == "SOFTMAX" and x.dtype == "int8":
            beta = op.options.get("beta", 0.0)
            scale = x.scale or 0.0
            # The same double arithmetic as TFLite Micro, so the bound is exact.
            if not beta * scale * _SOFTMAX_MULTIPLIER_SCALE > 1.0:
                raise errors.InvalidModelFileError(
                    f"Invalid model file {name!r}: expected the input of SOFTMAX operator "
                    f"{index} (tensor {x.name!r}) to have a scale above "
                    f"{softmax_min_input_scale(beta):.6g} (TFLite Micro's int8 softmax needs "
                    f"beta * scale * 2**26 > 1, beta = {beta:g}), received {scale:.6g}: the "
                    f"logits span almost nothing ({255 * scale:.3g} over the int8 range), as in "
                    f"an untrained or degenerate model, and TFLite Micro would abort the process "
                    f"on it.")
        if op.name == "ADD" and out.dtype == "int8" and len(op.inputs) == 2:
            scales = [tensors[t].scale or 0.0 for t in op.inputs]
            twice_max = 2.0 * max(scales)
            out_scale = out.scale or 0.0
            if min(scales) <= 0.0 or not (
                    out_scale > 0.0 and twice_max / ((1 << _ADD_LEFT_SHIFT) * out_scale) < 1.0):
                raise errors.InvalidModelFileError(
                    f"Invalid model file {name!r}: expected ADD operator {index} (output "
                    f"{out.name!r}) to have positive scales and an output scale above 2**-19 "
                    f"times its larger input scale (TFLite Micro's int8 add), received input "
                    f"scales {scales[0]:.6g} and {scales[1]:.6g} and output scale "
                    f"{out_scale:.6g}: its output spans almost nothing, and TFLite Micro would "
                    f"abort the process on it.")


def _interpreter(data, arena_size=None):
    from tflite_micro.python.tflite_micro import runtime

    return runtime.Interpreter.from_bytes(data, arena_size=arena_size)


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
    interpreter = _interpreter(data, arena_size or host_arena_size(data))
    with console.native_stderr() as captured:
        interpreter.print_allocations()
    text = captured.text
    totals = {m.group(1): int(m.group(2)) for m in _LINE.finditer(text)}
    if set(totals) != {"total", "head", "tail"}:
        raise RuntimeError(f"TFLite Micro printed no arena figures; it printed: {text!r}")
    kinds = {m.group(1): tuple(int(m.group(i)) for i in (2, 3, 4)) for m in _KIND.finditer(text)}
    return ArenaUsage(totals["total"], totals["head"], totals["tail"], kinds)


def host_arena_size(data):
    """An arena any model fits on the host: TFLite Micro's own heuristic (ten times the model
    size), raised to 1 MiB for small models, whose planner needs scratch space."""
    return max(10 * len(data), 1 << 20)


class MicroRunner:
    """Runs a TFLite model in the TFLite Micro interpreter one sample at a time.

    Args:
        model: TFLite flatbuffer bytes, or the path of a `.tflite` file.
        arena_size: Arena size in bytes. Defaults to `host_arena_size`: on the host the arena
            only has to be large enough, and the planner needs scratch space beyond what
            `arena_usage` reports.

    Example:

    >>> runner = MicroRunner("model.tflite")  # doctest: +SKIP
    >>> scores = runner.predict(features)  # float features in, dequantized outputs out
    """

    def __init__(self, model, arena_size=None):
        self.data = read_model(model)
        self._interpreter = _interpreter(self.data, arena_size or host_arena_size(self.data))
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

    def invoke_times_ms(self, repeats=20, warmup=3):
        """Host wall times of `repeats` invocations, after `warmup` untimed ones, in ms."""
        shape = self.input_details["shape"][1:]
        sample = np.zeros(shape, dtype=self.input_details["dtype"])
        for _ in range(warmup):
            self.invoke_raw(sample)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            self.invoke_raw(sample)
            times.append((time.perf_counter() - start) * 1e3)
        return times

    def time_invoke_ms(self, repeats=20, warmup=3):
        """Median host wall time of one invocation, in milliseconds."""
        return float(np.median(self.invoke_times_ms(repeats, warmup)))


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


# The child imports only this module and its light dependencies (`mnas/__init__.py` is lazy:
# no TensorFlow), so it starts in well under a second.
_ISOLATED = """
import json, statistics, sys
from mnas.hardware import tflm
data = sys.stdin.buffer.read()
usage = tflm.arena_usage(data)
repeats = int(sys.argv[1])
times = tflm.MicroRunner(data).invoke_times_ms(repeats=repeats) if repeats else None
print(json.dumps({"total_bytes": usage.total_bytes, "planned_bytes": usage.planned_bytes,
                  "persistent_bytes": usage.persistent_bytes,
                  "host_latency_ms": statistics.median(times) if times else None,
                  "host_latency_min_ms": min(times) if times else None}))
"""


def measure_isolated(model, repeats=20):
    """Measures arena and host latency in a child process, which survives an interpreter abort.

    `read_model` rejects the models on which TFLite Micro is known to abort; this runs the
    interpreter where any other abort costs only the child. The child does not import
    TensorFlow, so it starts in well under a second.

    Args:
        model: TFLite flatbuffer bytes, or the path of a `.tflite` file.
        repeats: Timed invocations (their median and minimum are kept); `0` measures
            the arena only.
            Defaults to `20`.

    Returns:
        A dict with `total_bytes`, `planned_bytes`, `persistent_bytes`, and the median and the
        fastest invocation, `host_latency_ms` and `host_latency_min_ms` (None when `repeats` is
        0).

    Raises:
        InvalidModelFileError: The model is not a complete TFLite flatbuffer, or TFLite Micro
            would abort on its quantization (`check_kernel_limits`).
        RuntimeError: The interpreter failed or aborted on the model.

    Example:

    >>> measure_isolated("kws_ref_model.tflite", repeats=5)["total_bytes"]  # doctest: +SKIP
    24272
    """
    import json
    import subprocess

    data = read_model(model)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [root] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    result = subprocess.run([sys.executable, "-c", _ISOLATED, str(int(repeats))],
                            input=data, capture_output=True, env=env)
    if result.returncode != 0:
        how = (f"was killed by signal {-result.returncode}" if result.returncode < 0
               else f"exited with code {result.returncode}")
        last = result.stderr.decode(errors="replace").strip().splitlines()[-1:]
        raise RuntimeError(f"The TFLite Micro interpreter failed on this model: its process "
                           f"{how}{' (' + last[0] + ')' if last else ''}.")
    return json.loads(result.stdout.decode().strip().splitlines()[-1])
