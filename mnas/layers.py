"""Searchable Keras layers: width by FBNetV2 channel masking, depth by a parallel skip.

A width-searchable layer holds one kernel of its widest choice and architecture logits
`alpha`, one per candidate width. Its output is multiplied by the soft mask
`m_c = sum_k p_k * 1[c < c_k]`, `p = softmax(alpha / temperature)` (with Gumbel noise while
training if asked), so channel `c` survives with the probability that the chosen width exceeds
it. `SearchableSkip` wraps a block and mixes it with a parameter-free skip path by its own
softmax, which searches depth. `SearchableInvertedBottleneck` is a MobileNetV2 stage: inverted
residual blocks with searched expansion widths, one searched output width shared by the stage
(so its residual adds keep matching widths), and skippable residual blocks.

Every searchable layer exposes `probabilities()`, `expected_width()` (for `SearchableSkip`, the
probability of keeping the block), `choice()` (the argmax), and `arch_weights`.

Example:

>>> import mnas
>>> import tf_keras as keras
>>> inputs = keras.Input((49, 10, 1))
>>> x = mnas.SearchableConv2D([8, 16], (10, 4))(inputs)
>>> x = mnas.SearchableSkip(mnas.SearchableDepthwiseSeparable([8, 16], strides=2))(x)
>>> x = keras.layers.GlobalAveragePooling2D()(x)
>>> model = keras.Model(inputs, keras.layers.Dense(12)(x))
>>> model.layers[1].choice() in (8, 16)
True
"""

import numpy as np
import tensorflow as tf
import tf_keras as keras

CHANNEL_MULTIPLE = 4  # CMSIS-NN kernels are much faster on channel counts divisible by 4.

# Moving averages of batch norm follow the batch statistics within ~10 steps. Keras's default of
# 0.99 needs hundreds, more than a short schedule on a small dataset has, and a model evaluated
# with unsettled statistics (validation, conversion) is far off its training accuracy.
BN_MOMENTUM = 0.9



def _nhwc(layer, input_shape):
    """`input_shape` as a `TensorShape`, checked to be 4D (NHWC) for `layer`."""
    input_shape = tf.TensorShape(input_shape)
    if input_shape.rank != 4:
        raise ValueError(
            f"Invalid input to `{type(layer).__name__}` {layer.name!r}: expected a 4D (NHWC) "
            f"input, received shape {input_shape}.")
    return input_shape

def with_channel_mask(outputs, mask):
    """Attaches the soft channel mask that made `outputs` to it, for the layers it feeds.

    A depthwise convolution followed by batch normalisation works channel by channel, so in
    training mode the normalisation undoes a mask applied to its input: the masked channels
    come back at full scale, and the accuracy loss no longer sees the width decision that
    masked them. A layer of that kind reads the mask with `channel_mask` and applies it again
    after its normalisation, as the derived model, which has no such channels, computes.
    """
    outputs._mnas_channel_mask = mask  # noqa: SLF001  (a tensor attribute, like _keras_mask)
    return outputs


def channel_mask(inputs):
    """The soft channel mask attached to `inputs` by the layer that made it, or None."""
    return getattr(inputs, "_mnas_channel_mask", None)


def batch_norm(name=None):
    """A BatchNormalization layer with mnas's momentum."""
    return keras.layers.BatchNormalization(momentum=BN_MOMENTUM, name=name)


def width_choices(max_width, steps=10, multiple=CHANNEL_MULTIPLE):
    """Candidate widths: `steps` even fractions of `max_width`, rounded to `multiple`.

    The default gives 10%, 20%, ..., 100% of `max_width` in multiples of 4, as in MicroNets.

    Args:
        max_width: The widest choice.
        steps: How many fractions. Defaults to `10`.
        multiple: Round each width to a multiple of this. Defaults to `4`.

    Returns:
        A sorted list of distinct positive ints ending at `max_width` (rounded).

    Example:

    >>> width_choices(276)
    [28, 56, 84, 112, 140, 164, 192, 220, 248, 276]
    """
    if not isinstance(max_width, (int, np.integer)) or max_width < multiple:
        raise ValueError(
            f"Invalid value for `max_width`: expected an int of at least {multiple}, "
            f"received {max_width!r}.")
    widths = {max(multiple, int(np.floor(max_width * i / steps / multiple + 0.5)) * multiple)
              for i in range(1, steps + 1)}
    return sorted(widths)


def _check_choices(choices, name="choices"):
    if isinstance(choices, (int, np.integer)):
        choices = [choices]
    try:
        choices = [int(c) for c in choices]
    except (TypeError, ValueError):
        raise ValueError(
            f"Invalid value for `{name}`: expected a sorted list of positive ints, "
            f"received {choices!r}.") from None
    if not choices:
        raise ValueError(
            f"Invalid value for `{name}`: expected a non-empty sorted list of positive ints, "
            f"received [].")
    if min(choices) <= 0:
        raise ValueError(
            f"Invalid value for `{name}`: expected positive widths, received {choices}.")
    if any(a >= b for a, b in zip(choices, choices[1:])):
        raise ValueError(
            f"Invalid value for `{name}`: expected strictly increasing widths, "
            f"received {choices}.")
    return choices


def _check_temperature(temperature):
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not (
            temperature > 0):
        raise ValueError(
            f"Invalid value for `temperature`: expected a number > 0, received {temperature!r}.")
    return float(temperature)


class ArchitectureMixin:
    """What every searchable layer shares: logits, temperature, gate, probabilities.

    `arch_gate` (0 or 1, not trained) lets a callback freeze the architecture without retracing
    the training step: gradients reach `alpha` multiplied by it.
    """

    def _init_arch(self, num_options, temperature, gumbel):
        self.temperature_init = _check_temperature(temperature)
        self.gumbel = bool(gumbel)
        self.num_options = num_options

    def _build_arch(self, prefix=""):
        # Distinct names keep a wrapper's weights apart from its block's in HDF5 files.
        self.alpha = self.add_weight(
            name=prefix + "alpha", shape=(self.num_options,), initializer="zeros", trainable=True)
        self.temperature = self.add_weight(
            name=prefix + "temperature", shape=(),
            initializer=keras.initializers.Constant(self.temperature_init), trainable=False)
        self.arch_gate = self.add_weight(
            name=prefix + "arch_gate", shape=(), initializer="ones", trainable=False)

    @property
    def arch_weights(self):
        """The architecture logits, as a list (what an optimizer trains)."""
        return [self.alpha]

    def _gated_alpha(self):
        frozen = tf.stop_gradient(self.alpha)
        return frozen + self.arch_gate * (self.alpha - frozen)

    def probabilities(self, training=False):
        """Softmax of the logits over the temperature (with Gumbel noise when training)."""
        logits = self._gated_alpha()
        if training and self.gumbel:
            uniform = tf.random.uniform(tf.shape(logits), 1e-6, 1.0 - 1e-6)
            logits = logits - tf.math.log(-tf.math.log(uniform))
        return tf.nn.softmax(logits / self.temperature)

    def _argmax(self):
        # Ties go to the later option (wider, or keep): without evidence, keep capacity.
        logits = keras.backend.get_value(self.alpha)
        return len(logits) - 1 - int(np.argmax(logits[::-1]))

    def _arch_config(self):
        return {"temperature": self.temperature_init, "gumbel": self.gumbel}


class WidthSearchMixin(ArchitectureMixin):
    """Channel masking over `choices` widths of one kernel of the widest choice."""

    def _init_width(self, choices, temperature, gumbel):
        self.choices = _check_choices(choices)
        self._init_arch(len(self.choices), temperature, gumbel)
        self.max_width = self.choices[-1]
        # masks[k, c] = 1 if channel c is kept by choice k.
        self._masks = (np.arange(self.max_width)[None, :] <
                       np.array(self.choices)[:, None]).astype("float32")

    def expected_width(self):
        """Expected number of output channels, sum_k p_k c_k (a differentiable scalar)."""
        return tf.tensordot(self.probabilities(), tf.constant(self.choices, tf.float32), 1)

    def choice(self):
        """The width the layer would choose: the argmax of its logits."""
        return self.choices[self._argmax()]

    def mask_vector(self, training=False):
        """The soft channel mask, sum_k p_k * 1[c < c_k], one value per channel."""
        return tf.tensordot(self.probabilities(training), tf.constant(self._masks), 1)

    def _mask(self, outputs, training):
        mask = tf.cast(self.mask_vector(training), outputs.dtype)
        return with_channel_mask(outputs * mask, mask)


def _activation_name(activation):
    if activation is None:
        return None
    if isinstance(activation, str):
        keras.activations.get(activation)  # Raises on an unknown name.
        return activation
    raise ValueError(
        f"Invalid value for `activation`: expected a name such as 'relu' or None, "
        f"received {activation!r}.")


def _pair(value, name):
    if isinstance(value, (int, np.integer)):
        value = (int(value), int(value))
    value = tuple(int(v) for v in value)
    if len(value) != 2 or min(value) <= 0:
        raise ValueError(
            f"Invalid value for `{name}`: expected a positive int or a pair of them, "
            f"received {value!r}.")
    return value


def _padding(padding):
    if padding not in ("same", "valid"):
        raise ValueError(
            f"Invalid value for `padding`: expected 'same' or 'valid', received {padding!r}.")
    return padding


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


def _check_repeats(repeats):
    if isinstance(repeats, bool) or not isinstance(repeats, (int, np.integer)) or repeats < 1:
        raise ValueError(
            f"Invalid value for `repeats`: expected a positive int, received {repeats!r}.")
    return int(repeats)


def _check_expand_choices(expand_choices, repeats):
    """One list of widths per block, from one list for all or a list of `repeats` lists."""
    if isinstance(expand_choices, (list, tuple)) and expand_choices and all(
            isinstance(c, (list, tuple)) for c in expand_choices):
        if len(expand_choices) != repeats:
            raise ValueError(
                f"Invalid value for `expand_choices`: expected one list of widths or {repeats} "
                f"lists (one per block), received {len(expand_choices)} lists.")
        return [_check_choices(c, "expand_choices") for c in expand_choices]
    choices = _check_choices(expand_choices, "expand_choices")
    return [list(choices) for _ in range(repeats)]


@keras.utils.register_keras_serializable(package="mnas")
class DepthDecision(ArchitectureMixin, keras.layers.Layer):
    """Whether a residual block is kept: two logits (skip, keep) that its owner applies.

    A skipped residual block is the identity, so the owner computes y = x + p_keep * F(x),
    the mixture `SearchableSkip` computes for such a block; like it, this exposes
    `keep_probability()` and `choice()` (True if kept). `SearchableInvertedBottleneck` makes one
    per residual block; it is not meant to be called on its own.

    Args:
        temperature: Softmax temperature of the two logits, > 0. Defaults to `1.0`.
        gumbel: Add Gumbel noise to the logits while training. Defaults to `False`.
    """

    OPTIONS = ("skip", "keep")

    def __init__(self, temperature=1.0, gumbel=False, **kwargs):
        super().__init__(**kwargs)
        self._init_arch(len(self.OPTIONS), temperature, gumbel)

    def build(self, input_shape=None):
        self._build_arch(prefix="depth_")
        super().build(input_shape)

    def call(self, inputs):
        return inputs

    def keep_probability(self, training=False):
        """Probability that the block is kept (a differentiable scalar)."""
        return self.probabilities(training)[1]

    def choice(self):
        """True if the block would be kept: the argmax of the logits."""
        return self._argmax() == 1

    def get_config(self):
        return {**super().get_config(), **self._arch_config()}


@keras.utils.register_keras_serializable(package="mnas")
class SearchableInvertedBottleneck(WidthSearchMixin, keras.layers.Layer):
    """A MobileNetV2 stage of inverted residual blocks with searched widths and depth.

    One row (t, c, n, s) of MobileNetV2's table 2: `repeats` blocks, each a 1x1 expansion conv
    + BN + activation, a depthwise conv + BN + activation, and a linear 1x1 projection conv +
    BN. The first block has the stage's stride and no residual (its input width is another
    layer's decision, and in MobileNetV2 every stage changes the width); the others have
    stride 1 and a residual, y = x + p_keep * F(x), and may be skipped (the identity).

    Searched: each block's expansion width (a `SearchableConv2D` sub-layer, `expand_layers`),
    and the stage's output width (this layer's logits), shared by the projections of all its
    blocks. Sharing it is what keeps every residual add between tensors of one width, so the
    derived model is plain MobileNetV2 blocks whose residuals are single ADD operators, with
    no padding or slicing. Each residual block's keep/skip is a `DepthDecision` sub-layer
    (`depth_layers`). `mnas.searchable_layers` finds the sub-layers too.

    The expansion mask is applied again after the depthwise batch norm: its shift would
    otherwise make the dropped channels non-zero, and the derived model has no such channels.

    Args:
        choices: Candidate output (projection) widths of the stage, strictly increasing.
        expand_choices: Candidate expansion widths: one list for every block, or a list of
            `repeats` lists (MobileNetV2 expands the first block's input, of the previous
            stage's width, and the others' input, of this stage's width, by the same factor).
        strides: Stride of the first block's depthwise conv, an int or a pair. Defaults to `1`.
        repeats: Number of blocks. Defaults to `1`.
        kernel_size: Depthwise kernel, an int or a pair. Defaults to `3`.
        activation: Activation after the expansion and depthwise batch norms. Defaults to
            `"relu6"` (MobileNetV2's; int8 TFLite fuses it into the conv as it fuses ReLU, and
            its fixed range suits 8-bit activations).
        skippable: Search whether each residual block is kept. Defaults to `True`.
        temperature: Softmax temperature of all its logits, > 0. Defaults to `1.0`.
        gumbel: Add Gumbel noise to the logits while training. Defaults to `False`.
        kernel_regularizer: Regularizer of all its kernels. Defaults to None.

    Example:

    >>> stage = SearchableInvertedBottleneck([8, 16, 24], [[32, 64, 96], [48, 96, 144]],
    ...                                      strides=2, repeats=2, name="stage2")
    >>> stage(tf.zeros((1, 10, 10, 16))).shape
    TensorShape([1, 5, 5, 24])
    >>> [layer.name for layer in searchable_layers(stage)]
    ['stage2', 'stage2_expand0', 'stage2_keep1', 'stage2_expand1']
    """

    def __init__(self, choices, expand_choices, strides=1, repeats=1, kernel_size=3,
                 activation="relu6", skippable=True, temperature=1.0, gumbel=False,
                 kernel_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        self._init_width(choices, temperature, gumbel)
        self.repeats = _check_repeats(repeats)
        self.expand_choices = _check_expand_choices(expand_choices, self.repeats)
        self.strides = _pair(strides, "strides")
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.activation = _activation_name(activation)
        self.skippable = bool(skippable)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.expand_layers = [
            SearchableConv2D(c, 1, activation=self.activation, temperature=temperature,
                             gumbel=gumbel, kernel_regularizer=self.kernel_regularizer,
                             name=f"{self.name}_expand{i}")
            for i, c in enumerate(self.expand_choices)]
        self.depthwise = [
            keras.layers.DepthwiseConv2D(
                self.kernel_size, self.strides if i == 0 else 1, "same", use_bias=False,
                depthwise_regularizer=self.kernel_regularizer, name=f"depthwise{i}")
            for i in range(self.repeats)]
        self.bn_depthwise = [batch_norm(f"bn_depthwise{i}")
                             for i in range(self.repeats)]
        self.project = [
            keras.layers.Conv2D(self.max_width, 1, use_bias=False,
                                kernel_regularizer=self.kernel_regularizer, name=f"project{i}")
            for i in range(self.repeats)]
        self.bn_project = [batch_norm(f"bn_project{i}")
                           for i in range(self.repeats)]
        # depth_layers[i - 1] decides block i (block 0 changes the shape: always kept).
        self.depth_layers = [
            DepthDecision(temperature, gumbel, name=f"{self.name}_keep{i}")
            for i in range(1, self.repeats)] if self.skippable else []

    @property
    def decisions(self):
        """The sub-layers that hold logits, block by block (keep/skip, then expansion)."""
        found = []
        for i, expand in enumerate(self.expand_layers):
            if i and self.skippable:
                found.append(self.depth_layers[i - 1])
            found.append(expand)
        return found

    def block_shapes(self, input_shape):
        """(input, expanded, depthwise output) shapes of each block at the widest choices."""
        shape = tf.TensorShape(input_shape)
        shapes = []
        for i in range(self.repeats):
            expanded = shape[:-1].concatenate([self.expand_layers[i].max_width])
            mid = tf.TensorShape(self.depthwise[i].compute_output_shape(expanded))
            shapes.append((shape, expanded, mid))
            shape = mid[:-1].concatenate([self.max_width])
        return shapes

    def build(self, input_shape):
        input_shape = _nhwc(self, input_shape)
        self._build_arch()
        for i, (shape, expanded, mid) in enumerate(self.block_shapes(input_shape)):
            self.expand_layers[i].build(shape)
            self.depthwise[i].build(expanded)
            self.bn_depthwise[i].build(mid)
            self.project[i].build(mid)
            self.bn_project[i].build(mid[:-1].concatenate([self.max_width]))
        for layer in self.depth_layers:
            layer.build()
        super().build(input_shape)

    def call(self, inputs, training=None):
        act = keras.activations.get(self.activation) if self.activation else tf.identity
        # One sample per call: with Gumbel noise, every block must see the same stage width.
        mask = tf.cast(self.mask_vector(training), inputs.dtype)
        x = inputs
        for i, expand in enumerate(self.expand_layers):
            expand_mask = tf.cast(expand.mask_vector(training), x.dtype)
            h = act(expand.bn(expand.conv(x), training=training)) * expand_mask
            h = act(self.bn_depthwise[i](self.depthwise[i](h), training=training)) * expand_mask
            h = self.bn_project[i](self.project[i](h), training=training) * mask
            if i == 0:
                x = h
            elif self.skippable:
                x = x + self.depth_layers[i - 1].keep_probability(training) * h
            else:
                x = x + h
        return with_channel_mask(x, mask)

    def compute_output_shape(self, input_shape):
        return self.block_shapes(input_shape)[-1][2][:-1].concatenate([self.max_width])

    def get_config(self):
        return {
            **super().get_config(), **self._arch_config(),
            "choices": self.choices, "expand_choices": self.expand_choices,
            "strides": self.strides, "repeats": self.repeats, "kernel_size": self.kernel_size,
            "activation": self.activation, "skippable": self.skippable,
            "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer)
            if self.kernel_regularizer else None,
        }


SEARCHABLE_LAYERS = (SearchableConv2D, SearchableDepthwiseSeparable, SearchableDense,
                     SearchableSkip, SearchableInvertedBottleneck, DepthDecision)


def searchable_layers(model):
    """All searchable layers of `model`, nested models and wrapped blocks included."""
    found = []

    def visit(layer):
        if isinstance(layer, ArchitectureMixin):
            found.append(layer)
        children = getattr(layer, "layers", None) or []
        if isinstance(layer, keras.layers.Wrapper):
            children = [layer.layer]
        if isinstance(layer, SearchableInvertedBottleneck):
            children = layer.decisions
        for child in children:
            visit(child)

    visit(model)
    return found
