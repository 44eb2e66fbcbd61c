"""Width-searchable convolution, depthwise-separable and dense layers, and the skippable
wrapper that searches depth."""

import tensorflow as tf
import tf_keras as keras

from mnas.layers.base import (
    _activation_name, ArchitectureMixin, batch_norm, channel_mask, _nhwc, _padding, _pair,
    WidthSearchMixin, with_channel_mask)


@keras.utils.register_keras_serializable(package="mnas")
class SearchableConv2D(WidthSearchMixin, keras.layers.Layer):
    """Conv2D + batch norm + activation whose number of filters is searched.

    Args:
        choices: Candidate numbers of filters, strictly increasing positive ints.
        kernel_size: An int or a pair.
        strides: An int or a pair. Defaults to `1`.
        padding: `"same"` or `"valid"`. Defaults to `"same"`.
        activation: Activation name applied after batch norm, or None. Defaults to `"relu"`.
        temperature: Softmax temperature of the architecture logits, > 0. Defaults to `1.0`.
        gumbel: Add Gumbel noise to the logits while training. Defaults to `False`.
        kernel_regularizer: Regularizer of the kernel. Defaults to None.
    """

    def __init__(self, choices, kernel_size, strides=1, padding="same", activation="relu",
                 temperature=1.0, gumbel=False, kernel_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        self._init_width(choices, temperature, gumbel)
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.strides = _pair(strides, "strides")
        self.padding = _padding(padding)
        self.activation = _activation_name(activation)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.conv = keras.layers.Conv2D(
            self.max_width, self.kernel_size, self.strides, self.padding, use_bias=False,
            kernel_regularizer=self.kernel_regularizer, name="conv")
        self.bn = batch_norm("bn")

    def build(self, input_shape):
        self._build_arch()
        self.conv.build(input_shape)
        self.bn.build(self.conv.compute_output_shape(input_shape))
        super().build(input_shape)

    def call(self, inputs, training=None):
        x = self.bn(self.conv(inputs), training=training)
        if self.activation:
            x = keras.activations.get(self.activation)(x)
        return self._mask(x, training)

    def compute_output_shape(self, input_shape):
        return self.conv.compute_output_shape(input_shape)

    def get_config(self):
        return {
            **super().get_config(), **self._arch_config(),
            "choices": self.choices, "kernel_size": self.kernel_size, "strides": self.strides,
            "padding": self.padding, "activation": self.activation,
            "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer)
            if self.kernel_regularizer else None,
        }


@keras.utils.register_keras_serializable(package="mnas")
class SearchableDepthwiseSeparable(WidthSearchMixin, keras.layers.Layer):
    """Depthwise conv + BN + ReLU, then a pointwise conv + BN + ReLU of searched width.

    Args:
        choices: Candidate numbers of pointwise filters, strictly increasing positive ints.
        strides: Stride of the depthwise conv, an int or a pair. Defaults to `1`.
        kernel_size: Depthwise kernel, an int or a pair. Defaults to `3`.
        activation: Activation after each batch norm, or None. Defaults to `"relu"`.
        temperature: Softmax temperature of the architecture logits, > 0. Defaults to `1.0`.
        gumbel: Add Gumbel noise to the logits while training. Defaults to `False`.
        kernel_regularizer: Regularizer of both kernels. Defaults to None.
    """

    def __init__(self, choices, strides=1, kernel_size=3, activation="relu", temperature=1.0,
                 gumbel=False, kernel_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        self._init_width(choices, temperature, gumbel)
        self.strides = _pair(strides, "strides")
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.activation = _activation_name(activation)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.depthwise = keras.layers.DepthwiseConv2D(
            self.kernel_size, self.strides, "same", use_bias=False,
            depthwise_regularizer=self.kernel_regularizer, name="depthwise")
        self.bn_depthwise = batch_norm("bn_depthwise")
        self.pointwise = keras.layers.Conv2D(
            self.max_width, 1, use_bias=False, kernel_regularizer=self.kernel_regularizer,
            name="pointwise")
        self.bn_pointwise = batch_norm("bn_pointwise")

    def build(self, input_shape):
        self._build_arch()
        self.depthwise.build(input_shape)
        mid_shape = self.depthwise.compute_output_shape(input_shape)
        self.bn_depthwise.build(mid_shape)
        self.pointwise.build(mid_shape)
        self.bn_pointwise.build(self.pointwise.compute_output_shape(mid_shape))
        super().build(input_shape)

    def call(self, inputs, training=None):
        act = keras.activations.get(self.activation) if self.activation else tf.identity
        x = act(self.bn_depthwise(self.depthwise(inputs), training=training))
        input_mask = channel_mask(inputs)
        if input_mask is not None:  # The previous layer's width decision (see with_channel_mask).
            x = x * input_mask
        x = act(self.bn_pointwise(self.pointwise(x), training=training))
        return self._mask(x, training)

    def compute_output_shape(self, input_shape):
        mid = self.depthwise.compute_output_shape(input_shape)
        return self.pointwise.compute_output_shape(mid)

    def get_config(self):
        return {
            **super().get_config(), **self._arch_config(),
            "choices": self.choices, "strides": self.strides, "kernel_size": self.kernel_size,
            "activation": self.activation,
            "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer)
            if self.kernel_regularizer else None,
        }


@keras.utils.register_keras_serializable(package="mnas")
class SearchableDense(WidthSearchMixin, keras.layers.Layer):
    """A dense layer (with bias and activation) whose number of units is searched.

    Args:
        choices: Candidate numbers of units, strictly increasing positive ints.
        activation: Activation name, or None. Defaults to `"relu"`.
        temperature: Softmax temperature of the architecture logits, > 0. Defaults to `1.0`.
        gumbel: Add Gumbel noise to the logits while training. Defaults to `False`.
        kernel_regularizer: Regularizer of the kernel. Defaults to None.
    """

    def __init__(self, choices, activation="relu", temperature=1.0, gumbel=False,
                 kernel_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        self._init_width(choices, temperature, gumbel)
        self.activation = _activation_name(activation)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.dense = keras.layers.Dense(
            self.max_width, activation=self.activation,
            kernel_regularizer=self.kernel_regularizer, name="dense")

    def build(self, input_shape):
        self._build_arch()
        self.dense.build(input_shape)
        super().build(input_shape)

    def call(self, inputs, training=None):
        return self._mask(self.dense(inputs), training)

    def compute_output_shape(self, input_shape):
        return self.dense.compute_output_shape(input_shape)

    def get_config(self):
        return {
            **super().get_config(), **self._arch_config(),
            "choices": self.choices, "activation": self.activation,
            "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer)
            if self.kernel_regularizer else None,
        }


def _match_channels(x, channels):
    """Zero-pads the channel axis of `x` up to `channels`."""
    missing = channels - x.shape[-1]
    if missing == 0:
        return x
    return tf.pad(x, [[0, 0]] * (len(x.shape) - 1) + [[0, missing]])


@keras.utils.register_keras_serializable(package="mnas")
class SearchableSkip(ArchitectureMixin, keras.layers.Wrapper):
    """Searches whether a block is kept: y = p_skip * skip(x) + p_keep * block(x).

    The skip path is the identity, or average pooling where the block downsamples; its
    channels are zero-padded up to the block's. The block must not have fewer output channels
    than its input (a skip cannot drop channels).

    Args:
        layer: The block, a Keras layer mapping NHWC to NHWC (e.g.
            `SearchableDepthwiseSeparable`).
        temperature: Softmax temperature of the two logits (skip, keep), > 0. Defaults to `1.0`.
        gumbel: Add Gumbel noise to the logits while training. Defaults to `False`.
    """

    OPTIONS = ("skip", "keep")

    def __init__(self, layer, temperature=1.0, gumbel=False, **kwargs):
        if not isinstance(layer, keras.layers.Layer):
            raise ValueError(
                f"Invalid value for `layer`: expected a Keras layer, received {layer!r}.")
        super().__init__(layer, **kwargs)
        self._init_arch(len(self.OPTIONS), temperature, gumbel)

    def build(self, input_shape):
        input_shape = _nhwc(self, input_shape)
        self._build_arch(prefix="depth_")
        if not self.layer.built:
            self.layer.build(input_shape)
        out_shape = tf.TensorShape(self.layer.compute_output_shape(input_shape))
        if out_shape[-1] < input_shape[-1]:
            raise ValueError(
                f"Invalid block in `SearchableSkip` {self.name!r}: expected at least as many "
                f"output channels as input channels ({input_shape[-1]}), received "
                f"{out_shape[-1]}.")
        self.pool_size = (
            -(-input_shape[1] // out_shape[1]), -(-input_shape[2] // out_shape[2]))
        super().build(input_shape)

    @property
    def downsamples(self):
        return self.pool_size != (1, 1)

    def skip_path(self, inputs):
        x = inputs
        if self.downsamples:
            x = tf.nn.avg_pool2d(x, self.pool_size, self.pool_size, "SAME")
        return x

    def call(self, inputs, training=None):
        p_skip, p_keep = tf.unstack(self.probabilities(training))
        block = self.layer(inputs, training=training)
        channels = block.shape[-1]
        skip = _match_channels(self.skip_path(inputs), channels)
        outputs = p_skip * skip + p_keep * block
        block_mask = channel_mask(block)
        if block_mask is None:
            return outputs
        # Channel c of the output is the block's with probability p_keep and the skip path's
        # (the input's channel, or zero padding) otherwise.
        input_mask = channel_mask(inputs)
        if input_mask is None:
            input_mask = tf.ones([inputs.shape[-1]], block_mask.dtype)
        skip_mask = _match_channels(input_mask[None], channels)[0]
        return with_channel_mask(outputs, p_skip * skip_mask + p_keep * block_mask)

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)

    def keep_probability(self):
        """Probability that the block is kept (a differentiable scalar)."""
        return self.probabilities()[1]

    def choice(self):
        """True if the block would be kept: the argmax of the logits."""
        return self._argmax() == 1

    def get_config(self):
        return {**super().get_config(), **self._arch_config(),
                "layer": keras.saving.serialize_keras_object(self.layer)}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        layer = keras.saving.deserialize_keras_object(
            config.pop("layer"), custom_objects=custom_objects)
        return cls(layer, **config)
