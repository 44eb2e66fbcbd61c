"""A deployed model's report: `report.json` and `report.md`.

`write_report` records the budget against the measured arena, flatbuffer, ops and latency,
the float and int8 accuracy, the fit on each device, the search's outcome and the derived
architecture layer by layer (widths, shapes, parameters, ops and bytes of each layer, from the
TFLite graph the converter makes of it), and links the run's plots.

Example:

>>> from mnas import report
>>> report.write_report("runs/kws", task="kws", architecture=spec, fit=fit,
...                     verification=verification)              # doctest: +SKIP
"""

import io
import json
import os

import numpy as np
import tf_keras as keras

from mnas import arch, devices, export, files
from mnas.hardware import estimate, keras_graph, tflm

# Below this top probability of its least decided choice, a search counts as undecided.
UNDECIDED_BELOW = 0.5


def describe_model(model):
    """A JSON-serialisable description of a Keras model: its layers, shapes and parameters."""
    layers = [{"name": layer.name, "type": type(layer).__name__,
               "output_shape": _shape(layer.output_shape),
               "params": int(layer.count_params())} for layer in model.layers]
    return {"name": model.name, "params": int(model.count_params()), "layers": layers}


def _shape(shape):
    if isinstance(shape, list):  # an InputLayer's, or a layer with several outputs
        return _shape(shape[0]) if len(shape) == 1 else [_shape(s) for s in shape]
    return [None if d is None else int(d) for d in shape]


_KINDS = {"conv": "conv", "ds": "depthwise separable", "ib": "inverted bottleneck",
          "dense": "dense", "pool": "average pool"}


def _entry_kind(entry):
    if entry["type"] == "keras":
        return entry["config"].get("class_name", "keras layer")
    return _KINDS.get(entry["type"], entry["type"])


def _entry_width(entry):
    if entry["type"] == "ib" and entry.get("expand"):
        return f"{entry['expand']} > {entry['filters']}"
    if entry["type"] == "keras":  # a Dense or Conv2D given as a Keras layer
        entry = entry["config"].get("config", {})
    value = entry.get("filters", entry.get("units"))
    return None if value is None else str(value)


def _kernel_stride(entry):
    parts = []
    if entry.get("kernel_size"):
        parts.append("x".join(str(k) for k in entry["kernel_size"]))
    if entry.get("pool_size"):
        parts.append("x".join(str(k) for k in entry["pool_size"]))
    if entry.get("strides"):
        parts.append("/" + "x".join(str(s) for s in entry["strides"]))
    return " ".join(parts)


def describe_architecture(spec):
    """The architecture `spec` layer by layer, with its int8 TFLite figures.

    Each spec entry becomes a row: its kind, width, kernel and stride, output shape,
    parameters (of the float Keras layers, batch norms included), and the TFLite operators the
    converter makes of it (batch norms folded, activations fused), with their ops, constant
    bytes (weights and biases, int8) and output activation bytes.

    Args:
        spec: An `ArchSpec`.

    Returns:
        A JSON-serialisable dict: `name`, `backbone`, `input_shape`, `params`, `ops`,
        `weight_bytes`, `layers` (one dict per entry) and `spec` (the spec itself).
    """
    model = arch.build(spec)
    info, _ = keras_graph.keras_model_info(model)
    found = estimate.estimate_model_info(info)
    owner = {name: i for i, names in enumerate(model.mnas_entry_layers) for name in names}
    rows = []
    for i, (entry, names) in enumerate(zip(spec.layers, model.mnas_entry_layers)):
        last = model.get_layer(names[-1])
        rows.append({
            "index": i, "name": entry.get("source", f"{entry['type']}_{i}"),
            "kind": _entry_kind(entry), "width": _entry_width(entry),
            "kernel_stride": _kernel_stride(entry),
            "output_shape": _shape(last.output_shape)[1:],
            "params": sum(int(model.get_layer(n).count_params()) for n in names),
            "operators": [], "ops": 0, "weight_bytes": 0, "activation_bytes": 0})
    current = 0
    for op, figures in zip(info.operators, found.layers):
        out_name = info.tensors[op.outputs[0]].name if op.outputs else ""
        hits = [owner[part] for part in out_name.split("/") if part in owner]
        if op.outputs and op.outputs[0] in info.outputs:  # named after the model's output
            hits = [len(rows) - 1]
        # An operator named after no layer (one the converter adds) joins the one before.
        current = hits[0] if hits else current
        row = rows[current]
        row["operators"].append(figures.op)
        row["ops"] += figures.ops
        row["weight_bytes"] += figures.weight_bytes
        row["activation_bytes"] = figures.activation_bytes  # the entry's last output
    return {"name": spec.name, "backbone": spec.backbone,
            "input_shape": list(spec.input_shape), "params": int(model.count_params()),
            "ops": found.ops, "weight_bytes": sum(r["weight_bytes"] for r in rows),
            "layers": rows, "spec": spec.to_json()}


def save_outputs(path, outputs):
    """Writes the int8 model's test outputs (`Verification.int8_outputs`) to an `.npz` file,
    atomically, for the plots of a run (`mnas.plots.plot_run`)."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, int8=np.asarray(outputs, np.float32))
    return files.write_atomic(path, buffer.getvalue())


def budget_of(fit):
    """`report.json`'s budget of a `Fit`: the device's memory, reserves and latency budget."""
    return {"sram_bytes": fit.sram_bytes, "flash_bytes": fit.flash_bytes,
            "latency_ms": fit.latency_budget_ms, "sram_reserve_bytes": fit.sram_reserve_bytes,
            "flash_reserve_bytes": fit.flash_reserve_bytes}


def write_report(out_dir, *, task, architecture, fit, verification, quantization=None,
                 devices_to_compare=tuple(devices.BUILTIN), backbone="default", extra=None,
                 plots=(), model=None):
    """Writes `report.json` and `report.md` for a deployed model.

    Args:
        out_dir: Output directory; created if missing.
        task: Task name (`kws`, `vww`, `ad`, ...).
        architecture: An `ArchSpec` (described layer by layer with its TFLite figures, see
            `describe_architecture`), a Keras model (described layer by layer) or a
            JSON-serialisable dict.
        fit: The `Fit` from `check_fit` for the target device and budget.
        verification: The `Verification` from `verify`.
        quantization: How the model was quantized (`qat` or `ptq`). Defaults to `None`.
        devices_to_compare: Devices to report latency and fit for, from the same measured
            arena and size. Defaults to the built-in devices.
        backbone: The device throughput entry for their latency estimates. Defaults to
            `"default"`.
        extra: More JSON-serialisable fields for `report.json`; a `search` field (the
            search stage's `search.json`) adds the search's outcome to `report.md`, with a
            warning when it ended undecided. Defaults to `None`.
        plots: Paths of PNG plots to show in `report.md`. Defaults to none.
        model: The int8 flatbuffer (bytes or a path): each device's latency is then its
            per-operator model over the operators, as `mnas.profile` gives it. Defaults to
            `None` (the ops-only form, from `fit.ops`).

    Returns:
        The report as a dict (the content of `report.json`).
    """
    if isinstance(architecture, arch.ArchSpec):
        architecture = describe_architecture(architecture)
    elif isinstance(architecture, keras.Model):
        architecture = describe_model(architecture)
    info = None if model is None else estimate.read_model_info(tflm.read_model(model))
    per_device = [export._fit(d, fit.arena_bytes, fit.tflite_bytes, fit.ops, backbone,  # noqa: SLF001
                              fit.latency_budget_ms, info) for d in devices_to_compare]
    report = {
        "task": task,
        "device": fit.device,
        "quantization": quantization,
        "fits": fit.fits,
        "failures": fit.failures,
        "budget": budget_of(fit),
        "measured": {
            "arena_bytes": fit.arena_bytes,
            "tflite_bytes": fit.tflite_bytes,
            "sram_bytes": fit.sram_used_bytes,
            "flash_bytes": fit.flash_used_bytes,
            "ops": fit.ops,
            "latency_ms": fit.latency_ms,
        },
        "accuracy": {
            "metric": verification.metric,
            "float": verification.float,
            "int8": verification.int8,
            "samples": verification.samples,
            "tflite_vs_tflm_max_diff_steps": verification.max_diff_steps,
            "tflite_vs_tflm_mismatch_fraction": verification.mismatch_fraction,
        },
        "devices": [f.to_json() for f in per_device],
        "architecture": architecture,
    }
    if extra:
        report.update(extra)
    search = report.get("search")
    weakest = weakest_decision(search)[1] if isinstance(search, dict) else None
    if weakest is not None:
        search["undecided"] = weakest < UNDECIDED_BELOW
    os.makedirs(out_dir, exist_ok=True)
    files.write_atomic(os.path.join(out_dir, "report.json"), json.dumps(report, indent=2) + "\n")
    links = [os.path.relpath(p, out_dir) for p in plots]
    files.write_atomic(os.path.join(out_dir, "report.md"),
                        _markdown(report, per_device, links))
    return report


def _number(value, digits=4):
    if value is None:
        return "n/a"
    return f"{value:,}" if isinstance(value, int) else f"{value:.{digits}f}"


def _markdown(report, per_device, plots=()):
    budget, measured, acc = report["budget"], report["measured"], report["accuracy"]
    verdict = ("FITS" if report["fits"]
               else "DOES NOT FIT: " + "; ".join(report["failures"]))
    lines = [f"# {report['task']} model for {report['device']}: {verdict}", ""]
    lines += _undecided_warning(report.get("search"))
    lines += [
        f"Quantization: {report['quantization'] or 'n/a'}.",
        "",
        "## Budget and measured figures",
        "",
        "| | budget | measured |",
        "| --- | ---: | ---: |",
        f"| SRAM (arena + {_number(budget['sram_reserve_bytes'])} reserve), bytes "
        f"| {_number(budget['sram_bytes'])} | {_number(measured['sram_bytes'])} |",
        f"| tensor arena, bytes | {_number(budget['sram_bytes'] - budget['sram_reserve_bytes'])}"
        f" | {_number(measured['arena_bytes'])} |",
        f"| flash (model + {_number(budget['flash_reserve_bytes'])} reserve), bytes "
        f"| {_number(budget['flash_bytes'])} | {_number(measured['flash_bytes'])} |",
        f"| model (.tflite), bytes "
        f"| {_number(budget['flash_bytes'] - budget['flash_reserve_bytes'])}"
        f" | {_number(measured['tflite_bytes'])} |",
        f"| ops per inference | | {_number(measured['ops'])} |",
        f"| latency (estimated), ms | {_number(budget['latency_ms'], 1)} "
        f"| {_number(measured['latency_ms'], 1)} |",
        "",
    ]
    lines += _search_section(report.get("search"), budget)
    lines += [
        f"## {'AUC' if acc['metric'] == 'auc' else acc['metric'].capitalize()} on "
        f"{acc['samples']} test samples",
        "",
        "| float | int8 (TFLite Micro) |",
        "| ---: | ---: |",
        f"| {_number(acc['float'])} | {_number(acc['int8'])} |",
        "",
        f"TFLite Micro vs TensorFlow Lite outputs on the same inputs: largest difference "
        f"{acc['tflite_vs_tflm_max_diff_steps']} quantization steps, "
        f"{acc['tflite_vs_tflm_mismatch_fraction']:.2%} of output values differ.",
        "",
        "## Fit per device",
        "",
        "| device | SRAM used / total | flash used / total | latency, ms | fits |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for f in per_device:
        lines.append(
            f"| {f.device} | {_number(f.sram_used_bytes)} / {_number(f.sram_bytes)} "
            f"| {_number(f.flash_used_bytes)} / {_number(f.flash_bytes)} "
            f"| {_number(f.latency_ms, 1)} | {'yes' if f.fits else 'no'} |")
    lines += ["", "## Architecture", ""]
    lines += _architecture_section(report["architecture"])
    if plots:
        lines += ["", "## Plots", ""]
        lines += [f"![{os.path.splitext(os.path.basename(p))[0]}]({p})" for p in plots]
    return "\n".join(lines) + "\n"


def weakest_decision(search):
    """How the least decided choice of a search was decided: ("smallest commit probability",
    p) when decisions were committed (their logits end one-hot), else ("smallest top
    probability", p); p is None when the search did not record it."""
    if "min_commit_probability" in search:
        return "smallest commit probability", search["min_commit_probability"]
    return "smallest top probability", search.get("min_top_probability")


def _undecided_warning(search):
    if not isinstance(search, dict) or not search.get("undecided"):
        return []
    label, value = weakest_decision(search)
    return [f"> **Warning: the search ended undecided.** The {label} over its choices is "
            f"{value:.2f} (below {UNDECIDED_BELOW}): the derived widths rest on weak evidence. "
            f"Search for more epochs or to a lower final temperature (see "
            f"`plots/probabilities.png`).", ""]


_SEARCH_ROWS = (("sram", "tensor arena, bytes", 0), ("flash", "model (.tflite), bytes", 0),
                ("ops", "ops per inference", 0), ("latency", "latency (estimated), ms", 1))


def _search_section(search, budget):
    if not isinstance(search, dict) or not search.get("exact_costs"):
        return []
    changes = search.get("changes") or 0
    how = ("the argmax of every decision" if not changes else
           f"{changes} option steps from the argmax "
           + ("(budget filled)" if search.get("filled_budget") else "(repaired to fit)"))
    label, weakest = weakest_decision(search)
    lines = ["## Search", "",
             f"Derived architecture: {how}; {label} {_number(weakest, 2)}.", "",
             "| derived architecture, before training | search target | exact |",
             "| --- | ---: | ---: |"]
    targets = {"sram": budget["sram_bytes"] - budget["sram_reserve_bytes"],
               "flash": budget["flash_bytes"] - budget["flash_reserve_bytes"],
               "latency": budget["latency_ms"]}
    costs = search["exact_costs"]
    for key, label, digits in _SEARCH_ROWS:
        if key in costs:
            value = round(costs[key]) if not digits else costs[key]
            target = _number(targets[key], digits) if targets.get(key) else ""
            lines.append(f"| {label} | {target} | {_number(value, digits)} |")
    return lines + [""]


def _architecture_section(arch_info):
    layers = arch_info.get("layers") if isinstance(arch_info, dict) else None
    if layers and all(isinstance(row, dict) and "kind" in row for row in layers):
        lines = [f"`{arch_info['name']}` ({arch_info['backbone']}) on input "
                 f"{arch_info['input_shape']}: {_number(arch_info['params'])} parameters, "
                 f"{_number(arch_info['ops'])} ops, {_number(arch_info['weight_bytes'])} bytes "
                 f"of int8 weights and biases.", "",
                 "| # | layer | kind | width | kernel /stride | output shape | params "
                 "| TFLite operators | ops | weight bytes | output bytes |",
                 "| ---: | --- | --- | ---: | --- | --- | ---: | --- | ---: | ---: | ---: |"]
        for row in layers:
            lines.append(
                f"| {row['index']} | {row['name']} | {row['kind']} | {row['width'] or ''} "
                f"| {row['kernel_stride']} | {'x'.join(str(d) for d in row['output_shape'])} "
                f"| {_number(row['params'])} | {', '.join(row['operators']) or 'none'} "
                f"| {_number(row['ops'])} | {_number(row['weight_bytes'])} "
                f"| {_number(row['activation_bytes'])} |")
        return lines
    if layers and all(isinstance(row, dict) and "type" in row for row in layers):
        lines = [f"{_number(arch_info.get('params'))} parameters.", "",
                 "| layer | type | output shape | params |", "| --- | --- | --- | ---: |"]
        return lines + [f"| {row.get('name', '')} | {row['type']} | "
                        f"{row.get('output_shape', '')} | {_number(row.get('params'))} |"
                        for row in layers]
    return ["```json", json.dumps(arch_info, indent=2), "```"]
