import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_fit_with_regularizer_example_runs(tmp_path):
    out = tmp_path / "arch.json"
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", "fit_with_regularizer.py"),
         "--epochs", "2", "--out", str(out)],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "expected costs / targets: sram" in result.stdout
    assert "derived widths:" in result.stdout
    assert json.loads(out.read_text())["input_shape"] == [49, 10, 1]
