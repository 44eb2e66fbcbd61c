"""Callbacks that drive a supernet's search inside an ordinary `model.fit`.

`ResourceRegularizer` adds to the training loss, at every step, a penalty on each expected cost
(SRAM, flash, latency) above its target. Each penalty's strength is a Lagrange multiplier that
the callback adapts after every step (dual ascent): it grows while its constraint is violated and
shrinks once it is met, so the constraints end up met without a weight to tune.

Example:

>>> model = mnas.search_spaces.get("kws").build()  # doctest: +SKIP
>>> model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])  # doctest: +SKIP
>>> model.fit(x, y, epochs=10, callbacks=[
...     mnas.ResourceRegularizer(device="STM32F446RE", latency_ms=200, warmup_epochs=2,
...                              temperature=(5.0, 0.5))])  # doctest: +SKIP
"""

import json
import os

import numpy as np
import tensorflow as tf
import tf_keras as keras

from mnas import costs as mcosts
from mnas import devices, errors
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
        verbose: Print a line per epoch with the expected costs. Defaults to `0`.

    Logs (per batch and per epoch): `expected_sram_bytes`, `expected_flash_bytes`,
    `expected_ops`, `expected_latency_ms`, and `strength_<resource>` per target.

    Raises:
        BudgetUnreachableError: (in `fit`) a target is below what the smallest architecture of
            the supernet needs.
    """

    def __init__(self, device=None, sram_bytes=None, flash_bytes=None, latency_ms=None,
                 backbone=None, warmup_epochs=0, temperature=None, adapt_rate=0.02,
                 margin=0.05, verbose=0):
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
        self.verbose = verbose
        self._strengths = {k: tf.Variable(0.0, trainable=False, name=f"strength_{k}")
                           for k in self.targets}
        self._costs = {k: tf.Variable(0.0, trainable=False, name=f"expected_{k}")
                       for k in ("sram", "flash", "ops", "latency")}
        self._enabled = tf.Variable(0.0, trainable=False, name="penalty_enabled")
        # The device's per-operator latency over its ops-only form, at the argmax architecture
        # (`_calibrate_latency`): the expected ops carry the gradient, this ratio the level.
        self._latency_scale = tf.Variable(1.0, trainable=False, name="latency_scale")

    def _expected(self):
        c = mcosts.expected_costs(self.model)
        return {"sram": c.sram_bytes, "flash": c.flash_bytes, "ops": c.ops,
                "latency": self.device.latency_ms(c.ops, self._backbone) * self._latency_scale
                if self.device is not None else tf.constant(0.0)}

    def penalty(self):
        """The penalty term (a scalar tensor); also records the expected costs."""
        expected = self._expected()
        for name, value in expected.items():
            self._costs[name].assign(tf.cast(value, tf.float32))
        total = tf.constant(0.0)
        for name, target in self.targets.items():
            violation = expected[name] / (target * (1.0 - self.margin)) - 1.0
            total += self._strengths[name] * tf.nn.relu(violation)
        return self._enabled * total

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
        hook = getattr(self.model, "_mnas_penalty_hook", None)
        if hook is None:
            hook = _PenaltyHook()
            self.model._mnas_penalty_hook = hook
            self.model.add_loss(hook)
        hook.regularizer = self
        # The step function may have been traced by an earlier fit without the penalty.
        self.model.train_function = self.model.make_train_function(force=True)
        self.model.test_function = None

    @property
    def state_variables(self):
        """The penalty strengths: what a checkpoint must hold to resume the search."""
        return dict(self._strengths)

    def check_reachable(self, model):
        """Raises `BudgetUnreachableError` if a target is below the supernet's smallest cost.

        `fit` calls it when training begins; call it earlier to refuse a budget before any
        work is done.
        """
        reachable = self._budget_figures(mcosts.minimum_costs(model), model)
        units = {"sram": "bytes", "flash": "bytes", "latency": "ms"}
        for name, target in self.targets.items():
            if name in reachable and reachable[name] > target:
                raise errors.BudgetUnreachableError(
                    f"Invalid {name} target: {target:g} {units[name]} is below the smallest "
                    f"{name} any architecture of this supernet needs, {reachable[name]:.0f} "
                    f"{units[name]} (every block skipped, narrowest widths).")

    def _one_hot_costs(self, model, searchable, picks):
        for layer, pick in zip(searchable, picks):
            logits = np.full(layer.num_options, -30.0, dtype="float32")
            logits[pick] = 30.0
            layer.alpha.assign(logits)
        figures = self._budget_figures(mcosts.expected_costs(model).numpy(), model)
        exact = _argmax_latency(self.device, model)
        if exact is not None:  # The device's per-operator model over the derived graph.
            figures["latency"] = exact[0]
        return figures

    def _calibrate_latency(self, model):
        exact = _argmax_latency(self.device, model)
        self._latency_scale.assign(1.0 if exact is None or exact[1] <= 0
                                   else exact[0] / exact[1])

    def _backbone_of(self, model):
        return self.backbone or getattr(model, "mnas_backbone", "default")

    def _budget_figures(self, costs, model):
        """SRAM, flash and (with a device) latency of `Costs`, as the targets measure them."""
        figures = {"sram": costs.sram_bytes, "flash": costs.flash_bytes}
        if self.device is not None:
            figures["latency"] = float(self.device.latency_ms(costs.ops, self._backbone_of(model)))
        return figures

    def _within(self, values):
        return all(values[k] <= t * (1.0 - self.margin) for k, t in self.targets.items()
                   if k in values)

    def derive(self, model, name=None):
        """The searched architecture, moved to the nearest one that meets the targets.

        Starts from the argmax of every decision (what `mnas.derive` gives). While its exact
        costs (one-hot, the same rules as the penalty) exceed a target less the margin, it
        narrows the decision whose next narrower option the search found most likely
        relative to its current one (for a skippable block: skipping it). Then, while a wider
        option still fits, it widens by the same rule. A short search rarely ends with
        one-hot probabilities, so the argmax alone can land far above or below the budget.

        Args:
            model: The searched supernet.
            name: Name of the derived architecture. Defaults to the model's.

        Returns:
            (`ArchSpec`, a dict of its costs: `sram`, `flash`, and `latency` with a device).
        """
        from mnas import arch

        searchable = mlayers.searchable_layers(model)
        saved = [keras.backend.get_value(layer.alpha) for layer in searchable]
        probabilities = [np.asarray(layer.probabilities(), dtype=np.float64) + 1e-12
                         for layer in searchable]
        picks = [layer._argmax() for layer in searchable]
        try:
            values = self._one_hot_costs(model, searchable, picks)
            while not self._within(values) and any(picks):
                i = max((i for i, p in enumerate(picks) if p > 0),
                        key=lambda i: probabilities[i][picks[i] - 1] / probabilities[i][picks[i]])
                picks[i] -= 1
                values = self._one_hot_costs(model, searchable, picks)
            frozen = set()
            while self._within(values):
                open_ = [i for i, layer in enumerate(searchable)
                         if picks[i] < layer.num_options - 1 and i not in frozen]
                if not open_:
                    break
                i = max(open_, key=lambda i: probabilities[i][picks[i] + 1]
                        / probabilities[i][picks[i]])
                picks[i] += 1
                wider = self._one_hot_costs(model, searchable, picks)
                if self._within(wider):
                    values = wider
                else:
                    picks[i] -= 1
                    frozen.add(i)
            self._one_hot_costs(model, searchable, picks)
            spec = arch.derive(model, name=name)
        finally:
            for layer, value in zip(searchable, saved):
                layer.alpha.assign(value)
        return spec, values

    def on_train_end(self, logs=None):
        self._enabled.assign(0.0)
        for layer in self._searchable:
            layer.arch_gate.assign(1.0)

    def on_epoch_begin(self, epoch, logs=None):
        self._calibrate_latency(self.model)
        warm = epoch < self.warmup_epochs
        self._enabled.assign(0.0 if warm else 1.0)
        for layer in self._searchable:
            layer.arch_gate.assign(0.0 if warm else 1.0)
        if self.temperature is not None:
            start, end = self.temperature
            total = max(1, self.params.get("epochs", 1) - self.warmup_epochs - 1)
            progress = min(1.0, max(0, epoch - self.warmup_epochs) / total)
            value = start * (end / start) ** progress
            for layer in self._searchable:
                layer.temperature.assign(value)

    def on_train_batch_end(self, batch, logs=None):
        costs = {k: float(v.numpy()) for k, v in self._costs.items()}
        if self._enabled.numpy() > 0:
            for name, target in self.targets.items():
                violation = costs[name] / (target * (1.0 - self.margin)) - 1.0
                strength = self._strengths[name]
                strength.assign(max(0.0, float(strength.numpy()) + self.adapt_rate * violation))
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
        if logs is not None:
            logs.update(figures)
        if self.verbose:
            parts = [f"{k} {costs[k]:.0f}/{v:.0f}" for k, v in self.targets.items()]
            print(f"Epoch {epoch + 1}: expected costs / targets: {', '.join(parts)}")


class ArchitectureLogger(keras.callbacks.Callback):
    """Records each decision's probabilities and argmax per epoch, to a JSON-lines file.

    Args:
        path: File to append one JSON object per epoch to: `epoch`, `probabilities` (decision
            name -> list), `choices` (decision name -> argmax width, or keep/skip), and the
            epoch's logs. Defaults to None (keep the records in `history` only).
    """

    def __init__(self, path=None):
        super().__init__()
        self.path = path
        self.history = []

    def on_epoch_end(self, epoch, logs=None):
        record = {"epoch": epoch, "probabilities": {}, "choices": {}}
        for layer in mlayers.searchable_layers(self.model):
            record["probabilities"][layer.name] = [
                float(p) for p in np.asarray(layer.probabilities())]
            record["choices"][layer.name] = layer.choice()
        record["logs"] = {k: float(v) for k, v in (logs or {}).items()
                          if np.ndim(v) == 0}
        self.history.append(record)
        if self.path:
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            with open(self.path, "a") as f:
                f.write(json.dumps(record) + "\n")


def _argmax_latency(device, model):
    """(per-operator latency, ops-only latency) in ms of the supernet's argmax architecture on
    `device`, or None when the device has no per-operator model or the graph is not known."""
    if device is None or device.latency_model is None:
        return None
    from mnas import arch, estimate

    try:
        info = estimate.keras_model_info(arch.build(arch.derive(model)))[0]
    except (errors.MnasError, ValueError):
        return None
    ops = estimate.estimate_model_info(info).ops
    return float(device.model_latency_ms(info)), float(device.latency_ms(ops))
