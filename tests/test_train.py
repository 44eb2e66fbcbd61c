"""Tests of the main job's command line, `python -m mnas.train`, run as a user runs it."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A tiny anomaly-detection run: two blocks of at most 16 channels, a few epochs.
TINY = ["--task=ad", "--max_width=16", "--num_blocks=2", "--width_steps=4", "--batch_size=32",
        "--search_epochs=3", "--warmup_epochs=1", "--train_epochs=1", "--quantization=ptq",
        "--calibration_samples=16", "--verbose=0", "--device=STM32F446RE"]


def command(*flags):
    return [sys.executable, "-m", "mnas.train", *flags]


def run(*flags):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run(command(*flags), capture_output=True, text=True, cwd=ROOT, env=env,
                          timeout=600)


def error_line(result):
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    return lines


def test_kill_during_search_then_resume_finishes_every_output(ad_data, tmp_path):
    out = tmp_path / "run"
    flags = TINY + [f"--data_dir={ad_data}", f"--out_dir={out}"]
    progress = out / "search" / "checkpoint" / "progress.json"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    first = subprocess.Popen(command(*flags), cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not progress.exists() and time.time() < deadline and first.poll() is None:
        time.sleep(0.2)
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert progress.exists(), "the search never finished its first epoch"
    done = json.loads(progress.read_text())["epochs_done"]
    assert 1 <= done < 3
    assert not (out / "arch.json").exists()

    second = run(*flags)
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"resuming search after epoch {done} of 3" in second.stdout
    for name in ("arch.json", "model.tflite", "model_data.cc", "model_data.h", "report.json",
                 "report.md", "flags.txt", "plots/probabilities.png", "plots/costs.png",
                 "plots/widths.png"):
        assert (out / name).stat().st_size > 0, name
    assert list((out / "tensorboard").rglob("events.out.tfevents*"))
    report = json.loads((out / "report.json").read_text())
    assert report["task"] == "ad" and report["device"] == "STM32F446RE"
    assert report["measured"]["arena_bytes"] > 0
    assert report["measured"]["tflite_bytes"] == (out / "model.tflite").stat().st_size
    assert report["accuracy"]["metric"] == "auc"
    assert 0.0 <= report["accuracy"]["int8"] <= 1.0
    assert isinstance(report["fits"], bool)
    # Every search epoch is in the architecture log once it is read back.
    epochs = {json.loads(line)["epoch"]
              for line in (out / "search" / "architecture.jsonl").read_text().splitlines()}
    assert epochs == {0, 1, 2}

    # A third start finds every stage done and redoes nothing.
    third = run(*flags)
    assert third.returncode == 0, third.stderr[-3000:]
    assert third.stdout.count("done before, skipped") == 5


def test_other_settings_in_the_same_output_directory_are_refused(ad_data, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "state.json").write_text(json.dumps(
        {"config": {"task": "ad", "seed": 1}, "finished": {}}))
    lines = error_line(run(*TINY, f"--data_dir={ad_data}", f"--out_dir={out}"))
    assert lines[-1].startswith("error: Invalid value for `out_dir`")
    assert "holds a run with other settings" in lines[-1]


@pytest.mark.parametrize("flags, message", [
    (["--task=speech"], "--task=speech: value should be one of <kws|vww|ad>"),
    (["--device=ESP32"], "error: Invalid value for `device`"),
    (["--sram_bytes=-3"], "--sram_bytes must be a positive number"),
    (["--latency_ms=0"], "--latency_ms must be a positive number"),
    (["--data_dir=/nonexistent/ad"], "make data"),
    (["--sram_bytes=12000"], "below the smallest sram any architecture"),
    (["--warmup_epochs=3"], "--warmup_epochs must be below --search_epochs"),
])
def test_bad_input_gives_one_clear_error(ad_data, tmp_path, flags, message):
    defaults = [f"--data_dir={ad_data}", f"--out_dir={tmp_path / 'run'}"]
    lines = error_line(run(*TINY, *defaults, *flags))
    assert message in "\n".join(lines[-2:]), lines


def test_unwritable_output_directory(ad_data, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    lines = error_line(run(*TINY, f"--data_dir={ad_data}", f"--out_dir={blocker / 'run'}"))
    assert lines[-1].startswith("error: Invalid value for `out_dir`: expected a writable "
                                "directory")


def test_unknown_flag_in_a_flagfile(tmp_path):
    flagfile = tmp_path / "bad.flags"
    flagfile.write_text("--task=kws\n--serach_epochs=3\n")
    lines = error_line(run(f"--flagfile={flagfile}"))
    assert "Unknown command line flag 'serach_epochs'" in "\n".join(lines)
