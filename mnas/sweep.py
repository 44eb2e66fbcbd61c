"""A budget sweep: the main job at several budgets, and the Pareto front of what it found.

Usage:

    python -m mnas.sweep --flagfile=experiments/kws_demo.flags --devices=S,M,L \\
        --out_dir=runs/kws_sweep
    python -m mnas.sweep --flagfile=experiments/kws_demo.flags --sram_bytes=40000,60000 \\
        --latency_ms=30,100 --baselines=ds_cnn_s,micronet_kws_s

Every other flag is `mnas.train`'s and applies to every point. Each point of the grid (devices x
SRAM sizes x latency budgets) is one complete `mnas.train` run in its own folder of `--out_dir`
(its `.tflite`, C sources and report), run as a separate process, `--jobs` at a time; each
`--baselines` architecture is trained once with the same recipe. An interrupted sweep started
again skips the finished points and resumes the others (each run resumes itself). Then
`pareto.csv`, `pareto.md` and `pareto.png`: int8 accuracy against arena, flash and latency,
the searched points' front marked, baselines as separate markers.
"""

import csv
import json
import os
import subprocess
import sys

from absl import flags

_SWEPT = ("device", "sram_bytes", "latency_ms", "out_dir")
COLUMNS = ("point", "kind", "device", "sram_budget_bytes", "latency_budget_ms", "int8",
           "float", "arena_bytes", "flash_bytes", "ops", "latency_ms", "fits", "front")
_RESOURCES = (("arena_bytes", "arena (KB)"), ("flash_bytes", "flatbuffer (KB)"),
              ("latency_ms", "estimated latency on the point's device (ms)"))


def grid(devices=(None,), sram_bytes=(None,), latency_ms=(None,)):
    """The sweep's points: one dict of `mnas.train` budget flags (and a name) per combination."""
    points = []
    for device in devices or (None,):
        for sram in sram_bytes or (None,):
            for latency in latency_ms or (None,):
                values = {"device": device, "sram_bytes": sram, "latency_ms": latency}
                values = {k: v for k, v in values.items() if v is not None}
                name = "_".join(f"{k}-{v}" for k, v in values.items()) or "default"
                points.append({"name": name, "flags": values})
    return points


def _finished(folder):
    state = os.path.join(folder, "state.json")
    if not os.path.exists(state) or not os.path.exists(os.path.join(folder, "report.json")):
        return False
    with open(state) as f:
        return "report" in json.load(f)["finished"]


def run_points(points, base_args, out_dir, jobs=1, say=print):
    """Runs `python -m mnas.train` for every point not finished before, `jobs` at a time.

    Args:
        points: Dicts with `name` (the point's folder in `out_dir`) and `flags` (its own flags).
        base_args: The `--flag=value` arguments common to every point.
        out_dir: The sweep's folder.
        jobs: Processes at once. Defaults to `1`.
        say: Function that prints a line per point. Defaults to `print`.

    Returns:
        The names of the points whose run failed (see their `log.txt`).
    """
    waiting = []
    for point in points:
        folder = os.path.join(out_dir, point["name"])
        if _finished(folder):
            say(f"{point['name']}: done before, skipped")
            continue
        os.makedirs(folder, exist_ok=True)
        own = [f"--{k}={v}" for k, v in point["flags"].items()]
        waiting.append((point["name"], folder, [sys.executable, "-m", "mnas.train",
                                                *base_args, *own, f"--out_dir={folder}"]))
    running, failed = [], []
    while waiting or running:
        while waiting and len(running) < jobs:
            name, folder, command = waiting.pop(0)
            log = open(os.path.join(folder, "log.txt"), "a")  # noqa: SIM115
            say(f"{name}: started (log {os.path.join(folder, 'log.txt')})")
            running.append((name, subprocess.Popen(command, stdout=log,
                                                   stderr=subprocess.STDOUT), log))
        name, process, log = running.pop(0)
        code = process.wait()
        log.close()
        say(f"{name}: {'finished' if code == 0 else f'FAILED (exit code {code})'}")
        if code:
            failed.append(name)
    return failed


def read_point(folder, name, kind):
    """A row of the Pareto table from a finished run's `report.json`."""
    with open(os.path.join(folder, "report.json")) as f:
        report = json.load(f)
    measured, budget = report["measured"], report["budget"]
    return {"point": name, "kind": kind, "device": report["device"],
            "sram_budget_bytes": budget["sram_bytes"] - budget["sram_reserve_bytes"],
            "latency_budget_ms": budget["latency_ms"], "int8": report["accuracy"]["int8"],
            "float": report["accuracy"]["float"], "arena_bytes": measured["arena_bytes"],
            "flash_bytes": measured["tflite_bytes"], "ops": measured["ops"],
            "latency_ms": measured["latency_ms"], "fits": report["fits"], "front": False}


def mark_front(rows, resources=("arena_bytes", "flash_bytes", "latency_ms")):
    """Sets `front` on the rows no other row dominates (as accurate or more, and no larger in
    every resource, strictly better in one)."""
    def dominates(a, b):
        no_worse = a["int8"] >= b["int8"] and all(a[r] <= b[r] for r in resources)
        better = a["int8"] > b["int8"] or any(a[r] < b[r] for r in resources)
        return no_worse and better

    for row in rows:
        row["front"] = not any(dominates(other, row) for other in rows if other is not row)
    return rows


def front_2d(rows, resource):
    """The rows on the front of int8 accuracy against one resource, by increasing resource."""
    front, best = [], -1.0
    for row in sorted(rows, key=lambda r: (r[resource], -r["int8"])):
        if row["int8"] > best:
            front.append(row)
            best = row["int8"]
    return front


def write_pareto(rows, out_dir):
    """Writes `pareto.csv`, `pareto.md` and `pareto.png` in `out_dir`; returns their paths."""
    from mnas import export

    searched = mark_front([r for r in rows if r["kind"] == "search"])
    rows = searched + [r for r in rows if r["kind"] != "search"]
    paths = [os.path.join(out_dir, f"pareto.{ext}") for ext in ("csv", "md", "png")]
    with open(paths[0] + ".tmp", "w", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(paths[0] + ".tmp", paths[0])
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row[c]) for c in COLUMNS) + " |")
    export.write_atomic(paths[1], "\n".join(lines) + "\n")
    _plot(searched, [r for r in rows if r["kind"] != "search"], paths[2])
    return paths


def _cell(value):
    if isinstance(value, float):
        return f"{value:.4f}" if value < 10 else f"{value:,.1f}"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return "" if value is None else (f"{value:,}" if isinstance(value, int) else str(value))


def _label(row):
    """A searched point's short label: its device, and its SRAM and latency budgets if swept."""
    parts = [row["device"].removeprefix("STM32")]
    if "sram_bytes-" in row["point"]:
        parts.append(f"{row['sram_budget_bytes'] / 1024:.0f} KB")
    if row["latency_budget_ms"]:
        parts.append(f"{row['latency_budget_ms']:g} ms")
    return " ".join(parts)


def _plot(searched, baselines, path):
    from mnas import plots

    figure, axes = plots.plt.subplots(1, len(_RESOURCES), figsize=(5 * len(_RESOURCES), 4),
                                      sharey=True)
    for ax, (resource, label) in zip(axes, _RESOURCES):
        scale = 1024 if resource.endswith("_bytes") else 1
        x = lambda rows: [r[resource] / scale for r in rows]  # noqa: E731
        if searched:
            ax.scatter(x(searched), [r["int8"] for r in searched], marker="o", color="tab:blue",
                       label="searched")
            front = front_2d(searched, resource)
            ax.step(x(front), [r["int8"] for r in front], where="post", color="tab:blue",
                    linestyle="--", label="front")
            for r, at in zip(searched, x(searched)):
                ax.annotate(_label(r), (at, r["int8"]), fontsize=7, xytext=(3, 3),
                            textcoords="offset points")
        for r in baselines:
            ax.scatter(x([r]), [r["int8"]], marker="s", label=r["point"])
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("int8 accuracy")
    axes[-1].legend(fontsize=7)
    plots._save(figure, path)  # noqa: SLF001


def define_flags():
    """`mnas.train`'s flags, with the budget flags turned into lists, and the sweep's own."""
    from mnas import train

    train.define_flags()
    for name in ("sram_bytes", "latency_ms", "out_dir"):  # Lists, or the sweep's own folder.
        delattr(flags.FLAGS, name)
    flags.DEFINE_list("devices", [], "Devices of the sweep (names such as STM32F446RE or S, M, "
                      "L, or JSON profile paths). Defaults to --device (a flagfile's) only.")
    flags.DEFINE_list("sram_bytes", [], "SRAM sizes (bytes) of the sweep, each a point with "
                      "every device and latency. Defaults to the devices' own.")
    flags.DEFINE_list("latency_ms", [], "Latency budgets (ms) of the sweep. Defaults to none.")
    flags.DEFINE_list("baselines", [], "Named architectures (mnas.get_architecture) trained "
                      "once each with the same recipe and drawn as separate markers.")
    flags.DEFINE_string("out_dir", None, "Output folder of the sweep. Defaults to "
                        "runs/<task>_sweep.")
    flags.DEFINE_integer("jobs", 1, "Runs at once (separate processes).", lower_bound=1)
    for name in ("sram_bytes", "latency_ms"):
        flags.register_validator(name, lambda v: all(_positive(x) for x in v),
                                 message=f"--{name} must be a list of positive numbers.")


def _positive(text):
    try:
        return float(text) > 0
    except ValueError:
        return False


def _common_args(values):
    """The `mnas.train` flags every point shares, as `--name=value` arguments."""
    from mnas import train

    module_flags = values.get_key_flags_for_module(sys.modules[train.__name__])
    return [flag.serialize() for flag in module_flags
            if flag.value is not None and flag.name not in _SWEPT + ("flagfile",)
            and flag.serialize()]


def main(argv):
    if len(argv) > 1:
        print(f"error: unexpected arguments {argv[1:]}; every setting is a --flag.",
              file=sys.stderr)
        return 1
    values = flags.FLAGS
    out_dir = values.out_dir or os.path.join("runs", f"{values.task}_sweep")
    os.makedirs(out_dir, exist_ok=True)
    devices = values.devices or ([values.device] if values.device else [])
    points = grid(devices, values.sram_bytes, values.latency_ms)
    common = _common_args(values)
    print(f"sweep of {len(points)} points and {len(values.baselines)} baselines into {out_dir}",
          flush=True)
    say = lambda line: print(line, flush=True)  # noqa: E731
    baseline_points = [{"name": f"baseline_{name}", "flags": {"arch": name, **points[0]["flags"]}}
                       for name in values.baselines]
    failed = run_points(points + baseline_points, common, out_dir, values.jobs, say)
    rows = [read_point(os.path.join(out_dir, p["name"]), p["name"], kind)
            for group, kind in ((points, "search"), (baseline_points, "baseline"))
            for p in group if p["name"] not in failed]
    if rows:
        written = write_pareto(rows, out_dir)
        print(f"{', '.join(os.path.basename(p) for p in written)} written in {out_dir}")
    if failed:
        print(f"error: {len(failed)} points failed ({', '.join(failed)}); see their log.txt, "
              f"and run the same command again to resume them.", file=sys.stderr)
        return 1
    return 0


def run():
    """The `python -m mnas.sweep` command."""
    from mnas import train

    train.run(define_flags, main)


if __name__ == "__main__":
    run()
