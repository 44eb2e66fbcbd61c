"""Differentiable expected resource costs of a model built from mnas and Keras layers.

The costs are closed forms of the architecture (MicroNets, section 3), computed from the model
graph with each tensor's *expected* channel count, so gradients flow to the architecture
logits:

- ops: 2 per multiply-accumulate of conv, depthwise conv and dense layers, 1 per element of
  pooling and elementwise layers;
- flash bytes: int8 weights, int32 biases, per-channel quantization parameters (a float32
  scale and an int64 zero point per channel, for weights and biases), plus the flatbuffer's
  bookkeeping per tensor and per operator;
- SRAM bytes: per operator, the int8 bytes of its inputs + its outputs + the tensors that stay
  alive across it (a residual input waiting for its ADD); the model's SRAM is a smooth maximum
  (log-sum-exp) over operators, so every operator near the peak, and every decision that can
  make it the peak, gets a gradient; plus TFLite Micro's persistent allocations (per tensor,
  per operator, and the per-channel requantization data of conv layers).

These closed forms give the gradients. Their values are made exact by a correction: the exact
estimator's figures (`mnas.estimate_keras`: TFLite Micro's planner with its fragmentation, the
converter's flatbuffer) for the argmax architecture, less the closed forms at that architecture
(`correction`). With one-hot architecture probabilities, `expected_costs` therefore equals the
derived model's converted flatbuffer and interpreter arena (`tests/test_costs.py` checks this
against both).

The rules are data (`mnas.cost_rules`): each layer type's record in `mnas.registry` holds
its rule; `register_cost` adds one.

Example:

>>> import mnas
>>> import tf_keras as keras
>>> inputs = keras.Input((49, 10, 1))
>>> x = mnas.SearchableConv2D([8, 16], (10, 4))(inputs)
>>> model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))
>>> costs = mnas.expected_costs(model)
>>> float(costs.ops) == 2 * 49 * 10 * 40 * 12 + 49 * 10 * 12
True
"""

import contextlib
import contextvars
import dataclasses
import warnings

import numpy as np
import tensorflow as tf
import tf_keras as keras

from mnas import errors, layers, registry

# Bytes the converter writes per tensor and per operator besides the data (tensor tables, names,
# shapes, buffers' alignment; operator tables), and once per model; fitted to the converter's
# output for trained DS-CNNs of 5 KB to 250 KB (within 1.1%). The model's share includes the
# constant axis tensor of the usual global average pooling.
FLASH_PER_TENSOR = 212
FLASH_PER_OPERATOR = 0
FLASH_PER_MODEL = 348
QUANT_PARAM_BYTES = 12  # float32 scale + int64 zero point, per channel.
# TFLite Micro's persistent allocations on a 64-bit host: a TfLiteEvalTensor per tensor, a
# NodeAndRegistration and its kernel's OpData per operator, per-channel multiplier and shift
# (int32 each) for conv kernels; fitted to the interpreter's recording allocator.
PERSISTENT_PER_TENSOR = 0  # Counted in the operator's share.
PERSISTENT_PER_OPERATOR = 250
PERSISTENT_PER_CHANNEL = 8
PERSISTENT_PER_MODEL = 750


def _values(obj):
    # Not dataclasses.astuple: it deep-copies, and symbolic tensors cannot be copied.
    return [getattr(obj, f.name) for f in dataclasses.fields(obj)]


@dataclasses.dataclass
class Info:
    """A tensor as the cost rules see it: static shape (no batch) and expected channels."""

    shape: tuple
    width: object  # float or scalar tensor

    @property
    def bytes(self):
        """Expected int8 bytes."""
        return float(np.prod(self.shape[:-1], dtype=np.int64)) * self.width


@dataclasses.dataclass
class Node:
    """Costs of one TFLite operator; `weight` scales it (the probability it exists)."""

    ops: object = 0.0
    flash: object = 0.0
    sram: object = 0.0
    persistent: object = 0.0

    def scaled(self, weight):
        return Node(*(weight * v for v in _values(self)))


@dataclasses.dataclass
class Costs:
    """Expected costs of a model (floats or scalar tensors).

    Attributes:
        ops: Operations (2 per multiply-accumulate).
        flash_bytes: Flatbuffer bytes of the int8 model.
        sram_bytes: TFLite Micro arena: `activation_bytes` + `persistent_bytes`.
        activation_bytes: Largest inputs + outputs of one operator.
        persistent_bytes: TFLite Micro's persistent allocations.
    """

    ops: object
    flash_bytes: object
    sram_bytes: object
    activation_bytes: object
    persistent_bytes: object

    def latency_ms(self, device, backbone="default"):
        """Latency on `device` (a `Device`) from ops / its throughput for `backbone`."""
        return device.latency_ms(self.ops, backbone)

    def numpy(self):
        """The costs as Python floats."""
        return Costs(*(float(tf.convert_to_tensor(v)) for v in _values(self)))

    def shifted(self, offsets):
        """These costs plus `offsets` (a `Costs` of the same fields)."""
        return Costs(*(a + b for a, b in zip(_values(self), _values(offsets))))


# While set (`smooth_costs(..., straight_through=True)`), a decision's probabilities are its
# argmax's one-hot in value and the softmax in gradient.
_straight_through = contextvars.ContextVar("straight_through", default=False)
# While set (`_probing`), a dict from a searchable layer's id to a zero tensor added to its
# straight-through probabilities: a cost's gradient with respect to it is, option by option, what
# the cost would be with that option chosen (to first order; exact for ops and flash).
_probes = contextvars.ContextVar("probes", default=None)


def argmax_one_hot(layer):
    """A decision's argmax as a one-hot tensor; ties go to the later option, as `derive`
    breaks them."""
    index = layer.num_options - 1 - tf.argmax(tf.reverse(layer.alpha, [0]))
    return tf.one_hot(index, layer.num_options)


@contextlib.contextmanager
def _probing(probes):
    token = _probes.set(probes)
    try:
        yield
    finally:
        _probes.reset(token)


def costs_by_option(searchable, compute):
    """Costs of the argmax architecture, and of it with any one option changed.

    Args:
        searchable: The model's searchable layers.
        compute: A function returning a dict of scalar cost tensors of the straight-through
            costs (`smooth_costs(..., straight_through=True)` and what derives from them).

    Returns:
        `(costs, by_option)`: `compute()`'s dict, and for each of its names a list with, per
        decision, a tensor of the cost with each option in place of the decision's argmax (the
        others kept). It is exact for costs linear in each decision's probabilities (ops,
        flash, latency from ops) and first order for SRAM's smooth maximum. `by_option` carries
        no gradient.
    """
    probes = {id(layer): tf.zeros([layer.num_options]) for layer in searchable}
    with tf.GradientTape(persistent=True) as tape:
        for probe in probes.values():
            tape.watch(probe)
        with _probing(probes):
            values = compute()
    by_option = {}
    for name, value in values.items():
        slopes = tape.gradient(value, list(probes.values()),
                               unconnected_gradients=tf.UnconnectedGradients.ZERO)
        by_option[name] = [tf.stop_gradient(
            value + slope - tf.reduce_sum(slope * argmax_one_hot(layer)))
            for layer, slope in zip(searchable, slopes)]
    return values, by_option


def register_cost(layer_class, rule):
    """Registers the cost rule of a layer class: its `mnas.registry.LayerType` record.

    A class already registered keeps the rest of its record (lowering, export support).

    Args:
        layer_class: A Keras layer class.
        rule: `rule(layer, inputs, out_shape) -> (out_width, [Node, ...])`, where `inputs` are
            `Info`s and `out_shape` the static output shape without the batch axis.
    """
    record = registry.get(layer_class, exact=True)
    record = (registry.LayerType(layer_class, rule) if record is None
              else dataclasses.replace(record, cost=rule))
    registry.register_layer_type(record)


def layer_costs(layer, inputs, out_shape):
    """Output width and operator costs of one layer call."""
    record = registry.get(layer)
    if record is not None and record.cost is not None:
        return record.cost(layer, inputs, tuple(out_shape))
    known = sorted(t.layer_class.__name__ for t in registry.layer_types() if t.cost)
    raise errors.UnsupportedLayerError(
        f"Layer {layer.name!r} of type {type(layer).__name__} has no cost rule: use one of "
        f"{known}, or add one with `mnas.costs.register_cost`.")


def _shape(shape):
    shape = tf.TensorShape(shape).as_list()[1:]
    if any(d is None for d in shape):
        raise errors.UnsupportedLayerError(
            f"Invalid model for costing: expected static shapes besides the batch axis, "
            f"received {shape}.")
    return tuple(shape)


def _calls(model):
    """(layer, node) of each layer call of `model`, in execution order."""
    if not isinstance(model, keras.Model) or not model._is_graph_network:  # noqa: SLF001
        raise errors.UnsupportedLayerError(
            f"Invalid model for costing: expected a functional or Sequential Keras model with "
            f"known input shapes, received {type(model).__name__} {model.name!r}.")
    known = {id(t) for t in model.inputs}
    calls = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        inbound = [n for n in layer.inbound_nodes if all(
            id(t) in known for t in tf.nest.flatten(n.input_tensors))]
        if len(inbound) != 1:
            raise errors.UnsupportedLayerError(
                f"Layer {layer.name!r} is called {len(inbound)} times in model {model.name!r}: "
                f"mnas costs layers called once.")
        known.update(id(t) for t in tf.nest.flatten(inbound[0].output_tensors))
        calls.append((layer, inbound[0]))
    return calls


def _walk(model, inputs):
    """The operators of `model` called on `inputs` (Infos), and its output Infos.

    A tensor that a later layer reads stays in the arena meanwhile (the residual input of a
    branch, say): its bytes are added to the SRAM of every operator it outlives. A layer with
    no operator (batch norm, ReLU, dropout) passes its input's tensor on, not a new one.
    """
    calls = _calls(model)
    last_use = {}
    for j, (_, node) in enumerate(calls):
        for t in tf.nest.flatten(node.input_tensors):
            last_use[id(t)] = j
    for t in model.outputs:
        last_use[id(t)] = len(calls)
    tensors, root, live = {}, {}, {}  # live: root tensor id -> [last use, bytes]
    for layer_input, info in zip(model.inputs, inputs):
        tensors[id(layer_input)] = info
        root[id(layer_input)] = id(layer_input)
        live[id(layer_input)] = [last_use.get(id(layer_input), -1), info.bytes]
    nodes = []
    for j, (layer, node) in enumerate(calls):
        in_ids = [id(t) for t in tf.nest.flatten(node.input_tensors)]
        in_infos = [tensors[i] for i in in_ids]
        outputs = tf.nest.flatten(node.output_tensors)
        if isinstance(layer, keras.Model):
            out_infos, layer_nodes = _walk(layer, in_infos)
        else:
            width, layer_nodes = layer_costs(layer, in_infos, _shape(outputs[0].shape))
            out_infos = [Info(_shape(outputs[0].shape), width)]
        in_roots = {root[i] for i in in_ids}
        bystanders = [size for r, (end, size) in live.items() if end > j and r not in in_roots]
        for n in layer_nodes:
            n.sram = n.sram + sum(bystanders)
        nodes.extend(layer_nodes)
        alias = not layer_nodes and len(in_ids) == 1 and len(outputs) == 1
        for tensor, info in zip(outputs, out_infos):
            tensors[id(tensor)] = info
            end = last_use.get(id(tensor), -1)
            if alias:
                root[id(tensor)] = root[in_ids[0]]
                live[root[in_ids[0]]][0] = max(live[root[in_ids[0]]][0], end)
            else:
                root[id(tensor)] = id(tensor)
                live[id(tensor)] = [end, info.bytes]
        live = {r: v for r, v in live.items() if v[0] > j}
    return [tensors[id(t)] for t in model.outputs], nodes


# Softness of the SRAM maximum, relative to the peak: log-sum-exp over operators with a
# temperature of this fraction of the largest operator's bytes.
SRAM_SMOOTHNESS = 0.05


def smooth_max(values, smoothness):
    """Log-sum-exp of `values` with a temperature of `smoothness` times their maximum."""
    values = tf.stack([tf.convert_to_tensor(v, tf.float32) for v in values])
    peak = tf.stop_gradient(tf.reduce_max(values))
    scale = tf.maximum(smoothness * peak, 1e-6)
    return scale * tf.reduce_logsumexp(values / scale)


def smooth_costs(model, smoothness=SRAM_SMOOTHNESS, straight_through=False):
    """The closed forms alone, without the exact correction (see `expected_costs`).

    With `straight_through`, every decision counts as its argmax in value and as its
    probabilities in gradient: the value is the cost of the architecture that derivation
    would take, the gradient says which decisions would lower it.
    """
    inputs = [Info(_shape(t.shape), float(t.shape[-1])) for t in model.inputs]
    token = _straight_through.set(bool(straight_through))
    try:
        _, nodes = _walk(model, inputs)
    finally:
        _straight_through.reset(token)
    input_tensors = len(inputs)
    ops = tf.add_n([tf.convert_to_tensor(n.ops, tf.float32) for n in nodes])
    flash = FLASH_PER_MODEL + input_tensors * FLASH_PER_TENSOR + tf.add_n(
        [tf.convert_to_tensor(n.flash, tf.float32) for n in nodes])
    activations = smooth_max([n.sram for n in nodes], smoothness)
    persistent = PERSISTENT_PER_MODEL + input_tensors * PERSISTENT_PER_TENSOR + tf.add_n(
        [tf.convert_to_tensor(n.persistent, tf.float32) for n in nodes])
    return Costs(ops, flash, activations + persistent, activations, persistent)


_warned = []


def correction(model, smoothness=SRAM_SMOOTHNESS, picks=None, cache=None):
    """Exact costs of an architecture less the closed forms at it, as a `Costs` of floats.

    Args:
        model: A supernet.
        smoothness: Softness of the SRAM maximum. Defaults to `SRAM_SMOOTHNESS`.
        picks: The architecture (option per decision). Defaults to the argmax.
        cache: A dict to memoise exact estimates in. Defaults to None.

    A model with a layer that the exact estimator does not lower gets no correction (zeros),
    with a warning.
    """
    from mnas import derivation

    picks = derivation.argmax_picks(model) if picks is None else picks
    try:
        exact = derivation.exact_costs(model, picks, cache=cache)
    except errors.UnsupportedLayerError as e:
        if not _warned:
            warnings.warn(f"Costs stay closed forms, without the exact correction: {e}",
                          stacklevel=2)
            _warned.append(True)
        return Costs(0.0, 0.0, 0.0, 0.0, 0.0)
    with derivation.fixed_choices(model, picks):
        closed = smooth_costs(model, smoothness).numpy()
    return Costs(exact["ops"] - closed.ops, exact["flash"] - closed.flash_bytes,
                 exact["sram"] - closed.sram_bytes, exact["planned"] - closed.activation_bytes,
                 exact["persistent"] - closed.persistent_bytes)


def expected_costs(model, smoothness=SRAM_SMOOTHNESS):
    """Expected ops, flash and SRAM of `model`, differentiable in its architecture logits.

    Args:
        model: A functional or Sequential Keras model with known input shapes, built from mnas
            searchable layers and the Keras layers in `COST_RULES` (nested models allowed).
        smoothness: Softness of the SRAM maximum, relative to the peak. Defaults to
            `SRAM_SMOOTHNESS`.

    Returns:
        A `Costs` of scalar tensors: the closed forms plus the exact correction at the argmax
        architecture (see the module's docstring).

    Raises:
        UnsupportedLayerError: A layer has no cost rule, or the model is not a graph network.
    """
    smooth = smooth_costs(model, smoothness)
    if not layers.searchable_layers(model):
        return smooth
    return smooth.shifted(correction(model, smoothness))


def minimum_costs(model):
    """Costs of the smallest architecture of a supernet: narrowest widths, blocks skipped.

    Every cost grows with widths and kept blocks, so this is the least each can be.
    """
    from mnas import derivation

    with derivation.fixed_choices(model, [0] * len(layers.searchable_layers(model))):
        return expected_costs(model).numpy()
