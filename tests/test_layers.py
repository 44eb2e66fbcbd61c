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
