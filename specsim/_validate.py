"""Validation: how far specsim's predictions are from reality.

Two parts, each a table with a per-row and a mean absolute percentage error (MAPE):

* **local**: real networks on this device (``specsim.measure``). A grid of forward
  passes (model sizes, batch, new tokens, context) is timed; `specsim.calibrate` fits
  the local `HardwareSpec` on one half and predicts the other half. Then real
  speculative decoding runs (layer-skipping drafts whose acceptance spans about 0.3
  to 0.9) are timed, and ``specsim.throughput`` predicts their tokens/s from the
  calibrated spec and the *measured* acceptance rate.
* **published**: measurements from papers and repositories (``specsim/data/
  published.toml``, each with its source), predicted with the catalogue's default
  efficiencies; nothing is fitted to them.

On a CPU, measurements run XLA single-threaded (a one-core "device" whose steps do
not depend on what else holds the other cores), and the grid is swept in several
interleaved rounds so that slow drifts of the machine touch every point alike.
Timings are compared through one statistic of their repeated samples, the same for
step times and for speculative iterations: by default the lower decile (``p10``),
an estimate of the time without interference from other programs, which only ever
slows a run down (the simulator models the machine, not its other tenants); errors
against the medians are reported alongside. ``specsim validate`` is a command, not a
unit test: the full grid takes a few minutes on a 2-core CPU.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import platform
import time
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "LocalValidation",
    "load_published",
    "mape",
    "predict_published",
    "split_train_test",
    "validate_local",
    "validate_published",
]

STATISTICS = ("p10", "median")
STATISTIC_NAMES = {"p10": "lower decile (p10)", "median": "median"}
SINGLE_THREAD_FLAG = "--xla_cpu_multi_thread_eigen=false"


def mape(predicted, measured) -> float:
    """Mean absolute percentage error of ``predicted`` against ``measured``, %.

    Examples:
        >>> mape([110.0, 90.0], [100.0, 100.0])
        10.0
    """
    predicted = np.asarray(predicted, dtype=np.float64)
    measured = np.asarray(measured, dtype=np.float64)
    if predicted.size == 0:
        return float("nan")
    return float(100.0 * np.mean(np.abs(predicted / measured - 1.0)))


# ----------------------------------------------------------------------------- clocks


def configure_measurement(clock: str = "auto") -> str:
    """Prepares JAX for measuring and returns the clock to read (``"wall"``/``"process"``).

    On a CPU, measurements run XLA single-threaded: a step's time then does not depend
    on whether another program holds the second core, and every point of the grid
    (small and large matmuls alike) runs on the same one-core "device". This adds
    ``--xla_cpu_multi_thread_eigen=false`` to ``XLA_FLAGS`` when JAX has not started its
    backends yet (it changes nothing on accelerators). ``"auto"`` reads the wall clock;
    ``"process"`` reads the CPU time of this process, which excludes time the process
    was descheduled but includes other threads' spinning, and needs the single-threaded
    setting.

    Raises:
        ValueError: an unknown clock, or ``"process"`` where it is not meaningful.
    """
    if clock not in ("auto", "wall", "process"):
        raise ValueError(f"clock must be auto, wall or process, got {clock!r}")
    from jax._src import xla_bridge

    flags = os.environ.get("XLA_FLAGS", "")
    if not xla_bridge.backends_are_initialized() and SINGLE_THREAD_FLAG not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} {SINGLE_THREAD_FLAG}".strip()
    if clock != "process":
        return "wall"
    import jax

    on_cpu = jax.devices()[0].platform == "cpu"
    if not (on_cpu and SINGLE_THREAD_FLAG in os.environ.get("XLA_FLAGS", "")):
        raise ValueError(
            "clock 'process' needs a CPU device running XLA single-threaded "
            f"(XLA_FLAGS={SINGLE_THREAD_FLAG} before JAX starts)"
        )
    return clock


def machine_description(clock: str) -> dict[str, str]:
    """Facts about this machine and software, recorded with every result."""
    import jax
    import jaxlib

    from .measure import device_kind
    from .measure._device import cpu_model, memory_capacity_bytes

    return {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "device": device_kind(),
        "host_cpu": cpu_model(),
        "host_cores": str(os.cpu_count()),
        "device_memory_gb": f"{memory_capacity_bytes() / 1e9:.1f}",
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "python": platform.python_version(),
        "os": platform.platform(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "clock": clock,
        "load_average": " ".join(f"{x:.2f}" for x in os.getloadavg())
        if hasattr(os, "getloadavg")
        else "n/a",
    }


# ----------------------------------------------------------------------------- local


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


def _model_name(config) -> str:
    kind = "gqa" if config.n_kv_heads < config.n_heads else "mha"
    mlp = "" if config.gated_mlp else "-gelu"
    return f"{kind}-{config.n_layers}x{config.d_model}{mlp}-v{config.vocab}"


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
            ``specsim.measure._grids``).
        repeats: timed samples per forward pass (default by size).
        rounds: interleaved sweeps of the grid (default: several on a CPU, 1 elsewhere).
        sd_repeats: timed speculative runs per configuration (default by size).
        seed: seed of weights, prompts, sampling, the split and the fit.
        clock: ``"auto"``, ``"wall"`` or ``"process"`` (see `configure_measurement`).
        statistic: ``"p10"`` (lower decile, default) or ``"median"`` of the repeated
            samples: what is calibrated on and compared with predictions, for step times
            and speculative iteration times alike.
        speculative: also run the speculative-decoding part.
        progress: progress bars while measuring.
        log: where progress messages go (``None`` for silence).

    Returns:
        `LocalValidation` with both tables and the calibration.
    """
    import jax

    from . import measure
    from ._acceptance import ConstantAcceptance
    from ._calibrate import LOCAL_FIT, StepTimeData, calibrate, predict_step_times
    from ._throughput import throughput
    from ._workload import Workload
    from .measure._grids import calibration_points, default_repeats, speculative_configs
    from .measure._runs import SpeculativeSession
    from .measure._timing import measure_step_times

    log = log or (lambda *_: None)
    if statistic not in STATISTICS:
        raise ValueError(f"statistic must be one of {STATISTICS}, got {statistic!r}")
    started = time.perf_counter()
    clock = configure_measurement(clock)
    on_cpu = jax.devices()[0].platform == "cpu"
    repeats = repeats if repeats is not None else default_repeats(size)
    # On a CPU, about three samples per point and sweep: slow drifts of the machine's load
    # then reach every point alike.
    rounds = rounds if rounds is not None else (max(1, min(16, repeats // 3)) if on_cpu else 1)
    sd_repeats = sd_repeats if sd_repeats is not None else {"tiny": 2, "quick": 4, "full": 5}[size]

    log(f"device: {measure.device_kind()}; clock: {clock}")
    nominal = measure.local_hardware(clock=clock)
    log(
        f"nominal peaks: {float(nominal.bf16_flops_per_s) / 1e9:.1f} GFLOP/s (matmul, "
        f"{'fp32' if on_cpu else 'bf16'}), {float(nominal.hbm_bytes_per_s) / 1e9:.1f} GB/s (copy)"
    )
    points = calibration_points(size)
    configs = speculative_configs(size) if speculative else []
    session = None
    if configs and rounds > 1:
        # Speculative rounds run between the grid's sweeps: a shared machine's slow and
        # fast spells then reach the step times and the decoding runs alike.
        log(f"compiling {len(configs)} speculative-decoding configurations")
        session = SpeculativeSession(configs, seed=seed, clock=clock)
    every = max(1, rounds // sd_repeats)

    def between_sweeps(round_index):
        if session is not None and session.rounds < sd_repeats and (round_index + 1) % every == 0:
            session.run_round()

    log(
        f"timing {len(points)} forward passes ({repeats} samples each, {rounds} rounds)"
        + (f", {sd_repeats} speculative rounds in between" if session is not None else "")
    )
    frame = measure_step_times(
        points,
        repeats=repeats,
        rounds=rounds,
        seed=seed,
        clock=clock,
        progress=progress,
        after_round=between_sweeps,
    )
    frame.insert(0, "model", [_model_name(p.config) for p in points])
    train = split_train_test(frame, seed)
    frame.insert(0, "split", np.where(train, "train", "test"))
    column = f"{statistic}_s"
    result = calibrate(frame[train], nominal, fit=LOCAL_FIT, seed=seed, time_column=column)
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
            target_spec = config.target.to_spec()
            draft_spec = config.target.with_layers(config.draft_layers).to_spec()
            iteration_s = sd.iteration_s_p10 if statistic == "p10" else sd.iteration_s
            step_s = plain.iteration_s_p10 if statistic == "p10" else plain.iteration_s
            measured = config.batch * sd.tokens_per_step / iteration_s
            measured_plain = config.batch / step_s
            alpha = float(np.clip(sd.alpha, 1e-3, 1.0 - 1e-3))
            report = throughput(
                target_spec,
                draft_spec,
                result.hardware,
                Workload.create(
                    batch=config.batch,
                    prompt_tokens=config.prompt_tokens,
                    generate_tokens=sd.generated_tokens / config.batch,
                ),
                gamma=float(config.gamma),
                acceptance=ConstantAcceptance.create(alpha),
                smooth=result.smooth,
            )
            row = {
                "name": config.name,
                "target": _model_name(config.target),
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
                "predicted_baseline_tokens_per_s": float(report.baseline_tokens_per_s),
                "measured_speedup": measured / measured_plain,
                "predicted_speedup": float(report.speedup),
            }
            row["error_pct"] = 100.0 * (
                row["predicted_tokens_per_s"] / row["measured_tokens_per_s"] - 1.0
            )
            rows.append(row)
            log(
                f"  {config.name}: alpha {sd.alpha:.2f}, {measured:.1f} tokens/s "
                f"measured, {row['predicted_tokens_per_s']:.1f} predicted "
                f"({row['error_pct']:+.1f}%)"
            )
    import pandas as pd

    return LocalValidation(
        steps=frame,
        speculative=pd.DataFrame(rows),
        calibration=result,
        nominal=nominal,
        clock=clock,
        statistic=statistic,
        elapsed_s=time.perf_counter() - started,
    )


# ----------------------------------------------------------------------------- published


def load_published(path: str | os.PathLike | None = None) -> tuple[list[dict], dict[str, dict]]:
    """The published measurements and the architectures they refer to.

    Args:
        path: a TOML file in the schema of ``specsim/data/published.toml`` (default: that
            file).

    Returns:
        ``(measurements, architectures)``.

    Raises:
        ValueError: unreadable or malformed file, or entries missing required keys.

    Examples:
        >>> rows, _ = load_published()
        >>> any(r["id"].startswith("gpt-fast") for r in rows)
        True
    """
    try:
        if path is None:
            text = resources.files("specsim").joinpath("data/published.toml").read_text()
            where = "specsim/data/published.toml"
        else:
            where = os.fspath(path)
            text = Path(where).read_text()
        data = tomllib.loads(text)
    except OSError as e:
        raise ValueError(f"cannot read published measurements {path!r}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"malformed TOML in {where!r}: {e}") from None
    rows = data.get("measurement", [])
    if not isinstance(rows, list) or not rows:
        raise ValueError(f"{where}: no [[measurement]] entries")
    required = ("id", "quantity", "value", "hardware", "target", "batch", "source")
    for row in rows:
        missing = [k for k in required if k not in row]
        if missing:
            raise ValueError(f"{where}: entry {row.get('id', '?')!r} lacks {missing}")
        if row["quantity"] not in ("baseline_tokens_per_s", "speedup"):
            raise ValueError(f"{where}: {row['id']!r}: unknown quantity {row['quantity']!r}")
        if row["quantity"] == "speedup" and not {"draft", "gamma", "alpha"} <= set(row):
            raise ValueError(f"{where}: {row['id']!r}: a speedup needs draft, gamma and alpha")
    return rows, dict(data.get("architecture", {}))


def _published_spec(name: str, architectures: dict, weight_dtype: str, weight_bytes=None):
    from . import models
    from .models import TransformerSpec

    if name in architectures:
        arch = architectures[name]
        spec = TransformerSpec.create(
            n_layers=arch["n_layers"],
            d_model=arch["d_model"],
            n_heads=arch["n_heads"],
            n_kv_heads=arch.get("n_kv_heads"),
            head_dim=arch.get("head_dim"),
            d_ff=arch["d_ff"],
            vocab=arch["vocab"],
            gated_mlp=arch.get("gated_mlp", True),
            tied_embeddings=arch.get("tied_embeddings", False),
        )
    else:
        spec = models.get(name)
    if weight_dtype != "bf16":
        spec = spec.with_dtypes(weight_dtype)
    if weight_bytes is not None:
        spec = spec.replace(weight_bytes=float(weight_bytes))
    return spec


def predict_published(row: dict, architectures: dict) -> dict[str, float]:
    """specsim's prediction for one published measurement (catalogue defaults).

    Returns:
        ``{"predicted": value, "predicted_cost_ratio": c}`` (c only for speedups).
    """
    from . import hardware
    from ._acceptance import ConstantAcceptance
    from ._throughput import throughput
    from ._workload import Workload

    dtype = row.get("weight_dtype", "bf16")
    target = _published_spec(row["target"], architectures, dtype, row.get("weight_bytes"))
    chip = hardware.get(row["hardware"])
    workload = Workload.create(
        batch=row["batch"],
        prompt_tokens=row.get("prompt_tokens", 128),
        generate_tokens=row.get("generate_tokens", 128),
    )
    if row["quantity"] == "baseline_tokens_per_s":
        report = throughput(target, target, chip, workload, 0.0, ConstantAcceptance.create(0.5))
        return {"predicted": float(report.baseline_tokens_per_s)}
    draft = _published_spec(row["draft"], architectures, dtype, row.get("weight_bytes"))
    report = throughput(
        target,
        draft,
        chip,
        workload,
        float(row["gamma"]),
        ConstantAcceptance.create(float(row["alpha"])),
    )
    return {"predicted": float(report.speedup), "predicted_cost_ratio": float(report.cost_ratio)}


def validate_published(path: str | os.PathLike | None = None):
    """Predicts every published measurement with default efficiencies.

    Returns:
        DataFrame with ``id``, ``quantity``, ``kind``, ``published``, ``predicted``,
        ``error_pct``, cost ratios where given, ``source`` and ``assumed``.
    """
    import pandas as pd

    rows, architectures = load_published(path)
    out = []
    for row in rows:
        prediction = predict_published(row, architectures)
        out.append(
            {
                "id": row["id"],
                "quantity": row["quantity"],
                "kind": row.get("kind", "measured"),
                "hardware": row["hardware"],
                "published": float(row["value"]),
                "predicted": prediction["predicted"],
                "error_pct": 100.0 * (prediction["predicted"] / float(row["value"]) - 1.0),
                "published_cost_ratio": row.get("published_cost_ratio", float("nan")),
                "predicted_cost_ratio": prediction.get("predicted_cost_ratio", float("nan")),
                "source": row["source"],
                "assumed": row.get("assumed", ""),
            }
        )
    return pd.DataFrame(out)


# ----------------------------------------------------------------------------- output


def markdown_table(frame, columns: list[str], float_format: str = "{:.4g}") -> str:
    """A GitHub Markdown table of ``columns`` of ``frame``.

    Examples:
        >>> import pandas as pd
        >>> print(markdown_table(pd.DataFrame({"a": [1.5]}), ["a"]))
        | a |
        |---|
        | 1.5 |
    """
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for _, row in frame[columns].iterrows():
        cells = []
        for value in row:
            if isinstance(value, float | np.floating):
                cells.append(float_format.format(value))
            else:
                cells.append(str(value))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


STEP_COLUMNS = [
    "split",
    "model",
    "phase",
    "batch",
    "new_tokens",
    "context",
    "measured_ms",
    "median_ms",
    "p90_ms",
    "predicted_ms",
    "error_pct",
    "error_vs_median_pct",
]
SD_COLUMNS = [
    "name",
    "target",
    "draft_layers",
    "gamma",
    "batch",
    "temperature",
    "alpha",
    "measured_tau",
    "predicted_tau",
    "measured_tokens_per_s",
    "median_tokens_per_s",
    "elapsed_tokens_per_s",
    "predicted_tokens_per_s",
    "error_pct",
    "measured_speedup",
    "predicted_speedup",
]
PUBLISHED_COLUMNS = [
    "id",
    "quantity",
    "kind",
    "published",
    "predicted",
    "error_pct",
    "published_cost_ratio",
    "predicted_cost_ratio",
]


def _report_local(local: LocalValidation) -> tuple[str, dict[str, Any]]:
    from ._calibrate import datasheet_entry

    steps = local.steps.sort_values(["split", "model", "phase", "batch", "context"])
    fitted = datasheet_entry(local.calibration.hardware)
    sharpness = local.calibration.smooth
    lines = [
        "## Local: step times (calibrated on the train half, predicted on the test half)",
        "",
        markdown_table(steps, STEP_COLUMNS),
        "",
        f"Step times: `measured_ms` is the {STATISTIC_NAMES[local.statistic]} of the repeated "
        "samples (the statistic calibrated on and compared), `median_ms` and `p90_ms` show the "
        "spread.",
        "",
        f"Held-out step-time MAPE: **{local.step_mape:.1f}%** over "
        f"{int((steps['split'] == 'test').sum())} points "
        f"(fit on {int((steps['split'] == 'train').sum())} points: {local.train_mape:.1f}%; "
        f"held-out against the medians: {local.step_mape_median:.1f}%).",
        "",
        "Fitted: "
        + ", ".join(
            f"{k} = {fitted[k]:.4g}"
            for k in (
                "compute_efficiency",
                "memory_efficiency",
                "attention_efficiency",
                "kernel_launch_us",
                "step_overhead_us",
            )
        )
        + f", roofline sharpness p = {sharpness:.3g}"
        + f" (nominal {fitted['bf16_tflops'] * 1e3:.1f} GFLOP/s, "
        f"{fitted['hbm_tb_per_s'] * 1e3:.1f} GB/s).",
        "",
    ]
    summary: dict[str, Any] = {
        "statistic": local.statistic,
        "step_time_mape_pct": local.step_mape,
        "step_time_mape_vs_median_pct": local.step_mape_median,
        "step_time_train_mape_pct": local.train_mape,
        "step_points": len(steps),
        "fitted": fitted,
        "roofline_sharpness": sharpness,
        "clock": local.clock,
        "local_elapsed_s": local.elapsed_s,
    }
    sd = local.speculative
    if len(sd):
        lines += [
            "## Local: speculative decoding, tokens/s predicted from the measured alpha",
            "",
            markdown_table(sd, SD_COLUMNS),
            "",
            f"Speculative tokens/s MAPE: **{local.speculative_mape:.1f}%** over {len(sd)} "
            "configurations (measured = batch x tokens per iteration / "
            f"{STATISTIC_NAMES[local.statistic]} of the iteration times; against the median "
            f"iteration: {local.speculative_mape_median:.1f}%; against tokens / elapsed time: "
            f"{local.speculative_mape_elapsed:.1f}%). "
            f"Measured alpha spans {sd['alpha'].min():.2f} to {sd['alpha'].max():.2f}.",
            "",
        ]
        summary.update(
            speculative_tokens_per_s_mape_pct=local.speculative_mape,
            speculative_mape_vs_median_pct=local.speculative_mape_median,
            speculative_elapsed_mape_pct=local.speculative_mape_elapsed,
            speculative_configurations=len(sd),
            alpha_min=float(sd["alpha"].min()),
            alpha_max=float(sd["alpha"].max()),
        )
    return "\n".join(lines), summary


def _report_published(published) -> tuple[str, dict[str, Any]]:
    error = mape(published["predicted"], published["published"])
    by_quantity = {
        q: mape(g["predicted"], g["published"]) for q, g in published.groupby("quantity")
    }
    lines = [
        "## Published measurements, predicted with the catalogue's default efficiencies",
        "",
        markdown_table(published, PUBLISHED_COLUMNS),
        "",
        f"Published MAPE: **{error:.1f}%** over {len(published)} rows ("
        + ", ".join(f"{q}: {v:.1f}%" for q, v in by_quantity.items())
        + "). Sources: `specsim/data/published.toml`.",
        "",
    ]
    return "\n".join(lines), {
        "published_mape_pct": error,
        "published_mape_by_quantity_pct": by_quantity,
        "published_rows": len(published),
    }
