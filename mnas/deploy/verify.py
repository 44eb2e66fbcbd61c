"""Verification of an int8 model: it runs in the TFLite Micro interpreter over a test set,
is compared with TensorFlow Lite's built-in kernels and with the float model, and scored.

Example:

>>> from mnas.deploy import verify
>>> result = verify.verify(data, x, y, float_model=model)  # doctest: +SKIP
>>> result.int8, result.float  # doctest: +SKIP
"""

import dataclasses
import warnings

import numpy as np
import tensorflow as tf

from mnas.deploy.csources import TensorQuantization
from mnas.hardware import tflm


def _tflite_interpreter(data):
    with warnings.catch_warnings():
        # tf.lite.Interpreter warns that it moves to another package; it is still TensorFlow
        # Lite's own interpreter here.
        warnings.simplefilter("ignore")
        # TFLite's built-in kernels, without the XNNPACK delegate: XNNPACK rounds its int8
        # requantization differently (up to 4 steps apart from TFLite Micro on a DS-CNN),
        # while the built-in kernels are the ones TFLite Micro's kernels are ported from.
        interpreter = tf.lite.Interpreter(
            model_content=data,
            experimental_op_resolver_type=(
                tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES))
    interpreter.allocate_tensors()
    return interpreter


def io_quantization(tflite_bytes):
    """Returns the input's and the output's `TensorQuantization` of a TFLite model."""
    interpreter = _tflite_interpreter(tflm.read_model(tflite_bytes))

    def describe(details):
        scale, zero = details["quantization"]
        return TensorQuantization(tuple(int(d) for d in details["shape"]),
                                  np.dtype(details["dtype"]).name, float(scale), int(zero))

    return (describe(interpreter.get_input_details()[0]),
            describe(interpreter.get_output_details()[0]))


@dataclasses.dataclass(frozen=True)
class Verification:
    """What `verify` measured.

    Attributes:
        metric: `accuracy` or `auc`.
        int8: The metric of the int8 model run in TFLite Micro.
        float: The metric of the float model, or None when none was given.
        max_diff_steps: Largest difference between TFLite Micro's and TensorFlow Lite's raw
            int8 outputs on the same inputs, in quantization steps.
        mismatch_fraction: Fraction of output values where the two interpreters differ.
        samples: Number of test samples.
        int8_outputs: TFLite Micro's dequantized outputs per sample (not in `to_json`).
        float_outputs: The float model's outputs per sample, or None (not in `to_json`).
    """

    metric: str
    int8: float
    float: float | None
    max_diff_steps: int
    mismatch_fraction: float
    samples: int
    int8_outputs: np.ndarray | None = dataclasses.field(default=None, repr=False, compare=False)
    float_outputs: np.ndarray | None = dataclasses.field(default=None, repr=False,
                                                         compare=False)

    def to_json(self):
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if not f.name.endswith("_outputs")}


def auc(labels, scores):
    """Area under the ROC curve of `scores` for binary `labels` (1 = positive, anomalous)."""
    from sklearn import metrics  # slow to import, and only anomaly detection needs it

    return float(metrics.roc_auc_score(labels, scores))


def _metric_value(metric, x, y, outputs):
    outputs = outputs.reshape(len(outputs), -1)
    if metric == "accuracy":
        predicted = (outputs[:, 0] > 0.5) if outputs.shape[1] == 1 else outputs.argmax(axis=1)
        return float(np.mean(predicted == y))
    flat_x = x.reshape(len(x), -1)
    if outputs.shape[1] == flat_x.shape[1]:  # an autoencoder: score = reconstruction error
        return auc(y, np.mean((flat_x - outputs) ** 2, axis=1))
    return auc(y, outputs[:, -1])


def verify(tflite_bytes, x, y, float_model=None, metric="accuracy"):
    """Runs the int8 model in TFLite Micro over a test set and checks it.

    Args:
        tflite_bytes: An int8 TFLite flatbuffer (bytes or a path).
        x: Float test inputs, shape (samples, ...) as the float model takes them.
        y: Labels: class indices (or one-hot rows) for `accuracy`; 1 for anomalous and 0 for
            normal for `auc`.
        float_model: The float (or QAT) Keras model to compare with. Defaults to `None`.
        metric: `accuracy` (argmax, or > 0.5 for one output), or `auc` for anomaly
            detection: the score is the mean squared reconstruction error when the output is
            as large as the input, else the last output. Defaults to `accuracy`.

    Returns:
        A `Verification`.
    """
    if metric not in ("accuracy", "auc"):
        raise ValueError(
            f"Invalid value for `metric`: expected 'accuracy' or 'auc', received {metric!r}.")
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y)
    if y.ndim == 2 and metric == "accuracy":
        y = y.argmax(axis=1)
    if len(x) == 0 or len(x) != len(y):
        raise ValueError(
            f"Invalid value for `y`: expected one label per sample of `x` ({len(x)}), received "
            f"{len(y)}.")
    data = tflm.read_model(tflite_bytes)
    runner = tflm.MicroRunner(data)
    x_q = runner.quantize(x)
    micro_raw = runner.predict_raw(x_q)
    interpreter = _tflite_interpreter(data)
    source = interpreter.get_input_details()[0]
    output = interpreter.get_output_details()[0]
    lite_raw = []
    for sample in x_q:
        interpreter.set_tensor(source["index"], sample.reshape(source["shape"]))
        interpreter.invoke()
        lite_raw.append(interpreter.get_tensor(output["index"])[0].copy())
    diff = np.abs(micro_raw.astype(np.int64) - np.stack(lite_raw).astype(np.int64))
    float_value = float_outputs = None
    if float_model is not None:
        float_outputs = np.asarray(float_model.predict(x, batch_size=256, verbose=0),
                                   dtype=np.float32)
        float_value = _metric_value(metric, x, y, float_outputs)
    micro = runner.dequantize(micro_raw)
    return Verification(metric, _metric_value(metric, x, y, micro), float_value,
                        int(diff.max()), float(np.mean(diff > 0)), len(x), micro, float_outputs)
