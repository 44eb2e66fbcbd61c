"""PNG plots of a run: architecture probabilities and expected costs over the search, the chosen
width per layer, training curves of each stage, the arena in use per operator against the
budget, and a confusion matrix (classifiers) or ROC curves (anomaly detection) of the int8
model in TFLite Micro.

Example:

>>> from mnas import plots
>>> plots.plot_run("runs/kws", spec, report["budget"])      # doctest: +SKIP
"""

import csv
import json
import math
import os

import matplotlib
import numpy as np

matplotlib.use("Agg")  # Files only: no display is needed.
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import FuncFormatter, MaxNLocator  # noqa: E402

_THOUSANDS = FuncFormatter(lambda value, _: f"{value:,.0f}")

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


def _epoch_axis(ax, epochs):
    """Whole epochs on the x axis, also when there is only one."""
    if max(epochs) - min(epochs) < 20:  # MaxNLocator ticks halves on a short range
        ax.set_xticks(range(min(epochs), max(epochs) + 1))
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)


def _option_labels(record, name):
    options = (record.get("options") or {}).get(name)
    count = len(record["probabilities"][name])
    return [str(o) for o in options] if options else [f"option {i}" for i in range(count)]


def _choice_text(choice):
    # Skip decisions choose True (keep the block) or False (skip it).
    return {True: "keep", False: "skip"}.get(choice, choice) if isinstance(choice, bool) \
        else choice


def plot_probabilities(records, path):
    """One panel per decision: each option's probability against the epoch.

    Width decisions are coloured narrowest (dark) to widest (light); skip decisions show
    `skip` and `keep`. Each title names the option the argmax would choose.
    """
    names = list(records[0]["probabilities"])
    columns = min(4, len(names))
    rows = math.ceil(len(names) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.4 * columns, 2.6 * rows),
                                squeeze=False, layout="constrained")
    epochs = [r["epoch"] + 1 for r in records]
    last = records[-1]
    for ax, name in zip(axes.flat, names):
        series = list(zip(*[r["probabilities"][name] for r in records]))
        labels = _option_labels(last, name)
        colours = plt.cm.viridis([i / max(1, len(series) - 1) * 0.9 for i in range(len(series))])
        for values, label, colour in zip(series, labels, colours):
            ax.plot(epochs, values, linewidth=1, label=label, color=colour)
        ax.axhline(1 / len(series), color="grey", linestyle=":", linewidth=0.8)
        chosen = _choice_text(last["choices"][name])
        top = max(last["probabilities"][name])
        ax.set_title(f"{name}: chooses {chosen} (p = {top:.2f})", fontsize=8)
        # Not always 0-1: near-uniform probabilities would be one flat line.
        ax.set_ylim(0, min(1.0, max(0.25, 1.25 * max(max(v) for v in series))))
        ax.tick_params(labelsize=7)
        _epoch_axis(ax, epochs)
        ax.legend(fontsize=6, title="width" if labels[0].isdigit() else None,
                  title_fontsize=6, loc="upper left", bbox_to_anchor=(1.0, 1.0),
                  frameon=False)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    figure.suptitle("Architecture probabilities per decision (dotted: uniform)")
    figure.supxlabel("search epoch")
    figure.supylabel("probability")
    return _save(figure, path)


_COSTS = (("expected_sram_bytes", "sram_budget", "sram", "SRAM (tensor arena), bytes"),
          ("expected_flash_bytes", "flash_budget", "flash", "flash (model), bytes"),
          ("expected_latency_ms", "latency_ms", "latency", "latency, ms"))


def plot_costs(history, targets, path, derived=None):
    """Expected SRAM, flash and latency over the search, with their targets as lines.

    Args:
        history: The search's `history.csv` rows.
        targets: `sram_budget`, `flash_budget` and `latency_ms` (None for no target).
        path: The PNG to write.
        derived: The derived architecture's exact costs (`search.json`'s `exact_costs`:
            `sram`, `flash`, `latency`), marked after the last epoch. Defaults to None.
    """
    shown = [c for c in _COSTS if c[0] in history[0]]
    figure, axes = plt.subplots(1, len(shown), figsize=(4.2 * len(shown), 3.4), squeeze=False)
    epochs = [int(row["epoch"]) + 1 for row in history]
    for ax, (key, target_key, exact_key, title) in zip(axes.flat, shown):
        ax.plot(epochs, [row[key] for row in history], marker="o",
                label="expected (probability-weighted)")
        if targets.get(target_key):
            ax.axhline(targets[target_key], color="red", linestyle="--", label="target")
        if derived and derived.get(exact_key) is not None:
            value = derived[exact_key]
            ax.plot([epochs[-1]], [value], marker="*", markersize=13, linestyle="none",
                    color="green", label="derived model (exact)")
            ax.annotate(f"{value:,.0f}" if value >= 100 else f"{value:.1f}",
                        (epochs[-1], value), textcoords="offset points", xytext=(-8, 8),
                        ha="right", fontsize=7, color="green")
        ax.set_title(title, fontsize=9)
        if "bytes" in title:
            ax.yaxis.set_major_formatter(_THOUSANDS)
        ax.set_xlabel("search epoch")
        _epoch_axis(ax, epochs)
        ax.legend(fontsize=7)
    figure.tight_layout()
    return _save(figure, path)


_WIDTH_KINDS = {"conv": "conv", "ds": "depthwise separable", "ib": "inverted bottleneck",
                "dense": "dense"}


def plot_widths(spec, path):
    """The chosen width (output channels or units) of each layer of the derived architecture."""
    entries = [(i, e) for i, e in enumerate(spec.layers) if e["type"] in _WIDTH_KINDS]
    widths = [e.get("filters", e.get("units")) for _, e in entries]
    names = [e.get("source", f"{e['type']}_{i}") for i, e in entries]
    kinds = [e["type"] for _, e in entries]
    colours = {k: f"C{n}" for n, k in enumerate(dict.fromkeys(kinds))}
    figure, ax = plt.subplots(figsize=(max(4.5, 0.6 * len(widths) + 1.5), 3.6))
    bars = ax.bar(range(len(widths)), widths, color=[colours[k] for k in kinds])
    ax.bar_label(bars, fontsize=7)
    ax.set_xticks(range(len(widths)))
    ax.set_xticklabels(names, fontsize=7, rotation=45, ha="right")
    ax.set_xlabel("layer, in order from the input")
    ax.set_ylabel("output channels (units)")
    ax.legend(handles=[Patch(color=c, label=_WIDTH_KINDS[k]) for k, c in colours.items()],
              fontsize=7)
    ax.set_title(f"{spec.name}: chosen width per layer", fontsize=9)
    figure.tight_layout()
    return _save(figure, path)


_STAGES = (("search", "search (supernet)"), ("train", "final training"),
           ("qat", "quantization-aware training"))


def plot_training(histories, path):
    """Loss and accuracy, training and validation, against the epoch: one row per stage.

    Args:
        histories: (title, `history.csv` rows) per stage, in order.
        path: The PNG to write.
    """
    figure, axes = plt.subplots(len(histories), 2, figsize=(8.4, 2.6 * len(histories)),
                                squeeze=False)
    for (title, rows), row_axes in zip(histories, axes):
        epochs = [int(row["epoch"]) + 1 for row in rows]
        for ax, metric in zip(row_axes, ("loss", "accuracy")):
            for key, label in ((metric, "training"), (f"val_{metric}", "validation")):
                if key in rows[0]:
                    ax.plot(epochs, [row.get(key, math.nan) for row in rows], marker=".",
                            label=label)
            ax.set_title(f"{title}: {metric}", fontsize=9)
            ax.set_xlabel("epoch", fontsize=8)
            _epoch_axis(ax, epochs)
            ax.tick_params(labelsize=7)
            ax.legend(fontsize=7)
    figure.tight_layout()
    return _save(figure, path)


def plot_confusion(labels, predicted, names, path):
    """The confusion matrix of a classifier's test predictions, counts and row fractions.

    Args:
        labels: True class index per sample.
        predicted: Predicted class index per sample.
        names: Class names, by index.
        path: The PNG to write.
    """
    n = len(names)
    counts = np.zeros((n, n), int)
    np.add.at(counts, (np.asarray(labels, int), np.asarray(predicted, int)), 1)
    fractions = counts / np.maximum(1, counts.sum(axis=1, keepdims=True))
    size = max(4.0, 0.45 * n + 2.0)
    figure, ax = plt.subplots(figsize=(size + 1.0, size))
    image = ax.imshow(fractions, cmap="Blues", vmin=0, vmax=1)
    for i in range(n):
        for j in range(n):
            if counts[i, j]:
                ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=6,
                        color="white" if fractions[i, j] > 0.6 else "black")
    ax.set_xticks(range(n))
    ax.set_xticklabels(names, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(n))
    ax.set_yticklabels(names, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    accuracy = np.trace(counts) / max(1, counts.sum())
    ax.set_title(f"int8 model in TFLite Micro: confusion on {counts.sum()} test samples, "
                 f"accuracy {accuracy:.4f}", fontsize=8)
    figure.colorbar(image, ax=ax, fraction=0.046, label="fraction of the true class")
    figure.tight_layout()
    return _save(figure, path)


def plot_roc(curves, path, max_fpr=0.1):
    """ROC curves of an anomaly detector, one per machine ID, with AUC and pAUC.

    pAUC is scikit-learn's standardized partial AUC up to `max_fpr`, as the DCASE 2020 task 2
    baseline reports it.

    Args:
        curves: {name: (anomaly scores, True if anomalous)} per machine ID.
        path: The PNG to write.
        max_fpr: The false-positive rate the pAUC stops at. Defaults to `0.1`.

    Returns:
        (path, {name: {"auc": ..., "pauc": ...}, "mean": {...}}).
    """
    from sklearn import metrics  # slow to import, and only anomaly detection needs it

    figure, ax = plt.subplots(figsize=(5.2, 4.6))
    figures = {}
    for name, (scores, anomalous) in curves.items():
        fpr, tpr, _ = metrics.roc_curve(anomalous, scores)
        figures[name] = {"auc": float(metrics.roc_auc_score(anomalous, scores)),
                         "pauc": float(metrics.roc_auc_score(anomalous, scores,
                                                             max_fpr=max_fpr))}
        ax.plot(fpr, tpr, label=f"{name}: AUC {figures[name]['auc']:.3f}, "
                                f"pAUC {figures[name]['pauc']:.3f}")
    figures["mean"] = {k: float(np.mean([f[k] for f in figures.values()]))
                       for k in ("auc", "pauc")}
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=0.8)
    ax.axvspan(0, max_fpr, color="orange", alpha=0.15, label=f"pAUC range (FPR < {max_fpr})")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(f"int8 model in TFLite Micro, per machine ID: mean AUC "
                 f"{figures['mean']['auc']:.3f}, pAUC {figures['mean']['pauc']:.3f}",
                 fontsize=8)
    ax.legend(fontsize=7, loc="lower right")
    figure.tight_layout()
    return _save(figure, path), figures


def memory_per_operator(info):
    """Arena bytes in use while each operator runs, from TFLite Micro's memory plan.

    Args:
        info: A `mnas.hardware.tflite_file.ModelInfo`, e.g.
            `mnas.hardware.estimate.read_model_info(tflite_bytes)`.

    Returns:
        A list, per operator: the end of the highest planned buffer alive during it (its
        activations and scratch), plus the persistent allocations at the arena's tail.
    """
    from mnas.hardware import planner

    buffers, offsets, _ = planner.plan_activations(info)
    persistent = planner.persistent_bytes(info)
    return [persistent + max([o + b[0] for b, o in zip(buffers, offsets)
                              if b[1] <= step <= b[2]], default=0)
            for step in range(1, len(info.operators) + 1)]


def plot_memory(info, arena_budget, measured_arena, path):
    """The arena in use at each operator of the int8 model against the arena budget.

    Args:
        info: The `ModelInfo` of the converted model.
        arena_budget: The tensor arena budget (the device's SRAM less its reserve), bytes.
        measured_arena: The arena TFLite Micro's interpreter reported, bytes, or None.
        path: The PNG to write.
    """
    from mnas.hardware import planner

    in_use = memory_per_operator(info)
    persistent = planner.persistent_bytes(info)
    peak = int(np.argmax(in_use))
    names = [f"{i} {op.name}" for i, op in enumerate(info.operators)]
    figure, ax = plt.subplots(figsize=(max(5.0, 0.32 * len(names) + 2.0), 4.0))
    x = np.arange(len(names))
    ax.bar(x, [persistent] * len(names), color="0.6", label="persistent (arena tail)")
    ax.bar(x, [v - persistent for v in in_use], bottom=persistent,
           color=["C3" if i == peak else "C0" for i in x],
           label="activations and scratch (planned)")
    ax.axhline(arena_budget, color="red", linestyle="--",
               label=f"arena budget {arena_budget:,} B")
    if measured_arena:
        ax.axhline(measured_arena, color="black", linestyle=":",
                   label=f"TFLite Micro arena {measured_arena:,} B")
    ax.set_xticks(x)
    ax.set_xticklabels(names, rotation=90, fontsize=6)
    ax.set_ylabel("arena bytes in use")
    ax.yaxis.set_major_formatter(_THOUSANDS)
    ax.set_title(f"Arena per operator: peak {in_use[peak]:,} B at {names[peak]} "
                 f"({in_use[peak] / arena_budget:.0%} of the budget)", fontsize=8)
    ax.legend(fontsize=7, loc="upper right")
    ax.set_ylim(0, 1.15 * max(arena_budget, measured_arena or 0, max(in_use)))
    figure.tight_layout()
    return _save(figure, path)


def _read_json(path):
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def plot_run(out_dir, spec, budget, test=None):
    """Writes the plots of a run into `out_dir/plots/`; returns their paths.

    Reads what the run's stages wrote: `search/` (`architecture.jsonl`, `history.csv`,
    `search.json`), each stage's `history.csv`, `model.tflite`, `verification.json` and
    `verification_outputs.npz`; a plot whose inputs are missing is left out.

    Args:
        out_dir: The run's output directory.
        spec: The derived `ArchSpec`.
        budget: `report.json`'s budget: `sram_bytes`, `flash_bytes`, `latency_ms` and the
            reserves, from which the search's targets follow.
        test: The test `Split` that `verification_outputs.npz` holds outputs for: a
            confusion matrix of a classifier, ROC curves of an anomaly detector (a split
            with `anomaly`). Defaults to None (neither).
    """
    folder = os.path.join(out_dir, "plots")
    written = [plot_widths(spec, os.path.join(folder, "widths.png"))]
    jsonl = os.path.join(out_dir, "search", "architecture.jsonl")
    history = os.path.join(out_dir, "search", "history.csv")
    if os.path.exists(jsonl):
        written.append(plot_probabilities(read_epochs_jsonl(jsonl),
                                          os.path.join(folder, "probabilities.png")))
    arena_budget = budget["sram_bytes"] - budget["sram_reserve_bytes"]
    if os.path.exists(history):
        targets = {"sram_budget": arena_budget,
                   "flash_budget": budget["flash_bytes"] - budget["flash_reserve_bytes"],
                   "latency_ms": budget.get("latency_ms")}
        search = _read_json(os.path.join(out_dir, "search", "search.json")) or {}
        written.append(plot_costs(read_history_csv(history), targets,
                                  os.path.join(folder, "costs.png"),
                                  derived=search.get("exact_costs")))
    histories = [(title, read_history_csv(os.path.join(out_dir, stage, "history.csv")))
                 for stage, title in _STAGES
                 if os.path.exists(os.path.join(out_dir, stage, "history.csv"))]
    if histories:
        written.append(plot_training(histories, os.path.join(folder, "training.png")))
    if os.path.exists(os.path.join(out_dir, "model.tflite")):
        from mnas.hardware import estimate

        verification = _read_json(os.path.join(out_dir, "verification.json")) or {}
        info = estimate.read_model_info(os.path.join(out_dir, "model.tflite"))
        written.append(plot_memory(info, arena_budget,
                                   verification.get("arena", {}).get("total_bytes"),
                                   os.path.join(folder, "memory.png")))
    outputs_path = os.path.join(out_dir, "verification_outputs.npz")
    if test is not None and os.path.exists(outputs_path):
        with np.load(outputs_path) as data:
            outputs = data["int8"].reshape(len(test.y), -1)
        written += [p for p in [_plot_evaluation(outputs, test, folder)] if p]
    return written


def _plot_evaluation(outputs, test, folder):
    if test.anomaly is not None:
        from mnas.datasets import ad

        scores, machine, anomalous = ad.clip_scores(outputs, test)
        curves = {name: (scores[machine == i], anomalous[machine == i])
                  for i, name in enumerate(test.labels)
                  if len(set(anomalous[machine == i])) == 2}
        return plot_roc(curves, os.path.join(folder, "roc.png"))[0] if curves else None
    predicted = (outputs[:, 0] > 0.5).astype(int) if outputs.shape[1] == 1 \
        else outputs.argmax(axis=1)
    return plot_confusion(test.y, predicted, list(test.labels),
                          os.path.join(folder, "confusion.png"))
