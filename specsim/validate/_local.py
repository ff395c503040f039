"""Local validation: calibrate on half of a measured grid, predict the rest and real SD runs."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np
import pandas as pd

from .. import measure
from .._acceptance import ConstantAcceptance
from .._calibrate import StepTimeData, predict_step_times
from .._local_calibration import (
    STATISTICS,
    local_compute_dtype,
    measure_and_calibrate,
    network_label,
)
from .._plausibility import implausible_rates
from .._throughput import throughput
from .._workload import Workload
from ..measure import _grids
from ..measure._runs import SpeculativeSession
from ..measure._speculative import plain_buffer_tokens, speculative_buffer_tokens
from ._metrics import NOISY_MEDIAN_OVER_P10, mape

__all__ = ["LocalValidation", "validate_local"]


@dataclasses.dataclass(frozen=True)
class LocalValidation:
    """Result of `validate_local`.

    Attributes:
        steps: DataFrame, one row per measured forward pass (``split`` says train/test;
            ``measured_ms`` is the chosen statistic, ``median_ms`` the median).
        speculative: DataFrame, one row per speculative-decoding configuration.
        calibration: the `CalibrationResult` fitted on the training half.
        nominal: the micro-benchmarked starting spec.
        clock: the clock the timings read.
        statistic: ``"p10"`` or ``"median"``, the statistic compared with predictions.
        elapsed_s: wall time of the whole validation, s.
    """

    steps: Any
    speculative: Any
    calibration: Any
    nominal: Any
    clock: str
    statistic: str
    elapsed_s: float

    @property
    def implausible(self) -> list[str]:
        """Fitted rates far above the micro-benchmarks (see ``specsim._plausibility``)."""
        return implausible_rates(
            self.calibration.hardware, self.nominal, compute_dtype=local_compute_dtype()
        )

    @property
    def median_over_p10(self) -> float:
        """How much this host's repeated timings vary: each grid point's median step time
        over its p10, the median over the grid (``QUIET_MEDIAN_OVER_P10`` on the quiet host
        where the bars were met; NaN without a ``p10_ms`` column)."""
        if "p10_ms" not in self.steps or len(self.steps) == 0:
            return float("nan")
        return float(np.median(self.steps["median_ms"] / self.steps["p10_ms"]))

    @property
    def noisy(self) -> bool:
        """The timings vary more than ``NOISY_MEDIAN_OVER_P10`` allows for."""
        return self.median_over_p10 > NOISY_MEDIAN_OVER_P10

    @property
    def step_mape(self) -> float:
        """Held-out step-time MAPE, %."""
        test = self.steps[self.steps["split"] == "test"]
        return mape(test["predicted_ms"], test["measured_ms"])

    @property
    def step_mape_median(self) -> float:
        """Held-out step-time MAPE against the medians, %."""
        test = self.steps[self.steps["split"] == "test"]
        return mape(test["predicted_ms"], test["median_ms"])

    @property
    def train_mape(self) -> float:
        """Step-time MAPE on the calibration half, %."""
        train = self.steps[self.steps["split"] == "train"]
        return mape(train["predicted_ms"], train["measured_ms"])

    @property
    def speculative_mape(self) -> float:
        """Speculative-decoding tokens/s MAPE (steady-state rate), %."""
        sd = self.speculative
        if len(sd) == 0:
            return float("nan")
        return mape(sd["predicted_tokens_per_s"], sd["measured_tokens_per_s"])

    @property
    def speculative_mape_median(self) -> float:
        """The same against the median iteration time, %."""
        sd = self.speculative
        if len(sd) == 0:
            return float("nan")
        return mape(sd["predicted_tokens_per_s"], sd["median_tokens_per_s"])

    @property
    def speculative_mape_elapsed(self) -> float:
        """The same against tokens / elapsed time (median over repeats), %."""
        sd = self.speculative
        if len(sd) == 0:
            return float("nan")
        return mape(sd["predicted_tokens_per_s"], sd["elapsed_tokens_per_s"])


def validate_local(
    size: str = "full",
    *,
    repeats: int | None = None,
    rounds: int | None = None,
    sd_repeats: int | None = None,
    seed: int = 0,
    clock: str = "auto",
    statistic: str = "p10",
    speculative: bool = True,
    progress: bool = True,
    log=print,
) -> LocalValidation:
    """Measures, calibrates on half, predicts the other half and real speculative decoding.

    Args:
        size: ``"tiny"`` (seconds, for tests), ``"quick"`` or ``"full"`` (see
            ``specsim.measure.calibration_points``).
        repeats: timed samples per forward pass (default by size).
        rounds: interleaved sweeps of the grid (default: several on a CPU, 1 elsewhere).
        sd_repeats: timed speculative runs per configuration (default by size).
        seed: seed of weights, prompts, sampling, the split and the fit.
        clock: ``"auto"``, ``"wall"`` or ``"process"`` (see
            `specsim.measure.configure_measurement`).
        statistic: ``"p10"`` (lower decile, default) or ``"median"`` of the repeated
            samples: what is calibrated on and compared with predictions, for step times
            and speculative iteration times alike.
        speculative: also run the speculative-decoding part.
        progress: progress bars while measuring.
        log: where progress messages go (``None`` for silence).

    Returns:
        `LocalValidation` with both tables and the calibration.
    """
    log = log or (lambda *_: None)
    if statistic not in STATISTICS:
        raise ValueError(f"statistic must be one of {STATISTICS}, got {statistic!r}")
    started = time.perf_counter()
    # Before anything starts JAX: the session's settings only reach a fresh backend.
    clock = measure.configure_measurement(clock)
    repeats = repeats if repeats is not None else _grids.default_repeats(size)
    rounds = rounds if rounds is not None else _grids.default_rounds(repeats)
    sd_repeats = sd_repeats if sd_repeats is not None else {"tiny": 2, "quick": 4, "full": 5}[size]
    configs = _grids.speculative_configs(size) if speculative else []
    session = None
    if configs and rounds > 1:
        # Speculative rounds run between the grid's sweeps: a shared machine's slow and
        # fast spells then reach the step times and the decoding runs alike.
        log(f"compiling {len(configs)} speculative-decoding configurations")
        session = SpeculativeSession(configs, seed=seed, clock=clock)
        log(f"{sd_repeats} speculative rounds run between the sweeps of the step-time grid")
    every = max(1, rounds // sd_repeats)

    def between_sweeps(round_index):
        if session is not None and session.rounds < sd_repeats and (round_index + 1) % every == 0:
            session.run_round()

    local = measure_and_calibrate(
        size,
        repeats=repeats,
        rounds=rounds,
        seed=seed,
        clock=clock,
        statistic=statistic,
        holdout=True,
        progress=progress,
        after_round=between_sweeps,
        log=log,
    )
    frame, result, column = local.steps, local.calibration, local.time_column
    data = StepTimeData.from_frame(frame, column)
    predicted = np.asarray(predict_step_times(data, result.hardware, result.smooth))
    frame["measured_ms"] = frame[column] * 1e3
    frame["median_ms"] = frame["median_s"] * 1e3
    frame["p10_ms"] = frame["p10_s"] * 1e3
    frame["p90_ms"] = frame["p90_s"] * 1e3
    frame["predicted_ms"] = predicted * 1e3
    frame["error_pct"] = 100.0 * (predicted / frame[column] - 1.0)
    frame["error_vs_median_pct"] = 100.0 * (predicted / frame["median_s"] - 1.0)

    rows = []
    if configs:
        if session is None:
            log(f"running {len(configs)} speculative-decoding configurations ({sd_repeats} rounds)")
            session = SpeculativeSession(configs, seed=seed, clock=clock)
        while session.rounds < sd_repeats:
            session.run_round()
        measured_runs = session.results()
        for config, (sd, plain) in zip(configs, measured_runs, strict=True):
            row = _speculative_row(config, sd, plain, result, statistic)
            rows.append(row)
            log(
                f"  {config.name}: alpha {sd.alpha:.2f}, {row['measured_tokens_per_s']:.1f} "
                f"tokens/s measured, {row['predicted_tokens_per_s']:.1f} predicted "
                f"({row['error_pct']:+.1f}%)"
            )
    return LocalValidation(
        steps=frame,
        speculative=pd.DataFrame(rows),
        calibration=result,
        nominal=local.nominal,
        clock=clock,
        statistic=statistic,
        elapsed_s=time.perf_counter() - started,
    )


def loop_predictions(target_spec, draft_spec, hardware, config, alpha: float, smooth):
    """The throughput report of `specsim.measure`'s speculative loop for ``config`` (a
    `SpeculativeConfig`, or anything with its batch, prompt_tokens, new_tokens and gamma)
    at acceptance ``alpha``, and the plain loop's predicted tokens/s: each priced at its
    static KV buffer's length (see `_speculative_row`)."""
    buffers = {
        "speculative": speculative_buffer_tokens(
            config.prompt_tokens, config.new_tokens, config.gamma
        ),
        "plain": plain_buffer_tokens(config.prompt_tokens, config.new_tokens),
    }
    reports = {
        name: throughput(
            target_spec,
            draft_spec,
            hardware,
            # A one-token pass attending over a buffer of L positions is the grid's pass
            # at context L - 1 (measured with buffers of context + new tokens); the fixed-
            # context workload's mean context is its prompt + 0.5.
            Workload.fixed_context(config.batch, buffer - 1.5),
            gamma=float(config.gamma),
            acceptance=ConstantAcceptance.create(alpha),
            smooth=smooth,
        )
        for name, buffer in buffers.items()
    }
    return reports["speculative"], float(reports["plain"].baseline_tokens_per_s)


def _speculative_row(config, sd, plain, calibration, statistic: str) -> dict[str, Any]:
    """Measured and predicted tokens/s of one speculative-decoding configuration.

    The prediction uses the calibrated spec and the *measured* acceptance rate; measured
    rates divide tokens per iteration by ``statistic`` of the iteration times. Every pass
    of the measured loops attends over its whole static KV buffer (under a causal mask;
    as in gpt-fast), so passes are priced at the buffer's length, not at the position
    reached: ``speculative_buffer_tokens`` for speculation, ``plain_buffer_tokens`` for
    the plain baseline (as the step-time grid, measured with buffers of exactly context +
    new tokens, was fitted: a one-token pass over a buffer of ``L`` is priced at context
    ``L - 1``; the verification's ``gamma + 1`` tokens are priced at that context too,
    ``gamma`` positions more than the grid's convention, about 3% of its attention).
    """
    target_spec = config.target.to_spec()
    draft_spec = config.target.with_layers(config.draft_layers).to_spec()
    iteration_s = sd.iteration_s_p10 if statistic == "p10" else sd.iteration_s
    step_s = plain.iteration_s_p10 if statistic == "p10" else plain.iteration_s
    measured = config.batch * sd.tokens_per_step / iteration_s
    measured_plain = config.batch / step_s
    alpha = float(np.clip(sd.alpha, 1e-3, 1.0 - 1e-3))
    report, baseline = loop_predictions(
        target_spec, draft_spec, calibration.hardware, config, alpha, calibration.smooth
    )
    row = {
        "name": config.name,
        "target": network_label(config.target),
        "draft_layers": config.draft_layers,
        "gamma": config.gamma,
        "batch": config.batch,
        "temperature": config.temperature,
        "alpha": sd.alpha,
        "positional_alpha": " ".join(f"{a:.2f}" for a in sd.positional_alpha),
        "measured_tau": sd.tokens_per_step,
        "predicted_tau": float(report.expected_tokens_per_step),
        "measured_tokens_per_s": measured,
        "median_tokens_per_s": sd.steady_tokens_per_s,
        "elapsed_tokens_per_s": sd.tokens_per_s,
        "predicted_tokens_per_s": float(report.tokens_per_s),
        "measured_baseline_tokens_per_s": measured_plain,
        "predicted_baseline_tokens_per_s": baseline,
        "measured_speedup": measured / measured_plain,
        "predicted_speedup": float(report.tokens_per_s) / baseline,
    }
    row["error_pct"] = 100.0 * (row["predicted_tokens_per_s"] / row["measured_tokens_per_s"] - 1.0)
    return row
