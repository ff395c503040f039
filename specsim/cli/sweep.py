"""``specsim sweep``: a Cartesian grid of what-if scenarios, written as CSV or Parquet.

Every axis is a list, a range or a progression (``--gamma 0:8``,
``--batch 1,2,4,...,256``, ``--hardware h200,tpu-v5p``; see `parse_axis`). The grid is
evaluated by ``specsim.sweep``, one row per point (``--out grid.parquet``); the best
points are printed, and ``--plot best_gamma.png`` draws a chart.

Examples::

    specsim sweep --hardware h200,tpu-v5p --batch 1,2,4,...,256 --gamma 0:8 \\
        --out grid.parquet --plot best_gamma.png
    specsim sweep --batch 1,2,4,...,1024 --gamma 0:12 --best-over gamma --out best.csv
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import re
import time

from ._args import add_plot_argument, check_plot_path
from ._methods import add_method_arguments

__all__ = ["add_sweep_arguments", "parse_axis", "run_sweep"]

_PLOT_KINDS = ("auto", "heatmap", "best-gamma", "hardware", "roofline")


def add_sweep_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``specsim sweep``. Axes are text: lists, ``start:stop[:step]``, ``a,b,c,...,z``."""
    parser.description = (
        "Evaluate the Cartesian product of the axes below (one row per point) and write it "
        "as CSV or Parquet, print the best points, and optionally draw a chart."
    )
    parser.epilog = (
        "examples:\n"
        "  specsim sweep --hardware h200,tpu-v5p --batch 1,2,4,...,256 --gamma 0:8 \\\n"
        "      --out grid.parquet --plot best_gamma.png\n"
        "  specsim sweep --batch 1,2,4,...,1024 --gamma 0:12 --best-over gamma --out best.csv"
    )
    axis = "comma list, start:stop[:step] (stop included) or a progression like 1,2,4,...,256"
    grid = parser.add_argument_group("grid axes (the sweep is their Cartesian product)")
    grid.add_argument(
        "--hardware",
        default="h100",
        help="accelerators (catalogue names or .toml files), comma list",
    )
    models = "catalogue names, config.json paths, model folders or cached Hub ids, comma list"
    grid.add_argument("--target", default="llama-3-8b", help=f"target models: {models}")
    grid.add_argument("--draft", default="llama-68m", help=f"draft models: {models}")
    grid.add_argument("--tp", default="1", help=f"target tensor parallelism: {axis}")
    grid.add_argument("--batch", default="1", help=f"sequences: {axis}")
    grid.add_argument("--prompt", default="512", help=f"prompt tokens: {axis}")
    grid.add_argument("--generate", default="256", help=f"generated tokens: {axis}")
    grid.add_argument("--gamma", default="4", help=f"draft tokens per iteration: {axis}")
    acceptance = grid.add_mutually_exclusive_group()
    acceptance.add_argument(
        "--alpha", default=None, help=f"acceptance in (0, 1): {axis} (default 0.8)"
    )
    acceptance.add_argument(
        "--alpha-model",
        choices=("sdsl",),
        default=None,
        help="acceptance from the SDSL perplexity law of each draft/target pair "
        "(default: off, a constant --alpha)",
    )
    grid.add_argument(
        "--draft-train-tokens",
        type=float,
        default=None,
        help="draft training tokens for --alpha-model sdsl (default: the target's)",
    )
    grid.add_argument(
        "--target-train-tokens",
        type=float,
        default=None,
        help="target training tokens for --alpha-model sdsl (default: the catalogue's)",
    )
    grid.add_argument(
        "--draft-tp",
        type=float,
        default=None,
        help="draft tensor parallelism (default: each point's --tp)",
    )

    result = parser.add_argument_group("result")
    result.add_argument(
        "--columns",
        default=None,
        help="throughput-report fields to keep, comma list; an unknown name lists the valid "
        "ones (default: all)",
    )
    result.add_argument(
        "--best-over",
        default=None,
        help="axes to optimise over, comma list (e.g. gamma): one row per other point "
        "(default: no reduction)",
    )
    result.add_argument("--objective", default="tokens_per_s", help="field to optimise")
    result.add_argument("--minimize", action="store_true", help="minimise the objective")
    result.add_argument(
        "--out",
        metavar="FILE",
        default=None,
        help="write rows to FILE, .csv or .parquet (default: rows are not saved)",
    )
    result.add_argument("--top", type=int, default=10, help="best rows to print")
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
    add_method_arguments(parser, command="sweep")


def _names(text: str, flag: str) -> list[str]:
    items = [item.strip() for item in str(text).split(",")]
    if not all(items):
        raise ValueError(f"{flag}: empty item in {text!r}")
    return items


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


def _length(value) -> int:
    """Number of values of a parsed axis (a list; one for a scalar or ``"sdsl"``)."""
    return len(value) if isinstance(value, list | tuple) else 1


def _plot_kind(kwargs: dict, requested: str, axes: tuple[str, ...]) -> str:
    if requested != "auto":
        return requested
    varying = {a for a in axes if a in kwargs and _length(kwargs[a]) > 1}
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
    from specsim import plot

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
    from specsim import sweep
    from specsim._sweep import AXES

    kwargs = _grid_arguments(args)
    if args.method is not None:
        from ._method_commands import run_method_sweep

        return run_method_sweep(args, kwargs)
    if args.top < 0:
        raise ValueError(f"--top must be >= 0, got {args.top}")
    kind = None
    if args.plot is not None:
        check_plot_path(args.plot)
        kind = _plot_kind(kwargs, args.plot_kind, AXES)
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

    points = math.prod(_length(kwargs[a]) for a in AXES if a in kwargs)
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


# --------------------------------------------------------------------------- axes


_RANGE = re.compile(r"^\s*([^:]+):([^:]+)(?::([^:]+))?\s*$")


def _parse_number(text: str, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{what}: expected a number, got {text.strip()!r}") from None


def _round(value: float) -> float:
    # 0.1 * 3 -> 0.3, not 0.30000000000000004
    return float(f"{value:.12g}")


def parse_axis(text: str, name: str = "axis") -> list[float]:
    """Numbers of one axis from command-line text: lists, ranges and progressions.

    * ``"1,2,8"``: a list;
    * ``"0:8"`` or ``"0:1:0.25"``: ``start:stop[:step]``, stop *included*, step 1 by
      default;
    * ``"1,2,4,...,256"``: ``...`` continues the progression of the numbers listed
      just before it up to the number after it, which must be reached exactly. Two
      numbers give an arithmetic progression (``"0,2,...,16"``); three or more must be
      arithmetic or geometric (``"1,2,4,...,256"``).

    Items combine: ``"0:4,8,16"``.

    Args:
        text: the axis as typed.
        name: axis name for error messages.

    Returns:
        The values, in order.

    Raises:
        ValueError: empty text, a non-number, a zero or wrong-signed step, or a
            progression that is neither arithmetic nor geometric or misses its end.

    Examples:
        >>> parse_axis("0:4")
        [0.0, 1.0, 2.0, 3.0, 4.0]
        >>> parse_axis("1,2,4,...,64")
        [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0]
        >>> parse_axis("0.5:0.9:0.1")
        [0.5, 0.6, 0.7, 0.8, 0.9]
    """
    items = [item.strip() for item in str(text).split(",")]
    if not any(items):
        raise ValueError(f"{name}: empty axis; give at least one value")
    values: list[float] = []
    run: list[float] = []  # plain numbers since the last range or '...'
    k = 0
    while k < len(items):
        item = items[k]
        if not item:
            raise ValueError(f"{name}: empty item in {text!r}")
        if item == "...":
            if len(run) < 2 or k + 1 >= len(items) or items[k + 1] == "...":
                raise ValueError(
                    f"{name}: '...' needs two numbers before it and one after, as in 1,2,4,...,256"
                )
            end = _parse_number(items[k + 1], name)
            values.extend(_progression(run, end, name))
            run = []
            k += 2
            continue
        match = _RANGE.match(item)
        if match:
            start = _parse_number(match.group(1), name)
            stop = _parse_number(match.group(2), name)
            step = _parse_number(match.group(3), name) if match.group(3) else 1.0
            values.extend(_arange_inclusive(start, stop, step, name))
            run = []
        else:
            number = _parse_number(item, name)
            values.append(number)
            run.append(number)
        k += 1
    return values


def _arange_inclusive(start: float, stop: float, step: float, name: str) -> list[float]:
    if step == 0 or not all(map(math.isfinite, (start, stop, step))):
        raise ValueError(f"{name}: range {start:g}:{stop:g}:{step:g} needs a finite nonzero step")
    count = (stop - start) / step
    if count < -1e-9:
        raise ValueError(f"{name}: range {start:g}:{stop:g}:{step:g} steps away from its stop")
    n = math.floor(count + 1e-9)
    return [_round(start + i * step) for i in range(n + 1)]


def _progression(run: list[float], end: float, name: str) -> list[float]:
    """Terms after ``run`` of its arithmetic or geometric progression, up to ``end``."""
    steps = [b - a for a, b in itertools.pairwise(run)]
    listed = ",".join(f"{v:g}" for v in run)
    if all(math.isclose(s, steps[0], rel_tol=1e-9) for s in steps) and steps[0] != 0:
        out = _arange_inclusive(run[-1], end, steps[0], name)[1:]
    elif len(run) > 2 and 0 not in run:
        ratios = [b / a for a, b in itertools.pairwise(run)]
        if not all(math.isclose(r, ratios[0], rel_tol=1e-9) for r in ratios) or ratios[0] <= 0:
            raise ValueError(f"{name}: {listed},... is neither arithmetic nor geometric")
        out, value = [], run[-1]
        while abs(value * ratios[0]) <= abs(end) * (1 + 1e-9) and abs(ratios[0]) > 1:
            value = _round(value * ratios[0])
            out.append(value)
    else:
        raise ValueError(f"{name}: {listed},... is neither arithmetic nor geometric")
    if not out or not math.isclose(out[-1], end, rel_tol=1e-9):
        raise ValueError(f"{name}: the progression {listed},... does not reach {end:g}")
    return out
