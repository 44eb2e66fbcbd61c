"""The main job: search, derive, train, quantize, convert, verify and report, resumably.

`run(config)` checks every setting and the data, locks `config.out_dir` (`mnas.rundir`), and
runs the stages in order into it. Each finished stage is recorded in `state.json`, and its
outputs are written atomically, so a run started again with the same settings skips what is
done; inside search, final training and quantization-aware training it resumes from the last
finished epoch (`mnas.checkpoints`), with the same data, augmentation and randomness per epoch
as an uninterrupted run (`mnas.reproducible`, `mnas.datasets.pipeline`).

Outputs: `arch.json`, `model.tflite`, `model_data.cc`, `model_data.h`, `report.json`,
`report.md`, `plots/*.png`, `tensorboard/`, and per stage its history (`search/history.csv`,
`search/architecture.jsonl`, `train/history.csv`).

Example:

>>> from mnas import job
>>> job.run(job.Config(task="kws", data_dir="data/embedded/kws",
...                    out_dir="runs/kws"))               # doctest: +SKIP
"""

import dataclasses
import json
import os
import time
import zipfile

import numpy as np
import tf_keras as keras

from mnas import arch, arch_log, blackbox, callbacks, checkpoints, datasets, derivation, distribute
from mnas import errors, export, files
from mnas import plots, reproducible, rundata, rundir, runconfig, search_spaces, tasks
from mnas import report as mreport
from mnas.datasets import pipeline
from mnas.deploy import arena32, csources, verify
from mnas.hardware import tflm
from mnas.runconfig import ARCH_OPTIMIZERS, QUANTIZATION, SEARCHES, Config  # noqa: F401

STAGES = ("search", "train", "quantize", "verify", "report")
# Stages that train, and so run under the distribution strategy.
_DISTRIBUTED = ("search", "train")
# What a run writes into its output directory (`--restart` removes these).
OUTPUTS = ("state.json", "flags.txt", "arch.json", "model.tflite", "model_data.cc",
           "model_data.h", "features.json", "features.c", "features.h", "verification.json",
           "verification_outputs.npz", "report.json", "report.md", "search", "train", "qat",
           "plots", "tensorboard")


def _say(text):
    print(text, flush=True)


def _header(stage, note=""):
    _say(f"\n=== {stage}{': ' + note if note else ''} ===")


def _space(config):
    options = {"max_width": config.max_width, "num_blocks": config.num_blocks}
    options = {k: v for k, v in options.items() if v is not None}
    options.update(tasks.get(config.task).space_options(config))
    return search_spaces.get(config.task, steps=config.width_steps, **options)


def _regularizer(config, device, arch_data=None):
    return callbacks.ResourceRegularizer(
        device=device, latency_ms=config.latency_ms, warmup_epochs=config.warmup_epochs,
        temperature=(config.temperature_start, config.temperature_end),
        arch_optimizer=config.arch_optimizer, arch_learning_rate=config.arch_learning_rate,
        arch_data=arch_data, straight_through=config.straight_through,
        aim=("latency",) if config.aim_latency and config.latency_ms else (),
        entropy_weight=config.entropy_weight, option_costs=config.option_costs,
        commit=config.commit_decisions,
        verbose=int(config.verbose > 0))


class _Run(rundata.RunData):
    """One run's data, output folder, state and stages."""

    def __init__(self, config, device):
        super().__init__(config)
        self.out = config.out_dir
        self.device = device
        self.state = None

    def path(self, *parts):
        return os.path.join(self.out, *parts)

    def load_state(self):
        return rundir.State.load(self.path("state.json"), runconfig.resolved(self.config),
                                 defaults=runconfig.resolved_defaults())

    def save_state(self):
        self.state.save(self.config.to_json())

    def done(self, stage):
        return stage in self.state.finished

    def finish(self, stage, seconds):
        self.state.finished[stage] = round(seconds, 1)
        self.save_state()

    def _optimizer(self, learning_rate, final_rate, epochs, steps_per_epoch):
        steps = max(1, epochs * steps_per_epoch)
        schedule = keras.optimizers.schedules.CosineDecay(
            learning_rate, steps, alpha=min(1.0, final_rate / learning_rate))
        if self.config.weight_decay:
            optimizer = keras.optimizers.AdamW(schedule, weight_decay=self.config.weight_decay)
            # Architecture logits and gates are not weights to shrink.
            optimizer.exclude_from_weight_decay(var_names=["alpha", "arch_gate", "temperature"])
            return optimizer
        return keras.optimizers.Adam(schedule)

    def _resume(self, stage, epochs):
        """The epoch `stage` resumes from; its per-epoch logs are cut back to it."""
        folder = self.path(stage)
        initial = min(checkpoints.resume_epoch(os.path.join(folder, "checkpoint")), epochs)
        if initial:
            _say(f"resuming {stage} after epoch {initial} of {epochs}")
        rundir.trim_epoch_logs(initial, [os.path.join(folder, "history.csv")],
                               [os.path.join(folder, "architecture.jsonl")])
        return initial

    def _epoch_callbacks(self, stage, variables=None):
        """Per-epoch randomness, history and checkpoints of a resumable `fit`."""
        folder = self.path(stage)
        return [keras.callbacks.CSVLogger(os.path.join(folder, "history.csv"), append=True),
                checkpoints.EpochCheckpoint(os.path.join(folder, "checkpoint"), variables)]

    def _fit(self, model, stage, epochs, extra_callbacks=(), variables=None, train=None):
        """`model.fit` over the training data (or `train`), resumable from `stage`'s epoch
        checkpoints."""
        splits = self.load_data()
        train = splits["train"] if train is None else train
        initial = self._resume(stage, epochs)
        history, checkpoint = self._epoch_callbacks(stage, variables)
        fit_callbacks = [reproducible.EpochRandomness(self.config.seed, stage),
                         *extra_callbacks, history,
                         keras.callbacks.TensorBoard(self.path("tensorboard", stage),
                                                     write_graph=False),
                         checkpoint]
        if initial < epochs:
            model.fit(self._training_batches(train, initial, epochs), epochs=epochs,
                      initial_epoch=initial, steps_per_epoch=self._steps_per_epoch(train),
                      validation_data=self._validation(splits),
                      callbacks=fit_callbacks, verbose=self._fit_verbosity())
        else:  # All epochs were done: only the weights are needed.
            checkpoint.set_model(model)
            checkpoint.on_train_begin()

    def _fit_verbosity(self):
        if not self.config.verbose:
            return 0
        return 1 if os.isatty(1) else 2

    # Stages --------------------------------------------------------------------------------
    def search(self):
        config = self.config
        if config.arch:
            spec = arch.get_architecture(config.arch)
            _header("search", f"skipped, training the given architecture {spec.name}")
            files.write_atomic(self.path("arch.json"), json.dumps(spec.to_json(), indent=2))
            return
        space = _space(config)
        if config.search != "dnas":
            blackbox.run_search(self, space, _regularizer(config, self.device).targets)
            return
        supernet = space.build(temperature=config.temperature_start, gumbel=config.gumbel)
        weights_split, arch_data = self._arch_split()
        regularizer = _regularizer(config, self.device, arch_data)
        _header("search", f"{space.name} supernet, {config.search_epochs} epochs, targets "
                + ", ".join(f"{k} {v:,.0f}" for k, v in regularizer.targets.items()))
        supernet.compile(self._optimizer(config.search_learning_rate, config.final_learning_rate,
                                         config.search_epochs, self._steps_per_epoch()),
                         self._loss(), metrics=["accuracy"])
        logger = arch_log.ArchitectureLogger(self.path("search", "architecture.jsonl"),
                                             self.path("tensorboard", "search", "architecture"))
        self._fit(supernet, "search", config.search_epochs, [regularizer, logger],
                  variables=regularizer.state_variables, train=weights_split)
        found = regularizer.derive(supernet, fill_budget=config.fill_budget)
        search = {"argmax_widths": arch.derive(supernet).widths(), "changes": found.changes,
                  "filled_budget": config.fill_budget, "exact_costs": found.costs,
                  "min_top_probability": derivation.min_top_probability(supernet)}
        if config.commit_decisions:  # Every decision ends one-hot: its evidence is here.
            search["commits"] = [{"decision": name, "option": option, "probability": p}
                                 for name, option, p in regularizer.commits(supernet)]
            if search["commits"]:
                search["min_commit_probability"] = min(c["probability"]
                                                       for c in search["commits"])
        files.write_atomic(self.path("search", "search.json"), json.dumps(search, indent=2))
        files.write_atomic(self.path("arch.json"), json.dumps(found.spec.to_json(), indent=2))
        how = ("the argmax" if not found.changes else
               f"{found.changes} option steps from the argmax "
               + ("(budget filled)" if config.fill_budget else "(repaired to fit)"))
        _say(f"derived architecture, {how}: widths {found.spec.widths()}; exact "
             + ", ".join(f"{k} {found.costs[k]:,.0f}/{t:,.0f}"
                         for k, t in regularizer.targets.items())
             + "; {} {:.2f}".format(*mreport.weakest_decision(search)))

    def _arch_split(self):
        """The training split the weights learn from, and the batches the architecture learns
        from when `arch_split` holds some out (else None)."""
        config = self.config
        train = self.load_data()["train"]
        if not config.arch_split:
            return train, None
        order = np.random.default_rng(config.seed).permutation(len(train))
        held = int(round(config.arch_split * len(train)))
        weights, arch_part = (datasets.subset(train, np.sort(order[held:])),
                              datasets.subset(train, np.sort(order[:held])))
        with pipeline.over_epochs(0, config.search_epochs):
            arch_data = datasets.training_dataset(config.task, arch_part, config.batch_size,
                                                  config.seed + 1, augment=False)
        return weights, arch_data

    def spec(self):
        path = self.path("arch.json")
        try:
            return arch.ArchSpec.load(path)
        except (ValueError, KeyError, TypeError) as e:
            raise errors.CorruptRunFileError(
                f"Damaged architecture {path} ({str(e)[:80]}); {rundir.RESTART_HINT}.") from None

    def train(self):
        config = self.config
        spec = self.spec()
        _header("train", f"{spec.name}, {config.train_epochs} epochs")
        model = arch.build(spec)
        model.compile(self._optimizer(config.learning_rate, config.final_learning_rate,
                                      config.train_epochs, self._steps_per_epoch()),
                      self._loss(), metrics=["accuracy"])
        self._fit(model, "train", config.train_epochs)
        _save_model(model, self.path("train", "model.keras"))

    def float_model(self):
        path = self.path("train", "model.keras")
        try:
            model = keras.models.load_model(path, compile=False)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
            if files.is_disk_full(e):
                raise
            raise errors.CorruptRunFileError(
                f"Damaged model {path} ({str(e).splitlines()[0][:80]}); remove it and its "
                f"stage's checkpoints, or {rundir.RESTART_HINT}.") from None
        model.compile(loss=self._loss(), metrics=["accuracy"])
        return model

    def quantize(self):
        config = self.config
        model = self.float_model()
        splits = self.load_data()
        _header("quantize", f"{config.quantization.upper()} to int8, TFLite conversion")
        if config.quantization == "qat":
            initial = self._resume("qat", config.qat_epochs)
            model = export.quantize_qat(
                model, self._training_batches(splits["train"], initial, config.qat_epochs),
                config.qat_epochs, steps_per_epoch=self._steps_per_epoch(),
                validation_data=self._validation(splits),
                loss=self._loss(), metrics=["accuracy"], learning_rate=config.qat_learning_rate,
                initial_epoch=initial, verbose=self._fit_verbosity(),
                callbacks=[reproducible.EpochRandomness(config.seed, "qat"),
                           *self._epoch_callbacks("qat"),
                           keras.callbacks.TensorBoard(self.path("tensorboard", "qat"),
                                                       write_graph=False)])
        tflite = export.convert_int8(model, rundata.calibration(splits["train"].x,
                                                         config.calibration_samples),
                                     num_samples=config.calibration_samples)
        standardize = self.standardization
        if standardize is not None:
            files.write_atomic(self.path("features.json"),
                               json.dumps({"standardize": standardize}, indent=1))
        written = csources.write_task_sources(tflite, self.out, config.task,
                                              labels=list(splits["train"].labels),
                                              standardize=standardize)
        _say(f"model.tflite: {len(tflite):,} bytes; " + ", ".join(
            os.path.basename(p) for k, p in written.items() if k != "tflite") + " written")

    def verify(self):
        splits = self.load_data()
        test = splits["test"]
        _header("verify", f"int8 model in the TFLite Micro interpreter, {len(test)} test "
                          f"examples")
        data = tflm.read_model(self.path("model.tflite"))
        verification = verify.verify(data, np.asarray(test.x), test.y,
                                     float_model=self.float_model())
        usage = tflm.arena_usage(data)
        arena = arena32.describe(data, usage.total_bytes)  # The MCU is 32-bit: fit its arena.
        fit = export.check_fit(data, self.device, arena["target_arena_bytes"],
                               backbone=self.spec().backbone or "default",
                               latency_budget_ms=self.config.latency_ms)
        result = {"verification": verification.to_json(), "fit": fit.to_json(),
                  "arena": dict(dataclasses.asdict(usage), **arena),
                  "host_latency_ms": tflm.MicroRunner(data).time_invoke_ms(repeats=10)}
        if self.task.metric == "auc":
            # Per machine ID, from the negative softmax score of the true ID.
            result["auc"] = {
                "float": datasets.anomaly_auc(verification.float_outputs, test),
                "int8": datasets.anomaly_auc(
                    verification.int8_outputs.reshape(len(test), -1), test)}
        files.write_atomic(self.path("verification.json"), json.dumps(result, indent=2))
        mreport.save_outputs(self.path("verification_outputs.npz"), verification.int8_outputs)
        _say(f"{verification.metric}: float {verification.float:.4f}, int8 "
             f"{verification.int8:.4f}; arena {usage.total_bytes:,} bytes; "
             f"{'fits' if fit.fits else 'DOES NOT FIT: ' + '; '.join(fit.failures)} "
             f"{fit.device}")

    def report(self):
        _header("report")
        result = rundir.read_json(self.path("verification.json"), "verification")
        verification = verify.Verification(**result["verification"])
        extra = {"host_latency_ms": result["host_latency_ms"],
                 "arena": result["arena"], "config": self.config.to_json(),
                 "stage_seconds": self.state.finished}
        if os.path.exists(self.path("search", "search.json")):
            with open(self.path("search", "search.json")) as f:
                extra["search"] = json.load(f)
        if "auc" in result:
            extra["id_accuracy"] = {"float": verification.float, "int8": verification.int8}
            verification = dataclasses.replace(
                verification, metric="auc", float=result["auc"]["float"]["mean"],
                int8=result["auc"]["int8"]["mean"])
            extra["auc"] = result["auc"]
        fit = export.Fit(**{k: v for k, v in result["fit"].items()
                            if k in {f.name for f in dataclasses.fields(export.Fit)}})
        spec = self.spec()
        written = plots.plot_run(self.out, spec, mreport.budget_of(fit),
                                 test=self.load_data()["test"])
        mreport.write_report(self.out, task=self.config.task, architecture=spec, fit=fit,
                             verification=verification, quantization=self.config.quantization,
                             backbone=spec.backbone or "default", extra=extra, plots=written,
                             model=self.path("model.tflite"))
        _say(f"report.json, report.md, {len(written)} plots in {self.out}")


def _save_model(model, path):
    """Saves a Keras model so that a reader never sees a half-written file."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = files.temporary_path(path)
    model.save(tmp)
    os.replace(tmp, path)


def check_budget(config, device):
    """Refuses, before any training, a budget that no architecture of the space can meet."""
    if config.arch:
        return
    space = _space(config)
    _regularizer(config, device).check_reachable(space.build())


def _check_input(spec, splits):
    shape = tuple(splits["train"].x.shape[1:])
    if tuple(spec.input_shape) != shape:
        raise errors.MnasError(
            f"Invalid value for `arch`: expected an architecture taking the data's input "
            f"{shape}, received one taking {tuple(spec.input_shape)}.")


def run(config, flagfile=None, restart=False):
    """Runs (or resumes) every stage of the job into `config.out_dir`.

    Everything is checked (settings, device, budgets, data, architecture against the data,
    the output directory's lock and previous run) before anything is written. The output
    directory is locked for the whole run.

    Args:
        config: A `Config`.
        flagfile: Text of a flagfile that reproduces the run, written to `flags.txt`.
            Defaults to `None` (no file).
        restart: Discard the output directory's previous run (its state, checkpoints and
            outputs) instead of resuming it. Defaults to `False`.

    Returns:
        The report as a dict (the content of `report.json`).

    Raises:
        MnasError: A bad setting, an unknown device or architecture, an unreachable budget, a
            missing dataset, an unwritable output directory, an output directory in use or
            holding another run, a damaged run file, or a full disk.
    """
    device = runconfig.check(config)
    # First: a multi-worker strategy sets up the cluster before other TensorFlow work.
    strategy = distribute.get_strategy(config.strategy)
    if config.strategy == "multi_worker" and not distribute.is_chief():
        # Other workers train in step with the chief and keep their files apart.
        task_type, index, _ = distribute.worker()
        config = dataclasses.replace(
            config, out_dir=os.path.join(config.out_dir, f"{task_type}-{index}"))
    check_budget(config, device)
    out = config.out_dir
    rundir.check_not_locked(out)
    job = _Run(config, device)
    if not restart:
        job.load_state()
    splits = job.load_data()
    if config.arch:
        _check_input(arch.get_architecture(config.arch), splits)
    reproducible.make_deterministic()
    try:
        os.makedirs(out, exist_ok=True)
        with rundir.RunLock(out):
            if restart:  # The state last: a restart cut short is not taken for a run to resume.
                rundir.discard(out, OUTPUTS[::-1])
            job.state = job.load_state()
            if flagfile is not None:
                files.write_atomic(job.path("flags.txt"), flagfile)
            job.save_state()
            _run_stages(job, strategy)
    except Exception as e:
        if files.is_disk_full(e):
            where = getattr(e, "filename", None) or out
            raise errors.DiskFullError(
                f"No space left on the device of {where}: free some space and run the same "
                f"command again to resume from the last finished epoch.") from None
        raise
    return rundir.read_json(job.path("report.json"), "report")


def _run_stages(job, strategy):
    for stage in STAGES:
        if job.done(stage):
            _say(f"=== {stage}: done before, skipped ===")
            continue
        # Each stage starts afresh (Keras's layer names too) from its own seed, whatever ran
        # before it in this process.
        keras.backend.clear_session()
        keras.utils.set_random_seed(reproducible.stage_seed(job.config.seed, stage))
        started = time.time()
        if stage in _DISTRIBUTED:
            with strategy.scope():
                getattr(job, stage)()
        else:
            getattr(job, stage)()
        job.finish(stage, time.time() - started)
