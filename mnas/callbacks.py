"""Callbacks that drive a supernet's search inside an ordinary `model.fit`.

`ResourceRegularizer` adds to the training loss, at every step, a penalty on each expected cost
(SRAM, flash, latency) above its target. Each penalty's strength is a Lagrange multiplier that
the callback adapts after every step (dual ascent): it grows while its constraint is violated and
shrinks once it is met, so the constraints end up met without a weight to tune. The
architecture logits get their own optimizer (Adam, learning rate 0.02, no weight decay, by
default), optionally on batches held out from the weights' (first-order bilevel, `arch_data`).

Example:

>>> model = mnas.search_spaces.get("kws").build()  # doctest: +SKIP
>>> model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])  # doctest: +SKIP
>>> model.fit(x, y, epochs=10, callbacks=[
...     mnas.ResourceRegularizer(device="STM32F446RE", latency_ms=200, warmup_epochs=2,
...                              temperature=(5.0, 0.5))])  # doctest: +SKIP
"""

import numpy as np
import tensorflow as tf
import tf_keras as keras

from mnas import costs as mcosts
from mnas import arch_step, derivation, devices
from mnas import layers as mlayers

RESOURCES = ("sram", "flash", "latency")


def _positive(value, name, unit):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(
            f"Invalid value for `{name}`: expected a positive number of {unit}, "
            f"received {value!r}.")
    return float(value)


def decision_entropy(searchable):
    """Mean over decisions of the entropy of their probabilities, over its maximum: 0 when
    every decision is one-hot, 1 when all are uniform."""
    values = []
    for layer in searchable:
        p = layer.probabilities()
        if int(p.shape[0]) > 1:  # A single option is no decision.
            values.append(-tf.reduce_sum(p * tf.math.log(p + 1e-12))
                          / float(np.log(int(p.shape[0]))))
    return tf.add_n(values) / len(values) if values else tf.constant(0.0)


class _PenaltyHook:
    """The model's one added loss; it asks whichever regularizer is active for its penalty."""

    def __init__(self):
        self.regularizer = None

    def __call__(self):
        if self.regularizer is None:
            return tf.constant(0.0)
        return self.regularizer.penalty()


class ResourceRegularizer(keras.callbacks.Callback):
    """Penalises expected SRAM, flash and latency above their targets at every training step.

    Args:
        device: A device name (`STM32F446RE`, `STM32F746ZG`, `STM32F767ZI`, S/M/L), a JSON
            profile path, or a `Device`: gives the SRAM and flash targets (the device's memory
            minus its reserves) and the throughput for latency. Defaults to None.
        sram_bytes: SRAM target for the TFLite Micro arena, overriding the device's.
        flash_bytes: Flash target for the model, overriding the device's.
        latency_ms: Latency target in milliseconds; needs a device for its throughput.
        backbone: Backbone whose throughput converts ops to latency. Defaults to the model's
            `mnas_backbone` attribute, else `"default"`.
        warmup_epochs: Epochs that train weights only: the architecture is frozen and no
            penalty applies. Defaults to `0`.
        temperature: Softmax temperature of the architecture logits: a number, or a pair
            `(start, end)` annealed exponentially over the epochs after warm-up. Defaults to
            None (leave the layers' temperatures as they are).
        adapt_rate: Step of the penalty strengths' update per training step, per unit of
            relative violation. Defaults to `0.02`.
        margin: Relative margin under each target that the penalty aims for, so the argmax
            architecture lands under the target too. Defaults to `0.05`.
        arch_optimizer: `"adam"` (Adam with `arch_learning_rate`, no weight decay), `"shared"`
            (the model's own optimizer trains the logits with the weights), or a Keras
            optimizer. Defaults to `"adam"`.
        arch_learning_rate: Learning rate of the `"adam"` architecture optimizer. Defaults to
            `0.02` (on the embedded keyword data, a 5-epoch search at 0.01 ended undecided).
        arch_data: A `tf.data.Dataset` of (x, y) batches held out from training: the logits
            are then updated on its batches (first-order bilevel), the weights on the training
            batches. Defaults to None (both on the training batches).
        smoothness: Softness of the SRAM cost's maximum over operators, relative to the peak
            (`mnas.costs.smooth_max`). Defaults to `0.05`.
        straight_through: Penalise the costs of the argmax architecture, the one derivation
            takes (gradients through the probabilities), instead of the costs of the expected
            widths, which a search can meet by spreading its probabilities while its argmax
            stays over budget. Defaults to `True`.
        aim: Resources whose target the search aims at rather than only stays under
            (`"latency"`, `"sram"`, `"flash"`): their penalty is two-sided, so a cost below
            its target is pushed up too, within `margin` of it (the absolute-value reward of
            TuNAS, which keeps a one-sided search from collapsing to small networks). The
            search then chooses how to spend the budget, not whether to. Defaults to `()`.
        entropy_weight: Weight of the decisions' mean normalised entropy (`decision_entropy`)
            in the loss. Decisions the accuracy is indifferent to (a block whose keeping barely
            changes the loss) otherwise random-walk and end the search undecided; this makes
            them commit, as the zero-one loss of Fair DARTS does. Its gradient grows as the
            temperature falls. Defaults to `0.0`.
        option_costs: Penalise each option by the costs of the argmax architecture with that
            option chosen (`mnas.costs.costs_by_option`), weighted by its probability. The
            straight-through penalty stops once the argmax fits; this one keeps pushing an
            option over the budget down. Defaults to `False`.
        commit: Decide greedily over the second half of the search (as SGAS does): at the end
            of each of its epochs, fix the most certain open decisions to their most probable
            option that keeps the budget reachable (`mnas.derivation.commit`) and cut their
            logits' gradient, so that the last epoch ends with every decision made and the
            answer fits.
            Defaults to `False`.
        verbose: Print a line per epoch with the expected costs. Defaults to `0`.

    Logs (per batch and per epoch): `expected_sram_bytes`, `expected_flash_bytes`,
    `expected_ops`, `expected_latency_ms` (the costs the penalty sees: with `straight_through`,
    those of the argmax architecture), `strength_<resource>` per target, and per epoch
    `min_top_probability` (`mnas.derivation.min_top_probability`); with `commit`,
    `committed_decisions`. `commits(model)` lists each commitment (decision, option,
    probability).

    Raises:
        BudgetUnreachableError: (in `fit`) a target is below what the smallest architecture of
            the supernet needs.
    """

    def __init__(self, device=None, sram_bytes=None, flash_bytes=None, latency_ms=None,
                 backbone=None, warmup_epochs=0, temperature=None, adapt_rate=0.02,
                 margin=0.05, arch_optimizer="adam", arch_learning_rate=0.02, arch_data=None,
                 smoothness=mcosts.SRAM_SMOOTHNESS, straight_through=True, aim=(),
                 entropy_weight=0.0, option_costs=False, commit=False, verbose=0):
        super().__init__()
        self.device = devices.get_device(device) if device is not None else None
        targets = {
            "sram": _positive(sram_bytes, "sram_bytes", "bytes"),
            "flash": _positive(flash_bytes, "flash_bytes", "bytes"),
            "latency": _positive(latency_ms, "latency_ms", "milliseconds"),
        }
        if self.device is not None:
            targets["sram"] = targets["sram"] or float(self.device.sram_budget_bytes)
            targets["flash"] = targets["flash"] or float(self.device.flash_budget_bytes)
        elif targets["latency"] is not None:
            raise ValueError(
                "Invalid value for `device`: a `latency_ms` target needs a device for its "
                "throughput, received None.")
        self.targets = {k: v for k, v in targets.items() if v is not None}
        if not self.targets:
            raise ValueError(
                "Invalid arguments to `ResourceRegularizer`: expected a `device` or at least one "
                "of `sram_bytes`, `flash_bytes`, `latency_ms`, received none.")
        self.backbone = backbone
        if isinstance(warmup_epochs, bool) or not isinstance(warmup_epochs, int) or (
                warmup_epochs < 0):
            raise ValueError(
                f"Invalid value for `warmup_epochs`: expected an int >= 0, "
                f"received {warmup_epochs!r}.")
        self.warmup_epochs = warmup_epochs
        if temperature is not None:
            pair = temperature if isinstance(temperature, (tuple, list)) else (temperature,) * 2
            if len(pair) != 2:
                raise ValueError(
                    f"Invalid value for `temperature`: expected a number or a pair "
                    f"(start, end), received {temperature!r}.")
            for t in pair:
                _positive(t, "temperature", "degrees (> 0)")
            temperature = tuple(float(t) for t in pair)
        self.temperature = temperature
        self.adapt_rate = _positive(adapt_rate, "adapt_rate", "strength units per step")
        if not 0 <= margin < 1:
            raise ValueError(
                f"Invalid value for `margin`: expected a fraction in [0, 1), received {margin!r}.")
        self.margin = float(margin)
        self.arch_optimizer = arch_step.arch_optimizer(
            arch_optimizer, _positive(arch_learning_rate, "arch_learning_rate", "(a rate)"))
        self.arch_data = arch_data
        self.smoothness = _positive(smoothness, "smoothness", "(a fraction of the peak)")
        self.straight_through = bool(straight_through)
        aim = (aim,) if isinstance(aim, str) else tuple(aim)
        for name in aim:
            if name not in self.targets:
                raise ValueError(
                    f"Invalid value for `aim`: expected resources with a target "
                    f"{tuple(self.targets)}, received {name!r}.")
        self.aim = aim
        if isinstance(entropy_weight, bool) or not isinstance(entropy_weight, (int, float)) or (
                not 0 <= entropy_weight < float("inf")):
            raise ValueError(f"Invalid value for `entropy_weight`: expected a finite number "
                             f">= 0, received {entropy_weight!r}.")
        self.entropy_weight = float(entropy_weight)
        self.option_costs = bool(option_costs)
        if self.option_costs and not self.straight_through:
            raise ValueError("Invalid value for `option_costs`: it changes one option of the "
                             "argmax architecture, so it needs `straight_through=True`, "
                             "received `straight_through=False`.")
        self.commit = bool(commit)
        self.verbose = verbose
        # Per decision: the committed option (-1 while open) and its probability when committed.
        self._committed = tf.Variable([], shape=tf.TensorShape(None), dtype=tf.int32,
                                      trainable=False, name="committed")
        self._commit_probability = tf.Variable([], shape=tf.TensorShape(None), trainable=False,
                                               name="commit_probability")
        self._strengths = {k: tf.Variable(0.0, trainable=False, name=f"strength_{k}")
                           for k in self.targets}
        self._costs = {k: tf.Variable(0.0, trainable=False, name=f"expected_{k}")
                       for k in ("sram", "flash", "ops", "latency")}
        # The exact correction of the closed forms at the current argmax (`costs.correction`),
        # refreshed every epoch: the step function reads it without calling the estimator.
        self._offsets = mcosts.Costs(*(tf.Variable(0.0, trainable=False, name=f"offset_{f}")
                                       for f in ("ops", "flash", "sram", "planned", "persistent")))
        self._enabled = tf.Variable(0.0, trainable=False, name="penalty_enabled")
        # The device's latency over its ops-only form at the argmax architecture, refreshed
        # with the offsets: the expected ops carry the gradient, this ratio the level.
        self._latency_scale = tf.Variable(1.0, trainable=False, name="latency_scale")
        self._arch_iterator = None
        self._exact_cache = {}
        # The switch as a distributed step was traced with (see `mnas.arch_step`).
        self._step_enabled = False
        self._traced_per_switch = False

    @property
    def own_optimizer(self):
        """True when the logits have their own optimizer (not the model's)."""
        return self.arch_optimizer != "shared"

    def _expected(self):
        c = mcosts.smooth_costs(self.model, self.smoothness,
                                self.straight_through).shifted(self._offsets)
        return {"sram": c.sram_bytes, "flash": c.flash_bytes, "ops": c.ops,
                "latency": self.device.latency_ms(c.ops, self._backbone) * self._latency_scale
                if self.device is not None else tf.constant(0.0)}

    def _relative(self, name, cost):
        return cost / (self.targets[name] * (1.0 - self.margin)) - 1.0

    def _shape(self, name, cost):
        """The penalty of one resource's cost, before its strength."""
        relative = self._relative(name, cost)
        return tf.abs(relative) if name in self.aim else tf.nn.relu(relative)

    def penalty(self):
        """The penalty term (a scalar tensor); also records the expected costs."""
        total = tf.constant(0.0)
        if self.option_costs:
            # Each option's penalty, weighted by its probability: the gradient reaches the
            # logits through the probabilities only.
            expected, by_option = mcosts.costs_by_option(self._searchable, self._expected)
            for name in self.targets:
                for layer, options in zip(self._searchable, by_option[name]):
                    total += self._strengths[name] * tf.reduce_sum(
                        layer.probabilities() * self._shape(name, options))
        else:
            expected = self._expected()
            for name in self.targets:
                total += self._strengths[name] * self._shape(name, expected[name])
        for name, value in expected.items():
            self._costs[name].assign(tf.cast(value, tf.float32))
        if self.entropy_weight:
            total += self.entropy_weight * decision_entropy(self._searchable)
        return self._enabled * total

    def _violation(self, name, cost):
        """How far a cost is from what its penalty accepts (> 0: the strength grows)."""
        relative = self._relative(name, cost)
        return abs(relative) - self.margin if name in self.aim else relative

    def on_train_begin(self, logs=None):
        self._searchable = mlayers.searchable_layers(self.model)
        if not self._searchable:
            raise ValueError(
                f"Invalid model for `ResourceRegularizer`: expected a model with mnas searchable "
                f"layers, received {self.model.name!r} with none.")
        self._backbone = self._backbone_of(self.model)
        self.check_reachable(self.model)
        for variable in self._strengths.values():
            variable.assign(0.0)
        self._committed.assign([-1] * len(self._searchable))
        self._commit_probability.assign([0.0] * len(self._searchable))
        self._refresh_offsets()
        hook = getattr(self.model, "_mnas_penalty_hook", None)
        if hook is None:
            hook = _PenaltyHook()
            self.model._mnas_penalty_hook = hook
            self.model.add_loss(hook)
        hook.regularizer = self
        self._step_enabled = self._traced_per_switch = False
        if self.own_optimizer:
            self.arch_optimizer.build(self.arch_variables)
            self._arch_iterator = (iter(self.arch_data.repeat()) if self.arch_data is not None
                                   else None)
            self.model.train_step = arch_step.architecture_step(self)
        # The step function may have been traced by an earlier fit without the penalty.
        self.model.train_function = self.model.make_train_function(force=True)
        self.model.test_function = None

    @property
    def arch_variables(self):
        """The architecture logits of the model, each once."""
        found = {}
        for layer in self._searchable:
            for variable in layer.arch_weights:
                found.setdefault(variable.ref(), variable)
        return list(found.values())

    @property
    def state_variables(self):
        """What a checkpoint must hold to resume the search: the penalty strengths, the
        architecture optimizer and, with `commit`, the decisions committed."""
        state = dict(self._strengths)
        if self.own_optimizer:
            state["arch_optimizer"] = self.arch_optimizer
        if self.commit:
            state.update(committed=self._committed, commit_probability=self._commit_probability)
        return state

    def commits(self, model):
        """The decisions of `model` committed so far: (layer name, option index, probability
        when committed), in the layers' order. Works on a search restored from a checkpoint
        too."""
        return [(layer.name, int(pick), float(p)) for layer, pick, p in zip(
            mlayers.searchable_layers(model), self._committed.numpy(),
            self._commit_probability.numpy()) if pick >= 0]

    def _apply_commits(self, gate, committed_gate=0.0):
        """One-hot logits for the committed decisions, their gradient cut by default (the
        optimizer's momentum may still move them a little within an epoch: every epoch sets
        them again); the open decisions' gate is `gate`."""
        for layer, pick in zip(self._searchable, self._committed.numpy()):
            if pick >= 0:
                derivation.set_choice(layer, pick)
            layer.arch_gate.assign(committed_gate if pick >= 0 else gate)

    def _commit(self, epoch):
        """At the end of each epoch of the search's second half, commits its share of the open
        decisions: all of them at the last epoch."""
        epochs = self.params.get("epochs", 1)
        first = self.warmup_epochs + (epochs - self.warmup_epochs) // 2
        committed = [None if pick < 0 else int(pick) for pick in self._committed.numpy()]
        open_ = committed.count(None)
        if epoch < first or not open_:
            return
        count = -(-open_ // max(1, epochs - epoch))
        probability = self._commit_probability.numpy()
        for i, _, p, _ in derivation.commit(self.model, committed, count, self.targets,
                                            self.device, self._backbone, self._exact_cache):
            probability[i] = p
        self._committed.assign([-1 if pick is None else pick for pick in committed])
        self._commit_probability.assign(probability)
        self._apply_commits(1.0)

    def check_reachable(self, model):
        """Raises `BudgetUnreachableError` if a target is below the supernet's smallest cost.

        The smallest architecture is costed exactly (`mnas.derivation.check_reachable`), as
        derivation checks its answer. `fit` calls it when training begins; call it earlier to
        refuse a budget before any work is done.
        """
        derivation.check_reachable(model, self.targets, self.device, self._backbone_of(model))

    def _refresh_offsets(self):
        fresh = mcosts.correction(self.model, self.smoothness, cache=self._exact_cache)
        for variable, value in zip(mcosts._values(self._offsets), mcosts._values(fresh)):  # noqa: SLF001
            variable.assign(value)
        if self.device is not None:
            exact = derivation.exact_costs(self.model, device=self.device,
                                           backbone=self._backbone, cache=self._exact_cache)
            ops_only = float(self.device.latency_ms(exact["ops"], self._backbone))
            self._latency_scale.assign(exact["latency"] / ops_only if ops_only > 0 else 1.0)

    def _backbone_of(self, model):
        return self.backbone or getattr(model, "mnas_backbone", "default")

    def derive(self, model, fill_budget=False):
        """The searched architecture within the targets (`mnas.derivation.derive_within`)."""
        return derivation.derive_within(model, self.targets, self.device,
                                        self._backbone_of(model), fill_budget)

    def on_train_end(self, logs=None):
        self._enabled.assign(0.0)
        self._apply_commits(1.0, committed_gate=1.0)
        if self.own_optimizer:
            del self.model.train_step
            self.model.train_function = None
        self._arch_iterator = None

    def on_epoch_begin(self, epoch, logs=None):
        warm = epoch < self.warmup_epochs
        self._enabled.assign(0.0 if warm else 1.0)
        if self._step_enabled == warm:
            self._step_enabled = not warm
            if self._traced_per_switch:
                self._traced_per_switch = False
                self.model.train_function = self.model.make_train_function(force=True)
        self._apply_commits(0.0 if warm else 1.0)
        if self.temperature is not None:
            start, end = self.temperature
            total = max(1, self.params.get("epochs", 1) - self.warmup_epochs - 1)
            progress = min(1.0, max(0, epoch - self.warmup_epochs) / total)
            value = start * (end / start) ** progress
            for layer in self._searchable:
                layer.temperature.assign(value)
        self._refresh_offsets()

    def on_train_batch_end(self, batch, logs=None):
        costs = {k: float(v.numpy()) for k, v in self._costs.items()}
        if self._enabled.numpy() > 0:
            for name in self.targets:
                strength = self._strengths[name]
                strength.assign(max(0.0, float(strength.numpy())
                                    + self.adapt_rate * self._violation(name, costs[name])))
        if logs is not None:
            logs.update(self._figures(costs))

    def _figures(self, costs):
        figures = {"expected_sram_bytes": costs["sram"], "expected_flash_bytes": costs["flash"],
                   "expected_ops": costs["ops"]}
        if self.device is not None:
            figures["expected_latency_ms"] = costs["latency"]
        figures.update({f"strength_{k}": float(v.numpy()) for k, v in self._strengths.items()})
        return figures

    def on_epoch_end(self, epoch, logs=None):
        costs = {k: float(v.numpy()) for k, v in self._costs.items()}
        figures = self._figures(costs)
        figures["min_top_probability"] = derivation.min_top_probability(self.model)
        if self.commit:  # The epoch's figures are those of the search before committing.
            self._commit(epoch)
            figures["committed_decisions"] = len(self.commits(self.model))
        if logs is not None:
            logs.update(figures)
        if self.verbose:
            parts = [f"{k} {costs[k]:.0f}/{v:.0f}" for k, v in self.targets.items()]
            print(f"Epoch {epoch + 1}: expected costs / targets: {', '.join(parts)}; "
                  f"smallest top probability {figures['min_top_probability']:.2f}")
