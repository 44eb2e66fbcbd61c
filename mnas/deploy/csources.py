"""C sources that drop into a TFLite Micro project: the model, its arena, its operators.

`write_c_sources` writes `model.tflite`, `model_data.cc` and `model_data.h`:

- the flatbuffer as a 16-byte aligned array, the input's and output's quantization, the
  input's shape and the label names;
- `kTensorArenaSize`: the arena the TFLite Micro interpreter measured for the model, rounded
  up to 16 bytes, with the 32-bit estimate beside it (`mnas.deploy.arena32`);
- `RegisterModelOps(MicroMutableOpResolver<kModelOpCount>&)`: adds exactly the model's
  operators (`model_operators`), so no unused kernel is linked;
- the feature settings the model expects (`feature_settings`), when given.

Nothing here imports TensorFlow: the flatbuffer is read by `mnas.estimate` and measured by
`mnas.tflm`.

Example:

>>> from mnas.deploy import csources
>>> csources.resolver_calls(["CONV_2D", "SOFTMAX"])
['AddConv2D', 'AddSoftmax']
"""

import dataclasses
import os
import re

import numpy as np

from mnas.files import write_atomic
from mnas.hardware import estimate, tflite_file, tflm

# TFLite Micro's MicroMutableOpResolver method for each operator mnas reads
# (micro_mutable_op_resolver.h).
RESOLVER_METHODS = {
    "ADD": "AddAdd", "AVERAGE_POOL_2D": "AddAveragePool2D",
    "CONCATENATION": "AddConcatenation", "CONV_2D": "AddConv2D",
    "DEPTHWISE_CONV_2D": "AddDepthwiseConv2D", "DEQUANTIZE": "AddDequantize",
    "FULLY_CONNECTED": "AddFullyConnected", "LOGISTIC": "AddLogistic",
    "MAX_POOL_2D": "AddMaxPool2D", "MEAN": "AddMean", "MUL": "AddMul", "PAD": "AddPad",
    "QUANTIZE": "AddQuantize", "RELU": "AddRelu", "RELU6": "AddRelu6",
    "RESHAPE": "AddReshape", "SOFTMAX": "AddSoftmax",
}
ARENA_ALIGNMENT = 16
_C_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


@dataclasses.dataclass(frozen=True)
class TensorQuantization:
    """How firmware feeds or reads a quantized tensor: q = round(x / scale) + zero_point."""

    shape: tuple
    dtype: str
    scale: float
    zero_point: int


def model_operators(model):
    """The distinct operators of a model, in order of first use.

    Args:
        model: A `ModelInfo`, or TFLite flatbuffer bytes or path.
    """
    if not isinstance(model, tflite_file.ModelInfo):
        model = estimate.read_model_info(model)
    return list(dict.fromkeys(op.name for graph in model.all_subgraphs()
                              for op in graph.operators))


def resolver_calls(operators):
    """The `MicroMutableOpResolver` methods that register `operators`."""
    return [RESOLVER_METHODS[name] for name in operators]


def io_quantization(model):
    """The input's and output's `TensorQuantization`, as TFLite Micro reads them."""
    runner = tflm.MicroRunner(model)

    def describe(details):
        q = details["quantization_parameters"]
        scale = float(q["scales"][0]) if len(q["scales"]) else 0.0
        zero = int(q["zero_points"][0]) if len(q["zero_points"]) else 0
        return TensorQuantization(tuple(int(d) for d in details["shape"]),
                                  np.dtype(details["dtype"]).name, scale, zero)

    return describe(runner.input_details), describe(runner.output_details)


def c_string(text):
    """A C string literal of `text` (UTF-8, octal escapes)."""
    out = []
    for byte in str(text).encode():
        char = chr(byte)
        if char in '"\\' or not 32 <= byte < 127 or char == "?":
            out.append(f"\\{byte:03o}")  # octal escapes never run into the next character
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def c_float(value):
    """A C float literal that round-trips `value` as a float32."""
    text = f"{np.float32(value).item():.9g}"  # 9 digits round-trip a float32 exactly
    return (text if any(c in text for c in ".e") else text + ".0") + "f"


def _align(n, alignment=ARENA_ALIGNMENT):
    return -(-int(n) // alignment) * alignment


def _feature_lines(settings):
    """`constexpr` lines for a flat dict of feature settings (numbers, bools, strings, lists
    of numbers)."""
    lines = []
    for key, value in settings.items():
        name = "kFeature" + "".join(part.capitalize() for part in key.split("_"))
        if isinstance(value, (list, tuple)):
            items = ", ".join(c_float(float(v)) for v in value)
            lines.append(f"constexpr float {name}[{len(value)}] = {{{items}}};")
        elif isinstance(value, bool):
            lines.append(f"constexpr bool {name} = {'true' if value else 'false'};")
        elif isinstance(value, int):
            lines.append(f"constexpr int {name} = {value};")
        elif isinstance(value, float):
            lines.append(f"constexpr float {name} = {c_float(value)};")
        else:
            lines.append(f"constexpr const char* {name} = {c_string(value)};")
    return lines


def write_c_sources(tflite_bytes, out_dir, name="model", labels=None, arena_bytes=None,
                    features=None):
    """Writes `model.tflite`, `model_data.cc` and `model_data.h` for TFLite Micro firmware.

    Args:
        tflite_bytes: An int8 TFLite flatbuffer (bytes or a path).
        out_dir: Output directory; created if missing.
        name: C identifier part of the array names. Defaults to `"model"`.
        labels: Class names in output order. Defaults to `None` (no label table).
        arena_bytes: The arena TFLite Micro needs. Defaults to measuring it in the
            interpreter (`mnas.tflm.arena_usage`).
        features: A flat dict of the feature settings the model expects (e.g.
            `mnas.datasets.features.MfccSettings.describe()`), written as `kFeature...`
            constants. Defaults to `None`.

    Returns:
        A dict with the paths written under the keys `tflite`, `cc` and `h`.

    Raises:
        InvalidModelFileError: `tflite_bytes` is not a TFLite flatbuffer.
        UnknownOperatorError: The model holds an operator with no resolver method here.
    """
    from mnas.deploy import arena32

    data = tflm.read_model(tflite_bytes)
    if not isinstance(name, str) or not _C_NAME.match(name):
        raise ValueError(
            f"Invalid value for `name`: expected a C identifier, received {name!r}.")
    labels = [] if labels is None else [str(label) for label in labels]
    source, output = io_quantization(data)
    if labels and len(labels) != int(np.prod(output.shape[1:])):
        raise ValueError(
            f"Invalid value for `labels`: expected {int(np.prod(output.shape[1:]))} names, one "
            f"per model output, received {len(labels)}.")
    info = tflite_file.parse_model(data)
    operators = model_operators(info)
    if arena_bytes is None:
        arena_bytes = tflm.arena_usage(data).total_bytes
    target, host_tail, target_tail = arena32.target_arena_bytes(info, arena_bytes)
    os.makedirs(out_dir, exist_ok=True)
    header = _header(name, operators, _align(arena_bytes), arena_bytes, host_tail, target,
                     target_tail, features or {})
    source_text = _source(name, data, source, output, labels)
    return {
        "tflite": write_atomic(os.path.join(out_dir, "model.tflite"), data),
        "cc": write_atomic(os.path.join(out_dir, "model_data.cc"), source_text),
        "h": write_atomic(os.path.join(out_dir, "model_data.h"), header),
    }


def _header(name, operators, arena, measured, host_tail, target, target_tail, features):
    g = f"g_{name}"
    guard = f"MNAS_{name.upper()}_MODEL_DATA_H_"
    calls = "\n".join(f"  if (resolver.{method}() != kTfLiteOk) return kTfLiteError;"
                      for method in resolver_calls(operators))
    feature_block = ""
    if features:
        feature_block = ("\n// The features the model was trained on (features.h computes them)."
                         "\n" + "\n".join(_feature_lines(features)) + "\n")
    return f"""\
// The int8 TFLite Micro model `{name}` and what firmware needs to run it.
// Quantize a feature x as q = clamp(round(x / {g}_input_scale) + {g}_input_zero_point,
// -128, 127); read an output q as (q - {g}_output_zero_point) * {g}_output_scale.
//
//   alignas(16) static uint8_t tensor_arena[kTensorArenaSize];
//   ModelOpResolver resolver;
//   RegisterModelOps(resolver);
//   tflite::MicroInterpreter interpreter(tflite::GetModel({g}_model_data), resolver,
//                                        tensor_arena, kTensorArenaSize);
#ifndef {guard}
#define {guard}

extern const unsigned char {g}_model_data[];
extern const unsigned int {g}_model_data_size;

extern const float {g}_input_scale;
extern const int {g}_input_zero_point;
extern const int {g}_input_dims[];
extern const int {g}_input_dims_count;

extern const float {g}_output_scale;
extern const int {g}_output_zero_point;

extern const char* const {g}_labels[];
extern const int {g}_label_count;

// Tensor arena: {measured} bytes measured in the TFLite Micro interpreter (64-bit host build,
// whose persistent part is {host_tail} bytes), rounded up to {ARENA_ALIGNMENT}. A 32-bit
// microcontroller needs about {target} bytes (persistent part about {target_tail} bytes,
// from TFLite Micro's structure layouts for a 32-bit ABI; an estimate, not measured).
constexpr int kTensorArenaSize = {arena};
{feature_block}
#ifndef MNAS_NO_OP_RESOLVER
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"

// Exactly the model's operators: {", ".join(operators)}.
constexpr int kModelOpCount = {len(operators)};
using ModelOpResolver = tflite::MicroMutableOpResolver<kModelOpCount>;

inline TfLiteStatus RegisterModelOps(ModelOpResolver& resolver) {{
{calls}
  return kTfLiteOk;
}}
#endif  // MNAS_NO_OP_RESOLVER

#endif  // {guard}
"""


def _source(name, data, source, output, labels):
    g = f"g_{name}"
    rows = [", ".join(f"0x{b:02x}" for b in data[i:i + 12]) for i in range(0, len(data), 12)]
    body = ",\n    ".join(rows)
    dims = ", ".join(str(d) for d in source.shape)
    label_rows = "".join(f"    {c_string(label)},\n" for label in labels)
    label_table = (f"const char* const {g}_labels[] = {{\n{label_rows}}};\n" if labels
                   else f"const char* const {g}_labels[] = {{nullptr}};\n")
    return f"""\
// The int8 TFLite Micro model `{name}` ({len(data)} bytes) and its input and output
// quantization. Generated by mnas from model.tflite.
#define MNAS_NO_OP_RESOLVER  // The array needs no TFLite Micro header.
#include "model_data.h"

// TFLite Micro reads the flatbuffer in place, which needs 16-byte alignment.
alignas(16) const unsigned char {g}_model_data[] = {{
    {body}
}};
const unsigned int {g}_model_data_size = {len(data)};

const float {g}_input_scale = {c_float(source.scale)};
const int {g}_input_zero_point = {source.zero_point};
const int {g}_input_dims[] = {{{dims}}};
const int {g}_input_dims_count = {len(source.shape)};

const float {g}_output_scale = {c_float(output.scale)};
const int {g}_output_zero_point = {output.zero_point};

{label_table}const int {g}_label_count = {len(labels)};
"""


def write_task_sources(tflite_bytes, out_dir, task, labels=None, standardize=None):
    """`write_c_sources` with the task's feature settings, and the C features for kws.

    Args:
        tflite_bytes: An int8 TFLite flatbuffer (bytes or a path).
        out_dir: Output directory.
        task: `kws`, `ad` or `vww`; the audio tasks (`kws`, `ad`) also get `features.c` and
            `features.h`.
        labels: Class names in output order. Defaults to `None`.
        standardize: `{"mean": [...], "std": [...]}` per feature coefficient, which the
            firmware applies, `(x - mean) / std`, before quantizing the input; written as
            `kFeatureStandardizeMean` and `kFeatureStandardizeStd`. Defaults to `None`.

    Returns:
        The paths written: `tflite`, `cc`, `h`, and for kws and ad `features_c`, `features_h`.
    """
    from mnas.datasets import features

    settings = features.task_settings(task)
    described = dict(settings.describe()) if settings is not None else {}
    if standardize:
        described.update(standardize_mean=list(standardize["mean"]),
                         standardize_std=list(standardize["std"]))
    paths = write_c_sources(tflite_bytes, out_dir, labels=labels, features=described or None)
    if isinstance(settings, (features.MfccSettings, features.LogMelSettings)):
        from mnas.deploy import features_c

        written = features_c.write_features_c(settings, out_dir)
        paths.update(features_c=written["c"], features_h=written["h"])
    return paths
