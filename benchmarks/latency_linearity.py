"""Is TFLite Micro latency linear in ops within one backbone? Host timings of random models.

Samples random architectures of the KWS search space (or, with `--source=ds_cnn`, random plain
DS-CNN models), gives each trained-like statistics and converts it to int8 as
`python -m mnas.profile --arch` does (`mnas.profile.convert_like_trained`), then times it in
the TFLite Micro interpreter on the host (`mnas.hardware.tflm.measure_isolated`: a child
process, the median of `--repeats` invocations after a warm-up) and fits
`ms = slope * ops + intercept` (`mnas.latency.LatencyModel`). MicroNets saw r^2 0.95 to 0.99
on microcontrollers.

Host timings are noisy when other jobs share the machine: every model is converted before any
is timed, so the converter's threads do not compete with the timings; the models are timed in
`--rounds` interleaved rounds and each keeps the median of its least disturbed round (the
smallest per-round median); the load average is printed before and after, and the largest
round-to-round spread. The same fits to each model's fastest invocation are printed too: the
least disturbed figure a loaded host gives. A fit with one slope per kind of operator (the
first layer, the other CONV_2D, DEPTHWISE_CONV_2D, the rest) shows how much of the scatter
comes from the host's reference kernels costing different times per op for different
operators.

    python benchmarks/latency_linearity.py --samples=30
"""

# mnas comes first: it selects Keras 2 (tf_keras) before TensorFlow is imported.
import mnas  # noqa: F401, I001
import os
import sys
import time

import numpy as np
from absl import app, flags

from mnas import arch, derivation, latency, profile, search_spaces
from mnas.hardware import estimate, tflm

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _random_models  # noqa: E402


def define_flags():
    flags.DEFINE_integer("samples", 30, "Random architectures.")
    flags.DEFINE_enum("source", "kws", ["kws", "ds_cnn"], "KWS search space samples, or random "
                      "plain DS-CNN models.")
    flags.DEFINE_integer("repeats", 50, "Timed invocations per model and round (the median is "
                         "kept).")
    flags.DEFINE_integer("rounds", 5, "Interleaved timing rounds (the smallest median is kept).")
    flags.DEFINE_integer("seed", 0, "Seed of the architecture sampling.")


def _load():
    return "load average (1, 5, 15 min): " + ", ".join(f"{v:.2f}" for v in os.getloadavg())


def main(argv):
    del argv
    FLAGS = flags.FLAGS
    rng = np.random.default_rng(FLAGS.seed)
    supernet = search_spaces.get("kws").build() if FLAGS.source == "kws" else None
    models = []
    start = time.time()
    for i in range(FLAGS.samples):
        if supernet is not None:
            derivation.set_choices(supernet, derivation.random_picks(supernet, rng))
            model = arch.build(arch.derive(supernet, name=f"kws_sample{i}"))
        else:
            model = _random_models.ds_cnn(rng)
        models.append(profile.convert_like_trained(model, rng))
    print(f"converted {len(models)} models in {time.time() - start:.0f} s; "
          f"{os.cpu_count()} CPUs", flush=True)
    print(f"before timing: {_load()}", flush=True)
    rounds = np.full((FLAGS.rounds, len(models)), np.nan)
    fastest = np.full(len(models), np.inf)
    failures = {}
    for r in range(FLAGS.rounds):
        for i, tflite in enumerate(models):
            if i in failures:
                continue
            try:
                measured = tflm.measure_isolated(tflite, repeats=FLAGS.repeats)
            except (mnas.errors.InvalidModelFileError, RuntimeError) as e:
                failures[i] = e
                continue
            rounds[r, i] = measured["host_latency_ms"]
            fastest[i] = min(fastest[i], measured["host_latency_min_ms"])
    print(f"after timing: {_load()}")
    estimates, ops, ms, min_ms = [], [], [], []
    for i, tflite in enumerate(models):
        if i in failures:
            print(f"{i:3d} not timed: {failures[i]}")
            continue
        estimates.append(estimate.estimate_tflite(tflite))
        ops.append(estimates[-1].ops)
        ms.append(float(np.min(rounds[:, i])))
        min_ms.append(float(fastest[i]))
        print(f"{i:3d} ops={ops[-1]:>11,} host_ms={ms[-1]:9.3f} fastest={min_ms[-1]:9.3f} "
              f"round medians={' '.join(f'{v:.2f}' for v in rounds[:, i])}")
    timed = rounds[:, [i for i in range(len(models)) if i not in failures]]
    spread = 100 * np.max((timed.max(axis=0) - timed.min(axis=0)) / timed.min(axis=0))
    print(f"timed {len(ops)} models of {FLAGS.samples} ({len(failures)} failed): host_ms is the "
          f"smallest of {FLAGS.rounds} per-round medians of {FLAGS.repeats} invocations; "
          f"largest round-to-round spread {spread:.0f}%")
    fastest_fit = latency.LatencyModel.fit(ops, min_ms)
    print(f"fit to the fastest invocations: ms = {fastest_fit.slope_ms_per_op * 1e6:.4f} * MOps "
          f"+ {fastest_fit.intercept_ms:.3f}, r2={fastest_fit.r2:.4f}; per-operator fit "
          f"r2={_per_operator_r2(estimates, min_ms):.4f}")
    fit = latency.LatencyModel.fit(ops, ms)
    residual = np.asarray(ms) - np.asarray([fit.predict(o) for o in ops])
    print(f"per-operator fit (first layer, CONV_2D, DEPTHWISE_CONV_2D, rest): "
          f"r2={_per_operator_r2(estimates, ms):.4f}")
    print(f"fit: ms = {fit.slope_ms_per_op * 1e6:.4f} * MOps + {fit.intercept_ms:.3f} "
          f"(max residual {np.max(np.abs(residual)):.2f} ms)")
    print(f"r2={fit.r2:.4f}")

def _per_operator_r2(estimates, ms):
    """r^2 of a least-squares fit with one slope per kind of operator and an intercept."""
    def kinds(est):
        first, rest = est.layers[0], est.layers[1:]
        return [first.ops, sum(x.ops for x in rest if x.op == "CONV_2D"),
                sum(x.ops for x in rest if x.op == "DEPTHWISE_CONV_2D"),
                sum(x.ops for x in rest if x.op not in ("CONV_2D", "DEPTHWISE_CONV_2D")), 1.0]

    features = np.asarray([kinds(est) for est in estimates], dtype=np.float64)
    ms = np.asarray(ms, dtype=np.float64)
    coef, *_ = np.linalg.lstsq(features, ms, rcond=None)
    residual = ms - features @ coef
    return float(1.0 - np.sum(residual ** 2) / np.sum((ms - ms.mean()) ** 2))

if __name__ == "__main__":
    define_flags()
    app.run(main)
