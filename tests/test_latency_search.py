"""The search and its derivation use the device's per-operator latency, as the report does."""

import tf_keras as keras

from mnas import arch, callbacks, estimate, export, search_spaces


def _task(rng, n=192):
    y = rng.integers(0, 4, size=n)
    x = rng.normal(size=(n, 16, 16, 1)).astype("float32")
    for c in range(4):
        r, col = divmod(c, 2)
        x[y == c, r * 8:(r + 1) * 8, col * 8:(col + 1) * 8, 0] += 1.0
    return x, y


def _search(x, y, regularizer, epochs=3):
    keras.utils.set_random_seed(0)
    model = search_spaces.SearchSpace("toy", (16, 16, 1), 4, (3, 3), (1, 2), max_width=48,
                                      steps=12, dropout=0.0).build()
    model.compile(keras.optimizers.Adam(0.05), "sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=32, epochs=epochs, verbose=0, callbacks=[regularizer])
    return model


def test_derived_model_meets_the_latency_target_in_the_report(rng):
    x, y = _task(rng)
    free = _search(x, y, callbacks.ResourceRegularizer(device="S"), epochs=1)
    widest = export.check_fit(export.convert_int8(arch.build(arch.derive(free)), x[:8],
                                                  num_samples=8), "S").latency_ms
    target = 0.5 * widest
    regularizer = callbacks.ResourceRegularizer(device="S", latency_ms=target)
    model = _search(x, y, regularizer, epochs=2)
    spec, figures = regularizer.derive(model)
    plain = arch.build(spec)
    info = estimate.keras_model_info(plain)[0]
    # The derivation's figure is the device's per-operator model of the derived graph ...
    assert abs(figures["latency"] - regularizer.device.model_latency_ms(info)) < 1e-6
    # ... and the report's, from the converted flatbuffer, agrees and meets the target.
    reported = export.check_fit(export.convert_int8(plain, x[:8], num_samples=8), "S")
    assert abs(reported.latency_ms - figures["latency"]) < 0.01 * figures["latency"]
    assert reported.latency_ms <= target
    # The penalty's expected latency at the end is scaled to the same model.
    regularizer._calibrate_latency(model)
    assert float(regularizer._latency_scale.numpy()) > 0
