"""Tests of mnas.distribute: search under MirroredStrategy on two logical CPU devices and under
MultiWorkerMirroredStrategy with two worker processes on 127.0.0.1.

Each run is its own process (tests/distribute_worker.py): logical devices and a cluster must be
set up before TensorFlow starts.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from mnas import distribute
from mnas.errors import MnasError

WORKER = Path(__file__).with_name("distribute_worker.py")
# Generous: on a busy 2-core machine the mirrored process takes minutes (about one alone).
TIMEOUT_S = 900


def start(args, env=None):
    return subprocess.Popen([sys.executable, str(WORKER)] + [str(a) for a in args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env)


def finish(processes):
    """Waits for every process (bounded), killing all of them if one fails or hangs."""
    try:
        outputs = [p.communicate(timeout=TIMEOUT_S)[0] for p in processes]
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
                p.communicate()
    for p, output in zip(processes, outputs):
        assert p.returncode == 0, output[-3000:]


def test_mirrored_search_matches_one_device(tmp_path):
    out = tmp_path / "mirrored.json"
    finish([start(["mirrored", out, tmp_path / "checkpoint"])])
    result = json.loads(out.read_text())
    mirrored, single = result["mirrored"], result["single"]
    assert mirrored["replicas"] == 2 and single["replicas"] == 1
    # The strengths grew (the targets are below the supernet's costs) and are the same on both
    # replicas. With batch statistics over the global batch (synchronised batch norm under a
    # strategy), the two replicas compute what one device computes: the same strengths after
    # every epoch, the same derived architecture, the same expected costs.
    for name, values in mirrored["strengths"].items():
        assert len(values) == 2 and values[0] == values[1] > 0, name
        for epoch, strengths in enumerate(mirrored["history"]):
            assert strengths[name] == pytest.approx(single["history"][epoch][name],
                                                    rel=0.01, abs=1e-6), (name, epoch)
    assert mirrored["temperatures"] == single["temperatures"] == [1.0]
    assert_same_search(mirrored, single)
    # Resumed from the checkpoint of epoch 2: the run ends where the uninterrupted one did.
    resumed = result["resumed"]
    for name, values in resumed["strengths"].items():
        assert values[0] == values[1]
        assert values[0] == pytest.approx(mirrored["strengths"][name][0], rel=0.01), name
    assert_same_search(resumed, mirrored)


def assert_same_search(a, b, tolerance=0.02):
    """The same probabilities (within `tolerance`), expected costs (within 1%) and derived
    widths. Float sums in another order can tip a decision whose two leading options are
    within `tolerance` of each other: its argmax, and so the widths, may then differ."""
    tied = False
    for p, q in zip(a["probabilities"], b["probabilities"], strict=True):
        assert p == pytest.approx(q, abs=tolerance)
        top = sorted(p)[-2:]
        tied |= top[1] - top[0] < 2 * tolerance
    assert tied or a["widths"] == b["widths"]
    for cost in ("sram", "flash", "ops"):
        assert a[cost] == pytest.approx(b[cost], rel=0.01), cost


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_multi_worker_search_on_two_processes(tmp_path):
    cluster = {"worker": [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]}
    processes = []
    for index in range(2):
        env = dict(os.environ, TF_CONFIG=json.dumps(
            {"cluster": cluster, "task": {"type": "worker", "index": index}}))
        processes.append(start(["multi_worker", tmp_path / f"{index}.json",
                                tmp_path / f"checkpoint-{index}"], env))
    finish(processes)
    results = [json.loads((tmp_path / f"{i}.json").read_text())["multi_worker"]
               for i in range(2)]
    assert [r["replicas"] for r in results] == [2, 2]
    assert results[0]["strengths"] == results[1]["strengths"]
    assert all(v[0] > 0 for v in results[0]["strengths"].values())
    assert results[0]["widths"] == results[1]["widths"]
    assert results[0]["sram"] == results[1]["sram"]
    assert (tmp_path / "checkpoint-0" / "progress.json").exists()


def test_worker_and_chief_from_tf_config(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert distribute.worker() == ("chief", 0, 1) and distribute.is_chief()
    cluster = {"worker": ["a:1", "b:1"]}
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster,
                                                "task": {"type": "worker", "index": 1}}))
    assert distribute.worker() == ("worker", 1, 2) and not distribute.is_chief()
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster,
                                                "task": {"type": "worker", "index": 0}}))
    assert distribute.is_chief()


def test_bad_strategy_and_tf_config_are_one_line_errors(monkeypatch):
    with pytest.raises(MnasError, match="`strategy`: expected one of .*received 'tpu'"):
        distribute.get_strategy("tpu")
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(MnasError, match="`TF_CONFIG`: expected the cluster"):
        distribute.get_strategy("multi_worker")
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(MnasError, match="`TF_CONFIG`: expected JSON"):
        distribute.worker()
