"""mnas: hardware-aware differentiable neural architecture search for microcontrollers.

mnas runs on Keras 2 (`tf_keras`), which tensorflow-model-optimization needs: importing mnas
sets `TF_USE_LEGACY_KERAS=1` before TensorFlow is imported, so a script that imports mnas first
gets the same Keras from `tf.keras`.

The public names are loaded on first use (module `__getattr__`), so that `import mnas` and the
`.tflite` path of `python -m mnas.profile` do not import TensorFlow.
"""

import importlib
import os
import sys

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if "tensorflow" in sys.modules and "keras.src" in sys.modules:
    import warnings

    warnings.warn(
        "TensorFlow was imported with Keras 3 before mnas; mnas layers are Keras 2 (tf_keras) "
        "layers. Import mnas before TensorFlow so that `tf.keras` is Keras 2 as well.",
        stacklevel=2,
    )

__version__ = "0.1.0"

_SUBMODULES = (
    "arch", "arch_log", "callbacks", "checkpoints", "costs", "datasets", "deploy", "derivation",
    "devices", "errors", "export", "hardware", "latency", "layers", "plots", "report",
    "search_spaces",
)
# Short names of modules that live in a subpackage: `mnas.estimate`, `from mnas import tflm`.
_ALIASES = {"estimate": "hardware.estimate", "tflm": "hardware.tflm"}

# Public name -> the module that defines it.
_NAMES = {
    "ArchSpec": "arch", "build": "arch", "derive": "arch", "get_architecture": "arch",
    "EpochCheckpoint": "checkpoints",
    "ArchitectureLogger": "arch_log", "ResourceRegularizer": "callbacks",
    "Costs": "costs", "expected_costs": "costs", "minimum_costs": "costs",
    "register_cost": "costs",
    "derive_within": "derivation", "fixed_choices": "derivation",
    "Device": "devices", "get_device": "devices", "load_device": "devices",
    "Estimate": "hardware.estimate", "estimate_keras": "hardware.estimate",
    "estimate_tflite": "hardware.estimate",
    "check_fit": "export", "convert_int8": "export", "quantize_qat": "export",
    "verify": "deploy.verify", "write_c_sources": "export",
    "describe_architecture": "report", "write_report": "report",
    "LatencyModel": "latency", "OperatorLatencyModel": "latency",
    "DepthDecision": "layers", "SearchableConv2D": "layers", "SearchableDense": "layers",
    "SearchableDepthwiseSeparable": "layers", "SearchableInvertedBottleneck": "layers",
    "SearchableSkip": "layers", "searchable_layers": "layers", "width_choices": "layers",
}

__all__ = sorted((*_SUBMODULES, *_ALIASES, *_NAMES))


def __getattr__(name):
    if name in _SUBMODULES or name in _ALIASES:
        return importlib.import_module(f"mnas.{_ALIASES.get(name, name)}")
    if name in _NAMES:
        value = getattr(importlib.import_module(f"mnas.{_NAMES[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mnas' has no attribute {name!r}")


def __dir__():
    return sorted((*globals(), *__all__))
