"""The main job's settings: what a run depends on, their checks, and their resolved values.

`Config` holds the settings as given. `check(config)` refuses bad values (one error naming
the setting) before anything is written. `resolved(config)` gives the values a run's results
depend on, resolved (a device alias becomes the device's profile, a data folder its real
path; the output folder and the verbosity are left out), which is what a resumed run is
compared on.

Example:

>>> from mnas import runconfig
>>> a = runconfig.Config(task="kws", data_dir="data/embedded/kws", out_dir="runs/a", device="S")
>>> b = runconfig.Config(task="kws", data_dir="data/embedded/kws/", out_dir="runs/b/",
...                   device="STM32F446RE")
>>> runconfig.resolved(a) == runconfig.resolved(b)
True
"""

import dataclasses
import math
import os

from mnas import devices, errors, tasks

QUANTIZATION = ("qat", "ptq")
ARCH_OPTIMIZERS = ("adam", "shared")
# The differentiable search, and the black-box ones of `mnas.blackbox` (`METHODS`).
SEARCHES = ("dnas", "random", "bayesian")
# One device, all local GPUs, or the workers that TF_CONFIG names (`mnas.distribute`).
STRATEGIES = ("default", "mirrored", "multi_worker")
MIB = 2**20
# Above any microcontroller's memory: a budget this large is a typing error.
MAX_MEMORY_BYTES = 64 * MIB
MAX_LATENCY_MS = 3_600_000.0
# Settings that change no result: a run may resume with other values of these.
COSMETIC = ("out_dir", "verbose", "cache_dir")

_AT_LEAST_ONE = ("search_epochs", "train_epochs", "batch_size", "width_steps", "image_size",
                 "calibration_samples", "max_width", "num_blocks", "trial_epochs",
                 "max_per_class")
_NON_NEGATIVE = ("warmup_epochs", "qat_epochs", "mixup", "weight_decay", "search_trials",
                 "entropy_weight")
_POSITIVE = ("search_learning_rate", "learning_rate", "final_learning_rate",
             "qat_learning_rate", "temperature_start", "temperature_end", "arch_learning_rate",
             "search_seconds")
_UPPER = {"sram_bytes": MAX_MEMORY_BYTES, "flash_bytes": MAX_MEMORY_BYTES,
          "latency_ms": MAX_LATENCY_MS}
CHECKED = _AT_LEAST_ONE + _NON_NEGATIVE + _POSITIVE + tuple(_UPPER)


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
    stem_stride: int = 1
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
    temperature_end: float = 0.05
    gumbel: bool = False
    arch_optimizer: str = "adam"
    arch_learning_rate: float = 0.02
    arch_split: float = 0.0
    fill_budget: bool = False
    straight_through: bool = True
    aim_latency: bool = True
    entropy_weight: float = 0.0
    option_costs: bool = False
    commit_decisions: bool = False
    standardize_features: bool = True
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
    cache_dir: str | None = None
    max_per_class: int | None = None
    strategy: str = "default"

    def to_json(self):
        return dataclasses.asdict(self)


def check_setting(name, value):
    """Raises `MnasError` (one line) if `value` is not acceptable for setting `name`."""
    if value is None or name not in CHECKED:
        return
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if name in _AT_LEAST_ONE:
        ok, expected = number and float(value).is_integer() and value >= 1, "a whole number >= 1"
    elif name in _NON_NEGATIVE:
        ok, expected = number and math.isfinite(value) and value >= 0, "a finite number >= 0"
    elif name in _POSITIVE:
        ok, expected = number and math.isfinite(value) and value > 0, "a finite number > 0"
    else:
        limit = _UPPER[name]
        ok = number and math.isfinite(value) and 0 < value <= limit
        unit = "ms" if name == "latency_ms" else f"bytes ({limit // MIB} MiB)"
        expected = f"a finite number above 0 and at most {limit:,.0f} {unit}"
    if not ok:
        raise errors.MnasError(f"Invalid value for `{name}`: expected {expected}, received "
                               f"{value!r}.")


def target_device(config):
    """The device to fit, with the SRAM / flash sizes of `config` when it overrides them.

    Raises:
        MnasError: A size is not above what the runtime reserves on the device.
        UnknownNameError: An unknown device.
    """
    device = devices.get_device(config.device)
    changes = {}
    for name in ("sram_bytes", "flash_bytes"):
        value = getattr(config, name)
        if value is None:
            continue
        reserve = getattr(device, name.replace("_bytes", "_reserve_bytes"))
        if value <= reserve:
            raise errors.MnasError(
                f"Invalid value for `{name}`: expected more than the {reserve:,} bytes the "
                f"runtime (TFLite Micro and the application) reserves on {device.name}, leaving "
                f"room for the model, received {value:,}.")
        changes[name] = value
    return dataclasses.replace(device, **changes) if changes else device


def check(config):
    """Refuses bad settings before anything is written; returns the target `Device`.

    Raises:
        MnasError: A bad value, an unknown task, device or architecture, an unwritable output
            directory.
    """
    task = tasks.get(config.task)
    if config.quantization not in QUANTIZATION:
        raise errors.MnasError(f"Invalid value for `quantization`: expected one of "
                               f"{QUANTIZATION}, received {config.quantization!r}.")
    for name in CHECKED:
        check_setting(name, getattr(config, name))
    if config.stem_stride not in (1, 2) or (config.stem_stride != 1 and not task.strided_stem):
        raise errors.MnasError(f"Invalid value for `stem_stride`: expected 1, or 2 for the kws "
                               f"space, received {config.stem_stride!r} for {config.task!r}.")
    if config.search not in SEARCHES:
        raise errors.MnasError(f"Invalid value for `search`: expected one of {SEARCHES}, "
                               f"received {config.search!r}.")
    if config.search != "dnas" and not (config.search_trials or config.search_seconds):
        raise errors.MnasError(
            f"Invalid value for `search`: {config.search!r} needs a budget, `search_trials` or "
            f"`search_seconds`; received neither.")
    if not config.arch and config.search == "dnas" and (
            config.warmup_epochs >= config.search_epochs):
        raise errors.MnasError(
            f"Invalid value for `warmup_epochs`: expected fewer than `search_epochs` "
            f"({config.search_epochs}), or the architecture is never searched; received "
            f"{config.warmup_epochs}.")
    if config.quantization == "qat" and config.qat_epochs < 1:
        raise errors.MnasError("Invalid value for `qat_epochs`: expected at least 1 with "
                               "`quantization` 'qat', received 0.")
    if config.arch:
        from mnas import arch  # TensorFlow: only when an architecture is given.

        arch.get_architecture(config.arch)
    check_writable(config.out_dir)
    return target_device(config)


def check_writable(path):
    """Raises `MnasError` unless `path` is, or can be made, a writable folder (writes nothing)."""
    existing = os.path.abspath(path)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing) or not os.access(existing, os.W_OK | os.X_OK):
        problem = ("is not a folder" if not os.path.isdir(existing)
                   else "cannot be written")
        raise errors.MnasError(
            f"Invalid value for `out_dir`: expected a writable directory, received {path!r} "
            f"({existing} {problem}).")


def resolved_defaults():
    """The settings' default values, for runs stored before a setting existed."""
    return {f.name: f.default for f in dataclasses.fields(Config)
            if f.default is not dataclasses.MISSING and f.name not in COSMETIC}


def resolved(config):
    """The resolved values that a run's results depend on (JSON values), for comparison."""
    values = {k: v for k, v in config.to_json().items() if k not in COSMETIC}
    values["device"] = devices.get_device(config.device).to_json()
    values["data_dir"] = os.path.realpath(config.data_dir)
    if config.arch and os.path.isfile(config.arch):
        from mnas import arch

        values["arch"] = arch.ArchSpec.load(config.arch).to_json()
    return values
