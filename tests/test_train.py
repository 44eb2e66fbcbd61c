"""Tests of the main job's command line, `python -m mnas.train`, run as a user runs it."""

import csv
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
    # The feature cache's progress lines ("features kws-train: ...") are not errors.
    lines = [line for line in result.stderr.splitlines()
             if line.strip() and not line.startswith("features ")]
    return lines


def epochs_logged(folder):
    """The epochs of a stage's history.csv and architecture.jsonl, in file order."""
    with open(folder / "history.csv", newline="") as f:
        history = [int(row["epoch"]) for row in csv.DictReader(f)]
    records = [json.loads(line)["epoch"]
               for line in (folder / "architecture.jsonl").read_text().splitlines()]
    return history, records


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
                 "plots/widths.png", "plots/training.png", "plots/memory.png", "plots/roc.png"):
        assert (out / name).stat().st_size > 0, name
    assert list((out / "tensorboard").rglob("events.out.tfevents*"))
    assert list((out / "tensorboard" / "search" / "architecture").glob("events.out.tfevents*"))
    report = json.loads((out / "report.json").read_text())
    assert report["task"] == "ad" and report["device"] == "STM32F446RE"
    assert report["measured"]["arena_bytes"] > 0
    assert report["measured"]["tflite_bytes"] == (out / "model.tflite").stat().st_size
    assert report["accuracy"]["metric"] == "auc"
    assert 0.0 <= report["accuracy"]["int8"] <= 1.0
    assert isinstance(report["fits"], bool)
    # Every search epoch is in the logs once.
    assert epochs_logged(out / "search") == ([0, 1, 2], [0, 1, 2])

    # A third start finds every stage done and redoes nothing.
    third = run(*flags)
    assert third.returncode == 0, third.stderr[-3000:]
    assert third.stdout.count("done before, skipped") == 5
    assert epochs_logged(out / "search") == ([0, 1, 2], [0, 1, 2])


def test_other_settings_in_the_same_output_directory_are_refused(ad_data, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "state.json").write_text(json.dumps(
        {"settings": {"task": "ad", "seed": 1}, "finished": {}}))
    lines = error_line(run(*TINY, f"--data_dir={ad_data}", f"--out_dir={out}"))
    assert lines[-1].startswith("error: Invalid value for `out_dir`")
    assert "holds a run with other settings" in lines[-1] and len(lines) == 1


@pytest.mark.parametrize("flags, message", [
    (["--task=speech"], "--task=speech: value should be one of <kws|vww|ad>"),
    (["--device=ESP32"], "error: Invalid value for `device`"),
    (["--sram_bytes=-3"], "Invalid value for `sram_bytes`: expected a finite number above 0"),
    (["--latency_ms=0"], "Invalid value for `latency_ms`: expected a finite number above 0"),
    (["--sram_bytes=99999999999999999999999"], "at most 67,108,864 bytes (64 MiB), received "
                                               "99999999999999999999999."),
    (["--latency_ms=inf"], "Invalid value for `latency_ms`: expected a finite number above 0 "
                           "and at most 3,600,000 ms, received inf."),
    (["--temperature_start=inf"], "Invalid value for `temperature_start`: expected a finite "
                                  "number > 0, received inf."),
    (["--sram_bytes=1000"], "expected more than the 8,192 bytes the runtime (TFLite Micro and "
                            "the application) reserves on STM32F446RE"),
    (["--data_dir=/nonexistent/ad"], "make data"),
    (["--sram_bytes=12000"], "below the smallest sram any architecture"),
    (["--warmup_epochs=3"], "Invalid value for `warmup_epochs`: expected fewer than"),
    (["--arch=micronet_kws_s"], "Invalid value for `arch`: expected an architecture taking "
                                "the data's input (32, 32, 1)"),
])
def test_bad_input_gives_one_clear_error_and_writes_nothing(ad_data, tmp_path, flags, message):
    defaults = [f"--data_dir={ad_data}", f"--out_dir={tmp_path / 'run'}"]
    lines = error_line(run(*TINY, *defaults, *flags))
    assert len(lines) == 1 and message in lines[0], lines
    assert not (tmp_path / "run").exists()


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


_HOLDER = """
import sys, time
from mnas import rundir
rundir.RunLock(sys.argv[1]).acquire()
print("locked", flush=True)
time.sleep(120)
"""


def test_a_second_run_into_a_directory_in_use_is_refused_at_once(ad_data, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(out)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        result = run(*TINY, f"--data_dir={ad_data}", f"--out_dir={out}")
    finally:
        holder.kill()
        holder.wait()
    lines = error_line(result)
    assert lines == [f"error: Invalid value for `out_dir`: {out} is in use by another run "
                     f"(process {holder.pid}); wait for it to end, or use another output "
                     f"directory."]
    assert sorted(os.listdir(out)) == [".lock"]


@pytest.mark.parametrize("content", ["{}", '{"settings": {"task": "ad"'])
def test_a_damaged_state_is_one_line(ad_data, tmp_path, content):
    out = tmp_path / "run"
    out.mkdir()
    (out / "state.json").write_text(content)
    lines = error_line(run(*TINY, f"--data_dir={ad_data}", f"--out_dir={out}"))
    assert len(lines) == 1 and lines[0].startswith(f"error: Damaged run state {out}/state.json")
    assert lines[0].endswith("remove it, or run the same command with --restart to start the "
                             "run over.")


def test_restart_discards_a_damaged_run(ad_data, tmp_path):
    out = tmp_path / "run"
    (out / "search" / "checkpoint").mkdir(parents=True)
    (out / "state.json").write_text("{}")
    (out / "search" / "checkpoint" / "progress.json").write_text('{"epochs_done": 2}')
    (out / "notes.txt").write_text("mine")
    result = run(*TINY, "--search_epochs=2", f"--data_dir={ad_data}", f"--out_dir={out}",
                 "--restart")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resuming" not in result.stdout
    assert (out / "notes.txt").read_text() == "mine"
    assert "--restart" not in (out / "flags.txt").read_text()
    state = json.loads((out / "state.json").read_text())
    assert list(state["finished"]) == ["search", "train", "quantize", "verify", "report"]


def test_a_corrected_command_runs_and_equivalent_spellings_resume_a_moved_run(ad_data,
                                                                             tmp_path):
    out = tmp_path / "run"
    failed = run(*TINY, "--data_dir=/nonexistent/ad", f"--out_dir={out}")
    assert "make data" in error_line(failed)[-1]
    assert not out.exists()

    relative = os.path.relpath(ad_data, ROOT)
    first = run(*TINY, "--device=S", f"--data_dir={relative}", f"--out_dir={out}/")
    assert first.returncode == 0, first.stderr[-3000:]
    moved = tmp_path / "elsewhere" / "run"
    moved.parent.mkdir()
    os.rename(out, moved)
    again = run(*TINY, "--device=STM32F446RE", f"--data_dir={ad_data}/", f"--out_dir={moved}",
                "--verbose=1")
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("done before, skipped") == 5


_DISK_FULL = """
import sys
from mnas import console
console.own_lines_only()
import mnas
import tensorflow as tf
saves = []
original = tf.train.CheckpointManager.save


def save(self, *args, **kwargs):
    saves.append(1)
    if len(saves) == 2:  # The checkpoint of the search's second epoch.
        raise tf.errors.ResourceExhaustedError(
            None, None, "ckpt-2_temp/part-00000-of-00001.data-00000-of-00001.tempstate; No "
            "space left on device")
    return original(self, *args, **kwargs)


tf.train.CheckpointManager.save = save
from mnas import train
sys.argv = ["mnas.train"] + sys.argv[1:]
train.run()
"""


def test_a_full_disk_is_one_line_and_the_resumed_logs_hold_each_epoch_once(ad_data, tmp_path):
    out = tmp_path / "run"
    flags = TINY + [f"--data_dir={ad_data}", f"--out_dir={out}"]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    full = subprocess.run([sys.executable, "-c", _DISK_FULL, *flags], capture_output=True,
                          text=True, cwd=ROOT, env=env, timeout=600)
    lines = error_line(full)
    assert lines == [f"error: No space left on the device of {out}: free some space and run "
                     f"the same command again to resume from the last finished epoch."]
    # The second epoch was logged, but its checkpoint was not written.
    assert epochs_logged(out / "search") == ([0, 1], [0, 1])

    resumed = run(*flags)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert epochs_logged(out / "search") == ([0, 1, 2], [0, 1, 2])


def test_a_committing_search_stopped_after_its_last_epoch_resumes_with_its_commitments(
        ad_data, tmp_path):
    out = tmp_path / "run"
    flags = TINY + [f"--data_dir={ad_data}", f"--out_dir={out}", "--commit_decisions"]
    first = run(*flags)
    assert first.returncode == 0, first.stderr[-3000:]
    search = json.loads((out / "search" / "search.json").read_text())
    assert len(search["commits"]) == 5  # The stem, and two blocks with their skips.
    assert search["min_commit_probability"] == min(c["probability"] for c in search["commits"])
    assert "smallest commit probability" in first.stdout
    # Stopped after the search's last checkpoint, before its answer was written.
    state = json.loads((out / "state.json").read_text())
    state["finished"] = {}
    (out / "state.json").write_text(json.dumps(state))
    (out / "search" / "search.json").unlink()

    second = run(*flags)
    assert second.returncode == 0, second.stderr[-3000:]
    assert json.loads((out / "search" / "search.json").read_text()) == search
