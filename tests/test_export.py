"""Tests of mnas.export against the real converter and the real TFLite Micro interpreter."""

import os
import subprocess

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_model_optimization as tfmot
import tf_keras as keras

import mnas
from mnas import errors, export
from mnas.deploy import verify as mverify
from mnas.hardware import estimate, tflm

SHAPE = (16, 8, 1)
CLASSES = 4


def synthetic(n, seed, noise=1.0):
    """A learnable task: one fixed pattern per class plus Gaussian noise."""
    patterns = np.random.default_rng(123).normal(size=(CLASSES,) + SHAPE)
    rng = np.random.default_rng(seed)
    y = rng.integers(0, CLASSES, n)
    x = patterns[y] + noise * rng.normal(size=(n,) + SHAPE)
    return x.astype(np.float32), y


def ds_cnn(width=8):
    """A small DS-CNN built from the layers `mnas.arch.build` uses."""
    layers = keras.layers
    inputs = keras.Input(SHAPE)
    x = layers.Conv2D(width, 3, strides=2, padding="same", use_bias=False)(inputs)
    x = layers.ReLU()(layers.BatchNormalization()(x))
    y = layers.DepthwiseConv2D(3, padding="same", use_bias=False)(x)
    y = layers.ReLU()(layers.BatchNormalization()(y))
    y = layers.Conv2D(width, 1, use_bias=False)(y)
    y = layers.ReLU()(layers.BatchNormalization()(y))
    x = layers.AveragePooling2D(2)(layers.Add()([x, y]))
    x = layers.Dropout(0.1)(layers.GlobalAveragePooling2D()(x))
    return keras.Model(inputs, layers.Softmax()(layers.Dense(CLASSES)(x)))


@pytest.fixture(scope="module")
def task():
    keras.utils.set_random_seed(0)
    x, y = synthetic(800, seed=1)
    x_test, y_test = synthetic(400, seed=2)
    model = ds_cnn()
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=24, batch_size=32, verbose=0)
    return model, (x, y), (x_test, y_test)


@pytest.fixture(scope="module")
def ptq(task):
    model, (x, _), _ = task
    return export.convert_int8(model, x)


@pytest.fixture(scope="module")
def qat(task):
    model, train, _ = task
    keras.utils.set_random_seed(0)
    qat_model = export.quantize_qat(model, train, epochs=2)
    return qat_model, export.convert_int8(qat_model, train[0])


@pytest.mark.parametrize("kind", ["ptq", "qat"])
def test_int8_model_runs_in_tflm_within_one_point_of_float(task, ptq, qat, kind):
    model, _, (x_test, y_test) = task
    data = ptq if kind == "ptq" else qat[1]
    result = mverify.verify(data, x_test, y_test, float_model=model)
    print(f"{kind}: float {result.float:.4f} int8 {result.int8:.4f} "
          f"max diff {result.max_diff_steps} mismatch {result.mismatch_fraction:.4f}")
    assert result.samples == 400
    assert result.float > 0.85  # the task is learnt, so the comparison means something
    assert abs(result.int8 - result.float) <= 0.01
    assert result.max_diff_steps <= 1
    # The TFLite Micro run is the real one: it agrees with its own predictions.
    runner = tflm.MicroRunner(data)
    assert result.int8 == np.mean(runner.predict(x_test).argmax(axis=1) == y_test)


def test_qat_model_is_a_tfmot_model_and_original_is_unchanged(task, qat):
    model, _, _ = task
    qat_model, _ = qat
    assert any(isinstance(layer, tfmot.quantization.keras.QuantizeWrapper)
               for layer in qat_model.layers)
    assert not any("quant" in layer.name for layer in model.layers)


@pytest.mark.parametrize("kind", ["ptq", "qat"])
def test_int8_io_and_per_channel_conv_weights(ptq, qat, kind):
    data = ptq if kind == "ptq" else qat[1]
    interpreter = tf.lite.Interpreter(model_content=data)
    assert interpreter.get_input_details()[0]["dtype"] == np.int8
    assert interpreter.get_output_details()[0]["dtype"] == np.int8
    per_channel = [t for t in interpreter.get_tensor_details()
                   if t["dtype"] == np.int8 and len(t["quantization_parameters"]["scales"]) > 1]
    # The two Conv2D kernels and the depthwise kernel, one scale per output channel.
    assert [len(t["quantization_parameters"]["scales"]) for t in per_channel
            if len(t["shape"]) == 4] == [8, 8, 8]
    source, output = mverify.io_quantization(data)
    assert source.shape == (1,) + SHAPE and source.dtype == "int8"
    assert output.shape == (1, CLASSES) and output.dtype == "int8"
    details = interpreter.get_input_details()[0]["quantization"]
    assert (source.scale, source.zero_point) == (pytest.approx(details[0]), details[1])


def test_representative_dataset_forms_give_the_same_model(task, ptq):
    model, (x, y), _ = task
    from_dataset = export.convert_int8(
        model, tf.data.Dataset.from_tensor_slices((x[:250], y[:250])).batch(50),
        num_samples=200)
    from_array = export.convert_int8(model, x[:200], num_samples=200)
    assert from_dataset == from_array
    assert len(from_array) == len(ptq)


def compile_and_dump(out_dir, name):
    """Compiles model_data.cc with the system compiler and dumps what it defines."""
    subprocess.run(["cc", "-c", "model_data.cc", "-o", "model_data.o"], cwd=out_dir,
                   check=True)
    g = f"g_{name}"
    main = f"""\
#include <cstdint>
#include <cstdio>
#define MNAS_NO_OP_RESOLVER
#include "model_data.h"
int main() {{
  FILE* f = std::fopen("dump.bin", "wb");
  std::fwrite({g}_model_data, 1, {g}_model_data_size, f);
  std::fclose(f);
  std::printf("%d\\n", (int)(reinterpret_cast<std::uintptr_t>({g}_model_data) % 16));
  std::printf("%.9g %d %.9g %d\\n", {g}_input_scale, {g}_input_zero_point,
              {g}_output_scale, {g}_output_zero_point);
  for (int i = 0; i < {g}_input_dims_count; ++i) std::printf("%d ", {g}_input_dims[i]);
  std::printf("\\n");
  for (int i = 0; i < {g}_label_count; ++i) std::printf("%s\\n", {g}_labels[i]);
}}
"""
    with open(os.path.join(out_dir, "main.cc"), "w") as f:
        f.write(main)
    subprocess.run(["c++", "main.cc", "model_data.o", "-o", "dump"], cwd=out_dir, check=True)
    printed = subprocess.run(["./dump"], cwd=out_dir, check=True, capture_output=True,
                             text=True).stdout.splitlines()
    with open(os.path.join(out_dir, "dump.bin"), "rb") as f:
        return f.read(), printed


def test_c_sources_compile_and_hold_the_model(ptq, tmp_path):
    labels = ["yes", "no", 'say "hi"\\', "café?"]
    paths = export.write_c_sources(ptq, tmp_path, name="kws", labels=labels)
    assert sorted(os.listdir(tmp_path)) == ["model.tflite", "model_data.cc", "model_data.h"]
    with open(paths["tflite"], "rb") as f:
        assert f.read() == ptq
    with open(paths["cc"]) as f:
        assert "alignas(16) const unsigned char g_kws_model_data[]" in f.read()
    dumped, printed = compile_and_dump(tmp_path, "kws")
    assert dumped == ptq
    source, output = mverify.io_quantization(ptq)
    assert printed[0] == "0"  # 16-byte aligned
    scale, zero, out_scale, out_zero = printed[1].split()
    assert np.float32(scale) == np.float32(source.scale) and int(zero) == source.zero_point
    assert np.float32(out_scale) == np.float32(output.scale)
    assert int(out_zero) == output.zero_point
    assert [int(d) for d in printed[2].split()] == [1, 16, 8, 1]
    assert printed[3:] == labels


def test_c_sources_without_labels_compile(ptq, tmp_path):
    export.write_c_sources(ptq, tmp_path)
    dumped, printed = compile_and_dump(tmp_path, "model")
    assert dumped == ptq and printed[3:] == []


def test_c_sources_reject_bad_arguments(ptq, tmp_path):
    with pytest.raises(ValueError, match=r"`name`: expected a C identifier, received '1x'"):
        export.write_c_sources(ptq, tmp_path, name="1x")
    with pytest.raises(ValueError, match=r"`labels`: expected 4 names.*received 2"):
        export.write_c_sources(ptq, tmp_path, labels=["a", "b"])
    with pytest.raises(errors.InvalidModelFileError):
        export.write_c_sources(b"not a model", tmp_path)
    assert os.listdir(tmp_path) == []


def test_write_atomic_replaces_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "a.txt"
    export.write_atomic(path, "old")
    export.write_atomic(path, b"new")
    assert path.read_bytes() == b"new"
    assert os.stat(path).st_mode & 0o777 == 0o644
    assert os.listdir(tmp_path) == ["a.txt"]


def test_fit_uses_the_measured_arena_and_fails_a_small_budget(ptq):
    arena = tflm.arena_usage(ptq).total_bytes
    fit = export.check_fit(ptq, "STM32F446RE", ops=1_000_000)
    assert fit.fits and fit.failures == []
    assert fit.arena_bytes == arena and fit.tflite_bytes == len(ptq)
    assert fit.sram_used_bytes == arena + fit.sram_reserve_bytes
    assert fit.latency_ms == pytest.approx(mnas.get_device("S").latency_ms(1e6))

    tiny = mnas.Device("tiny", sram_bytes=arena + 1000, flash_bytes=len(ptq) + 1000,
                       sram_reserve_bytes=1001, flash_reserve_bytes=1000,
                       mops_per_second={"default": 1.0})
    fit = export.check_fit(ptq, tiny, ops=1_000_000, latency_budget_ms=500)
    assert not fit.fits
    assert fit.failures == [
        f"SRAM: arena {arena} + reserve 1001 = {arena + 1001} bytes > {arena + 1000} bytes",
        "latency: 1000.0 ms > 500 ms",
    ]
    assert fit.to_json()["fits"] is False
    exact = export.check_fit(ptq, tiny, arena_bytes=arena - 1)
    assert exact.fits  # the limits are inclusive
    small_flash = mnas.Device("f", sram_bytes=1 << 20, flash_bytes=len(ptq) + 999,
                              flash_reserve_bytes=1000, mops_per_second={"default": 1.0})
    assert export.check_fit(ptq, small_flash).failures == [
        f"flash: model {len(ptq)} + reserve 1000 = {len(ptq) + 1000} bytes > "
        f"{len(ptq) + 999} bytes"]
    counted = export.check_fit(ptq, tiny, arena_bytes=arena)
    assert counted.ops == estimate.estimate_tflite(ptq).ops > 0
    assert counted.latency_ms == pytest.approx(counted.ops / 1e3)


def test_fit_of_a_keras_model_before_conversion_is_the_converted_models(task, ptq):
    model = task[0]
    for device, budget in (("STM32F446RE", None), ("STM32F746ZG", 0.001)):
        before = export.check_fit_keras(model, device, latency_budget_ms=budget)
        after = export.check_fit(ptq, device, latency_budget_ms=budget)
        assert before.arena_bytes == after.arena_bytes == tflm.arena_usage(ptq).total_bytes
        assert before.tflite_bytes == pytest.approx(len(ptq), rel=0.02)
        assert before.ops == after.ops
        assert before.latency_ms == pytest.approx(after.latency_ms, rel=1e-6)
        assert before.fits == after.fits == (budget is None)


def every_supported_layer_model():
    layers = keras.layers
    inputs = keras.Input((8, 6, 1))
    x = layers.ZeroPadding2D(1)(inputs)
    x = layers.Conv2D(4, 3)(x)
    x = layers.BatchNormalization()(x)
    x = layers.Activation("relu6")(x)
    x = layers.Conv2D(4, 1, activation="relu")(x)
    y = layers.DepthwiseConv2D(3, padding="same")(x)
    x = layers.Add()([x, layers.ReLU()(y)])
    x = layers.MaxPooling2D(2)(x)
    x = layers.Concatenate()([x, layers.AveragePooling2D(1)(x)])
    z = layers.GlobalAveragePooling2D()(x)
    x = layers.Flatten()(x)
    x = layers.Dropout(0.2)(layers.Dense(6, activation="sigmoid")(x))
    x = layers.Dense(3)(layers.Add()([x, layers.Dense(6)(z)]))
    return keras.Model(inputs, layers.Softmax()(x))


def test_every_supported_layer_quantizes_and_runs_in_tflm():
    model = every_supported_layer_model()
    assert {type(layer).__name__ for layer in model.layers} == set(export.SUPPORTED_LAYERS)
    model.compile("adam", "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 8, 6, 1)).astype(np.float32)
    y = rng.integers(0, 3, 64)
    for candidate in (model, export.quantize_qat(model, (x, y), epochs=1)):
        data = export.convert_int8(candidate, x)
        assert mverify.verify(data, x, y).max_diff_steps <= 1
        assert export.check_fit(data, "STM32F446RE").ops > 0  # every operator is counted


def lstm_model():
    inputs = keras.Input((10, 4))
    return keras.Model(inputs, keras.layers.Dense(2)(keras.layers.LSTM(3, name="rnn")(inputs)))


def lambda_model():
    inputs = keras.Input((4,))
    x = keras.layers.Lambda(lambda t: t * 2, name="double")(inputs)
    return keras.Model(inputs, keras.layers.Dense(2)(x))


def swish_model():
    inputs = keras.Input((4, 4, 1))
    x = keras.layers.Conv2D(2, 3, activation="swish", name="conv")(inputs)
    return keras.Model(inputs, x)


@pytest.mark.parametrize("build, message", [
    (lstm_model, r"Layer 'rnn' \(LSTM\) cannot be quantized.*use a stack of Conv2D"),
    (lambda_model, r"Layer 'double' \(Lambda\) cannot be quantized.*use a built-in Keras"),
    (swish_model, r"Layer 'conv' \(Conv2D\) has activation 'swish'.*use one of"),
])
def test_unsupported_layers_are_named_before_any_work(build, message):
    model = build()
    # Invalid training data and representative data show that the check comes first.
    with pytest.raises(errors.UnsupportedLayerError, match=message):
        export.quantize_qat(model, "no data", epochs=1000)
    with pytest.raises(errors.UnsupportedLayerError, match=message):
        export.convert_int8(model, None)


def test_batch_normalization_must_follow_a_linear_layer_for_qat():
    inputs = keras.Input((4, 4, 1))
    x = keras.layers.Conv2D(2, 3, activation="relu", name="conv")(inputs)
    model = keras.Model(inputs, keras.layers.BatchNormalization(name="bn")(x))
    export.check_layers(model)  # the converter folds it for post-training quantization
    with pytest.raises(errors.UnsupportedLayerError,
                       match=r"'bn' \(BatchNormalization\) follows 'conv' \(Conv2D\).*put it "
                             r"directly after a Conv2D, DepthwiseConv2D or Dense layer without"):
        export.quantize_qat(model, "no data", epochs=1)


def test_nested_models_are_checked_and_refused_for_qat():
    inner = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)], name="inner")
    outer = keras.Sequential([keras.Input((4,)), inner, keras.layers.Softmax()])
    with pytest.raises(errors.UnsupportedLayerError, match=r"'inner' \(Sequential\) is a nested"):
        export.quantize_qat(outer, "no data", epochs=1)
    export.check_layers(outer)
    bad = keras.Sequential([keras.Input((4,)), lambda_model()])
    with pytest.raises(errors.UnsupportedLayerError, match=r"'double' \(Lambda\)"):
        export.check_layers(bad)


def test_quantize_qat_argument_errors(task):
    model, train, _ = task
    with pytest.raises(ValueError, match=r"`epochs`: expected a whole number of at least 1, "
                                         r"received 0"):
        export.quantize_qat(model, train, epochs=0)
    with pytest.raises(ValueError, match=r"`train_data`: expected an \(x, y\) tuple"):
        export.quantize_qat(model, "no data", epochs=1)
    with pytest.raises(ValueError, match=r"`model`: expected a tf_keras Model, received str"):
        export.convert_int8("model.h5", train[0])
    with pytest.raises(ValueError, match=r"`representative_data`: expected a non-empty batch"):
        export.convert_int8(model, train[0][:0])
    uncompiled = keras.models.clone_model(model)
    with pytest.raises(ValueError, match=r"`loss`: expected a Keras loss"):
        export.quantize_qat(uncompiled, train, epochs=1)


def test_auc_for_anomaly_detection():
    assert mverify.auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75
    rng = np.random.default_rng(0)
    basis = rng.normal(size=(2, 16))
    normal = (rng.normal(size=(300, 2)) @ basis).astype(np.float32)
    inputs = keras.Input((16,))
    code = keras.layers.Dense(2)(keras.layers.Dense(8, activation="relu")(inputs))
    model = keras.Model(inputs, keras.layers.Dense(16)(code))
    model.compile(keras.optimizers.Adam(1e-2), "mse")
    model.fit(normal, normal, epochs=30, batch_size=32, verbose=0)
    test_normal = (rng.normal(size=(50, 2)) @ basis).astype(np.float32)
    anomalous = rng.normal(size=(50, 16)).astype(np.float32) * 1.5
    x = np.concatenate([test_normal, anomalous])
    y = np.array([0] * 50 + [1] * 50)
    result = mverify.verify(export.convert_int8(model, normal), x, y, float_model=model,
                           metric="auc")
    assert result.metric == "auc" and result.float > 0.9
    assert abs(result.int8 - result.float) < 0.05
    with pytest.raises(ValueError, match=r"`metric`: expected 'accuracy' or 'auc', received"):
        mverify.verify(b"", x, y, metric="f1")
