"""The main job: search, derive, train, quantize, convert, verify and report, resumably.

`run(config)` runs the stages in order into `config.out_dir`. Each finished stage is recorded
in `state.json`, and its outputs are written atomically, so a run started again with the same
configuration skips what is done; inside search, final training and quantization-aware
training it resumes from the last finished epoch (`mnas.checkpoints`).

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

import numpy as np
import tf_keras as keras

from mnas import arch, blackbox, callbacks, checkpoints, datasets, derivation, devices, errors
from mnas import export, plots
from mnas import search_spaces, tflm

STAGES = ("search", "train", "quantize", "verify", "report")
TASKS = ("kws", "vww", "ad")
QUANTIZATION = ("qat", "ptq")
ARCH_OPTIMIZERS = ("adam", "shared")
SEARCHES = ("dnas",) + blackbox.METHODS
# Settings that change no result: a run may resume with other values of these.
_COSMETIC = ("verbose",)


@dataclasses.dataclass
class Config:
    """Everything a run depends on. Field docs are the `mnas.train` flags' help texts."""

    task: str
    data_dir: str
    out_dir: str
    device: str = "STM32F446RE"
    sram_bytes: int | None = None
    flash_bytes: int | None = None
    latency_ms: float | None = None
    arch: str | None = None
    max_width: int | None = None
    num_blocks: int | None = None
    width_steps: int = 10
    image_size: int = 50
    grayscale: bool = True
    machine: str | None = None
    search: str = "dnas"
    search_trials: int | None = 10
    search_seconds: float | None = None
    trial_epochs: int = 3
    search_epochs: int = 10
    warmup_epochs: int = 2
    search_learning_rate: float = 0.01
    temperature_start: float = 5.0
    temperature_end: float = 0.5
    gumbel: bool = False
    arch_optimizer: str = "adam"
    arch_learning_rate: float = 1e-3
    arch_split: float = 0.0
    fill_budget: bool = False
    train_epochs: int = 20
    learning_rate: float = 0.005
    final_learning_rate: float = 1e-5
    weight_decay: float = 0.0
    batch_size: int = 100
    augment: bool = True
    mixup: float = 0.0
    quantization: str = "qat"
    qat_epochs: int = 2
    qat_learning_rate: float = 1e-4
    calibration_samples: int = 200
    seed: int = 0
    verbose: int = 1

    def to_json(self):
        return dataclasses.asdict(self)


def _say(text):
    print(text, flush=True)


def _header(stage, note=""):
    _say(f"\n=== {stage}{': ' + note if note else ''} ===")


def target_device(config):
    """The device to fit, with the SRAM / flash sizes of `config` when it overrides them."""
    device = devices.get_device(config.device)
    changes = {k: getattr(config, k) for k in ("sram_bytes", "flash_bytes")
               if getattr(config, k) is not None}
    return dataclasses.replace(device, **changes) if changes else device


def _space(config):
    options = {"max_width": config.max_width, "num_blocks": config.num_blocks}
    options = {k: v for k, v in options.items() if v is not None}
    if config.task == "vww":
        channels = 1 if config.grayscale else 3
        options["input_shape"] = (config.image_size, config.image_size, channels)
    return search_spaces.get(config.task, steps=config.width_steps, **options)


def _regularizer(config, device, arch_data=None):
    return callbacks.ResourceRegularizer(
        device=device, latency_ms=config.latency_ms, warmup_epochs=config.warmup_epochs,
        temperature=(config.temperature_start, config.temperature_end),
        arch_optimizer=config.arch_optimizer, arch_learning_rate=config.arch_learning_rate,
        arch_data=arch_data, verbose=int(config.verbose > 0))


class _Run:
    """One run's data, output folder and state."""

    def __init__(self, config):
        self.config = config
        self.out = config.out_dir
        self.device = target_device(config)
        self.state_path = os.path.join(self.out, "state.json")
        self.state = self._load_state()
        self.data = None

    def path(self, *parts):
        return os.path.join(self.out, *parts)

    def _load_state(self):
        fresh = {"config": self.config.to_json(), "finished": {}}
        if not os.path.exists(self.state_path):
            return fresh
        with open(self.state_path) as f:
            state = json.load(f)
        before = {k: v for k, v in state["config"].items() if k not in _COSMETIC}
        now = {k: v for k, v in self.config.to_json().items() if k not in _COSMETIC}
        changed = sorted(k for k in now if before.get(k) != now[k])
        if changed:
            name = changed[0]
            raise errors.MnasError(
                f"Invalid value for `out_dir`: {self.out} holds a run with other settings "
                f"({name}={before.get(name)!r}, now {now[name]!r}); use another output "
                f"directory, or remove it to start over.")
        return state

    def save_state(self):
        self.state["config"] = self.config.to_json()
        export.write_atomic(self.state_path, json.dumps(self.state, indent=2) + "\n")

    def done(self, stage):
        return stage in self.state["finished"]

    def finish(self, stage, seconds):
        self.state["finished"][stage] = round(seconds, 1)
        self.save_state()

    # Data ----------------------------------------------------------------------------------
    def load_data(self):
        if self.data is not None:
            return self.data
        config = self.config
        options = {}
        if config.task == "vww":
            options = {"image_size": config.image_size, "grayscale": config.grayscale}
        elif config.task == "ad" and config.machine:
            options = {"machine": config.machine}
        started = time.time()
        splits = {name: datasets.load_split(config.task, config.data_dir, name, **options)
                  for name in datasets.SPLITS}
        _say(f"data: {config.data_dir}: " + ", ".join(
            f"{name} {len(split)}" for name, split in splits.items())
            + f" examples of {splits['train'].x.shape[1:]} ({time.time() - started:.1f} s)")
        self.data = splits
        return splits

    def _training_batches(self, train):
        config = self.config
        options = {"mixup": config.mixup} if config.task == "ad" else {}
        return datasets.training_dataset(config.task, train, config.batch_size, config.seed,
                                         augment=config.augment, **options)

    def _labels(self, split):
        """Labels in the form the loss takes: one-hot when mixup mixes them."""
        if self.config.task == "ad" and self.config.mixup and self.config.augment:
            return keras.utils.to_categorical(split.y, len(split.labels))
        return split.y

    def _loss(self):
        mixed = self.config.task == "ad" and self.config.mixup and self.config.augment
        return "categorical_crossentropy" if mixed else "sparse_categorical_crossentropy"

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

    def _fit(self, model, stage, epochs, extra_callbacks=(), variables=None, train=None):
        """`model.fit` over the training data (or `train`), resumable from `stage`'s epoch
        checkpoints."""
        splits = self.load_data()
        train = splits["train"] if train is None else train
        folder = self.path(stage)
        checkpoint_dir = os.path.join(folder, "checkpoint")
        initial = checkpoints.resume_epoch(checkpoint_dir)
        if initial:
            _say(f"resuming {stage} after epoch {initial} of {epochs}")
        if initial >= epochs:
            initial = epochs
        fit_callbacks = list(extra_callbacks) + [
            keras.callbacks.CSVLogger(os.path.join(folder, "history.csv"), append=True),
            keras.callbacks.TensorBoard(self.path("tensorboard", stage), write_graph=False),
            checkpoints.EpochCheckpoint(checkpoint_dir, variables),
        ]
        if initial < epochs:
            model.fit(self._training_batches(train), epochs=epochs,
                      initial_epoch=initial,
                      validation_data=(splits["validation"].x, self._labels(splits["validation"])),
                      callbacks=fit_callbacks, verbose=self._fit_verbosity())
        else:  # All epochs were done: only the weights are needed.
            checkpoint = fit_callbacks[-1]
            checkpoint.set_model(model)
            checkpoint.on_train_begin()

    def _fit_verbosity(self):
        if not self.config.verbose:
            return 0
        return 1 if os.isatty(1) else 2

    def _steps_per_epoch(self):
        return int(np.ceil(len(self.load_data()["train"]) / self.config.batch_size))

    # Stages --------------------------------------------------------------------------------
    def search(self):
        config = self.config
        if config.arch:
            spec = arch.get_architecture(config.arch)
            _header("search", f"skipped, training the given architecture {spec.name}")
            export.write_atomic(self.path("arch.json"), json.dumps(spec.to_json(), indent=2))
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
        logger = callbacks.ArchitectureLogger(self.path("search", "architecture.jsonl"))
        self._fit(supernet, "search", config.search_epochs, [regularizer, logger],
                  variables=regularizer.state_variables, train=weights_split)
        found = regularizer.derive(supernet, name=f"{config.task}_searched",
                                   fill_budget=config.fill_budget)
        search = {"argmax_widths": arch.derive(supernet).widths(), "changes": found.changes,
                  "filled_budget": config.fill_budget, "exact_costs": found.costs,
                  "min_top_probability": derivation.min_top_probability(supernet)}
        export.write_atomic(self.path("search", "search.json"), json.dumps(search, indent=2))
        export.write_atomic(self.path("arch.json"), json.dumps(found.spec.to_json(), indent=2))
        how = ("the argmax" if not found.changes else
               f"{found.changes} option steps from the argmax "
               + ("(budget filled)" if config.fill_budget else "(repaired to fit)"))
        _say(f"derived architecture, {how}: widths {found.spec.widths()}; exact "
             + ", ".join(f"{k} {found.costs[k]:,.0f}/{t:,.0f}"
                         for k, t in regularizer.targets.items())
             + f"; smallest top probability {search['min_top_probability']:.2f}")

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
        arch_data = datasets.training_dataset(config.task, arch_part, config.batch_size,
                                              config.seed + 1, augment=False)
        return weights, arch_data

    def spec(self):
        return arch.ArchSpec.load(self.path("arch.json"))

    def train(self):
        config = self.config
        spec = self.spec()
        splits = self.load_data()
        if tuple(spec.input_shape) != tuple(splits["train"].x.shape[1:]):
            raise errors.MnasError(
                f"Invalid value for `arch`: expected an architecture taking the data's input "
                f"{tuple(splits['train'].x.shape[1:])}, received one taking "
                f"{tuple(spec.input_shape)}.")
        _header("train", f"{spec.name}, {config.train_epochs} epochs")
        model = arch.build(spec)
        model.compile(self._optimizer(config.learning_rate, config.final_learning_rate,
                                      config.train_epochs, self._steps_per_epoch()),
                      self._loss(), metrics=["accuracy"])
        self._fit(model, "train", config.train_epochs)
        _save_model(model, self.path("train", "model.keras"))

    def float_model(self):
        model = keras.models.load_model(self.path("train", "model.keras"), compile=False)
        model.compile(loss=self._loss(), metrics=["accuracy"])
        return model

    def quantize(self):
        config = self.config
        model = self.float_model()
        splits = self.load_data()
        _header("quantize", f"{config.quantization.upper()} to int8, TFLite conversion")
        if config.quantization == "qat":
            folder = self.path("qat")
            initial = checkpoints.resume_epoch(os.path.join(folder, "checkpoint"))
            model = export.quantize_qat(
                model, self._training_batches(splits["train"]), config.qat_epochs,
                validation_data=(splits["validation"].x, self._labels(splits["validation"])),
                loss=self._loss(), metrics=["accuracy"], learning_rate=config.qat_learning_rate,
                initial_epoch=initial, verbose=self._fit_verbosity(), callbacks=[
                    keras.callbacks.CSVLogger(os.path.join(folder, "history.csv"), append=True),
                    checkpoints.EpochCheckpoint(os.path.join(folder, "checkpoint"))])
        tflite = export.convert_int8(model, splits["train"].x,
                                     num_samples=config.calibration_samples)
        export.write_c_sources(tflite, self.out, labels=list(splits["train"].labels))
        _say(f"model.tflite: {len(tflite):,} bytes; model_data.cc, model_data.h written")

    def verify(self):
        splits = self.load_data()
        test = splits["test"]
        _header("verify", f"int8 model in the TFLite Micro interpreter, {len(test)} test "
                          f"examples")
        data = tflm.read_model(self.path("model.tflite"))
        verification = export.verify(data, test.x, test.y, float_model=self.float_model())
        usage = tflm.arena_usage(data)
        fit = export.check_fit(data, self.device, usage.total_bytes,
                               backbone=self.spec().backbone or "default",
                               latency_budget_ms=self.config.latency_ms)
        result = {"verification": verification.to_json(), "fit": fit.to_json(),
                  "arena": dataclasses.asdict(usage),
                  "host_latency_ms": tflm.MicroRunner(data).time_invoke_ms(repeats=10)}
        if self.config.task == "ad":
            # Per machine ID, from the negative softmax score of the true ID.
            result["auc"] = {
                "float": datasets.anomaly_auc(verification.float_outputs, test),
                "int8": datasets.anomaly_auc(
                    verification.int8_outputs.reshape(len(test), -1), test)}
        export.write_atomic(self.path("verification.json"), json.dumps(result, indent=2))
        _say(f"{verification.metric}: float {verification.float:.4f}, int8 "
             f"{verification.int8:.4f}; arena {usage.total_bytes:,} bytes; "
             f"{'fits' if fit.fits else 'DOES NOT FIT: ' + '; '.join(fit.failures)} "
             f"{fit.device}")

    def report(self):
        _header("report")
        with open(self.path("verification.json")) as f:
            result = json.load(f)
        verification = export.Verification(**result["verification"])
        extra = {"host_latency_ms": result["host_latency_ms"],
                 "arena": result["arena"], "config": self.config.to_json(),
                 "stage_seconds": self.state["finished"]}
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
        report = export.write_report(self.out, task=self.config.task, architecture=spec.to_json(),
                                     fit=fit, verification=verification,
                                     quantization=self.config.quantization,
                                     backbone=spec.backbone or "default", extra=extra)
        written = plots.plot_run(self.out, spec, {k: v for k, v in report["budget"].items()})
        _say(f"report.json, report.md, {len(written)} plots in {self.out}")


def _save_model(model, path):
    """Saves a Keras model so that a reader never sees a half-written file."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = os.path.join(os.path.dirname(path), ".tmp-" + os.path.basename(path))
    model.save(tmp)
    os.replace(tmp, path)


def check_out_dir(path):
    """Creates `path` if needed and checks that files can be written in it."""
    try:
        os.makedirs(path, exist_ok=True)
        probe = os.path.join(path, ".mnas-write-test")
        with open(probe, "w") as f:
            f.write("")
        os.remove(probe)
    except OSError as e:
        raise errors.MnasError(
            f"Invalid value for `out_dir`: expected a writable directory, received {path!r} "
            f"({e.strerror}).") from None


def check_budget(config):
    """Refuses, before any training, a budget that no architecture of the space can meet."""
    if config.arch:
        return
    space = _space(config)
    _regularizer(config, target_device(config)).check_reachable(space.build())


def run(config, flagfile=None):
    """Runs (or resumes) every stage of the job into `config.out_dir`.

    Args:
        config: A `Config`.
        flagfile: Text of a flagfile that reproduces the run, written to `flags.txt`.
            Defaults to `None` (no file).

    Returns:
        The report as a dict (the content of `report.json`).

    Raises:
        MnasError: An unknown device or architecture, an unreachable budget, a missing
            dataset, an unwritable output directory, or an output directory of another run.
    """
    check_out_dir(config.out_dir)
    job = _Run(config)
    if flagfile is not None:
        export.write_atomic(job.path("flags.txt"), flagfile)
    check_budget(config)
    keras.utils.set_random_seed(config.seed)
    job.save_state()
    for stage in STAGES:
        if job.done(stage):
            _say(f"=== {stage}: done before, skipped ===")
            continue
        started = time.time()
        getattr(job, stage)()
        job.finish(stage, time.time() - started)
    with open(job.path("report.json")) as f:
        return json.load(f)
