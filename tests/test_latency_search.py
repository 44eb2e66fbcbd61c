"""The search and its derivation use the device's per-operator latency, as the report does."""

import pytest
import tf_keras as keras

from mnas import arch, callbacks, derivation, export
from mnas.hardware import keras_graph

from test_callbacks import space, task


def _search(x, y, regularizer, epochs=3):
    keras.utils.set_random_seed(0)
    model = space().build()
    model.compile(keras.optimizers.Adam(0.05), "sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=32, epochs=epochs, verbose=0, callbacks=[regularizer])
    return model


def test_derived_model_meets_the_latency_target_in_the_report(rng):
    x, y = task(rng, 192)
    free = _search(x, y, callbacks.ResourceRegularizer(device="S"), epochs=1)
    widest = export.check_fit(export.convert_int8(arch.build(arch.derive(free)), x[:8],
                                                  num_samples=8), "S").latency_ms
    target = 0.5 * widest
    regularizer = callbacks.ResourceRegularizer(device="S", latency_ms=target)
    model = _search(x, y, regularizer, epochs=2)
    found = regularizer.derive(model)
    spec, figures = found.spec, found.costs
    plain = arch.build(spec)
    info = keras_graph.keras_model_info(plain)[0]
    # The derivation's figure is the device's per-operator model of the derived graph ...
    assert abs(figures["latency"] - regularizer.device.model_latency_ms(info)) < 1e-6
    # ... and the report's, from the converted flatbuffer, agrees and meets the target.
    reported = export.check_fit(export.convert_int8(plain, x[:8], num_samples=8), "S")
    assert abs(reported.latency_ms - figures["latency"]) < 0.01 * figures["latency"]
    assert reported.latency_ms <= target
    # The penalty's latency at the argmax is the per-operator model's figure of that graph.
    regularizer._refresh_offsets()  # noqa: SLF001  (what every epoch's start does)
    exact = derivation.exact_costs(model, device=regularizer.device)["latency"]
    assert float(regularizer._expected()["latency"]) == pytest.approx(exact, rel=1e-4)  # noqa: SLF001
