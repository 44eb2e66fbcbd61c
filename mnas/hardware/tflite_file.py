"""Reading `.tflite` files through the generated TFLite schema (PyPI `tflite`).

The generated reader trusts the file: an offset that points outside it surfaces as a
`struct.error`, an `IndexError` or a numpy `ValueError` deep in the reader. `parse_model`
bounds every vector by the file's size, checks every tensor, buffer and operator-code index,
and turns any failed read into one `InvalidModelFileError`, so that a truncated or hostile file
is a clean error here instead of a crash in the native interpreter later.

Example:

>>> from mnas.hardware import tflite_file
>>> info = tflite_file.read_model_info("kws_ref_model.tflite")  # doctest: +SKIP
>>> [op.name for op in info.operators][:2]  # doctest: +SKIP
['CONV_2D', 'DEPTHWISE_CONV_2D']
"""

import dataclasses
import functools
import math
import os
import re
import struct

import tflite

from mnas import errors


def _enum_names(enum):
    return {v: k for k, v in vars(enum).items() if not k.startswith("_") and isinstance(v, int)}


# BuiltinOperator, TensorType and BuiltinOptions codes -> names, from the generated schema.
OPERATOR_NAMES = _enum_names(tflite.BuiltinOperator)
OPTIONS_NAMES = _enum_names(tflite.BuiltinOptions)
_TYPE_NAMES = {code: name.lower() for code, name in _enum_names(tflite.TensorType).items()}
# Bytes per element of each tensor type (INT4 is packed two per byte).
_TYPE_BYTES = {"float32": 4, "float16": 2, "int32": 4, "uint8": 1, "int64": 8, "string": 0,
               "bool": 1, "int16": 2, "complex64": 8, "int8": 1, "float64": 8,
               "complex128": 16, "uint64": 8, "resource": 0, "variant": 0, "uint32": 4,
               "uint16": 2, "int4": 0.5, "bfloat16": 2}


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
    """One operator of a TFLite subgraph: its name, tensor indices (-1: absent) and options."""

    name: str
    inputs: tuple
    outputs: tuple
    options: dict
    intermediates: tuple = ()


@dataclasses.dataclass
class ModelInfo:
    """The parts of a TFLite model that the estimates need (its first subgraph)."""

    tensors: list
    operators: list
    inputs: tuple
    outputs: tuple
    num_subgraphs: int
    tflite_bytes: int


def tensor_bytes(shape, dtype):
    """Bytes of a dense tensor of `shape` and `dtype` (a type name)."""
    return int(math.ceil(math.prod(shape) * _TYPE_BYTES.get(dtype, 0)))


class _Corrupt(Exception):
    pass


# What the generated reader raises on offsets outside the file (or values out of range).
_READ_ERRORS = (_Corrupt, struct.error, IndexError, TypeError, ValueError, OverflowError)
_SNAKE = re.compile(r"(?<!^)(?=[A-Z])")
_NOT_OPTIONS = ("Init", "GetRootAs")


def _length(n, size, what):
    """`n`, checked to fit in the file (no vector can be longer than the file)."""
    if n < 0 or n > size:
        raise _Corrupt(f"{what} claims {n} entries")
    return n


@functools.lru_cache(maxsize=None)
def _option_getters(cls):
    """(snake_case name, getter name) of the scalar fields of a generated options class."""
    return tuple((_SNAKE.sub("_", attr).lower(), attr) for attr in dir(cls)
                 if attr[0].isupper() and not attr.startswith(_NOT_OPTIONS)
                 and not attr.endswith(("Length", "IsNone", "AsNumpy"))
                 and "BufferHasIdentifier" not in attr
                 and getattr(cls, attr).__code__.co_argcount == 1)


def _options(op):
    """An operator's builtin options as {snake_case name: scalar}, read from their table."""
    name = OPTIONS_NAMES.get(op.BuiltinOptionsType())
    table = op.BuiltinOptions()
    cls = getattr(tflite, name, None) if name else None
    if table is None or cls is None:
        return {}
    options = cls()
    options.Init(table.Bytes, table.Pos)
    out = {}
    for key, attr in _option_getters(cls):
        value = getattr(options, attr)()
        if isinstance(value, (int, float, bool)):
            out[key] = value
    return out


def _ints(getter_length, getter, size, what):
    n = _length(getter_length(), size, what)
    return tuple(int(getter(j)) for j in range(n))


def _parse(data):
    size = len(data)
    model = tflite.Model.GetRootAs(data, 0)
    codes = []
    for i in range(_length(model.OperatorCodesLength(), size, "the operator codes")):
        code = model.OperatorCodes(i)
        codes.append(max(code.DeprecatedBuiltinCode(), code.BuiltinCode()))
    buffers = []
    for i in range(_length(model.BuffersLength(), size, "the buffers")):
        b = model.Buffers(i)
        n = _length(b.DataLength(), size, f"buffer {i}")
        if n and b.DataAsNumpy().nbytes != n:
            raise _Corrupt(f"buffer {i} overruns the file")
        offset, length = b.Offset(), b.Size()
        if offset > 1 and offset + length > size:
            raise _Corrupt(f"a buffer of {length} bytes at offset {offset} overruns the file")
        buffers.append(n or (length if offset > 1 else 0))
    n_graphs = _length(model.SubgraphsLength(), size, "the subgraphs")
    if not n_graphs:
        raise _Corrupt("it has no subgraph")
    for i in range(_length(model.MetadataLength(), size, "the metadata")):
        if model.Metadata(i).Buffer() >= len(buffers):
            raise _Corrupt("a metadata entry names a buffer that does not exist")
    graphs = [_parse_subgraph(model.Subgraphs(i), codes, buffers, size) for i in range(n_graphs)]
    tensors, operators, inputs, outputs = graphs[0]
    return ModelInfo(tensors, operators, inputs, outputs, n_graphs, size)


def _parse_tensor(t, index, buffers, size):
    shape = tuple(int(d) for d in t.ShapeAsNumpy()) if t.ShapeLength() else ()
    _length(len(shape), size, f"tensor {index}'s shape")
    buffer = t.Buffer()
    if buffer >= len(buffers):
        raise _Corrupt(f"tensor {index} names buffer {buffer} of {len(buffers)}")
    if any(d < 0 for d in shape):
        raise _Corrupt(f"tensor {index} has a negative dimension {shape}")
    quant = t.Quantization()
    channels, scale = 0, None
    if quant is not None and quant.ScaleLength() and quant.ZeroPointLength():
        scales = quant.ScaleAsNumpy()
        quant.ZeroPointAsNumpy()
        channels, scale = len(scales), float(scales[0])
    dtype = _TYPE_NAMES.get(t.Type(), t.Type())
    name = t.Name()
    return TensorInfo(
        name=name.decode("utf-8", errors="replace") if name else "", shape=shape, dtype=dtype,
        nbytes=tensor_bytes(shape, dtype), is_constant=buffers[buffer] > 0,
        is_variable=bool(t.IsVariable()), channels=channels, scale=scale)


def _parse_subgraph(graph, codes, buffers, size):
    tensors = [_parse_tensor(graph.Tensors(i), i, buffers, size)
               for i in range(_length(graph.TensorsLength(), size, "the tensors"))]
    n = len(tensors)

    def indices(values, what, allow_missing=False):
        for v in values:
            if not (-1 if allow_missing else 0) <= v < n:
                raise _Corrupt(f"{what} names tensor {v} of {n}")
        return values

    operators = []
    for i in range(_length(graph.OperatorsLength(), size, "the operators")):
        op = graph.Operators(i)
        index = op.OpcodeIndex()
        if index >= len(codes):
            raise _Corrupt(f"an operator names operator code {index} of {len(codes)}")
        code = codes[index]
        name = OPERATOR_NAMES.get(code, code)
        operators.append(OperatorInfo(
            name=name,
            inputs=indices(_ints(op.InputsLength, op.Inputs, size, name), name, True),
            outputs=indices(_ints(op.OutputsLength, op.Outputs, size, name), name),
            options=_options(op),
            intermediates=indices(_ints(op.IntermediatesLength, op.Intermediates, size, name),
                                  name)))
    inputs = _ints(graph.InputsLength, graph.Inputs, size, "the subgraph's inputs")
    outputs = _ints(graph.OutputsLength, graph.Outputs, size, "the subgraph's outputs")
    return (tensors, operators, indices(inputs, "the subgraph's inputs"),
            indices(outputs, "the subgraph's outputs"))


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


def parse_model(data, name="model"):
    """Parses and checks TFLite flatbuffer bytes.

    Args:
        data: The flatbuffer's bytes.
        name: Label of the model in error messages. Defaults to `"model"`.

    Returns:
        A `ModelInfo` of the model's first subgraph.

    Raises:
        InvalidModelFileError: The bytes are not a TFLite flatbuffer, or are truncated or
            corrupt (a field points outside the file).
    """
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise errors.InvalidModelFileError(
            f"Invalid model file {name!r}: expected a TFLite flatbuffer (identifier 'TFL3'), "
            f"received {len(data)} bytes without it.")
    try:
        return _parse(data)
    except _READ_ERRORS as e:
        raise errors.InvalidModelFileError(
            f"Invalid model file {name!r}: expected a complete TFLite flatbuffer, received "
            f"{len(data)} bytes that are truncated or corrupt ({e}).") from None


def read_model_info(model):
    """Reads and parses a `.tflite` file or flatbuffer bytes; see `parse_model`."""
    data, name = load_bytes(model)
    return parse_model(data, name)


def tensor_types():
    """The tensor type names the estimates know."""
    return set(_TYPE_BYTES)
