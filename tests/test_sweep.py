"""Tests of mnas.sweep: the budget grid, the Pareto front and files, and the command."""

import csv
import json
import os
import subprocess
import sys


from mnas import sweep

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _row(point, int8, arena, flash=1000, latency=10.0, kind="search"):
    return {"point": point, "kind": kind, "device": "STM32F446RE", "sram_budget_bytes": 1,
            "latency_budget_ms": None, "int8": int8, "float": int8, "arena_bytes": arena,
            "flash_bytes": flash, "ops": 1, "latency_ms": latency, "fits": True,
            "front": False}


def test_grid_is_every_combination_of_the_lists():
    points = sweep.grid(["S", "L"], [], ["30", "100"])
    assert [p["flags"] for p in points] == [
        {"device": "S", "latency_ms": "30"}, {"device": "S", "latency_ms": "100"},
        {"device": "L", "latency_ms": "30"}, {"device": "L", "latency_ms": "100"}]
    assert len({p["name"] for p in points}) == 4
    assert sweep.grid([], [], []) == [{"name": "default", "flags": {}}]


def test_front_keeps_only_points_no_other_dominates():
    rows = sweep.mark_front([_row("a", 0.90, 100), _row("b", 0.92, 200), _row("c", 0.91, 250),
                             _row("d", 0.85, 90, flash=500)])
    assert [r["front"] for r in rows] == [True, True, False, True]
    front = sweep.front_2d(rows, "arena_bytes")
    assert [r["point"] for r in front] == ["d", "a", "b"]


def test_write_pareto_writes_table_markdown_and_plot(tmp_path):
    rows = [_row("a", 0.90, 100), _row("b", 0.80, 200),
            _row("baseline_ds_cnn_s", 0.95, 150, kind="baseline")]
    paths = sweep.write_pareto(rows, str(tmp_path))
    with open(paths[0]) as f:
        table = list(csv.DictReader(f))
    assert [(r["point"], r["front"]) for r in table] == [
        ("a", "True"), ("b", "False"), ("baseline_ds_cnn_s", "False")]
    assert "baseline_ds_cnn_s" in open(paths[1]).read()
    assert open(paths[2], "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_sweep_runs_each_point_then_resumes_only_what_is_unfinished(tiny_ad_flags, tmp_path):
    out = tmp_path / "sweep"
    command = [sys.executable, "-m", "mnas.sweep", *tiny_ad_flags, f"--out_dir={out}",
               "--search=random", "--search_trials=1", "--device=STM32F446RE",
               "--sram_bytes=40000,60000"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert result.returncode == 0, result.stderr
    names = ["device-STM32F446RE_sram_bytes-40000", "device-STM32F446RE_sram_bytes-60000"]
    for name in names:
        with open(out / name / "report.json") as f:
            report = json.load(f)
        assert report["budget"]["sram_bytes"] == int(name.split("-")[-1])
        assert (out / name / "model.tflite").exists() and (out / name / "model_data.cc").exists()
    with open(out / "pareto.csv") as f:
        assert sorted(r["point"] for r in csv.DictReader(f)) == names
    assert (out / "pareto.png").exists() and (out / "pareto.md").exists()
    # One point unfinished (as if interrupted before its report): only it runs again.
    state_path = out / names[1] / "state.json"
    state = json.loads(state_path.read_text())
    del state["finished"]["report"]
    state_path.write_text(json.dumps(state))
    again = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert again.returncode == 0, again.stderr
    assert f"{names[0]}: done before, skipped" in again.stdout
    assert f"{names[1]}: started" in again.stdout
    assert (out / names[1] / "report.json").exists()


def test_bad_list_is_one_clear_error(tmp_path):
    result = subprocess.run([sys.executable, "-m", "mnas.sweep", "--task=kws",
                             f"--out_dir={tmp_path}", "--sram_bytes=40000,abc"],
                            capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode != 0
    assert "--sram_bytes must be a list of positive numbers" in result.stderr
