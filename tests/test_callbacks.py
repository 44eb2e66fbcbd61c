import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

import mnas
from mnas import arch, callbacks, derivation, errors, export, search_spaces
from mnas.hardware import tflm


def task(rng, n=480):
    """Learnable: the class sets which quarter of a 16x16 input is brighter."""
    y = rng.integers(0, 4, size=n)
    x = rng.normal(size=(n, 16, 16, 1)).astype("float32")
    for c in range(4):
        r, col = divmod(c, 2)
        x[y == c, r * 8:(r + 1) * 8, col * 8:(col + 1) * 8, 0] += 1.0
    return x, y


def space():
    return search_spaces.SearchSpace("toy", (16, 16, 1), 4, (3, 3), (1, 2), max_width=48,
                                     steps=12, dropout=0.0)


def search(x, y, regularizer=None, epochs=6, extra=()):
    keras.utils.set_random_seed(0)
    model = space().build()
    model.compile(keras.optimizers.Adam(0.05), "sparse_categorical_crossentropy", ["accuracy"])
    history = model.fit(x, y, batch_size=32, epochs=epochs, verbose=0,
                        callbacks=([regularizer] if regularizer else []) + list(extra))
    return model, history


def measured_arena(model, x):
    return tflm.arena_usage(export.convert_int8(arch.build(arch.derive(model)), x[:8],
                                                num_samples=8)).total_bytes


def test_a_tight_sram_target_is_met_and_without_it_the_model_is_larger(rng):
    x, y = task(rng)
    free, _ = search(x, y)
    free_arena = measured_arena(free, x)
    target = 0.75 * free_arena
    tight, history = search(x, y, callbacks.ResourceRegularizer(sram_bytes=target,
                                                                arch_learning_rate=0.05))
    tight_arena = measured_arena(tight, x)
    assert tight_arena <= target < free_arena
    assert history.history["expected_sram_bytes"][-1] <= target
    assert max(history.history["strength_sram"]) > 0  # The penalty acted.


def test_figures_reach_the_logs_and_csv_logger(rng, tmp_path):
    x, y = task(rng, 96)
    # Warm-up: the architecture stays the widest (a tie), whose exact costs are checked below.
    regularizer = callbacks.ResourceRegularizer(device="STM32F446RE", latency_ms=5.0,
                                                warmup_epochs=1)
    csv = tmp_path / "log.csv"
    model = space().build()
    model.compile("adam", "sparse_categorical_crossentropy")
    history = model.fit(x, y, epochs=1, verbose=0,
                        callbacks=[regularizer, keras.callbacks.CSVLogger(str(csv))])
    for key in ("expected_sram_bytes", "expected_flash_bytes", "expected_ops",
                "expected_latency_ms", "strength_sram", "strength_flash", "strength_latency"):
        assert key in history.history
        assert key in csv.read_text().splitlines()[0]
    # The penalty sees the argmax architecture's costs (straight-through), to the byte at the
    # epoch's argmax.
    exact = mnas.derivation.exact_costs(model)
    assert history.history["expected_ops"][-1] == exact["ops"]
    assert history.history["expected_sram_bytes"][-1] == exact["sram"]


def test_warmup_freezes_the_architecture_and_the_temperature_anneals(rng):
    x, y = task(rng, 96)
    model = space().build()
    model.compile(keras.optimizers.Adam(0.05), "sparse_categorical_crossentropy")
    regularizer = callbacks.ResourceRegularizer(sram_bytes=1e6, warmup_epochs=1,
                                                temperature=(4.0, 1.0))
    searchable = mnas.searchable_layers(model)
    seen = []

    class Probe(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append(([layer.alpha.numpy().copy() for layer in searchable],
                         float(searchable[0].temperature.numpy())))

    model.fit(x, y, epochs=3, verbose=0, callbacks=[regularizer, Probe()])
    assert all(np.all(a == 0) for a in seen[0][0])  # Warm-up: logits untouched.
    assert any(np.any(a != 0) for a in seen[2][0])
    assert [t for _, t in seen] == pytest.approx([4.0, 4.0, 1.0])


def test_the_callback_can_be_reused_across_fits(rng):
    x, y = task(rng, 64)
    model = space().build()
    model.compile("adam", "sparse_categorical_crossentropy")
    regularizer = callbacks.ResourceRegularizer(flash_bytes=1e5)
    model.fit(x, y, epochs=1, verbose=0, callbacks=[regularizer])
    model.fit(x, y, epochs=1, verbose=0, callbacks=[regularizer])
    assert len(model.losses) == 1


def test_an_unreachable_budget_names_the_smallest_cost(rng):
    x, y = task(rng, 32)
    model = space().build()
    model.compile("adam", "sparse_categorical_crossentropy")
    smallest = mnas.minimum_costs(model).sram_bytes
    with pytest.raises(errors.BudgetUnreachableError,
                       match=rf"Invalid sram target: 1,000 bytes is below the smallest sram any "
                             rf"architecture of this search space needs, {smallest:,.0f} bytes"):
        model.fit(x, y, epochs=1, verbose=0,
                  callbacks=[callbacks.ResourceRegularizer(sram_bytes=1000)])


@pytest.mark.parametrize("kwargs, error, message", [
    ({}, ValueError, r"expected a `device` or at least one of `sram_bytes`, `flash_bytes`, "
                     r"`latency_ms`, received none"),
    ({"sram_bytes": -3}, ValueError,
     r"Invalid value for `sram_bytes`: expected a positive number of bytes, received -3"),
    ({"latency_ms": 10}, ValueError, r"a `latency_ms` target needs a device"),
    ({"device": "ESP32"}, errors.UnknownNameError, r"Invalid value for `device`: expected one of"),
    ({"sram_bytes": 1, "warmup_epochs": -1}, ValueError, r"`warmup_epochs`: expected an int >= 0"),
    ({"sram_bytes": 1, "temperature": (1, 2, 3)}, ValueError,
     r"`temperature`: expected a number or a pair"),
    ({"sram_bytes": 1, "aim": "latency"}, ValueError,
     r"`aim`: expected resources with a target \('sram',\), received 'latency'"),
])
def test_bad_arguments_are_named(kwargs, error, message):
    with pytest.raises(error, match=message):
        callbacks.ResourceRegularizer(**kwargs)


def test_a_model_without_searchable_layers_is_refused(rng):
    x, y = task(rng, 32)
    plain = arch.build(space().extreme(smallest=False))
    plain.compile("adam", "sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match=r"expected a model with mnas searchable layers"):
        plain.fit(x, y, epochs=1, verbose=0,
                  callbacks=[callbacks.ResourceRegularizer(sram_bytes=1e5)])


def test_derive_gives_the_argmax_when_it_fits_and_a_repair_when_not(rng):
    model = space().build()  # Untrained: every decision is a tie, the argmax is the widest.
    widest = mnas.derivation.exact_costs(model)["sram"]
    assert callbacks.ResourceRegularizer(sram_bytes=widest).derive(model).changes == 0
    found = callbacks.ResourceRegularizer(sram_bytes=0.6 * widest).derive(model)
    assert found.changes > 0
    assert found.costs["sram"] <= 0.6 * widest


def fit_logits(rng, epochs=1, **kwargs):
    x, y = task(rng, 64)
    keras.utils.set_random_seed(0)
    model = space().build()
    model.compile(keras.optimizers.Adam(0.05), "sparse_categorical_crossentropy")
    regularizer = callbacks.ResourceRegularizer(sram_bytes=1e6, **kwargs)
    model.fit(x, y, batch_size=32, epochs=epochs, verbose=0, callbacks=[regularizer])
    return model, regularizer


def test_the_architecture_has_its_own_optimizer(rng):
    frozen, regularizer = fit_logits(rng, arch_learning_rate=1e-12)
    assert all(np.abs(layer.alpha.numpy()).max() < 1e-9
               for layer in mnas.searchable_layers(frozen))
    assert "arch_optimizer" in regularizer.state_variables
    assert regularizer.arch_optimizer.iterations.numpy() == 2
    moved, _ = fit_logits(rng, arch_learning_rate=0.05)
    assert max(np.abs(layer.alpha.numpy()).max() for layer in mnas.searchable_layers(moved)) > 0.01
    shared, regularizer = fit_logits(rng, arch_optimizer="shared")
    assert "arch_optimizer" not in regularizer.state_variables
    assert max(np.abs(layer.alpha.numpy()).max() for layer in mnas.searchable_layers(shared)) > 0.01


def test_held_out_batches_update_the_architecture(rng):
    import tensorflow as tf

    x, y = task(rng, 64)
    held_out = tf.data.Dataset.from_tensor_slices((x[:32], y[:32])).batch(16)
    model, regularizer = fit_logits(rng, arch_data=held_out, arch_learning_rate=0.05)
    assert regularizer.arch_optimizer.iterations.numpy() == 2
    assert max(np.abs(layer.alpha.numpy()).max() for layer in mnas.searchable_layers(model)) > 0.01


def test_warm_up_leaves_the_architecture_alone(rng):
    model, regularizer = fit_logits(rng, warmup_epochs=1, arch_learning_rate=0.05)
    assert all(np.abs(layer.alpha.numpy()).max() == 0
               for layer in mnas.searchable_layers(model))


def penalty_and_gradient(model, **kwargs):
    """The penalty at full strength and the costs after one plain step down its gradient."""
    model.compile("adam", "sparse_categorical_crossentropy")
    regularizer = callbacks.ResourceRegularizer(**kwargs)
    regularizer.set_model(model)
    regularizer.on_train_begin()
    regularizer._enabled.assign(1.0)  # noqa: SLF001
    for strength in regularizer._strengths.values():  # noqa: SLF001
        strength.assign(1.0)
    logits = regularizer.arch_variables
    with tf.GradientTape() as tape:
        penalty = regularizer.penalty()
    grads = tape.gradient(penalty, logits)
    for g, v in zip(grads, logits):
        if g is not None:
            v.assign_sub(10.0 * g)
    return float(penalty), float(mnas.costs.expected_costs(model).flash_bytes)


def test_an_aimed_target_pushes_a_cost_below_it_up(rng):
    model = space().build()
    start = float(mnas.costs.expected_costs(model).flash_bytes)
    target = 2.0 * mnas.derivation.exact_costs(model)["flash"]  # Above the widest.
    below, after = penalty_and_gradient(space().build(), flash_bytes=target)
    assert below == 0 and after == pytest.approx(start)  # A limit: under it, nothing to do.
    aimed, after = penalty_and_gradient(space().build(), flash_bytes=target, aim="flash")
    assert aimed > 0.4 and after > start  # Pushed towards the target: wider.
    above, after = penalty_and_gradient(space().build(), flash_bytes=0.5 * start, aim="flash")
    assert above > 0 and after < start


def test_the_entropy_term_makes_each_decision_commit_to_its_leading_option(rng):
    model = space().build()
    model.compile("adam", "sparse_categorical_crossentropy")
    searchable = mnas.searchable_layers(model)
    assert float(callbacks.decision_entropy(searchable)) == pytest.approx(1.0)
    for layer in searchable:
        layer.alpha.assign(rng.normal(0.0, 0.1, layer.alpha.shape).astype("float32"))
    leading = [int(np.argmax(layer.alpha.numpy())) for layer in searchable]
    regularizer = callbacks.ResourceRegularizer(sram_bytes=1e9, entropy_weight=1.0)
    regularizer.set_model(model)
    regularizer.on_train_begin()
    regularizer._enabled.assign(1.0)  # noqa: SLF001
    before = float(callbacks.decision_entropy(searchable))
    for _ in range(20):
        with tf.GradientTape() as tape:
            penalty = regularizer.penalty()
        for g, v in zip(tape.gradient(penalty, regularizer.arch_variables),
                        regularizer.arch_variables):
            v.assign_sub(5.0 * g)
    assert float(callbacks.decision_entropy(searchable)) < before - 0.1
    assert [int(np.argmax(layer.alpha.numpy())) for layer in searchable] == leading
    with pytest.raises(ValueError, match="`entropy_weight`: expected a finite number >= 0"):
        callbacks.ResourceRegularizer(sram_bytes=1e9, entropy_weight=-1.0)



def test_option_costs_push_down_the_options_over_budget_while_the_argmax_fits():
    def step(option_costs):
        model = space().build()
        model.compile("adam", "sparse_categorical_crossentropy")
        searchable = mnas.searchable_layers(model)
        for layer in searchable:
            # Blocks kept at the narrowest width lead; the other options keep some probability.
            logits = np.zeros(layer.num_options, "float32")
            logits[0 if hasattr(layer, "choices") else -1] = 1.0
            layer.alpha.assign(logits)
        with derivation.fixed_choices(model, derivation.argmax_picks(model)):
            argmax = mnas.costs.expected_costs(model).flash_bytes
        regularizer = callbacks.ResourceRegularizer(
            flash_bytes=float(argmax) / 0.95 * 1.01, option_costs=option_costs)
        regularizer.set_model(model)
        regularizer.on_train_begin()
        regularizer._enabled.assign(1.0)  # noqa: SLF001
        regularizer._strengths["flash"].assign(1.0)  # noqa: SLF001
        with tf.GradientTape() as tape:
            penalty = regularizer.penalty()
        grads = tape.gradient(penalty, regularizer.arch_variables)
        return float(penalty), [np.zeros(v.shape) if g is None else g.numpy()
                                for g, v in zip(grads, regularizer.arch_variables)], searchable

    penalty, grads, _ = step(option_costs=False)
    # The argmax fits: the straight-through penalty is zero, and so is its gradient.
    assert penalty == 0 and all(not np.any(g) for g in grads)
    penalty, grads, searchable = step(option_costs=True)
    assert penalty > 0
    # Every width decision's widest option would break the budget: a step down the gradient
    # lowers it and raises the narrowest, which fits.
    widths = [g for g, layer in zip(grads, searchable) if hasattr(layer, "choices")]
    assert len(widths) >= 3
    for g in widths:
        assert g[-1] > 0 and g[0] < 0
    with pytest.raises(ValueError, match="`option_costs`: .* needs `straight_through=True`"):
        callbacks.ResourceRegularizer(sram_bytes=1e9, option_costs=True, straight_through=False)


def test_committing_decides_every_decision_by_the_last_epoch_within_the_budget(rng, tmp_path):
    x, y = task(rng)
    model = space().build()
    widest = derivation.exact_costs(model, [layer.num_options - 1 for layer in
                                            mnas.searchable_layers(model)])["sram"]
    target = (derivation.smallest_costs(model)["sram"] + widest) / 2
    regularizer = callbacks.ResourceRegularizer(sram_bytes=target, warmup_epochs=1,
                                                temperature=(1.0, 0.2), commit=True)
    last_epoch = []  # Each batch of the last epoch: the decisions' probabilities and gates.

    class Watch(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if regularizer.params["epochs"] - 1 == self.epoch:
                last_epoch.append([(np.asarray(layer.probabilities()), float(layer.arch_gate))
                                   for layer in mnas.searchable_layers(self.model)])

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

    model, history = search(x, y, regularizer, epochs=4, extra=[Watch()])
    # The search's second half: epochs 3 and 4 commit 3 and then the other 2 decisions.
    assert history.history["committed_decisions"] == [0, 0, 3, 5]
    # The epoch's figures are taken before it commits: the search had not decided by itself.
    assert history.history["min_top_probability"][-1] < 0.99
    commits = regularizer.commits(model)
    assert [name for name, _, _ in commits] == [
        layer.name for layer in mnas.searchable_layers(model)]
    assert all(0 < p <= 1 for _, _, p in commits)
    # Through the last epoch, the 3 decisions committed after epoch 3 stay one-hot at their
    # option with their gradient cut, while the 2 open ones still train.
    committed = {i for i, (p, _) in enumerate(last_epoch[0]) if p.max() > 0.999}
    assert len(committed) == 3 and len(last_epoch) > 1
    for batch in last_epoch:
        for i, (p, gate) in enumerate(batch):
            if i in committed:
                assert gate == 0.0 and int(np.argmax(p)) == commits[i][1] and p.max() > 0.999
            else:
                assert gate == 1.0
    assert any(not np.allclose(last_epoch[0][i][0], last_epoch[-1][i][0])
               for i in set(range(5)) - committed)
    assert [option for _, option, _ in commits] == derivation.argmax_picks(model)
    assert derivation.min_top_probability(model) == pytest.approx(1.0)
    found = regularizer.derive(model)
    assert found.changes == 0 and found.costs["sram"] <= target

    # A search resumed after its last epoch restores its commitments from the checkpoint.
    saved = tf.train.Checkpoint(**regularizer.state_variables).save(str(tmp_path / "ckpt"))
    restored = callbacks.ResourceRegularizer(sram_bytes=target, commit=True)
    tf.train.Checkpoint(**restored.state_variables).restore(saved).expect_partial()
    assert restored.commits(model) == commits
