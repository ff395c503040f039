"""Plots of specsim results: rooflines, sweep heatmaps, best lookahead, hardware, SDSL.

Every function draws on a fresh ``matplotlib.figure.Figure`` (never pyplot's global
state, so it works headless; it shows itself as a PNG in Jupyter), labels every axis
with its unit, saves to ``path`` when given (format from the suffix, e.g. ``.png``,
``.svg``, ``.pdf``) and returns the figure. Functions that take a ``frame`` read a tidy
DataFrame from ``specsim.sweep``; the others evaluate the model themselves.

Examples:
    >>> import specsim
    >>> from specsim import plot
    >>> frame = specsim.sweep(batch=[1, 8, 64], gamma=range(9),
    ...                       columns=["tokens_per_s", "speedup"])
    >>> figure = plot.heatmap(frame, x="gamma", y="batch")
    >>> figure.axes[0].get_xlabel()
    'lookahead γ (draft tokens per iteration)'
"""

from __future__ import annotations

import io
import os
import textwrap
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from . import hardware as _hardware
from . import models as _models
from . import theory
from ._atomic import atomic_output
from ._cost import forward_cost, memory_footprint, step_time
from ._feasibility import check_domain, check_parallelism
from ._sweep import AXES
from .hardware import HardwareSpec
from .models import TransformerSpec

__all__ = [
    "best_gamma",
    "hardware_comparison",
    "heatmap",
    "label",
    "optimal_draft_size",
    "roofline",
    "throughput_latency",
]

# Axis labels with units for sweep columns (SI in the data, readable units on the page).
_LABELS = {
    "hardware": "accelerator",
    "target": "target model",
    "draft": "draft model",
    "tp": "tensor-parallel degree (chips)",
    "batch": "batch (sequences)",
    "prompt_tokens": "prompt length (tokens)",
    "generate_tokens": "generated length (tokens)",
    "alpha": "acceptance rate α (per token)",
    "gamma": "lookahead γ (draft tokens per iteration)",
    "tokens_per_s": "throughput (tokens/s)",
    "baseline_tokens_per_s": "plain decoding throughput (tokens/s)",
    "speedup": "speedup over plain decoding (×)",
    "expected_tokens_per_step": "tokens per iteration (tokens)",
    "acceptance_rate": "acceptance rate α (per token)",
    "draft_step_s": "draft step (s)",
    "verify_step_s": "verification step (s)",
    "target_step_s": "plain decode step (s)",
    "iteration_s": "iteration time (s)",
    "speculation_overhead_s": "speculation overhead (s)",
    "cost_ratio": "draft/target step cost ratio c (×)",
    "prefill_s": "prefill time (s)",
    "request_latency_s": "request latency (s)",
    "baseline_request_latency_s": "plain request latency (s)",
    "memory_per_chip_bytes": "memory per chip (bytes)",
    "throughput_tokens_per_s": "output throughput (tokens/s)",
    "ttft_p50_s": "median time to first token (s)",
    "ttft_p90_s": "p90 time to first token (s)",
    "tpot_p50_s": "median time per output token (s)",
    "tpot_p90_s": "p90 time per output token (s)",
    "e2e_p50_s": "median request latency (s)",
    "e2e_p90_s": "p90 request latency (s)",
}

_PHASE_STYLE = {  # phase: (marker, label)
    "draft": ("^", "draft step"),
    "verify": ("o", "verification (γ+1 tokens)"),
    "decode": ("s", "plain decode"),
}


class _Figure(Figure):
    """A ``Figure`` that shows itself as a PNG in Jupyter without pyplot's inline backend."""

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.savefig(buffer, format="png", dpi=100)
        return buffer.getvalue()


def label(column: str) -> str:
    """The axis label, with unit, of a sweep column (the column name if unknown).

    Examples:
        >>> label("tokens_per_s")
        'throughput (tokens/s)'
    """
    return _LABELS.get(column, column)


def _finish(figure: Figure, path: str | os.PathLike | None) -> Figure:
    figure.tight_layout()
    if path is not None:
        # Written atomically: a chart appears under its name only once complete (an
        # existing file is replaced, as matplotlib does; the CLI asks for --overwrite).
        with atomic_output(path, overwrite=True, what="path") as temp:
            figure.savefig(temp, dpi=120)
    return figure


def _spec(value, get, kind: type, what: str):
    if isinstance(value, kind):
        return value
    if isinstance(value, str | os.PathLike):
        return get(value)
    raise ValueError(f"{what}: expected a name or a {kind.__name__}, got {value!r}")


def _display(chip: str | os.PathLike) -> str:
    """The catalogue's name of a chip, or the stem of its ``.toml`` file."""
    text = os.fspath(chip)
    if text.endswith(".toml"):
        return os.path.splitext(os.path.basename(text))[0]
    return _hardware.canonical_name(text)


# --------------------------------------------------------------------------- roofline


def roofline(
    hardware: str | HardwareSpec | Sequence[str | HardwareSpec] = "h100",
    target: str | TransformerSpec = "llama-3-8b",
    draft: str | TransformerSpec = "llama-68m",
    *,
    batch: float | Sequence[float] = (1, 8, 64, 512),
    gamma: float = 4,
    prompt_tokens: float = 512,
    generate_tokens: float = 256,
    tp: float = 1,
    draft_tp: float | None = None,
    path: str | os.PathLike | None = None,
) -> Figure:
    """Roofline of one or more chips with the operating points of speculative decoding.

    For each chip and batch size, three forward passes are placed by arithmetic
    intensity (FLOPs over HBM bytes) and attained FLOP/s per chip: a draft step
    (1 token), a verification pass (gamma + 1 tokens) and a plain target decode
    step (1 token), at the mid-generation context ``prompt + generate / 2``. The
    roof is ``min(peak x compute efficiency, intensity x bandwidth x memory
    efficiency)`` at the target's compute dtype; points sit below it by kernel
    launches, fixed step overheads, communication and the attention/matmul split.
    Small batches sit on the memory slope; verification moves right of decode by a
    factor of about gamma + 1, which is why it is nearly free until it reaches the
    ridge.

    Args:
        hardware: a chip name, ``.toml`` path or ``HardwareSpec``, or several.
        target: target model name or spec.
        draft: draft model name or spec.
        batch: one or more batch sizes, sequences.
        gamma: draft tokens per iteration.
        prompt_tokens: prompt length, tokens.
        generate_tokens: generated tokens per sequence.
        tp: target tensor-parallel degree.
        draft_tp: draft tensor-parallel degree (default ``tp``).
        path: save the figure here.

    Returns:
        The figure (one log-log axes).

    Examples:
        >>> from specsim import plot
        >>> figure = plot.roofline(["h200", "tpu-v5p"], batch=[1, 64])
        >>> figure.axes[0].get_xlabel()
        'arithmetic intensity (FLOP/byte)'
    """
    chips = [hardware] if isinstance(hardware, str | os.PathLike | HardwareSpec) else hardware
    if not chips:
        raise ValueError("hardware: give at least one chip")
    batches = np.atleast_1d(np.asarray(batch, dtype=np.float64))
    if batches.size == 0 or not np.all(batches > 0):
        raise ValueError(f"batch must be one or more values > 0, got {batch!r}")
    if not gamma >= 0:
        raise ValueError(f"gamma must be >= 0, got {gamma!r}")
    target_spec = _spec(target, _models.load, TransformerSpec, "target")
    draft_spec = _spec(draft, _models.load, TransformerSpec, "draft")
    draft_tp = tp if draft_tp is None else draft_tp
    check_parallelism(target_spec, draft_spec, tp, draft_tp)
    context = prompt_tokens + generate_tokens / 2.0
    # Memory at the end of the generation, as in `throughput`: both models' weights and
    # KV caches on each chip. Batches that do not fit are drawn hollow.
    final = prompt_tokens + generate_tokens + gamma
    memory = (
        np.asarray(memory_footprint(target_spec, batches, final).total_bytes) / tp
        + np.asarray(memory_footprint(draft_spec, batches, final).total_bytes) / draft_tp
    )
    phases = {
        "draft": (draft_spec, 1.0, draft_tp),
        "verify": (target_spec, gamma + 1.0, tp),
        "decode": (target_spec, 1.0, tp),
    }

    figure = _Figure(figsize=(7.0, 4.8))
    ax = figure.add_subplot()
    colors = [f"C{i}" for i in range(10)]
    lowest, highest = np.inf, 0.0
    specs = [_spec(chip, _hardware.get, HardwareSpec, "hardware") for chip in chips]
    for spec in specs:
        check_domain(spec, tp)
    for i, (chip, spec) in enumerate(zip(chips, specs, strict=True)):
        name = f"chip {i + 1}" if isinstance(chip, HardwareSpec) else _display(chip)
        color = colors[i % len(colors)]
        fits = memory <= float(spec.hbm_capacity_bytes)
        peak = float(_hardware.effective_flops_per_s(spec, target_spec.compute_dtype))
        bandwidth = float(_hardware.effective_hbm_bytes_per_s(spec))
        for phase, (model, new_tokens, degree) in phases.items():
            cost = forward_cost(model, batches, new_tokens, context)
            time_s = np.asarray(step_time(model, spec, batches, new_tokens, context, degree).time_s)
            flops = np.asarray(cost.flops) / degree
            intensity = flops / (np.asarray(cost.bytes) / degree)
            attained = flops / time_s
            marker, text = _PHASE_STYLE[phase]
            ax.plot(
                intensity,
                attained / 1e12,
                marker=marker,
                color=color,
                lw=0.8,
                ms=6,
                markevery=np.flatnonzero(fits).tolist(),
                label=f"{name}: {text}",
            )
            if not fits.all():
                ax.plot(
                    intensity[~fits],
                    attained[~fits] / 1e12,
                    marker=marker,
                    ls="none",
                    mfc="none",
                    mec="0.5",
                    ms=6,
                    label=f"{name}: does not fit in memory" if phase == "draft" else None,
                )
            lowest, highest = min(lowest, intensity.min()), max(highest, intensity.max())
        ridge = peak / bandwidth
        lowest, highest = min(lowest, ridge), max(highest, ridge)
        roof_x = np.geomspace(min(lowest, ridge) / 4, max(highest, ridge) * 4, 200)
        ax.plot(
            roof_x,
            np.minimum(peak, roof_x * bandwidth) / 1e12,
            color=color,
            lw=2.0,
            alpha=0.6,
            label=f"{name}: roof (ridge {ridge:.0f} FLOP/byte)",
        )
    # One annotation per batch on the first chip's verification points.
    cost = forward_cost(target_spec, batches, gamma + 1.0, context)
    time_s = np.asarray(step_time(target_spec, specs[0], batches, gamma + 1.0, context, tp).time_s)
    for b, x, y in zip(
        batches,
        np.asarray(cost.flops / cost.bytes),
        np.asarray(cost.flops) / tp / time_s / 1e12,
        strict=True,
    ):
        ax.annotate(f"batch {b:g}", (x, y), textcoords="offset points", xytext=(4, -10), fontsize=7)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP/byte)")
    ax.set_ylabel("attained performance per chip (TFLOP/s)")
    ax.set_title(
        f"{_model_name(target)} + draft {_model_name(draft)}, γ = {gamma:g}, tp = {tp:g}, "
        f"context {context:g} tokens",
        fontsize=9,
    )
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=7, loc="lower right")
    return _finish(figure, path)


def _model_name(model) -> str:
    return _models.locate(model).label if isinstance(model, str | os.PathLike) else "custom"


# --------------------------------------------------------------------------- frames


def _require(frame: pd.DataFrame, columns: Sequence[str]) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise ValueError(f"expected a DataFrame from specsim.sweep, got {type(frame).__name__}")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"the frame has no column {missing[0]!r}; columns: {list(frame.columns)}")
    if frame.empty:
        raise ValueError("the frame is empty")


def _only_varying(frame: pd.DataFrame, allowed: Sequence[str]) -> str:
    """Check that no axis besides ``allowed`` varies; return a title of the fixed ones."""
    varying = [
        a for a in AXES if a in frame.columns and a not in allowed and frame[a].nunique() > 1
    ]
    if varying:
        first = varying[0]
        example = frame[first].iloc[0]
        raise ValueError(
            f"the frame varies {', '.join(varying)} besides {', '.join(allowed)}; select one "
            f"value first, e.g. frame[frame.{first} == {example!r}]"
        )
    fixed = [
        f"{a} {_short(frame[a].iloc[0])}" for a in AXES if a in frame.columns and a not in allowed
    ]
    return ", ".join(fixed)


def _wrap(text: str) -> str:
    return textwrap.fill(text, width=90)


def _short(value) -> str:
    return f"{value:g}" if isinstance(value, float | np.floating) else str(value)


def _is_wide(values: np.ndarray) -> bool:
    values = np.asarray(values, dtype=np.float64)
    return bool(np.all(values > 0) and values.max() / values.min() >= 16)


def heatmap(
    frame: pd.DataFrame,
    x: str = "gamma",
    y: str = "batch",
    value: str = "tokens_per_s",
    *,
    mark_best: bool = True,
    path: str | os.PathLike | None = None,
) -> Figure:
    """A sweep column over two axes (by default throughput over gamma and batch).

    Cells are laid out by rank, so geometric axes (batch 1, 2, 4, ...) are evenly
    spaced. With ``mark_best`` each row's best ``x`` (the maximum of ``value``) is
    circled: for the defaults, the best lookahead of each batch size.

    Args:
        frame: a ``specsim.sweep`` frame in which only ``x`` and ``y`` vary.
        x: column along the horizontal axis.
        y: column along the vertical axis.
        value: column shown as colour.
        mark_best: circle the maximum of each row.
        path: save the figure here.

    Returns:
        The figure (heatmap and colour bar).

    Raises:
        ValueError: a missing column, an empty frame, or another axis that varies.
    """
    _require(frame, [x, y, value])
    title = _only_varying(frame, [x, y])
    if frame.duplicated([x, y]).any():
        raise ValueError(f"the frame has several rows per ({x}, {y}); select one value first")
    table = frame.pivot(index=y, columns=x, values=value).sort_index().sort_index(axis=1)
    ok = (
        frame.assign(_ok=_feasible(frame))
        .pivot(index=y, columns=x, values="_ok")
        .sort_index()
        .sort_index(axis=1)
        .to_numpy(dtype=bool)
    )
    # Infeasible cells are blanked (grey, hatched): their numbers are not answers.
    grid = np.where(ok, table.to_numpy(dtype=np.float64), np.nan)
    figure = _Figure(figsize=(7.0, 4.8))
    ax = figure.add_subplot()
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="0.85")
    image = ax.imshow(grid, origin="lower", aspect="auto", cmap=cmap, interpolation="nearest")
    if not ok.all():
        rows, cols = np.nonzero(~ok)
        ax.scatter(cols, rows, marker="x", color="0.35", s=18, lw=1.0,
                   label=f"infeasible ({_reasons(frame)})")  # fmt: skip
    colorbar = figure.colorbar(image, ax=ax)
    colorbar.set_label(label(value))
    ax.set_xticks(range(len(table.columns)), [_short(v) for v in table.columns])
    ax.set_yticks(range(len(table.index)), [_short(v) for v in table.index])
    if len(table.columns) > 16:
        for i, tick in enumerate(ax.get_xticklabels()):
            tick.set_visible(i % max(1, len(table.columns) // 12) == 0)
    ax.set_xlabel(label(x))
    ax.set_ylabel(label(y))
    rows_with_data = np.isfinite(grid).any(axis=1)
    if mark_best and rows_with_data.any():
        best = np.nanargmax(np.where(rows_with_data[:, None], grid, 0.0), axis=1)
        where = np.flatnonzero(rows_with_data)
        ax.plot(
            best[where],
            where,
            "o",
            mfc="none",
            mec="white",
            ms=9,
            mew=1.5,
            label=f"best {x} per {y}",
        )
        edge = where[best[where] == grid.shape[1] - 1] if grid.shape[1] > 1 else where[:0]
        if edge.size:
            ax.plot(
                best[edge], edge, "o", mfc="none", mec="red", ms=11, mew=1.5,
                label=f"best {x} on the edge of the searched range",
            )  # fmt: skip
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="upper right")
    ax.set_title(_wrap(title), fontsize=8)
    return _finish(figure, path)


def _feasible(frame: pd.DataFrame) -> np.ndarray:
    """Which rows can be served: the ``feasibility`` column, else ``fits``, else all."""
    if "feasibility" in frame.columns:
        return (frame["feasibility"].astype(str) == "ok").to_numpy()
    if "fits" in frame.columns:
        return frame["fits"].to_numpy(dtype=bool)
    return np.ones(len(frame), bool)


def _reasons(frame: pd.DataFrame) -> str:
    """The reasons of the infeasible rows, for a legend (``"memory, tp-heads"``)."""
    if "feasibility" in frame.columns:
        codes = frame["feasibility"].astype(str)
        return ", ".join(sorted(set(codes[codes != "ok"]))) or "none"
    return "memory"


def _best_rows(frame: pd.DataFrame, keys: Sequence[str], objective: str) -> pd.DataFrame:
    """The feasible row maximising ``objective`` in each group of ``keys`` (frame order
    kept); groups without a feasible row are left out."""
    frame = frame[_feasible(frame)]
    if frame.empty:
        raise ValueError(
            "frame: no feasible row to plot (see its feasibility column); valid: a frame "
            "with at least one point that fits and can be split over its chips"
        )
    index = frame.groupby(list(keys), observed=True, sort=True)[objective].idxmax()
    return frame.loc[index.dropna().to_numpy()]


def best_gamma(
    frame: pd.DataFrame,
    x: str = "batch",
    by: str = "hardware",
    objective: str = "tokens_per_s",
    *,
    path: str | os.PathLike | None = None,
) -> Figure:
    """The throughput-optimal lookahead versus ``x`` (batch), one line per ``by``.

    Accepts a full sweep (the best gamma is taken per (``by``, ``x``)) or one already
    reduced with ``best_over="gamma"``. A second panel shows the speedup at that
    gamma; where it falls to 1 (best gamma 0) speculation stops paying.

    Args:
        frame: a ``specsim.sweep`` frame varying ``gamma``, ``x`` and ``by`` only.
        x: column along the horizontal axis (log scale when it spans 16x or more).
        by: column that separates lines (e.g. ``"hardware"``); may be constant.
        objective: column maximised over gamma.
        path: save the figure here.

    Returns:
        The figure (one or two panels; two when the frame has ``speedup``).

    Raises:
        ValueError: a missing column, an empty frame, or another axis that varies.
    """
    _require(frame, ["gamma", x, by, objective])
    title = _only_varying(frame, ["gamma", x, by])
    best = _best_rows(frame, [by, x], objective)
    excluded = int((~_feasible(frame)).sum())
    if excluded:
        title += f"; {excluded} infeasible points left out ({_reasons(frame)})"
    panels = 2 if "speedup" in best.columns else 1
    figure = _Figure(figsize=(7.0, 3.2 * panels + 0.6))
    axes = [figure.add_subplot(panels, 1, i + 1) for i in range(panels)]
    for group, rows in best.groupby(by, observed=True, sort=False):
        rows = rows.sort_values(x)
        axes[0].plot(rows[x], rows["gamma"], marker="o", label=str(group))
        if panels == 2:
            axes[1].plot(rows[x], rows["speedup"], marker="o", label=str(group))
    searched = frame["gamma"].to_numpy(dtype=np.float64)
    edge = best[best["gamma"] == searched.max()] if np.unique(searched).size > 1 else best[:0]
    if len(edge):  # the best gamma may lie beyond the grid: say so on the chart
        axes[0].plot(
            edge[x], edge["gamma"], "^", color="red", ms=9, mfc="none", mew=1.5,
            label=f"on the edge of the searched range (γ = {searched.max():g})",
        )  # fmt: skip
    axes[0].set_ylabel(f"best {label('gamma')}")
    if panels == 2:
        axes[1].axhline(1.0, color="0.4", lw=1, ls="--", label="no gain (speedup 1)")
        axes[1].set_ylabel("speedup at best γ (×)")
    for ax in axes:
        if _is_wide(best[x].to_numpy()):
            ax.set_xscale("log", base=2)
        ax.set_xlabel(label(x))
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_title(_wrap(f"maximising {label(objective)}; {title}"), fontsize=8)
    return _finish(figure, path)


def hardware_comparison(
    frame: pd.DataFrame,
    objective: str = "tokens_per_s",
    by: str = "hardware",
    *,
    path: str | os.PathLike | None = None,
) -> Figure:
    """Best speculative throughput of each accelerator against its plain decoding.

    For each value of ``by`` the row maximising ``objective`` over everything else
    in the frame is kept; bars show its speculative and plain throughput, annotated
    with the speedup and the gamma and batch that achieve it. Filter the frame first
    to compare at a fixed batch.

    Args:
        frame: a ``specsim.sweep`` frame with ``tokens_per_s`` and
            ``baseline_tokens_per_s``.
        objective: column maximised per ``by``.
        by: the column whose values are compared (usually ``"hardware"``).
        path: save the figure here.

    Returns:
        The figure (grouped bars).

    Raises:
        ValueError: a missing column or an empty frame.
    """
    _require(frame, [by, objective, "tokens_per_s", "baseline_tokens_per_s"])
    best = _best_rows(frame, [by], objective).sort_values("tokens_per_s", ascending=False)
    shown = {str(v) for v in best[by]}
    missing = [str(v) for v in frame[by].unique() if str(v) not in shown]
    names = [str(v) for v in best[by]]
    positions = np.arange(len(names))
    figure = _Figure(figsize=(max(5.0, 1.3 * len(names) + 2.0), 4.6))
    ax = figure.add_subplot()
    width = 0.38
    ax.bar(positions - width / 2, best["tokens_per_s"], width, label="speculative decoding")
    ax.bar(positions + width / 2, best["baseline_tokens_per_s"], width, label="plain decoding")
    for pos, row in zip(positions, best.itertuples(), strict=True):
        note = f"×{row.tokens_per_s / row.baseline_tokens_per_s:.2f}"
        details = [
            f"{a} {_short(getattr(row, a))}" for a in ("gamma", "batch") if a in best.columns
        ]
        ax.annotate(
            "\n".join([note, *details]),
            (pos - width / 2, row.tokens_per_s),
            textcoords="offset points",
            xytext=(0, 3),
            ha="center",
            fontsize=7,
        )
    for pos, name in enumerate(missing, start=len(names)):
        rows = frame[frame[by].astype(str) == name]
        ax.annotate(
            f"infeasible\n({_reasons(rows)})",
            (pos, 0),
            textcoords="offset points",
            xytext=(0, 3),
            ha="center",
            fontsize=7,
            color="0.35",
        )
    names = names + missing
    positions = np.arange(len(names))
    ax.set_xticks(positions, names, rotation=20 if len(names) > 4 else 0)
    ax.set_xlabel(label(by))
    ax.set_ylabel(label("tokens_per_s"))
    ax.set_ylim(0, float(best["tokens_per_s"].max()) * 1.25)
    ax.legend(fontsize=8)
    ax.set_title(f"best point of each {by} (maximising {label(objective)})", fontsize=8)
    return _finish(figure, path)


# --------------------------------------------------------------------------- SDSL

# Bozorgkhoo & Molybog (2026), arXiv 2603.11053, Table 9: pooled N* = mu M + M0.
SDSL_SLOPE = 2.71e-3
SDSL_INTERCEPT_PARAMS = 8.71e7

_SDSL_TARGETS = (
    "OPT-13B",
    "OPT-30B",
    "OPT-66B",
    "Llama-3-70B",
    "Qwen2.5-14B",
    "Qwen2.5-32B",
    "Qwen2.5-72B",
)
_CURVE_POINTS = 48


_optimal_draft_sizes = jax.jit(jax.vmap(theory.optimal_draft_size))


def optimal_draft_size(
    train_tokens: float | Sequence[float] = (180e9, 2e12, 15e12),
    *,
    targets: Sequence[str] = _SDSL_TARGETS,
    target_range: tuple[float, float] = (5e9, 2e11),
    path: str | os.PathLike | None = None,
) -> Figure:
    """The SDSL throughput-optimal draft size N* against the target size M.

    Curves: ``specsim.theory.optimal_draft_size`` over M for each pre-training token
    count D (draft and target trained on the same D). Points: catalogue targets at
    their own published D (OPT: 180e9, Llama 3: 15e12, Qwen2.5: 18e12). Dashed: the
    paper's pooled linear law ``N* = 2.71e-3 M + 8.71e7``.

    Args:
        train_tokens: one or more pre-training token counts D for the curves.
        targets: catalogue models plotted as points (each needs ``train_tokens``).
        target_range: (smallest, largest) M of the curves, parameters.
        path: save the figure here.

    Returns:
        The figure (log-log).

    References:
        Bozorgkhoo, Molybog (2026), arXiv 2603.11053 (Table 9).
    """
    tokens = np.atleast_1d(np.asarray(train_tokens, dtype=np.float64))
    if tokens.size == 0 or not np.all(tokens > 0):
        raise ValueError(f"train_tokens must be one or more values > 0, got {train_tokens!r}")
    lo, hi = target_range
    if not 0 < lo < hi:
        raise ValueError(f"target_range must be (smallest, largest) > 0, got {target_range!r}")
    points = []
    for name in targets:
        count = _models.train_tokens(name)
        if count is None:
            raise ValueError(f"the catalogue has no training-token count for {name!r}")
        points.append((_models.info(name)["name"], float(_models.get(name).parameter_count), count))

    sizes = np.geomspace(lo, hi, _CURVE_POINTS)
    # One compiled shape for every call: curves and points padded into one batch.
    batch_m = [*np.tile(sizes, tokens.size), *(m for _, m, _ in points)]
    batch_d = [*np.repeat(tokens, sizes.size), *(d for _, _, d in points)]
    width = _CURVE_POINTS * max(3, tokens.size) + max(8, len(points))
    pad = width - len(batch_m)
    optimum = np.asarray(
        _optimal_draft_sizes(
            jnp.asarray(batch_m + [1e10] * pad, jnp.float32),
            jnp.asarray(batch_d + [1e12] * pad, jnp.float32),
        )
    )
    figure = _Figure(figsize=(7.0, 4.8))
    ax = figure.add_subplot()
    for k, count in enumerate(tokens):
        curve = optimum[k * sizes.size : (k + 1) * sizes.size]
        ax.plot(sizes, curve, label=f"specsim, D = {count:.3g} tokens")
    law = SDSL_SLOPE * sizes + SDSL_INTERCEPT_PARAMS
    ax.plot(sizes, law, "k--", label="SDSL Table 9: 2.71e-3 M + 8.71e7")
    start = tokens.size * sizes.size
    placed = sorted(
        zip(points, optimum[start : start + len(points)], strict=True), key=lambda p: p[0][1]
    )
    for k, ((name, m, _), n) in enumerate(placed):
        ax.plot(m, n, "o", color="0.2", ms=5)
        # Neighbouring targets alternate above and below the curve so labels do not collide.
        above = k % 2 == 0
        ax.annotate(
            name,
            (m, n),
            textcoords="offset points",
            xytext=(-5, 7) if above else (5, -11),
            ha="right" if above else "left",
            fontsize=7,
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("target size M (parameters)")
    ax.set_ylabel("optimal draft size N* (parameters)")
    ax.set_title("throughput-optimal draft size (SDSL, tokens per FLOP)", fontsize=9)
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=8)
    return _finish(figure, path)


# --------------------------------------------------------------------------- serving


def throughput_latency(
    frame: pd.DataFrame,
    latency: str = "tpot_p50_s",
    path: str | os.PathLike | None = None,
) -> Figure:
    """Latency against throughput under load, one line per speculation policy.

    Reads ``specsim.serving.load_curve``'s frame (``policy``, ``throughput_tokens_per_s``,
    the latency column, ``within_approximation``, ``feasible``); loads beyond the
    steady-state approximation are drawn hollow and saturated ones left out.

    Examples:
        >>> import pandas as pd
        >>> frame = pd.DataFrame({"policy": ["plain"] * 2, "throughput_tokens_per_s": [1e3, 2e3],
        ...                       "tpot_p50_s": [0.01, 0.02], "within_approximation": [True, False],
        ...                       "feasible": [True, True]})
        >>> throughput_latency(frame).axes[0].get_ylabel()
        'median time per output token (s)'
    """
    _require(frame, ["policy", "throughput_tokens_per_s", latency, "within_approximation"])
    figure = _Figure(figsize=(6.4, 4.2))
    ax = figure.add_subplot()
    feasible = frame["feasible"] if "feasible" in frame else True
    for name, group in frame[feasible].groupby("policy", sort=False):
        group = group.sort_values("throughput_tokens_per_s")
        (line,) = ax.plot(group["throughput_tokens_per_s"], group[latency], label=str(name))
        inside = group["within_approximation"].astype(bool)
        ax.plot(
            group["throughput_tokens_per_s"][inside],
            group[latency][inside],
            "o",
            color=line.get_color(),
            markersize=4,
        )
        ax.plot(
            group["throughput_tokens_per_s"][~inside],
            group[latency][~inside],
            "o",
            markerfacecolor="none",
            color=line.get_color(),
            markersize=4,
        )
    ax.set_xlabel(label("throughput_tokens_per_s"))
    ax.set_ylabel(label(latency))
    ax.set_yscale("log")
    ax.set_title("Serving under load (hollow: beyond the steady-state approximation)", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    return _finish(figure, path)
