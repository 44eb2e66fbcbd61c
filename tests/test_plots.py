"""Tests of mnas.plots: the figures they draw, and every plot of a run written."""

import json
import os

import numpy as np
import pytest

from mnas import arch, export, files, plots, report
from mnas.hardware import estimate, planner, tflm
from mnas.datasets.split import Split

SPEC = arch.ArchSpec([12, 8, 1], [
    {"type": "conv", "filters": 8, "kernel_size": [3, 3], "strides": [1, 1], "source": "stem"},
    {"type": "ds", "filters": 8, "kernel_size": [3, 3], "strides": [2, 2], "source": "ds0"},
    {"type": "ib", "expand": 16, "filters": 8, "kernel_size": [3, 3], "strides": [1, 1],
     "residual": True, "source": "ib0"},
    {"type": "keras", "config": {"class_name": "GlobalAveragePooling2D", "config": {}}},
    {"type": "dense", "units": 3, "source": "classifier"},
    {"type": "keras", "config": {"class_name": "Softmax", "config": {}}},
], name="tiny")
LABELS = ("yes", "no", "up")


@pytest.fixture(scope="module")
def converted():
    x = np.random.default_rng(0).normal(size=(32, 12, 8, 1)).astype("float32")
    return export.convert_int8(arch.build(SPEC), x, num_samples=16)


def test_the_arena_per_operator_peaks_at_the_interpreters_arena(converted):
    info = estimate.read_model_info(converted)
    in_use = plots.memory_per_operator(info)
    assert len(in_use) == len(info.operators)
    assert max(in_use) == tflm.arena_usage(converted).total_bytes
    # While the residual block's ADD runs, its two inputs and its output are all in use.
    add = [op.name for op in info.operators].index("ADD")
    live = sum(info.tensors[t].nbytes for t in info.operators[add].inputs
               + info.operators[add].outputs)
    assert in_use[add] >= planner.persistent_bytes(info) + live


def test_roc_reports_auc_and_the_dcase_partial_auc(tmp_path):
    # 10 normal clips scored 0..9; anomalous clips scored 9.5 (above all) and 4.5.
    scores = np.r_[np.arange(10.0), 9.5, 4.5]
    anomalous = np.r_[np.zeros(10, bool), True, True]
    path, figures = plots.plot_roc({"id_00": (scores, anomalous),
                                    "id_02": (scores + 20 * anomalous, anomalous)},
                                   tmp_path / "roc.png")
    assert figures["id_00"]["auc"] == pytest.approx((10 + 5) / 20)
    # Up to FPR 0.1 the TPR is 0.5: area 0.05, standardized 0.5 * (1 + (a - m) / (M - m))
    # with m = 0.1 ** 2 / 2 and M = 0.1 (McClish, as the DCASE baseline's scikit-learn).
    assert figures["id_00"]["pauc"] == pytest.approx(0.5 * (1 + (0.05 - 0.005) / 0.095))
    assert figures["id_02"] == {"auc": 1.0, "pauc": 1.0}
    assert figures["mean"]["auc"] == pytest.approx((0.75 + 1.0) / 2)
    assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def write_run(out_dir, converted):
    """The files a finished run leaves for its report: a two-epoch search and so on."""
    os.makedirs(out_dir / "search")
    with open(out_dir / "search" / "architecture.jsonl", "w") as f:
        for epoch, p in enumerate([0.5, 0.9]):
            f.write(json.dumps({
                "epoch": epoch, "probabilities": {"stem": [1 - p, p], "skip0": [p, 1 - p]},
                "options": {"stem": [4, 8], "skip0": ["skip", "keep"]},
                "choices": {"stem": 8, "skip0": False}}) + "\n")
    history = "epoch,loss,accuracy,val_loss,val_accuracy,expected_sram_bytes\n"
    (out_dir / "search" / "history.csv").write_text(
        history + "0,1.2,0.4,1.3,0.4,9000\n1,0.9,0.6,1.0,0.5,8000\n")
    (out_dir / "search" / "search.json").write_text(json.dumps(
        {"exact_costs": {"sram": 7500.0, "flash": 20000.0}, "min_top_probability": 0.9}))
    for stage in ("train", "qat"):
        os.makedirs(out_dir / stage)
        (out_dir / stage / "history.csv").write_text(
            "epoch,loss,accuracy,val_loss,val_accuracy\n0,0.8,0.7,0.9,0.6\n")
    files.write_atomic(out_dir / "model.tflite", converted)
    arena = tflm.arena_usage(converted).total_bytes
    (out_dir / "verification.json").write_text(json.dumps({"arena": {"total_bytes": arena}}))
    outputs = np.eye(3, dtype="float32")[[0, 1, 2, 0, 0, 2]]
    report.save_outputs(out_dir / "verification_outputs.npz", outputs)
    return Split("kws", "test", np.zeros((6, 12, 8, 1)), np.array([0, 1, 2, 1, 0, 2]), LABELS)


def test_a_run_gets_every_plot(tmp_path, converted):
    test = write_run(tmp_path, converted)
    budget = {"sram_bytes": 20_000, "sram_reserve_bytes": 4_000, "flash_bytes": 100_000,
              "flash_reserve_bytes": 10_000, "latency_ms": None}
    written = plots.plot_run(str(tmp_path), SPEC, budget, test=test)
    assert [os.path.basename(p) for p in written] == [
        "widths.png", "probabilities.png", "costs.png", "training.png", "memory.png",
        "confusion.png"]
    for path in written:
        assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    # Without the test outputs and the search, only what the run has is drawn.
    os.remove(tmp_path / "verification_outputs.npz")
    for name in ("architecture.jsonl", "history.csv"):
        os.remove(tmp_path / "search" / name)
    written = plots.plot_run(str(tmp_path), SPEC, budget, test=test)
    assert [os.path.basename(p) for p in written] == ["widths.png", "training.png",
                                                      "memory.png"]
