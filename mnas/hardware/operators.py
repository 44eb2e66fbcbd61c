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
    if op.name == "FULLY_CONNECTED":
        channels = weights.shape[0] if weights.channels > 1 else 0
    elif op.name == "DEPTHWISE_CONV_2D":
        channels = weights.shape[-1]
    else:
        channels = weights.shape[0]
    return [4 * channels] * 2 if channels else []


def _mean_scratch(model, op):
    if model.tensors[op.inputs[0]].dtype in ("int8", "int16", "uint8"):
        return [4 * _out(model, op)]
    return []


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
    "MUL": Kernel((4, 4), 36),
    "PAD": Kernel(None, 56, ops=_zero),
    "QUANTIZE": Kernel(None, 32),
    "RELU": Kernel(None, 28),
    "RELU6": Kernel(None, 8),
    "RESHAPE": Kernel((36, 4), 0, ops=_zero),
    "SOFTMAX": Kernel((4, 4), 80),
}
