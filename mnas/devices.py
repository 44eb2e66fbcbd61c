"""Microcontroller profiles: memory, reserves for TFLite Micro and the application, latency.

Profiles are data: `devices.json` in this package holds the three STM32 boards of MicroNets
(table 1) and more parts, each with the source of its figures and whether its latency model
was fitted to latencies measured on it (`measured`) or scaled from a measured board by clock
and core (`scaled`). Custom profiles are JSON files with the same fields; `calibrate` fits a
profile's latency model to latencies measured on the board, so the search, the derivation,
the report and `mnas.profile` all use the board's own figures.

Example:

>>> from mnas import devices
>>> dev = devices.get_device("STM32F746ZG")
>>> dev.sram_budget_bytes
319488
>>> dev.latency_model.clock_mhz
216.0
"""

import dataclasses
import json
import os

from mnas import errors, latency

KIB = 1024
# What the paper measured outside the arena: TFLM itself ~4 KB of SRAM and ~37 KB of code; the
# rest of the reserve is left for the application (stack, buffers, drivers).
DEFAULT_SRAM_RESERVE = 8 * KIB
DEFAULT_FLASH_RESERVE = 64 * KIB
DATA_FILE = os.path.join(os.path.dirname(__file__), "devices.json")


@dataclasses.dataclass(frozen=True)
class Device:
    """A microcontroller's resources and latency model.

    Args:
        name: Device name.
        sram_bytes: Total SRAM.
        flash_bytes: Total flash.
        sram_reserve_bytes: SRAM kept for TFLite Micro's own state and the application; the
            tensor arena gets the rest.
        flash_reserve_bytes: Flash kept for TFLite Micro's code and the application; the model
            gets the rest.
        latency: The per-operator latency model: the fields of
            `mnas.latency.OperatorLatencyModel` (`cycles_per_unit`, `clock_mhz`, `factor`,
            `misaligned_factor`, `ops_cycles`). Defaults to none (then `mops_per_second`).
        mops_per_second: Throughput in millions of ops (2 per multiply-accumulate) per second,
            per backbone name, `default` for any other; used only without `latency`.
        core: The processor core, e.g. `cortex-m4`. Defaults to `""`.
        source: Where the memory and clock figures come from. Defaults to `""`.
        latency_source: `measured: ...` when the latency model was fitted to latencies measured
            on this part, `scaled: ...` when it was scaled from another part. Defaults to `""`.
    """

    name: str
    sram_bytes: int
    flash_bytes: int
    sram_reserve_bytes: int = DEFAULT_SRAM_RESERVE
    flash_reserve_bytes: int = DEFAULT_FLASH_RESERVE
    latency: dict = dataclasses.field(default_factory=dict)
    mops_per_second: dict = dataclasses.field(default_factory=dict)
    core: str = ""
    source: str = ""
    latency_source: str = ""

    def __post_init__(self):
        _check_profile(dataclasses.asdict(self), source=f"device {self.name!r}")

    @property
    def sram_budget_bytes(self):
        """SRAM left for the TFLite Micro tensor arena."""
        return self.sram_bytes - self.sram_reserve_bytes

    @property
    def flash_budget_bytes(self):
        """Flash left for the model flatbuffer."""
        return self.flash_bytes - self.flash_reserve_bytes

    @property
    def latency_model(self):
        """The `OperatorLatencyModel`, or None for a throughput-only profile."""
        return latency.OperatorLatencyModel(**self.latency) if self.latency else None

    def throughput(self, backbone="default"):
        """MOps per second for `backbone` (falls back to the `default` entry)."""
        if backbone in self.mops_per_second:
            return self.mops_per_second[backbone]
        if "default" in self.mops_per_second:
            return self.mops_per_second["default"]
        raise errors.DeviceProfileError(
            f"Invalid value for `backbone`: device {self.name!r} has throughputs for "
            f"{sorted(self.mops_per_second)} and no 'default', received {backbone!r}."
        )

    def latency_ms(self, ops, backbone="default"):
        """Latency in milliseconds from total ops only (a number or a tensor).

        The per-operator model's ops-only form (`OperatorLatencyModel.predict_ops_ms`) when
        the profile has one, else ops / throughput for `backbone`. `model_latency_ms` is the
        full model, for a known graph.
        """
        model = self.latency_model
        if model is not None:
            return model.predict_ops_ms(ops)
        return ops / (self.throughput(backbone) * 1e3)

    def model_latency_ms(self, model, backbone="default"):
        """Latency in milliseconds of a model: a `ModelInfo` or a `.tflite` path or bytes."""
        latency_model = self.latency_model
        if latency_model is not None:
            return latency_model.predict_ms(model)
        from mnas.hardware import estimate, tflite_file

        if not isinstance(model, tflite_file.ModelInfo):
            model = estimate.read_model_info(model)
        return self.latency_ms(estimate.estimate_model_info(model).ops, backbone)

    def to_json(self):
        return dataclasses.asdict(self)


_FIELDS = {
    "name": str,
    "sram_bytes": int,
    "flash_bytes": int,
    "sram_reserve_bytes": int,
    "flash_reserve_bytes": int,
    "latency": dict,
    "mops_per_second": dict,
    "core": str,
    "source": str,
    "latency_source": str,
}
_REQUIRED = ("name", "sram_bytes", "flash_bytes")


def _check_profile(profile, source):
    if not isinstance(profile, dict):
        raise errors.DeviceProfileError(
            f"Invalid device profile in {source}: expected a JSON object, "
            f"received {type(profile).__name__}."
        )
    for field in _REQUIRED:
        if field not in profile:
            raise errors.DeviceProfileError(
                f"Invalid device profile in {source}: missing field `{field}`."
            )
    for field, value in profile.items():
        if field not in _FIELDS:
            raise errors.DeviceProfileError(
                f"Invalid device profile in {source}: unknown field `{field}`, "
                f"expected one of {sorted(_FIELDS)}."
            )
        kind = _FIELDS[field]
        if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
            raise errors.DeviceProfileError(
                f"Invalid value for `{field}` in {source}: expected a whole number of bytes, "
                f"received {value!r}."
            )
        if kind is not int and not isinstance(value, kind):
            raise errors.DeviceProfileError(
                f"Invalid value for `{field}` in {source}: expected a {kind.__name__}, "
                f"received {value!r}."
            )
    for field in ("sram_bytes", "flash_bytes"):
        if profile[field] <= 0:
            raise errors.DeviceProfileError(
                f"Invalid value for `{field}` in {source}: expected a positive number of bytes, "
                f"received {profile[field]}."
            )
    for field, total in (("sram_reserve_bytes", "sram_bytes"),
                         ("flash_reserve_bytes", "flash_bytes")):
        value = profile.get(field, 0)
        if not 0 <= value < profile[total]:
            raise errors.DeviceProfileError(
                f"Invalid value for `{field}` in {source}: expected 0 or more and less than "
                f"`{total}` ({profile[total]}), received {value}."
            )
    if not profile.get("mops_per_second") and not profile.get("latency"):
        raise errors.DeviceProfileError(
            f"Invalid device profile in {source}: expected a `latency` model or "
            f"`mops_per_second` throughputs, received neither.")
    for backbone, mops in profile.get("mops_per_second", {}).items():
        if isinstance(mops, bool) or not isinstance(mops, (int, float)) or mops <= 0:
            raise errors.DeviceProfileError(
                f"Invalid value for `mops_per_second.{backbone}` in {source}: expected a "
                f"positive number of MOps per second, received {mops!r}."
            )
    if profile.get("latency"):
        fields = {f.name for f in dataclasses.fields(latency.OperatorLatencyModel)}
        unknown = sorted(set(profile["latency"]) - fields)
        if unknown or "cycles_per_unit" not in profile["latency"] or \
                "clock_mhz" not in profile["latency"]:
            raise errors.DeviceProfileError(
                f"Invalid value for `latency` in {source}: expected `cycles_per_unit` and "
                f"`clock_mhz` (and optionally {sorted(fields - {'cycles_per_unit', 'clock_mhz'})}"
                f"), received {sorted(profile['latency'])}.")
        try:
            latency.OperatorLatencyModel(**profile["latency"])
        except errors.DeviceProfileError as e:
            raise errors.DeviceProfileError(f"{str(e)[:-1]} in {source}.") from None


def _builtin():
    """The profiles of `devices.json`, each `latency` completed from the fit it names."""
    with open(DATA_FILE) as f:
        table = json.load(f)
    out = {}
    for entry in table["devices"]:
        model = dict(entry["latency"])
        shared = {k: v for k, v in table["fits"][model.pop("fit")].items() if k != "source"}
        out[entry["name"]] = Device(**dict(entry, latency=dict(shared, **model)))
    return out


BUILTIN = _builtin()
# Short names as the paper's tables use them.
ALIASES = {"S": "STM32F446RE", "M": "STM32F746ZG", "L": "STM32F767ZI"}


def calibrate(device, measurements, name=None):
    """A device profile whose latency model is fitted to latencies measured on the board.

    With fewer measurements than operator kinds only a factor on the profile's coefficients
    is fitted (their ratios kept); with more, every coefficient.

    Args:
        device: The profile to start from (a `Device`, a name, or a JSON path).
        measurements: A CSV of `model,ms` rows (`mnas.latency.read_measurements`), or a pair
            (list of `ModelInfo`, list of milliseconds).
        name: The new profile's name. Defaults to the device's.

    Returns:
        A `Device` with the fitted `latency` and `latency_source` "measured: ...".
    """
    device = get_device(device)
    base = device.latency_model
    if base is None:
        raise errors.DeviceProfileError(
            f"Invalid value for `device`: expected a profile with a `latency` model (its "
            f"`clock_mhz`), received {device.name!r} with throughputs only.")
    if isinstance(measurements, (str, os.PathLike)):
        label = os.path.basename(str(measurements))
        models, ms = latency.read_measurements(measurements)
    else:
        label = "measurements"
        models, ms = measurements
    fitted = latency.OperatorLatencyModel.fit(models, ms, base.clock_mhz, prior=base)
    return dataclasses.replace(
        device, name=name or device.name, latency=fitted.to_json(),
        latency_source=f"measured: fitted to {len(ms)} latencies of {label}")


def load_device(path):
    """Loads a device profile from a JSON file.

    Args:
        path: Path of a JSON object with the fields of `Device`.

    Returns:
        A `Device`.

    Raises:
        DeviceProfileError: The file is missing, not JSON, or a field is missing or invalid.
    """
    try:
        with open(path) as f:
            profile = json.load(f)
    except OSError as e:
        raise errors.DeviceProfileError(
            f"Cannot read device profile {path!r}: {e.strerror}.") from None
    except json.JSONDecodeError as e:
        raise errors.DeviceProfileError(
            f"Invalid device profile {path!r}: not JSON ({e.msg} at line {e.lineno}).") from None
    _check_profile(profile, source=repr(str(path)))
    return Device(**profile)


def get_device(device):
    """Returns a `Device` from a `Device`, a built-in name (or S/M/L), or a JSON file path.

    Raises:
        UnknownNameError: `device` is neither a known name nor an existing file.
        DeviceProfileError: The JSON file is invalid.
    """
    if isinstance(device, Device):
        return device
    name = ALIASES.get(device, device)
    if name in BUILTIN:
        return BUILTIN[name]
    if isinstance(device, (str, os.PathLike)) and os.path.isfile(device):
        return load_device(device)
    raise errors.UnknownNameError(
        f"Invalid value for `device`: expected one of {sorted(BUILTIN)}, S/M/L, or the path "
        f"of a JSON profile, received {device!r}."
    )
