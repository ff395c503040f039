"""Calibration: fit a `HardwareSpec`'s efficiencies and overheads to measured step times.

The cost model predicts the time of one forward pass from FLOPs, bytes and a few
hardware parameters (``specsim.step_time``). ``calibrate`` finds the parameters
under which those predictions best match measured times: it minimises the mean
squared error of ``log(predicted) - log(measured)`` (a relative error, so a 100 us
draft step counts as much as a 100 ms prefill) over log-space parameters with
optax Adam, then polishes with L-BFGS, from several random restarts at once, all
inside one ``jit`` (``lax.scan`` over steps, ``vmap`` over restarts). Every parameter
is the exponential of an unconstrained one, so it stays positive (overheads are
scaled by the median measured time). Only peak x efficiency enters the cost model, so
an efficiency fitted above 1 is folded into its peak (the micro-benchmark that
measured the peak fell short of what the device sustains) and reported as 1.

The fitted spec, roofline sharpness included, is saved with ``specsim.save_hardware`` as a
``[hardware."Name"]`` TOML file that ``specsim.hardware.get(path)`` reads back exactly.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from ._cost import step_time
from .hardware import FIELDS, HardwareSpec
from .hardware._fields import FOLLOWS, MIN_ROOFLINE_SHARPNESS
from .hardware._roofline import check_smooth
from .models import TransformerSpec

__all__ = [
    "DEFAULT_FIT",
    "LOCAL_FIT",
    "SHARPNESS",
    "WITH_SHARPNESS",
    "CalibrationResult",
    "StepTimeData",
    "calibrate",
    "predict_step_times",
]

DEFAULT_FIT = ("compute_efficiency", "memory_efficiency", "kernel_launch_s", "step_overhead_s")
# `HardwareSpec.roofline_sharpness`, p of the roofline's p-norm max: how far compute and
# memory traffic of one kernel overlap (inf: perfect overlap, the hard roofline; 1: their
# sum; < 1: mutual interference). Fitted like the other fields and saved with the spec.
SHARPNESS = "roofline_sharpness"
WITH_SHARPNESS = (*DEFAULT_FIT, SHARPNESS)
# What `specsim calibrate` and `specsim validate` fit on a measured grid, which varies
# the context and so pins down how fast attention runs next to the weight matmuls: its
# KV reads and its FLOPs apart (on a CPU the two differ 20-35x: see
# `HardwareSpec.attention_compute_efficiency`).
# And the extra weight passes of multi-row matmuls (`HardwareSpec.gemm_weight_passes`):
# the grid's one-row decode passes against its multi-row passes pin them down.
LOCAL_FIT = (
    *DEFAULT_FIT,
    "attention_efficiency",
    "attention_compute_efficiency",
    "gemm_weight_passes",
    SHARPNESS,
)
# Efficiencies multiplying a peak: one fitted above 1 is folded into the peak.
_PEAK_EFFICIENCIES = ("compute_efficiency", "memory_efficiency")
# Fractions in (0, 1] that are not folded into a peak: fitted through a logistic.
_FRACTIONS = ("attention_efficiency", "attention_compute_efficiency")
_OVERHEADS = ("kernel_launch_s", "step_overhead_s", "interconnect_latency_s")
# Counts >= 0, fitted in log space above _COUNT_FLOOR; a fit at the floor is saved as 0.
_COUNTS = ("gemm_weight_passes",)
_COUNT_FLOOR = 1e-3
FITTABLE = (*_PEAK_EFFICIENCIES, *_FRACTIONS, *_OVERHEADS, *_COUNTS, SHARPNESS)
# Range of random restarts for the sharpness, and its start where nothing else says.
_SHARPNESS_RANGE = (0.3, 16.0)
_START_SHARPNESS = 4.0
# Bounds of the log-space parameters. Measurements that do not pin a field down (too few
# passes, or all faster than any prediction) would push it without limit: a fit of four
# passes once drove a peak efficiency to 7e25, whose peak overflowed float32. Within
# these bounds every fitted spec stays finite in float32 (a peak at most 1e6 x the
# nominal one, an overhead within 1e-9..1e3 x the median pass), and the plausibility
# check (`_plausibility.implausible_rates`) flags what sits far outside the micro-benchmarks.
_LOG_EFFICIENCY_BOUNDS = (math.log(1e-6), math.log(1e6))
_LOG_OVERHEAD_BOUNDS = (math.log(1e-9), math.log(1e3))
_LOG_SHARPNESS_BOUNDS = (math.log(1e-6), math.log(1e4))
_LOG_COUNT_BOUNDS = (math.log(_COUNT_FLOOR), math.log(100.0))
# The L-BFGS polish stops a restart whose loss gradient (norm over the log-space
# parameters) is this small.
_POLISH_GRADIENT_TOL = 1e-6
# ... or whose L-BFGS step is this small relative to its parameters (float32 resolution).
_POLISH_STEP_TOL = 1e-7


@struct.dataclass
class StepTimeData:
    """Measured forward passes: one stacked pytree, leaves of shape ``(n,)``.

    Attributes:
        model: `TransformerSpec` whose leaves are per-point arrays (one compute dtype).
        batch, new_tokens, context: the pass of each point.
        time_s: its measured wall time, s.

    Examples:
        >>> from specsim import models
        >>> small = models.get("llama-68m")
        >>> data = StepTimeData.from_points([(small, 1, 1, 128, 1e-3), (small, 8, 1, 128, 2e-3)])
        >>> len(data)
        2
    """

    model: TransformerSpec
    batch: Any
    new_tokens: Any
    context: Any
    time_s: Any

    def __len__(self) -> int:
        return int(np.shape(self.time_s)[0])

    @classmethod
    def from_points(cls, points) -> StepTimeData:
        """From ``(TransformerSpec, batch, new_tokens, context, time_s)`` tuples.

        Raises:
            ValueError: not an iterable of such tuples, no points, mixed compute dtypes or
                a non-positive time.
        """
        try:
            if isinstance(points, str | bytes):
                raise TypeError
            points = [tuple(p) for p in points]
        except TypeError:
            raise ValueError(
                f"points {points!r}: not a sequence of (TransformerSpec, batch, new_tokens, "
                "context, time_s) tuples"
            ) from None
        if not points:
            raise ValueError("no step-time measurements to calibrate on (empty grid)")
        for i, p in enumerate(points):
            if len(p) != 5 or not isinstance(p[0], TransformerSpec):
                first = type(p[0]).__name__ if p else "nothing"
                raise ValueError(
                    f"point {i}: {len(p)} items, first a {first}; valid: (TransformerSpec, "
                    "batch, new_tokens, context, time_s)"
                )
        specs = [p[0] for p in points]
        dtypes = {s.compute_dtype for s in specs}
        if len(dtypes) != 1:
            raise ValueError(f"all measurements must share one compute dtype, got {dtypes}")
        model = jax.tree.map(lambda *xs: jnp.asarray(xs, jnp.float32), *specs)
        columns = np.asarray([p[1:] for p in points], dtype=np.float64)
        return cls(
            model=model,
            batch=jnp.asarray(columns[:, 0], jnp.float32),
            new_tokens=jnp.asarray(columns[:, 1], jnp.float32),
            context=jnp.asarray(columns[:, 2], jnp.float32),
            time_s=jnp.asarray(columns[:, 3], jnp.float32),
        ).validate()

    @classmethod
    def from_frame(cls, frame, time_column: str = "median_s") -> StepTimeData:
        """From a DataFrame of ``specsim.measure.measure_step_times`` (or the same columns).

        Raises:
            ValueError: an empty frame or missing columns.
        """
        from .measure._timing import ARCHITECTURE_COLUMNS, config_from_columns

        if not hasattr(frame, "columns") or not hasattr(frame, "iterrows"):
            raise ValueError(
                f"measurements {type(frame).__name__}: not a table; valid: a DataFrame of "
                "specsim.measure.measure_step_times, or a StepTimeData"
            )
        if len(frame) == 0:
            raise ValueError("no step-time measurements to calibrate on (empty grid)")
        needed = {"batch", "new_tokens", "context", time_column, *ARCHITECTURE_COLUMNS}
        missing = needed - set(frame.columns)
        if missing:
            raise ValueError(
                f"measurements {sorted(missing)}: columns missing; valid: a table with "
                f"{', '.join(sorted(needed))}"
            )
        points = []
        for index, row in frame.iterrows():
            try:
                points.append(
                    (
                        config_from_columns(row).to_spec(),
                        float(row["batch"]),
                        float(row["new_tokens"]),
                        float(row["context"]),
                        float(row[time_column]),
                    )
                )
            except (TypeError, ValueError) as e:
                raise ValueError(
                    f"measurement row {index}: unreadable ({e}); valid: numbers in every "
                    "size, batch, token and time column"
                ) from None
        return cls.from_points(points)

    def validate(self) -> StepTimeData:
        """Raises ``ValueError`` unless every time is positive and finite."""
        times = np.asarray(self.time_s)
        if times.size == 0:
            raise ValueError("no step-time measurements to calibrate on (empty grid)")
        if not np.all(np.isfinite(times) & (times > 0)):
            raise ValueError("measured step times must be positive and finite")
        # A row with a negative batch or context is no measurement: it would bend the fit.
        for name, ok, valid in (
            ("batch", lambda v: v > 0, "> 0"),
            ("new_tokens", lambda v: v > 0, "> 0"),
            ("context", lambda v: v >= 0, ">= 0"),
        ):
            values = np.asarray(getattr(self, name), np.float64)
            bad = np.flatnonzero(~(np.isfinite(values) & ok(values)))
            if bad.size:
                raise ValueError(
                    f"{name} {values[bad[0]]:g}: out of range in measurement row {bad[0]}; "
                    f"valid: finite numbers {valid}"
                )
        return self


def _predict(data: StepTimeData, hardware: HardwareSpec, smooth=None):
    return jax.vmap(lambda m, b, n, c: step_time(m, hardware, b, n, c, smooth=smooth).time_s)(
        data.model, data.batch, data.new_tokens, data.context
    )


_predict_jit = jax.jit(_predict, static_argnames=("smooth",))


def predict_step_times(data: StepTimeData, hardware: HardwareSpec, smooth: float | None = None):
    """``specsim.step_time`` of every point of ``data`` on ``hardware``, s (shape ``(n,)``).

    Jitted; ``smooth`` is static.

    Args:
        data: the points.
        hardware: the chip (its ``roofline_sharpness`` included).
        smooth: ``None``, or a roofline sharpness to smooth at least this much
            (p = min(``hardware.roofline_sharpness``, ``smooth``)).

    Raises:
        ValueError: an invalid ``smooth``.
    """
    return _predict_jit(data, hardware, check_smooth(smooth))


@struct.dataclass
class CalibrationResult:
    """A fitted `HardwareSpec` and how well it explains the measurements.

    Attributes:
        hardware: the fitted spec (the starting spec with the fitted fields replaced).
        initial_hardware: the spec the fit started from (nominal peaks).
        measured_s: (n,) measured times, s.
        predicted_s: (n,) times predicted by the fitted spec, s.
        loss: final mean squared log error.
        loss_history: (steps,) best restart's loss per Adam step.
        fitted: names of the fitted fields.
    """

    hardware: HardwareSpec
    initial_hardware: HardwareSpec
    measured_s: Any
    predicted_s: Any
    loss: Any
    loss_history: Any
    fitted: tuple = struct.field(pytree_node=False)

    @property
    def smooth(self) -> float | None:
        """``hardware.roofline_sharpness`` as a number, ``None`` for the hard roofline.

        Kept for callers that pass it on as ``smooth=``; the fitted spec carries it.
        """
        p = self.hardware.roofline_sharpness
        return None if p is None or float(p) == math.inf else float(p)

    @property
    def relative_error(self):
        """(predicted - measured) / measured per point."""
        return np.asarray(self.predicted_s) / np.asarray(self.measured_s) - 1.0

    @property
    def mape(self) -> float:
        """Mean absolute percentage error on the fitted points, %."""
        return float(100.0 * np.mean(np.abs(self.relative_error)))

    def parameters(self) -> dict[str, float]:
        """The fitted values (SI units) by field name."""
        return {name: float(getattr(self.hardware, name)) for name in self.fitted}


def _check_fit(fit) -> tuple[str, ...]:
    fit = tuple(fit)
    if not fit:
        raise ValueError("nothing to fit: give at least one field name")
    unknown = [name for name in fit if name not in FITTABLE]
    if unknown:
        raise ValueError(f"cannot fit {unknown}; fittable fields: {', '.join(FITTABLE)}")
    if len(set(fit)) != len(fit):
        raise ValueError(f"duplicate field names in fit: {fit}")
    return fit


def _to_params(values, fit, time_scale_s):
    """Field values (SI) -> unconstrained log-space parameters."""
    out = []
    for name, value in zip(fit, values, strict=True):
        value = jnp.asarray(value, jnp.float32)
        if name in _FRACTIONS:
            value = jnp.clip(value, 1e-3, 1.0 - 1e-3)  # Adam moves a small gradient too
            out.append(jnp.log(value) - jnp.log1p(-value))
        elif name == SHARPNESS:  # p = MIN + exp(param) never falls below the minimum
            out.append(jnp.log(jnp.maximum(value - MIN_ROOFLINE_SHARPNESS, 1e-6)))
        elif name in _PEAK_EFFICIENCIES:
            out.append(jnp.log(jnp.maximum(value, 1e-6)))
        elif name in _COUNTS:
            out.append(jnp.log(jnp.maximum(value, _COUNT_FLOOR)))
        else:
            out.append(jnp.log(jnp.maximum(value, 1e-12) / time_scale_s))
    return jnp.stack(out)


def _to_fields(params, fit, time_scale_s) -> dict[str, Any]:
    """Log-space parameters -> field values (SI)."""
    fields = {}
    for i, name in enumerate(fit):
        if name in _FRACTIONS:
            fields[name] = jax.nn.sigmoid(params[i])
        elif name == SHARPNESS:
            fields[name] = MIN_ROOFLINE_SHARPNESS + jnp.exp(
                jnp.clip(params[i], *_LOG_SHARPNESS_BOUNDS)
            )
        elif name in _PEAK_EFFICIENCIES:
            fields[name] = jnp.exp(jnp.clip(params[i], *_LOG_EFFICIENCY_BOUNDS))
        elif name in _COUNTS:
            fields[name] = jnp.exp(jnp.clip(params[i], *_LOG_COUNT_BOUNDS))
        else:
            fields[name] = time_scale_s * jnp.exp(jnp.clip(params[i], *_LOG_OVERHEAD_BOUNDS))
    return fields


@functools.partial(jax.jit, static_argnames=("fit", "steps", "polish_steps"))
def _fit(data, hardware, initial_params, learning_rate, time_scale_s, fit, steps, polish_steps):
    log_measured = jnp.log(data.time_s)

    def loss_fn(params):
        predicted = _predict(data, hardware.replace(**_to_fields(params, fit, time_scale_s)))
        return jnp.mean((jnp.log(predicted) - log_measured) ** 2)

    adam = optax.adam(learning_rate)
    lbfgs = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(loss_fn)

    def run(params):
        def adam_step(carry, _):
            params, state = carry
            loss, grads = jax.value_and_grad(loss_fn)(params)
            updates, state = adam.update(grads, state, params)
            return (optax.apply_updates(params, updates), state), loss

        (params, _), history = jax.lax.scan(adam_step, (params, adam.init(params)), None, steps)

        def lbfgs_step(carry, _):
            params, state = carry
            loss, grads = value_and_grad(params, state=state)
            updates, new_state = lbfgs.update(
                grads, state, params, value=loss, grad=grads, value_fn=loss_fn
            )
            # A converged restart stops moving: further L-BFGS steps would fill its memory
            # with differences of ~1e-38, and float32 subnormals run so slowly on a CPU
            # that 100 polish steps after 800 Adam steps took over 10 minutes (6 s frozen).
            # So does one whose step no longer moves its float32 parameters (a fitted
            # count pinned at its floor once kept a restart stepping by ~1e-38 for minutes).
            step = optax.tree.norm(updates)
            stalled = step <= _POLISH_STEP_TOL * (1.0 + optax.tree.norm(params))
            done = (optax.tree.norm(grads) < _POLISH_GRADIENT_TOL) | stalled
            keep = functools.partial(jnp.where, done)
            params = keep(params, optax.apply_updates(params, updates))
            return (params, jax.tree.map(keep, state, new_state)), loss

        (params, _), _ = jax.lax.scan(lbfgs_step, (params, lbfgs.init(params)), None, polish_steps)
        final = loss_fn(params)
        # L-BFGS may stall at a kink of the hard roofline max; keep a finite answer.
        return params, jnp.where(jnp.isfinite(final), final, jnp.inf), history

    params, losses, histories = jax.vmap(run)(initial_params)
    best = jnp.argmin(losses)
    return params[best], losses[best], histories[best]


def _fold_into_peaks(hardware: HardwareSpec) -> HardwareSpec:
    """Moves efficiencies above 1 into the peaks they multiply (same predictions).

    Only the products peak x efficiency enter the cost model. The fit is over those
    products, so an efficiency above 1 means the micro-benchmark under-measured the
    peak (e.g. other load during it): the peak is raised and the efficiency set to 1.
    """
    compute = float(hardware.compute_efficiency)
    memory = float(hardware.memory_efficiency)
    updates = {}
    if compute > 1.0:
        for field in (f.name for f in FIELDS if f.name.endswith("_flops_per_s")):
            peak = getattr(hardware, field)
            if peak is not None:  # (a dtype the chip has no peak for stays without one)
                updates[field] = float(peak) * compute
        updates["compute_efficiency"] = 1.0
    if memory > 1.0:
        updates["hbm_bytes_per_s"] = float(hardware.hbm_bytes_per_s) * memory
        updates["memory_efficiency"] = 1.0
    return hardware.replace(**updates)


def calibrate(
    measurements,
    hardware: HardwareSpec | None = None,
    *,
    fit=DEFAULT_FIT,
    steps: int = 1500,
    polish_steps: int = 100,
    learning_rate: float = 0.05,
    restarts: int = 8,
    smooth: float | None = None,
    seed: int = 0,
    time_column: str = "median_s",
) -> CalibrationResult:
    """Fits ``hardware``'s efficiencies and overheads to measured step times.

    Args:
        measurements: a `StepTimeData`, a DataFrame from
            ``specsim.measure.measure_step_times``, or an iterable of
            ``(TransformerSpec, batch, new_tokens, context, time_s)``.
        hardware: the starting spec with the nominal peaks (default: micro-benchmarks of
            the local device, ``specsim.measure.local_hardware()``).
        fit: names of the fields to fit (efficiencies, ``attention_efficiency``,
            ``attention_compute_efficiency``, ``kernel_launch_s``, ``step_overhead_s``,
            ``interconnect_latency_s``, ``gemm_weight_passes``), and
            optionally ``"roofline_sharpness"`` (see ``SHARPNESS``; ``WITH_SHARPNESS``
            fits it too, ``LOCAL_FIT`` also attention's two efficiencies and
            ``gemm_weight_passes``).
        steps: Adam steps (one ``lax.scan`` inside one ``jit``).
        polish_steps: L-BFGS steps after Adam.
        learning_rate: Adam learning rate in log space.
        restarts: random starting points optimised together (the first is ``hardware``).
        smooth: ``None``, or a roofline sharpness to smooth at least this much: the fit
            runs at p = min(``hardware.roofline_sharpness``, ``smooth``), which the fitted
            spec keeps. Where ``"roofline_sharpness"`` is fitted it is only the starting
            value (default: the spec's if finite, else 4).
        seed: PRNG seed of the restarts.
        time_column: which DataFrame column holds the times.

    Returns:
        `CalibrationResult` with the fitted spec.

    Raises:
        ValueError: no measurements, non-positive times, or unknown field names.

    Examples:
        >>> import specsim
        >>> from specsim import hardware, models
        >>> true = hardware.get("h100").replace(compute_efficiency=0.6, kernel_launch_s=4e-6)
        >>> points = [(models.get(m), b, n, c, 0.0) for m in ("llama-68m", "llama-2-7b")
        ...           for b in (1, 64) for n in (1, 512) for c in (0, 2048)]
        >>> data = StepTimeData.from_points([(*p[:4], 1.0) for p in points])
        >>> data = data.replace(time_s=predict_step_times(data, true))
        >>> result = calibrate(data, hardware.get("h100"), fit=["compute_efficiency",
        ...                    "kernel_launch_s"])
        >>> round(float(result.hardware.compute_efficiency), 3)
        0.6
    """
    fit = _check_fit(fit)
    if not isinstance(measurements, StepTimeData):
        if hasattr(measurements, "iterrows"):
            measurements = StepTimeData.from_frame(measurements, time_column)
        else:
            measurements = StepTimeData.from_points(measurements)
    data = measurements.validate()
    if hardware is None:
        from .measure import local_hardware

        hardware = local_hardware(data.model.compute_dtype)
    if not isinstance(hardware, HardwareSpec):
        raise ValueError(f"hardware must be a HardwareSpec, got {type(hardware).__name__}")
    hardware = hardware.validate()
    if int(steps) < 1 or int(restarts) < 1 or int(polish_steps) < 0:
        raise ValueError("steps and restarts must be >= 1, polish_steps >= 0")

    smooth = check_smooth(smooth)
    sharpness = (
        math.inf if hardware.roofline_sharpness is None else float(hardware.roofline_sharpness)
    )
    if SHARPNESS in fit:
        start_sharpness = smooth or (sharpness if np.isfinite(sharpness) else _START_SHARPNESS)
        hardware = hardware.replace(roofline_sharpness=start_sharpness)
    elif smooth is not None:
        hardware = hardware.replace(roofline_sharpness=min(sharpness, smooth))

    for name, followed in FOLLOWS.items():
        if name in fit and getattr(hardware, name) is None:
            # Fitted on its own, a field that follows another starts at that one's value;
            # not fitted, it keeps following it (fitted or not).
            hardware = hardware.replace(**{name: getattr(hardware, followed)})
    time_scale_s = float(np.median(np.asarray(data.time_s)))
    start = [float(getattr(hardware, name)) for name in fit]
    rng = np.random.default_rng(seed)

    def random_value(name):
        if name in _PEAK_EFFICIENCIES or name in _FRACTIONS:
            return float(np.exp(rng.uniform(np.log(0.05), np.log(0.95))))
        if name == SHARPNESS:
            return float(np.exp(rng.uniform(*np.log(_SHARPNESS_RANGE))))
        if name in _COUNTS:
            return float(np.exp(rng.uniform(np.log(0.01), np.log(4.0))))
        return float(time_scale_s * np.exp(rng.uniform(np.log(1e-4), 0.0)))

    initial = [start] + [[random_value(n) for n in fit] for _ in range(int(restarts) - 1)]
    initial_params = jnp.stack([_to_params(v, fit, time_scale_s) for v in initial])
    params, loss, history = _fit(
        data,
        hardware,
        initial_params,
        jnp.float32(learning_rate),
        jnp.float32(time_scale_s),
        fit,
        int(steps),
        int(polish_steps),
    )
    fields = {k: float(v) for k, v in _to_fields(params, fit, time_scale_s).items()}
    for name in set(fit) & set(_COUNTS):  # (at the floor: none of it)
        if fields[name] <= _COUNT_FLOOR * (1.0 + 1e-3):
            fields[name] = 0.0
    fitted = _fold_into_peaks(hardware.replace(**fields)).validate("calibrated hardware")
    return CalibrationResult(
        hardware=fitted,
        initial_hardware=hardware,
        measured_s=np.asarray(data.time_s),
        predicted_s=np.asarray(predict_step_times(data, fitted)),
        loss=float(loss),
        loss_history=np.asarray(history),
        fitted=fit,
    )
