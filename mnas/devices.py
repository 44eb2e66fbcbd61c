"""Microcontroller profiles: memory, reserves for TFLite Micro and the application, throughput.

Profiles are data. The built-in ones are the three STM32 boards of MicroNets (table 1), with
throughputs implied by its table 4 (MOps per second of latency, per backbone). Custom profiles
are JSON files with the same fields.

Example:

>>> from mnas import devices
>>> dev = devices.get_device("STM32F746ZG")
>>> dev.sram_budget_bytes
319488
>>> round(dev.latency_ms(30.6e6, "ds_cnn"), 1)
165.4
"""

import dataclasses
import json
import os

from mnas import errors

KIB = 1024
# What the paper measured outside the arena: TFLM itself ~4 KB of SRAM and ~37 KB of code; the
# rest of the reserve is left for the application (stack, buffers, drivers).
DEFAULT_SRAM_RESERVE = 8 * KIB
DEFAULT_FLASH_RESERVE = 64 * KIB


@dataclasses.dataclass(frozen=True)
class Device:
    """A microcontroller's resources.

    Args:
        name: Device name.
        sram_bytes: Total SRAM.
        flash_bytes: Total flash.
        sram_reserve_bytes: SRAM kept for TFLite Micro's own state and the application; the
            tensor arena gets the rest.
        flash_reserve_bytes: Flash kept for TFLite Micro's code and the application; the model
            gets the rest.
        mops_per_second: Throughput in millions of ops (2 per multiply-accumulate) per second,
            per backbone name (`ds_cnn`, `mobilenet_v2`, ...). The key `default` is used for a
            backbone without an entry.
    """

    name: str
    sram_bytes: int
    flash_bytes: int
    sram_reserve_bytes: int = DEFAULT_SRAM_RESERVE
    flash_reserve_bytes: int = DEFAULT_FLASH_RESERVE
    mops_per_second: dict = dataclasses.field(default_factory=dict)

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
        """Latency estimate in milliseconds for `ops` operations (a number or a tensor)."""
        return ops / (self.throughput(backbone) * 1e3)

    def to_json(self):
        return dataclasses.asdict(self)


_FIELDS = {
    "name": str,
    "sram_bytes": int,
    "flash_bytes": int,
    "sram_reserve_bytes": int,
    "flash_reserve_bytes": int,
    "mops_per_second": dict,
}
_REQUIRED = ("name", "sram_bytes", "flash_bytes", "mops_per_second")


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
    if not profile["mops_per_second"]:
        raise errors.DeviceProfileError(
            f"Invalid value for `mops_per_second` in {source}: expected at least one "
            f"backbone's throughput, received {{}}."
        )
    for backbone, mops in profile["mops_per_second"].items():
        if isinstance(mops, bool) or not isinstance(mops, (int, float)) or mops <= 0:
            raise errors.DeviceProfileError(
                f"Invalid value for `mops_per_second.{backbone}` in {source}: expected a "
                f"positive number of MOps per second, received {mops!r}."
            )


BUILTIN = {
    "STM32F446RE": Device(
        "STM32F446RE", sram_bytes=128 * KIB, flash_bytes=512 * KIB,
        mops_per_second={"ds_cnn": 73.0, "mobilenet_v2": 40.0, "default": 60.0}),
    "STM32F746ZG": Device(
        "STM32F746ZG", sram_bytes=320 * KIB, flash_bytes=1024 * KIB,
        mops_per_second={"ds_cnn": 185.0, "mobilenet_v2": 100.0, "default": 150.0}),
    "STM32F767ZI": Device(
        "STM32F767ZI", sram_bytes=512 * KIB, flash_bytes=2048 * KIB,
        mops_per_second={"ds_cnn": 190.0, "mobilenet_v2": 105.0, "default": 155.0}),
}
# Short names as the paper's tables use them.
ALIASES = {"S": "STM32F446RE", "M": "STM32F746ZG", "L": "STM32F767ZI"}


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
