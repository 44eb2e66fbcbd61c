"""Latency models: ops / device throughput, or a line fitted to latencies measured on a board.

MicroNets found a model's latency on a microcontroller linear in its ops for models of one
backbone (r^2 0.95 to 0.99). Two models follow from that:

- `latency_ms(ops, device, backbone)`: ops divided by the device profile's throughput for the
  backbone (`mnas.devices`);
- `LatencyModel`: a line `ms = slope * ops + intercept` fitted to a CSV of latencies a user
  measured (`model,ms` rows; the model is a `.tflite` path or an architecture name or spec
  path, relative paths being taken from the CSV's directory).

Example:

>>> from mnas import latency
>>> round(latency.latency_ms(30.6e6, "STM32F746ZG", "ds_cnn"), 1)
165.4
>>> fit = latency.LatencyModel.fit([1e6, 2e6, 3e6], [10.0, 18.0, 26.0])
>>> round(fit.predict(4e6), 3), round(fit.r2, 3)
(34.0, 1.0)
"""

import csv
import dataclasses
import os

import numpy as np

from mnas import devices, errors


def latency_ms(ops, device, backbone="default"):
    """Latency in milliseconds of `ops` operations on `device`, from its throughput.

    Args:
        ops: Operations per inference (2 per multiply-accumulate).
        device: A `Device`, a built-in device name (or S/M/L), or a JSON profile path.
        backbone: Backbone name whose throughput to use. Defaults to `"default"`.

    Returns:
        Milliseconds.
    """
    return devices.get_device(device).latency_ms(ops, backbone)


@dataclasses.dataclass(frozen=True)
class LatencyModel:
    """A line fitted to measured latencies: `ms = slope_ms_per_op * ops + intercept_ms`.

    Attributes:
        slope_ms_per_op: Milliseconds per operation.
        intercept_ms: Fixed cost per inference in milliseconds.
        r2: Coefficient of determination of the fit on its data.
        num_points: Measurements the line was fitted to.
    """

    slope_ms_per_op: float
    intercept_ms: float
    r2: float
    num_points: int

    @classmethod
    def fit(cls, ops, ms):
        """Fits a line to (ops, milliseconds) pairs by least squares.

        Raises:
            DeviceProfileError: Fewer than two distinct op counts, or a negative latency.
        """
        ops = np.asarray(ops, dtype=np.float64)
        ms = np.asarray(ms, dtype=np.float64)
        if ops.shape != ms.shape or len(np.unique(ops)) < 2:
            raise errors.DeviceProfileError(
                f"Invalid latency measurements: expected at least two models with different "
                f"op counts, received {len(np.unique(ops))} distinct op counts.")
        if np.any(ms < 0) or not np.all(np.isfinite(ms)):
            raise errors.DeviceProfileError(
                f"Invalid latency measurements: expected non-negative milliseconds, received "
                f"{ms[~(ms >= 0)][:3].tolist()}.")
        slope, intercept = np.polyfit(ops, ms, 1)
        residual = np.sum((ms - (slope * ops + intercept)) ** 2)
        total = np.sum((ms - ms.mean()) ** 2)
        r2 = 1.0 - residual / total if total > 0 else 1.0
        return cls(float(slope), float(intercept), float(r2), len(ops))

    @classmethod
    def from_csv(cls, path):
        """Fits a line to a CSV of `model,ms` rows (a header row is optional).

        Args:
            path: The CSV file. A model is a `.tflite` path, an architecture name (e.g.
                `micronet_kws_s`) or an architecture spec JSON path; relative paths are taken
                from the CSV's directory.

        Raises:
            DeviceProfileError: The file is missing or a row is malformed.
            InvalidModelFileError, UnknownOperatorError, UnknownNameError: A model cannot be
                read.
        """
        try:
            with open(path, newline="") as f:
                rows = [row for row in csv.reader(f) if row and any(c.strip() for c in row)]
        except OSError as e:
            raise errors.DeviceProfileError(
                f"Cannot read latency measurements {str(path)!r}: {e.strerror}.") from None
        if rows and rows[0][-1].strip().lower() in ("ms", "latency_ms", "milliseconds"):
            rows = rows[1:]
        base = os.path.dirname(os.path.abspath(path))
        ops, ms = [], []
        for line, row in enumerate(rows, start=1):
            try:
                value = float(row[1]) if len(row) == 2 else None
            except ValueError:
                value = None
            if value is None:
                raise errors.DeviceProfileError(
                    f"Invalid row {line} of {str(path)!r}: expected `model,ms` with ms a "
                    f"number, received {','.join(row)!r}.")
            ops.append(model_ops(row[0].strip(), base))
            ms.append(value)
        return cls.fit(ops, ms)

    def predict(self, ops):
        """Predicted milliseconds for `ops` operations."""
        return self.slope_ms_per_op * ops + self.intercept_ms

    def to_json(self):
        return dataclasses.asdict(self)


def model_ops(model, base="."):
    """Ops of a model given as a `.tflite` path, or an architecture name or spec JSON path."""
    from mnas.hardware import estimate

    path = model if os.path.isabs(model) else os.path.join(base, model)
    if model.endswith(".tflite"):
        return estimate.estimate_tflite(path).ops
    from mnas import arch

    spec = arch.get_architecture(path if os.path.isfile(path) else model)
    return estimate.estimate_keras(arch.build(spec)).ops
