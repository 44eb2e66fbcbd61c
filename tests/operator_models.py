"""One small model per TFLite Micro builtin operator, built with `tflite_builder`.

Each maker adds one operator (and its constant inputs) to a `tflite_builder.Builder` and
returns the subgraph's inputs and outputs. Activations are big enough (hundreds of bytes) that
the planned arena, not the interpreter's temporary allocations, sets the arena head.
"""

import numpy as np

S = 0.05  # A quantization scale for int8 activations.


def _i8(b, shape, scale=S):
    return b.tensor(shape, "int8", scale=scale)


def _f32(b, shape):
    return b.tensor(shape, "float32")


def _const(b, values, dtype="int32"):
    values = np.asarray(values)
    return b.tensor(values.shape, dtype, data=values)


def unary(name, dtype="int8", shape=(1, 8, 8, 4), out_dtype=None, out_shape=None,
          out_scale=S, out_zero=0, **options):
    def make(b):
        new = {"int8": _i8, "float32": _f32}
        x = new[dtype](b, shape) if dtype in new else b.tensor(shape, dtype)
        out_dtype_ = out_dtype or dtype
        shape_ = out_shape or shape
        y = (b.tensor(shape_, "int8", scale=out_scale, zero_point=out_zero)
             if out_dtype_ == "int8" else b.tensor(shape_, out_dtype_))
        b.op(name, [x], [y], **options)
        return [x], [y]
    return make


def binary(name, dtype="int8", out_dtype=None, shape=(1, 8, 8, 4), **options):
    def make(b):
        new = {"int8": _i8, "float32": _f32}
        make_ = new.get(dtype, lambda b_, s: b_.tensor(s, dtype))
        x, y = make_(b, shape), make_(b, shape)
        out = out_dtype or dtype
        z = new[out](b, shape) if out in new else b.tensor(shape, out)
        b.op(name, [x, y], [z], **options)
        return [x, y], [z]
    return make


def with_params(name, in_shape, out_shape, params, dtype="int8", **options):
    """An operator whose second and later inputs are int32 constants (shapes, axes, ...)."""
    def make(b):
        new = _i8 if dtype == "int8" else _f32
        x = new(b, in_shape)
        consts = [_const(b, p) for p in params]
        y = new(b, out_shape)
        b.op(name, [x] + consts, [y], **options)
        return [x], [y]
    return make


def multi_output(name, in_shape, out_shapes, params=(), first_params=(), **options):
    """An operator with several outputs (SPLIT, UNPACK, ...); int32 constants before/after x."""
    def make(b):
        x = _i8(b, in_shape)
        before = [_const(b, p) for p in first_params]
        after = [_const(b, p) for p in params]
        ys = [_i8(b, shape) for shape in out_shapes]
        b.op(name, before + [x] + after, ys, **options)
        return [x], ys
    return make


def multi_input(name, in_shapes, out_shape, **options):
    def make(b):
        xs = [_i8(b, shape) for shape in in_shapes]
        y = _i8(b, out_shape)
        b.op(name, xs, [y], **options)
        return xs, [y]
    return make


def depthwise(b):
    x = _i8(b, (1, 8, 8, 4))
    w, bias = _conv_weights(b, (1, 3, 3, 8), axis=3)
    y = _i8(b, (1, 8, 8, 8))
    b.op("DEPTHWISE_CONV_2D", [x, w, bias], [y], padding=0, strideW=1, strideH=1,
         depthMultiplier=2)
    return [x], [y]


def fully_connected(b):
    x = _i8(b, (1, 64))
    w = b.tensor((10, 64), "int8", data=np.ones((10, 64)), scale=0.01)
    bias = b.tensor((10,), "int32", data=np.zeros(10), scale=0.0005)
    y = _i8(b, (1, 10))
    b.op("FULLY_CONNECTED", [x, w, bias], [y])
    return [x], [y]


def gather(b):
    x = _i8(b, (16, 32))
    idx = _const(b, [3, 1, 4, 1, 5])
    y = _i8(b, (5, 32))
    b.op("GATHER", [x, idx], [y])
    return [x], [y]


def gather_nd(b):
    x = _i8(b, (16, 32))
    idx = _const(b, [[3], [1], [4]])
    y = _i8(b, (3, 32))
    b.op("GATHER_ND", [x, idx], [y])
    return [x], [y]


def embedding_lookup(b):
    idx = b.tensor((4,), "int32")
    table = b.tensor((16, 32), "float32", data=np.ones((16, 32)))
    y = _f32(b, (4, 32))
    b.op("EMBEDDING_LOOKUP", [idx, table], [y])
    return [idx], [y]


def select_v2(b):
    c = b.tensor((1, 8, 8, 4), "bool")
    x, y = _i8(b, (1, 8, 8, 4)), _i8(b, (1, 8, 8, 4))
    z = _i8(b, (1, 8, 8, 4))
    b.op("SELECT_V2", [c, x, y], [z])
    return [c, x, y], [z]


def dynamic_update_slice(b):
    x, u = _i8(b, (1, 8, 8, 4)), _i8(b, (1, 2, 2, 4))
    start = _const(b, [0, 1, 1, 0])
    y = _i8(b, (1, 8, 8, 4))
    b.op("DYNAMIC_UPDATE_SLICE", [x, u, start], [y])
    return [x, u], [y]


def shape_op(b):
    x = _i8(b, (1, 8, 8, 4))
    y = b.tensor((4,), "int32")
    b.op("SHAPE", [x], [y], outType=2)
    return [x], [y]


def fill(b):
    dims = _const(b, [16, 16])
    value = b.tensor((), "float32")
    y = _f32(b, (16, 16))
    b.op("FILL", [dims, value], [y])
    return [value], [y]


def reduce_all(b):
    x = b.tensor((1, 8, 8, 4), "bool")
    axis = _const(b, [1, 2])
    y = b.tensor((1, 4), "bool")
    b.op("REDUCE_ALL", [x, axis], [y])
    return [x], [y]


def broadcast_args(b):
    s1, s2 = b.tensor((4,), "int32"), b.tensor((4,), "int32")
    y = b.tensor((4,), "int32")
    b.op("BROADCAST_ARGS", [s1, s2], [y])
    return [s1, s2], [y]


def arg(name):
    def make(b):
        x = _i8(b, (1, 8, 8, 4))
        axis = _const(b, [3])
        y = b.tensor((1, 8, 8), "int32")
        b.op(name, [x, axis], [y], outputType=2)
        return [x], [y]
    return make


def cumsum(b):
    x = _f32(b, (1, 8, 8, 4))
    axis = _const(b, 1)
    y = _f32(b, (1, 8, 8, 4))
    b.op("CUMSUM", [x, axis], [y])
    return [x], [y]


def padv2(b):
    x = _i8(b, (1, 8, 8, 4))
    pads = _const(b, [[0, 0], [1, 1], [1, 1], [0, 0]])
    value = b.tensor((), "int8", data=np.zeros(()), scale=S)
    y = _i8(b, (1, 10, 10, 4))
    b.op("PADV2", [x, pads, value], [y])
    return [x], [y]


def _conv_weights(b, shape, axis=0):
    """Per-channel int8 weights of `shape` and their int32 bias (channels on `axis`)."""
    channels = shape[axis]
    w = b.tensor(shape, "int8", data=np.ones(shape), scale=[0.01] * channels, axis=axis)
    bias = b.tensor((channels,), "int32", data=np.zeros(channels), scale=[0.0005] * channels)
    return w, bias


def conv2d(b):
    x = _i8(b, (1, 8, 8, 4))
    w, bias = _conv_weights(b, (6, 3, 3, 4))
    y = _i8(b, (1, 8, 8, 6))
    b.op("CONV_2D", [x, w, bias], [y], padding=0, strideW=1, strideH=1)
    return [x], [y]


def transpose_conv(b):
    x = _i8(b, (1, 4, 4, 4))
    w, bias = _conv_weights(b, (6, 3, 3, 4))
    y = _i8(b, (1, 8, 8, 6))
    shape = _const(b, [1, 8, 8, 6])
    b.op("TRANSPOSE_CONV", [shape, w, x, bias], [y], padding=0, strideW=2, strideH=2)
    return [x], [y]


def batch_matmul(b, rows=8, inner=16, cols=12):
    x = _i8(b, (1, rows, inner))
    w = b.tensor((1, inner, cols), "int8", data=np.ones((1, inner, cols)), scale=0.01)
    y = _i8(b, (1, rows, cols))
    b.op("BATCH_MATMUL", [x, w], [y])
    return [x], [y]


def svdf(b):
    batch, features, units, memory, rank = 1, 16, 8, 10, 2
    filters = units * rank
    x = _i8(b, (batch, features))
    wf = b.tensor((filters, features), "int8", data=np.ones((filters, features)), scale=0.01)
    wt = b.tensor((filters, memory), "int16", data=np.ones((filters, memory)), scale=0.001)
    bias = b.tensor((units,), "int32", data=np.zeros(units), scale=0.001 * 0.001)
    state = b.tensor((batch, filters * memory), "int16", scale=0.001, variable=True)
    y = _i8(b, (batch, units))
    b.op("SVDF", [x, wf, wt, bias, state], [y], rank=rank, fusedActivationFunction=1)
    return [x], [y]


def lstm(b):
    """An int8 UNIDIRECTIONAL_SEQUENCE_LSTM (no peepholes, no projection), batch-major."""
    batch, steps, features, units = 1, 4, 8, 12
    x = _i8(b, (batch, steps, features))
    tensors = [x]
    for _ in range(4):  # input-to-{input, forget, cell, output} weights
        tensors.append(b.tensor((units, features), "int8",
                                data=np.ones((units, features)), scale=0.01))
    for _ in range(4):  # recurrent weights
        tensors.append(b.tensor((units, units), "int8", data=np.ones((units, units)),
                                scale=0.01))
    tensors += [-1, -1, -1]  # no peepholes
    for _ in range(4):  # gate biases
        tensors.append(b.tensor((units,), "int32", data=np.zeros(units), scale=0.0001))
    tensors += [-1, -1]  # no projection
    tensors.append(b.tensor((batch, units), "int8", scale=1 / 128, variable=True))
    tensors.append(b.tensor((batch, units), "int16", scale=2 ** -11, variable=True))
    tensors += [-1, -1, -1, -1]  # no layer norm
    y = b.tensor((batch, steps, units), "int8", scale=1 / 128)
    intermediates = [b.tensor((0,), "int16", scale=2 ** -12) for _ in range(5)]
    b.op("UNIDIRECTIONAL_SEQUENCE_LSTM", tensors, [y], intermediates=intermediates,
         fusedActivationFunction=4, timeMajor=False)
    return [x], [y]


MAKERS = {
    "CONV_2D": conv2d,
    "TRANSPOSE_CONV": transpose_conv,
    "BATCH_MATMUL": batch_matmul,
    "SVDF": svdf,
    "UNIDIRECTIONAL_SEQUENCE_LSTM": lstm,
    "LEAKY_RELU": unary("LEAKY_RELU", alpha=0.2),
    "RELU": unary("RELU"), "RELU6": unary("RELU6"),
    "LOGISTIC": unary("LOGISTIC", out_scale=1 / 256, out_zero=-128),
    "TANH": unary("TANH"), "HARD_SWISH": unary("HARD_SWISH"), "ELU": unary("ELU"),
    "ABS": unary("ABS"), "NEG": unary("NEG"), "RSQRT": unary("RSQRT"),
    "QUANTIZE": unary("QUANTIZE", "float32", out_dtype="int8"),
    "DEQUANTIZE": unary("DEQUANTIZE", "int8", out_dtype="float32"),
    "FLOOR": unary("FLOOR", "float32"), "CEIL": unary("CEIL", "float32"),
    "ROUND": unary("ROUND", "float32"), "SQRT": unary("SQRT", "float32"),
    "SIN": unary("SIN", "float32"), "COS": unary("COS", "float32"),
    "LOG": unary("LOG", "float32"), "EXP": unary("EXP", "float32"),
    "SQUARE": unary("SQUARE", "float32"),
    "LOGICAL_NOT": unary("LOGICAL_NOT", "bool"),
    "ZEROS_LIKE": unary("ZEROS_LIKE", "int32"),
    "CAST": unary("CAST", "int8", out_dtype="float32"),
    "L2_NORMALIZATION": unary("L2_NORMALIZATION", "float32"),
    "SOFTMAX": unary("SOFTMAX", shape=(1, 64), out_scale=1 / 256, out_zero=-128, beta=1.0),
    "LOG_SOFTMAX": unary("LOG_SOFTMAX", "float32", shape=(1, 64)),
    "ADD": binary("ADD"), "SUB": binary("SUB"), "MUL": binary("MUL"),
    "DIV": binary("DIV", "float32"), "MAXIMUM": binary("MAXIMUM"),
    "MINIMUM": binary("MINIMUM"), "SQUARED_DIFFERENCE": binary("SQUARED_DIFFERENCE"),
    "FLOOR_DIV": binary("FLOOR_DIV", "float32"), "FLOOR_MOD": binary("FLOOR_MOD", "float32"),
    "EQUAL": binary("EQUAL", out_dtype="bool"), "NOT_EQUAL": binary("NOT_EQUAL",
                                                                    out_dtype="bool"),
    "LESS": binary("LESS", out_dtype="bool"), "LESS_EQUAL": binary("LESS_EQUAL",
                                                                   out_dtype="bool"),
    "GREATER": binary("GREATER", out_dtype="bool"),
    "GREATER_EQUAL": binary("GREATER_EQUAL", out_dtype="bool"),
    "LOGICAL_AND": binary("LOGICAL_AND", "bool"), "LOGICAL_OR": binary("LOGICAL_OR", "bool"),
    "ADD_N": binary("ADD_N", "float32"),
    "PRELU": binary("PRELU"),
    "RESHAPE": with_params("RESHAPE", (1, 8, 8, 4), (1, 256), [[1, 256]], newShape=[1, 256]),
    "SQUEEZE": unary("SQUEEZE", shape=(1, 256), out_shape=(256,), squeezeDims=[0]),
    "EXPAND_DIMS": with_params("EXPAND_DIMS", (8, 32), (1, 8, 32), [[0]]),
    "TRANSPOSE": with_params("TRANSPOSE", (1, 8, 8, 4), (1, 4, 8, 8), [[0, 3, 1, 2]]),
    "STRIDED_SLICE": with_params("STRIDED_SLICE", (1, 8, 8, 4), (1, 4, 4, 4),
                                 [[0, 0, 0, 0], [1, 8, 8, 4], [1, 2, 2, 1]]),
    "SLICE": with_params("SLICE", (1, 8, 8, 4), (1, 4, 4, 4), [[0, 2, 2, 0], [1, 4, 4, 4]]),
    "PAD": with_params("PAD", (1, 8, 8, 4), (1, 10, 10, 4), [[[0, 0], [1, 1], [1, 1], [0, 0]]]),
    "MIRROR_PAD": with_params("MIRROR_PAD", (1, 8, 8, 4), (1, 10, 10, 4),
                              [[[0, 0], [1, 1], [1, 1], [0, 0]]]),
    "SPACE_TO_DEPTH": unary("SPACE_TO_DEPTH", out_shape=(1, 4, 4, 16), blockSize=2),
    "DEPTH_TO_SPACE": unary("DEPTH_TO_SPACE", out_shape=(1, 16, 16, 1), blockSize=2),
    "REVERSE_V2": with_params("REVERSE_V2", (1, 8, 8, 4), (1, 8, 8, 4), [[1]]),
    "MEAN": with_params("MEAN", (1, 8, 8, 4), (1, 4), [[1, 2]]),
    "SUM": with_params("SUM", (1, 8, 8, 4), (1, 4), [[1, 2]]),
    "REDUCE_MAX": with_params("REDUCE_MAX", (1, 8, 8, 4), (1, 4), [[1, 2]]),
    "REDUCE_MIN": with_params("REDUCE_MIN", (1, 8, 8, 4), (1, 4), [[1, 2]]),
    "AVERAGE_POOL_2D": unary("AVERAGE_POOL_2D", out_shape=(1, 4, 4, 4), strideW=2,
                             strideH=2, filterWidth=2, filterHeight=2),
    "MAX_POOL_2D": unary("MAX_POOL_2D", out_shape=(1, 4, 4, 4), strideW=2, strideH=2,
                         filterWidth=2, filterHeight=2),
    "DEPTHWISE_CONV_2D": depthwise,
    "FULLY_CONNECTED": fully_connected,
    "CONCATENATION": multi_input("CONCATENATION", [(1, 8, 8, 4), (1, 8, 8, 2)], (1, 8, 8, 6),
                                 axis=3),
    "PACK": multi_input("PACK", [(8, 16), (8, 16)], (2, 8, 16), valuesCount=2, axis=0),
    "UNPACK": multi_output("UNPACK", (2, 8, 16), [(8, 16), (8, 16)], num=2, axis=0),
    "SPLIT": multi_output("SPLIT", (1, 8, 8, 4), [(1, 8, 8, 2)] * 2, first_params=[[3]],
                          numSplits=2),
    "SPLIT_V": multi_output("SPLIT_V", (1, 8, 8, 4), [(1, 8, 8, 1), (1, 8, 8, 3)],
                            params=[[1, 3], [3]], numSplits=2),
    "GATHER": gather,
    "GATHER_ND": gather_nd,
    "EMBEDDING_LOOKUP": embedding_lookup,
    "SELECT_V2": select_v2,
    "DYNAMIC_UPDATE_SLICE": dynamic_update_slice,
    "SHAPE": shape_op,
    "FILL": fill,
    "BROADCAST_ARGS": broadcast_args,
    "BROADCAST_TO": with_params("BROADCAST_TO", (1, 1, 8, 4), (1, 8, 8, 4), [[1, 8, 8, 4]]),
    "ARG_MAX": arg("ARG_MAX"), "ARG_MIN": arg("ARG_MIN"),
    "CUMSUM": cumsum,
    "PADV2": padv2,
    "BATCH_TO_SPACE_ND": with_params("BATCH_TO_SPACE_ND", (4, 4, 4, 4), (1, 8, 8, 4),
                                     [[2, 2], [[0, 0], [0, 0]]]),
    "SPACE_TO_BATCH_ND": with_params("SPACE_TO_BATCH_ND", (1, 8, 8, 4), (4, 4, 4, 4),
                                     [[2, 2], [[0, 0], [0, 0]]]),
    "REDUCE_ALL": reduce_all,
    "L2_POOL_2D": unary("L2_POOL_2D", "float32", out_shape=(1, 4, 4, 4), strideW=2,
                        strideH=2, filterWidth=2, filterHeight=2),
    "RESIZE_NEAREST_NEIGHBOR": with_params("RESIZE_NEAREST_NEIGHBOR", (1, 4, 4, 4),
                                           (1, 8, 8, 4), [[8, 8]]),
    "RESIZE_BILINEAR": with_params("RESIZE_BILINEAR", (1, 4, 4, 4), (1, 8, 8, 4), [[8, 8]]),
}
