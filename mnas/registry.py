"""One record per layer type: what every stage of mnas knows about it.

A `LayerType` carries, for one layer class:

- `cost`: its differentiable cost rule (`mnas.costs`): `cost(layer, inputs, out_shape) ->
  (out_width, [Node, ...])`;
- `lower`: its lowering to the TFLite operators the int8 converter emits, for the exact
  estimator (`mnas.hardware.keras_graph`): `lower(graph, layer, inputs, out_shape, fused) ->
  tensor index`, or None for a configuration it cannot lower. A type with a lowering is one
  that quantizes to int8 and exports (`mnas.export.check_layers`);
- `activations`: the values of its `activation` argument that quantize and export;
- `derive` and `source_weights`: for a searchable layer, its spec entries at the argmax and the
  supernet weights in the order the entries' plain layers are built (`mnas.arch`); a plain
  layer is kept as it is;
- `example`: a small model containing it, on which `tests/test_registry.py` checks that the
  closed forms, the exact estimate, the converter and the interpreter agree.

The layer types mnas knows are registered in `mnas.layer_types`, once each; a new one is one
`register_layer_type` call.
"""

import dataclasses
import importlib


@dataclasses.dataclass(frozen=True)
class LayerType:
    """What mnas knows about one layer class (see the module's docstring)."""

    layer_class: type
    cost: object
    lower: object = None
    activations: tuple = ()
    derive: object = None
    source_weights: object = None
    example: object = None

    @property
    def exported(self):
        """Whether the layer quantizes to int8 and runs in TFLite Micro."""
        return self.lower is not None


_TYPES = {}


def register_layer_type(layer_type):
    """Registers `layer_type` (a `LayerType`), replacing any record of the same class."""
    if not isinstance(layer_type, LayerType):
        raise TypeError(
            f"Invalid value for `layer_type`: expected a LayerType, received "
            f"{type(layer_type).__name__}.")
    _TYPES[layer_type.layer_class] = layer_type
    return layer_type


def unregister_layer_type(layer_class):
    """Removes the record of `layer_class`, if any."""
    _TYPES.pop(layer_class, None)


def layer_types():
    """The registered records, in registration order."""
    importlib.import_module("mnas.layer_types")
    return list(_TYPES.values())


def get(layer, exact=False):
    """The record of a layer (or class): its own class's, else (unless `exact`) a base's."""
    importlib.import_module("mnas.layer_types")
    cls = layer if isinstance(layer, type) else type(layer)
    for c in (cls,) if exact else cls.__mro__:
        if c in _TYPES:
            return _TYPES[c]
    return None


def exported_names():
    """Class names of the layer types that quantize and export."""
    return tuple(t.layer_class.__name__ for t in layer_types() if t.exported)
