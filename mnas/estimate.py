"""Exact resource estimates for TFLite Micro, without running the interpreter.

From a `.tflite` flatbuffer (`estimate_tflite`) or from a plain Keras model before conversion
(`estimate_keras`), this module computes what TFLite Micro will need on a device:

- the flatbuffer's size in bytes (the model's share of flash);
- the tensor arena: a replica of TFLite Micro's greedy memory planner over the activations'
  lifetimes in execution order (the head of the arena), plus the persistent allocations the
  interpreter and its kernels make per tensor, per operator and per channel (the tail);
- the ops per operator (2 per multiply-accumulate).

The persistent figures are those of the host build of TFLite Micro that PyPI `tflite-micro`
ships (64-bit pointers, reference kernels), against which they are tested; a 32-bit
microcontroller build needs somewhat less (its pointers are half as wide).

Example:

>>> import mnas
>>> from mnas import estimate
>>> est = estimate.estimate_tflite("kws_ref_model.tflite")  # doctest: +SKIP
>>> est.arena_bytes, est.tflite_bytes  # doctest: +SKIP
(24272, 53936)
"""

import dataclasses
import struct

import numpy as np

from mnas import errors

# TFLite Micro aligns every planned buffer (MicroArenaBufferAlignment()).
ARENA_ALIGNMENT = 16


# ---------------------------------------------------------------------------------------------
# Flatbuffer reading. Every read is bounds-checked, so a truncated or corrupt file is reported
# as an InvalidModelFileError here instead of crashing the native interpreter later.
# ---------------------------------------------------------------------------------------------
class _Corrupt(Exception):
    pass


class _Buf:
    """A flatbuffer with bounds-checked reads."""

    def __init__(self, data):
        self.data = data
        self.size = len(data)

    def _read(self, fmt, pos):
        n = struct.calcsize(fmt)
        if pos < 0 or pos + n > self.size:
            raise _Corrupt(f"a read of {n} bytes at offset {pos} is outside the file")
        return struct.unpack_from(fmt, self.data, pos)[0]

    def table(self, pos):
        vtable = pos - self._read("<i", pos)
        vsize = self._read("<H", vtable)
        if vsize < 4 or vsize % 2:
            raise _Corrupt(f"bad vtable size {vsize} at offset {vtable}")
        self._read("<H", vtable + vsize - 2)
        return _Table(self, pos, vtable, vsize)

    def vector(self, pos):
        """Returns (start, length) of the vector whose offset field is at `pos`."""
        start = pos + self._read("<I", pos)
        length = self._read("<I", start)
        return start + 4, length


class _Table:
    def __init__(self, buf, pos, vtable, vsize):
        self.buf, self.pos, self.vtable, self.vsize = buf, pos, vtable, vsize

    def _field(self, index):
        slot = 4 + 2 * index
        if slot >= self.vsize:
            return 0
        return self.buf._read("<H", self.vtable + slot)

    def scalar(self, index, fmt, default=0):
        off = self._field(index)
        return default if off == 0 else self.buf._read(fmt, self.pos + off)

    def table(self, index):
        off = self._field(index)
        if off == 0:
            return None
        at = self.pos + off
        return self.buf.table(at + self.buf._read("<I", at))

    def vector(self, index, fmt=None):
        """A vector of scalars (fmt) as a tuple, or of tables when fmt is None; None if absent."""
        off = self._field(index)
        if off == 0:
            return None
        start, length = self.buf.vector(self.pos + off)
        if fmt is None:
            if start + 4 * length > self.buf.size:
                raise _Corrupt(f"a vector of {length} tables at offset {start} overruns the file")
            return [self.buf.table(start + 4 * i + self.buf._read("<I", start + 4 * i))
                    for i in range(length)]
        n = struct.calcsize(fmt)
        if start + n * length > self.buf.size:
            raise _Corrupt(f"a vector of {length} items at offset {start} overruns the file")
        return struct.unpack_from(f"<{length}{fmt}", self.buf.data, start)

    def vector_span(self, index):
        """(start, length) of a byte vector, or None."""
        off = self._field(index)
        if off == 0:
            return None
        start, length = self.buf.vector(self.pos + off)
        if start + length > self.buf.size:
            raise _Corrupt(f"a vector of {length} bytes at offset {start} overruns the file")
        return start, length

    def string(self, index):
        span = self.vector_span(index)
        return "" if span is None else self.buf.data[span[0]:span[0] + span[1]].decode(
            "utf-8", errors="replace")


# TensorType -> bytes per element (schema.fbs). INT4 is packed two per byte.
_DTYPE_BYTES = {0: 4, 1: 2, 2: 4, 3: 1, 4: 8, 6: 1, 7: 2, 8: 8, 9: 1, 10: 8, 11: 16, 12: 8,
                15: 4, 16: 2, 17: 0.5}
_DTYPE_NAMES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 6: "bool",
                7: "int16", 9: "int8", 10: "float64", 12: "uint64", 15: "uint32", 16: "uint16",
                17: "int4"}

# BuiltinOperator codes (schema.fbs) of the operators mnas estimates.
OPERATORS = {
    0: "ADD", 1: "AVERAGE_POOL_2D", 2: "CONCATENATION", 3: "CONV_2D", 4: "DEPTHWISE_CONV_2D",
    6: "DEQUANTIZE", 9: "FULLY_CONNECTED", 14: "LOGISTIC", 17: "MAX_POOL_2D", 18: "MUL",
    19: "RELU", 21: "RELU6", 22: "RESHAPE", 25: "SOFTMAX", 34: "PAD", 40: "MEAN",
    114: "QUANTIZE",
}
# Field index and format of each option in the builtin-options tables used here (schema.fbs).
_CONV_OPTIONS = {"padding": (0, "<b"), "stride_w": (1, "<i"), "stride_h": (2, "<i")}
_POOL_OPTIONS = dict(_CONV_OPTIONS, filter_w=(3, "<i"), filter_h=(4, "<i"))
_SOFTMAX_OPTIONS = {"beta": (0, "<f")}


@dataclasses.dataclass
class TensorInfo:
    """One tensor of a TFLite subgraph."""

    name: str
    shape: tuple
    dtype: str
    nbytes: int
    is_constant: bool
    is_variable: bool
    channels: int  # Number of quantization scales (1 per tensor, C per channel, 0 none).
    scale: float = None  # The first quantization scale, as TFLite Micro reads it, or None.


@dataclasses.dataclass
class OperatorInfo:
    """One operator of a TFLite subgraph."""

    name: str
    inputs: tuple
    outputs: tuple
    options: dict


@dataclasses.dataclass
class ModelInfo:
    """The parts of a TFLite model that the estimates need (its first subgraph)."""

    tensors: list
    operators: list
    inputs: tuple
    outputs: tuple
    num_subgraphs: int
    tflite_bytes: int


def _tensor_bytes(shape, dtype):
    n = int(np.prod(shape)) if len(shape) else 1
    return int(np.ceil(n * _DTYPE_BYTES.get(dtype, 0)))


def _parse(data):
    buf = _Buf(data)
    model = buf.table(buf._read("<I", 0))
    codes = []
    for code in model.vector(1) or []:
        codes.append(max(code.scalar(0, "<b"), code.scalar(3, "<i")))
        code.string(1)
    buffers = []
    for b in model.vector(4) or []:
        span = b.vector_span(0)
        offset, size = b.scalar(1, "<Q"), b.scalar(2, "<Q")
        if offset > 1 and offset + size > buf.size:
            raise _Corrupt(f"a buffer of {size} bytes at offset {offset} overruns the file")
        buffers.append(span[1] if span else (size if offset > 1 else 0))
    subgraphs = model.vector(2) or []
    if not subgraphs:
        raise _Corrupt("it has no subgraph")
    for meta in model.vector(6) or []:
        meta.string(0)
        if meta.scalar(1, "<I") >= len(buffers):
            raise _Corrupt("a metadata entry names a buffer that does not exist")
    graphs = [_parse_subgraph(g, codes, buffers) for g in subgraphs]
    tensors, operators, inputs, outputs = graphs[0]
    return ModelInfo(tensors, operators, inputs, outputs, len(subgraphs), len(data))


def _parse_subgraph(graph, codes, buffers):
    tensors = []
    for t in graph.vector(0) or []:
        shape = t.vector(0, "i") or ()
        dtype = t.scalar(1, "<b")
        buffer = t.scalar(2, "<I")
        if buffer >= len(buffers):
            raise _Corrupt(f"tensor {len(tensors)} names buffer {buffer} of {len(buffers)}")
        if any(d < 0 for d in shape):
            raise _Corrupt(f"tensor {len(tensors)} has a negative dimension {shape}")
        quant = t.table(4)
        channels, scale = 0, None
        if quant is not None:
            scales = quant.vector(2, "f")
            zeros = quant.vector(3, "q")
            if scales and zeros:
                channels, scale = len(scales), scales[0]
        tensors.append(TensorInfo(
            name=t.string(3), shape=tuple(shape), dtype=_DTYPE_NAMES.get(dtype, dtype),
            nbytes=_tensor_bytes(shape, dtype), is_constant=buffers[buffer] > 0,
            is_variable=bool(t.scalar(5, "<B")), channels=channels, scale=scale))
    n = len(tensors)

    def indices(values, what, allow_missing=False):
        for v in values or ():
            if not (-1 if allow_missing else 0) <= v < n:
                raise _Corrupt(f"{what} names tensor {v} of {n}")
        return tuple(values or ())

    operators = []
    for op in graph.vector(3) or []:
        index = op.scalar(0, "<I")
        if index >= len(codes):
            raise _Corrupt(f"an operator names operator code {index} of {len(codes)}")
        code = codes[index]
        name = OPERATORS.get(code, code)
        options = {}
        table = op.table(4)
        fields = {"CONV_2D": _CONV_OPTIONS, "DEPTHWISE_CONV_2D": _CONV_OPTIONS,
                  "AVERAGE_POOL_2D": _POOL_OPTIONS, "MAX_POOL_2D": _POOL_OPTIONS,
                  "SOFTMAX": _SOFTMAX_OPTIONS}.get(name, {})
        if table is not None:
            options = {k: table.scalar(i, fmt) for k, (i, fmt) in fields.items()}
        operators.append(OperatorInfo(
            name=name, inputs=indices(op.vector(1, "i"), name, allow_missing=True),
            outputs=indices(op.vector(2, "i"), name), options=options))
        indices(op.vector(8, "i"), name)
    return (tensors, operators, indices(graph.vector(1, "i"), "the subgraph's inputs"),
            indices(graph.vector(2, "i"), "the subgraph's outputs"))


def read_model_info(model, check_operators=True):
    """Parses and checks a TFLite flatbuffer.

    Args:
        model: TFLite flatbuffer bytes, or the path of a `.tflite` file.
        check_operators: Whether to require that every operator and tensor type has an
            estimate. Defaults to `True`; `False` checks the file's structure only.

    Returns:
        A `ModelInfo` of the model's first subgraph.

    Raises:
        InvalidModelFileError: The file is missing, not a TFLite flatbuffer, or truncated or
            corrupt (a field points outside the file).
        UnknownOperatorError: The model holds an operator or tensor type with no estimate.
    """
    from mnas import tflm  # Not at the top: tflm imports this module to check files.

    data, name = tflm.load_bytes(model)
    return parse_model(data, name, check_operators)


def parse_model(data, name="model", check_operators=True):
    """Parses and checks TFLite flatbuffer bytes; `name` labels errors. See `read_model_info`."""
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise errors.InvalidModelFileError(
            f"Invalid model file {name!r}: expected a TFLite flatbuffer (identifier 'TFL3'), "
            f"received {len(data)} bytes without it.")
    try:
        info = _parse(data)
    except (_Corrupt, struct.error) as e:
        raise errors.InvalidModelFileError(
            f"Invalid model file {name!r}: expected a complete TFLite flatbuffer, received "
            f"{len(data)} bytes that are truncated or corrupt ({e}).") from None
    if check_operators:
        for op in info.operators:
            if not isinstance(op.name, str):
                raise errors.UnknownOperatorError(
                    f"Unsupported operator in {name!r}: expected one of "
                    f"{sorted(OPERATORS.values())}, received builtin operator code {op.name}.")
        for t in info.tensors:
            if not isinstance(t.dtype, str):
                raise errors.UnknownOperatorError(
                    f"Unsupported tensor type in {name!r}: expected one of "
                    f"{sorted(_DTYPE_NAMES.values())}, received type code {t.dtype}.")
    return info


# ---------------------------------------------------------------------------------------------
# The arena head: TFLite Micro's greedy memory planner (greedy_memory_planner.cc) over the
# lifetimes that micro_allocation_info.cc assigns.
# ---------------------------------------------------------------------------------------------
def _align(n, alignment=ARENA_ALIGNMENT):
    return (n + alignment - 1) // alignment * alignment


def greedy_plan(buffers):
    """TFLite Micro's greedy memory plan.

    Args:
        buffers: (size, first_time_used, last_time_used) per buffer, in the order TFLite Micro
            adds them (tensors by index, then scratch buffers by request).

    Returns:
        (offsets, arena bytes): each buffer's offset and the size of the plan.

    Example:

    >>> greedy_plan([(32, 0, 1), (16, 1, 2), (32, 2, 3)])
    ([0, 32, 0], 48)
    """
    if not buffers:
        return [], 0
    # Online buffers go into the sort array from its tail, then a stable descending sort: among
    # equal sizes, the buffer added last is placed first.
    order = sorted(reversed(range(len(buffers))), key=lambda i: -buffers[i][0])
    offsets = [None] * len(buffers)
    placed = []  # (offset, id), kept in offset order.
    for n, i in enumerate(order):
        size, first, last = buffers[i]
        offset = 0
        if n:
            for other_offset, j in placed:
                _, other_first, other_last = buffers[j]
                if other_first > last or first > other_last:
                    continue
                if other_offset - offset >= size:
                    break
                offset = max(offset, other_offset + buffers[j][0])
        offsets[i] = offset
        at = len(placed)
        for k, (other_offset, _) in enumerate(placed):
            if other_offset > offset:
                at = k
                break
        placed.insert(at, (offset, i))
    return offsets, max(o + b[0] for o, b in zip(offsets, buffers))


def _scratch_bytes(model, op):
    """Scratch buffers an operator's Prepare requests from the planner (reference kernels)."""
    if op.name == "MEAN" and model.tensors[op.inputs[0]].dtype in ("int8", "int16", "uint8"):
        return [4 * int(np.prod(model.tensors[op.outputs[0]].shape))]
    return []


def plan_activations(model):
    """Plans the arena head of `model` (a `ModelInfo`) as TFLite Micro does.

    Returns:
        (buffers, offsets, head bytes) where buffers are (size, first, last, tensor index or
        None for a scratch buffer).
    """
    n = len(model.tensors)
    first, last = [-1] * n, [-1] * n
    for t in list(model.inputs) + list(model.outputs):
        first[t] = last[t] = 0
    scratch = []
    for step, op in enumerate(model.operators, start=1):
        for t in op.outputs:
            first[t] = last[t] = step
        for t in op.inputs:
            if t >= 0:
                last[t] = step
        for t in op.outputs:
            last[t] = step
        scratch += [(size, step, step, None) for size in _scratch_bytes(model, op)]
    for t in model.outputs:
        last[t] = len(model.operators)
    buffers = [(_align(t.nbytes), first[i], last[i], i) for i, t in enumerate(model.tensors)
               if not t.is_constant and not t.is_variable and t.nbytes]
    buffers += [(_align(size), a, b, None) for size, a, b, _ in scratch]
    offsets, head = greedy_plan([b[:3] for b in buffers])
    return buffers, offsets, head


# ---------------------------------------------------------------------------------------------
# The arena tail: what TFLite Micro allocates for the life of the interpreter, in the order it
# does (each allocation is aligned down from the end of the arena, so order matters).
# ---------------------------------------------------------------------------------------------
# The interpreter's own objects (allocators, memory planner, context) before the model's.
_FIXED_TAIL = 452
_EVAL_TENSOR = 24  # TfLiteEvalTensor
_NODE_AND_REGISTRATION = 64
_TFLITE_TENSOR = 64  # TfLiteTensor (static-memory build), one per model input and output.
_AFFINE_QUANTIZATION = 24  # TfLiteAffineQuantization
# Builtin options parsed from the flatbuffer (builtin_op_data.h structs): (bytes, alignment),
# as this build allocates them. FULLY_CONNECTED's are 8-aligned: with 4, the tail came out 16
# bytes short on models whose FULLY_CONNECTED options start 4 bytes off an 8-byte boundary.
_BUILTIN_DATA = {
    "CONV_2D": (28, 4), "DEPTHWISE_CONV_2D": (28, 4), "FULLY_CONNECTED": (32, 8),
    "AVERAGE_POOL_2D": (40, 4), "MAX_POOL_2D": (40, 4), "MEAN": (1, 1), "SOFTMAX": (4, 4),
    "RESHAPE": (36, 4), "ADD": (8, 4), "MUL": (4, 4), "CONCATENATION": (8, 4),
}
# The OpData each reference kernel allocates in Init.
_KERNEL_DATA = {
    "CONV_2D": 80, "DEPTHWISE_CONV_2D": 80, "FULLY_CONNECTED": 72, "AVERAGE_POOL_2D": 32,
    "MAX_POOL_2D": 32, "MEAN": 44, "SOFTMAX": 80, "RELU": 28, "RELU6": 8, "LOGISTIC": 16,
    "PAD": 56, "ADD": 60, "MUL": 36, "CONCATENATION": 80, "QUANTIZE": 32, "DEQUANTIZE": 32,
}


def _per_channel_arrays(model, op):
    """Output channels for which Prepare allocates a multiplier and a shift (int32 each)."""
    if op.name not in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
        return 0
    weights = model.tensors[op.inputs[1]]
    if op.name == "FULLY_CONNECTED":
        return weights.shape[0] if weights.channels > 1 else 0
    return weights.shape[-1] if op.name == "DEPTHWISE_CONV_2D" else weights.shape[0]


def persistent_allocations(model):
    """The arena tail's allocations for `model` (a `ModelInfo`), in TFLite Micro's order.

    Returns:
        A list of (what, bytes, alignment).
    """
    allocs = [("interpreter", _FIXED_TAIL, 4), ("builtin data allocator", 16, 8),
              ("subgraph allocations", 16 * model.num_subgraphs, 8),
              ("eval tensors", _EVAL_TENSOR * len(model.tensors), 8),
              ("nodes and registrations", _NODE_AND_REGISTRATION * len(model.operators), 8)]
    for op in model.operators:
        if op.name in _BUILTIN_DATA:
            allocs.append((f"{op.name} options", *_BUILTIN_DATA[op.name]))
    for op in model.operators:
        if _KERNEL_DATA.get(op.name):
            allocs.append((f"{op.name} op data", _KERNEL_DATA[op.name], ARENA_ALIGNMENT))
    for op in model.operators:
        channels = _per_channel_arrays(model, op)
        allocs += [(f"{op.name} per-channel {what}", 4 * channels, ARENA_ALIGNMENT)
                   for what in ("multipliers", "shifts") if channels]
    scratch = sum(len(_scratch_bytes(model, op)) for op in model.operators)
    if scratch:
        allocs.append(("scratch buffer handles", 8 * scratch, ARENA_ALIGNMENT))
    for what, group in (("input", model.inputs), ("output", model.outputs)):
        allocs.append((f"{what} tensor pointers", 8 * len(group), ARENA_ALIGNMENT))
        for t in group:
            allocs += [(f"{what} tensor", _TFLITE_TENSOR, 8),
                       (f"{what} quantization", _AFFINE_QUANTIZATION, 8),
                       (f"{what} zero points", 4 + 4 * model.tensors[t].channels, 4)]
    return allocs


def persistent_bytes(model):
    """Bytes of the arena tail of `model` (a `ModelInfo`), alignment gaps included."""
    tail = 0
    for _, size, alignment in persistent_allocations(model):
        tail = -((-(tail + size)) // alignment) * alignment
    return tail


# ---------------------------------------------------------------------------------------------
# Ops and the per-layer table.
# ---------------------------------------------------------------------------------------------
def _prod(shape):
    return int(np.prod(shape)) if len(shape) else 1


def operator_ops(model, op):
    """Ops of one operator: 2 per multiply-accumulate, 1 per element for the others."""
    out = _prod(model.tensors[op.outputs[0]].shape) if op.outputs else 0
    if op.name == "CONV_2D":
        return 2 * out * _prod(model.tensors[op.inputs[1]].shape[1:])
    if op.name == "DEPTHWISE_CONV_2D":
        return 2 * out * _prod(model.tensors[op.inputs[1]].shape[1:3])
    if op.name == "FULLY_CONNECTED":
        return 2 * out * model.tensors[op.inputs[1]].shape[-1]
    if op.name in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
        return out * op.options.get("filter_w", 1) * op.options.get("filter_h", 1)
    if op.name == "MEAN":
        return _prod(model.tensors[op.inputs[0]].shape)
    if op.name in ("RESHAPE", "PAD", "CONCATENATION"):
        return 0
    return out


@dataclasses.dataclass(frozen=True)
class Layer:
    """One operator's row in an estimate.

    Attributes:
        op: TFLite operator name.
        output_shape: Shape of its (first) output.
        ops: Operations (2 per multiply-accumulate).
        activation_bytes: Bytes of its output tensor.
        weight_bytes: Bytes of its constant inputs (weights, biases).
    """

    op: str
    output_shape: tuple
    ops: int
    activation_bytes: int
    weight_bytes: int


@dataclasses.dataclass(frozen=True)
class Estimate:
    """Resource estimates for one model.

    Attributes:
        tflite_bytes: Flatbuffer bytes (the model's share of flash).
        arena_bytes: TFLite Micro tensor arena: `planned_bytes + persistent_bytes`.
        planned_bytes: The arena head, activations and scratch buffers as planned.
        persistent_bytes: The arena tail, allocations that live as long as the interpreter.
        ops: Operations per inference (2 per multiply-accumulate).
        layers: A `Layer` per operator, in execution order.
    """

    tflite_bytes: int
    arena_bytes: int
    planned_bytes: int
    persistent_bytes: int
    ops: int
    layers: tuple

    def to_json(self):
        """The estimate as a JSON-serialisable dict."""
        return dataclasses.asdict(self)


def estimate_model_info(model):
    """Estimates from a `ModelInfo` (parsed from a flatbuffer or predicted from Keras)."""
    layers = []
    for op in model.operators:
        out = model.tensors[op.outputs[0]] if op.outputs else None
        weights = sum(model.tensors[t].nbytes for t in op.inputs
                      if t >= 0 and model.tensors[t].is_constant)
        layers.append(Layer(op.name, out.shape if out else (), operator_ops(model, op),
                            out.nbytes if out else 0, weights))
    planned = plan_activations(model)[2]
    persistent = persistent_bytes(model)
    return Estimate(model.tflite_bytes, planned + persistent, planned, persistent,
                    sum(layer.ops for layer in layers), tuple(layers))


def estimate_tflite(model):
    """Estimates flash, arena and ops of a TFLite model without running it.

    Args:
        model: TFLite flatbuffer bytes, or the path of a `.tflite` file.

    Returns:
        An `Estimate`.

    Raises:
        InvalidModelFileError: The file is missing, not a TFLite flatbuffer, or truncated.
        UnknownOperatorError: The model holds an operator with no estimate.

    Example:

    >>> est = estimate_tflite("kws_ref_model.tflite")  # doctest: +SKIP
    >>> est.arena_bytes, est.planned_bytes, est.persistent_bytes  # doctest: +SKIP
    (24272, 16000, 8272)
    """
    return estimate_model_info(read_model_info(model))


# ---------------------------------------------------------------------------------------------
# Before conversion: the TFLite graph the converter makes from a plain Keras model.
# ---------------------------------------------------------------------------------------------
# Flatbuffer bytes besides the buffers' data, fitted by least squares to the TFLite converter's
# output (tf 2.21) for 112 trained-like models of 2.5 KB to 400 KB (the search spaces,
# `benchmarks/_random_models.py` and small conv / dense stacks): within 1.2%, and 0.2% above
# 10 KB. The rest is the padding that aligns each buffer to 16 bytes at its position in the
# file. Once (header, signature, metadata), per tensor (table, buffer entry, quantization
# table), per byte of the tensor's name string (length prefix, terminator and padding
# included), per shape dimension, per quantization channel (float32 scale + int64 zero point),
# per operator (table, input and output vectors) and per distinct operator (operator code).
_FB_FIXED = 506
_FB_PER_TENSOR = 78
_FB_PER_NAME_BYTE = 1.04
_FB_PER_DIM = 6.5
_FB_PER_CHANNEL = 12
_FB_PER_OPERATOR = 37
_FB_PER_OPERATOR_CODE = 58

# What the converter names the model's output, whatever operator produces it.
_OUTPUT_NAME = "StatefulPartitionedCall:0"
# The name of a constant the converter materialises itself (a shape, a zero bias), numbered.
_CONSTANT_NAME = "arith.constant"


def _string_bytes(text):
    """Bytes of a flatbuffer string: length prefix, UTF-8, terminator, padding to 4."""
    return 4 + _align(len(text.encode()) + 1, 4)


@dataclasses.dataclass
class _Fused:
    """A conv, depthwise, dense or add operator and the Keras layers folded or fused into it."""

    layer: object
    bn: object = None
    act: str = None  # The fused activation's location name, e.g. "model/re_lu/Relu".


class _GraphBuilder:
    """Collects the tensors and operators the converter would emit, and the flatbuffer bytes."""

    def __init__(self, prefix):
        self.prefix = prefix
        self.tensors, self.operators = [], []
        self.constants = []  # (tensor index, dedup key: "unique" or equal data shares a buffer)
        self.producer = {}  # tensor index -> operator index
        self.fused = {}  # output tensor index -> _Fused
        self.numbered = []  # tensors named `_CONSTANT_NAME` + a number, in creation order

    def loc(self, layer, what):
        """The converter's name for TF op `what` of a Keras layer."""
        return f"{self.prefix}/{layer.name}/{what}"

    def tensor(self, shape, dtype="int8", name=None, channels=1, data_key=None):
        shape = tuple(int(d) for d in shape)
        constant = data_key is not None
        self.tensors.append(TensorInfo(
            name=name or "", shape=shape, dtype=dtype,
            nbytes=_tensor_bytes(shape, {"int8": 9, "int32": 2}[dtype]),
            is_constant=constant, is_variable=False, channels=channels))
        index = len(self.tensors) - 1
        if constant:
            self.constants.append((index, data_key))
        if name is None:
            self.numbered.append(index)
        return index

    def op(self, name, inputs, output_shape, out_name, options=None):
        out = self.tensor(output_shape, name=out_name)
        self.operators.append(OperatorInfo(name, tuple(inputs), (out,), options or {}))
        self.producer[out] = len(self.operators) - 1
        return out

    def rename(self, index, name):
        self.tensors[index] = dataclasses.replace(self.tensors[index], name=name)

    def flatbuffer_bytes(self):
        seen, data = set(), 0
        for index, key in self.constants:
            if key == "unique" or key not in seen:
                data += _align(self.tensors[index].nbytes)
                seen.add(key)
        per_tensor = sum(_FB_PER_TENSOR + _FB_PER_NAME_BYTE * _string_bytes(t.name)
                         + _FB_PER_DIM * len(t.shape) + _FB_PER_CHANNEL * t.channels
                         for t in self.tensors)
        codes = len({op.name for op in self.operators})
        return round(_FB_FIXED + data + per_tensor + _FB_PER_OPERATOR * len(self.operators)
                     + _FB_PER_OPERATOR_CODE * codes)


def _folded_bias(layer, bn):
    """The float bias after folding a BatchNormalization into the layer before it."""
    weights = layer.get_weights()
    channels = int(layer.output_shape[-1])
    bias = weights[1] if getattr(layer, "use_bias", False) else np.zeros(channels, np.float32)
    if bn is not None:
        values = dict(zip([w.name.split("/")[-1].split(":")[0] for w in bn.weights],
                          bn.get_weights()))
        gamma = values.get("gamma", np.ones(channels, np.float32))
        beta = values.get("beta", np.zeros(channels, np.float32))
        scale = gamma / np.sqrt(values["moving_variance"] + bn.epsilon)
        bias = (bias - values["moving_mean"]) * scale + beta
    return np.asarray(bias, np.float32)


def _layer_inputs(layer):
    node = layer._inbound_nodes[0]
    tensors = node.input_tensors
    return tensors if isinstance(tensors, (list, tuple)) else [tensors]


def _activation(layer, keras):
    """TF op name of a layer that is a plain ReLU or ReLU6, else None."""
    L = keras.layers
    if isinstance(layer, L.ReLU) and layer.negative_slope == 0 and layer.threshold == 0:
        max_value = None if layer.max_value is None else float(layer.max_value)
        return {None: "Relu", 6.0: "Relu6"}.get(max_value)
    if isinstance(layer, L.Activation):
        return {"relu": "Relu", "relu6": "Relu6"}.get(layer.get_config()["activation"])
    return None


def _own_activation(layer):
    """TF op name of a conv or dense layer's own activation ("" for none), or None."""
    name = layer.get_config().get("activation", "linear")
    return {"linear": "", "relu": "Relu", "relu6": "Relu6"}.get(name)


def keras_model_info(model):
    """The TFLite graph that the int8 converter makes from a plain Keras model.

    Convolutions and dense layers absorb a following BatchNormalization and ReLU / ReLU6, as
    the converter folds and fuses them, and additions a following ReLU / ReLU6; Dropout
    disappears; a zero dense bias is dropped and equal zero biases share one buffer, as the
    converter does for freshly built models. Tensors are named as the converter names them
    (the names are a few percent of a small model's flatbuffer).

    Returns:
        (ModelInfo, predicted flatbuffer bytes).

    Raises:
        UnsupportedLayerError: A layer has no TFLite mapping here.
    """
    import tf_keras as keras

    L = keras.layers
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise errors.UnsupportedLayerError(
            f"Invalid value for `model`: expected a Keras model with one input and one output, "
            f"received {len(model.inputs)} inputs and {len(model.outputs)} outputs.")
    g = _GraphBuilder(model.name)
    consumers = {}
    for layer in model.layers:
        if isinstance(layer, L.InputLayer):
            continue
        for t in _layer_inputs(layer):
            consumers[id(t)] = consumers.get(id(t), 0) + 1
    ref = {id(model.inputs[0]): g.tensor((1,) + tuple(model.input_shape[1:]),
                                         name=f"serving_default_{model.input_names[0]}:0")}
    for layer in model.layers:
        if isinstance(layer, L.InputLayer):
            continue
        inputs = [ref[id(t)] for t in _layer_inputs(layer)]
        out_shape = (1,) + tuple(layer.output_shape[1:])
        x = inputs[0]
        fused = g.fused.get(x) if consumers.get(id(_layer_inputs(layer)[0]), 0) == 1 else None
        act = _activation(layer, keras)
        unsupported = None
        if isinstance(layer, L.Dropout) or (
                isinstance(layer, L.Flatten) and len(g.tensors[x].shape) == 2):
            out = x
        elif (isinstance(layer, L.BatchNormalization) and fused is not None
              and fused.bn is None and fused.act is None
              and g.operators[g.producer[x]].name != "ADD"):
            fused.bn = layer
            out = x
        elif act and fused is not None and fused.act is None:
            fused.act = g.loc(layer, act)
            out = x
        elif act:
            out = g.op(act.upper(), [x], out_shape, g.loc(layer, act))
        elif isinstance(layer, L.Softmax) or (
                isinstance(layer, L.Activation)
                and layer.get_config()["activation"] == "softmax"):
            out = g.op("SOFTMAX", [x], out_shape, g.loc(layer, "Softmax"))
        elif isinstance(layer, (L.Conv2D, L.DepthwiseConv2D, L.Dense)) and not isinstance(
                layer, (L.Conv2DTranspose, L.SeparableConv2D, L.Conv1D, L.Conv3D)):
            own = _own_activation(layer)
            if own is None:
                unsupported = f"{type(layer).__name__} with activation " \
                              f"{layer.get_config()['activation']!r}"
            else:
                out = _weighted_op(g, layer, x, out_shape, L)
                g.fused[out].act = g.loc(layer, own) if own else None
        elif isinstance(layer, (L.AveragePooling2D, L.MaxPooling2D)):
            ph, pw = layer.pool_size
            avg = isinstance(layer, L.AveragePooling2D)
            out = g.op("AVERAGE_POOL_2D" if avg else "MAX_POOL_2D", [x], out_shape,
                       g.loc(layer, "AvgPool" if avg else "MaxPool"),
                       {"filter_h": ph, "filter_w": pw})
        elif isinstance(layer, L.GlobalAveragePooling2D) and not layer.keepdims:
            axis = g.tensor((2,), "int32", name=g.loc(layer, "Mean/reduction_indices"),
                            channels=0, data_key="axis")
            out = g.op("MEAN", [x, axis], out_shape, g.loc(layer, "Mean"))
        elif isinstance(layer, (L.Flatten, L.Reshape)):
            shape = g.tensor((len(out_shape),), "int32", channels=0,
                             data_key=("shape", out_shape))
            out = g.op("RESHAPE", [x, shape], out_shape, g.loc(layer, "Reshape"))
        elif isinstance(layer, L.Add) and len(inputs) == 2:
            out = g.op("ADD", inputs, out_shape, g.loc(layer, "add"))
            g.fused[out] = _Fused(layer)
        elif isinstance(layer, L.Concatenate):
            out = g.op("CONCATENATION", inputs, out_shape, g.loc(layer, "concat"))
        elif isinstance(layer, L.ZeroPadding2D):
            pads = g.tensor((4, 2), "int32", name=g.loc(layer, "Pad/paddings"), channels=0,
                            data_key=("pad", layer.padding))
            out = g.op("PAD", [x, pads], out_shape, g.loc(layer, "Pad"))
        else:
            unsupported = type(layer).__name__
        if unsupported:
            raise errors.UnsupportedLayerError(
                f"Unsupported layer {layer.name!r}: expected Conv2D, DepthwiseConv2D, Dense "
                f"(linear, ReLU or ReLU6), BatchNormalization after them, ReLU, ReLU6, "
                f"pooling, Flatten, Reshape, Add, Concatenate, ZeroPadding2D, Dropout or "
                f"Softmax, received {unsupported}.")
        for t in layer._inbound_nodes[0].output_tensors if isinstance(
                layer._inbound_nodes[0].output_tensors, (list, tuple)) else [
                layer._inbound_nodes[0].output_tensors]:
            ref[id(t)] = out
    _finish_fused(g)
    output = ref[id(model.outputs[0])]
    g.rename(output, _OUTPUT_NAME)
    for number, index in enumerate(g.numbered):
        g.rename(index, _CONSTANT_NAME + (str(number) if number else ""))
    info = _ordered(g, output)
    return info, g.flatbuffer_bytes()


def _weighted_op(g, layer, x, out_shape, L):
    """Adds a CONV_2D, DEPTHWISE_CONV_2D or FULLY_CONNECTED operator; names come later."""
    cin, cout = int(layer.input_shape[-1]), int(layer.output_shape[-1])
    if isinstance(layer, L.Dense):
        if len(g.tensors[x].shape) != 2:
            raise errors.UnsupportedLayerError(
                f"Unsupported layer {layer.name!r}: expected a Dense layer on a flat input, "
                f"received input shape {layer.input_shape}.")
        w = g.tensor((cout, cin), name="", channels=cout, data_key="unique")
        out = g.op("FULLY_CONNECTED", [x, w, -1], out_shape, "")
    else:
        kh, kw = layer.kernel_size
        depthwise = isinstance(layer, L.DepthwiseConv2D)
        shape = (1, kh, kw, cout) if depthwise else (cout, kh, kw, cin)
        w = g.tensor(shape, name="", channels=cout, data_key="unique")
        b = g.tensor((cout,), "int32", name="", channels=cout, data_key="bias")
        options = {"stride_h": layer.strides[0], "stride_w": layer.strides[1]}
        out = g.op("DEPTHWISE_CONV_2D" if depthwise else "CONV_2D", [x, w, b], out_shape, "",
                   options)
    g.fused[out] = _Fused(layer)
    return out


def _finish_fused(g):
    """Resolves biases and names of the fused operators, as the converter does.

    A zero bias (a freshly built model's) is shared by convolutions and dropped by dense
    layers, and named like the converter's own constants; a nonzero one is unique and takes
    the fused operator's location name, which the output then repeats with a "1".
    """
    for out, fused in g.fused.items():
        op_index = g.producer[out]
        op = g.operators[op_index]
        act = [fused.act] if fused.act else []
        if op.name == "ADD":
            g.rename(out, ";".join(act + [g.tensors[out].name]))
            continue
        layer, bn = fused.layer, fused.bn
        bias = _folded_bias(layer, bn)
        zero = not np.any(bias)
        loc = g.loc
        if op.name == "FULLY_CONNECTED":
            matmul = [loc(layer, "MatMul")]
            if bn is not None:
                kernel = [loc(bn, "batchnorm/mul_1")]
                bias_name = act + [loc(bn, "batchnorm/add_1")]
                out_name = (matmul + ([loc(layer, "BiasAdd")] if layer.use_bias else [])
                            + kernel + bias_name)
            else:
                kernel = matmul
                bias_name = act + [loc(layer, "BiasAdd")]
                out_name = matmul + bias_name if not zero else matmul + act
            if not zero:
                cout = int(layer.output_shape[-1])
                b = g.tensor((cout,), "int32", name=";".join(bias_name), channels=cout,
                             data_key="unique")
                g.operators[op_index] = dataclasses.replace(op, inputs=op.inputs[:2] + (b,))
        else:
            base = [loc(layer, "Conv2D" if op.name == "CONV_2D" else "depthwise")]
            norm = [loc(bn, "FusedBatchNormV3")] if bn is not None else []
            adds = ([loc(layer, "BiasAdd/ReadVariableOp"), loc(layer, "BiasAdd")]
                    if layer.use_bias else [])
            if not zero:
                bias_name = act + norm + adds + base
                g.rename(op.inputs[2], ";".join(bias_name))
                out_name = bias_name
            else:
                g.numbered.append(op.inputs[2])
                out_name = act + (norm if op.name == "DEPTHWISE_CONV_2D" else []) + base
            depthwise_fold = op.name == "DEPTHWISE_CONV_2D" and bn is not None
            kernel = (norm + base + (adds if not zero else [])) if depthwise_fold else base
            if zero and depthwise_fold:
                kernel = act + kernel
            key = "unique" if not zero else ("zeros", g.tensors[op.inputs[2]].shape)
            g.constants = [(t, key if t == op.inputs[2] else k) for t, k in g.constants]
        g.rename(op.inputs[1], ";".join(kernel))
        out_name = ";".join(out_name)
        g.rename(out, out_name + ("1" if out_name == ";".join(kernel)
                                  or (op.name != "FULLY_CONNECTED" and not zero) else ""))


def _ordered(g, output):
    """Orders tensors as the converter does: input, constants, then activations by producer."""
    constants = [i for i, t in enumerate(g.tensors) if t.is_constant]
    activations = sorted((i for i, t in enumerate(g.tensors) if not t.is_constant and i),
                         key=lambda i: (i == output, g.producer.get(i, -1)))
    order = [0] + constants + activations
    new = {old: new for new, old in enumerate(order)}
    new[-1] = -1
    operators = [dataclasses.replace(op, inputs=tuple(new[i] for i in op.inputs),
                                     outputs=tuple(new[i] for i in op.outputs))
                 for op in g.operators]
    return ModelInfo([g.tensors[i] for i in order], operators, (0,), (new[output],), 1, 0)


def estimate_keras(model):
    """Estimates flash, arena and ops of a plain Keras model before conversion to int8.

    The converter is not called: the TFLite graph it would make is predicted
    (`keras_model_info`) and costed like a parsed flatbuffer.

    Args:
        model: A plain Keras model (Conv2D, DepthwiseConv2D, Dense, BatchNormalization, ReLU,
            pooling, Flatten, Add, Dropout, Softmax layers) with one input.

    Returns:
        An `Estimate`; `tflite_bytes` is the predicted flatbuffer size.

    Raises:
        UnsupportedLayerError: A layer has no TFLite mapping here.

    Example:

    >>> import tf_keras as keras
    >>> model = keras.Sequential([keras.Input((49, 10, 1)), keras.layers.Conv2D(8, 3),
    ...                           keras.layers.GlobalAveragePooling2D()])
    >>> estimate_keras(model).ops
    57152
    """
    info, tflite_bytes = keras_model_info(model)
    return dataclasses.replace(estimate_model_info(info), tflite_bytes=tflite_bytes)
