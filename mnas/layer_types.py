"""The layer types mnas knows, each registered once (see `mnas.registry`).

Searchable layers carry a cost rule and their derivation; plain Keras layers a cost rule, the
TFLite lowering of the exact estimator, the activations that quantize, and a small example
model on which the closed forms, the estimator, the converter and the interpreter must agree
(`tests/test_registry.py`). A layer type that cannot be supported by all of them is not
registered at all: Reshape (its dynamic batch size becomes SHAPE, STRIDED_SLICE and PACK
operators unless a Flatten follows), Multiply and GlobalMaxPooling2D.
"""

import tf_keras as keras

from mnas import arch, cost_rules, layers
from mnas.hardware import keras_graph as lowering
from mnas.registry import LayerType, register_layer_type

L = keras.layers
# Values of a conv or dense layer's `activation` argument that quantize and export (ReLU6 as a
# separate ReLU(6.0) layer: quantization-aware training does not wrap it as an argument).
WEIGHTED_ACTIVATIONS = ("linear", "relu", "softmax", "sigmoid")


def _stack():
    """Padding, conv, depthwise, batch norms, activations, pooling, flatten, dense, softmax."""
    inputs = keras.Input((12, 12, 2))
    x = L.ZeroPadding2D(1)(inputs)
    x = L.Conv2D(8, 3, strides=2, use_bias=False)(x)
    x = L.ReLU()(L.BatchNormalization()(x))
    x = L.DepthwiseConv2D(3, padding="same", use_bias=False)(x)
    x = L.Activation("relu")(L.BatchNormalization()(x))
    x = L.AveragePooling2D(2)(L.MaxPooling2D(1)(x))
    x = L.Dense(6)(L.Flatten()(L.Dropout(0.1)(x)))
    return keras.Model(inputs, L.Softmax()(x), name="stack")


def _branches():
    """A residual add, a concatenation, global pooling, dense with softmax."""
    inputs = keras.Input((8, 8, 4))
    a = L.Conv2D(8, 1, activation="relu")(inputs)
    b = L.BatchNormalization()(L.DepthwiseConv2D(3, padding="same", use_bias=False)(a))
    x = L.ReLU(6.0)(L.Add()([a, b]))
    x = L.GlobalAveragePooling2D()(L.Concatenate()([x, a]))
    return keras.Model(inputs, L.Dense(3, activation="softmax")(x), name="branches")


def _sigmoid():
    """Dense layers with ReLU and sigmoid; sigmoid, linear and softmax Activation layers."""
    inputs = keras.Input((24,))
    x = L.Activation("sigmoid")(L.Dense(16, activation="relu")(inputs))
    x = L.Dense(4, activation="sigmoid")(L.Activation("linear")(x))
    return keras.Model(inputs, L.Activation("softmax")(x), name="sigmoid")


_PLAIN = [
    (L.Conv2D, cost_rules._plain_conv, lowering.lower_conv, WEIGHTED_ACTIVATIONS, _stack),
    (L.DepthwiseConv2D, cost_rules._plain_conv, lowering.lower_depthwise_conv,
     WEIGHTED_ACTIVATIONS, _stack),
    (L.Dense, cost_rules._plain_dense, lowering.lower_dense, WEIGHTED_ACTIVATIONS, _sigmoid),
    (L.BatchNormalization, cost_rules._passthrough, lowering.lower_batch_norm, (), _stack),
    (L.ReLU, cost_rules._passthrough, lowering.lower_relu, (), _branches),
    (L.Activation, cost_rules._activation, lowering.lower_activation,
     WEIGHTED_ACTIVATIONS + ("relu6",), _sigmoid),
    (L.Dropout, cost_rules._passthrough, lowering.lower_identity, (), _stack),
    (L.AveragePooling2D, cost_rules._pooling, lowering.lower_average_pool, (), _stack),
    (L.MaxPooling2D, cost_rules._pooling, lowering.lower_max_pool, (), _stack),
    (L.GlobalAveragePooling2D, cost_rules._global_pooling, lowering.lower_global_average_pool, (),
     _branches),
    (L.Add, cost_rules._elementwise, lowering.lower_add, (), _branches),
    (L.Concatenate, cost_rules._concatenate, lowering.lower_concatenate, (), _branches),
    (L.Flatten, cost_rules._reshape, lowering.lower_reshape, (), _stack),
    (L.ZeroPadding2D, cost_rules._zero_padding, lowering.lower_zero_padding, (), _stack),
    (L.Softmax, cost_rules._softmax, lowering.lower_softmax, (), _stack),
]
for cls, cost, lower, activations, example in _PLAIN:
    register_layer_type(LayerType(cls, cost, lower, activations, example=example))

# Derivation of the searchable layers (`mnas.arch.derive`): spec entries at the argmax, and
# the supernet weights in the order `mnas.arch.build` makes the entries' plain layers.

def derive_skip(layer):
    if layer.choice():
        return arch._entry(layer.layer)
    if layer.downsamples:
        return [{"type": "pool", "pool_size": list(layer.pool_size)}]
    return []


def derive_conv(layer):
    return [{"type": "conv", "filters": layer.choice(), "kernel_size": list(layer.kernel_size),
             "strides": list(layer.strides), "padding": layer.padding,
             "activation": layer.activation, "source": layer.name}]


def derive_ds(layer):
    return [{"type": "ds", "filters": layer.choice(), "strides": list(layer.strides),
             "kernel_size": list(layer.kernel_size), "activation": layer.activation,
             "source": layer.name}]


def derive_ib(layer):
    # One entry per kept block; every block has the stage's (shared) output width.
    return [{"type": "ib", "expand": expand.choice(), "filters": layer.choice(),
             "strides": list(layer.strides) if i == 0 else [1, 1],
             "kernel_size": list(layer.kernel_size), "activation": layer.activation,
             "residual": i > 0, "source": layer.name, "block": i}
            for i, expand in enumerate(layer.expand_layers)
            if i == 0 or not layer.skippable or layer.depth_layers[i - 1].choice()]


def derive_dense(layer):
    return [{"type": "dense", "units": layer.choice(), "activation": layer.activation,
             "source": layer.name}]


def ib_weights(layer, entry):
    i = entry.get("block", 0)
    expand = layer.expand_layers[i]
    return [expand.conv, expand.bn, layer.depthwise[i], layer.bn_depthwise[i], layer.project[i],
            layer.bn_project[i]]


def conv_weights(layer, entry):
    return [layer.conv, layer.bn]


def ds_weights(layer, entry):
    return [layer.depthwise, layer.bn_depthwise, layer.pointwise, layer.bn_pointwise]


def dense_weights(layer, entry):
    return [layer.dense]


_SEARCHABLE = [
    (layers.SearchableConv2D, cost_rules._searchable_conv, derive_conv, conv_weights),
    (layers.SearchableDepthwiseSeparable, cost_rules._searchable_ds, derive_ds,
     ds_weights),
    (layers.SearchableDense, cost_rules._searchable_dense, derive_dense, dense_weights),
    (layers.SearchableSkip, cost_rules._searchable_skip, derive_skip, None),
    (layers.SearchableInvertedBottleneck, cost_rules._searchable_ib, derive_ib,
     ib_weights),
]
for cls, cost, derive, source_weights in _SEARCHABLE:
    register_layer_type(LayerType(cls, cost, derive=derive, source_weights=source_weights))
