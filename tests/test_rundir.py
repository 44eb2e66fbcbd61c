"""Tests of mnas.rundir: the output directory's lock, state and per-epoch logs."""

import json
import os
import signal
import subprocess
import sys

import pytest

from mnas import errors, rundir

_HOLDER = """
import sys, time
from mnas import rundir
rundir.RunLock(sys.argv[1]).acquire()
print("locked", flush=True)
time.sleep(120)
"""


def test_a_second_lock_is_refused_naming_the_holder_and_a_dead_holder_is_taken_over(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(tmp_path)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        message = f"{tmp_path} is in use by another run (process {holder.pid})"
        with pytest.raises(errors.RunDirectoryError, match=message.replace("(", r"\(")
                           .replace(")", r"\)")):
            rundir.RunLock(tmp_path).acquire()
        with pytest.raises(errors.RunDirectoryError, match=f"process {holder.pid}"):
            rundir.check_not_locked(tmp_path)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # The holder died without unlocking: its lock is stale and taken over.
    rundir.check_not_locked(tmp_path)
    with rundir.RunLock(tmp_path) as lock:
        assert open(lock.path).read().strip() == str(os.getpid())
    rundir.check_not_locked(tmp_path / "missing")  # Nothing to check, nothing written.
    assert not (tmp_path / "missing").exists()


def test_state_resumes_the_same_settings_and_refuses_others(tmp_path):
    path = tmp_path / "state.json"
    state = rundir.State.load(path, {"seed": 0, "task": "kws"})
    assert state.finished == {} and not path.exists()
    state.finished["search"] = 1.5
    state.save({"seed": 0, "task": "kws", "out_dir": "x"})
    again = rundir.State.load(path, {"task": "kws", "seed": 0})
    assert again.finished == {"search": 1.5}
    with pytest.raises(errors.RunDirectoryError,
                       match=r"holds a run with other settings \(seed=0, now 1\)"):
        rundir.State.load(path, {"task": "kws", "seed": 1})
    assert rundir.State.load(path, {"task": "kws", "seed": 1}, ignore=("seed",))
    # A setting added since the run started counts as its default there.
    newer = {"task": "kws", "seed": 0, "margin": 0.0}
    assert rundir.State.load(path, newer, defaults={"margin": 0.0}).finished == {"search": 1.5}
    with pytest.raises(errors.RunDirectoryError, match=r"\(margin=None, now 0.5\)"):
        rundir.State.load(path, dict(newer, margin=0.5))
    with pytest.raises(errors.RunDirectoryError, match=r"\(margin=0.0, now 0.5\)"):
        rundir.State.load(path, dict(newer, margin=0.5), defaults={"margin": 0.0})


@pytest.mark.parametrize("content", ["{}", '{"settings": {"seed": 0}, "fini', "[1]", "\xff"])
def test_a_damaged_state_names_the_file_and_what_to_do(tmp_path, content):
    path = tmp_path / "state.json"
    path.write_bytes(content.encode("latin-1"))
    with pytest.raises(errors.CorruptRunFileError) as raised:
        rundir.State.load(path, {"seed": 0})
    text = str(raised.value)
    assert "\n" not in text and str(path) in text
    assert "remove it, or run the same command with --restart" in text


def test_epoch_logs_are_cut_back_to_the_checkpointed_epochs(tmp_path):
    history = tmp_path / "history.csv"
    history.write_text("epoch,loss\r\n0,1.0\r\n1,0.9\r\n2,0.8\r\nepoch,loss\r\n1,0.9\r\n2,0.")
    records = tmp_path / "architecture.jsonl"
    records.write_text("".join(json.dumps({"epoch": e, "p": [0.5]}) + "\n" for e in (0, 1, 2))
                       + '{"epoch": 1, "p"')
    rundir.trim_epoch_logs(2, [history], [records])
    assert history.read_text().splitlines() == ["epoch,loss", "0,1.0", "1,0.9"]
    assert [json.loads(line)["epoch"] for line in records.read_text().splitlines()] == [0, 1]
    rundir.trim_epoch_logs(0, [history, tmp_path / "absent.csv"], [records])
    assert not history.exists() and not records.exists()


def test_discard_removes_the_runs_files_only(tmp_path):
    for name in ("state.json", "search/checkpoint/ckpt-1.index", ".tmp-abc", "notes.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    rundir.discard(tmp_path, ["state.json", "search", "report.json"])
    assert sorted(os.listdir(tmp_path)) == ["notes.txt"]


def test_read_json_of_a_damaged_file(tmp_path):
    path = tmp_path / "verification.json"
    path.write_text('{"a": ')
    with pytest.raises(errors.CorruptRunFileError, match=f"Damaged verification {path}"):
        rundir.read_json(path, "verification")
