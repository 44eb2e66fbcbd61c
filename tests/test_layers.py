import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

import mnas
from mnas import layers


def small_supernet():
    inputs = keras.Input((12, 8, 1))
    x = layers.SearchableConv2D([4, 8], (3, 3), name="stem")(inputs)
    x = layers.SearchableSkip(layers.SearchableDepthwiseSeparable([8, 12], strides=2),
                              name="skip")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = layers.SearchableDense([4, 8], name="hidden")(x)
    return keras.Model(inputs, keras.layers.Dense(3)(x))


def test_width_choices_are_tenths_in_multiples_of_four():
    assert layers.width_choices(276) == [28, 56, 84, 112, 140, 164, 192, 220, 248, 276]
    assert layers.width_choices(16, steps=4) == [4, 8, 12, 16]


@pytest.mark.parametrize("layer", [
    layers.SearchableConv2D([4, 8], (3, 2), strides=2, padding="valid", temperature=2.0,
                            gumbel=True, kernel_regularizer="l2"),
    layers.SearchableDepthwiseSeparable([4, 8], strides=(2, 1), activation=None),
    layers.SearchableDense([4, 8], activation="tanh"),
    layers.SearchableSkip(layers.SearchableDepthwiseSeparable([4, 8]), temperature=0.5),
    layers.SearchableInvertedBottleneck([8, 16], [[8, 16], [16, 32], [16, 32]], strides=2,
                                        repeats=3, kernel_size=5, activation="relu",
                                        skippable=False, gumbel=True, kernel_regularizer="l2"),
    layers.DepthDecision(temperature=0.5, gumbel=True),
])
def test_get_config_round_trip(layer):
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config


def test_save_load_round_trip_without_custom_objects(tmp_path):
    model = small_supernet()
    for layer in mnas.searchable_layers(model):
        layer.alpha.assign(np.linspace(0.0, 1.0, layer.num_options))
    path = str(tmp_path / "supernet.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    x = np.random.default_rng(0).normal(size=(2, 12, 8, 1)).astype("float32")
    np.testing.assert_allclose(loaded(x), model(x), atol=1e-6)
    assert [layer.choice() for layer in mnas.searchable_layers(loaded)] == [8, True, 12, 8]


def test_probabilities_expected_width_and_choice():
    layer = layers.SearchableConv2D([4, 8, 12], 3)
    layer.build((None, 6, 6, 2))
    np.testing.assert_allclose(layer.probabilities(), [1 / 3] * 3, rtol=1e-6)
    assert float(layer.expected_width()) == pytest.approx(8.0)
    layer.alpha.assign([0.0, 0.0, 5.0])
    assert layer.choice() == 12
    layer.temperature.assign(0.01)
    assert float(layer.expected_width()) == pytest.approx(12.0, abs=1e-3)


def test_one_hot_mask_zeroes_channels_beyond_the_choice():
    layer = layers.SearchableConv2D([4, 8, 12], 3)
    x = np.random.default_rng(1).normal(size=(2, 6, 6, 2)).astype("float32")
    layer(x)
    layer.alpha.assign([-50.0, 50.0, -50.0])
    y = layer(x).numpy()
    assert np.all(y[..., 8:] == 0)
    assert np.any(y[..., :8] != 0)


def test_gumbel_noise_only_while_training():
    layer = layers.SearchableDense([2, 4, 8], gumbel=True)
    layer.build((None, 3))
    assert len({tuple(np.round(layer.probabilities(training=True), 6)) for _ in range(5)}) > 1
    np.testing.assert_allclose(layer.probabilities(), [1 / 3] * 3, rtol=1e-6)


def test_arch_gate_freezes_the_logits():
    layer = layers.SearchableConv2D([4, 8], 3)
    x = tf.ones((1, 5, 5, 1))
    layer(x)
    for gate, moves in ((1.0, True), (0.0, False)):
        layer.arch_gate.assign(gate)
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(layer(x) ** 2) + layer.expected_width()
        grad = tape.gradient(loss, layer.alpha)
        assert bool(np.any(grad.numpy() != 0)) is moves


def test_skip_pools_and_pads_channels_where_the_block_differs():
    skip = layers.SearchableSkip(layers.SearchableDepthwiseSeparable([6, 8], strides=2))
    x = np.random.default_rng(2).normal(size=(1, 6, 6, 4)).astype("float32")
    skip(x)
    assert skip.downsamples and skip.pool_size == (2, 2)
    skip.alpha.assign([50.0, -50.0])  # Skip the block.
    y = skip(x).numpy()
    pooled = tf.nn.avg_pool2d(x, 2, 2, "SAME").numpy()
    np.testing.assert_allclose(y[..., :4], pooled, atol=1e-5)
    assert np.all(y[..., 4:] == 0)
    assert skip.choice() is False


@pytest.mark.parametrize("kwargs, message", [
    ({"choices": []}, r"Invalid value for `choices`: expected a non-empty sorted list of "
                      r"positive ints, received \[\]"),
    ({"choices": [8, 4]}, r"`choices`: expected strictly increasing widths, received \[8, 4\]"),
    ({"choices": [0, 4]}, r"`choices`: expected positive widths, received \[0, 4\]"),
    ({"choices": "abc"}, r"`choices`: expected a sorted list of positive ints, received 'abc'"),
    ({"choices": [4], "temperature": 0}, r"`temperature`: expected a number > 0, received 0"),
    ({"choices": [4], "temperature": -1.5}, r"received -1.5"),
])
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        layers.SearchableDense(**kwargs)


def test_bad_conv_arguments_are_named():
    with pytest.raises(ValueError, match=r"`kernel_size`: expected a positive int or a pair"):
        layers.SearchableConv2D([4], (3, 0))
    with pytest.raises(ValueError, match=r"`padding`: expected 'same' or 'valid', received 'full'"):
        layers.SearchableConv2D([4], 3, padding="full")
    with pytest.raises(ValueError, match=r"`max_width`: expected an int of at least 4"):
        layers.width_choices(2)


def test_skip_rejects_a_block_that_drops_channels():
    skip = layers.SearchableSkip(layers.SearchableDepthwiseSeparable([2, 4]))
    with pytest.raises(ValueError, match=r"expected at least as many output channels as input "
                                         r"channels \(8\), received 4"):
        skip.build((None, 6, 6, 8))
    with pytest.raises(ValueError, match=r"`layer`: expected a Keras layer, received 3"):
        layers.SearchableSkip(3)


def stage(**kwargs):
    """A two-block stage: block 0 downsamples, block 1 is residual and skippable."""
    return layers.SearchableInvertedBottleneck([8, 16], [[8, 16], [24, 48]], strides=2,
                                               repeats=2, name="stage", **kwargs)


def test_inverted_bottleneck_save_load_round_trip_and_sub_decisions(tmp_path):
    inputs = keras.Input((10, 10, 3))
    x = layers.SearchableConv2D([4, 8], 3, name="stem")(inputs)
    x = stage()(x)
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))
    searchable = mnas.searchable_layers(model)
    assert [layer.name for layer in searchable] == [
        "stem", "stage", "stage_expand0", "stage_keep1", "stage_expand1"]
    for layer in searchable:
        layer.alpha.assign(np.linspace(1.0, 0.0, layer.num_options))
    path = str(tmp_path / "supernet.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    x = np.random.default_rng(0).normal(size=(2, 10, 10, 3)).astype("float32")
    np.testing.assert_allclose(loaded(x), model(x), atol=1e-6)
    assert [layer.choice() for layer in mnas.searchable_layers(loaded)] == [4, 8, 8, False, 24]


def test_inverted_bottleneck_shares_the_stage_width_and_skips_to_the_identity():
    layer = stage()
    x = np.random.default_rng(1).normal(size=(2, 8, 8, 4)).astype("float32")
    assert layer(x).shape == (2, 4, 4, 16)
    layer.alpha.assign([50.0, -50.0])  # Stage width 8, for both blocks.
    keep = layer.depth_layers[0]
    keep.alpha.assign([50.0, -50.0])  # Skip block 1.
    skipped = layer(x).numpy()
    assert np.all(skipped[..., 8:] == 0) and np.any(skipped[..., :8] != 0)
    layer.project[1].kernel.assign(layer.project[1].kernel * 10.0)
    np.testing.assert_allclose(layer(x), skipped, atol=1e-6)  # Block 1 plays no part.
    keep.alpha.assign([-50.0, 50.0])
    kept = layer(x).numpy()
    assert np.all(kept[..., 8:] == 0) and not np.allclose(kept, skipped, atol=1e-3)
    assert keep.choice() is True and float(keep.keep_probability()) == pytest.approx(1.0)


def test_inverted_bottleneck_logits_all_get_gradients():
    layer = stage(gumbel=True)
    x = tf.ones((1, 8, 8, 4))
    layer(x)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(x, training=True) ** 2)
    grads = tape.gradient(loss, [d.alpha for d in mnas.searchable_layers(layer)])
    assert all(g is not None and np.any(g.numpy() != 0) for g in grads)


def test_inverted_bottleneck_bad_arguments_are_named():
    with pytest.raises(ValueError, match=r"Invalid value for `expand_choices`: expected one list "
                                         r"of widths or 2 lists \(one per block\), received 3"):
        layers.SearchableInvertedBottleneck([8], [[8], [8], [8]], repeats=2)
    with pytest.raises(ValueError, match=r"`expand_choices`: expected strictly increasing"):
        layers.SearchableInvertedBottleneck([8], [16, 8])
    with pytest.raises(ValueError, match=r"`repeats`: expected a positive int, received 0"):
        layers.SearchableInvertedBottleneck([8], [16], repeats=0)
    with pytest.raises(ValueError, match=r"`activation`: expected a name such as 'relu'"):
        layers.SearchableInvertedBottleneck([8], [16], activation=tf.nn.relu6)
    with pytest.raises(ValueError, match=r"`SearchableInvertedBottleneck` 'ib': expected a 4D "
                                         r"\(NHWC\) input, received shape \(None, 8, 3\)"):
        layers.SearchableInvertedBottleneck([8], [16], name="ib").build((None, 8, 3))


def linear_ds_block(channels):
    """A DS block whose pointwise part passes its input through: identity kernel, batch norm
    frozen at the identity, no activation."""
    block = layers.SearchableDepthwiseSeparable([channels], activation=None)
    block.build((None, 6, 6, channels))
    block.pointwise.kernel.assign(np.eye(channels, dtype="float32")[None, None])
    block.bn_pointwise.trainable = False  # Inference mode: moving mean 0, variance 1.
    return block


def test_the_previous_layers_mask_scales_the_depthwise_output_proportionally():
    # The depthwise batch norm, in training mode, would undo a mask on its input; the block
    # applies the previous layer's mask again after it, so the accuracy loss sees the width.
    block = linear_ds_block(8)
    x = tf.random.stateless_normal((16, 6, 6, 8), seed=(1, 2))
    outputs = {}
    for scale in (1.0, 0.5, 0.0):
        mask = tf.constant([1.0] * 4 + [scale] * 4)
        outputs[scale] = block(layers.with_channel_mask(x * mask, mask), training=True).numpy()
    np.testing.assert_allclose(outputs[0.5][..., :4], outputs[1.0][..., :4], rtol=1e-5)
    # Proportional up to the batch norm's epsilon, which weighs more on a smaller variance.
    np.testing.assert_allclose(outputs[0.5][..., 4:], 0.5 * outputs[1.0][..., 4:], rtol=0.03,
                               atol=1e-3)
    assert np.abs(outputs[0.0][..., 4:]).max() == 0.0
    assert np.abs(outputs[1.0][..., 4:]).max() > 0.1


def test_the_mask_travels_through_skip_wrappers_to_the_next_block():
    model = small_supernet()
    stem, skip = model.get_layer("stem"), model.get_layer("skip")
    stem.alpha.assign([50.0, -50.0])  # Stem width 4: channels 4-7 are masked out.
    x = tf.random.stateless_normal((4, 12, 8, 1), seed=(3, 4))
    seen = {}
    original = skip.layer.call

    def spy(inputs, training=None):
        seen["mask"] = layers.channel_mask(inputs)
        return original(inputs, training=training)

    skip.layer.call = spy
    model(x, training=True)
    np.testing.assert_allclose(seen["mask"].numpy(), [1.0] * 4 + [0.0] * 4, atol=1e-6)
