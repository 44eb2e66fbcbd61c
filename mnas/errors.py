"""Errors a user of mnas can meet, one class each."""


class MnasError(Exception):
    """Base class of the errors mnas raises on purpose."""


class DeviceProfileError(MnasError, ValueError):
    """A device profile (built in or loaded from JSON) is malformed or unknown."""


class UnknownNameError(MnasError, KeyError):
    """A name (architecture, device, task, search space) is not known."""

    def __str__(self):
        return str(self.args[0]) if self.args else ""


class BudgetUnreachableError(MnasError, ValueError):
    """No architecture in the search space can meet a resource budget."""


class UnsupportedLayerError(MnasError, ValueError):
    """A layer cannot be costed, derived or quantized by mnas."""


class InvalidModelFileError(MnasError, ValueError):
    """A file is not a (complete) TFLite flatbuffer."""


class UnknownOperatorError(MnasError, ValueError):
    """A TFLite model holds an operator mnas has no estimate for."""


class DatasetError(MnasError, FileNotFoundError):
    """A dataset directory is missing or is not in the expected layout."""


class RunDirectoryError(MnasError):
    """An output directory is in use by another run, or holds a run with other settings."""


class CorruptRunFileError(MnasError):
    """A file of a run (state, checkpoint, output) is damaged and cannot be resumed from."""


class DiskFullError(MnasError, OSError):
    """A file could not be written because no space is left on its device."""
