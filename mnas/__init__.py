"""mnas: hardware-aware differentiable neural architecture search for microcontrollers.

mnas runs on Keras 2 (`tf_keras`), which tensorflow-model-optimization needs: importing mnas
sets `TF_USE_LEGACY_KERAS=1` before TensorFlow is imported, so a script that imports mnas first
gets the same Keras from `tf.keras`.
"""

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

from mnas import (  # noqa: E402
    arch,
    checkpoints,
    costs,
    datasets,
    devices,
    errors,
    estimate,
    export,
    latency,
    layers,
    search_spaces,
    tflm,
)
from mnas.arch import ArchSpec, build, derive, get_architecture  # noqa: E402
from mnas.checkpoints import EpochCheckpoint  # noqa: E402
from mnas.callbacks import ArchitectureLogger, ResourceRegularizer  # noqa: E402
from mnas.costs import Costs, expected_costs, minimum_costs, register_cost  # noqa: E402
from mnas.devices import Device, get_device, load_device  # noqa: E402
from mnas.estimate import Estimate, estimate_keras, estimate_tflite  # noqa: E402
from mnas.export import (  # noqa: E402
    check_fit,
    convert_int8,
    quantize_qat,
    verify,
    write_c_sources,
    write_report,
)
from mnas.latency import LatencyModel  # noqa: E402
from mnas.layers import (  # noqa: E402
    DepthDecision,
    SearchableConv2D,
    SearchableDense,
    SearchableDepthwiseSeparable,
    SearchableInvertedBottleneck,
    SearchableSkip,
    searchable_layers,
    width_choices,
)

__version__ = "0.1.0"

__all__ = [
    "ArchSpec",
    "ArchitectureLogger",
    "Costs",
    "DepthDecision",
    "Device",
    "EpochCheckpoint",
    "Estimate",
    "LatencyModel",
    "ResourceRegularizer",
    "SearchableConv2D",
    "SearchableDense",
    "SearchableDepthwiseSeparable",
    "SearchableInvertedBottleneck",
    "SearchableSkip",
    "arch",
    "build",
    "check_fit",
    "checkpoints",
    "convert_int8",
    "costs",
    "datasets",
    "derive",
    "devices",
    "errors",
    "estimate",
    "estimate_keras",
    "estimate_tflite",
    "expected_costs",
    "export",
    "get_architecture",
    "get_device",
    "latency",
    "layers",
    "load_device",
    "minimum_costs",
    "quantize_qat",
    "register_cost",
    "search_spaces",
    "searchable_layers",
    "tflm",
    "verify",
    "width_choices",
    "write_c_sources",
    "write_report",
]
