"""From a trained plain Keras model to a verified int8 TFLite Micro deployment.

- `quantize_qat` fine-tunes a quantization-aware copy of the model (tensorflow-model-optimization);
- `convert_int8` converts a plain (post-training quantization) or QAT model to a full-int8
  flatbuffer: int8 input and output, per-channel convolution weights;
- `write_c_sources` (from `mnas.deploy.csources`) writes `model.tflite`, `model_data.cc` and
  `model_data.h` for firmware: the array, the arena size, the op resolver, feature settings;
- `mnas.deploy.verify` runs the int8 model in the TFLite Micro interpreter over a test set
  and compares it with the float model and with TensorFlow Lite's own interpreter;
- `check_fit` checks the measured arena and the model size against a device.

Layers that tensorflow-model-optimization cannot quantize or TFLite Micro cannot run are
refused with an `UnsupportedLayerError` before any training or conversion starts.

Example:

>>> import numpy as np
>>> import mnas
>>> import tf_keras as keras
>>> from mnas import export
>>> x = np.random.default_rng(0).normal(size=(64, 8, 4, 1)).astype("float32")
>>> y = (x.mean(axis=(1, 2, 3)) > 0).astype("int32")
>>> model = keras.Sequential([keras.Input((8, 4, 1)), keras.layers.Flatten(),
...                           keras.layers.Dense(2), keras.layers.Softmax()])
>>> data = export.convert_int8(model, x)  # post-training quantization
>>> export.check_fit(data, "STM32F446RE").fits
True
"""

import dataclasses

import numpy as np
import tensorflow as tf
import tensorflow_model_optimization as tfmot
import tf_keras as keras

from mnas import devices, errors, registry
from mnas.deploy.csources import (  # noqa: F401  (public here too)
    TensorQuantization, write_c_sources)
from mnas.files import write_atomic  # noqa: F401  (public here too)
from mnas.hardware import estimate, tflm

# Layer types that tensorflow-model-optimization's default 8-bit scheme quantizes and whose
# converted operators TFLite Micro runs in int8: those with a lowering in `mnas.registry`.
SUPPORTED_LAYERS = ("InputLayer",) + registry.exported_names()

_RECURRENT = "a stack of Conv2D / DepthwiseConv2D blocks over the time axis (as in DS-CNN)"
_ALTERNATIVES = {
    "LSTM": _RECURRENT, "GRU": _RECURRENT, "SimpleRNN": _RECURRENT, "RNN": _RECURRENT,
    "Bidirectional": _RECURRENT, "ConvLSTM2D": _RECURRENT,
    "Lambda": "a built-in Keras layer (e.g. ReLU, Add, Reshape) instead of the Lambda",
    "SeparableConv2D": "DepthwiseConv2D followed by a 1x1 Conv2D",
    "Conv1D": "Conv2D with a (k, 1) kernel on a (time, 1, channels) input",
    "LayerNormalization": "BatchNormalization",
    "GlobalMaxPooling2D": "GlobalAveragePooling2D",
    "LeakyReLU": "ReLU", "PReLU": "ReLU", "ELU": "ReLU",
}
_SEARCHABLE = ("a plain Keras model derived from the supernet (searchable layers are never "
               "converted)")
REPRESENTATIVE_SAMPLES = 200


def check_layers(model, for_qat=False):
    """Raises `UnsupportedLayerError` for the first layer mnas cannot quantize and deploy.

    Args:
        model: A Keras model (Sequential or Functional; nested models are searched too).
        for_qat: Whether the model is about to be wrapped for quantization-aware training,
            which does not accept nested models. Defaults to `False`.

    Raises:
        UnsupportedLayerError: Naming the layer, its type, and what to use instead.
    """
    if not isinstance(model, keras.Model):
        raise ValueError(
            f"Invalid value for `model`: expected a tf_keras Model, received "
            f"{type(model).__name__}.")
    if len(model.inputs or ()) != 1 or len(model.outputs or ()) != 1:
        raise errors.UnsupportedLayerError(
            f"Invalid value for `model`: expected one input and one output, received "
            f"{len(model.inputs or ())} inputs and {len(model.outputs or ())} outputs.")
    for layer in model.layers:
        kind = type(layer).__name__
        if isinstance(layer, keras.Model):
            if for_qat:
                raise errors.UnsupportedLayerError(
                    f"Layer {layer.name!r} ({kind}) is a nested model, which quantization-aware "
                    f"training cannot wrap; use its layers directly in the outer model.")
            check_layers(layer)
            continue
        record = registry.get(layer, exact=True)
        if kind != "InputLayer" and (record is None or not record.exported):
            instead = _SEARCHABLE if kind.startswith("Searchable") else _ALTERNATIVES.get(
                kind, f"one of {', '.join(SUPPORTED_LAYERS)}")
            raise errors.UnsupportedLayerError(
                f"Layer {layer.name!r} ({kind}) cannot be quantized to int8 for TFLite Micro; "
                f"use {instead}.")
        if for_qat and kind == "BatchNormalization":
            _check_folded(layer)
        allowed = record.activations if record is not None else ()
        activation = getattr(getattr(layer, "activation", None), "__name__", None)
        if hasattr(layer, "activation") and activation not in allowed:
            relu6 = "" if "relu6" in allowed else " (relu6 as a separate ReLU(6.0) layer)"
            raise errors.UnsupportedLayerError(
                f"Layer {layer.name!r} ({kind}) has activation {activation or layer.activation!r}"
                f", which cannot be quantized to int8 for TFLite Micro; use one of "
                f"{allowed}{relu6}.")


def _check_folded(layer):
    """QAT folds BatchNormalization only into the Conv2D, DepthwiseConv2D or Dense before it."""
    for node in layer.inbound_nodes:
        before = node.inbound_layers
        name = getattr(getattr(before, "activation", None), "__name__", None)
        if type(before).__name__ not in ("Conv2D", "DepthwiseConv2D", "Dense") or (
                name != "linear"):
            raise errors.UnsupportedLayerError(
                f"Layer {layer.name!r} (BatchNormalization) follows "
                f"{getattr(before, 'name', before)!r} ({type(before).__name__}), which "
                f"quantization-aware training cannot fold it into; put it directly after a "
                f"Conv2D, DepthwiseConv2D or Dense layer without activation.")


def _training_arrays(data, what):
    """(x, y) from a tuple of arrays, or None for a tf.data.Dataset."""
    if isinstance(data, tf.data.Dataset):
        return None
    if isinstance(data, tuple) and len(data) == 2:
        return np.asarray(data[0], dtype=np.float32), np.asarray(data[1])
    raise ValueError(
        f"Invalid value for `{what}`: expected an (x, y) tuple of arrays or a tf.data.Dataset "
        f"of (x, y) batches, received {type(data).__name__}.")


def quantize_qat(model, train_data, epochs, *, validation_data=None, loss=None, metrics=None,
                 learning_rate=1e-4, batch_size=32, callbacks=None, initial_epoch=0, verbose=0,
                 steps_per_epoch=None):
    """Fine-tunes a quantization-aware copy of `model` (tfmot's default 8-bit scheme).

    Args:
        model: A trained plain Keras model; it is not changed.
        train_data: An (x, y) tuple of arrays, or a tf.data.Dataset of (x, y) batches.
        epochs: Fine-tuning epochs, at least 1 (the quantization ranges are learnt from data).
        validation_data: Same forms as `train_data`. Defaults to `None`.
        loss: Training loss. Defaults to the loss `model` was compiled with.
        metrics: Metrics to compile the QAT model with. Defaults to `None` (the loss only).
        learning_rate: Adam learning rate; fine-tuning wants a small one. Defaults to `1e-4`.
        batch_size: Batch size when `train_data` is arrays. Defaults to `32`.
        callbacks: Keras callbacks for `fit`. Defaults to `None`.
        initial_epoch: Epoch to start from, when resuming with a callback that restores the
            QAT model's weights (e.g. `mnas.checkpoints.EpochCheckpoint`). Defaults to `0`.
        verbose: Keras `fit` verbosity. Defaults to `0`.
        steps_per_epoch: Batches per epoch when `train_data` is a dataset holding several
            epochs back to back. Defaults to `None` (one pass over `train_data` per epoch).

    Returns:
        The fine-tuned QAT model, ready for `convert_int8`.

    Raises:
        UnsupportedLayerError: `model` holds a layer that cannot be quantized.
    """
    check_layers(model, for_qat=True)
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(
            f"Invalid value for `epochs`: expected a whole number of at least 1, received "
            f"{epochs!r}.")
    loss = loss if loss is not None else getattr(model, "loss", None)
    if loss is None:
        raise ValueError(
            "Invalid value for `loss`: expected a Keras loss (or a compiled `model`), received "
            "None and an uncompiled model.")
    arrays = _training_arrays(train_data, "train_data")
    if validation_data is not None:
        _training_arrays(validation_data, "validation_data")
    qat_model = tfmot.quantization.keras.quantize_model(model)
    qat_model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=loss,
                      metrics=metrics)
    if arrays is None:
        qat_model.fit(train_data, epochs=epochs, validation_data=validation_data,
                      callbacks=callbacks, initial_epoch=initial_epoch, verbose=verbose,
                      steps_per_epoch=steps_per_epoch)
    else:
        qat_model.fit(*arrays, batch_size=batch_size, epochs=epochs, shuffle=True,
                      validation_data=validation_data, callbacks=callbacks,
                      initial_epoch=initial_epoch, verbose=verbose)
    return qat_model


def _representative_samples(data, num_samples):
    """Up to `num_samples` single float samples, each with a batch axis of 1."""
    if isinstance(data, tf.data.Dataset):
        samples = []
        for batch in data:
            x = batch[0] if isinstance(batch, tuple) else batch
            samples.extend(np.asarray(x, dtype=np.float32))
            if len(samples) >= num_samples:
                break
        x = np.stack(samples[:num_samples]) if samples else np.zeros((0,))
    else:
        if isinstance(data, tuple) and len(data) == 2:
            data = data[0]
        x = np.asarray(data, dtype=np.float32)
        if len(x) > num_samples:
            # A fixed draw keeps conversions reproducible while covering the whole set.
            keep = np.random.default_rng(0).choice(len(x), num_samples, replace=False)
            x = x[np.sort(keep)]
    if x.ndim < 2 or len(x) == 0:
        raise ValueError(
            f"Invalid value for `representative_data`: expected a non-empty batch of input "
            f"samples, received an array of shape {x.shape}.")
    return x[:, None]


def convert_int8(model, representative_data, *, num_samples=REPRESENTATIVE_SAMPLES):
    """Converts a plain or QAT Keras model to a full-int8 TFLite flatbuffer.

    A plain float model is quantized after training (PTQ) with ranges calibrated on
    `representative_data`; a QAT model brings its own ranges, and the converter still
    needs the representative data to quantize the input and output.

    Args:
        model: A plain Keras model, or one returned by `quantize_qat`.
        representative_data: Inputs drawn from the training data: an array of samples, an
            (x, y) tuple, or a tf.data.Dataset of x or (x, y) batches.
        num_samples: How many samples calibrate the ranges. Defaults to `200`.

    Returns:
        The flatbuffer bytes: int8 input and output, int8 weights (per output channel for
        convolutions), int32 biases.

    Raises:
        UnsupportedLayerError: `model` holds a layer that cannot be quantized.
    """
    if not _is_qat(model):
        check_layers(model)
    samples = _representative_samples(representative_data, num_samples)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([s] for s in samples)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return bytes(converter.convert())


def _is_qat(model):
    return isinstance(model, keras.Model) and any(
        isinstance(layer, tfmot.quantization.keras.QuantizeWrapper) for layer in model.layers)


@dataclasses.dataclass(frozen=True)
class Fit:
    """A model's measured needs against one device's memory and an optional latency budget.

    The arena and the device's SRAM reserve must fit in its SRAM, the flatbuffer and the
    flash reserve in its flash, and the estimated latency within `latency_budget_ms` if set.
    """

    device: str
    sram_bytes: int
    flash_bytes: int
    sram_reserve_bytes: int
    flash_reserve_bytes: int
    arena_bytes: int
    tflite_bytes: int
    ops: int | None = None
    latency_ms: float | None = None
    latency_budget_ms: float | None = None

    @property
    def sram_used_bytes(self):
        return self.arena_bytes + self.sram_reserve_bytes

    @property
    def flash_used_bytes(self):
        return self.tflite_bytes + self.flash_reserve_bytes

    @property
    def failures(self):
        """Why the model does not fit, one sentence each; empty when it fits."""
        out = []
        if self.sram_used_bytes > self.sram_bytes:
            out.append(f"SRAM: arena {self.arena_bytes} + reserve {self.sram_reserve_bytes} = "
                       f"{self.sram_used_bytes} bytes > {self.sram_bytes} bytes")
        if self.flash_used_bytes > self.flash_bytes:
            out.append(f"flash: model {self.tflite_bytes} + reserve {self.flash_reserve_bytes} "
                       f"= {self.flash_used_bytes} bytes > {self.flash_bytes} bytes")
        if self.latency_budget_ms is not None and (
                self.latency_ms is None or self.latency_ms > self.latency_budget_ms):
            estimate = "not estimated" if self.latency_ms is None else f"{self.latency_ms:.1f} ms"
            out.append(f"latency: {estimate} > {self.latency_budget_ms} ms")
        return out

    @property
    def fits(self):
        return not self.failures

    def to_json(self):
        return dict(dataclasses.asdict(self), sram_used_bytes=self.sram_used_bytes,
                    flash_used_bytes=self.flash_used_bytes, fits=self.fits,
                    failures=self.failures)


def _fit(device, arena_bytes, tflite_bytes, ops, backbone, latency_budget_ms, model=None):
    device = devices.get_device(device)
    if model is not None:  # The device's latency model over the model's operators.
        latency = float(device.model_latency_ms(model, backbone))
    else:
        latency = None if ops is None else float(device.latency_ms(ops, backbone))
    return Fit(device.name, device.sram_bytes, device.flash_bytes, device.sram_reserve_bytes,
               device.flash_reserve_bytes, int(arena_bytes), int(tflite_bytes),
               None if ops is None else int(ops), latency, latency_budget_ms)


def check_fit(tflite_bytes, device, arena_bytes=None, *, ops=None, backbone="default",
              latency_budget_ms=None):
    """Checks a model against a device: arena + SRAM reserve <= SRAM, model + reserve <= flash.

    Args:
        tflite_bytes: An int8 TFLite flatbuffer (bytes or a path).
        device: A `Device`, a built-in device name, or the path of a JSON profile.
        arena_bytes: The arena the model needs. Defaults to measuring it in TFLite Micro.
        ops: Ops per inference (2 per multiply-accumulate), for the latency estimate.
            Defaults to the count `mnas.estimate.estimate_tflite` makes from the flatbuffer.
        backbone: The throughput entry of a device profile without a per-operator latency
            model. Defaults to `"default"`.
        latency_budget_ms: Latency the model must meet. Defaults to `None` (no latency check).
            The latency is the device's per-operator model over the flatbuffer's operators,
            or its ops-only form when `ops` is given.

    Returns:
        A `Fit`; its `fits` is False, with `failures` saying why, when anything exceeds.

    Raises:
        UnknownOperatorError: `ops` is not given and the model holds an operator that
            `mnas.estimate` has no count for.
    """
    data = tflm.read_model(tflite_bytes)
    if arena_bytes is None:
        arena_bytes = tflm.arena_usage(data).total_bytes
    info = None
    if ops is None:
        info = estimate.read_model_info(data)
        ops = estimate.estimate_model_info(info).ops
    return _fit(device, arena_bytes, len(data), ops, backbone, latency_budget_ms, info)


def check_fit_keras(model, device, *, backbone="default", latency_budget_ms=None):
    """`check_fit` for a plain Keras model before training or conversion.

    The arena, flatbuffer and operators are the exact estimator's
    (`mnas.hardware.estimate.estimate_keras`), which match TFLite Micro and the converter;
    the arguments are `check_fit`'s.
    """
    from mnas.hardware import keras_graph

    info, tflite_bytes = keras_graph.keras_model_info(model)
    found = estimate.estimate_model_info(info)
    return _fit(device, found.arena_bytes, tflite_bytes, found.ops, backbone, latency_budget_ms,
                info)
