"""Black-box architecture search with keras-tuner's oracles: random and Bayesian optimisation.

The baselines DNAS must beat. They search the same space as the supernet: one integer
hyperparameter per decision of `space.build()` (`mnas.searchable_layers` order), its option
index (0 the narrowest width, or "skip"), exactly the picks `mnas.derivation` derives from.
Each trial's candidate is costed first by the exact estimator (`derivation.exact_costs`: the
TFLite Micro arena, the flatbuffer, the latency model); one that misses a target is rejected
without training (scored 0 so that Bayesian optimisation learns where the budget ends). A
feasible one is trained briefly and scored by its validation accuracy.

keras-tuner's `Tuner.fit` path builds Keras 3 models while mnas uses `tf_keras`, so trials
run through `BaseTuner.run_trial` (overridden here), the oracle creating, recording and ending
them. The tuner's folder keeps every trial, so an interrupted search resumes where it stopped.

The budget is a number of trained trials, a number of wall-clock seconds, or both: no trial
starts once either is spent.

Example:

>>> from mnas import blackbox
>>> found = blackbox.search(supernet, evaluate, targets, method="random",
...                         max_trials=5, directory="runs/kws/search")  # doctest: +SKIP
"""

import contextlib
import functools
import io
import json
import os
import time

from mnas import derivation, errors
from mnas import layers as mlayers

METHODS = ("random", "bayesian")
OBJECTIVE = "val_accuracy"
# A rejected candidate's score: below any accuracy, so the oracle ranks it last.
_REJECTED_SCORE = 0.0


def hyperparameters(model):
    """keras-tuner hyperparameters for the decisions of a supernet: one option index each.

    Args:
        model: A supernet.

    Returns:
        A `keras_tuner.HyperParameters` with one `Int` per searchable layer, named
        `"{i:02d}_{layer name}"` (so that their order is the layers' order).
    """
    import keras_tuner

    space = keras_tuner.HyperParameters()
    for i, layer in enumerate(mlayers.searchable_layers(model)):
        space.Int(_name(i, layer), 0, layer.num_options - 1)
    return space


def _name(i, layer):
    return f"{i:02d}_{layer.name}"


def picks_of(values, model):
    """The option index per decision from a trial's hyperparameter values."""
    return [int(values[_name(i, layer)])
            for i, layer in enumerate(mlayers.searchable_layers(model))]


def make_oracle(method, model, max_trials=None, seed=0):
    """A keras-tuner oracle over the decisions of `model`.

    Args:
        method: `"random"` (`RandomSearchOracle`) or `"bayesian"`
            (`BayesianOptimizationOracle`).
        model: A supernet.
        max_trials: Trials the oracle creates at most, rejected ones included. Defaults to
            `None` (no limit: the search's own budget stops it).
        seed: Seed of the oracle. Defaults to `0`.

    Raises:
        ValueError: An unknown `method`.
    """
    import keras_tuner

    if method not in METHODS:
        raise ValueError(
            f"Invalid value for `method`: expected one of {METHODS}, received {method!r}.")
    oracle_class = {"random": keras_tuner.oracles.RandomSearchOracle,
                    "bayesian": keras_tuner.oracles.BayesianOptimizationOracle}[method]
    # keras-tuner treats a seed of 0 as "none" and draws one at random.
    oracle = oracle_class(objective=keras_tuner.Objective(OBJECTIVE, "max"),
                          max_trials=max_trials, hyperparameters=hyperparameters(model),
                          seed=seed + 1, max_consecutive_failed_trials=10 ** 6)
    oracle.verbose = 0
    return oracle


def _tuner_class():
    import keras_tuner

    class ArchitectureTuner(keras_tuner.engine.base_tuner.BaseTuner):
        """Runs each trial: exact costs first, brief training only if the candidate fits."""

        def __init__(self, oracle, model, evaluate, targets, device, backbone, max_trials,
                     seconds, log, **kwargs):
            self.model = model
            self.evaluate = evaluate
            self.targets = targets
            self.device = device
            self.backbone = backbone
            self.max_trained = max_trials
            self.seconds = seconds
            self.log = log
            # Wall-clock seconds of the search so far (the oracle's own time included),
            # carried over from an interrupted search's last record.
            records = self.records()
            self.before = records[-1].get("elapsed", 0.0) if records else 0.0
            self.started = time.time()
            self.cache = {}
            with contextlib.redirect_stdout(io.StringIO()):  # "Reloading Tuner from ...".
                super().__init__(oracle, **kwargs)

        def records(self):
            if not os.path.exists(self.log):
                return []
            with open(self.log) as f:
                return [json.loads(line) for line in f if line.strip()]

        def elapsed(self):
            return self.before + time.time() - self.started

        def pre_create_trial(self):
            trained = sum(r["fits"] for r in self.records())
            out_of_trials = self.max_trained is not None and trained >= self.max_trained
            out_of_time = self.seconds is not None and self.elapsed() >= self.seconds
            if out_of_trials or out_of_time:
                # The oracle stops (returns STOPPED trials) once it holds `max_trials`.
                self.oracle.max_trials = len(self.oracle.trials)

        def run_trial(self, trial, *args, **kwargs):
            started = time.time()
            picks = picks_of(trial.hyperparameters.values, self.model)
            costs = derivation.exact_costs(self.model, picks, self.device, self.backbone,
                                           self.cache)
            fits = all(costs[k] <= t for k, t in self.targets.items())
            score = self.evaluate(picks, trial.trial_id) if fits else _REJECTED_SCORE
            record = {"trial": trial.trial_id, "picks": picks, "fits": fits,
                      OBJECTIVE: score, "costs": costs,
                      "seconds": round(time.time() - started, 2),
                      "elapsed": round(self.elapsed(), 2)}
            with open(self.log, "a") as f:
                f.write(json.dumps(record) + "\n")
            return {OBJECTIVE: score}

    return ArchitectureTuner


def search(model, evaluate, targets, *, method="random", device=None, backbone=None,
           max_trials=None, seconds=None, directory, seed=0, say=print):
    """Searches the decisions of `model` with a keras-tuner oracle.

    Args:
        model: A supernet (its decisions are the search space; its weights are not used).
        evaluate: `evaluate(picks, trial_id) -> float`: trains the candidate with these
            option indices briefly and returns its validation accuracy.
        targets: Dict of `sram` / `flash` (bytes) / `latency` (ms) limits, checked exactly
            before any training.
        method: `"random"` or `"bayesian"`. Defaults to `"random"`.
        device: A `Device`, needed for a latency target.
        backbone: Backbone of the latency model. Defaults to the supernet's.
        max_trials: Trained (feasible) trials to run at most. Defaults to `None`.
        seconds: Wall-clock seconds of the search (the oracle's own time and rejections
            included) after which no trial starts. Defaults to `None`. At least one of
            `max_trials` and `seconds` is needed.
        directory: Folder of the tuner's state and `trials.jsonl` (one line per trial); a
            search started again in it resumes.
        seed: Seed of the oracle. Defaults to `0`.
        say: Function that prints one line per trial. Defaults to `print`.

    Returns:
        A dict: `picks` and `val_accuracy` of the best trained trial, `trials` (all records),
        `trained`, `rejected` and `seconds` (wall clock, up to the last trial's end).

    Raises:
        ValueError: Neither budget given, or an unknown method.
        BudgetUnreachableError: The budget ran out before any candidate fitted.
    """
    if max_trials is None and seconds is None:
        raise ValueError(
            "Invalid arguments to `search`: expected a budget, `max_trials` or `seconds`, "
            "received neither.")
    backbone = backbone or getattr(model, "mnas_backbone", "default")
    os.makedirs(directory, exist_ok=True)
    log = os.path.join(directory, "trials.jsonl")

    def evaluate_and_say(picks, trial_id):
        score = evaluate(picks, trial_id)
        say(f"trial {trial_id}: picks {picks}, {OBJECTIVE} {score:.4f}")
        return score

    tuner = _tuner_class()(make_oracle(method, model, seed=seed), model, evaluate_and_say,
                           targets, device, backbone, max_trials, seconds, log,
                           directory=directory, project_name=f"{method}_tuner")
    tuner.search()
    records = tuner.records()
    trained = [r for r in records if r["fits"]]
    if not trained:
        raise errors.BudgetUnreachableError(
            f"Invalid search budget: no trial of the {method} search fitted the targets "
            f"{targets} within it ({len(records)} candidates rejected); give it more trials "
            f"or seconds.")
    best = max(trained, key=lambda r: r[OBJECTIVE])
    return {"picks": best["picks"], OBJECTIVE: best[OBJECTIVE], "trials": records,
            "trained": len(trained), "rejected": len(records) - len(trained),
            "seconds": round(records[-1].get("elapsed", 0.0), 1)}


def run_search(run, space, targets):
    """The search stage of a job (`mnas.job`) with `run.config.search` in `METHODS`.

    Trials train each candidate for `config.trial_epochs` epochs with the final training's
    recipe (learning rate, cosine decay, augmentation) and score it on the validation split;
    the best becomes `arch.json`, and `search/search.json` records every trial.

    Args:
        run: The job's run (its config, data, device, output folder and training helpers).
        space: The search space (`mnas.search_spaces`).
        targets: Dict of `sram` / `flash` (bytes) / `latency` (ms) limits.

    Returns:
        The best architecture's `ArchSpec`.
    """
    import tf_keras as keras

    from mnas import arch, export

    config = run.config
    supernet = space.build()
    splits = run.load_data()
    # The job's own training helpers, so that trials train as the final training does.
    validation = run._validation(splits)  # noqa: SLF001
    steps = run._steps_per_epoch()  # noqa: SLF001

    def evaluate(picks, trial_id):
        with derivation.fixed_choices(supernet, picks):
            spec = arch.derive(supernet)
        keras.utils.set_random_seed(config.seed)
        model = arch.build(spec)
        model.compile(run._optimizer(config.learning_rate, config.final_learning_rate,  # noqa: SLF001
                                     config.trial_epochs, steps),
                      run._loss(), metrics=["accuracy"])  # noqa: SLF001
        model.fit(run._training_batches(splits["train"], 0, config.trial_epochs),  # noqa: SLF001
                  epochs=config.trial_epochs, steps_per_epoch=steps, verbose=0)
        return float(model.evaluate(*validation, verbose=0)[1])

    budget = ", ".join(part for part in (
        f"{config.search_trials} trained trials" if config.search_trials else "",
        f"{config.search_seconds:,.0f} s" if config.search_seconds else "") if part)
    say = functools.partial(print, flush=True)
    say(f"\n=== search: {config.search} search of the {space.name} space, {budget}, "
            f"{config.trial_epochs} epochs per trial; targets "
            + ", ".join(f"{k} {v:,.0f}" for k, v in targets.items()) + " ===")
    found = search(supernet, evaluate, targets, method=config.search, device=run.device,
                   backbone=space.backbone, max_trials=config.search_trials or None,
                   seconds=config.search_seconds, directory=run.path("search"),
                   seed=config.seed, say=say)
    with derivation.fixed_choices(supernet, found["picks"]):
        spec = arch.derive(supernet, name=f"{config.task}_{config.search}")
    costs = derivation.exact_costs(supernet, found["picks"], run.device, space.backbone)
    summary = {"method": config.search, "picks": found["picks"], "exact_costs": costs,
               OBJECTIVE: found[OBJECTIVE], "trained": found["trained"],
               "rejected": found["rejected"], "seconds": found["seconds"]}
    export.write_atomic(run.path("search", "search.json"), json.dumps(summary, indent=2))
    export.write_atomic(run.path("arch.json"), json.dumps(spec.to_json(), indent=2))
    say(f"best of {found['trained']} trained trials ({found['rejected']} rejected by the "
            f"exact estimates): widths {spec.widths()}, {OBJECTIVE} {found[OBJECTIVE]:.4f}; "
            + ", ".join(f"{k} {costs[k]:,.0f}/{t:,.0f}" for k, t in targets.items()))
    return spec


def widest_within(model, targets, device=None, backbone=None):
    """The widest architecture of a supernet's space that fits, found greedily, without search.

    What one does without a search: keep every block, give every layer the same width option
    (a width multiplier), and narrow it one option at a time until the exact estimator says
    it fits; if even the narrowest misses, drop blocks from the last one.

    Args:
        model: A supernet.
        targets: Dict of `sram` / `flash` (bytes) / `latency` (ms) limits.
        device: A `Device`, needed for a latency target.
        backbone: Backbone of the latency model. Defaults to the supernet's.

    Returns:
        `(picks, costs)`: the option per decision and its exact costs.

    Raises:
        BudgetUnreachableError: No architecture of the space fits.
    """
    derivation.check_reachable(model, targets, device, backbone)
    searchable = mlayers.searchable_layers(model)
    skips = [i for i, layer in enumerate(searchable) if isinstance(layer, mlayers.SearchableSkip)]
    widths = [i for i in range(len(searchable)) if i not in skips]
    most = max(searchable[i].num_options for i in widths)
    candidates = []
    for option in range(most - 1, -1, -1):
        candidates.append({i: min(option, searchable[i].num_options - 1) for i in widths})
    for dropped in range(1, len(skips) + 1):
        candidates.append({i: 0 for i in widths} | {i: 0 for i in skips[-dropped:]})
    for chosen in candidates:
        picks = [chosen.get(i, layer.num_options - 1) for i, layer in enumerate(searchable)]
        costs = derivation.exact_costs(model, picks, device, backbone)
        if all(costs[k] <= t for k, t in targets.items()):
            return picks, costs
    raise errors.BudgetUnreachableError(  # check_reachable makes this unreachable in practice
        f"Invalid targets: no architecture of the space fits {targets}.")
