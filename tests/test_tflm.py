"""The interpreter wrapper: measurements, and the checks that keep TFLite Micro from aborting."""

# mnas comes first: it selects Keras 2 (tf_keras) before TensorFlow is imported.
import mnas  # noqa: F401, I001
import os
import struct
import subprocess
import sys

import numpy as np
import pytest
import tf_keras as keras
from conftest import REFERENCE

from mnas import errors, export
from mnas.hardware import tflite_file, tflm

L = keras.layers


KWS = str(REFERENCE / "kws_ref_model.tflite")


def test_arena_usage_of_reference_model():
    usage = tflm.arena_usage(KWS)
    assert (usage.total_bytes, usage.planned_bytes, usage.persistent_bytes) == (
        24272, 16000, 8272)
    assert usage.by_kind["NodeAndRegistration struct"][2] == 13


@pytest.mark.parametrize("keep", [8, 64, 5000, 53000])
def test_truncated_model_is_rejected_before_the_interpreter(keep):
    data = open(KWS, "rb").read()[:keep]
    with pytest.raises(errors.InvalidModelFileError, match="truncated or corrupt"):
        tflm.arena_usage(data)
    with pytest.raises(errors.InvalidModelFileError, match="truncated or corrupt"):
        tflm.MicroRunner(data)


def test_corrupt_offset_is_rejected(tmp_path):
    data = bytearray(open(KWS, "rb").read())
    data[0:4] = (len(data) + 100).to_bytes(4, "little")  # Root table outside the file.
    path = tmp_path / "corrupt.tflite"
    path.write_bytes(bytes(data))
    with pytest.raises(errors.InvalidModelFileError, match="corrupt.tflite.*truncated or"):
        tflm.read_model(path)


def test_not_tflite_and_missing():
    with pytest.raises(errors.InvalidModelFileError, match="identifier 'TFL3'"):
        tflm.read_model(b"\x00" * 64)
    with pytest.raises(errors.InvalidModelFileError, match="Cannot read model file"):
        tflm.read_model(os.path.join(os.path.dirname(KWS), "absent.tflite"))


def test_runner_time_and_predict():
    runner = tflm.MicroRunner(KWS)
    assert runner.time_invoke_ms(repeats=3, warmup=1) > 0
    out = runner.predict_raw(runner.quantize([[[[0.0]] * 10] * 49]))
    assert out.shape == (1, 12)


def test_measure_isolated_matches_in_process():
    measured = tflm.measure_isolated(KWS, repeats=2)
    assert measured["total_bytes"] == tflm.arena_usage(KWS).total_bytes == 24272
    assert measured["host_latency_ms"] > 0


# A child that only builds the native interpreter (its Prepare runs the kernels' checks), with
# no mnas check first: its exit code says whether TFLite Micro aborts on the model.
_BARE = ("import sys; from tflite_micro.python.tflite_micro import runtime; "
         "runtime.Interpreter.from_bytes(sys.stdin.buffer.read(), arena_size=1 << 20)")


def _interpreter_survives(data):
    return subprocess.run([sys.executable, "-c", _BARE], input=data,
                          capture_output=True).returncode == 0


def _convert(model, features):
    data = np.random.default_rng(0).random((4, features), dtype=np.float32)
    return export.convert_int8(model, data, num_samples=4)


@pytest.fixture(scope="module")
def degenerate():
    """Real converter output for models whose activations span almost nothing."""
    keras.utils.set_random_seed(0)
    tiny = keras.initializers.Constant(1e-9)
    softmax = keras.Sequential([keras.Input((4,)), L.Dense(3, kernel_initializer=tiny),
                                L.Softmax()])
    inputs = keras.Input((4,))
    a = L.Dense(2, kernel_initializer=keras.initializers.Constant(1.0))(inputs)
    b = L.Dense(2, kernel_initializer=keras.initializers.Constant(-1.0 + 1e-6))(inputs)
    add = keras.Model(inputs, L.Add()([a, b]))
    return {"softmax": _convert(softmax, 4), "add": _convert(add, 4)}


def _softmax_input_scale(data):
    info = tflite_file.parse_model(data)
    op = next(op for op in info.operators if op.name == "SOFTMAX")
    return info.tensors[op.inputs[0]].scale


def test_vanishing_logits_are_rejected_before_the_interpreter(degenerate):
    data = degenerate["softmax"]
    message = (r"Invalid model file 'model': expected the input of SOFTMAX operator 1 \(tensor "
               r"'.*'\) to have a scale above 1\.49012e-08 \(TFLite Micro's int8 softmax needs "
               r"beta \* scale \* 2\*\*26 > 1, beta = 1\), received .*e-(09|1\d): the logits "
               r"span almost nothing .* untrained or degenerate model")
    for run in (tflm.arena_usage, tflm.MicroRunner, tflm.measure_isolated):
        with pytest.raises(errors.InvalidModelFileError, match=message):
            run(data)
    assert not _interpreter_survives(data)  # Without the check, TFLite Micro aborts.


def test_softmax_bound_is_the_interpreters(degenerate):
    data = degenerate["softmax"]
    stored = struct.pack("<f", _softmax_input_scale(data))
    assert data.count(stored) == 1
    bound = tflm.softmax_min_input_scale()
    assert bound == 2.0 ** -26
    above = float(np.nextafter(np.float32(bound), np.float32(1.0)))
    at_bound = data.replace(stored, struct.pack("<f", bound))
    just_above = data.replace(stored, struct.pack("<f", above))
    with pytest.raises(errors.InvalidModelFileError, match="scale above 1.49012e-08"):
        tflm.read_model(at_bound)
    assert tflm.read_model(just_above) == just_above
    assert not _interpreter_survives(at_bound)
    assert _interpreter_survives(just_above)


def test_add_with_vanishing_output_is_rejected(degenerate):
    data = degenerate["add"]
    with pytest.raises(errors.InvalidModelFileError,
                       match=r"expected ADD operator 2 \(output 'StatefulPartitionedCall:0'\) "
                             r"to have positive scales and an output scale above 2\*\*-19 times "
                             r"its larger input scale .*TFLite Micro would abort"):
        tflm.arena_usage(data)
    assert not _interpreter_survives(data)
