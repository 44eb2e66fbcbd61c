"""From a searched supernet to its architecture: the search's answer, checked exactly.

`derive_within` takes the argmax of every decision. That is the answer whenever it meets the
targets; only when it misses one is it repaired, by the smallest change in the order of the
search's own probabilities (narrowed until it fits, then widened back toward the argmax where
it still fits), and "meets" is decided by the exact estimator
(`mnas.estimate_keras`: the TFLite Micro arena and the flatbuffer, to the byte), never by the
differentiable costs. Filling a loose budget is a separate, explicit option (`fill_budget`).

`fixed_choices(model, picks)` is the one place that sets a supernet's decisions to one-hot
choices (for costing, sampling, deriving), restoring the logits afterwards.

Example:

>>> import mnas
>>> supernet = mnas.search_spaces.get("kws", max_width=32, num_blocks=2).build()
>>> with fixed_choices(supernet, [0] * len(mnas.searchable_layers(supernet))):
...     spec = mnas.derive(supernet)
>>> spec.widths()[0]
4
"""

import contextlib
import dataclasses

import numpy as np
import tf_keras as keras

from mnas import arch, errors
from mnas import layers as mlayers

RESOURCES = ("sram", "flash", "latency")
_UNITS = {"sram": "bytes", "flash": "bytes", "latency": "ms"}
# One-hot logits: softmax(+-30 / T) is one-hot to float32 precision for temperatures up to ~3.
_ONE_HOT = 30.0


def argmax_picks(model):
    """The index of each decision's most probable option, in `searchable_layers` order."""
    return [layer._argmax() for layer in mlayers.searchable_layers(model)]  # noqa: SLF001


def set_choices(model, picks):
    """Sets every decision of `model` to the one-hot option `picks[i]`.

    Args:
        model: A supernet.
        picks: One option index per searchable layer (`mnas.searchable_layers` order); option 0
            is the narrowest width, or "skip".

    Raises:
        ValueError: `picks` does not match the model's decisions.
    """
    searchable = mlayers.searchable_layers(model)
    picks = [int(p) for p in picks]
    if len(picks) != len(searchable) or any(
            not 0 <= p < layer.num_options for p, layer in zip(picks, searchable)):
        raise ValueError(
            f"Invalid value for `picks`: expected one option index per decision "
            f"({[layer.num_options for layer in searchable]} options), received {picks}.")
    for layer, pick in zip(searchable, picks):
        set_choice(layer, pick)


def set_choice(layer, pick):
    """Sets one searchable layer's logits to the one-hot option `pick`."""
    logits = np.full(layer.num_options, -_ONE_HOT, dtype="float32")
    logits[pick] = _ONE_HOT
    layer.alpha.assign(logits)


@contextlib.contextmanager
def fixed_choices(model, picks):
    """`set_choices(model, picks)` for the `with` block; the logits are restored on exit."""
    searchable = mlayers.searchable_layers(model)
    saved = [keras.backend.get_value(layer.alpha) for layer in searchable]
    try:
        set_choices(model, picks)
        yield model
    finally:
        for layer, value in zip(searchable, saved):
            layer.alpha.assign(value)


def random_picks(model, rng):
    """A uniformly random option per decision of `model` (a `np.random.Generator`)."""
    return [int(rng.integers(layer.num_options)) for layer in mlayers.searchable_layers(model)]


def exact_costs(model, picks=None, device=None, backbone=None, cache=None):
    """The exact costs of one architecture of a supernet, from its derived plain model.

    Args:
        model: A supernet.
        picks: Option per decision. Defaults to the argmax.
        device: A `Device`, for latency. Defaults to None (no latency).
        backbone: Backbone of the latency model. Defaults to the supernet's.
        cache: A dict to memoise results in, keyed by `picks`. Defaults to None.

    Returns:
        A dict: `sram` (TFLite Micro arena bytes, of which `planned` and `persistent`),
        `flash` (flatbuffer bytes), `ops`, and `latency` (ms) with a device.
    """
    from mnas.hardware import estimate, keras_graph

    picks = tuple(argmax_picks(model) if picks is None else picks)
    backbone = backbone or getattr(model, "mnas_backbone", "default")
    key = (picks, None if device is None else device.name, backbone)
    if cache is not None and key in cache:
        return dict(cache[key])
    with fixed_choices(model, picks):
        spec = arch.derive(model)
    # The flatbuffer holds the layers' names: automatic names numbered as in a fresh session make
    # the figure independent of how many models this process built before (a resumed run builds
    # fewer).
    keras.backend.reset_uids()
    info, tflite_bytes = keras_graph.keras_model_info(_with_trained_biases(arch.build(spec)))
    found = estimate.estimate_model_info(info)
    values = {"sram": float(found.arena_bytes), "flash": float(tflite_bytes),
              "ops": float(found.ops), "planned": float(found.planned_bytes),
              "persistent": float(found.persistent_bytes)}
    if device is not None:  # The device's latency model over the derived graph.
        values["latency"] = float(device.model_latency_ms(info, backbone))
    if cache is not None:
        cache[key] = dict(values)
    return values


def _with_trained_biases(model, seed=0):
    """`model` with the distinct nonzero biases of a trained model, in place.

    A fresh model's biases are zeros, which the converter stores once (or drops); a trained
    model's are distinct, one buffer each, and its flatbuffer is that much larger.
    """
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.beta.assign(rng.normal(0.0, 0.25, layer.beta.shape).astype("float32"))
        elif getattr(layer, "use_bias", False) and getattr(layer, "bias", None) is not None:
            layer.bias.assign(rng.normal(0.0, 0.1, layer.bias.shape).astype("float32"))
    return model


@dataclasses.dataclass
class Derived:
    """What `derive_within` found.

    Attributes:
        spec: The `ArchSpec`.
        picks: Its option per decision.
        argmax: The search's argmax picks.
        costs: Exact costs of `spec` (`exact_costs`).
        changes: How many single-option steps separate `spec` from the argmax (0: the argmax).
    """

    spec: arch.ArchSpec
    picks: list
    argmax: list
    costs: dict
    changes: int


def _meets(costs, targets):
    return all(costs[k] <= t for k, t in targets.items())


def smallest_costs(model, device=None, backbone=None):
    """Exact costs of the smallest architecture: narrowest widths, every skippable block skipped."""
    return exact_costs(model, [0] * len(mlayers.searchable_layers(model)), device, backbone)


def check_reachable(model, targets, device=None, backbone=None):
    """Raises `BudgetUnreachableError` when the smallest architecture misses a target.

    Args:
        model: A supernet.
        targets: Dict of `sram` / `flash` (bytes) / `latency` (ms) limits.
        device: A `Device`, needed for a latency target.
        backbone: Backbone of the latency model.

    Returns:
        The smallest architecture's exact costs.
    """
    smallest = smallest_costs(model, device, backbone)
    for name, target in targets.items():
        if smallest[name] > target:
            raise errors.BudgetUnreachableError(
                f"Invalid {name} target: {target:,.6g} {_UNITS[name]} is below the smallest "
                f"{name} any architecture of this search space needs, {smallest[name]:,.0f} "
                f"{_UNITS[name]} (every block skipped, narrowest widths).")
    return smallest


def derive_within(model, targets, device=None, backbone=None, fill_budget=False):
    """The searched architecture: the argmax, repaired only if it misses a target.

    Repair narrows one decision by one option at a time (a skippable block: skipping it),
    each time the decision whose narrower option the search found most likely relative to its
    current one, until the exact costs meet every target; then it widens back toward the
    argmax, by the same rule, each decision while the result still fits, which undoes the steps
    the targets did not need (narrowing an undecided decision need not lower the missed cost:
    a stem over the SRAM budget on a decided option was otherwise narrowed only after every
    undecided block had been skipped). With `fill_budget`, the widening goes on past the
    argmax while the result still fits.

    Args:
        model: The searched supernet.
        targets: Dict of `sram` / `flash` (bytes) / `latency` (ms) limits, checked exactly.
        device: A `Device`, needed for a latency target.
        backbone: Backbone of the latency model. Defaults to the supernet's.
        fill_budget: Widen the answer until the budget is full. Defaults to `False`.

    Returns:
        A `Derived`.

    Raises:
        BudgetUnreachableError: No architecture of the space meets the targets.
    """
    unknown = set(targets) - set(RESOURCES)
    if unknown or ("latency" in targets and device is None):
        raise ValueError(
            f"Invalid value for `targets`: expected limits among {RESOURCES} (latency with a "
            f"device), received {sorted(targets)}.")
    check_reachable(model, targets, device, backbone)
    searchable = mlayers.searchable_layers(model)
    probabilities = [np.asarray(layer.probabilities(), dtype=np.float64) + 1e-12
                     for layer in searchable]
    argmax = argmax_picks(model)
    picks = list(argmax)
    cache = {}

    def costs():
        return exact_costs(model, picks, device, backbone, cache)

    values = costs()
    while not _meets(values, targets):
        i = max((i for i, p in enumerate(picks) if p > 0),
                key=lambda i: probabilities[i][picks[i] - 1] / probabilities[i][picks[i]])
        picks[i] -= 1
        values = costs()
    # Undo what the targets did not need narrowed; with `fill_budget`, fill the budget too.
    ceiling = [layer.num_options - 1 for layer in searchable] if fill_budget else argmax
    frozen = set()
    while True:
        open_ = [i for i in range(len(picks)) if picks[i] < ceiling[i] and i not in frozen]
        if not open_:
            break
        i = max(open_, key=lambda i: probabilities[i][picks[i] + 1] / probabilities[i][picks[i]])
        picks[i] += 1
        wider = costs()
        if _meets(wider, targets):
            values = wider
        else:
            picks[i] -= 1
            frozen.add(i)
    with fixed_choices(model, picks):
        spec = arch.derive(model)  # The name `exact_costs` assumed: names are in the flatbuffer.
    changes = sum(abs(p - a) for p, a in zip(picks, argmax))
    return Derived(spec, picks, argmax, values, changes)


def certainty(probabilities):
    """One minus a decision's entropy over its maximum: 0 uniform, 1 one-hot."""
    p = np.asarray(probabilities, dtype=np.float64)
    if len(p) <= 1:
        return 1.0
    return 1.0 - float(-np.sum(p * np.log(p + 1e-12)) / np.log(len(p)))


def commit(model, committed, count, targets, device=None, backbone=None, cache=None):
    """Fixes `count` more decisions, the most certain of the open ones (greedy decisions, as in
    SGAS), each to its most probable option that keeps the budget reachable.

    An option keeps it reachable when the architecture of the committed options, this one, and
    every open decision at its smallest option meets the targets by the exact estimator
    (`exact_costs`). The smallest option always does while the committed ones did, so the last
    commitment leaves an architecture that fits.

    Args:
        model: The supernet being searched.
        committed: One entry per decision: its committed option index, or None while open.
        count: How many open decisions to commit.
        targets: Dict of `sram` / `flash` (bytes) / `latency` (ms) limits.
        device: A `Device`, needed for a latency target.
        backbone: Backbone of the latency model.
        cache: A dict to memoise exact costs in. Defaults to None.

    Returns:
        A list of (decision index, option index, its probability, the decision's certainty),
        one per decision committed now; `committed` is updated in place.
    """
    searchable = mlayers.searchable_layers(model)
    probabilities = [np.asarray(layer.probabilities(), dtype=np.float64) for layer in searchable]
    open_ = [i for i, pick in enumerate(committed) if pick is None]
    order = sorted(open_, key=lambda i: -certainty(probabilities[i]))
    done = []
    for i in order[:count]:
        p = probabilities[i]
        # Ties go to the wider option, as in the argmax.
        for option in sorted(range(len(p)), key=lambda o: (-p[o], -o)):
            picks = [0 if pick is None else pick for pick in committed]
            picks[i] = option
            if _meets(exact_costs(model, picks, device, backbone, cache), targets):
                break
        else:  # Only when the committed options already missed: keep the smallest.
            option = 0
        committed[i] = option
        done.append((i, int(option), float(probabilities[i][option]),
                     certainty(probabilities[i])))
    return done


def min_top_probability(model):
    """The smallest, over decisions, of the most probable option's probability.

    Near `1 / options` the search ended undecided; near 1 every decision is made.
    """
    return min(float(np.max(layer.probabilities())) for layer in mlayers.searchable_layers(model))
