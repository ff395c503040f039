"""Calibrating this device: time a grid of real forward passes, then fit its `HardwareSpec`.

One pipeline behind ``specsim calibrate`` (fit on every point) and ``specsim validate``
(fit on a balanced half, predict the other): the measurement session is configured
(`specsim.measure.configure_measurement`), the device's nominal peaks are
micro-benchmarked, a preset grid of forward passes is timed in interleaved rounds, and
`calibrate` fits efficiencies, overheads and the roofline sharpness to one statistic of
the repeated samples.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from . import measure
from ._calibrate import LOCAL_FIT, CalibrationResult, calibrate
from ._plausibility import implausible_rates
from ._progress import live_bar
from .hardware import HardwareSpec
from .measure import _grids
from .measure._timing import measure_step_times

__all__ = [
    "STATISTICS",
    "LocalCalibration",
    "local_compute_dtype",
    "measure_and_calibrate",
    "split_train_test",
]

# Statistics of a point's repeated samples that can be fitted: the lower decile (robust to
# other programs on a shared machine, which only ever slow a run down) or the median.
STATISTICS = ("p10", "median")


@dataclasses.dataclass(frozen=True)
class LocalCalibration:
    """Result of `measure_and_calibrate`.

    Attributes:
        steps: DataFrame, one row per timed forward pass: ``model`` (a label of the
            network), ``phase``, ``batch``, ``new_tokens``, ``context``, the timing
            statistics in seconds (``median_s``, ``p10_s``, ``p90_s``, ...) and, with a
            hold-out, ``split`` (``"train"`` or ``"test"``).
        calibration: the `CalibrationResult` fitted on the training points (all of them
            without a hold-out).
        nominal: the micro-benchmarked spec the fit started from.
        clock: the clock the timings read.
        statistic: ``"p10"`` or ``"median"``, the statistic fitted.
        repeats: timed samples per forward pass.
        rounds: interleaved sweeps of the grid.
    """

    steps: Any
    calibration: CalibrationResult
    nominal: HardwareSpec
    clock: str
    statistic: str
    repeats: int
    rounds: int

    @property
    def implausible(self) -> list[str]:
        """Fitted rates far above the micro-benchmarks, or too many extra weight passes
        (see ``specsim._plausibility``)."""
        return implausible_rates(
            self.calibration.hardware, self.nominal, compute_dtype=local_compute_dtype()
        )

    @property
    def time_column(self) -> str:
        """The column of ``steps`` that was fitted (``"p10_s"`` or ``"median_s"``)."""
        return f"{self.statistic}_s"


def local_compute_dtype() -> str:
    """The dtype the local grid computes in (as ``measure.local_hardware``): fp32 on a CPU."""
    return "fp32" if jax.devices()[0].platform == "cpu" else "bf16"


def network_label(config) -> str:
    """A short label of a measured network: attention kind, layers x width, MLP, vocabulary.

    Examples:
        >>> from specsim.measure import ModelConfig, tiny_spec
        >>> network_label(ModelConfig.from_spec(tiny_spec()))
        'gqa-2x32-v64'
    """
    kind = "gqa" if config.n_kv_heads < config.n_heads else "mha"
    mlp = "" if config.gated_mlp else "-gelu"
    return f"{kind}-{config.n_layers}x{config.d_model}{mlp}-v{config.vocab}"


def split_train_test(frame, seed: int = 0):
    """Boolean mask of the training half, balanced within every (model, phase) group.

    Each group is shuffled with ``seed`` and alternately assigned, so both halves see
    every network and every kind of pass.

    Examples:
        >>> import pandas as pd
        >>> frame = pd.DataFrame({"model": ["a"] * 4, "phase": ["decode"] * 4})
        >>> int(split_train_test(frame).sum())
        2
    """
    rng = np.random.default_rng(seed)
    train = np.zeros(len(frame), dtype=bool)
    for _, index in frame.groupby(["model", "phase"], sort=True).indices.items():
        order = rng.permutation(index)
        first = int(rng.integers(2))
        train[order[first::2]] = True
    return train


_STAGE = "{desc} [{elapsed}]"


def measure_and_calibrate(
    size: str = "full",
    *,
    repeats: int | None = None,
    rounds: int | None = None,
    seed: int = 0,
    clock: str = "auto",
    statistic: str = "median",
    holdout: bool = False,
    steps: int = 1500,
    progress: bool = True,
    after_round: Callable[[int], None] | None = None,
    log: Callable[[str], None] | None = print,
) -> LocalCalibration:
    """Times a preset grid of forward passes on this device and fits its `HardwareSpec`.

    Args:
        size: the grid, ``"tiny"``, ``"quick"`` or ``"full"`` (see
            ``specsim.measure.calibration_points``).
        repeats: timed samples per forward pass (default by size).
        rounds: interleaved sweeps of the grid (default: about ``repeats / 3`` on a CPU,
            at most 16; 1 elsewhere).
        seed: seed of the networks' weights, the sweep order, the split and the fit.
        clock: ``"auto"``, ``"wall"`` or ``"process"`` (see
            `specsim.measure.configure_measurement`; this configures the session, so it
            must run before anything else starts JAX for the settings to apply).
        statistic: ``"median"`` or ``"p10"`` of the repeated samples, what is fitted.
        holdout: fit on a balanced half (`split_train_test`) and mark the split in
            ``steps``; otherwise fit on every point.
        steps: Adam steps of the fit.
        progress: show progress bars while timing and fitting (on a terminal only).
        after_round: called with a round's index after each interleaved sweep (e.g. to
            run speculative decoding in the same time window).
        log: where progress messages go (``None`` for silence).

    Returns:
        `LocalCalibration` with the timed grid and the fit.

    Raises:
        ValueError: an unknown size, clock or statistic, or repeats, rounds or steps < 1.
    """
    log = log or (lambda *_: None)
    if statistic not in STATISTICS:
        raise ValueError(f"statistic must be one of {STATISTICS}, got {statistic!r}")
    repeats = _grids.default_repeats(size) if repeats is None else int(repeats)
    for name, value in (("repeats", repeats), ("rounds", rounds), ("steps", steps)):
        if value is not None and value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    clock = measure.configure_measurement(clock)
    rounds = _grids.default_rounds(repeats) if rounds is None else int(rounds)

    log(f"device: {measure.device_kind()}; clock: {clock}")
    nominal = measure.local_hardware(clock=clock)
    on_cpu = jax.devices()[0].platform == "cpu"
    log(
        f"nominal peaks: {float(nominal.bf16_flops_per_s) / 1e9:.1f} GFLOP/s (matmul, "
        f"{'fp32' if on_cpu else 'bf16'}), {float(nominal.hbm_bytes_per_s) / 1e9:.1f} GB/s (copy)"
    )
    points = _grids.calibration_points(size)
    sweeps = f"{rounds} round{'s' if rounds != 1 else ''}"
    log(f"timing {len(points)} forward passes ({repeats} samples each, {sweeps})")
    frame = measure_step_times(
        points,
        repeats=repeats,
        rounds=rounds,
        seed=seed,
        clock=clock,
        progress=progress,
        after_round=after_round,
    )
    frame.insert(0, "model", [network_label(p.config) for p in points])
    train = np.ones(len(frame), dtype=bool)
    if holdout:
        train = split_train_test(frame, seed)
        frame.insert(0, "split", np.where(train, "train", "test"))
    # The fit is one long jitted call: a bar with a running clock (terminal only).
    with live_bar(None if progress else False, total=1, desc="fitting", bar_format=_STAGE) as bar:
        result = calibrate(
            frame[train],
            nominal,
            fit=LOCAL_FIT,
            steps=steps,
            seed=seed,
            time_column=f"{statistic}_s",
        )
        bar.update(1)
    return LocalCalibration(
        steps=frame,
        calibration=result,
        nominal=nominal,
        clock=clock,
        statistic=statistic,
        repeats=repeats,
        rounds=rounds,
    )
