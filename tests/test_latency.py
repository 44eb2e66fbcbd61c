"""Latency models: throughput and fits to measured latencies."""

import os

import numpy as np
import pytest

from mnas import devices, errors, latency
from mnas.hardware import estimate

from conftest import REFERENCE


def test_latency_from_throughput():
    ms = latency.latency_ms(30e6, "STM32F446RE", "ds_cnn")
    assert ms == pytest.approx(30e6 / (devices.BUILTIN["STM32F446RE"].mops_per_second["ds_cnn"]
                                       * 1e3))
    assert latency.latency_ms(1e6, "S") == latency.latency_ms(1e6, "STM32F446RE")


def test_unknown_device():
    with pytest.raises(errors.UnknownNameError, match="received 'STM32X'"):
        latency.latency_ms(1e6, "STM32X")


def test_fit_recovers_a_line():
    rng = np.random.default_rng(0)
    ops = rng.uniform(1e6, 5e7, 20)
    fit = latency.LatencyModel.fit(ops, 4e-6 * ops + 3.0)
    assert fit.slope_ms_per_op == pytest.approx(4e-6)
    assert fit.intercept_ms == pytest.approx(3.0)
    assert fit.r2 == pytest.approx(1.0)
    assert fit.predict(1e7) == pytest.approx(43.0)


def test_fit_from_csv_of_tflite_files(tmp_path):
    names = ["kws_ref_model", "vww_96_int8", "pretrainedResnet_quant"]
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
