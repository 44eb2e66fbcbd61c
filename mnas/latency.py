"""Latency models: a per-operator model of cycles, and a line fitted to measured latencies.

MicroNets found whole-model latency linear in ops within one backbone, with a different slope
per backbone, and single layers not linear in ops: depthwise convolutions cost more per op
than conv2d and fully connected layers, and channel counts that are not multiples of 4 are
much slower (138 -> 140 channels: 37.5 -> 21.5 ms for one layer). The per-operator model
(`OperatorLatencyModel`) follows that: the cycles of a model are

    factor * sum over operators of cycles_per_unit[kind] * work * (misaligned_factor if the
    operator's channels are not multiples of 4 else 1)

with `work` the multiply-accumulates of CONV_2D (`conv`), DEPTHWISE_CONV_2D (`depthwise`)
and FULLY_CONNECTED (`fully_connected`), the elements of the other operators (`elementwise`),
and 1 per operator (`operators`); milliseconds are cycles / clock. It needs no backbone: what
it needs is in the `.tflite` itself, so search, derivation, report and `mnas.profile` agree.
The coefficients of each core are fitted to measured latencies (`fit`, `from_csv`; the
built-in ones to MicroNets' table 4, `benchmarks/latency_boards.py`) and belong to the device
profile (`mnas.devices`). `expected_latency_ms` is the same model as a TensorFlow function of
expected work per kind, for the differentiable search.

Example:

>>> from mnas import latency
>>> model = latency.OperatorLatencyModel({"conv": 1.0, "depthwise": 10.0}, clock_mhz=100)
>>> layers = [latency.LayerWork("conv", 1e6, True), latency.LayerWork("depthwise", 1e5, True)]
>>> round(model.predict_ms(layers), 3)
20.0
>>> fit = latency.LatencyModel.fit([1e6, 2e6, 3e6], [10.0, 18.0, 26.0])
>>> round(fit.predict(4e6), 3), round(fit.r2, 3)
(34.0, 1.0)
"""

import csv
import dataclasses
import os

import numpy as np

from mnas import errors

KINDS = ("conv", "depthwise", "fully_connected", "elementwise", "operators")
# One layer of 138 channels took 37.5 ms and one of 140 took 21.5 ms (MicroNets, section 4):
# per multiply-accumulate, a width that is not a multiple of 4 costs 37.5 / (21.5 * 138 / 140)
# = 1.77 times as much. Table 4's models all have widths in multiples of 4, so this factor
# comes from that one measurement, not from a fit; `fit` refits it when the data vary it.
MISALIGNED_FACTOR = 1.77
_MAC_KINDS = {"CONV_2D": "conv", "DEPTHWISE_CONV_2D": "depthwise",
              "FULLY_CONNECTED": "fully_connected"}


@dataclasses.dataclass(frozen=True)
class LayerWork:
    """One operator as the per-operator model sees it.

    Attributes:
        kind: One of `KINDS` except `operators`.
        work: Multiply-accumulates (conv kinds) or elements (elementwise).
        aligned: Whether its channel counts are multiples of 4.
    """

    kind: str
    work: float
    aligned: bool = True


def _aligned(*channels):
    # One input channel (a stem over a mono spectrogram or grayscale image) has its own kernel
    # path; it is not a misaligned SIMD loop.
    return all(c % 4 == 0 for c in channels if c > 1)


def layer_work(model):
    """Per-operator work of a `mnas.hardware.tflite_file.ModelInfo` (a parsed or predicted
    flatbuffer).

    Returns:
        A list of `LayerWork`, one per operator, in execution order.
    """
    from mnas.hardware.operators import KERNELS

    out = []
    for op in model.operators:
        ops = KERNELS[op.name].ops(model, op)
        kind = _MAC_KINDS.get(op.name)
        if kind is None:
            out.append(LayerWork("elementwise", float(ops)))
            continue
        source = model.tensors[op.inputs[0]].shape
        result = model.tensors[op.outputs[0]].shape
        in_c = source[-1] if source else 1
        out_c = result[-1] if result else 1
        # A classifier's outputs are its classes: not a channel loop CMSIS-NN vectorises.
        aligned = _aligned(in_c) if kind == "fully_connected" else _aligned(in_c, out_c)
        out.append(LayerWork(kind, ops / 2.0, aligned))
    return out


def work_by_kind(layers, misaligned_factor=MISALIGNED_FACTOR):
    """Sums `LayerWork`s per kind, misaligned work weighted by `misaligned_factor`.

    Returns:
        {kind: work} for every kind of `KINDS`.
    """
    totals = dict.fromkeys(KINDS, 0.0)
    for layer in layers:
        totals[layer.kind] += layer.work * (1.0 if layer.aligned else misaligned_factor)
        totals["operators"] += 1.0
    return totals


@dataclasses.dataclass(frozen=True)
class OperatorLatencyModel:
    """Cycles per unit of work per operator kind, on a core at `clock_mhz`.

    Args:
        cycles_per_unit: {kind: cycles} for kinds of `KINDS`; missing kinds cost nothing.
        clock_mhz: Core clock in MHz.
        factor: Multiplies every coefficient (a board's cycles relative to the core's).
            Defaults to `1.0`.
        misaligned_factor: Cost multiplier of work whose channels are not multiples of 4.
            Defaults to `MISALIGNED_FACTOR`.
        ops_cycles: Cycles per op (2 per multiply-accumulate) of a model of the fitted
            kind as a whole, for callers that only have a model's total ops. Defaults to the
            conv coefficient / 2.
    """

    cycles_per_unit: dict
    clock_mhz: float
    factor: float = 1.0
    misaligned_factor: float = MISALIGNED_FACTOR
    ops_cycles: float | None = None

    def __post_init__(self):
        unknown = sorted(set(self.cycles_per_unit) - set(KINDS))
        if unknown:
            raise errors.DeviceProfileError(
                f"Invalid value for `cycles_per_unit`: expected kinds among {list(KINDS)}, "
                f"received {unknown}.")
        for name, value in [("clock_mhz", self.clock_mhz), ("factor", self.factor),
                            ("misaligned_factor", self.misaligned_factor)]:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise errors.DeviceProfileError(
                    f"Invalid value for `{name}`: expected a positive number, received "
                    f"{value!r}.")

    def _ms_per_cycle(self):
        return self.factor / (self.clock_mhz * 1e3)

    def predict_ms(self, model):
        """Milliseconds of a model: a `ModelInfo`, a list of `LayerWork`, or a `.tflite`."""
        if isinstance(model, (bytes, bytearray, str, os.PathLike)):
            from mnas.hardware import estimate

            model = estimate.read_model_info(model)
        layers = model if isinstance(model, list) else layer_work(model)
        totals = work_by_kind(layers, self.misaligned_factor)
        cycles = sum(self.cycles_per_unit.get(k, 0.0) * v for k, v in totals.items())
        return float(cycles * self._ms_per_cycle())

    def predict_ops_ms(self, ops):
        """Milliseconds from total ops only (a number or a tensor); see `ops_cycles`."""
        per_op = (self.ops_cycles if self.ops_cycles is not None
                  else self.cycles_per_unit.get("conv", 0.0) / 2.0)
        return ops * (per_op * self._ms_per_cycle())

    def to_json(self):
        return dataclasses.asdict(self)

    @classmethod
    def fit(cls, models, ms, clock_mhz, prior=None, fit_misaligned=False):
        """Fits cycles per unit of work to measured latencies (non-negative least squares).

        Relative errors are minimised, so small and large models weigh alike. With fewer
        measurements than kinds, only a factor on `prior`'s coefficients is fitted.

        Args:
            models: Per model, a `ModelInfo` or a list of `LayerWork` (a one-layer model is a
                per-layer measurement).
            ms: Measured milliseconds per model.
            clock_mhz: The board's clock in MHz.
            prior: An `OperatorLatencyModel` whose coefficients keep their ratios when the
                data are too few. Defaults to `None` (fit every coefficient).
            fit_misaligned: Whether to fit `misaligned_factor` too (needs misaligned layers
                in the data). Defaults to `False`.

        Raises:
            DeviceProfileError: No measurement, a non-positive latency, or lengths differ.
        """
        from scipy.optimize import nnls

        ms = np.asarray(ms, dtype=np.float64)
        layers = [m if isinstance(m, list) else layer_work(m) for m in models]
        if len(layers) != len(ms) or not len(ms) or np.any(~(ms > 0)):
            raise errors.DeviceProfileError(
                f"Invalid latency measurements: expected one positive latency per model, "
                f"received {ms.tolist()[:5]} for {len(layers)} models.")
        ms_per_cycle = 1.0 / (clock_mhz * 1e3)
        misaligned = prior.misaligned_factor if prior is not None else MISALIGNED_FACTOR
        candidates = [misaligned] if not fit_misaligned else np.linspace(1.0, 3.0, 21)
        best = None
        for factor in candidates:
            x = np.array([[work_by_kind(ls, factor)[k] for k in KINDS] for ls in layers])
            a = x * ms_per_cycle / ms[:, None]
            if prior is not None and len(ms) < len(KINDS):
                base = np.array([prior.cycles_per_unit.get(k, 0.0) for k in KINDS])
                scale, _ = nnls((a @ base)[:, None], np.ones(len(ms)))
                coefficients = base * scale[0]
            else:
                coefficients, _ = nnls(a, np.ones(len(ms)))
            error = np.sum((a @ coefficients - 1.0) ** 2)
            if best is None or error < best[0]:
                best = (error, factor, coefficients, x)
        _, factor, coefficients, x = best
        ops = 2.0 * (x[:, 0] + x[:, 1] + x[:, 2]) + x[:, 3]
        cycles = x @ coefficients
        ops_cycles = float(np.sum(cycles * ops / ms ** 2) / np.sum(ops * ops / ms ** 2))
        return cls({k: float(c) for k, c in zip(KINDS, coefficients)}, float(clock_mhz),
                   misaligned_factor=float(factor), ops_cycles=ops_cycles)

    @classmethod
    def from_csv(cls, path, clock_mhz, prior=None):
        """Fits the model to a CSV of `model,ms` rows; see `read_measurements`."""
        models, ms = read_measurements(path)
        return cls.fit(models, ms, clock_mhz, prior=prior)


def expected_latency_ms(model, work):
    """The per-operator model as a differentiable function of expected work per kind.

    Args:
        model: An `OperatorLatencyModel` (a device's `latency`).
        work: {kind: scalar tensor or float} of expected work: multiply-accumulates per conv
            kind (misaligned ones already weighted by `model.misaligned_factor`, e.g.
            `sum_k p_k * macs_k * (1 if width_k % 4 == 0 else misaligned_factor)`), elements
            for `elementwise`, expected operator count for `operators`.

    Returns:
        Expected milliseconds (a tensor when `work` holds tensors).
    """
    unknown = sorted(set(work) - set(KINDS))
    if unknown:
        raise ValueError(f"Invalid value for `work`: expected kinds among {list(KINDS)}, "
                         f"received {unknown}.")
    total = 0.0
    for kind, value in work.items():
        total = total + value * model.cycles_per_unit.get(kind, 0.0)
    return total * model._ms_per_cycle()


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
        """Fits a line to a CSV of `model,ms` rows; see `read_measurements`."""
        from mnas.hardware import estimate

        models, ms = read_measurements(path)
        return cls.fit([estimate.estimate_model_info(m).ops for m in models], ms)

    def predict(self, ops):
        """Predicted milliseconds for `ops` operations."""
        return self.slope_ms_per_op * ops + self.intercept_ms

    def to_json(self):
        return dataclasses.asdict(self)


def read_measurements(path):
    """Reads a CSV of `model,ms` rows (a header row is optional).

    A model is a `.tflite` path, an architecture name (e.g. `micronet_kws_s`) or an
    architecture spec JSON path; relative paths are taken from the CSV's directory.

    Returns:
        (list of `ModelInfo`, list of milliseconds).

    Raises:
        DeviceProfileError: The file is missing or a row is malformed.
        InvalidModelFileError, UnknownOperatorError, UnknownNameError: A model cannot be read.
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
    models, ms = [], []
    for line, row in enumerate(rows, start=1):
        try:
            value = float(row[1]) if len(row) == 2 else None
        except ValueError:
            value = None
        if value is None:
            raise errors.DeviceProfileError(
                f"Invalid row {line} of {str(path)!r}: expected `model,ms` with ms a "
                f"number, received {','.join(row)!r}.")
        models.append(model_info(row[0].strip(), base))
        ms.append(value)
    return models, ms


def model_info(model, base="."):
    """The `ModelInfo` of a `.tflite` path, or of an architecture name or spec JSON path."""
    from mnas.hardware import estimate

    path = model if os.path.isabs(model) else os.path.join(base, model)
    if model.endswith(".tflite"):
        return estimate.read_model_info(path)
    from mnas import arch

    from mnas.hardware import keras_graph

    spec = arch.get_architecture(path if os.path.isfile(path) else model)
    return keras_graph.keras_model_info(arch.build(spec))[0]


def model_ops(model, base="."):
    """Ops of a model given as a `.tflite` path, or an architecture name or spec JSON path."""
    from mnas.hardware import estimate

    return estimate.estimate_model_info(model_info(model, base)).ops


def latency_ms(model, device):
    """Latency in milliseconds of a model on a device, from the device's latency model.

    Args:
        model: A `ModelInfo`, a `.tflite` path or bytes, or a number of ops (then the
            ops-only form of the model is used).
        device: A `Device`, a built-in device name (or S/M/L), or a JSON profile path.

    Returns:
        Milliseconds.
    """
    from mnas import devices

    device = devices.get_device(device)
    if isinstance(model, (int, float, np.number)):
        return device.latency_ms(model)
    return device.model_latency_ms(model)


def fit_boards(measurements, reference, iterations=50):
    """Fits one set of coefficients shared by several boards, with a factor per board.

    Few boards have many measurements: sharing the per-kind coefficients and fitting one
    factor per board (its cycles relative to `reference`'s) lets a board with three
    measurements use what the others show. Alternates non-negative least squares of the
    coefficients (relative errors) and the closed-form factors.

    Args:
        measurements: {board: (clock_mhz, [per model `ModelInfo` or `LayerWork` list],
            [milliseconds])}.
        reference: The board whose factor is 1.
        iterations: Alternations. Defaults to `50`.

    Returns:
        {board: `OperatorLatencyModel`}.
    """
    from scipy.optimize import nnls

    boards = sorted(measurements)
    rows = []
    for board in boards:
        clock, models, ms = measurements[board]
        for model, value in zip(models, ms):
            layers = model if isinstance(model, list) else layer_work(model)
            totals = work_by_kind(layers)
            rows.append((board, np.array([totals[k] for k in KINDS]) / (clock * 1e3), value))
    factors = dict.fromkeys(boards, 1.0)
    coefficients = np.zeros(len(KINDS))
    for _ in range(iterations):
        a = np.array([x * factors[b] / ms for b, x, ms in rows])
        coefficients, _ = nnls(a, np.ones(len(rows)))
        for board in boards:
            if board == reference:
                continue
            p = np.array([x @ coefficients / ms for b, x, ms in rows if b == board])
            factors[board] = float(np.sum(p) / np.sum(p * p)) if np.any(p) else 1.0
    # The ops-only form: cycles per op (reference board) over all the models, fitted in
    # relative terms like the rest.
    work = np.array([x * measurements[b][0] * 1e3 for b, x, _ in rows])
    ops = 2.0 * work[:, :3].sum(axis=1) + work[:, 3]
    cycles = work @ coefficients
    ops_cycles = float(np.sum(cycles / ops) / len(rows))
    return {board: OperatorLatencyModel(
        {k: float(c) for k, c in zip(KINDS, coefficients)}, float(measurements[board][0]),
        factors[board], ops_cycles=ops_cycles) for board in boards}
