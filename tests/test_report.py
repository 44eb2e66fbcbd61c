"""Tests of mnas.report: the figures it shows are checked against the real converter."""

import json
import os

import numpy as np
import pytest

import mnas
from mnas import arch, export, report
from mnas.deploy import verify as mverify
from mnas.hardware import estimate, tflm

SPEC = arch.ArchSpec([16, 8, 1], [
    {"type": "conv", "filters": 8, "kernel_size": [3, 3], "strides": [2, 2],
     "source": "stem"},
    {"type": "ds", "filters": 12, "kernel_size": [3, 3], "strides": [1, 1], "source": "ds0"},
    {"type": "ds", "filters": 16, "kernel_size": [3, 3], "strides": [2, 2], "source": "ds1"},
    {"type": "keras", "config": {"class_name": "GlobalAveragePooling2D",
                                 "config": {"name": "pool"}}},
    {"type": "dense", "units": 4, "source": "classifier"},
    {"type": "keras", "config": {"class_name": "Softmax", "config": {"name": "softmax"}}},
], name="small_ds_cnn")


@pytest.fixture(scope="module")
def deployed():
    """The spec's model, converted to int8 by the real converter, verified in TFLite Micro."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 16, 8, 1)).astype("float32")
    y = rng.integers(0, 4, 64)
    model = arch.build(SPEC)
    data = export.convert_int8(model, x, num_samples=32)
    return model, data, mverify.verify(data, x[:24], y[:24], float_model=model)


def test_the_architecture_table_adds_up_to_the_converted_model(deployed):
    model, data, _ = deployed
    described = report.describe_architecture(SPEC)
    converted = estimate.estimate_tflite(data)
    rows = described["layers"]
    assert [row["name"] for row in rows] == ["stem", "ds0", "ds1", "keras_3", "classifier",
                                             "keras_5"]
    assert [row["kind"] for row in rows] == ["conv", "depthwise separable",
                                             "depthwise separable", "GlobalAveragePooling2D",
                                             "dense", "Softmax"]
    assert [row["width"] for row in rows] == ["8", "12", "16", None, "4", None]
    assert [row["output_shape"] for row in rows] == [[8, 4, 8], [8, 4, 12], [4, 2, 16], [16],
                                                     [4], [4]]
    assert sum(row["params"] for row in rows) == described["params"] == model.count_params()
    # The operators, ops and bytes of the rows are those of the converter's flatbuffer.
    assert [op for row in rows for op in row["operators"]] == [
        layer.op for layer in converted.layers]
    assert rows[1]["operators"] == ["DEPTHWISE_CONV_2D", "CONV_2D"]
    assert rows[-1]["operators"] == ["SOFTMAX"] and rows[-1]["activation_bytes"] == 4
    assert described["ops"] == sum(row["ops"] for row in rows) == converted.ops
    assert sum(row["weight_bytes"] for row in rows) == sum(
        layer.weight_bytes for layer in converted.layers)
    assert rows[2]["activation_bytes"] == 4 * 2 * 16
    assert described["spec"] == SPEC.to_json()


def test_report_has_the_required_fields_and_says_when_a_model_does_not_fit(deployed,
                                                                           tmp_path):
    model, data, result = deployed
    fit = export.check_fit(data, "STM32F746ZG", ops=123_456, latency_budget_ms=50.0)
    written = report.write_report(tmp_path, task="kws", architecture=model, fit=fit,
                                  verification=result, quantization="ptq")
    with open(tmp_path / "report.json") as f:
        assert json.load(f) == written
    assert written["task"] == "kws" and written["device"] == "STM32F746ZG" and written["fits"]
    assert written["budget"] == {"sram_bytes": 320 * 1024, "flash_bytes": 1024 * 1024,
                                 "latency_ms": 50.0, "sram_reserve_bytes": fit.sram_reserve_bytes,
                                 "flash_reserve_bytes": 64 * 1024}
    assert written["measured"]["arena_bytes"] == tflm.arena_usage(data).total_bytes
    assert written["measured"]["tflite_bytes"] == len(data)
    assert written["measured"]["flash_bytes"] == len(data) + 64 * 1024
    assert written["measured"]["ops"] == 123_456
    assert written["measured"]["latency_ms"] == pytest.approx(
        mnas.get_device("M").latency_ms(123_456))
    assert written["accuracy"]["float"] == result.float
    assert written["accuracy"]["int8"] == result.int8
    assert sorted(d["device"] for d in written["devices"]) == sorted(mnas.devices.BUILTIN)
    assert written["architecture"]["layers"][0] == {
        "name": model.layers[0].name, "type": "InputLayer", "output_shape": [None, 16, 8, 1],
        "params": 0}
    assert written["architecture"]["params"] == model.count_params()
    text = (tmp_path / "report.md").read_text()
    assert text.startswith("# kws model for STM32F746ZG: FITS")
    assert "| STM32F446RE |" in text and "| Conv2D |" in text

    tiny = mnas.Device("tiny", sram_bytes=4096, flash_bytes=100_000, sram_reserve_bytes=1024,
                       mops_per_second={"default": 1.0})
    written = report.write_report(tmp_path, task="kws", architecture={"blocks": [8, 8]},
                                  fit=export.check_fit(data, tiny), verification=result)
    assert written["fits"] is False and written["failures"][0].startswith("SRAM:")
    text = (tmp_path / "report.md").read_text()
    assert text.startswith("# kws model for tiny: DOES NOT FIT: SRAM: arena")
    assert '"blocks"' in text
    assert sorted(os.listdir(tmp_path)) == ["report.json", "report.md"]


def search_json(min_top_probability):
    return {"argmax_widths": [8, 16, 16, 4], "changes": 1, "filled_budget": False,
            "exact_costs": {"sram": 20_480.0, "flash": 30_000.0, "ops": 1e6, "latency": 93.4},
            "min_top_probability": min_top_probability}


def test_report_shows_the_architecture_the_search_and_warns_when_undecided(deployed,
                                                                           tmp_path):
    _, data, result = deployed
    fit = export.check_fit(data, "STM32F446RE")
    plot = tmp_path / "plots" / "costs.png"
    written = report.write_report(tmp_path, task="kws", architecture=SPEC, fit=fit,
                                  verification=result, extra={"search": search_json(0.31)},
                                  plots=[str(plot)])
    assert written["search"]["undecided"] is True
    text = (tmp_path / "report.md").read_text()
    assert "n/a parameters" not in text
    assert "**Warning: the search ended undecided.**" in text
    assert "smallest top probability over its choices is 0.31 (below 0.5)" in text
    assert "| latency (estimated), ms |  | 93.4 |" in text
    assert f"| tensor arena, bytes | {fit.sram_bytes - fit.sram_reserve_bytes:,} | 20,480 |" in text
    assert "1 option steps from the argmax (repaired to fit)" in text
    assert (f"| 1 | ds0 | depthwise separable | 12 | 3x3 /1x1 | 8x4x12 "
            f"| {written['architecture']['layers'][1]['params']:,} "
            f"| DEPTHWISE_CONV_2D, CONV_2D |") in text
    assert "![costs](plots/costs.png)" in text

    written = report.write_report(tmp_path, task="kws", architecture=SPEC, fit=fit,
                                  verification=result, extra={"search": search_json(0.93)})
    assert written["search"]["undecided"] is False
    assert "Warning" not in (tmp_path / "report.md").read_text()

    # Committed decisions end one-hot: their probability when committed is the evidence.
    committed = dict(search_json(1.0), min_commit_probability=0.24)
    written = report.write_report(tmp_path, task="kws", architecture=SPEC, fit=fit,
                                  verification=result, extra={"search": committed})
    assert written["search"]["undecided"] is True
    text = (tmp_path / "report.md").read_text()
    assert "smallest commit probability over its choices is 0.24 (below 0.5)" in text
    assert "smallest commit probability 0.24." in text


def test_saved_outputs_load_back(tmp_path):
    outputs = np.random.default_rng(0).random((5, 3)).astype("float32")
    path = report.save_outputs(tmp_path / "outputs.npz", outputs)
    with np.load(path) as data:
        np.testing.assert_array_equal(data["int8"], outputs)
