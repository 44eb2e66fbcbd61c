"""The cost rules of the layer types mnas knows (see `mnas.costs` and `mnas.layer_types`).

A rule is `rule(layer, inputs, out_shape) -> (out_width, [Node, ...])`: the width of the
layer's output and the costs of the TFLite operators it becomes, from its inputs' `Info`s
(static shape, expected channels) and its static output shape without the batch axis.
"""

import numpy as np
import tensorflow as tf
import tf_keras as keras

from mnas import errors
from mnas.costs import (
    FLASH_PER_OPERATOR, FLASH_PER_TENSOR, PERSISTENT_PER_CHANNEL, PERSISTENT_PER_OPERATOR,
    PERSISTENT_PER_TENSOR, QUANT_PARAM_BYTES, Info, Node, _probes, _straight_through,
    argmax_one_hot, layer_costs)


def _probabilities(layer):
    """A decision's probabilities as the costs see them."""
    p = layer.probabilities()
    if not _straight_through.get():
        return p
    hard = argmax_one_hot(layer) + p - tf.stop_gradient(p)
    probes = _probes.get()
    return hard if probes is None else hard + probes[id(layer)]


def _expected_width(layer):
    return tf.tensordot(_probabilities(layer), tf.constant(layer.choices, tf.float32), 1)


def _tensor_flash(params):
    return params + FLASH_PER_TENSOR


def _layer_node(in_bytes, out_info, ops, weights=0.0, channels=0.0, tensors=1):
    """A TFLite operator with `weights` int8 weights and `channels` per-channel biases."""
    flash = FLASH_PER_OPERATOR + tensors * FLASH_PER_TENSOR
    persistent = PERSISTENT_PER_OPERATOR + tensors * PERSISTENT_PER_TENSOR
    if channels is not None and not (isinstance(channels, float) and channels == 0.0):
        # Weights, bias (int32) and their per-channel quantization parameters.
        flash += weights + 4 * channels + 2 * QUANT_PARAM_BYTES * channels + 2 * FLASH_PER_TENSOR
        persistent += PERSISTENT_PER_CHANNEL * channels + 2 * PERSISTENT_PER_TENSOR
    return Node(ops=ops, flash=flash, sram=in_bytes + out_info.bytes, persistent=persistent)


def _spatial(shape):
    return float(np.prod(shape[:-1], dtype=np.int64))


def _conv_rule(kernel_size, groups_depthwise=False):
    def node(in_info, out_shape, out_width):
        out = Info(out_shape, out_width)
        kh, kw = kernel_size
        if groups_depthwise:
            macs = _spatial(out_shape) * kh * kw * in_info.width
            weights = kh * kw * in_info.width
        else:
            macs = _spatial(out_shape) * kh * kw * in_info.width * out_width
            weights = kh * kw * in_info.width * out_width
        return _layer_node(in_info.bytes, out, 2 * macs, weights, out_width)
    return node


def _searchable_conv(layer, inputs, out_shape):
    width = _expected_width(layer)
    return width, [_conv_rule(layer.kernel_size)(inputs[0], out_shape, width)]


def _searchable_ds(layer, inputs, out_shape):
    (x,) = inputs
    mid_shape = tuple(out_shape[:-1]) + (x.shape[-1],)
    depthwise = _conv_rule(layer.kernel_size, groups_depthwise=True)(x, mid_shape, x.width)
    width = _expected_width(layer)
    pointwise = _conv_rule((1, 1))(Info(mid_shape, x.width), out_shape, width)
    return width, [depthwise, pointwise]


def _searchable_dense(layer, inputs, out_shape):
    width = _expected_width(layer)
    (x,) = inputs
    out = Info(out_shape, width)
    return width, [_layer_node(x.bytes, out, 2 * x.width * width, x.width * width, width)]


def _searchable_skip(layer, inputs, out_shape):
    (x,) = inputs
    p_skip, p_keep = tf.unstack(_probabilities(layer))
    width, block_nodes = layer_costs(layer.layer, inputs, out_shape)
    nodes = [n.scaled(p_keep) for n in block_nodes]
    if layer.downsamples:
        pooled = Info(tuple(out_shape[:-1]) + (x.shape[-1],), x.width)
        pool = _pooling_node(x, pooled, layer.pool_size)
        nodes.append(pool.scaled(p_skip))
    return p_skip * x.width + p_keep * width, nodes


def _searchable_ib(layer, inputs, out_shape):
    (x,) = inputs
    width = _expected_width(layer)
    nodes = []
    for i, (in_shape, expanded, mid) in enumerate(layer.block_shapes((None,) + x.shape)):
        in_shape, expanded, mid = (tuple(s.as_list()[1:]) for s in (in_shape, expanded, mid))
        block_in = x if i == 0 else Info(in_shape, width)
        e = _expected_width(layer.expand_layers[i])
        expand = _conv_rule((1, 1))(block_in, expanded, e)
        depthwise = _conv_rule(layer.kernel_size, groups_depthwise=True)(
            Info(expanded, e), mid, e)
        out = mid[:-1] + (layer.max_width,)
        project = _conv_rule((1, 1))(Info(mid, e), out, width)
        if i == 0:
            nodes += [expand, depthwise, project]
            continue
        # The residual input stays in the arena until the ADD reads it.
        for node in (depthwise, project):
            node.sram = node.sram + block_in.bytes
        y = Info(out, width)
        add = _layer_node(2 * block_in.bytes, y, y.bytes, channels=0.0)
        keep = _probabilities(layer.depth_layers[i - 1])[1] if layer.skippable else 1.0
        nodes += [n.scaled(keep) for n in (expand, depthwise, project, add)]
    return width, nodes


def _pooling_node(x, out, pool_size):
    return _layer_node(x.bytes, out, out.bytes * pool_size[0] * pool_size[1], channels=0.0)


def _plain_conv(layer, inputs, out_shape):
    (x,) = inputs
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        width = x.width * layer.depth_multiplier
        node = _conv_rule(layer.kernel_size, groups_depthwise=layer.depth_multiplier == 1)
        return width, _with_activation(layer, [node(x, out_shape, width)],
                                       Info(out_shape, width))
    if layer.groups != 1:
        raise errors.UnsupportedLayerError(
            f"Layer {layer.name!r} (Conv2D with groups={layer.groups}) has no cost rule: "
            f"TFLite Micro runs grouped convolutions poorly; use groups=1 or a depthwise conv.")
    width = float(layer.filters)
    return width, _with_activation(layer, [_conv_rule(layer.kernel_size)(x, out_shape, width)],
                                   Info(out_shape, width))


def _plain_dense(layer, inputs, out_shape):
    (x,) = inputs
    width = float(layer.units)
    out = Info(out_shape, width)
    return width, _with_activation(
        layer, [_layer_node(x.bytes, out, 2 * x.width * width, x.width * width, width)], out)


def _with_activation(layer, nodes, out):
    """A layer's nodes, and a node of its own for a softmax or sigmoid activation."""
    if getattr(layer, "activation", None) in (keras.activations.softmax,
                                               keras.activations.sigmoid):
        nodes.append(_layer_node(out.bytes, out, out.bytes, channels=0.0))
    return nodes


def _passthrough(layer, inputs, out_shape):
    return inputs[0].width, []


def _pooling(layer, inputs, out_shape):
    (x,) = inputs
    out = Info(out_shape, x.width)
    return x.width, [_pooling_node(x, out, layer.pool_size)]


def _global_pooling(layer, inputs, out_shape):
    (x,) = inputs
    out = Info(tuple(out_shape), x.width)
    return x.width, [_layer_node(x.bytes, out, x.bytes, channels=0.0)]


def _elementwise(layer, inputs, out_shape):
    widths = [x.width for x in inputs]
    width = widths[0]
    for w in widths[1:]:
        width = tf.maximum(width, w)
    out = Info(out_shape, width)
    in_bytes = sum(x.bytes for x in inputs)
    return width, [_layer_node(in_bytes, out, out.bytes, channels=0.0, tensors=1)]


def _concatenate(layer, inputs, out_shape):
    width = sum(x.width for x in inputs)
    out = Info(out_shape, width)
    return width, [_layer_node(sum(x.bytes for x in inputs), out, 0.0, channels=0.0)]


def _reshape(layer, inputs, out_shape):
    (x,) = inputs
    # The channels of the flattened tensor are all of the input's elements.
    width = x.bytes / _spatial(out_shape) if len(out_shape) > 1 else x.bytes
    out = Info(out_shape, width)
    return width, [_layer_node(x.bytes, out, 0.0, channels=0.0)]


def _softmax(layer, inputs, out_shape):
    (x,) = inputs
    out = Info(out_shape, x.width)
    return x.width, [_layer_node(x.bytes, out, out.bytes, channels=0.0)]


def _activation(layer, inputs, out_shape):
    if getattr(layer, "activation", None) in (keras.activations.softmax,
                                               keras.activations.sigmoid):
        return _softmax(layer, inputs, out_shape)
    return _passthrough(layer, inputs, out_shape)


def _zero_padding(layer, inputs, out_shape):
    (x,) = inputs
    out = Info(out_shape, x.width)
    # PAD, and its paddings constant.
    return x.width, [_layer_node(x.bytes, out, 0.0, channels=0.0, tensors=2)]
