import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras
from conftest import converted

import mnas
from mnas import arch, costs, derivation, errors, layers, registry, search_spaces
from mnas.hardware import estimate, tflm


@pytest.fixture(scope="module")
def kws_space():
    return search_spaces.get("kws", max_width=96, num_blocks=4)


def assert_matches_converted(expected, plain):
    """One-hot costs of a supernet against the converted model and TFLite Micro's arena: the
    arena to the byte, the flatbuffer within 2% (tensor names vary in length)."""
    data = converted(plain, np.random.default_rng(0))
    measured = tflm.arena_usage(data)
    # Ops: exactly those counted from the converted flatbuffer's operators.
    assert expected.ops == estimate.estimate_tflite(data).ops
    assert expected.flash_bytes == pytest.approx(len(data), rel=0.02)
    assert expected.sram_bytes == measured.total_bytes
    assert expected.activation_bytes == measured.planned_bytes


@pytest.mark.parametrize("seed", [1, 2])
def test_one_hot_costs_match_the_converter_and_the_interpreter(kws_space, seed):
    supernet = kws_space.build()
    derivation.set_choices(supernet, derivation.random_picks(supernet, np.random.default_rng(seed)))
    expected = costs.expected_costs(supernet).numpy()
    assert_matches_converted(expected, arch.build(arch.derive(supernet)))


def test_the_skipped_downsampling_block_case_is_exact():
    # Stem 16, the stride-2 block skipped (an average pool), DS 64: the planner's layout
    # made the arena 15,008 bytes where a largest-operator cost said 13,050-13,300.
    supernet = search_spaces.get("kws", max_width=64, num_blocks=2, steps=4).build()
    stem, skip0, ds0, skip1, ds1 = mnas.searchable_layers(supernet)
    picks = [stem.choices.index(16), 0, 0, 1, ds1.choices.index(64)]
    with derivation.fixed_choices(supernet, picks):
        expected = costs.expected_costs(supernet).numpy()
        plain = arch.build(arch.derive(supernet))
    assert_matches_converted(expected, plain)


def test_micronet_costs_match_the_converter_and_the_interpreter():
    plain = arch.build(arch.get_architecture("micronet_kws_s"))
    data = converted(plain, np.random.default_rng(0))
    expected = costs.expected_costs(plain).numpy()
    assert expected.ops == estimate.estimate_tflite(data).ops
    assert expected.flash_bytes == pytest.approx(len(data), rel=0.05)
    assert expected.sram_bytes == pytest.approx(tflm.arena_usage(data).total_bytes, rel=0.05)
    # MicroNets table 4 gives 16.4 Mops for this model.
    assert expected.ops == pytest.approx(16.4e6, rel=0.03)


def test_vww_one_hot_costs_match_the_converter_and_the_interpreter():
    # Four stages, two residual blocks: the converter's time grows with the layer count.
    supernet = search_spaces.get("vww", num_blocks=6).build()
    derivation.set_choices(supernet, derivation.random_picks(supernet, np.random.default_rng(2)))
    expected = costs.expected_costs(supernet).numpy()
    spec = arch.derive(supernet)
    assert any(e.get("residual") for e in spec.layers)
    plain = arch.build(spec)
    # The plain model's generic rules (residual inputs kept alive) agree with the stage's rule.
    for name, value in vars(costs.smooth_costs(plain).numpy()).items():
        assert value == pytest.approx(getattr(costs.smooth_costs(supernet).numpy(), name),
                                      rel=1e-6)
    # TFLite Micro's greedy planner can leave gaps around the residuals' longer lifetimes.
    assert_matches_converted(expected, plain)


def test_residual_input_stays_in_the_arena_until_its_add():
    inputs = keras.Input((8, 8, 16))
    x = layers.SearchableInvertedBottleneck([16], [96], repeats=2, name="stage")(inputs)
    x = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x))
    supernet = keras.Model(inputs, keras.layers.Softmax()(x))
    for layer in mnas.searchable_layers(supernet):
        layer.alpha.assign(np.eye(layer.num_options, dtype="float32")[-1] * 30)  # Keep all.
    expected = costs.expected_costs(supernet).numpy()
    data = converted(arch.build(arch.derive(supernet)), np.random.default_rng(0))
    # The peak is the residual block's depthwise conv: its input and output, 8x8x96 each, and
    # the block's input, 8x8x16, which the ADD reads afterwards.
    assert expected.activation_bytes == 2 * 8 * 8 * 96 + 8 * 8 * 16
    assert tflm.arena_usage(data).planned_bytes == expected.activation_bytes


def test_vww_costs_are_differentiable_in_every_logit():
    supernet = search_spaces.get("vww", max_width=32).build()
    searchable = mnas.searchable_layers(supernet)
    assert any(isinstance(layer, layers.DepthDecision) for layer in searchable)
    with tf.GradientTape(persistent=True) as tape:
        c = costs.expected_costs(supernet)
    for value in (c.ops, c.flash_bytes, c.sram_bytes):
        grads = tape.gradient(value, [layer.alpha for layer in searchable])
        assert all(g is not None for g in grads)
    ops_grads = tape.gradient(c.ops, [layer.alpha for layer in searchable])
    assert all(np.any(g.numpy() != 0) for g in ops_grads)


def test_costs_are_differentiable_in_every_logit(kws_space):
    supernet = kws_space.build()
    searchable = mnas.searchable_layers(supernet)
    with tf.GradientTape(persistent=True) as tape:
        c = costs.expected_costs(supernet)
    for value in (c.ops, c.flash_bytes, c.sram_bytes):
        grads = tape.gradient(value, [layer.alpha for layer in searchable])
        assert all(g is not None for g in grads)
    ops_grads = tape.gradient(c.ops, [layer.alpha for layer in searchable])
    assert all(np.any(g.numpy() != 0) for g in ops_grads)


def test_costs_by_option_are_the_argmax_with_one_option_changed(kws_space):
    supernet = kws_space.build()
    searchable = mnas.searchable_layers(supernet)
    rng = np.random.default_rng(0)
    for layer in searchable:
        layer.alpha.assign(rng.normal(size=layer.num_options).astype("float32"))

    def compute():
        c = costs.smooth_costs(supernet, straight_through=True)
        return {"ops": c.ops, "flash": c.flash_bytes, "sram": c.sram_bytes}

    values, by_option = costs.costs_by_option(searchable, compute)
    picks = derivation.argmax_picks(supernet)
    checked = 0
    for i, layer in enumerate(searchable):
        for option in range(layer.num_options):
            changed = picks[:i] + [option] + picks[i + 1:]
            with derivation.fixed_choices(supernet, changed):
                exact = costs.smooth_costs(supernet).numpy()
            assert by_option["ops"][i].numpy()[option] == pytest.approx(exact.ops, rel=1e-5)
            assert by_option["flash"][i].numpy()[option] == pytest.approx(
                exact.flash_bytes, rel=1e-5)
            if option == picks[i]:
                assert by_option["sram"][i].numpy()[option] == pytest.approx(
                    float(values["sram"]), rel=1e-5)
            checked += option != picks[i]
    assert checked == sum(layer.num_options - 1 for layer in searchable) > 10


def test_expected_costs_grow_with_width(kws_space):
    supernet = kws_space.build()
    low = costs.minimum_costs(supernet)
    for layer in mnas.searchable_layers(supernet):
        layer.alpha.assign(np.eye(layer.num_options, dtype="float32")[-1] * 30)
    high = costs.expected_costs(supernet).numpy()
    assert low.ops < high.ops and low.flash_bytes < high.flash_bytes
    assert low.sram_bytes < high.sram_bytes


def test_latency_is_ops_over_throughput():
    plain = arch.build(arch.get_architecture("micronet_kws_m"))
    c = costs.expected_costs(plain).numpy()
    device = mnas.Device("throughput only", sram_bytes=320 * 1024, flash_bytes=1024 * 1024,
                         mops_per_second={"ds_cnn": 185.0, "default": 150.0})
    assert c.latency_ms(device, "ds_cnn") == pytest.approx(c.ops / 185e3)


def test_a_layer_without_a_cost_rule_is_named():
    inputs = keras.Input((10, 4))
    outputs = keras.layers.LSTM(4, name="my_lstm")(inputs)
    with pytest.raises(errors.UnsupportedLayerError,
                       match=r"Layer 'my_lstm' of type LSTM has no cost rule: use one of .*"
                             r"`mnas.costs.register_cost`"):
        costs.expected_costs(keras.Model(inputs, outputs))


def test_register_cost_adds_a_rule():
    class Scale(keras.layers.Layer):
        def call(self, x):
            return 2 * x

    inputs = keras.Input((4, 4, 2))
    model = keras.Model(inputs, Scale()(inputs))
    costs.register_cost(Scale, lambda layer, inputs, shape: (inputs[0].width, [
        costs.Node(ops=32.0, sram=64.0)]))
    try:
        assert costs.expected_costs(model).numpy().ops == 32.0
    finally:
        registry.unregister_layer_type(Scale)
