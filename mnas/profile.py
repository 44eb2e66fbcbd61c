"""Profiles a TFLite model for microcontrollers: per-layer costs, arena, flash, latency, fit.

Usage:

    python -m mnas.profile model.tflite
    python -m mnas.profile --arch=micronet_kws_s --measure
    python -m mnas.profile --arch=spec.json --device=STM32F446RE --json

`--arch` builds the architecture (a name of `mnas.arch` or a saved spec), gives it the
statistics of a trained model (`set_trained_statistics`), converts it to int8 with random
calibration data and profiles the result. `--measure` adds the figures of the real
TFLite Micro interpreter (arena, host latency). Latency is each device's per-operator model
(`mnas.latency`) over the model's operators, the figure the report of `mnas.train` gives;
`--latency_csv=DEVICE=measured.csv` first fits the device's model to latencies measured on
that board (`mnas.devices.calibrate`).

Errors (not a TFLite file, a truncated one, an unknown operator, device or architecture) are
reported as one line on standard error, with exit code 1. TensorFlow's logs and the converter's
progress are kept off standard error.
"""

import json
import logging
import os
import sys
import warnings

import numpy as np
from absl import app, flags

from mnas import console, devices, errors


def define_flags():
    """Defines the command's flags (not at import, so that importing this module is free)."""
    flags.DEFINE_string("arch", None, "Architecture name (e.g. micronet_kws_s) or spec JSON "
                        "path to build, convert to int8 and profile, instead of a .tflite.")
    flags.DEFINE_multi_string("device", sorted(devices.BUILTIN),
                              "Device names (or S/M/L) or JSON profile paths.")
    backbones = sorted({b for d in devices.BUILTIN.values() for b in d.mops_per_second}
                       | {"default"})
    flags.DEFINE_enum("backbone", None, backbones, "Backbone for a device profile with "
                      "throughputs only (no per-operator latency model). Defaults to the "
                      "architecture's, or 'default' for a .tflite.")
    flags.DEFINE_float("latency_ms", None, "A latency budget in milliseconds: each device's "
                       "latency is shown as a share of it, and a model over it does not fit.")
    flags.register_validator("latency_ms", lambda v: v is None or v > 0,
                             "--latency_ms must be a positive number of milliseconds.")
    flags.DEFINE_multi_string("latency_csv", [], "DEVICE=CSV: fit the device's latency model "
                              "to `model,ms` latencies measured on it.")
    flags.DEFINE_bool("measure", False, "Also run the TFLite Micro interpreter: measured "
                      "arena and host latency.")
    flags.DEFINE_bool("json", False, "Print one JSON object instead of the table.")
    flags.DEFINE_integer("seed", 0, "Seed of the random calibration data for --arch.")


def set_trained_statistics(model, data, seed=0):
    """Gives a freshly built model the statistics of a trained one, in place.

    Why: in a freshly initialised model every BatchNormalization holds moving mean 0 and
    variance 1, while the Glorot-initialised convolutions shrink the signal at each layer
    (a 3x3 depthwise kernel over C channels by about 2 / (C + 1) in variance). The logits of an
    untrained `micronet_kws_s` are about 1e-7 on random inputs, the converter gives the
    softmax input a scale near 1e-8, and TFLite Micro aborts on it
    (`mnas.hardware.tflm.check_kernel_limits`); the ranges, and with them the figures, would
    be nothing like a trained model's. Training keeps activations near unit scale (its logits
    then span about 2). So each BatchNormalization gets a random scale and offset
    like trained ones (gamma in [0.5, 1.5], beta ~ N(0, 0.25)) and the moving mean and
    variance of its input over `data`; convolution and dense biases get small random values
    (N(0, 0.1)), so the converter keeps them as it does a trained model's.

    Args:
        model: A Keras model (plain or with mnas searchable layers).
        data: Input samples (a batch), e.g. the calibration data of the conversion.
        seed: Seed (or `np.random.Generator`) of the random scales, offsets and biases.
            Defaults to `0`.

    Returns:
        `model`.

    Example:

    >>> import numpy as np
    >>> from mnas import arch
    >>> model = arch.build(arch.get_architecture("ds_cnn_s"))
    >>> data = np.random.default_rng(0).random((8, 49, 10, 1), dtype=np.float32)
    >>> model = set_trained_statistics(model, data)
    """
    import tf_keras as keras

    rng = np.random.default_rng(seed)
    norms = []
    for layer in model.submodules:
        if isinstance(layer, keras.layers.BatchNormalization):
            norms.append(layer)
            if layer.scale:
                layer.gamma.assign(rng.uniform(0.5, 1.5, layer.gamma.shape))
            if layer.center:
                layer.beta.assign(rng.normal(0.0, 0.25, layer.beta.shape))
        elif isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D,
                                keras.layers.Dense)) and getattr(layer, "bias", None) is not None:
            layer.bias.assign(rng.normal(0.0, 0.1, layer.bias.shape))
    # One forward pass in training mode with momentum 0: each BatchNormalization normalises
    # with its input's batch statistics and stores them as its moving statistics, so the
    # layers after it see what they will see in inference.
    momenta = [layer.momentum for layer in norms]
    try:
        for layer in norms:
            layer.momentum = 0.0
        model(np.asarray(data, dtype=np.float32), training=True)
    finally:
        for layer, momentum in zip(norms, momenta):
            layer.momentum = momentum
    return model


def convert_like_trained(model, seed=0, num_samples=8):
    """Converts a freshly built model to int8 as `--arch` does.

    Draws `num_samples` uniform random inputs, gives the model trained-like statistics from
    them (`set_trained_statistics`, which changes `model` in place) and converts it with
    them as calibration data.

    Args:
        model: A plain Keras model.
        seed: Seed (or `np.random.Generator`) of the data and statistics. Defaults to `0`.
        num_samples: Calibration samples. Defaults to `8`.

    Returns:
        The int8 TFLite flatbuffer bytes.
    """
    from mnas import export

    rng = np.random.default_rng(seed)
    data = rng.random((num_samples,) + tuple(model.input_shape[1:]), dtype=np.float32)
    set_trained_statistics(model, data, rng)
    return export.convert_int8(model, data, num_samples=num_samples)


def _model_bytes(path, arch_name, seed):
    """Returns (flatbuffer bytes, label, backbone, its `Estimate` or None) for a .tflite path or
    an architecture."""
    from mnas.hardware import estimate, tflite_file

    if arch_name is None:
        est = estimate.estimate_tflite(path)  # Checks the file before anything else.
        return tflite_file.load_bytes(path)[0], path, None, est
    from mnas import arch

    try:
        spec = arch.get_architecture(arch_name)
    except ValueError as e:  # A spec file that does not parse (`mnas.arch` raises ValueError).
        if isinstance(e, errors.MnasError):
            raise
        raise errors.UnknownNameError(f"Invalid value for `arch`: {e}") from None
    return convert_like_trained(arch.build(spec), seed), arch_name, spec.backbone, None


def _calibrated(entries):
    """{device name: `Device` fitted to the measurements} from DEVICE=CSV entries."""
    out = {}
    for entry in entries:
        name, sep, path = entry.partition("=")
        if not sep or not name or not path:
            raise errors.DeviceProfileError(
                f"Invalid value for `latency_csv`: expected DEVICE=PATH, received {entry!r}.")
        device = devices.get_device(name)
        try:
            out[device.name] = devices.calibrate(device, path)
        except UnicodeDecodeError:
            raise errors.DeviceProfileError(
                f"Invalid value for `latency_csv`: expected a text CSV of `model,ms` rows, "
                f"received {path!r}, which is not text.") from None
    return out


def _layer_json(layer, device_ms):
    return dict(op=layer.op, output_shape=list(layer.output_shape), ops=layer.ops,
                activation_bytes=layer.activation_bytes, weight_bytes=layer.weight_bytes,
                input_shapes=[list(s) for s in layer.input_shapes], options=layer.options,
                macs=layer.macs, memory_bytes=layer.memory_bytes,
                latency_ms={name: ms for name, ms in device_ms.items()})


def profile(model, device_names, backbone="default", calibrated=None, measure=False,
            latency_budget_ms=None, est=None):
    """Profiles a TFLite model against devices.

    Args:
        model: Flatbuffer bytes or a `.tflite` path.
        device_names: Device names, S/M/L, or JSON profile paths.
        backbone: Backbone name for device profiles with throughputs only. Defaults to
            `"default"`.
        calibrated: {device name: `Device`} that replace the named devices (profiles
            fitted to measurements, `mnas.devices.calibrate`). Defaults to none.
        measure: Whether to run the TFLite Micro interpreter too. Defaults to `False`.
        latency_budget_ms: A latency budget to compare each device's latency with. Defaults
            to none.
        est: The `Estimate` of `model` when already made. Defaults to making it.

    Returns:
        A JSON-serialisable dict: `tflite_bytes`, `arena_bytes_estimated`, `planned_bytes`,
        `persistent_bytes`, `ops`, `macs`, `layers` (each with its input shapes, options, MACs,
        arena head in use and latency per device), `peak` (the layer where the arena head in
        use peaks and the tensors alive there), `devices` ({name: `latency_ms`, `fits`, the
        share of each budget used, ...}), and with `measure` `arena_bytes_measured` and
        `host_latency_ms`.
    """
    from mnas import latency
    from mnas.hardware import estimate, tflm

    info = estimate.read_model_info(model)
    est = est or estimate.estimate_tflite(model)
    calibrated = calibrated or {}
    targets = [devices.get_device(name) for name in device_names]
    targets = [calibrated.get(dev.name, dev) for dev in targets]
    arena = est.arena_bytes
    report = {
        "tflite_bytes": est.tflite_bytes,
        "arena_bytes_estimated": est.arena_bytes,
        "planned_bytes": est.planned_bytes,
        "persistent_bytes": est.persistent_bytes,
        "ops": est.ops,
        "macs": sum(layer.macs for layer in est.layers),
    }
    if measure:
        measured = tflm.measure_isolated(model)
        arena = measured["total_bytes"]
        report["arena_bytes_measured"] = measured["total_bytes"]
        report["host_latency_ms"] = measured["host_latency_ms"]
    works = latency.layer_work(info)
    report["devices"], per_layer = {}, {}
    for dev in targets:
        ms = float(dev.model_latency_ms(info, backbone))
        if dev.latency_model is not None:  # Each operator's own figure.
            per_layer[dev.name] = [dev.latency_model.predict_ms([w]) for w in works]
        else:  # A throughput: each layer's share of the ops.
            per_layer[dev.name] = [ms * layer.ops / est.ops if est.ops else 0.0
                                   for layer in est.layers]
        report["devices"][dev.name] = {
            "latency_ms": ms,
            "latency_model": (dev.latency_source or "per-operator") if dev.latency
            else f"throughput ({backbone})",
            "core": dev.core,
            "sram_budget_bytes": dev.sram_budget_bytes,
            "flash_budget_bytes": dev.flash_budget_bytes,
            "fits_sram": arena <= dev.sram_budget_bytes,
            "fits_flash": est.tflite_bytes <= dev.flash_budget_bytes,
            "fits": arena <= dev.sram_budget_bytes and est.tflite_bytes <= dev.flash_budget_bytes,
            "sram_used_fraction": arena / dev.sram_budget_bytes,
            "flash_used_fraction": est.tflite_bytes / dev.flash_budget_bytes,
        }
        if latency_budget_ms:
            report["devices"][dev.name].update(
                latency_budget_ms=latency_budget_ms,
                latency_used_fraction=ms / latency_budget_ms,
                fits_latency=ms <= latency_budget_ms)
    report["layers"] = [_layer_json(layer, {name: ms[i] for name, ms in per_layer.items()})
                        for i, layer in enumerate(est.layers)]
    report["peak"] = {
        "layer": est.peak_layer,
        "op": est.layers[est.peak_layer].op if est.layers else None,
        "memory_bytes": est.layers[est.peak_layer].memory_bytes if est.layers else 0,
        "tensors": [{"name": name, "bytes": size} for name, size in est.peak_tensors]}
    return report


# TFLite's Padding and ActivationFunctionType codes (schema.fbs).
_PADDING = {0: "same", 1: "valid"}
_ACTIVATIONS = {1: "relu", 2: "relu_n1_to_1", 3: "relu6", 4: "tanh", 5: "sign_bit"}


def _shape(shape):
    return "x".join(str(d) for d in shape) or "scalar"


def _short(name, width=48):
    """A tensor's name as the converter joins fused ops' names: the first, shortened."""
    first = name.split(";")[0] or "?"
    return first if len(first) <= width else "..." + first[-(width - 3):]


def _options_text(options):
    """Kernel, stride, padding, fused activation and the other options, briefly."""
    o = dict(options)
    parts = []
    for h, w, label in (("kernel_height", "kernel_width", "k"),
                        ("filter_height", "filter_width", "k"), ("stride_h", "stride_w", "s"),
                        ("dilation_h_factor", "dilation_w_factor", "d")):
        if h in o and w in o:
            hv, wv = o.pop(h), o.pop(w)
            if label != "d" or (hv, wv) != (1, 1):
                parts.append(f"{label}{hv}x{wv}")
    if "padding" in o:
        parts.append(_PADDING.get(o.pop("padding"), "?"))
    activation = o.pop("fused_activation_function", 0)
    if activation:
        parts.append(_ACTIVATIONS.get(activation, str(activation)))
    defaults = {"depth_multiplier": 1, "beta": 1.0, "alpha": None, "axis": None,
                "keep_dims": False, "rank": None}
    for key, default in defaults.items():
        if key in o and o[key] != default:
            value = o[key]
            parts.append(f"{key}={value:g}" if isinstance(value, float) else f"{key}={value}")
    return " ".join(parts)


def format_table(report, label):
    """The report as a per-layer table, the peak, totals and one line per device."""
    first = next(iter(report["devices"]), None)
    lines = [f"Model: {label}",
             f"{'#':>3}  {'operator':<17} {'input shapes':<24} {'options':<22} "
             f"{'output':<14} {'MACs':>11} {'ops':>11} {'act B':>8} {'weight B':>9} "
             f"{'in use B':>9}" + (f" {'ms':>7} {'share':>6}" if first else "")]
    total_ms = report["devices"][first]["latency_ms"] if first else 0.0
    for i, layer in enumerate(report["layers"]):
        inputs = ",".join(_shape(s) for s in layer["input_shapes"])
        mark = "*" if i == report["peak"]["layer"] else " "
        line = (f"{i:>3}{mark} {layer['op']:<17.17} {inputs:<24.24} "
                f"{_options_text(layer['options']):<22.22} {_shape(layer['output_shape']):<14} "
                f"{layer['macs']:>11,} {layer['ops']:>11,} {layer['activation_bytes']:>8,} "
                f"{layer['weight_bytes']:>9,} {layer['memory_bytes']:>9,}")
        if first:
            ms = layer["latency_ms"][first]
            line += f" {ms:>7.3f} {ms / total_ms if total_ms else 0:>6.1%}"
        lines.append(line)
    if first:
        lines.append(f"(latency per layer on {first}: its share of the ops)")
    peak = report["peak"]
    alive = ", ".join(f"{_short(t['name'])} ({t['bytes']:,})" for t in peak["tensors"])
    lines.append(f"Peak memory in use: {peak['memory_bytes']:,} bytes at layer {peak['layer']} "
                 f"({peak['op']}, marked *); tensors alive there: {alive}")
    if report["planned_bytes"] > peak["memory_bytes"]:
        lines.append(f"The greedy memory plan needs {report['planned_bytes']:,} bytes: gaps "
                     f"where freed buffers are too small to reuse cost "
                     f"{report['planned_bytes'] - peak['memory_bytes']:,} more.")
    lines.append(f"Total: {report['macs']:,} MACs, {report['ops']:,} ops "
                 f"({report['ops'] / 1e6:.2f} MOps)")
    lines.append(f"Flatbuffer: {report['tflite_bytes']:,} bytes")
    lines.append(f"Arena (estimated): {report['arena_bytes_estimated']:,} bytes = "
                 f"{report['planned_bytes']:,} planned + {report['persistent_bytes']:,} "
                 f"persistent")
    if "arena_bytes_measured" in report:
        lines.append(f"Arena (TFLite Micro): {report['arena_bytes_measured']:,} bytes")
        lines.append(f"Host latency (TFLite Micro): {report['host_latency_ms']:.3f} ms")
    for name, dev in report["devices"].items():
        verdict = "fits" if dev["fits"] and dev.get("fits_latency", True) else "does NOT fit"
        why = [what for what, ok in (("SRAM", dev["fits_sram"]), ("flash", dev["fits_flash"]),
                                     ("latency", dev.get("fits_latency", True))) if not ok]
        latency = f"latency {dev['latency_ms']:.1f} ms"
        if "latency_budget_ms" in dev:
            latency += (f" of {dev['latency_budget_ms']:g} ms "
                        f"({dev['latency_used_fraction']:.1%})")
        lines.append(f"{name}: {verdict}{' (' + ', '.join(why) + ')' if why else ''}; "
                     f"SRAM {dev['sram_used_fraction']:.1%} of {dev['sram_budget_bytes']:,}, "
                     f"flash {dev['flash_used_fraction']:.1%} of "
                     f"{dev['flash_budget_bytes']:,}; {latency} "
                     f"({dev['latency_model'].split(':')[0]})")
    return "\n".join(lines)


def _quiet_python_logs():
    """TensorFlow's and absl's Python logs at ERROR, and no converter warnings."""
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.ERROR)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=r"tensorflow\.")


def main(argv):
    FLAGS = flags.FLAGS
    paths = argv[1:]
    _quiet_python_logs()
    try:
        if FLAGS.arch is None and len(paths) != 1:
            raise errors.InvalidModelFileError(
                f"Invalid arguments: expected one .tflite path or --arch, received "
                f"{len(paths)} paths.")
        if FLAGS.arch is not None and paths:
            raise errors.InvalidModelFileError(
                f"Invalid arguments: expected a .tflite path or --arch, not both; received "
                f"{paths[0]!r} and --arch={FLAGS.arch}.")
        with console.native_stderr(silent_on=errors.MnasError):
            data, label, backbone, est = _model_bytes(paths[0] if paths else None,
                                                      FLAGS.arch, FLAGS.seed)
            report = profile(data, FLAGS.device, FLAGS.backbone or backbone or "default",
                             _calibrated(FLAGS.latency_csv), FLAGS.measure,
                             FLAGS.latency_ms, est)
    except (errors.MnasError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    report["model"] = label
    print(json.dumps(report, indent=1) if FLAGS.json else format_table(report, label))
    return 0


def run():
    """The `python -m mnas.profile` command."""
    console.own_lines_only()
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"  # Read by native code loaded later, and children.
    define_flags()
    app.run(main)


if __name__ == "__main__":
    run()
