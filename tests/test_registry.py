"""Every registered plain layer type is supported by every stage, and the stages agree."""

import numpy as np
import pytest
import tf_keras as keras
from conftest import converted

from mnas import costs, errors, export, registry
from mnas.hardware import estimate, tflm

# The closed forms' tolerances on these small models: their per-tensor and per-operator
# constants are fitted to DS-CNNs of 5 KB to 250 KB, and the SRAM is a smooth maximum.
# (The exact correction makes `expected_costs` of a supernet equal the estimate.)
CLOSED_FLASH = 0.06
CLOSED_SRAM = 0.25

EXPORTED = [t for t in registry.layer_types() if t.exported]
EXAMPLES = list(dict.fromkeys(t.example for t in EXPORTED))


def test_every_exported_type_has_an_example_that_contains_it():
    for record in EXPORTED:
        assert record.example is not None, record.layer_class.__name__
        kinds = {type(layer) for layer in record.example().layers}
        assert record.layer_class in kinds, record.layer_class.__name__
        assert record.cost is not None, record.layer_class.__name__


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda f: f.__name__.strip("_"))
def test_closed_forms_estimate_converter_and_interpreter_agree(example):
    model = example()
    data = converted(model, np.random.default_rng(0))
    exact = estimate.estimate_keras(model)
    measured = tflm.arena_usage(data)
    closed = costs.smooth_costs(model).numpy()
    assert [layer.op for layer in exact.layers] == [
        layer.op for layer in estimate.estimate_tflite(data).layers]
    assert exact.arena_bytes == measured.total_bytes
    assert exact.tflite_bytes == pytest.approx(len(data), rel=0.02)
    assert closed.ops == exact.ops == estimate.estimate_tflite(data).ops
    assert closed.flash_bytes == pytest.approx(len(data), rel=CLOSED_FLASH)
    assert closed.sram_bytes == pytest.approx(measured.total_bytes, rel=CLOSED_SRAM)


def test_a_type_without_a_lowering_is_refused_by_export_and_estimate():
    model = keras.Sequential([keras.Input((4, 4, 2)), keras.layers.GlobalMaxPooling2D()])
    with pytest.raises(errors.UnsupportedLayerError, match="GlobalMaxPooling2D"):
        export.check_layers(model)
    with pytest.raises(errors.UnsupportedLayerError, match="GlobalMaxPooling2D"):
        estimate.estimate_keras(model)
    with pytest.raises(errors.UnsupportedLayerError, match="GlobalMaxPooling2D"):
        costs.smooth_costs(model)


def test_dense_with_softmax_lowers_to_fully_connected_and_softmax():
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4, activation="softmax")])
    export.check_layers(model)
    assert [layer.op for layer in estimate.estimate_keras(model).layers] == [
        "FULLY_CONNECTED", "SOFTMAX"]
