"""PNG plots of a run: architecture probabilities and expected costs over the search, and the
chosen width per layer.

Example:

>>> from mnas import plots
>>> plots.plot_run("runs/kws", spec, report["budget"])      # doctest: +SKIP
"""

import csv
import json
import math
import os

import matplotlib

matplotlib.use("Agg")  # Files only: no display is needed.
import matplotlib.pyplot as plt  # noqa: E402

from mnas import files  # noqa: E402


def read_epochs_jsonl(path):
    """Records of an `ArchitectureLogger` file, one per epoch (the last when an epoch repeats)."""
    records = {}
    with open(path) as f:
        for line in f:
            if line.strip():
                record = json.loads(line)
                records[record["epoch"]] = record
    return [records[k] for k in sorted(records)]


def read_history_csv(path):
    """Rows of a `CSVLogger` file as dicts of floats, one per epoch (the last if repeated)."""
    rows = {}
    with open(path) as f:
        for row in csv.DictReader(f):
            rows[int(row["epoch"])] = {k: float(v) for k, v in row.items() if v not in ("", None)}
    return [rows[k] for k in sorted(rows)]


def _save(figure, path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = files.temporary_path(path)
    try:
        figure.savefig(tmp, dpi=100, format="png")
        os.replace(tmp, path)
    finally:
        plt.close(figure)
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def plot_probabilities(records, path):
    """One panel per decision: each option's probability against the epoch."""
    names = list(records[0]["probabilities"])
    columns = min(4, len(names))
    rows = math.ceil(len(names) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.4 * rows),
                                squeeze=False, sharex=True)
    epochs = [r["epoch"] + 1 for r in records]
    for ax, name in zip(axes.flat, names):
        series = list(zip(*[r["probabilities"][name] for r in records]))
        for option, values in enumerate(series):
            ax.plot(epochs, values, linewidth=1, label=str(option))
        ax.set_title(f"{name}: argmax {records[-1]['choices'][name]}", fontsize=8)
        ax.set_ylim(0, 1)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    figure.suptitle("Architecture probabilities per decision (options narrowest first)")
    figure.supxlabel("search epoch")
    figure.tight_layout()
    return _save(figure, path)


_COSTS = (("expected_sram_bytes", "sram_budget", "SRAM (arena), bytes"),
          ("expected_flash_bytes", "flash_budget", "flash (model), bytes"),
          ("expected_latency_ms", "latency_ms", "latency, ms"))


def plot_costs(history, targets, path):
    """Expected SRAM, flash and latency over the search, with their targets as lines."""
    shown = [c for c in _COSTS if c[0] in history[0]]
    figure, axes = plt.subplots(1, len(shown), figsize=(4.2 * len(shown), 3.2), squeeze=False)
    epochs = [row["epoch"] + 1 for row in history]
    for ax, (key, target_key, title) in zip(axes.flat, shown):
        ax.plot(epochs, [row[key] for row in history], marker="o", label="expected")
        if targets.get(target_key):
            ax.axhline(targets[target_key], color="red", linestyle="--", label="target")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("search epoch")
        ax.legend(fontsize=7)
    figure.tight_layout()
    return _save(figure, path)


def plot_widths(spec, path):
    """The chosen width (output channels) of each layer of the derived architecture."""
    widths = spec.widths()
    figure, ax = plt.subplots(figsize=(max(4.0, 0.5 * len(widths)), 3.2))
    ax.bar(range(len(widths)), widths)
    ax.set_xticks(range(len(widths)))
    ax.set_xticklabels([str(i) for i in range(len(widths))], fontsize=7)
    ax.set_xlabel("layer (stem first, classifier last)")
    ax.set_ylabel("output channels")
    ax.set_title(f"{spec.name}: chosen width per layer", fontsize=9)
    figure.tight_layout()
    return _save(figure, path)


def plot_run(out_dir, spec, budget):
    """Writes the plots of a run into `out_dir/plots/`; returns their paths.

    Args:
        out_dir: The run's output directory (with `search/` when a search ran).
        spec: The derived `ArchSpec`.
        budget: `report.json`'s budget: `sram_bytes`, `flash_bytes`, `latency_ms` and the
            reserves, from which the search's targets follow.
    """
    folder = os.path.join(out_dir, "plots")
    written = [plot_widths(spec, os.path.join(folder, "widths.png"))]
    jsonl = os.path.join(out_dir, "search", "architecture.jsonl")
    history = os.path.join(out_dir, "search", "history.csv")
    if os.path.exists(jsonl):
        written.append(plot_probabilities(read_epochs_jsonl(jsonl),
                                          os.path.join(folder, "probabilities.png")))
    if os.path.exists(history):
        targets = {"sram_budget": budget["sram_bytes"] - budget["sram_reserve_bytes"],
                   "flash_budget": budget["flash_bytes"] - budget["flash_reserve_bytes"],
                   "latency_ms": budget.get("latency_ms")}
        written.append(plot_costs(read_history_csv(history), targets,
                                  os.path.join(folder, "costs.png")))
    return written
