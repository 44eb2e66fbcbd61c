"""The TFLite graph the int8 converter makes from a plain Keras model, predicted before conversion.

`keras_model_info` lowers a Keras model to the operators, tensors and names the TFLite
converter emits, so that `mnas.hardware.estimate.estimate_keras` can cost it like a parsed
flatbuffer, and predicts the flatbuffer's size.
"""

import dataclasses

import numpy as np

from mnas import errors
from mnas.hardware.planner import align as _align
from mnas.hardware.tflite_file import ModelInfo, OperatorInfo, TensorInfo, tensor_bytes

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
            nbytes=tensor_bytes(shape, dtype),
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


_ACTIVATION_OPS = {"relu": "Relu", "relu6": "Relu6"}
# Activations the converter emits as an operator of their own: (operator, TF op name).
_SEPARATE_ACTIVATIONS = {"softmax": ("SOFTMAX", "Softmax"), "sigmoid": ("LOGISTIC", "Sigmoid")}


def _activation_name(layer):
    """The name of a layer's `activation` argument ("linear" when it has none)."""
    return layer.get_config().get("activation", "linear")


def _fuse_or_apply(g, layer, x, fused, act, out_shape):
    """A ReLU / ReLU6 (TF op name `act`): fused into the operator before it, else its own."""
    if fused is not None and fused.act is None:
        fused.act = g.loc(layer, act)
        return x
    return g.op(act.upper(), [x], out_shape, g.loc(layer, act))


def lower_relu(g, layer, inputs, out_shape, fused):
    if layer.negative_slope != 0 or layer.threshold != 0:
        return None
    max_value = None if layer.max_value is None else float(layer.max_value)
    act = {None: "Relu", 6.0: "Relu6"}.get(max_value)
    return act and _fuse_or_apply(g, layer, inputs[0], fused, act, out_shape)


def lower_activation(g, layer, inputs, out_shape, fused):
    name = _activation_name(layer)
    if name == "linear":
        return inputs[0]
    if name in _ACTIVATION_OPS:
        return _fuse_or_apply(g, layer, inputs[0], fused, _ACTIVATION_OPS[name], out_shape)
    if name in _SEPARATE_ACTIVATIONS:
        op, what = _SEPARATE_ACTIVATIONS[name]
        return g.op(op, [inputs[0]], out_shape, g.loc(layer, what))
    return None


def lower_softmax(g, layer, inputs, out_shape, fused):
    return g.op("SOFTMAX", [inputs[0]], out_shape, g.loc(layer, "Softmax"))


def lower_identity(g, layer, inputs, out_shape, fused):
    """Dropout: no operator."""
    return inputs[0]


def lower_batch_norm(g, layer, inputs, out_shape, fused):
    """Folded into the conv or dense operator before it; alone, not lowered."""
    x = inputs[0]
    if (fused is None or fused.bn is not None or fused.act is not None
            or g.operators[g.producer[x]].name == "ADD"):
        return None
    fused.bn = layer
    return x


def lower_reshape(g, layer, inputs, out_shape, fused):
    """Flatten and Reshape: RESHAPE, or nothing when the shape stays (the converter drops it)."""
    x = inputs[0]
    if tuple(g.tensors[x].shape) == tuple(out_shape):
        return x
    shape = g.tensor((len(out_shape),), "int32", channels=0, data_key=("shape", out_shape))
    return g.op("RESHAPE", [x, shape], out_shape, g.loc(layer, "Reshape"))


def _pool(op, what):
    def lower(g, layer, inputs, out_shape, fused):
        ph, pw = layer.pool_size
        return g.op(op, [inputs[0]], out_shape, g.loc(layer, what),
                    {"filter_height": ph, "filter_width": pw})
    return lower


lower_average_pool = _pool("AVERAGE_POOL_2D", "AvgPool")
lower_max_pool = _pool("MAX_POOL_2D", "MaxPool")


def lower_global_average_pool(g, layer, inputs, out_shape, fused):
    if layer.keepdims:
        return None
    axis = g.tensor((2,), "int32", name=g.loc(layer, "Mean/reduction_indices"), channels=0,
                    data_key="axis")
    return g.op("MEAN", [inputs[0], axis], out_shape, g.loc(layer, "Mean"))


def lower_add(g, layer, inputs, out_shape, fused):
    if len(inputs) != 2:
        return None
    out = g.op("ADD", inputs, out_shape, g.loc(layer, "add"))
    g.fused[out] = _Fused(layer)
    return out


def lower_concatenate(g, layer, inputs, out_shape, fused):
    return g.op("CONCATENATION", inputs, out_shape, g.loc(layer, "concat"))


def lower_zero_padding(g, layer, inputs, out_shape, fused):
    pads = g.tensor((4, 2), "int32", name=g.loc(layer, "Pad/paddings"), channels=0,
                    data_key=("pad", layer.padding))
    return g.op("PAD", [inputs[0], pads], out_shape, g.loc(layer, "Pad"))


def _weighted(kind):
    """The lowering of a conv or dense layer with its activation (fused or its own operator)."""
    def lower(g, layer, inputs, out_shape, fused):
        name = _activation_name(layer)
        if name not in ("linear", *_ACTIVATION_OPS, *_SEPARATE_ACTIVATIONS):
            return None
        out = _weighted_op(g, layer, inputs[0], out_shape, kind)
        if name in _SEPARATE_ACTIVATIONS:
            op, what = _SEPARATE_ACTIVATIONS[name]
            return g.op(op, [out], out_shape, g.loc(layer, what))
        if name in _ACTIVATION_OPS:
            g.fused[out].act = g.loc(layer, _ACTIVATION_OPS[name])
        return out
    return lower


lower_conv = _weighted("conv")
lower_depthwise_conv = _weighted("depthwise")
lower_dense = _weighted("dense")


def keras_model_info(model):
    """The TFLite graph that the int8 converter makes from a plain Keras model.

    Each layer is lowered by its type's record (`mnas.registry`). Convolutions and dense
    layers absorb a following BatchNormalization and ReLU / ReLU6, as the converter folds and
    fuses them, and additions a following ReLU / ReLU6; a softmax or sigmoid activation becomes
    an operator of its own; Dropout disappears; a zero dense bias is dropped and equal zero
    biases share one buffer, as the converter does for freshly built models. Tensors are named
    as the converter names them (the names are a few percent of a small model's flatbuffer).

    Returns:
        (ModelInfo, predicted flatbuffer bytes).

    Raises:
        UnsupportedLayerError: A layer has no TFLite mapping here.
    """
    from mnas import registry

    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise errors.UnsupportedLayerError(
            f"Invalid value for `model`: expected a Keras model with one input and one output, "
            f"received {len(model.inputs)} inputs and {len(model.outputs)} outputs.")
    g = _GraphBuilder(model.name)
    chain = [layer for layer in model.layers if type(layer).__name__ != "InputLayer"]
    consumers = {}
    for layer in chain:
        for t in _layer_inputs(layer):
            consumers[id(t)] = consumers.get(id(t), 0) + 1
    ref = {id(model.inputs[0]): g.tensor((1,) + tuple(model.input_shape[1:]),
                                         name=f"serving_default_{model.input_names[0]}:0")}
    for layer in chain:
        inputs = [ref[id(t)] for t in _layer_inputs(layer)]
        out_shape = (1,) + tuple(layer.output_shape[1:])
        single = consumers.get(id(_layer_inputs(layer)[0]), 0) == 1
        fused = g.fused.get(inputs[0]) if single else None
        record = registry.get(layer, exact=True)
        out = None
        if record is not None and record.lower is not None:
            out = record.lower(g, layer, inputs, out_shape, fused)
        if out is None:
            described = type(layer).__name__
            if hasattr(layer, "activation"):
                described += f" with activation {_activation_name(layer)!r}"
            raise errors.UnsupportedLayerError(
                f"Unsupported layer {layer.name!r}: expected one of "
                f"{', '.join(registry.exported_names())} (conv and dense layers linear, ReLU, "
                f"softmax or sigmoid; BatchNormalization after them), received {described}.")
        outputs = layer._inbound_nodes[0].output_tensors
        for t in outputs if isinstance(outputs, (list, tuple)) else [outputs]:
            ref[id(t)] = out
    _finish_fused(g)
    output = ref[id(model.outputs[0])]
    g.rename(output, _OUTPUT_NAME)
    for number, index in enumerate(g.numbered):
        g.rename(index, _CONSTANT_NAME + (str(number) if number else ""))
    info = _ordered(g, output)
    return info, g.flatbuffer_bytes()


def _weighted_op(g, layer, x, out_shape, kind):
    """Adds a CONV_2D, DEPTHWISE_CONV_2D or FULLY_CONNECTED operator; names come later."""
    cin, cout = int(layer.input_shape[-1]), int(layer.output_shape[-1])
    if kind == "dense":
        if len(g.tensors[x].shape) != 2:
            raise errors.UnsupportedLayerError(
                f"Unsupported layer {layer.name!r}: expected a Dense layer on a flat input, "
                f"received input shape {layer.input_shape}.")
        w = g.tensor((cout, cin), name="", channels=cout, data_key="unique")
        out = g.op("FULLY_CONNECTED", [x, w, -1], out_shape, "")
    else:
        kh, kw = layer.kernel_size
        depthwise = kind == "depthwise"
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

