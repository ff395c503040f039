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
import contextlib
import dataclasses
import itertools
import json
import math
import os
import re
import shutil
import sys
import time

from specsim.outputs import atomic_output, check_output_path

from ._args import (
    add_overwrite_argument,
    add_plot_argument,
    check_plot_path,
    token_count,
    whole,
)
from ._methods import add_method_arguments

__all__ = [
    "LARGE_OUTPUT_BYTES",
    "LARGE_POINTS",
    "add_sweep_arguments",
    "axis_length",
    "parse_axis",
    "run_sweep",
]

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
        "  specsim sweep --batch geom:1:1024 --gamma 0:12 --best-over gamma --out best.csv\n"
        "\n"
        "The point count and the estimated output size are printed before the sweep starts. "
        f"A grid of more than {LARGE_POINTS:,} points or {LARGE_OUTPUT_BYTES // 2**30} GiB of "
        "output needs --allow-large; one whose rows cannot fit in memory is refused (stream "
        "it with --out instead). Files appear under their name only once complete; an "
        "existing file needs --overwrite."
    )
    axis = (
        "comma list, start:stop[:step] (stop included), geom:start:stop[:ratio], or a "
        "progression of three terms and its end like 1,2,4,...,256"
    )
    grid = parser.add_argument_group("grid axes (the sweep is their Cartesian product)")
    grid.add_argument(
        "--hardware",
        default="h100",
        help="accelerators (catalogue names or .toml files), comma list",
    )
    models = "catalogue names, config.json paths, model folders or cached Hub ids, comma list"
    grid.add_argument(
        "--target",
        default="llama-2-7b",
        help=f"target models: {models} (the default pairs with --draft llama-68m: one tokenizer)",
    )
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
        type=token_count,
        default=None,
        help="draft training tokens for --alpha-model sdsl (default: the target's)",
    )
    grid.add_argument(
        "--target-train-tokens",
        type=token_count,
        default=None,
        help="target training tokens for --alpha-model sdsl (default: the catalogue's)",
    )
    grid.add_argument(
        "--shared-tokenizer",
        action="store_true",
        help="target and draft vocabularies of different sizes belong to one tokenizer "
        "(otherwise such points are marked infeasible: feasibility 'vocab')",
    )
    grid.add_argument(
        "--draft-tp",
        type=whole(1),
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
    result.add_argument("--top", type=whole(0), default=10, help="best rows to print")
    result.add_argument("--json", action="store_true", help="print a JSON summary")
    add_plot_argument(result)
    add_overwrite_argument(result)
    result.add_argument(
        "--allow-large",
        action="store_true",
        help=f"run a grid of more than {LARGE_POINTS:,} points or "
        f"{LARGE_OUTPUT_BYTES // 2**30} GiB of output (refused otherwise)",
    )
    result.add_argument(
        "--plot-kind",
        choices=_PLOT_KINDS,
        default="auto",
        help="chart for --plot (auto: heatmap for gamma x batch, best-gamma when hardware "
        "also varies, hardware when only hardware varies)",
    )

    run = parser.add_argument_group("evaluation")
    run.add_argument("--chunk-size", type=whole(1), default=2**20, help="points per device call")
    run.add_argument(
        "--quadrature-nodes",
        type=whole(1),
        default=8,
        help="Gauss-Legendre nodes over the context, at most 64",
    )
    run.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_method_arguments(parser, command="sweep")


def _names(text: str, flag: str) -> list[str]:
    items = [item.strip() for item in str(text).split(",")]
    if not all(items):
        raise ValueError(f"{flag} {text}: empty item; valid: a comma list of names")
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
        shared_tokenizer=args.shared_tokenizer,
        chunk_size=args.chunk_size,
        quadrature_nodes=args.quadrature_nodes,
        progress=False if args.no_progress else None,
    )
    if args.columns is not None:
        kwargs["columns"] = _names(args.columns, "--columns")
    if args.best_over is not None:
        kwargs["best_over"] = _names(args.best_over, "--best-over")
    return kwargs


# flag -> name of the axis in specsim.sweep
_AXIS_FLAGS = {
    "--hardware": "hardware",
    "--target": "target",
    "--draft": "draft",
    "--tp": "tp",
    "--batch": "batch",
    "--prompt": "prompt_tokens",
    "--generate": "generate_tokens",
    "--alpha": "alpha",
    "--gamma": "gamma",
}
# Report fields a row holds when --columns is not given (`len(specsim.sweep.REPORT_COLUMNS)`
# when this was written; a test keeps it close). The estimate must not import JAX.
_REPORT_FIELDS_ESTIMATE = 19
# Typical CSV text per value: a float32 printed by pandas (~10 chars) plus a comma.
_CSV_BYTES_PER_FIELD = 11


@dataclasses.dataclass(frozen=True)
class GridSize:
    """How big a sweep is, from the command-line text alone (no axis is built)."""

    points: int
    rows: int
    memory_bytes: int  # the rows as a DataFrame in memory
    file_bytes: int | None  # the --out file (CSV text; Parquet at most its memory size)

    def describe(self, out: str | None) -> str:
        text = f"{self.points:,} point" + ("" if self.points == 1 else "s")
        if self.rows != self.points:
            text += f" ({self.rows:,} row{'' if self.rows == 1 else 's'} after --best-over)"
        if out is not None and self.file_bytes is not None:
            kind = "Parquet" if out.lower().endswith(".parquet") else "CSV"
            text += f", about {_format_bytes(self.file_bytes)} of {kind}"
        else:
            text += f", about {_format_bytes(self.memory_bytes)} in memory"
        return text


def grid_size(args: argparse.Namespace) -> GridSize:
    """Points, rows and output size of the sweep the flags ask for (``ValueError`` if bad)."""
    lengths = {}
    for flag, name in _AXIS_FLAGS.items():
        text = getattr(args, flag[2:].replace("-", "_"))
        if name in ("hardware", "target", "draft"):
            lengths[name] = len(_names(text, flag))
        elif name == "alpha" and (args.alpha_model == "sdsl" or text is None):
            lengths[name] = 1
        else:
            lengths[name] = axis_length(text, flag)
    points = math.prod(lengths.values())
    reduced = 1
    if args.best_over is not None:
        for name in _names(args.best_over, "--best-over"):
            reduced *= lengths.get(name, 1)
    rows = points // reduced
    fields = (
        _REPORT_FIELDS_ESTIMATE if args.columns is None else len(_names(args.columns, "--columns"))
    )
    memory = rows * (3 + 8 * 6 + 4 * fields)
    file_bytes = None
    if args.out is not None:
        if args.out.lower().endswith(".parquet"):
            file_bytes = memory
        else:
            names = sum(
                max(map(len, _names(getattr(args, flag[2:]), flag)))
                for flag in ("--hardware", "--target", "--draft")
            )
            file_bytes = rows * (names + 3 + 7 * 6 + _CSV_BYTES_PER_FIELD * fields)
    return GridSize(points, rows, memory, file_bytes)


# Beyond either, `specsim sweep` asks for --allow-large (documented in its --help).
LARGE_POINTS = 10**7
LARGE_OUTPUT_BYTES = 2**30


def _format_bytes(n: float) -> str:
    for scale, unit in ((2**40, "TiB"), (2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if n >= scale:
            return f"{n / scale:,.1f} {unit}"
    return f"{n:.0f} bytes"


def check_grid_size(args: argparse.Namespace, size: GridSize) -> None:
    """Refuses a sweep whose result cannot fit, or a large one without --allow-large."""
    from specsim.limits import HOST_MEMORY_FRACTION, physical_memory_bytes

    in_memory = args.out is None or args.plot is not None
    physical = physical_memory_bytes()
    if in_memory and physical is not None and size.memory_bytes > HOST_MEMORY_FRACTION * physical:
        raise ValueError(
            f"grid of {size.points:,} points: its {size.rows:,} rows would need "
            f"{_format_bytes(size.memory_bytes)} in memory, more than "
            f"{HOST_MEMORY_FRACTION:.0%} of this machine's {_format_bytes(physical)}; valid: "
            "fewer points, fewer --columns, a reduction with --best-over, or --out FILE "
            "(without --plot) to stream rows to a file"
        )
    if args.out is not None and size.file_bytes is not None:
        folder = os.path.dirname(os.path.abspath(os.path.expanduser(args.out)))
        free = shutil.disk_usage(folder).free
        if size.file_bytes > free:
            raise ValueError(
                f"--out {args.out}: about {_format_bytes(size.file_bytes)} for "
                f"{size.rows:,} rows, more than the {_format_bytes(free)} free there; valid: "
                "fewer points, fewer --columns, or --best-over"
                + ("" if args.out.lower().endswith(".parquet") else ", or a .parquet file")
            )
    large = size.points > LARGE_POINTS or max(size.file_bytes or 0, size.memory_bytes) > (
        LARGE_OUTPUT_BYTES
    )
    if large and not args.allow_large:
        raise ValueError(
            f"grid of {size.describe(args.out)}: larger than {LARGE_POINTS:,} points or "
            f"{LARGE_OUTPUT_BYTES // 2**30} GiB; valid: a smaller grid, or --allow-large "
            "to run it"
        )


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
        f"--plot-kind auto: no automatic chart for a grid varying "
        f"{', '.join(sorted(varying)) or 'nothing'}; valid: --plot-kind "
        f"{', '.join(_PLOT_KINDS[1:])}"
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

    Everything is checked before JAX starts: the output paths, the grid's size (its
    points are counted from the text, never built first) and the memory or disk its
    rows need. Bad input raises ``ValueError`` (the CLI prints it on one line and exits 2).
    """
    if args.out is not None:
        check_output_path(
            args.out,
            what="--out",
            suffixes=(".csv", ".parquet"),
            overwrite=args.overwrite,
            overwrite_hint="--overwrite",
        )
    if args.plot is not None:
        check_plot_path(args.plot, overwrite=args.overwrite)
    size = grid_size(args)
    check_grid_size(args, size)

    from specsim import SWEEP_AXES as AXES
    from specsim import sweep

    kwargs = _grid_arguments(args)
    if args.method is not None:
        from ._method_commands import run_method_sweep

        return run_method_sweep(args, kwargs)
    kind = None
    if args.plot is not None:
        kind = _plot_kind(kwargs, args.plot_kind, AXES)
    sweep(**kwargs, check_only=True)  # every input checked before the size is announced
    print(f"specsim sweep: {size.describe(args.out)}", file=sys.stderr)

    start = time.perf_counter()
    # A chart needs the rows in memory; otherwise a file is streamed chunk by chunk.
    streamed = args.out is not None and kind is None
    if streamed:
        frame = sweep(**kwargs, out=args.out, overwrite=args.overwrite)
    else:
        frame = sweep(**kwargs)
    elapsed = time.perf_counter() - start
    with contextlib.ExitStack() as outputs:  # every file renamed into place at the end
        if frame is not None and args.out is not None:
            temp = outputs.enter_context(
                atomic_output(
                    args.out, overwrite=args.overwrite, what="--out", overwrite_hint="--overwrite"
                )
            )
            _write(frame, temp)
        if kind is not None:
            temp = outputs.enter_context(
                atomic_output(
                    args.plot, overwrite=args.overwrite, what="--plot", overwrite_hint="--overwrite"
                )
            )
            _draw(kind, frame, kwargs, temp)

    points = size.points
    summary = {
        "points": points,
        "rows": None if frame is None else len(frame),
        "seconds": elapsed,
        "points_per_s": points / elapsed if elapsed > 0 else None,
        "out": args.out,
        "plot": args.plot,
    }
    best, notes = None, [] if frame is None else _notes(frame, kwargs, args)
    if frame is not None and args.top and args.objective in frame.columns:
        # Feasible points first: an infeasible point's numbers are not an answer.
        ordered = frame.assign(_ok=_feasible(frame)).sort_values(
            ["_ok", args.objective], ascending=[False, args.minimize], kind="stable"
        )
        best = ordered.head(args.top)
        varying = [a for a in AXES if a in frame.columns and frame[a].nunique() > 1]
        shown = [c for c in ("tokens_per_s", "speedup") if c in frame.columns]
        marked = ["feasibility"] if "feasibility" in frame.columns and not best._ok.all() else []
        best = best[varying + [c for c in dict.fromkeys([args.objective, *shown])] + marked]
    summary["notes"] = notes
    if args.json:
        summary["best"] = [] if best is None else json.loads(best.to_json(orient="records"))
        print(json.dumps(summary, indent=2, allow_nan=False))
        return 0
    rate = "" if summary["points_per_s"] is None else f"{summary['points_per_s']:.3g} points/s, "
    print(f"{points:,} points in {elapsed:.2f} s ({rate}compilation included)")
    for what in ("out", "plot"):
        if summary[what] is not None:
            print(f"wrote {summary[what]}")
    if best is not None and len(best):
        order = "lowest" if args.minimize else "highest"
        print(f"\n{order} {args.objective} (feasible points first):")
        print(best.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    for note in notes:
        print(f"note: {note}")
    return 0


def _feasible(frame):
    """Rows that can be served (``feasibility == "ok"``, else ``fits``, else all)."""
    import numpy as np

    if "feasibility" in frame.columns:
        return (frame["feasibility"].astype(str) == "ok").to_numpy()
    if "fits" in frame.columns:
        return frame["fits"].to_numpy(dtype=bool)
    return np.ones(len(frame), bool)


def _notes(frame, kwargs: dict, args: argparse.Namespace) -> list[str]:
    """Infeasible points, and optima on the edge of a searched range."""
    notes = []
    ok = _feasible(frame)
    if not ok.all():
        reasons = ""
        if "feasibility" in frame.columns:
            counts = frame["feasibility"].astype(str)[~ok].value_counts()
            reasons = " (" + ", ".join(f"{k}: {v:,}" for k, v in counts.items()) + ")"
        what = "rows" if kwargs.get("best_over") else "points"
        notes.append(f"{(~ok).sum():,} of {len(frame):,} {what} infeasible{reasons}")
    for axis in kwargs.get("best_over") or ():
        values = kwargs.get(axis)
        if not isinstance(values, list) or len(values) < 2 or axis not in frame.columns:
            continue
        chosen = frame[axis].to_numpy()
        flag = next(f for f, a in _AXIS_FLAGS.items() if a == axis)
        for edge in (max(values), min(values)):
            if axis == "gamma" and edge == 0:
                continue  # gamma 0 (do not speculate) is an answer, not a limit
            hits = int((chosen == edge).sum())
            if hits:
                notes.append(
                    f"best {axis} at the edge of the searched range ({edge:g}) for {hits:,} "
                    f"of {len(frame):,} rows: widen {flag}"
                )
    return notes


# --------------------------------------------------------------------------- axes


_RANGE = re.compile(r"^\s*(?:(lin|geom):)?([^:]+):([^:]+)(?::([^:]+))?\s*$")
_AXIS_FORMS = (
    "comma lists (1,2,8), start:stop[:step] or lin:start:stop[:step] (stop included), "
    "geom:start:stop[:ratio] (ratio 2 by default), or a progression of three terms and its "
    "end (1,2,4,...,256)"
)


def _parse_number(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{what} {text.strip()}: not a number; valid: {_AXIS_FORMS}") from None
    if not math.isfinite(value):
        raise ValueError(f"{what} {text.strip()}: not a finite number; valid: finite numbers")
    return value


def _round(value: float) -> float:
    # 0.1 * 3 -> 0.3, not 0.30000000000000004
    return float(f"{value:.12g}")


@dataclasses.dataclass(frozen=True)
class _Segment:
    """A run of axis values: listed, or ``start + i * step`` (``start * step**i``)."""

    count: int
    values: tuple[float, ...] = ()
    start: float = 0.0
    step: float = 0.0
    geometric: bool = False

    def expand(self) -> list[float]:
        if self.values:
            return list(self.values)
        if self.geometric:
            return [_round(self.start * self.step**i) for i in range(self.count)]
        return [_round(self.start + i * self.step) for i in range(self.count)]

    @property
    def last(self) -> float:
        return self.expand()[-1] if self.values else self._term(self.count - 1)

    def _term(self, i: int) -> float:
        return _round(self.start * self.step**i if self.geometric else self.start + i * self.step)


def _arithmetic(start: float, stop: float, step: float, what: str) -> _Segment:
    if step == 0:
        raise ValueError(f"{what} {start:g}:{stop:g}:{step:g}: zero step; valid: a nonzero step")
    count = (stop - start) / step
    if count < -1e-9:
        raise ValueError(
            f"{what} {start:g}:{stop:g}:{step:g}: steps away from its stop; "
            "valid: a step of the sign of stop - start"
        )
    return _Segment(count=math.floor(count + 1e-9) + 1, start=start, step=step)


def _geometric(start: float, stop: float, ratio: float, what: str) -> _Segment:
    text = f"geom:{start:g}:{stop:g}:{ratio:g}"
    if start == 0 or stop == 0 or (start > 0) != (stop > 0):
        raise ValueError(
            f"{what} {text}: start or stop is zero, or they differ in sign; "
            "valid: nonzero start and stop of one sign"
        )
    if not ratio > 0 or ratio == 1:
        raise ValueError(f"{what} {text}: ratio {ratio:g}; valid: a ratio > 0 other than 1")
    count = math.log(stop / start) / math.log(ratio)
    if count < -1e-9:
        raise ValueError(
            f"{what} {text}: steps away from its stop; valid: a ratio > 1 when |stop| > |start|"
        )
    return _Segment(count=math.floor(count + 1e-9) + 1, start=start, step=ratio, geometric=True)


def _progression(run: list[float], end: float, what: str) -> _Segment:
    """The terms after ``run`` of its arithmetic or geometric progression, up to ``end``."""
    listed = ",".join(f"{v:g}" for v in run)
    if len(run) < 3:
        step = f"{run[1] - run[0]:g}" if len(run) == 2 else "STEP"
        ratio = f"{run[1] / run[0]:g}" if len(run) == 2 and run[0] else "RATIO"
        raise ValueError(
            f"{what} {listed},...,{end:g}: a progression needs three terms before '...' "
            f"(two could be arithmetic or geometric); valid: three terms, or the explicit "
            f"lin:{run[0]:g}:{end:g}:{step} or geom:{run[0]:g}:{end:g}:{ratio}"
        )
    steps = [b - a for a, b in itertools.pairwise(run)]
    if steps[0] != 0 and all(math.isclose(s, steps[0], rel_tol=1e-9) for s in steps):
        segment = _arithmetic(run[-1], end, steps[0], what)
    else:
        ratios = [b / a for a, b in itertools.pairwise(run)] if 0 not in run else [0.0]
        if not (
            ratios[0] > 0
            and ratios[0] != 1
            and all(math.isclose(r, ratios[0], rel_tol=1e-9) for r in ratios)
        ):
            raise ValueError(
                f"{what} {listed},...: neither arithmetic nor geometric; "
                "valid: equal steps (0,2,4,...) or equal ratios (1,2,4,...)"
            )
        segment = _geometric(run[-1], end, ratios[0], what)
    segment = dataclasses.replace(segment, count=segment.count - 1, start=segment._term(1))
    if segment.count < 1 or not math.isclose(segment.last, end, rel_tol=1e-9):
        raise ValueError(
            f"{what} {listed},...,{end:g}: the progression does not reach {end:g}; "
            "valid: an end the progression reaches exactly"
        )
    return segment


def _segments(text: str, what: str) -> list[_Segment]:
    items = [item.strip() for item in str(text).split(",")]
    if not any(items):
        raise ValueError(f"{what} {text!r}: empty axis; valid: {_AXIS_FORMS}")
    segments: list[_Segment] = []
    run: list[float] = []  # plain numbers since the last range or '...'
    k = 0
    while k < len(items):
        item = items[k]
        if not item:
            raise ValueError(f"{what} {text}: empty item; valid: {_AXIS_FORMS}")
        if item == "...":
            if not run or k + 1 >= len(items) or items[k + 1] in ("", "..."):
                raise ValueError(
                    f"{what} {text}: '...' needs three numbers before it and one after; "
                    "valid: e.g. 1,2,4,...,256"
                )
            end = _parse_number(items[k + 1], what)
            segments.append(_progression(run, end, what))
            run = []
            k += 2
            continue
        match = _RANGE.match(item)
        if match:
            kind = match.group(1) or "lin"
            start = _parse_number(match.group(2), what)
            stop = _parse_number(match.group(3), what)
            default = 2.0 if kind == "geom" else 1.0
            step = _parse_number(match.group(4), what) if match.group(4) else default
            make = _geometric if kind == "geom" else _arithmetic
            segments.append(make(start, stop, step, what))
            run = []
        else:
            number = _parse_number(item, what)
            segments.append(_Segment(count=1, values=(number,)))
            run.append(number)
        k += 1
    return segments


def axis_length(text: str, name: str = "axis") -> int:
    """Number of values ``parse_axis(text)`` returns, computed without building them.

    Examples:
        >>> axis_length("1:1000000000")
        1000000000
    """
    return sum(segment.count for segment in _segments(text, name))


def parse_axis(text: str, name: str = "axis", max_values: int | None = None) -> list[float]:
    """Numbers of one axis from command-line text: lists, ranges and progressions.

    * ``"1,2,8"``: a list;
    * ``"0:8"``, ``"0:1:0.25"`` or ``"lin:0:1:0.25"``: ``start:stop[:step]``, stop
      *included* when reached, step 1 by default;
    * ``"geom:1:256"`` or ``"geom:1:1000:10"``: ``geom:start:stop[:ratio]``, ratio 2 by
      default;
    * ``"1,2,4,...,256"``: ``...`` continues the progression of the three or more numbers
      listed just before it (arithmetic or geometric) up to the number after it, which
      must be reached exactly. Two numbers are refused (``1,2,...,256`` could be either).

    Items combine: ``"0:4,8,16"``.

    Args:
        text: the axis as typed.
        name: axis name for error messages (the flag, on the command line).
        max_values: refuse, before building any value, an axis longer than this.

    Returns:
        The values, in order.

    Raises:
        ValueError: empty text, a non-number, a zero or wrong-signed step, a progression
            of fewer than three terms, one that is neither arithmetic nor geometric or
            misses its end, or more than ``max_values`` values.

    Examples:
        >>> parse_axis("0:4")
        [0.0, 1.0, 2.0, 3.0, 4.0]
        >>> parse_axis("1,2,4,...,64")
        [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0]
        >>> parse_axis("geom:1:1000:10")
        [1.0, 10.0, 100.0, 1000.0]
        >>> parse_axis("0.5:0.9:0.1")
        [0.5, 0.6, 0.7, 0.8, 0.9]
    """
    segments = _segments(text, name)
    count = sum(segment.count for segment in segments)
    if max_values is not None and count > max_values:
        raise ValueError(f"{name} {text}: {count:,} values; valid: at most {max_values:,}")
    return [value for segment in segments for value in segment.expand()]
