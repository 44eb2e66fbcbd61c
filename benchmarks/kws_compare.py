"""Where DNAS stands on keyword spotting: against black-box search, no search, and hand designs.

On the embedded spoken keywords, with one training recipe for every model (the KWS demo's:
experiments/kws_demo.flags), at four budgets, for each seed:
- `dnas`: mnas's default search;
- `random` and `bayesian`: keras-tuner's oracles over the same choices, each given the wall-clock
  seconds that DNAS's search took (same seed and budget);
- `widest`: the widest architecture of the space that fits (uniform width, narrowed until the
  exact estimator says it fits; no search);
- DS-CNN S/M/L and MicroNet KWS-S/M/L (`mnas.get_architecture`), trained once per seed and
  listed at the budgets they fit; one that fits none of the budgets by the exact estimates of
  its untrained model is not trained (a line says why).
Every model then gets the same final training, QAT and TFLite Micro verification (`mnas.job`).

Prints one table (method, budget, int8 accuracy mean and spread over seeds, float accuracy,
measured arena, flatbuffer, ops, estimated latency, search seconds, fits), then
`dnas_vs_published_min=<x>` (the smallest, over budgets, of DNAS's mean int8 accuracy minus
the best published architecture's that fits) and last `dnas_margin_min=<x>` (the smallest,
over budgets, of DNAS's mean int8 accuracy minus the best other search method's).

Usage:
    python benchmarks/kws_compare.py --quick                 # one seed, fewer epochs, one budget
    python benchmarks/kws_compare.py --quick --budgets=F446RE_100ms,F446RE_250ms  # two budgets
    python benchmarks/kws_compare.py --quick --seeds=0,1,2   # three seeds of the quick recipe
    python benchmarks/kws_compare.py --data_dir=data/embedded/kws --seeds=0,1,2

Runs go to --out_dir, one folder each; a run finished before is reused (each resumes).
"""

import contextlib
import json
import os
import time

import numpy as np
from absl import app, flags

from mnas import console

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# name: (device, SRAM bytes or None for the device's, latency budget in ms).
BUDGETS = {
    "F446RE_100ms": ("STM32F446RE", None, 100.0),
    "F446RE_250ms": ("STM32F446RE", None, 250.0),
    # A 48 KB arena: the device's SRAM reserve on top.
    "48KB_30ms": ("STM32F446RE", 48 * 1024 + 8 * 1024, 30.0),
    "F746ZG_100ms": ("STM32F746ZG", None, 100.0),
}
PUBLISHED = ("ds_cnn_s", "ds_cnn_m", "ds_cnn_l", "micronet_kws_s", "micronet_kws_m",
             "micronet_kws_l")
SEARCHES = ("dnas", "random", "bayesian")
# The KWS demo's recipe (experiments/kws_demo.flags), and --quick's shorter one.
RECIPE = {"max_width": 128, "num_blocks": 6, "stem_stride": 2, "search_epochs": 6,
          "warmup_epochs": 1, "search_learning_rate": 0.01, "temperature_start": 5.0,
          "temperature_end": 0.05, "train_epochs": 25, "learning_rate": 0.005,
          "batch_size": 100, "quantization": "qat", "qat_epochs": 3, "trial_epochs": 3}
QUICK = {"search_epochs": 4, "train_epochs": 10, "trial_epochs": 1}


def _define_flags():
    flags.DEFINE_string("data_dir", os.path.join(ROOT, "data", "embedded", "kws"),
                        "Embedded keyword data (make data).")
    flags.DEFINE_string("out_dir", os.path.join(ROOT, "runs", "kws_compare"), "Runs folder.")
    flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds (--quick: the first only, unless "
                      "given).")
    flags.DEFINE_list("budgets", list(BUDGETS), "Budgets to run, among " + ", ".join(BUDGETS)
                      + " (--quick: the first only, unless given).")
    flags.DEFINE_list("published", list(PUBLISHED), "Published architectures to compare.")
    flags.DEFINE_bool("quick", False, "Fewer epochs ("
                      + ", ".join(f"{k}={v}" for k, v in QUICK.items())
                      + "), and one seed and the demo's budget unless --seeds / --budgets "
                        "are given.")


def _config(out_dir, data_dir, recipe, seed, budget=None, **changes):
    from mnas import job

    device, sram, latency = BUDGETS[budget] if budget else ("STM32F746ZG", None, None)
    return job.Config(task="kws", data_dir=data_dir, out_dir=out_dir, device=device,
                      sram_bytes=sram, latency_ms=latency, seed=seed, verbose=0,
                      **recipe, **changes)


def _run(config, log):
    """Runs (or resumes) one job quietly, its lines going to `log`; returns the report and the
    seconds of its search stage."""
    from mnas import job

    os.makedirs(config.out_dir, exist_ok=True)
    with open(log, "a") as f, contextlib.redirect_stdout(f):
        report = job.run(config)
    with open(os.path.join(config.out_dir, "state.json")) as f:
        search_seconds = json.load(f)["finished"].get("search", 0.0)
    return report, search_seconds


def _widest_arch(config, path):
    """Writes the widest architecture of the space that fits the config's budget to `path`."""
    from mnas import arch, blackbox, derivation, job, runconfig

    space = job._space(config)  # noqa: SLF001
    supernet = space.build()
    targets = job._regularizer(config, runconfig.target_device(config)).targets  # noqa: SLF001
    picks, _ = blackbox.widest_within(supernet, targets, runconfig.target_device(config),
                                      space.backbone)
    with derivation.fixed_choices(supernet, picks):
        spec = arch.derive(supernet, name="kws_widest")
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        spec.save(path)
    return path


def _row(method, budget, report, search_seconds, fits=None, latency_ms=None):
    measured = report["measured"]
    return {"method": method, "budget": budget, "int8": report["accuracy"]["int8"],
            "float": report["accuracy"]["float"], "arena": measured["arena_bytes"],
            "flash": measured["tflite_bytes"], "ops": measured["ops"],
            "latency_ms": measured["latency_ms"] if latency_ms is None else latency_ms,
            "search_s": search_seconds, "fits": report["fits"] if fits is None else fits}


def _budget_device(budget):
    """The device of `budget` with its SRAM size, and its latency budget."""
    import dataclasses

    from mnas import devices

    device_name, sram, latency = BUDGETS[budget]
    device = devices.get_device(device_name)
    return (device if sram is None else dataclasses.replace(device, sram_bytes=sram)), latency


def _published_fit(folder, report, budget):
    """Whether a trained published model fits `budget`, and its latency on that device."""
    from mnas import export

    device, latency = _budget_device(budget)
    # The device's per-operator latency over the flatbuffer, as the job's own fit check.
    fit = export.check_fit(os.path.join(folder, "model.tflite"), device,
                           report["measured"]["arena_bytes"],
                           backbone=report["architecture"].get("backbone") or "default",
                           latency_budget_ms=latency)
    return fit.fits, fit.latency_ms


def _fits_any(name, budgets):
    """Whether the published architecture `name` fits one of `budgets`, by the exact estimates
    of its untrained model: one that fits none is not trained."""
    from mnas import arch, export, get_architecture

    spec = get_architecture(name)
    model = arch.build(spec)
    misses = []
    for budget in budgets:
        device, latency = _budget_device(budget)
        fit = export.check_fit_keras(model, device, backbone=spec.backbone or "default",
                                     latency_budget_ms=latency)
        if fit.fits:
            return True
        misses.append(f"{budget}: {'; '.join(fit.failures)}")
    print(f"{name}: fits none of the budgets, not trained ({' | '.join(misses)})", flush=True)
    return False


def run_all(values):
    recipe = dict(RECIPE, **(QUICK if values.quick else {}))
    seeds = [int(s) for s in values.seeds]
    out = values.out_dir
    published = [name for name in values.published if _fits_any(name, values.budgets)]
    rows = []
    for seed in seeds:
        for budget in values.budgets:
            folder = os.path.join(out, f"seed{seed}", budget)
            log = os.path.join(folder, "log.txt")
            os.makedirs(folder, exist_ok=True)
            report, dnas_seconds = _run(_config(os.path.join(folder, "dnas"), values.data_dir,
                                                recipe, seed, budget), log)
            rows.append(_row("dnas", budget, report, dnas_seconds))
            for method in ("random", "bayesian"):
                config = _config(os.path.join(folder, method), values.data_dir, recipe, seed,
                                 budget, search=method, search_trials=0,
                                 search_seconds=max(1.0, round(dnas_seconds, 1)))
                report, seconds = _run(config, log)
                rows.append(_row(method, budget, report, seconds))
            widest = _config(os.path.join(folder, "widest"), values.data_dir, recipe, seed,
                             budget)
            started = time.time()
            path = _widest_arch(widest, os.path.join(folder, "widest_arch.json"))
            seconds = time.time() - started
            widest = _config(widest.out_dir, values.data_dir, recipe, seed, budget, arch=path)
            rows.append(_row("widest", budget, _run(widest, log)[0], round(seconds, 1)))
            _say_progress(rows[-4:], seed)
        for name in published:
            folder = os.path.join(out, f"seed{seed}", "published", name)
            config = _config(folder, values.data_dir, recipe, seed, arch=name)
            report, _ = _run(config, os.path.join(out, f"seed{seed}", "published_log.txt"))
            for budget in values.budgets:
                fits, latency = _published_fit(folder, report, budget)
                if fits:
                    rows.append(_row(name, budget, report, 0.0, fits, latency))
            print(f"seed {seed}: {name} int8 {report['accuracy']['int8']:.4f}", flush=True)
    return rows


def _say_progress(rows, seed):
    print(f"seed {seed}, {rows[0]['budget']}: " + ", ".join(
        f"{r['method']} int8 {r['int8']:.4f}" for r in rows), flush=True)


def summarize(rows, budgets):
    """One line per (method, budget): means over seeds, and the spread of int8 accuracy."""
    table = []
    methods = list(dict.fromkeys(r["method"] for r in rows))
    for budget in budgets:
        for method in methods:
            group = [r for r in rows if r["method"] == method and r["budget"] == budget]
            if not group:
                continue
            int8 = np.array([r["int8"] for r in group])
            table.append({
                "method": method, "budget": budget, "seeds": len(group),
                "int8": float(int8.mean()), "int8_min": float(int8.min()),
                "int8_max": float(int8.max()),
                **{k: float(np.mean([r[k] for r in group]))
                   for k in ("float", "arena", "flash", "ops", "latency_ms", "search_s")},
                "fits": all(r["fits"] for r in group)})
    return table


def margins(table, budgets):
    """(DNAS minus the best other search, DNAS minus the best published that fits), each the
    smallest over budgets (None where there is nothing to compare)."""
    def best(budget, methods):
        values = [t["int8"] for t in table if t["budget"] == budget and t["method"] in methods
                  and t["fits"]]
        return max(values) if values else None

    search, published = [], []
    for budget in budgets:
        dnas = best(budget, ("dnas",))
        if dnas is None:
            continue
        other = best(budget, ("random", "bayesian"))
        if other is not None:
            search.append(dnas - other)
        paper = best(budget, PUBLISHED)
        if paper is not None:
            published.append(dnas - paper)
    return (min(search) if search else None), (min(published) if published else None)


def format_table(table):
    head = ("method", "budget", "int8 mean (min-max)", "float", "arena B", "flash B", "ops",
            "latency ms", "search s", "fits")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for t in table:
        spread = f" ({t['int8_min']:.4f}-{t['int8_max']:.4f})" if t["seeds"] > 1 else ""
        lines.append(
            f"| {t['method']} | {t['budget']} | {t['int8']:.4f}{spread} | {t['float']:.4f} | "
            f"{t['arena']:,.0f} | {t['flash']:,.0f} | {t['ops'] / 1e6:.2f} M | "
            f"{t['latency_ms']:.1f} | {t['search_s']:.0f} | {'yes' if t['fits'] else 'no'} |")
    return "\n".join(lines)


def main(argv):
    del argv
    values = flags.FLAGS
    unknown = set(values.budgets) - set(BUDGETS)
    if unknown:
        print(f"error: Invalid value for `budgets`: expected names among {list(BUDGETS)}, "
              f"received {sorted(unknown)}.")
        return 1
    if not os.path.isdir(values.data_dir):
        print(f"error: Invalid value for `data_dir`: expected the embedded keyword data "
              f"(make data), received {values.data_dir!r}, which does not exist.")
        return 1
    if values.quick and not values["budgets"].present:
        values.budgets = list(BUDGETS)[:1]
    if values.quick and not values["seeds"].present:
        values.seeds = values.seeds[:1]
    started = time.time()
    rows = run_all(values)
    table = summarize(rows, values.budgets)
    text = format_table(table)
    search_margin, published_margin = margins(table, values.budgets)
    os.makedirs(values.out_dir, exist_ok=True)
    with open(os.path.join(values.out_dir, "compare.json"), "w") as f:
        json.dump({"rows": rows, "table": table, "quick": values.quick}, f, indent=2)
    with open(os.path.join(values.out_dir, "compare.md"), "w") as f:
        f.write(text + "\n")
    print(text)
    print(f"total_seconds={time.time() - started:.0f}")
    print(f"dnas_vs_published_min={_fmt(published_margin)}")
    print(f"dnas_margin_min={_fmt(search_margin)}")
    return 0


def _fmt(value):
    return "n/a" if value is None else f"{value:+.4f}"


if __name__ == "__main__":
    console.own_lines_only()
    _define_flags()
    app.run(main)
