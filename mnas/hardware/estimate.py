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

>>> from mnas.hardware import estimate
>>> est = estimate.estimate_tflite("kws_ref_model.tflite")  # doctest: +SKIP
>>> est.arena_bytes, est.tflite_bytes  # doctest: +SKIP
(24272, 53936)
"""

import dataclasses

from mnas import errors
from mnas.hardware import planner, tflite_file
from mnas.hardware.operators import KERNELS

# Operators whose ops are multiply-accumulates (2 ops each).
_MAC_OPERATORS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV", "SVDF",
                  "UNIDIRECTIONAL_SEQUENCE_LSTM", "BATCH_MATMUL")

# Operators whose kernel size is the weights' (O, H, W, I) shape.
_KERNEL_SIZE_IN_WEIGHTS = ("CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV")


@dataclasses.dataclass(frozen=True)
class Layer:
    """One operator's row in an estimate.

    Attributes:
        op: TFLite operator name.
        output_shape: Shape of its (first) output.
        ops: Operations (2 per multiply-accumulate).
        activation_bytes: Bytes of its output tensor.
        weight_bytes: Bytes of its constant inputs (weights, biases).
        input_shapes: Shapes of its non-constant inputs.
        options: Its builtin options (kernel size, strides, padding, fused activation, ...).
        macs: Multiply-accumulates (0 for operators that do none).
        memory_bytes: Arena head bytes in use while it runs (its tensors, scratch buffers and
            the tensors alive across it).
    """

    op: str
    output_shape: tuple
    ops: int
    activation_bytes: int
    weight_bytes: int
    input_shapes: tuple = ()
    options: dict = dataclasses.field(default_factory=dict)
    macs: int = 0
    memory_bytes: int = 0


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
        peak_layer: Index of the layer at which the most arena head is in use.
        peak_tensors: (name, bytes) of the activations alive at that layer.
    """

    tflite_bytes: int
    arena_bytes: int
    planned_bytes: int
    persistent_bytes: int
    ops: int
    layers: tuple
    peak_layer: int = 0
    peak_tensors: tuple = ()

    def to_json(self):
        """The estimate as a JSON-serialisable dict."""
        return dataclasses.asdict(self)


def check_supported(info, name="model"):
    """Raises unless every operator and tensor type of `info` (a `ModelInfo`) has an estimate.

    Raises:
        UnknownOperatorError: Naming every unsupported operator (and tensor type), not just the
            first.
    """
    unknown = {op.name for op in info.operators if op.name not in KERNELS}
    if unknown:
        codes = sorted(n for n in unknown if isinstance(n, str)) + [
            f"builtin operator code {n}" for n in sorted(n for n in unknown if isinstance(n, int))]
        raise errors.UnknownOperatorError(
            f"Unsupported operator{'s' * (len(codes) > 1)} in {name!r}: expected operators "
            f"that TFLite Micro's kernels register, received {', '.join(codes)}.")
    types = sorted({str(t.dtype) for t in info.tensors
                    if t.dtype not in tflite_file.tensor_types()})
    if types:
        raise errors.UnknownOperatorError(
            f"Unsupported tensor type in {name!r}: expected one of "
            f"{sorted(tflite_file.tensor_types())}, received type code {', '.join(types)}.")


def estimate_model_info(model):
    """Estimates from a `ModelInfo` (parsed from a flatbuffer or predicted from Keras)."""
    in_use, alive = planner.memory_in_use(model)
    layers = []
    for i, op in enumerate(model.operators):
        out = model.tensors[op.outputs[0]] if op.outputs else None
        inputs = [model.tensors[t] for t in op.inputs if t >= 0]
        ops = KERNELS[op.name].ops(model, op)
        options = dict(op.options)
        if op.name in _KERNEL_SIZE_IN_WEIGHTS:
            options["kernel_height"], options["kernel_width"] = model.tensors[
                op.inputs[1]].shape[1:3]
        layers.append(Layer(
            op.name, out.shape if out else (), ops, out.nbytes if out else 0,
            sum(t.nbytes for t in inputs if t.is_constant),
            tuple(t.shape for t in inputs if not t.is_constant), options,
            ops // 2 if op.name in _MAC_OPERATORS else 0, in_use[i] if in_use else 0))
    planned = planner.plan_activations(model)[2]
    persistent = planner.persistent_bytes(model)
    peak = max(range(len(in_use)), key=in_use.__getitem__) if in_use else 0
    tensors = tuple((model.tensors[t].name, model.tensors[t].nbytes)
                    for t in (alive[peak] if alive else ()))
    return Estimate(model.tflite_bytes, planned + persistent, planned, persistent,
                    sum(layer.ops for layer in layers), tuple(layers), peak, tensors)


def read_model_info(model):
    """Reads, parses and checks a model for the estimates.

    Args:
        model: TFLite flatbuffer bytes, or the path of a `.tflite` file.

    Returns:
        A `ModelInfo` of the model's first subgraph.

    Raises:
        InvalidModelFileError: The file is missing, not a TFLite flatbuffer, or truncated or
            corrupt (a field points outside the file).
        UnknownOperatorError: The model holds operators or tensor types with no estimate.
    """
    data, name = tflite_file.load_bytes(model)
    info = tflite_file.parse_model(data, name)
    check_supported(info, name)
    return info


def estimate_tflite(model):
    """Estimates flash, arena and ops of a TFLite model without running it.

    Args:
        model: TFLite flatbuffer bytes, or the path of a `.tflite` file.

    Returns:
        An `Estimate`.

    Raises:
        InvalidModelFileError: The file is missing, not a TFLite flatbuffer, or truncated.
        UnknownOperatorError: The model holds operators with no estimate (all are named).

    Example:

    >>> est = estimate_tflite("kws_ref_model.tflite")  # doctest: +SKIP
    >>> est.arena_bytes, est.planned_bytes, est.persistent_bytes  # doctest: +SKIP
    (24272, 16000, 8272)
    """
    data, name = tflite_file.load_bytes(model)
    info = tflite_file.parse_model(data, name)
    check_supported(info, name)
    try:
        return estimate_model_info(info)
    except (IndexError, ValueError) as e:  # An operator without the tensors its kernel needs.
        raise errors.InvalidModelFileError(
            f"Invalid model file {name!r}: expected operators with the inputs and shapes their "
            f"kernels need, received a model where one lacks them ({e}).") from None


def estimate_keras(model):
    """Estimates flash, arena and ops of a plain Keras model before conversion to int8.

    The converter is not called: the TFLite graph it would make is predicted
    (`mnas.hardware.keras_graph.keras_model_info`) and costed like a parsed flatbuffer.

    Args:
        model: A plain Keras model with one input, of the layer types that
            `mnas.registry` records with a lowering (`registry.exported_names()`).

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
    from mnas.hardware import keras_graph

    info, tflite_bytes = keras_graph.keras_model_info(model)
    return dataclasses.replace(estimate_model_info(info), tflite_bytes=tflite_bytes)
