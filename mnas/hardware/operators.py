"""What each TFLite Micro kernel needs, per operator: its arena allocations and its ops.

One record per builtin operator that TFLite Micro's reference kernels register. The sizes are
those of the host build of TFLite Micro that PyPI `tflite-micro` ships (64-bit pointers), and
each is pinned by a test against that interpreter (tests/test_operators.py):

- `options`: the builtin options struct parsed from the flatbuffer (`builtin_op_data.h`),
  allocated in the arena tail as (bytes, alignment), or None when the kernel parses none;
- `init`: the OpData the kernel allocates in Init (tail, 16-aligned);
- `prepare`: (model, op) -> the persistent buffers Prepare allocates (tail, 16-aligned), such
  as per-channel multipliers and shifts;
- `scratch`: (model, op) -> the scratch buffers Prepare requests from the memory planner
  (head, planned with the activations for the operator's step);
- `ops`: (model, op) -> operations, 2 per multiply-accumulate, 1 per output element otherwise.
"""

import dataclasses
import math


def _shape(model, index):
    return model.tensors[index].shape if index >= 0 else ()


def _elements(model, index):
    return math.prod(_shape(model, index))


def _out(model, op):
    return _elements(model, op.outputs[0]) if op.outputs else 0


def _none(model, op):
    return []


def _zero(model, op):
    return 0


def _conv_ops(model, op):
    return 2 * _out(model, op) * math.prod(_shape(model, op.inputs[1])[1:])


def _depthwise_ops(model, op):
    return 2 * _out(model, op) * math.prod(_shape(model, op.inputs[1])[1:3])


def _fc_ops(model, op):
    return 2 * _out(model, op) * _shape(model, op.inputs[1])[-1]


def _pool_ops(model, op):
    return _out(model, op) * op.options.get("filter_width", 1) * op.options.get(
        "filter_height", 1)


def _input_ops(model, op):
    return _elements(model, op.inputs[0])


def _per_channel(model, op):
    """Per-channel multipliers and shifts (int32 each) of a convolution's output channels."""
    weights = model.tensors[op.inputs[1]]
    if op.name == "TRANSPOSE_CONV" and model.tensors[op.outputs[0]].dtype == "float32":
        return []
    if op.name == "FULLY_CONNECTED":
        channels = weights.shape[0] if weights.channels > 1 else 0
    elif op.name == "DEPTHWISE_CONV_2D":
        channels = weights.shape[-1]
    else:
        channels = weights.shape[0]
    return [4 * channels] * 2 if channels else []


def _unitemised(model, op):
    """16 bytes more per operator, measured, that the recording allocator does not itemise."""
    return [16]


def _inputs_scratch(model, op):
    """A pointer per input (ADD_N)."""
    return [8 * len(op.inputs)]


def _dims_scratch(model, op):
    """Two ints per output dimension (MIRROR_PAD)."""
    return [8 * len(_shape(model, op.outputs[0]))]


def _reduce_scratch(model, op):
    """Two int arrays of the input's rank (the reference reduction's indices and axes)."""
    return [4 * len(_shape(model, op.inputs[0]))] * 2


def _svdf_scratch(model, op):
    """Int32 activations of the feature filters and of the units (quantized SVDF)."""
    batch, filters = _shape(model, op.inputs[0])[0], _shape(model, op.inputs[1])[0]
    units = _shape(model, op.outputs[0])[-1]
    if model.tensors[op.inputs[0]].dtype == "float32":
        return [4 * batch * filters]
    return [4 * batch * filters, 4 * batch * units]


def _lstm_scratch(model, op):
    """Four gate buffers of batch x units, in the cell state's type."""
    cell = model.tensors[op.inputs[19]]
    return [cell.nbytes] * 4


def _lstm_ops(model, op):
    """2 per multiply-accumulate of the eight gate matrices over every time step."""
    steps = math.prod(_shape(model, op.inputs[0])[:-1])
    units, features = _shape(model, op.inputs[2])
    return 2 * 4 * steps * units * (features + units)


def _svdf_ops(model, op):
    filters, features = _shape(model, op.inputs[1])
    memory = _shape(model, op.inputs[2])[-1]
    return 2 * _shape(model, op.inputs[0])[0] * filters * (features + memory)


def _out_scratch(model, op):
    """An int32 accumulator per output element (quantized TRANSPOSE_CONV)."""
    if model.tensors[op.outputs[0]].dtype == "float32":
        return []
    return [4 * _out(model, op)]


def _transpose_conv_ops(model, op):
    weights = _shape(model, op.inputs[1])
    return 2 * _elements(model, op.inputs[2]) * math.prod(weights)


def _batch_matmul_prepare(model, op):
    """A constant right-hand side is transposed once into a persistent tensor (TfLiteEvalTensor,
    dims, data), besides the temporaries' structs."""
    rhs = model.tensors[op.inputs[1]]
    return [rhs.nbytes, 24, 16, 24, 4]


def _batch_matmul_ops(model, op):
    return 2 * _out(model, op) * _shape(model, op.inputs[0])[-1]


def _mean_scratch(model, op):
    """Int32 sums per output element for quantized inputs, then the reduction's indices."""
    sums = [4 * _out(model, op)] if model.tensors[op.inputs[0]].dtype in (
        "int8", "int16", "uint8") else []
    return sums + _reduce_scratch(model, op)


@dataclasses.dataclass(frozen=True)
class Kernel:
    """A TFLite Micro kernel's arena allocations and ops; see the module docstring."""

    options: tuple = None
    init: int = 0
    prepare: object = _none
    scratch: object = _none
    ops: object = _out


KERNELS = {
    "ADD": Kernel((8, 4), 60),
    "AVERAGE_POOL_2D": Kernel((40, 4), 32, ops=_pool_ops),
    "CONCATENATION": Kernel((8, 4), 80, ops=_zero),
    "CONV_2D": Kernel((28, 4), 80, _per_channel, ops=_conv_ops),
    "DEPTHWISE_CONV_2D": Kernel((28, 4), 80, _per_channel, ops=_depthwise_ops),
    "DEQUANTIZE": Kernel(None, 32),
    "FULLY_CONNECTED": Kernel((32, 8), 72, _per_channel, ops=_fc_ops),
    "LOGISTIC": Kernel(None, 16),
    "MAX_POOL_2D": Kernel((40, 4), 32, ops=_pool_ops),
    "MEAN": Kernel((1, 1), 44, scratch=_mean_scratch, ops=_input_ops),
    "SUM": Kernel((1, 1), 44, scratch=_mean_scratch, ops=_input_ops),
    "REDUCE_MAX": Kernel((1, 1), 44, scratch=_reduce_scratch, ops=_input_ops),
    "REDUCE_MIN": Kernel((1, 1), 44, scratch=_reduce_scratch, ops=_input_ops),
    "MUL": Kernel((4, 4), 36),
    "PAD": Kernel(None, 56, ops=_zero),
    "QUANTIZE": Kernel(None, 32),
    "RELU": Kernel(None, 28),
    "RELU6": Kernel(None, 8),
    "RESHAPE": Kernel((36, 4), 0, ops=_zero),
    "SOFTMAX": Kernel((4, 4), 80),
    "LEAKY_RELU": Kernel((4, 4), 24),
    "TANH": Kernel(None, 16),
    "HARD_SWISH": Kernel(None, 20),
    "ELU": Kernel(None, 256),
    "ABS": Kernel(None, 28),
    "RSQRT": Kernel(None, 28),
    "NEG": Kernel(), "FLOOR": Kernel(), "CEIL": Kernel(), "ROUND": Kernel(), "SQRT": Kernel(),
    "SIN": Kernel(), "COS": Kernel(), "LOG": Kernel(), "EXP": Kernel(), "SQUARE": Kernel(),
    "LOGICAL_NOT": Kernel(), "ZEROS_LIKE": Kernel(), "LOG_SOFTMAX": Kernel(),
    "CAST": Kernel((8, 4)),
    "L2_NORMALIZATION": Kernel((4, 4), 4),
    "SUB": Kernel((8, 4), 52),
    "DIV": Kernel((4, 4), 28),
    "SQUARED_DIFFERENCE": Kernel(None, 112),
    "MAXIMUM": Kernel(), "MINIMUM": Kernel(), "FLOOR_DIV": Kernel(), "FLOOR_MOD": Kernel(),
    "LOGICAL_AND": Kernel(), "LOGICAL_OR": Kernel(),
    "EQUAL": Kernel(None, 32), "NOT_EQUAL": Kernel(None, 32), "LESS": Kernel(None, 32),
    "LESS_EQUAL": Kernel(None, 32), "GREATER": Kernel(None, 32),
    "GREATER_EQUAL": Kernel(None, 32),
    "ADD_N": Kernel(scratch=_inputs_scratch),
    "PRELU": Kernel(None, 28),
    "EXPAND_DIMS": Kernel(ops=_zero), "TRANSPOSE": Kernel(ops=_zero), "SLICE": Kernel(ops=_zero),
    "REVERSE_V2": Kernel(ops=_zero),
    "STRIDED_SLICE": Kernel((24, 4), 84, ops=_zero),
    "MIRROR_PAD": Kernel(None, 20, _unitemised, _dims_scratch, _zero),
    "RESIZE_NEAREST_NEIGHBOR": Kernel((2, 1)), "RESIZE_BILINEAR": Kernel((2, 1)),
    "SQUEEZE": Kernel((36, 4), ops=_zero),
    "SPACE_TO_DEPTH": Kernel((4, 4), 20, ops=_zero),
    "DEPTH_TO_SPACE": Kernel((4, 4), 20, ops=_zero),
    "PACK": Kernel((8, 4), ops=_zero),
    "UNPACK": Kernel((8, 4), ops=_zero),
    "SPLIT": Kernel((4, 4), ops=_zero),
    "SPLIT_V": Kernel((4, 4), ops=_zero),
    "GATHER": Kernel((8, 4), 12, ops=_zero),
    "GATHER_ND": Kernel(None, 12, ops=_zero),
    "EMBEDDING_LOOKUP": Kernel(None, 16, lambda model, op: [12], ops=_zero),
    "SELECT_V2": Kernel(None, 1),
    "SHAPE": Kernel((4, 4), ops=_zero),
    "PADV2": Kernel(None, 56, ops=_zero),
    "SPACE_TO_BATCH_ND": Kernel(None, 4, ops=_zero),
    "BATCH_TO_SPACE_ND": Kernel(ops=_zero),
    "L2_POOL_2D": Kernel((40, 4), 20, ops=_pool_ops),
    "ARG_MAX": Kernel((4, 4)), "ARG_MIN": Kernel((4, 4)),
    "CUMSUM": Kernel((2, 1)),
    "DYNAMIC_UPDATE_SLICE": Kernel(ops=_zero), "FILL": Kernel(ops=_zero),
    "BROADCAST_ARGS": Kernel(ops=_zero), "BROADCAST_TO": Kernel(ops=_zero),
    "REDUCE_ALL": Kernel((1, 1), 44, scratch=_reduce_scratch, ops=_input_ops),
    "BATCH_MATMUL": Kernel(None, 48, _batch_matmul_prepare, ops=_batch_matmul_ops),
    "SVDF": Kernel((12, 4), 36, scratch=_svdf_scratch, ops=_svdf_ops),
    "UNIDIRECTIONAL_SEQUENCE_LSTM": Kernel((16, 4), 688, scratch=_lstm_scratch, ops=_lstm_ops),
    "TRANSPOSE_CONV": Kernel(None, 88, lambda model, op: _per_channel(model, op) + [16],
                             _out_scratch, _transpose_conv_ops),
}
