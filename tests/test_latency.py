"""Latency models: the per-operator model, its fits, its differentiable form, and lines."""

import os

import numpy as np
import pytest

from mnas import devices, errors, latency
from mnas.hardware import estimate

from conftest import REFERENCE

KWS = os.path.join(REFERENCE, "kws_ref_model.tflite")
NAMES = ["kws_ref_model", "vww_96_int8", "pretrainedResnet_quant", "ad01_int8"]


def test_layer_work_follows_the_flatbuffer_operators():
    info = estimate.read_model_info(KWS)
    layers = latency.layer_work(info)
    assert [layer.kind for layer in layers] == [
        {"CONV_2D": "conv", "DEPTHWISE_CONV_2D": "depthwise",
         "FULLY_CONNECTED": "fully_connected"}.get(op.name, "elementwise")
        for op in info.operators]
    macs = sum(layer.work for layer in layers if layer.kind != "elementwise")
    elements = sum(layer.work for layer in layers if layer.kind == "elementwise")
    assert 2 * macs + elements == estimate.estimate_tflite(KWS).ops
    assert all(layer.aligned for layer in layers)  # DS-CNN-S: 64 channels everywhere


def test_misaligned_channels_cost_more():
    model = latency.OperatorLatencyModel({"conv": 1.0}, clock_mhz=1.0)
    aligned = model.predict_ms([latency.LayerWork("conv", 1000.0, True)])
    assert model.predict_ms([latency.LayerWork("conv", 1000.0, False)]) == pytest.approx(
        aligned * latency.MISALIGNED_FACTOR)


def test_paper_layer_138_vs_140_channels():
    # MicroNets: one layer of 138 channels 37.5 ms, of 140 channels 21.5 ms.
    model = devices.get_device("S").latency_model
    ms = {c: model.predict_ms([latency.LayerWork("conv", 25 * 5 * c * c, c % 4 == 0)])
          for c in (138, 140)}
    assert ms[138] / ms[140] == pytest.approx(37.5 / 21.5, rel=0.02)


def test_fit_recovers_coefficients_of_real_models():
    infos = [estimate.read_model_info(os.path.join(REFERENCE, f"{n}.tflite")) for n in NAMES]
    infos += [latency.layer_work(i)[:k] for i in infos for k in (2, 3)]  # per-layer rows
    truth = latency.OperatorLatencyModel(
        {"conv": 1.5, "depthwise": 9.0, "fully_connected": 2.0, "elementwise": 3.0,
         "operators": 4000.0}, clock_mhz=100.0)
    ms = [truth.predict_ms(i) for i in infos]
    fit = latency.OperatorLatencyModel.fit(infos, ms, clock_mhz=100.0)
    assert [fit.predict_ms(i) for i in infos] == pytest.approx(ms, rel=1e-3)
    assert fit.cycles_per_unit["depthwise"] == pytest.approx(9.0, rel=0.05)


def test_fit_with_few_points_scales_the_prior():
    prior = devices.get_device("M").latency_model
    infos = [estimate.read_model_info(os.path.join(REFERENCE, f"{n}.tflite")) for n in NAMES[:2]]
    ms = [2.5 * prior.predict_ms(i) for i in infos]
    fit = latency.OperatorLatencyModel.fit(infos, ms, prior.clock_mhz * prior.factor,
                                           prior=prior)
    assert [fit.predict_ms(i) for i in infos] == pytest.approx(ms, rel=1e-6)


def test_expected_latency_is_differentiable_and_equals_the_model():
    import tensorflow as tf

    model = devices.get_device("S").latency_model
    info = estimate.read_model_info(KWS)
    totals = latency.work_by_kind(latency.layer_work(info), model.misaligned_factor)
    work = {k: tf.Variable(v, dtype=tf.float64) for k, v in totals.items()}
    with tf.GradientTape() as tape:
        ms = latency.expected_latency_ms(model, work)
    assert float(ms) == pytest.approx(model.predict_ms(info), rel=1e-9)
    grads = tape.gradient(ms, [work["conv"], work["depthwise"]])
    assert float(grads[1]) > float(grads[0]) > 0  # depthwise work costs more per MAC
    with pytest.raises(ValueError, match=r"Invalid value for `work`.*received \['gemm'\]"):
        latency.expected_latency_ms(model, {"gemm": 1.0})


def test_fit_errors():
    with pytest.raises(errors.DeviceProfileError, match="one positive latency per model"):
        latency.OperatorLatencyModel.fit([[latency.LayerWork("conv", 1.0)]], [-1.0], 100.0)
    with pytest.raises(errors.DeviceProfileError, match=r"`clock_mhz`.*received 0"):
        latency.OperatorLatencyModel({"conv": 1.0}, clock_mhz=0)
    with pytest.raises(errors.DeviceProfileError, match=r"kinds among .*received \['gemm'\]"):
        latency.OperatorLatencyModel({"gemm": 1.0}, clock_mhz=1.0)


def test_latency_of_a_model_on_a_device():
    device = devices.get_device("S")
    assert latency.latency_ms(KWS, "S") == pytest.approx(device.model_latency_ms(KWS))
    assert latency.latency_ms(1e6, "S") == pytest.approx(device.latency_ms(1e6))
    with pytest.raises(errors.UnknownNameError, match="received 'STM32X'"):
        latency.latency_ms(1e6, "STM32X")


def test_line_fit_recovers_a_line():
    rng = np.random.default_rng(0)
    ops = rng.uniform(1e6, 5e7, 20)
    fit = latency.LatencyModel.fit(ops, 4e-6 * ops + 3.0)
    assert fit.slope_ms_per_op == pytest.approx(4e-6)
    assert fit.intercept_ms == pytest.approx(3.0)
    assert fit.r2 == pytest.approx(1.0)
    assert fit.predict(1e7) == pytest.approx(43.0)


def test_line_fit_from_csv_of_tflite_files(tmp_path):
    names = NAMES[:3]
    ops = [estimate.estimate_tflite(os.path.join(REFERENCE, f"{n}.tflite")).ops for n in names]
    rows = ["model,ms"] + [f"{os.path.join(REFERENCE, n)}.tflite,{2e-6 * o + 1:.6f}"
                           for n, o in zip(names, ops)]
    path = tmp_path / "measured.csv"
    path.write_text("\n".join(rows) + "\n")
    fit = latency.LatencyModel.from_csv(path)
    assert fit.num_points == 3
    assert fit.slope_ms_per_op == pytest.approx(2e-6, rel=1e-4)
    assert fit.predict(ops[0]) == pytest.approx(2e-6 * ops[0] + 1, rel=1e-4)


def test_csv_errors(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("model,ms\nkws.tflite,fast\n")
    with pytest.raises(errors.DeviceProfileError, match="Invalid row 1 of .*expected `model,ms`"):
        latency.LatencyModel.from_csv(path)
    with pytest.raises(errors.DeviceProfileError, match="Cannot read latency measurements"):
        latency.LatencyModel.from_csv(tmp_path / "missing.csv")
    with pytest.raises(errors.DeviceProfileError, match="at least two models"):
        latency.LatencyModel.fit([1e6, 1e6], [1.0, 2.0])
