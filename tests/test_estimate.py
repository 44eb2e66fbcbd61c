"""Estimates pinned against the real TFLite converter and the TFLite Micro interpreter."""

# mnas comes first: it selects Keras 2 (tf_keras) before TensorFlow is imported.
import mnas  # noqa: F401, I001
import os

import numpy as np
import pytest
import tf_keras as keras
from conftest import REFERENCE

from mnas import errors, export, profile
from mnas.hardware import estimate, keras_graph, planner, tflite_file, tflm

L = keras.layers


def _convert(model):
    data = np.random.default_rng(0).random((4,) + model.input_shape[1:], dtype=np.float32)
    return export.convert_int8(model, data, num_samples=4)


def _ds_cnn():
    inputs = keras.Input((20, 10, 1))
    x = L.ReLU()(L.BatchNormalization()(L.Conv2D(24, (5, 3), strides=2, padding="same")(inputs)))
    for width in (32, 24):
        x = L.ReLU()(L.BatchNormalization()(L.DepthwiseConv2D(3, padding="same")(x)))
        x = L.ReLU()(L.BatchNormalization()(L.Conv2D(width, 1)(x)))
    x = L.Dropout(0.1)(L.GlobalAveragePooling2D()(x))
    return keras.Model(inputs, L.Softmax()(L.Dense(12)(x)))


def _residual():
    inputs = keras.Input((12, 12, 3))
    x = L.ReLU(6.0)(L.BatchNormalization()(L.Conv2D(16, 3, padding="same")(inputs)))
    y = L.ReLU(6.0)(L.BatchNormalization()(L.DepthwiseConv2D(3, padding="same")(x)))
    y = L.BatchNormalization()(L.Conv2D(16, 1)(y))
    x = L.ReLU()(L.Add()([x, y]))
    x = L.Flatten()(L.AveragePooling2D(3)(x))
    return keras.Model(inputs, L.Dense(4)(x))


def _small():
    # Its FULLY_CONNECTED options start 4 bytes off an 8-byte boundary of the arena tail.
    inputs = keras.Input((8, 8, 2))
    x = L.ReLU()(L.BatchNormalization()(L.Conv2D(4, 3, padding="same", use_bias=False)(inputs)))
    x = L.ReLU()(L.BatchNormalization()(L.DepthwiseConv2D(3, padding="same",
                                                          use_bias=False)(x)))
    return keras.Model(inputs, L.Softmax()(L.Dense(6)(L.GlobalAveragePooling2D()(x))))


BUILDERS = {"ds_cnn": _ds_cnn, "residual": _residual, "small": _small}
CASES = [(name, trained) for name in BUILDERS for trained in (False, True)]


@pytest.fixture(scope="module")
def models():
    """Each model fresh (zero biases, as built) and with trained-like statistics."""
    keras.utils.set_random_seed(0)
    built = {}
    for name, trained in CASES:
        model = BUILDERS[name]()
        tflite = profile.convert_like_trained(model, 0) if trained else _convert(model)
        built[name, trained] = (model, tflite)
    return built


@pytest.mark.parametrize("case", CASES)
def test_tflite_estimate_equals_interpreter(models, case):
    tflite = models[case][1]
    est = estimate.estimate_tflite(tflite)
    usage = tflm.arena_usage(tflite)
    assert (est.arena_bytes, est.planned_bytes, est.persistent_bytes) == (
        usage.total_bytes, usage.planned_bytes, usage.persistent_bytes)
    assert est.tflite_bytes == len(tflite)


@pytest.mark.parametrize("case", CASES)
def test_keras_estimate_before_conversion(models, case):
    model, tflite = models[case]
    before = estimate.estimate_keras(model)
    after = estimate.estimate_tflite(tflite)
    assert before.arena_bytes == tflm.arena_usage(tflite).total_bytes
    assert before.ops == after.ops
    assert [layer.op for layer in before.layers] == [layer.op for layer in after.layers]
    assert [layer.output_shape for layer in before.layers] == [
        layer.output_shape for layer in after.layers]
    assert abs(before.tflite_bytes - len(tflite)) / len(tflite) < 0.02  # The target.


def test_keras_names_tensors_as_the_converter(models):
    model, tflite = models["ds_cnn", True]
    predicted, _ = keras_graph.keras_model_info(model)
    actual = tflite_file.parse_model(tflite)
    # The converter joins the fused ops' names in an order of its own; the bytes are the same.
    assert sorted(len(t.name) for t in predicted.tensors) == sorted(
        len(t.name) for t in actual.tensors)


@pytest.mark.parametrize("name,total", [("kws_ref_model", 24272), ("vww_96_int8", 103680),
                                        ("ad01_int8", 3984),
                                        ("pretrainedResnet_quant", 55984)])
def test_reference_models_equal_interpreter(name, total):
    path = os.path.join(REFERENCE, f"{name}.tflite")
    usage = tflm.arena_usage(path)
    est = estimate.estimate_tflite(path)
    assert usage.total_bytes == total
    assert (est.arena_bytes, est.planned_bytes, est.persistent_bytes) == (
        usage.total_bytes, usage.planned_bytes, usage.persistent_bytes)


def test_ops_of_one_convolution_and_one_dense():
    model = keras.Sequential([keras.Input((9, 7, 2)), L.Conv2D(5, (3, 2)), L.Flatten(),
                              L.Dense(3)])
    est = estimate.estimate_tflite(_convert(model))
    conv, _, dense = est.layers
    assert conv.ops == 2 * (7 * 6 * 5) * (3 * 2 * 2)
    assert dense.ops == 2 * 3 * (7 * 6 * 5)
    assert conv.weight_bytes == 5 * 3 * 2 * 2 + 4 * 5
    assert conv.activation_bytes == 7 * 6 * 5
    assert est.ops == sum(layer.ops for layer in est.layers)


def test_greedy_plan_reuses_freed_space():
    offsets, size = planner.greedy_plan([(32, 0, 1), (16, 1, 2), (32, 2, 3)])
    assert offsets == [0, 32, 0] and size == 48


def test_not_a_tflite_file(tmp_path):
    path = tmp_path / "model.tflite"
    path.write_bytes(b"not a model at all")
    with pytest.raises(errors.InvalidModelFileError, match="expected a TFLite flatbuffer"):
        estimate.estimate_tflite(path)


def test_missing_file(tmp_path):
    with pytest.raises(errors.InvalidModelFileError, match="Cannot read model file"):
        estimate.estimate_tflite(tmp_path / "missing.tflite")


@pytest.mark.parametrize("keep", [12, 400, 30000])
def test_truncated_file(keep):
    data = open(os.path.join(REFERENCE, "kws_ref_model.tflite"), "rb").read()
    with pytest.raises(errors.InvalidModelFileError, match="truncated or corrupt"):
        estimate.estimate_tflite(data[:keep])


def test_operator_mnas_export_refuses_is_estimated():
    import tensorflow as tf

    # mnas.export refuses tanh, so the converter is called directly.
    model = keras.Sequential([keras.Input((4,)), L.Dense(3), L.Activation("tanh")])
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([np.ones((1, 4), np.float32)] for _ in range(2))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    tflite = converter.convert()
    est = estimate.estimate_tflite(tflite)
    assert "TANH" in [layer.op for layer in est.layers]
    assert est.arena_bytes == tflm.arena_usage(tflite).total_bytes


def test_unsupported_keras_layer():
    model = keras.Sequential([keras.Input((8, 2)), L.Conv1D(4, 3)])
    with pytest.raises(errors.UnsupportedLayerError, match="Unsupported layer 'conv1d"):
        estimate.estimate_keras(model)
