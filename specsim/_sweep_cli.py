"""Sweep a Cartesian grid of what-if scenarios and write it as CSV or Parquet.

``specsim sweep`` takes every axis as a list, a range or a progression
(``--gamma 0:8``, ``--batch 1,2,4,...,256``, ``--hardware h200,tpu-v5p``), evaluates
the grid with ``specsim.sweep`` and writes one row per point (``--out grid.parquet``),
prints the best points, and optionally draws a chart (``--plot grid.png``).

Examples::

    specsim sweep --hardware h200,tpu-v5p --batch 1,2,4,...,256 --gamma 0:8 \\
        --out grid.parquet --plot best_gamma.png
    specsim sweep --batch 1,2,4,...,1024 --gamma 0:12 --best-over gamma --out best.csv
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from ._sweep import AXES, REPORT_COLUMNS, parse_axis, sweep

__all__ = ["add_plot_argument", "add_sweep_arguments", "run_sweep", "save_roofline"]

_PLOT_KINDS = ("auto", "heatmap", "best-gamma", "hardware", "roofline")


def add_plot_argument(parser: argparse.ArgumentParser) -> None:
    """Adds ``--plot FILE`` (a ``.png``, ``.svg`` or ``.pdf`` chart) to any subcommand."""
    parser.add_argument(
        "--plot",
        metavar="FILE",
        default=None,
        help="also draw a chart into FILE (.png, .svg or .pdf)",
    )


def save_roofline(args: argparse.Namespace) -> str:
    """Draws ``specsim.plot.roofline`` for an ``evaluate``-style namespace into ``args.plot``.

    Reads ``hardware``, ``target``, ``draft``, ``batch``, ``gamma``, ``prompt``,
    ``generate``, ``tp`` and ``draft_tp`` (the flags of ``add_scenario_arguments``)
    and returns the path written.
    """
    from .plot import roofline

    _check_plot_path(args.plot)
    roofline(
        args.hardware,
        args.target,
        args.draft,
        batch=args.batch,
        gamma=args.gamma,
        prompt_tokens=args.prompt,
        generate_tokens=args.generate,
        tp=args.tp,
        draft_tp=args.draft_tp,
        path=args.plot,
    )
    return args.plot


def add_sweep_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``specsim sweep``. Axes are text: lists, ``start:stop[:step]``, ``a,b,c,...,z``."""
    axis = "comma list, start:stop[:step] (stop included) or a progression like 1,2,4,...,256"
    grid = parser.add_argument_group("grid axes (the sweep is their Cartesian product)")
    grid.add_argument("--hardware", default="h100", help="accelerators or .toml files, comma list")
    grid.add_argument("--target", default="llama-3-8b", help="target models, comma list")
    grid.add_argument("--draft", default="llama-68m", help="draft models, comma list")
    grid.add_argument("--tp", default="1", help=f"target tensor parallelism: {axis}")
    grid.add_argument("--batch", default="1", help=f"sequences: {axis}")
    grid.add_argument("--prompt", default="512", help=f"prompt tokens: {axis}")
    grid.add_argument("--generate", default="256", help=f"generated tokens: {axis}")
    grid.add_argument("--gamma", default="4", help=f"draft tokens per iteration: {axis}")
    acceptance = grid.add_mutually_exclusive_group()
    acceptance.add_argument("--alpha", default=None, help=f"acceptance in (0, 1): {axis}")
    acceptance.add_argument(
        "--alpha-model",
        choices=("sdsl",),
        default=None,
        help="acceptance from the SDSL perplexity law of each draft/target pair",
    )
    grid.add_argument("--draft-train-tokens", type=float, default=None, help="for --alpha-model")
    grid.add_argument("--target-train-tokens", type=float, default=None, help="for --alpha-model")
    grid.add_argument("--draft-tp", type=float, default=None, help="draft tp (default: the tp)")

    result = parser.add_argument_group("result")
    result.add_argument(
        "--columns",
        default=None,
        help=f"report fields to keep, comma list (default all): {', '.join(REPORT_COLUMNS)}",
    )
    result.add_argument(
        "--best-over",
        default=None,
        help="axes to optimise over, comma list (e.g. gamma): one row per other point",
    )
    result.add_argument("--objective", default="tokens_per_s", help="field to optimise")
    result.add_argument("--minimize", action="store_true", help="minimise the objective")
    result.add_argument(
        "--out", metavar="FILE", default=None, help="write rows to FILE (.csv or .parquet)"
    )
    result.add_argument("--top", type=int, default=10, help="best rows to print (default 10)")
    result.add_argument("--json", action="store_true", help="print a JSON summary")
    add_plot_argument(result)
    result.add_argument(
        "--plot-kind",
        choices=_PLOT_KINDS,
        default="auto",
        help="chart for --plot (auto: heatmap for gamma x batch, best-gamma when hardware "
        "also varies, hardware when only hardware varies)",
    )

    run = parser.add_argument_group("evaluation")
    run.add_argument("--chunk-size", type=int, default=2**20, help="points per device call")
    run.add_argument(
        "--quadrature-nodes", type=int, default=8, help="Gauss-Legendre nodes over the context"
    )
    run.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _names(text: str, flag: str) -> list[str]:
    items = [item.strip() for item in str(text).split(",")]
    if not all(items):
        raise ValueError(f"{flag}: empty item in {text!r}")
    return items


def _check_plot_path(path: str) -> None:
    if not str(path).lower().endswith((".png", ".svg", ".pdf")):
        raise ValueError(f"--plot must end in .png, .svg or .pdf, got {path!r}")


def _grid_arguments(args: argparse.Namespace) -> dict:
    """``specsim.sweep`` keyword arguments from the parsed flags (``ValueError`` if bad)."""
    if args.alpha_model == "sdsl":
        alpha = "sdsl"
    else:
        alpha = parse_axis(args.alpha if args.alpha is not None else "0.8", "--alpha")
    kwargs = dict(
        hardware=_names(args.hardware, "--hardware"),
        target=_names(args.target, "--target"),
        draft=_names(args.draft, "--draft"),
        tp=parse_axis(args.tp, "--tp"),
        batch=parse_axis(args.batch, "--batch"),
        prompt_tokens=parse_axis(args.prompt, "--prompt"),
        generate_tokens=parse_axis(args.generate, "--generate"),
        alpha=alpha,
        gamma=parse_axis(args.gamma, "--gamma"),
        draft_tp=args.draft_tp,
        target_train_tokens=args.target_train_tokens,
        draft_train_tokens=args.draft_train_tokens,
        objective=args.objective,
        maximize=not args.minimize,
        chunk_size=args.chunk_size,
        quadrature_nodes=args.quadrature_nodes,
        progress=False if args.no_progress else None,
    )
    if args.columns is not None:
        kwargs["columns"] = _names(args.columns, "--columns")
    if args.best_over is not None:
        kwargs["best_over"] = _names(args.best_over, "--best-over")
    return kwargs


def _plot_kind(kwargs: dict, requested: str) -> str:
    if requested != "auto":
        return requested
    varying = {
        a
        for a in AXES
        if a in kwargs and not isinstance(kwargs[a], str) and len(np.atleast_1d(kwargs[a])) > 1
    }
    reduced = set(kwargs.get("best_over") or ())
    if {"gamma", "batch"} <= varying and varying <= {"gamma", "batch"} and not reduced:
        return "heatmap"
    if {"gamma", "batch"} <= varying and varying <= {"gamma", "batch", "hardware"}:
        return "best-gamma"
    if "hardware" in varying and varying <= {"gamma", "batch", "hardware"}:
        return "hardware"
    raise ValueError(
        f"--plot: no automatic chart for a grid varying {', '.join(sorted(varying)) or 'nothing'};"
        f" choose --plot-kind from {', '.join(_PLOT_KINDS[1:])}"
    )


def _draw(kind: str, frame, kwargs: dict, path: str) -> None:
    from . import plot

    if kind == "heatmap":
        plot.heatmap(frame, path=path)
    elif kind == "best-gamma":
        plot.best_gamma(frame, path=path)
    elif kind == "hardware":
        plot.hardware_comparison(frame, path=path)
    else:
        plot.roofline(
            kwargs["hardware"],
            kwargs["target"][0],
            kwargs["draft"][0],
            batch=kwargs["batch"],
            gamma=kwargs["gamma"][0],
            prompt_tokens=kwargs["prompt_tokens"][0],
            generate_tokens=kwargs["generate_tokens"][0],
            tp=kwargs["tp"][0],
            draft_tp=kwargs["draft_tp"],
            path=path,
        )


def _write(frame, path: str) -> None:
    if path.lower().endswith(".parquet"):
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)


def run_sweep(args: argparse.Namespace) -> int:
    """Runs ``specsim sweep``: a Cartesian grid of what-if scenarios to CSV or Parquet.

    Bad input raises ``ValueError`` (the CLI prints it on one line and exits 2).
    """
    kwargs = _grid_arguments(args)
    if args.top < 0:
        raise ValueError(f"--top must be >= 0, got {args.top}")
    kind = None
    if args.plot is not None:
        _check_plot_path(args.plot)
        kind = _plot_kind(kwargs, args.plot_kind)
    if args.out is not None and not args.out.lower().endswith((".csv", ".parquet")):
        raise ValueError(f"--out must end in .csv or .parquet, got {args.out!r}")

    start = time.perf_counter()
    # A chart needs the rows in memory; otherwise a file is streamed chunk by chunk.
    streamed = args.out is not None and kind is None
    frame = sweep(**kwargs, out=args.out if streamed else None)
    elapsed = time.perf_counter() - start
    if frame is not None and args.out is not None:
        _write(frame, args.out)
    if kind is not None:
        _draw(kind, frame, kwargs, args.plot)

    points = int(
        np.prod([len(np.atleast_1d(kwargs[a])) for a in AXES if a in kwargs and a != "alpha"])
    ) * (1 if isinstance(kwargs["alpha"], str) else len(kwargs["alpha"]))
    summary = {
        "points": points,
        "rows": None if frame is None else len(frame),
        "seconds": elapsed,
        "points_per_s": points / elapsed if elapsed > 0 else float("inf"),
        "out": args.out,
        "plot": args.plot,
    }
    best = None
    if frame is not None and args.top and args.objective in frame.columns:
        best = frame.sort_values(args.objective, ascending=args.minimize).head(args.top)
        varying = [a for a in AXES if a in frame.columns and frame[a].nunique() > 1]
        shown = [c for c in ("tokens_per_s", "speedup") if c in frame.columns]
        best = best[varying + [c for c in dict.fromkeys([args.objective, *shown])]]
    if args.json:
        summary["best"] = [] if best is None else json.loads(best.to_json(orient="records"))
        print(json.dumps(summary, indent=2))
        return 0
    print(
        f"{points:,} points in {elapsed:.2f} s ({summary['points_per_s']:.3g} points/s, "
        "compilation included)"
    )
    for what in ("out", "plot"):
        if summary[what] is not None:
            print(f"wrote {summary[what]}")
    if best is not None and len(best):
        order = "lowest" if args.minimize else "highest"
        print(f"\n{order} {args.objective}:")
        print(best.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    return 0
