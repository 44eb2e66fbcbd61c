"""Architecture specs: derive the argmax architecture of a supernet, build a plain Keras model.

`derive(supernet)` walks a chain-shaped supernet (Sequential, or functional with one path) and
records each searchable layer's argmax choice in an `ArchSpec`, a small JSON-serialisable
description; a skipped block disappears (or becomes its average pooling where it downsampled).
`build(spec)` returns a plain Keras model with exactly those widths and no searchable layers,
optionally inheriting the supernet's weights for the kept channels (masking keeps the first
channels, so the kept weights are the leading slice of each kernel).

Example:

>>> from mnas import arch
>>> spec = arch.get_architecture("micronet_kws_s")
>>> model = arch.build(spec)
>>> [layer.filters for layer in model.layers if type(layer).__name__ == "Conv2D"]
[84, 112, 84, 84, 84, 196]
"""

import copy
import dataclasses
import json
import os

import tf_keras as keras

from mnas import errors, registry
from mnas import layers as mlayers


@dataclasses.dataclass
class ArchSpec:
    """A plain architecture: a chain of layer entries on an input shape.

    Entries are dicts with a `type`:
    - `conv`: `filters`, `kernel_size`, `strides`, `padding`, `activation` (Conv2D + BN + act);
    - `ds`: `filters`, `strides`, `kernel_size`, `activation` (depthwise + BN + act, pointwise +
      BN + act);
    - `ib`: `expand` (width of the 1x1 expansion conv, or null for none), `filters`, `strides`,
      `kernel_size`, `activation`, `residual` (MobileNetV2 inverted residual block: expansion
      conv + BN + act, depthwise + BN + act, linear projection conv + BN, and an ADD of the
      block's input when `residual`, which needs stride 1 and `filters` input channels);
    - `dense`: `units`, `activation`;
    - `pool`: `pool_size` (average pooling, the skip path of a skipped downsampling block);
    - `keras`: `config`, a serialized plain Keras layer.
    An entry may name its `source`, the supernet layer its weights can be inherited from (and,
    for `ib`, the `block` of that stage).

    Attributes:
        input_shape: Input shape without the batch axis.
        layers: The layer entries.
        backbone: Backbone family, for latency models (`ds_cnn`, `mobilenet_v2`, ...).
        name: Model name.
    """

    input_shape: list
    layers: list
    backbone: str = "ds_cnn"
    name: str = "mnas_model"

    def __post_init__(self):
        # JSON form throughout, so a spec equals itself after a save/load round trip.
        self.input_shape = list(self.input_shape)
        self.layers = json.loads(json.dumps(self.layers))

    def to_json(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data):
        """Builds a spec from `to_json()` output, checking its fields."""
        if not isinstance(data, dict) or not {"input_shape", "layers"} <= set(data):
            raise ValueError(
                f"Invalid architecture spec: expected a JSON object with `input_shape` and "
                f"`layers`, received {str(data)[:200]!r}.")
        unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(
                f"Invalid architecture spec: unknown fields {sorted(unknown)}, expected "
                f"{[f.name for f in dataclasses.fields(cls)]}.")
        for entry in data["layers"]:
            if not isinstance(entry, dict) or entry.get("type") not in _BUILDERS:
                raise ValueError(
                    f"Invalid layer entry in architecture spec: expected a `type` in "
                    f"{sorted(_BUILDERS)}, received {entry!r}.")
        return cls(**data)

    def save(self, path):
        """Writes the spec as JSON, atomically."""
        tmp = f"{path}.tmp"
        with open(tmp, "w") as f:
            json.dump(self.to_json(), f, indent=2)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path):
        """Reads a spec written by `save`."""
        try:
            with open(path) as f:
                data = json.load(f)
        except OSError as e:
            raise ValueError(f"Cannot read architecture spec {path!r}: {e.strerror}.") from None
        except json.JSONDecodeError as e:
            raise ValueError(
                f"Invalid architecture spec {path!r}: not JSON ({e.msg} at line {e.lineno})."
            ) from None
        return cls.from_json(data)

    def widths(self):
        """The width of each conv, ds, ib (its output) and dense entry, in order."""
        return [e.get("filters", e.get("units")) for e in self.layers
                if e["type"] in ("conv", "ds", "ib", "dense")]


def _chain(model):
    """The layers of a chain-shaped model in order (InputLayer excluded)."""
    if not isinstance(model, keras.Model) or len(model.inputs) != 1 or len(model.outputs) != 1:
        raise errors.UnsupportedLayerError(
            f"Invalid model for `derive`: expected a Keras model with one input and one output, "
            f"received {getattr(model, 'name', model)!r}.")
    chain = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    previous = model.inputs[0]
    for layer in chain:
        inputs = [n.input_tensors for n in layer.inbound_nodes]
        if not any(t is previous for t in inputs):
            raise errors.UnsupportedLayerError(
                f"Invalid model for `derive`: layer {layer.name!r} does not follow the layer "
                f"before it; `derive` handles chains of layers (branches inside a layer are "
                f"fine).")
        previous = layer.inbound_nodes[[t is previous for t in inputs].index(True)].output_tensors
    return chain


def _entry(layer):
    """The spec entries of one supernet layer at its argmax: its record's, or the layer."""
    record = registry.get(layer)
    if record is not None and record.derive is not None:
        return record.derive(layer)
    if isinstance(layer, (mlayers.ArchitectureMixin, keras.Model)):
        raise errors.UnsupportedLayerError(
            f"Layer {layer.name!r} of type {type(layer).__name__} cannot be derived: use a chain "
            f"of mnas searchable layers and plain Keras layers.")
    return [{"type": "keras", "config": keras.layers.serialize(layer), "source": layer.name}]


def derive(model, name=None, backbone=None):
    """The architecture a supernet would choose: each searchable layer's argmax.

    Args:
        model: A chain-shaped Keras model of mnas searchable layers and plain layers.
        name: Name of the derived model. Defaults to the supernet's name + `_derived`.
        backbone: Backbone family for latency models. Defaults to the supernet's
            `mnas_backbone` attribute, if any, else `"ds_cnn"`.

    Returns:
        An `ArchSpec`.

    Raises:
        UnsupportedLayerError: The model is not a chain, or holds a layer that cannot be derived.
    """
    entries = [e for layer in _chain(model) for e in _entry(layer)]
    return ArchSpec(
        input_shape=list(model.input_shape[1:]), layers=entries,
        backbone=backbone or getattr(model, "mnas_backbone", "ds_cnn"),
        name=name or f"{model.name}_derived")


def _act(entry):
    activation = entry.get("activation", "relu")
    if activation == "relu6":
        # A ReLU layer, which `mnas.estimate` and QAT know, rather than Activation("relu6").
        return [keras.layers.ReLU(6.0)]
    return [keras.layers.Activation(activation)] if activation else []


def _conv_layers(entry):
    return ([keras.layers.Conv2D(entry["filters"], tuple(entry["kernel_size"]),
                                 tuple(entry["strides"]), entry.get("padding", "same"),
                                 use_bias=False),
             mlayers.batch_norm()] + _act(entry))


def _ds_layers(entry):
    return ([keras.layers.DepthwiseConv2D(tuple(entry.get("kernel_size", (3, 3))),
                                          tuple(entry["strides"]), "same", use_bias=False),
             mlayers.batch_norm()] + _act(entry) +
            [keras.layers.Conv2D(entry["filters"], 1, use_bias=False),
             mlayers.batch_norm()] + _act(entry))


def _ib_layers(entry):
    expand = ([keras.layers.Conv2D(entry["expand"], 1, use_bias=False),
               mlayers.batch_norm()] + _act(entry)) if entry.get("expand") else []
    return (expand +
            [keras.layers.DepthwiseConv2D(tuple(entry.get("kernel_size", (3, 3))),
                                          tuple(entry["strides"]), "same", use_bias=False),
             mlayers.batch_norm()] + _act(entry) +
            [keras.layers.Conv2D(entry["filters"], 1, use_bias=False),
             mlayers.batch_norm()] +
            ([keras.layers.Add()] if entry.get("residual") else []))


def _dense_layers(entry):
    return [keras.layers.Dense(entry["units"], activation=entry.get("activation"))]


def _pool_layers(entry):
    size = tuple(entry["pool_size"])
    return [keras.layers.AveragePooling2D(size, size, "same")]


def _keras_layers(entry):
    return [keras.layers.deserialize(copy.deepcopy(entry["config"]))]


_BUILDERS = {"conv": _conv_layers, "ds": _ds_layers, "ib": _ib_layers, "dense": _dense_layers,
             "pool": _pool_layers, "keras": _keras_layers}


def _apply(entry, entry_layers, x):
    """Calls an entry's layers on `x`: a chain, whose last layer adds `x` for a residual."""
    if not entry.get("residual"):
        for layer in entry_layers:
            x = layer(x)
        return x
    if list(entry["strides"]) != [1, 1] or entry["filters"] != x.shape[-1]:
        raise ValueError(
            f"Invalid `ib` entry in architecture spec: a residual block needs strides [1, 1] and "
            f"as many filters as its input has channels ({x.shape[-1]}), received {entry!r}.")
    *branch, add = entry_layers
    y = x
    for layer in branch:
        y = layer(y)
    return add([x, y])


def _source_weights(layer, entry):
    """The weights of a supernet layer in the order the entry's plain layers are built."""
    record = registry.get(layer)
    parts = ([layer] if record is None or record.source_weights is None
             else record.source_weights(layer, entry))
    return [w for part in parts for w in part.get_weights()]


def _find_layer(model, name):
    for layer in mlayers.searchable_layers(model) + model.layers:
        if layer.name == name:
            return layer
    raise ValueError(
        f"Invalid value for `weights_from`: expected a model with a layer {name!r} (the spec's "
        f"source), received model {model.name!r} without it.")


def build(spec, weights_from=None):
    """A plain Keras model of `spec`.

    Args:
        spec: An `ArchSpec`, or a path of one saved as JSON.
        weights_from: The supernet the spec was derived from: its weights for the kept
            channels (leading slices of each kernel) initialise the plain model. Defaults to
            None (fresh initialisation).

    Returns:
        A functional `tf_keras` model with no searchable layers; its `mnas_entry_layers`
        lists the Keras layer names each spec entry became.
    """
    if isinstance(spec, (str, os.PathLike)):
        spec = ArchSpec.load(spec)
    inputs = keras.Input(tuple(spec.input_shape))
    x = inputs
    built = []
    for entry in spec.layers:
        if entry["type"] not in _BUILDERS:
            raise ValueError(
                f"Invalid layer entry in architecture spec: expected a `type` in "
                f"{sorted(_BUILDERS)}, received {entry!r}.")
        entry_layers = _BUILDERS[entry["type"]](entry)
        x = _apply(entry, entry_layers, x)
        built.append((entry, entry_layers))
    model = keras.Model(inputs, x, name=spec.name)
    model.mnas_backbone = spec.backbone
    # The Keras layer names of each spec entry, in order, for per-entry figures in reports.
    model.mnas_entry_layers = [[layer.name for layer in entry_layers]
                               for _, entry_layers in built]
    if weights_from is not None:
        for entry, entry_layers in built:
            if "source" not in entry:
                continue
            layer = _find_layer(weights_from, entry["source"])
            targets = [w for plain in entry_layers for w in plain.weights]
            for target, value in zip(targets, _source_weights(layer, entry)):
                target.assign(value[tuple(slice(0, d) for d in target.shape)])
    return model


def _table5(input_shape, kernel, stem, blocks, classes, name, backbone="ds_cnn", stem_stride=1):
    """A MicroNets / DS-CNN spec: conv stem, DS blocks `(filters, stride)`, GAP, FC, softmax."""
    entries = [{"type": "conv", "filters": stem, "kernel_size": list(kernel),
                "strides": [stem_stride, stem_stride], "padding": "same", "activation": "relu"}]
    entries += [{"type": "ds", "filters": f, "strides": [s, s], "kernel_size": [3, 3],
                 "activation": "relu"} for f, s in blocks]
    entries += [
        {"type": "keras", "config": keras.layers.serialize(
            keras.layers.GlobalAveragePooling2D())},
        {"type": "dense", "units": classes, "activation": None},
        {"type": "keras", "config": keras.layers.serialize(keras.layers.Softmax())},
    ]
    return ArchSpec(list(input_shape), entries, backbone, name)


KWS_INPUT = (49, 10, 1)
AD_INPUT = (32, 32, 1)


def _ds(widths, strides=None):
    strides = strides or {}
    return [(w, strides.get(i, 1)) for i, w in enumerate(widths)]


def _make_divisible(value, divisor=8):
    """MobileNetV2's channel rounding: nearest multiple of `divisor`, at most 10% below."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


# MobileNetV2's bottleneck stages (expansion t, output width c, blocks n, stride s), table 2.
MOBILENET_V2_STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                       (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


def mobilenet_v2(alpha=0.35, input_shape=(50, 50, 1), num_classes=2, name=None):
    """The spec of MobileNetV2 (Sandler et al. 2018) as `keras.applications` builds it.

    A 3x3 stride-2 conv stem, the inverted-residual stages of `MOBILENET_V2_STAGES` (the first
    block without an expansion conv, residual adds where the stride is 1 and the width is
    kept), a 1x1 head conv of 1280 (more for `alpha` > 1), GAP, FC and softmax; ReLU6 and
    widths `alpha` times the paper's, rounded to multiples of 8.

    Args:
        alpha: Width multiplier. Defaults to `0.35`.
        input_shape: Input shape. Defaults to `(50, 50, 1)`.
        num_classes: Classifier outputs. Defaults to `2`.
        name: Model name. Defaults to `mobilenet_v2_{alpha}`.

    Returns:
        An `ArchSpec` with backbone `mobilenet_v2`.
    """
    def conv(filters, kernel, stride):
        return {"type": "conv", "filters": filters, "kernel_size": [kernel, kernel],
                "strides": [stride, stride], "padding": "same", "activation": "relu6"}

    width = _make_divisible(32 * alpha)
    entries = [conv(width, 3, 2)]
    for t, c, n, s in MOBILENET_V2_STAGES:
        filters = _make_divisible(c * alpha)
        for i in range(n):
            stride = s if i == 0 else 1
            entries.append({"type": "ib", "expand": t * width if t != 1 else None,
                            "filters": filters, "strides": [stride, stride],
                            "kernel_size": [3, 3], "activation": "relu6",
                            "residual": stride == 1 and width == filters})
            width = filters
    entries += [conv(_make_divisible(1280 * alpha) if alpha > 1.0 else 1280, 1, 1),
                {"type": "keras", "config": keras.layers.serialize(
                    keras.layers.GlobalAveragePooling2D())},
                {"type": "dense", "units": num_classes, "activation": None},
                {"type": "keras", "config": keras.layers.serialize(keras.layers.Softmax())}]
    return ArchSpec(list(input_shape), entries, "mobilenet_v2", name or f"mobilenet_v2_{alpha}")


VWW_INPUT = (50, 50, 1)

# MicroNets table 5, and the DS-CNN baselines (Hello Edge; DS-CNN-S is MLPerf Tiny's KWS model).
NAMED_ARCHITECTURES = {
    "micronet_kws_l": lambda: _table5(KWS_INPUT, (10, 4), 276, _ds(
        [248, 276, 276, 248, 248, 248, 248], {0: 2}), 12, "micronet_kws_l"),
    "micronet_kws_m": lambda: _table5(KWS_INPUT, (10, 4), 140, _ds(
        [140, 140, 140, 112, 196], {0: 2}), 12, "micronet_kws_m"),
    "micronet_kws_s": lambda: _table5(KWS_INPUT, (10, 4), 84, _ds(
        [112, 84, 84, 84, 196], {0: 2}), 12, "micronet_kws_s"),
    "micronet_ad_l": lambda: _table5(AD_INPUT, (3, 3), 276, _ds(
        [248, 276, 276, 248, 248], {0: 2, 3: 2, 4: 2}), 4, "micronet_ad_l"),
    "micronet_ad_m": lambda: _table5(AD_INPUT, (3, 3), 192, _ds(
        [276, 276, 276, 276, 276], {0: 2, 3: 2, 4: 2}), 4, "micronet_ad_m"),
    "micronet_ad_s": lambda: _table5(AD_INPUT, (3, 3), 72, _ds(
        [164, 220, 276, 276], {0: 2, 2: 2, 3: 2}), 4, "micronet_ad_s"),
    "ds_cnn_s": lambda: _table5(KWS_INPUT, (10, 4), 64, _ds([64] * 4), 12, "ds_cnn_s",
                                stem_stride=2),
    "ds_cnn_m": lambda: _table5(KWS_INPUT, (10, 4), 172, _ds([172] * 4), 12, "ds_cnn_m",
                                stem_stride=2),
    "ds_cnn_l": lambda: _table5(KWS_INPUT, (10, 4), 276, _ds([276] * 5), 12, "ds_cnn_l",
                                stem_stride=2),
    # MobileNetV2 0.35 on 50x50 grayscale visual wake words (MicroNets' small-MCU input).
    "mobilenet_v2_vww_0.35": lambda: mobilenet_v2(0.35, VWW_INPUT, 2, "mobilenet_v2_vww_0.35"),
}


def get_architecture(name):
    """A named architecture's spec, or a spec loaded from a JSON path.

    Raises:
        UnknownNameError: Neither a known name nor an existing file.
    """
    if name in NAMED_ARCHITECTURES:
        return NAMED_ARCHITECTURES[name]()
    if os.path.isfile(name):
        return ArchSpec.load(name)
    raise errors.UnknownNameError(
        f"Invalid value for `arch`: expected one of {sorted(NAMED_ARCHITECTURES)} or the path "
        f"of a saved spec, received {name!r}.")
