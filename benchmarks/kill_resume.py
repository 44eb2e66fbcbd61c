"""Fault injection: a KWS run killed (SIGKILL) at many points, resumed each time, against an
uninterrupted run with the same seed.

The run of `experiments/kws_kill_resume.flags` (embedded spoken keywords; `make data`) is first
run without interruption. Then the same command is started again and again into a second
output directory, and each start is killed with SIGKILL at the next kill point: points spread
over every stage (inside search epochs, right after the search's derivation, inside final
training epochs, during quantization-aware training, verification and the report), found by
watching the command's output. A last start finishes the run. The feature cache starts empty
(a fresh `MNAS_CACHE_DIR`), so the uninterrupted run computes the features and the others read
them. `arch.json`, `report.json`
(without the wall-clock figures `stage_seconds` and `host_latency_ms`, and the output folder
in `config.out_dir`), `model.tflite` and the float weights of both runs are compared.

    python benchmarks/kill_resume.py [--flagfile experiments/kws_kill_resume.flags]
        [--data_dir data/embedded/kws] [--out runs/kill_resume]

Prints the kill points, the comparison, and last `kill_resume_identical=<0|1>`.
"""

import argparse
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# (stage, line that triggers the kill, seconds to wait after it). In order of the run.
KILL_POINTS = (
    ("search", r"^Epoch 1/", 1.5),
    ("search", r"^Epoch 2/", 2.5),
    ("search", r"^Epoch 3/", 0.5),
    ("search", r"^derived architecture", 0.0),
    ("train", r"^Epoch 1/", 1.0),
    ("train", r"^Epoch 2/", 2.0),
    ("train", r"^Epoch 3/", 3.0),
    ("quantize", r"^Epoch 1/", 1.0),
    ("quantize", r"^Epoch 2/", 0.5),
    ("verify", r"^=== verify", 0.5),
    ("report", r"^=== report", 0.0),
)
# Figures of wall-clock time or of where the run was written: they differ between any two runs.
UNCOMPARED = ("stage_seconds", "host_latency_ms")


def command(flagfile, data_dir, out_dir):
    return [sys.executable, "-m", "mnas.train", f"--flagfile={flagfile}",
            f"--data_dir={data_dir}", f"--out_dir={out_dir}", "--verbose=1"]


def run_until(cmd, stage, pattern, delay, cache_dir):
    """Starts `cmd`; kills it `delay` s after `pattern` appears in `stage`. Returns
    (killed, return code, seconds)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", MNAS_CACHE_DIR=cache_dir)
    started = time.time()
    process = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, bufsize=1)
    current, killed, tail = None, False, []
    for line in process.stdout:
        tail = (tail + [line])[-20:]
        header = re.match(r"^=== (\w+)", line.strip())
        if header:
            current = header.group(1)
        if stage and not killed and current == stage and re.search(pattern, line.strip()):
            timer = threading.Timer(delay, process.send_signal, [signal.SIGKILL])
            timer.start()
            killed = True
    code = process.wait()
    if code not in (0, -signal.SIGKILL):
        sys.stdout.write("".join(tail))
    return code == -signal.SIGKILL, code, time.time() - started


def report_figures(out_dir):
    with open(os.path.join(out_dir, "report.json")) as f:
        report = json.load(f)
    for key in UNCOMPARED:
        report.pop(key, None)
    report.get("config", {}).pop("out_dir", None)
    return report


def digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def float_weights_equal(a, b):
    import mnas  # noqa: F401  (Keras 2 first)
    import numpy as np
    import tf_keras as keras

    left = keras.models.load_model(os.path.join(a, "train", "model.keras"), compile=False)
    right = keras.models.load_model(os.path.join(b, "train", "model.keras"), compile=False)
    return all(np.array_equal(x, y) for x, y in zip(left.get_weights(), right.get_weights()))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flagfile", default="experiments/kws_kill_resume.flags")
    parser.add_argument("--data_dir", default="data/embedded/kws")
    parser.add_argument("--out", default="runs/kill_resume")
    args = parser.parse_args()
    if not os.path.isdir(os.path.join(ROOT, args.data_dir)) and not os.path.isdir(args.data_dir):
        sys.exit(f"error: no data at {args.data_dir}: run `make data` first.")
    reference = os.path.join(args.out, "uninterrupted")
    resumed = os.path.join(args.out, "killed")
    cache_dir = os.path.join(ROOT, args.out, "feature_cache")
    for folder in (reference, resumed, cache_dir):
        shutil.rmtree(os.path.join(ROOT, folder), ignore_errors=True)

    _, code, seconds = run_until(command(args.flagfile, args.data_dir, reference), None, "", 0,
                                 cache_dir)
    print(f"uninterrupted run (features computed, empty cache): exit {code}, {seconds:.0f} s",
          flush=True)
    if code != 0:
        sys.exit("error: the uninterrupted run failed")

    kills = 0
    for stage, pattern, delay in KILL_POINTS:
        killed, code, seconds = run_until(command(args.flagfile, args.data_dir, resumed),
                                          stage, pattern, delay, cache_dir)
        kills += killed
        what = "killed" if killed else f"not killed (exit {code})"
        print(f"kill point {stage} {pattern!r} +{delay} s: {what} after {seconds:.0f} s",
              flush=True)
        if not killed and code != 0:
            sys.exit("error: a resumed start failed")
    _, code, seconds = run_until(command(args.flagfile, args.data_dir, resumed), None, "", 0,
                                 cache_dir)
    print(f"final start: exit {code}, {seconds:.0f} s", flush=True)

    a, b = os.path.join(ROOT, reference), os.path.join(ROOT, resumed)
    checks = {
        "arch.json": digest(os.path.join(a, "arch.json")) == digest(os.path.join(b, "arch.json")),
        "report.json figures": report_figures(a) == report_figures(b),
        "model.tflite": digest(os.path.join(a, "model.tflite"))
        == digest(os.path.join(b, "model.tflite")),
        "float weights": float_weights_equal(a, b),
    }
    for name, same in checks.items():
        print(f"{name}: {'identical' if same else 'DIFFERENT'}")
    if not checks["report.json figures"]:
        left, right = report_figures(a), report_figures(b)
        for key in sorted(set(left) | set(right)):
            if left.get(key) != right.get(key):
                print(f"  report.json {key}: {left.get(key)} vs {right.get(key)}")
    print(f"kill_points={kills}")
    print(f"kill_resume_identical={int(code == 0 and kills >= 6 and all(checks.values()))}")


if __name__ == "__main__":
    main()
