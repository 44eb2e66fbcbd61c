"""How exact are mnas's resource estimates? Checked against the converter and TFLite Micro.

For the MLPerf Tiny reference models and random architectures of every task's search space
(`mnas.tasks`) (plus, with `--random_models`, random plain DS-CNN /
MobileNetV2-like / FC-autoencoder models), compares:

- the arena estimated from the `.tflite` (`estimate_tflite`) and from the Keras model before
  conversion (`estimate_keras`) with the arena TFLite Micro measures (`mnas.hardware.tflm`);
- the flatbuffer bytes predicted from the Keras model with the converter's output;
- the search's differentiable SRAM and flash costs (`mnas.costs.expected_costs` of the supernet
  with the sampled architecture's one-hot choices) with the measured arena and the converter's
  flatbuffer.

Random architectures are built fresh, given trained-like statistics and converted as
`python -m mnas.profile --arch` does (`mnas.profile.convert_like_trained`).

Prints one line per model, then max and median absolute error in percent per set; the last
lines are `sram_cost_max_abs_error_pct=<x>` and `flash_cost_max_abs_error_pct=<x>` (the
differentiable costs, over the search spaces' samples) and `arena_max_abs_error_pct=<x>` (the
arena estimated from the `.tflite`, over every model).

    python benchmarks/cost_model_fidelity.py --samples=200
"""

# mnas comes first: it selects Keras 2 (tf_keras) before TensorFlow is imported.
import mnas  # noqa: F401, I001
import os
import sys
import time

import numpy as np
from absl import app, flags

from mnas import arch, costs, derivation, errors, profile, search_spaces, tasks
from mnas.hardware import estimate, tflm

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _random_models  # noqa: E402

REFERENCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared",
                         "reference")


def define_flags():
    flags.DEFINE_integer("samples", 50, "Random architectures per search space.")
    flags.DEFINE_integer("random_models", 0, "Random plain models per backbone generator.")
    flags.DEFINE_list("spaces", None, "Search spaces to sample. Defaults to every task's "
                      "space (mnas.tasks).")
    flags.DEFINE_string("reference_dir", REFERENCE, "Directory of the reference .tflite models.")
    flags.DEFINE_integer("seed", 0, "Seed of the architecture sampling.")


def _pct(estimated, actual):
    return 100.0 * abs(estimated - actual) / actual


def _signed_pct(estimated, actual):
    return 100.0 * (estimated - actual) / actual


def _summary(name, values):
    values = np.asarray(values, dtype=np.float64)
    return (f"{name}: n={len(values)} max_abs_error_pct={values.max():.3f} "
            f"median_abs_error_pct={float(np.median(values)):.3f}")


def _measure(model, rng, expected=None, label=None):
    """One row of figures for a fresh Keras model; `expected` are its differentiable costs."""
    label = label or model.name
    tflite = profile.convert_like_trained(model, rng)
    try:
        measured = tflm.measure_isolated(tflite, repeats=0)
    except (errors.InvalidModelFileError, RuntimeError) as e:
        print(f"  {label}: not measured: {e}", flush=True)
        return None
    arena = measured["total_bytes"]
    after = estimate.estimate_tflite(tflite)
    before = estimate.estimate_keras(model)
    row = {"arena_tflite": _pct(after.arena_bytes, arena),
           "arena_keras": _pct(before.arena_bytes, arena),
           "flatbuffer_keras": _pct(before.tflite_bytes, len(tflite)),
           "flatbuffer_keras_signed": _signed_pct(before.tflite_bytes, len(tflite))}
    line = (f"  {label}: arena measured {arena} tflite-estimate {after.arena_bytes} "
            f"keras-estimate {before.arena_bytes}; flatbuffer {len(tflite)} keras-estimate "
            f"{before.tflite_bytes} ({row['flatbuffer_keras_signed']:+.2f}%)")
    if expected is not None:
        row["sram_signed"] = _signed_pct(expected.sram_bytes, arena)
        row["sram_cost"] = abs(row["sram_signed"])
        row["flash_cost"] = _pct(expected.flash_bytes, len(tflite))
        row["activation_signed"] = _signed_pct(expected.activation_bytes,
                                               measured["planned_bytes"])
        row["persistent_signed"] = _signed_pct(expected.persistent_bytes,
                                               measured["persistent_bytes"])
        line += (f"; differentiable SRAM {expected.sram_bytes:.0f} "
                 f"({row['sram_signed']:+.2f}%), flash {expected.flash_bytes:.0f} "
                 f"({_signed_pct(expected.flash_bytes, len(tflite)):+.2f}%)")
    print(line, flush=True)
    return row


def _space_rows(space, samples, rng):
    """Rows for random architectures of a search space, with the supernet's expected costs."""
    supernet = space.build()
    rows = []
    for i in range(samples):
        derivation.set_choices(supernet, derivation.random_picks(supernet, rng))
        expected = costs.expected_costs(supernet).numpy()
        # The derived model keeps derive's name, as in the search's exact figures: names are
        # part of the flatbuffer.
        model = arch.build(arch.derive(supernet))
        rows.append(_measure(model, rng, expected, label=f"{space.name}_sample{i}"))
    return [r for r in rows if r is not None]


def _plain_rows(generator, count, rng):
    rows = []
    for _ in range(count):
        model = generator(rng)
        try:
            expected = costs.expected_costs(model).numpy()
        except errors.UnsupportedLayerError:
            expected = None
        rows.append(_measure(model, rng, expected))
    return [r for r in rows if r is not None]


def _report(name, rows, attempted):
    print(f"== {name}: measured {len(rows)} of {attempted}")
    if not rows:
        return
    for key in ("arena_tflite", "arena_keras", "flatbuffer_keras"):
        print("  " + _summary(key, [r[key] for r in rows]))
    for key, what in (("sram_signed", "differentiable_sram_vs_measured_arena"),
                      ("activation_signed", "differentiable_activations_vs_measured_planned"),
                      ("persistent_signed", "differentiable_persistent_vs_measured_tail")):
        signed = [r[key] for r in rows if key in r]
        if signed:
            print(f"  {what}: n={len(signed)} mean_signed_error_pct={np.mean(signed):+.2f} "
                  f"min={np.min(signed):+.2f} max={np.max(signed):+.2f} "
                  f"max_abs={np.max(np.abs(signed)):.2f}")
    sys.stdout.flush()


def main(argv):
    del argv
    FLAGS = flags.FLAGS
    start = time.time()
    rng = np.random.default_rng(FLAGS.seed)
    arena_errors, flatbuffer_errors, sram_cost, flash_cost = [], [], [], []
    ref_rows = []
    print("== reference models")
    for name in sorted(os.listdir(FLAGS.reference_dir)):
        if name.endswith(".tflite"):
            path = os.path.join(FLAGS.reference_dir, name)
            measured = tflm.measure_isolated(path, repeats=0)["total_bytes"]
            est = estimate.estimate_tflite(path).arena_bytes
            print(f"  {name}: arena measured {measured} tflite-estimate {est}")
            ref_rows.append(_pct(est, measured))
    print("  " + _summary("arena_tflite", ref_rows))
    arena_errors += ref_rows
    for space_name in FLAGS.spaces or sorted(tasks.NAMES):
        try:
            space = search_spaces.get(space_name)
        except errors.UnknownNameError:
            print(f"== search space {space_name!r}: not available, skipped")
            continue
        print(f"== search space {space_name}: {FLAGS.samples} random architectures")
        rows = _space_rows(space, FLAGS.samples, rng)
        _report(f"search space {space_name}", rows, FLAGS.samples)
        arena_errors += [r["arena_tflite"] for r in rows]
        flatbuffer_errors += [r["flatbuffer_keras"] for r in rows]
        sram_cost += [r["sram_cost"] for r in rows]
        flash_cost += [r["flash_cost"] for r in rows]
    if FLAGS.random_models:
        for gen_name, generator in _random_models.GENERATORS.items():
            print(f"== random plain {gen_name}: {FLAGS.random_models} models")
            rows = _plain_rows(generator, FLAGS.random_models, rng)
            _report(f"random plain {gen_name}", rows, FLAGS.random_models)
            arena_errors += [r["arena_tflite"] for r in rows]
            flatbuffer_errors += [r["flatbuffer_keras"] for r in rows]
    print(f"== all: {len(arena_errors)} models in {time.time() - start:.0f} s")
    if flatbuffer_errors:
        print(f"flatbuffer_max_abs_error_pct={max(flatbuffer_errors):.3f}")
    if sram_cost:  # The supernets' one-hot differentiable costs.
        print(f"sram_cost_max_abs_error_pct={max(sram_cost):.3f}")
        print(f"flash_cost_max_abs_error_pct={max(flash_cost):.3f}")
    print(f"arena_max_abs_error_pct={max(arena_errors):.3f}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
