"""Builds TFLite flatbuffers operator by operator, for models the converter cannot make.

Uses the object API of the generated schema that PyPI `tflite-micro` ships.

Example:

>>> b = Builder()
>>> x = b.tensor((1, 8), "int8", scale=0.1)
>>> y = b.tensor((1, 8), "int8", scale=0.1)
>>> b.op("LEAKY_RELU", [x], [y], alpha=0.2)
>>> data = b.build([x], [y])
"""

import numpy as np
from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

_TYPES = {"float32": schema.TensorType.FLOAT32, "int8": schema.TensorType.INT8,
          "int16": schema.TensorType.INT16, "int32": schema.TensorType.INT32,
          "int64": schema.TensorType.INT64, "bool": schema.TensorType.BOOL,
          "uint8": schema.TensorType.UINT8}
_NUMPY = {"float32": np.float32, "int8": np.int8, "int16": np.int16, "int32": np.int32,
          "int64": np.int64, "bool": np.bool_, "uint8": np.uint8}


def _options_name(op):
    """The BuiltinOptions member of an operator, by the schema's naming, or None."""
    special = {"CONV_2D": "Conv2DOptions", "DEPTHWISE_CONV_2D": "DepthwiseConv2DOptions",
               "AVERAGE_POOL_2D": "Pool2DOptions", "MAX_POOL_2D": "Pool2DOptions",
               "L2_POOL_2D": "Pool2DOptions", "CONCATENATION": "ConcatenationOptions",
               "FULLY_CONNECTED": "FullyConnectedOptions", "SVDF": "SVDFOptions",
               "UNIDIRECTIONAL_SEQUENCE_LSTM": "UnidirectionalSequenceLSTMOptions",
               "MEAN": "ReducerOptions", "SUM": "ReducerOptions", "REDUCE_MAX": "ReducerOptions",
               "REDUCE_MIN": "ReducerOptions", "REDUCE_PROD": "ReducerOptions",
               "REDUCE_ALL": "ReducerOptions", "REDUCE_ANY": "ReducerOptions",
               "RESHAPE": "ReshapeOptions", "SPLIT_V": "SplitVOptions",
               "L2_NORMALIZATION": "L2NormOptions", "LOG_SOFTMAX": "LogSoftmaxOptions",
               "PADV2": "PadV2Options", "SELECT_V2": "SelectV2Options",
               "RESIZE_BILINEAR": "ResizeBilinearOptions", "ARG_MAX": "ArgMaxOptions",
               "ARG_MIN": "ArgMinOptions", "RESIZE_NEAREST_NEIGHBOR":
               "ResizeNearestNeighborOptions", "BATCH_MATMUL": "BatchMatMulOptions",
               "REVERSE_V2": "ReverseV2Options", "BATCH_TO_SPACE_ND": "BatchToSpaceNDOptions",
               "SPACE_TO_BATCH_ND": "SpaceToBatchNDOptions", "ADD_N": "AddNOptions",
               "FLOOR_DIV": "FloorDivOptions", "FLOOR_MOD": "FloorModOptions",
               "SQUARED_DIFFERENCE": "SquaredDifferenceOptions", "GATHER_ND": "GatherNdOptions",
               "EMBEDDING_LOOKUP": "EmbeddingLookupSparseOptions", "ZEROS_LIKE":
               "ZerosLikeOptions", "BROADCAST_TO": "BroadcastToOptions"}
    if op in special:
        return special[op]
    guess = "".join(part.title() for part in op.split("_")) + "Options"
    return guess if hasattr(schema.BuiltinOptions, guess) else None


class Builder:
    """Collects tensors and operators of one subgraph, then packs a flatbuffer."""

    def __init__(self):
        self.tensors, self.buffers, self.operators, self.codes = [], [schema.BufferT()], [], []

    def tensor(self, shape, dtype="int8", data=None, scale=None, zero_point=0, variable=False,
               name=None, axis=0):
        """Adds a tensor; `data` makes it a constant; `scale` (float or list) quantizes it."""
        t = schema.TensorT()
        t.shape, t.type, t.isVariable = list(shape), _TYPES[dtype], variable
        t.name = name or f"t{len(self.tensors)}"
        t.buffer = 0
        if data is not None:
            buf = schema.BufferT()
            buf.data = list(np.asarray(data, _NUMPY[dtype]).reshape(-1).view(np.uint8))
            self.buffers.append(buf)
            t.buffer = len(self.buffers) - 1
        if scale is not None:
            q = schema.QuantizationParametersT()
            scales = list(np.atleast_1d(scale).astype(float))
            q.scale = scales
            q.zeroPoint = list(np.broadcast_to(zero_point, (len(scales),)).astype(int))
            q.quantizedDimension = axis
            t.quantization = q
        self.tensors.append(t)
        return len(self.tensors) - 1

    def op(self, name, inputs, outputs, intermediates=(), **options):
        """Adds operator `name` (a BuiltinOperator name) with its builtin options."""
        code = getattr(schema.BuiltinOperator, name)
        if code not in self.codes:
            self.codes.append(code)
        o = schema.OperatorT()
        o.opcodeIndex = self.codes.index(code)
        o.inputs, o.outputs = list(inputs), list(outputs)
        if intermediates:
            o.intermediates = list(intermediates)
        kind = _options_name(name)
        if kind is not None:
            o.builtinOptionsType = getattr(schema.BuiltinOptions, kind)
            table = getattr(schema, kind + "T")()
            for key, value in options.items():
                if not hasattr(table, key):
                    raise AttributeError(f"{kind} has no field {key!r}")
                setattr(table, key, value)
            o.builtinOptions = table
        elif options:
            raise AttributeError(f"{name} takes no options, received {sorted(options)}")
        self.operators.append(o)

    def build(self, inputs, outputs):
        """The flatbuffer's bytes, with the given subgraph inputs and outputs."""
        import flatbuffers

        graph = schema.SubGraphT()
        graph.tensors, graph.operators = self.tensors, self.operators
        graph.inputs, graph.outputs = list(inputs), list(outputs)
        model = schema.ModelT()
        model.version = 3
        model.subgraphs, model.buffers = [graph], self.buffers
        model.operatorCodes = []
        for code in self.codes:
            c = schema.OperatorCodeT()
            c.builtinCode, c.deprecatedBuiltinCode, c.version = code, min(code, 127), 1
            model.operatorCodes.append(c)
        builder = flatbuffers.Builder(1024)
        builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
        return bytes(builder.Output())
