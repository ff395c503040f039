"""Validation reports: Markdown tables for people, a JSON summary for machines."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ._metrics import NOISY_MEDIAN_OVER_P10, QUIET_MEDIAN_OVER_P10, mape

__all__ = ["markdown_table", "report_local", "report_published"]

STATISTIC_NAMES = {"p10": "lower decile (p10)", "median": "median"}


def markdown_table(frame, columns: list[str], float_format: str = "{:.4g}") -> str:
    """A GitHub Markdown table of ``columns`` of ``frame`` (a missing number, NaN, is an
    empty cell, as in the CSV).

    Examples:
        >>> import pandas as pd
        >>> print(markdown_table(pd.DataFrame({"a": [1.5, float("nan")]}), ["a"]))
        | a |
        |---|
        | 1.5 |
        |  |
    """
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for _, row in frame[columns].iterrows():
        cells = []
        for value in row:
            if isinstance(value, float | np.floating):
                cells.append("" if np.isnan(value) else float_format.format(value))
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
    "group",
    "quantity",
    "kind",
    "published",
    "predicted",
    "error_pct",
    "published_cost_ratio",
    "predicted_cost_ratio",
]


def report_local(local) -> tuple[str, dict[str, Any]]:
    """The Markdown section and JSON summary of a `LocalValidation`."""
    steps = local.steps.sort_values(["split", "model", "phase", "batch", "context"])
    fitted = local.calibration.hardware.to_datasheet()
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
                "attention_compute_efficiency",
                "gemm_weight_passes",
                "kernel_launch_us",
                "step_overhead_us",
            )
            if k in fitted  # (attention_compute_efficiency: only where fitted apart)
        )
        + f", roofline sharpness p = {sharpness:.3g}"
        + f" (nominal {fitted['bf16_tflops'] * 1e3:.1f} GFLOP/s, "
        f"{fitted['hbm_tb_per_s'] * 1e3:.1f} GB/s).",
        "",
    ]
    spread = local.median_over_p10
    if np.isfinite(spread):
        lines += [
            f"Timing spread: a grid point's median step time is {spread:.2f} times its p10 "
            f"(the median over the grid; {QUIET_MEDIAN_OVER_P10} on the quiet Xeon host where "
            "the bars were met).",
            "",
        ]
    if local.noisy:
        lines += [
            f"**Noisy timings** (above {NOISY_MEDIAN_OVER_P10}): this host's repeated timings "
            "vary more than on the host where the bars were met, so the errors and the fit "
            "may reflect the host rather than the model. Rerun on a quieter host (load "
            "average is not enough: a shared physical CPU can be busy while this one looks "
            "idle).",
            "",
        ]
    implausible = local.implausible
    if implausible:
        lines += [
            "**Implausible calibration** (the fitted hardware file is flagged; do not use it "
            "as --hardware): " + "; ".join(implausible) + ".",
            "",
        ]
    summary: dict[str, Any] = {
        "statistic": local.statistic,
        "step_time_mape_pct": local.step_mape,
        "step_time_mape_vs_median_pct": local.step_mape_median,
        "step_time_train_mape_pct": local.train_mape,
        "step_points": len(steps),
        # JSON has no infinity: an unlimited field (a measured CPU's interconnect domain,
        # a hard roofline's sharpness) is written as null.
        "fitted": {k: (v if math.isfinite(v) else None) for k, v in fitted.items()},
        "roofline_sharpness": sharpness,
        "step_median_over_p10": spread if np.isfinite(spread) else None,
        "noisy_timings": local.noisy,
        "plausible": not implausible,
        "implausible": implausible,
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


def report_published(published) -> tuple[str, dict[str, Any]]:
    """The Markdown section and JSON summary of `validate_published`'s table."""
    from ._published import published_mape_by_group

    error = mape(published["predicted"], published["published"])
    by_quantity = {
        q: mape(g["predicted"], g["published"]) for q, g in published.groupby("quantity")
    }
    by_group = published_mape_by_group(published)
    lines = [
        "## Published measurements, predicted with the catalogue's default efficiencies",
        "",
        markdown_table(published, PUBLISHED_COLUMNS),
        "",
        "| group | rows | MAPE % |",
        "|---|---|---|",
        *(
            f"| {group} | {int((published['group'] == group).sum())} | {value:.1f} |"
            for group, value in by_group.items()
        ),
        "",
        f"Published MAPE: **{error:.1f}%** over {len(published)} rows, one catalogue for all "
        "groups (" + ", ".join(f"{q}: {v:.1f}%" for q, v in by_quantity.items()) + "). "
        "Sources: `specsim/data/published.toml`.",
        "",
    ]
    return "\n".join(lines), {
        "published_mape_pct": error,
        "published_mape_by_group_pct": by_group,
        "published_mape_by_quantity_pct": by_quantity,
        "published_rows": len(published),
    }
