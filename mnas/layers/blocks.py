"""MobileNetV2 stages with searched widths and depth, and the search over a model's
searchable layers."""

import numpy as np
import tensorflow as tf
import tf_keras as keras

from mnas.layers.base import (
    _activation_name, ArchitectureMixin, batch_norm, _check_choices, _nhwc, _pair,
    WidthSearchMixin, with_channel_mask)
from mnas.layers.searchable import (
    SearchableConv2D, SearchableDense, SearchableDepthwiseSeparable, SearchableSkip)


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
