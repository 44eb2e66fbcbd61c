"""The `python -m mnas.profile` command: output, JSON keys, and one-line errors."""

# mnas comes first: it selects Keras 2 (tf_keras) before TensorFlow is imported.
import mnas  # noqa: F401, I001
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tf_keras as keras
from absl import flags

from mnas import arch, devices, errors, profile
from mnas.hardware import estimate

from conftest import REFERENCE

KWS = str(REFERENCE / "kws_ref_model.tflite")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# What `import mnas` makes TensorFlow's native libraries print while they load, before any
# mnas code can keep it off standard error (a CUDA probe through absl logging).
_IMPORT_LOG = ("All log messages before absl::InitializeLog()", "cudart_stub.cc")


def _stderr_lines(text):
    return [line for line in text.splitlines()
            if line.strip() and not any(mark in line for mark in _IMPORT_LOG)]


def _with_operator_code(data, index, code):
    """The flatbuffer with operator code `index` changed to builtin operator `code`."""
    import tflite

    entry = tflite.Model.GetRootAs(data, 0).OperatorCodes(index)._tab
    out = bytearray(data)
    for field, size in ((4, 1), (10, 4)):  # deprecated_builtin_code (int8), builtin_code (int32)
        if entry.Offset(field):
            at = entry.Pos + entry.Offset(field)
            out[at:at + size] = code.to_bytes(size, "little", signed=True)
    return bytes(out)


def _subprocess(*args):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "mnas.profile", *args], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=300)


def _main(capsys, *args):
    if "measure" not in flags.FLAGS:
        profile.define_flags()
    flags.FLAGS.unparse_flags()
    argv = flags.FLAGS(["profile", *args])
    code = profile.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_command_json_with_measurement():
    result = _subprocess(KWS, "--json", "--measure")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["tflite_bytes"] == 53936
    assert report["arena_bytes_estimated"] == report["arena_bytes_measured"] == 24272
    assert report["ops"] == sum(layer["ops"] for layer in report["layers"])
    assert set(report["devices"]) == set(devices.BUILTIN) and len(devices.BUILTIN) >= 9
    assert all(dev["fits"] and dev["latency_ms"] > 0 for dev in report["devices"].values())


def test_command_truncated_file_is_one_line(tmp_path):
    path = tmp_path / "cut.tflite"
    path.write_bytes(open(KWS, "rb").read()[:20000])
    result = _subprocess(str(path), "--measure")
    assert result.returncode == 1
    lines = _stderr_lines(result.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: ") and "truncated or corrupt" in lines[0]


def test_table(capsys):
    code, out, _ = _main(capsys, KWS, "--device=S", "--latency_ms=200")
    assert code == 0
    lines = out.splitlines()
    first_conv = next(line for line in lines if " CONV_2D " in line)
    # Input shape, kernel, stride, padding and fused activation, MACs beside ops.
    assert "1x49x10x1" in first_conv and "k10x4 s2x2 same relu" in first_conv
    assert "320,000" in first_conv and "640,000" in first_conv
    assert any(line.startswith("Peak memory in use: 16,000 bytes at layer 1 "
                               "(DEPTHWISE_CONV_2D") for line in lines)
    device = next(line for line in lines if line.startswith("STM32F446RE"))
    assert "fits; SRAM 19.8% of 122,880, flash 11.8% of 458,752" in device
    ms = devices.get_device("S").model_latency_ms(KWS)  # The device's per-operator model.
    assert f"latency {ms:.1f} ms of 200 ms ({ms / 200:.1%})" in device


def test_json_fields(capsys):
    code, out, _ = _main(capsys, KWS, "--device=S", "--json", "--latency_ms=50")
    report = json.loads(out)
    assert report["macs"] == sum(layer["macs"] for layer in report["layers"]) == 2656768
    conv = report["layers"][0]
    assert conv["input_shapes"] == [[1, 49, 10, 1]]
    assert conv["options"]["kernel_height"] == 10 and conv["options"]["stride_w"] == 2
    # Per layer, the device's per-operator model; the layers add up to the model's latency.
    assert sum(layer["latency_ms"]["STM32F446RE"] for layer in report["layers"]) == (
        pytest.approx(report["devices"]["STM32F446RE"]["latency_ms"]))
    assert conv["latency_ms"]["STM32F446RE"] > 0
    assert report["peak"]["layer"] == 1 and report["peak"]["memory_bytes"] == 16000
    assert sum(t["bytes"] for t in report["peak"]["tensors"]) == 16000
    device = report["devices"]["STM32F446RE"]
    assert device["sram_used_fraction"] == pytest.approx(24272 / 122880)
    assert not device["fits_latency"] and device["latency_used_fraction"] > 1


def test_named_architecture_is_measured(capsys):
    # Built fresh, micronet_kws_s's logits span ~1e-6 and TFLite Micro aborted on it; with
    # trained-like statistics it runs, and the estimate is the interpreter's arena.
    code, out, err = _main(capsys, "--arch=micronet_kws_s", "--json", "--device=M", "--measure")
    assert code == 0, err
    report = json.loads(out)
    assert report["model"] == "micronet_kws_s"
    assert report["arena_bytes_estimated"] == report["arena_bytes_measured"]
    assert report["host_latency_ms"] > 0
    assert report["devices"]["STM32F746ZG"]["fits"]


def test_set_trained_statistics():
    model = arch.build(arch.get_architecture("ds_cnn_s"))
    data = np.random.default_rng(0).random((8, 49, 10, 1), dtype=np.float32)
    untrained = model.predict(data, verbose=0)
    norm = next(layer for layer in model.layers
                if isinstance(layer, keras.layers.BatchNormalization))
    momentum = norm.momentum
    profile.set_trained_statistics(model, data)
    inputs = keras.Model(model.inputs, norm.input).predict(data, verbose=0)
    np.testing.assert_allclose(norm.moving_mean.numpy(), inputs.mean(axis=(0, 1, 2)),
                               rtol=1e-4, atol=1e-6)
    assert norm.momentum == momentum
    logits = keras.Model(model.inputs, model.layers[-2].output).predict(data, verbose=0)
    assert np.ptp(logits) > 0.1 > np.ptp(np.log(untrained))


def test_measured_latency_fit(capsys, tmp_path):

    vww = REFERENCE / "vww_96_int8.tflite"
    base = devices.get_device("S")
    csv = tmp_path / "board.csv"
    csv.write_text(f"model,ms\n{KWS},{2 * base.model_latency_ms(KWS)}\n"
                   f"{vww},{2 * base.model_latency_ms(vww)}\n")
    code, out, err = _main(capsys, KWS, "--json", "--device=S", f"--latency_csv=S={csv}")
    assert code == 0, err
    device = json.loads(out)["devices"]["STM32F446RE"]
    assert device["latency_ms"] == pytest.approx(2 * base.model_latency_ms(KWS))
    assert device["latency_model"].startswith("measured: fitted to 2 latencies")


def test_report_and_profile_give_one_latency(tmp_path):
    from mnas import export

    fit = export.check_fit(KWS, "S", arena_bytes=30000)
    report = profile.profile(KWS, list(devices.BUILTIN))
    assert fit.latency_ms == pytest.approx(report["devices"]["STM32F446RE"]["latency_ms"])
    per_device = {f.device: f.latency_ms for f in [
        export._fit(d, 1, 1, None, "default", None, estimate.read_model_info(KWS))
        for d in devices.BUILTIN]}
    assert per_device == pytest.approx({k: v["latency_ms"] for k, v in
                                        report["devices"].items()})


@pytest.mark.parametrize("args,message", [
    (["{tmp}/notes.tflite"], "expected a TFLite flatbuffer"),
    (["{tmp}/cut.tflite"], "truncated or corrupt"),
    (["{tmp}/lsh.tflite"], "Unsupported operator in '.*lsh.tflite'.*received "
                            "LSH_PROJECTION."),
    ([KWS, "--device=STM32X"], "Invalid value for `device`"),
    (["--arch=micronet_kws_xl"], "Invalid value for `arch`.*received 'micronet_kws_xl'"),
    (["--arch={tmp}/spec.json"], "Invalid value for `arch`: Invalid architecture spec"),
    ([KWS, "--latency_csv=S"], "Invalid value for `latency_csv`"),
    ([KWS, "--latency_csv=S={tmp}/binary.csv"], "Invalid value for `latency_csv`: expected a "
                                                "text CSV"),
])
def test_errors_are_one_line(capsys, tmp_path, args, message):
    data = open(KWS, "rb").read()
    (tmp_path / "notes.tflite").write_text("hello")
    (tmp_path / "cut.tflite").write_bytes(data[:20000])
    (tmp_path / "lsh.tflite").write_bytes(_with_operator_code(data, 0, 15))
    (tmp_path / "spec.json").write_text('{"layers": []}')
    (tmp_path / "binary.csv").write_bytes(bytes(range(128, 256)) * 4)
    code, _, err = _main(capsys, *[a.format(tmp=tmp_path) for a in args])
    assert code == 1
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert __import__("re").search(message, err), err


def test_unknown_operators_are_all_named():
    data = _with_operator_code(_with_operator_code(open(KWS, "rb").read(), 0, -6), 1, 15)
    with pytest.raises(errors.UnknownOperatorError,
                       match="received LSH_PROJECTION, builtin operator code -6."):
        estimate.estimate_tflite(data)


def test_unknown_backbone_is_refused():
    result = _subprocess(KWS, "--backbone=foo")
    assert result.returncode != 0
    assert "--backbone" in result.stderr and "Traceback" not in result.stderr
