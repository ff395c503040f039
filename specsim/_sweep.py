"""Cartesian what-if sweeps: chunked ``vmap`` over a grid, sharded over devices.

A sweep is the Cartesian product of named axes (``AXES``). Nothing per point is
built on the host: each axis is stacked once into a small table (hardware and
model specs stacked leaf by leaf, numbers as vectors), and one jitted kernel
evaluates a chunk of the grid from a flat index.

How a chunk is evaluated. The trailing axes whose product fits in a chunk are
*inner* axes, evaluated as nested ``vmap`` s over their full tables; the leading
*outer* axes are flattened, and a chunk is a contiguous range of outer points,
each gathered from the tables by mixed-radix index arithmetic inside ``jit``.
Nested ``vmap`` keeps every value that does not depend on an axis unbatched
along it, so the draft step is computed once per (hardware, draft, tp, batch,
context), not once per gamma and alpha; the Cartesian structure is exploited,
not re-evaluated. The chunk's index vector is sharded over all local devices
(``jax.sharding.NamedSharding`` over a one-axis ``"points"`` mesh), the tables
are replicated, and the last chunk is padded to the same shape so a sweep
compiles once. Only changing an axis' *length* (or the static options)
recompiles.

Memory. Device memory is bounded by ``chunk_size``. Host memory is what is
returned: a DataFrame row costs 8 bytes per numeric axis, 1-2 per named axis,
4 per float column. For grids beyond ~10^7 points select ``columns``, reduce
with ``best_over`` (e.g. the best gamma of every other point), or stream
chunks to a file with ``out=`` (Parquet or CSV), which holds one chunk at a
time: a 10^8-point sweep streamed to Parquet stays well under 4 GiB.

Several hosts. The grid is embarrassingly parallel, so hosts never talk: after
``jax.distributed.initialize()`` each process evaluates its own contiguous slice
of the outer index range (``process_index`` / ``process_count``, read from JAX
by default) on its local devices, and returns (or writes) only its rows. In
process order, the slices concatenate to the single-host result::

    import jax, specsim
    jax.distributed.initialize()  # coordinator address etc. from the environment
    specsim.sweep(hardware=["h100", "tpu-v5p"], batch=range(1, 513), gamma=range(17),
                  out="sweep-{process}.parquet")  # one file per process

References:
    JAX documentation, "Distributed arrays and automatic parallelization" and
    "Multi-host and multi-process environments".
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import jax
import numpy as np
import pandas as pd
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from . import hardware as _hardware
from . import models as _models
from ._acceptance import (
    ConstantAcceptance,
    PositionalAcceptance,
    SDSLAcceptance,
    validate_acceptance,
)
from ._atomic import atomic_output, check_output_path
from ._errors import relabel
from ._limits import (
    HOST_MEMORY_FRACTION,
    MAX_BATCH,
    MAX_GAMMA,
    MAX_TOKENS,
    physical_memory_bytes,
)
from ._numerics import FLOAT32_MAX
from ._progress import live_bar
from ._reduce import Histogram, Quantiles, Reduction, TopK
from ._sweep_kernel import BOUND_COLUMNS, Plan, field_dependence
from ._sweep_kernel import evaluate_chunk as _evaluate_chunk
from ._sweep_result import FileSink, SweepResult
from ._throughput import QUADRATURE_NODES, ThroughputReport, _checked_nodes
from .hardware import HardwareSpec
from .hardware._fields import FOLLOWS
from .hardware._roofline import check_smooth
from .models import TransformerSpec

__all__ = ["AXES", "REPORT_COLUMNS", "SweepResult", "default_chunk_size", "sweep"]

# Grid axes in row order: the last varies fastest.
AXES = (
    "hardware",
    "target",
    "draft",
    "tp",
    "batch",
    "prompt_tokens",
    "generate_tokens",
    "alpha",
    "gamma",
)
_NAMED_AXES = ("hardware", "target", "draft")
# Counts: their columns are integers (int64) when every value given is whole.
_COUNT_AXES = ("tp", "batch", "prompt_tokens", "generate_tokens", "gamma")

# Report fields that can be columns (gamma is an axis column already).
# Report fields that can be columns (gamma is an axis column already), and whether each
# point can be served at all (`feasibility`, over `FEASIBILITY_NAMES`: "ok" or the first
# broken rule: a tensor-parallel split, the draft's placement, vocabularies, memory).
REPORT_COLUMNS = (
    *(f for f in ThroughputReport.__dataclass_fields__ if f != "gamma"),
    "feasibility",
)
# Points per call on a CPU (see `default_chunk_size`); the former default, 2**20, is
# kept as a name for callers that pass it explicitly.
CPU_CHUNK_SIZE = 2**23
DEFAULT_CHUNK_SIZE = 2**20

# As `Workload.validate` and `predict` bound them (specsim.limits).
_NUMERIC_RULES = {
    "tp": (lambda v: v >= 1, ">= 1"),
    "batch": (lambda v: 0 < v <= MAX_BATCH, f"in (0, {MAX_BATCH}]"),
    "prompt_tokens": (lambda v: 0 <= v <= MAX_TOKENS, f"in [0, {MAX_TOKENS}]"),
    "generate_tokens": (lambda v: 0 < v <= MAX_TOKENS, f"in (0, {MAX_TOKENS}]"),
    "alpha": (lambda v: 0 < v < 1, "in (0, 1)"),
    "gamma": (lambda v: 0 <= v <= MAX_GAMMA, f"in [0, {MAX_GAMMA}]"),
}


# --------------------------------------------------------------------------- axes


@dataclasses.dataclass(frozen=True)
class _Axis:
    """One grid axis: display labels (names or numbers) and the stacked table."""

    name: str
    labels: tuple
    table: Any  # pytree of NumPy arrays with leading dimension len(labels)

    @property
    def size(self) -> int:
        return len(self.labels)

    @property
    def named(self) -> bool:
        return self.name in _NAMED_AXES

    @property
    def values(self) -> np.ndarray:
        """A numeric axis's entries: int64 for whole counts, float64 otherwise."""
        values = np.asarray(self.labels, np.float64)
        if self.name in _COUNT_AXES and np.all(values == np.round(values)):
            return values.astype(np.int64)
        return values


def _as_list(name: str, value) -> list:
    if isinstance(value, str | os.PathLike | HardwareSpec | TransformerSpec | bytes):
        return [value]
    if isinstance(value, np.ndarray | jax.Array):
        return np.asarray(value).ravel().tolist()
    if isinstance(value, Iterable):
        values = list(value)
        if not values:
            raise ValueError(f"{name} []: empty axis; valid: at least one value")
        return values
    return [value]


def _numbers(name: str, value) -> tuple[float, ...]:
    """A numeric axis as floats, checked against its rule (``ValueError`` on the first bad one)."""
    if isinstance(value, str):
        raise ValueError(
            f"{name} {value!r}: a string; valid: numbers (parse command-line text such as "
            "'0:8' with specsim.cli.sweep.parse_axis)"
        )
    items = _as_list(name, value)
    if not items:
        raise ValueError(f"{name} []: empty axis; valid: at least one value")
    ok, text = _NUMERIC_RULES[name]
    out = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, int | float | np.number):
            raise ValueError(f"{name} {item!r}: not a number; valid: finite numbers {text}")
        number = float(item)
        if not (math.isfinite(number) and ok(number)):
            raise ValueError(f"{name} {item!r}: out of range; valid: finite numbers {text}")
        out.append(number)
    _check_unique(name, out)
    return tuple(out)


def _check_unique(name: str, labels: Sequence) -> None:
    seen = set()
    for label in labels:
        if label in seen:
            raise ValueError(f"{name} {label!r}: appears twice on the axis; valid: distinct values")
        seen.add(label)


def _named_items(name: str, value) -> list[tuple[str, Any]]:
    """``[(label, name_or_spec)]`` from a name, a spec, a sequence of them or a mapping."""
    if isinstance(value, Mapping):
        items = [(str(k), v) for k, v in value.items()]
    else:
        items = []
        for i, item in enumerate(_as_list(name, value)):
            if isinstance(item, str | os.PathLike):
                items.append((None, item))
            else:
                items.append((f"{name}_{i}", item))
    if not items:
        raise ValueError(f"{name} []: empty axis; valid: at least one value")
    return items


def _catalogue_model(name: str) -> TransformerSpec:
    if _models.locate(name).kind != "catalogue":
        return _models.load(name)  # a config file may change between sweeps
    return _cached_model(name)


@functools.cache
def _cached_model(name: str) -> TransformerSpec:
    # Specs are immutable and building one validates every leaf: look each name up once.
    return _models.get(name)


def _catalogue_hardware(name: str | os.PathLike) -> HardwareSpec:
    if isinstance(name, os.PathLike) or str(name).endswith(".toml"):
        return _hardware.get(name)  # a file may change between sweeps
    return _cached_hardware(name)


@functools.cache
def _cached_hardware(name: str) -> HardwareSpec:
    return _hardware.get(name)


def _stack(specs: Sequence) -> Any:
    return jax.tree.map(lambda *leaves: np.asarray(leaves, dtype=np.float32), *specs)


def _hardware_axis(value) -> _Axis:
    labels, specs = [], []
    for label, item in _named_items("hardware", value):
        if isinstance(item, HardwareSpec):
            spec = item.validate(label)
        elif isinstance(item, str | os.PathLike):
            try:
                spec = _catalogue_hardware(item)
            except ValueError as e:
                message = str(e)
                raise ValueError(
                    message if message.startswith("hardware") else f"hardware {item}: {message}"
                ) from None
            if label is None:
                text = os.fspath(item)
                label = (
                    os.path.splitext(os.path.basename(text))[0]
                    if text.endswith(".toml")
                    else _hardware.canonical_name(text)
                )
        else:
            raise ValueError(
                f"hardware: expected a name, a .toml path or a HardwareSpec, got {item!r}"
            )
        labels.append(label)
        specs.append(spec)
    _check_unique("hardware", labels)
    for field, followed in FOLLOWS.items():
        if any(getattr(spec, field) is not None for spec in specs):
            # Stack a field that follows another (None, no leaf) as that field's value.
            specs = [
                s.replace(**{field: getattr(s, followed)}) if getattr(s, field) is None else s
                for s in specs
            ]
    if any(spec.roofline_sharpness is not None for spec in specs):
        # Stack the hard roofline (None, no leaf) beside fitted sharpnesses as p = inf.
        specs = [
            s.replace(roofline_sharpness=math.inf) if s.roofline_sharpness is None else s
            for s in specs
        ]
    return _Axis("hardware", tuple(labels), _stack(specs))


def _model_axis(name: str, value) -> tuple[_Axis, list[str | None], str]:
    """The axis, the catalogue name of each entry (None for a spec) and the compute dtype."""
    labels, specs, catalogue = [], [], []
    for label, item in _named_items(name, value):
        if isinstance(item, TransformerSpec):
            spec, key = item.validate(), None
        elif isinstance(item, str):
            try:
                spec = _catalogue_model(item)
            except ValueError as e:
                message = relabel(str(e), {"model": name})
                if not message.startswith(name):
                    message = f"{name}: {message}"
                raise ValueError(message) from None
            source = _models.locate(item)
            key = source.catalogue_name
            label = label or source.label
        else:
            raise ValueError(
                f"{name} {item!r}: not a model; valid: a catalogue name, config.json path, "
                "model folder, cached Hub id or TransformerSpec"
            )
        labels.append(label)
        specs.append(spec)
        catalogue.append(key)
    _check_unique(name, labels)
    dtypes = sorted({s.compute_dtype for s in specs})
    if len(dtypes) > 1:
        raise ValueError(
            f"{name}: every model on one axis must share a compute dtype (it selects the "
            f"peak FLOP/s statically), got {dtypes}; run one sweep per dtype and concatenate"
        )
    return _Axis(name, tuple(labels), {"spec": _stack(specs)}), catalogue, dtypes[0]


# --------------------------------------------------------------------------- grid


@dataclasses.dataclass(frozen=True)
class _Grid:
    """A validated sweep: axes in evaluation order and per-sweep constants."""

    axes: tuple[_Axis, ...]  # evaluation order: kept axes, then reduced axes
    reduce_axes: tuple[str, ...]
    acceptance_kind: str  # "constant" (alpha axis), "sdsl" or "fixed"
    constants: dict  # pytree of arrays passed to the kernel

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(a.size for a in self.axes)

    @property
    def points(self) -> int:
        return math.prod(self.sizes)


def _build_grid(
    *,
    hardware,
    target,
    draft,
    tp,
    batch,
    prompt_tokens,
    generate_tokens,
    alpha,
    gamma,
    draft_tp,
    speculation_overhead_s,
    target_train_tokens,
    draft_train_tokens,
    over: Sequence[str],
    over_name: str,
) -> _Grid:
    axes: dict[str, _Axis] = {"hardware": _hardware_axis(hardware)}
    axes["target"], target_keys, _ = _model_axis("target", target)
    axes["draft"], _, _ = _model_axis("draft", draft)
    for name, value in (
        ("tp", tp),
        ("batch", batch),
        ("prompt_tokens", prompt_tokens),
        ("generate_tokens", generate_tokens),
        ("gamma", gamma),
    ):
        labels = _numbers(name, value)
        axes[name] = _Axis(name, labels, np.asarray(labels, np.float32))

    constants: dict[str, Any] = {}
    kind = "constant"
    if isinstance(alpha, str):
        if alpha.strip().lower() != "sdsl":
            raise ValueError(f"alpha {alpha!r}: unknown model; valid: numbers in (0, 1) or 'sdsl'")
        kind = "sdsl"
    elif isinstance(alpha, PositionalAcceptance | SDSLAcceptance):
        kind = "fixed"
        try:
            constants["acceptance"] = validate_acceptance(alpha)
        except (TypeError, ValueError) as e:
            raise ValueError(f"alpha {type(alpha).__name__}: {e}") from None
    elif isinstance(alpha, ConstantAcceptance):
        alpha = np.asarray(alpha.alpha, np.float64)
    if kind == "constant":
        labels = _numbers("alpha", alpha)
        axes["alpha"] = _Axis("alpha", labels, np.asarray(labels, np.float32))

    tokens = {"target_train_tokens": target_train_tokens, "draft_train_tokens": draft_train_tokens}
    for name, value in tokens.items():
        if value is None:
            continue
        if kind != "sdsl":
            raise ValueError(
                f"{name} {value!r}: only applies to SDSL acceptance; valid: alpha='sdsl', "
                f"or no {name}"
            )
        number = _scalar(name, value)
        if not 0 < number < FLOAT32_MAX:
            raise ValueError(f"{name} {value!r}: out of range; valid: 0 < {name} < 3.4e38")
    if kind == "sdsl":
        per_target = []
        for label, key in zip(axes["target"].labels, target_keys, strict=True):
            count = target_train_tokens
            if count is None and key is not None:
                count = _models.train_tokens(key)
            if count is None:
                raise ValueError(
                    f"target {label!r}: the catalogue has no pre-training tokens for the SDSL "
                    "law (alpha='sdsl'); valid: a catalogue model with them, or "
                    "target_train_tokens"
                )
            per_target.append(float(count))
        axes["target"].table["train_tokens"] = np.asarray(per_target, np.float32)
        if draft_train_tokens is not None:
            constants["draft_train_tokens"] = np.float32(draft_train_tokens)

    if draft_tp is not None:
        number = _scalar("draft_tp", draft_tp)
        if not number >= 1:
            raise ValueError(f"draft_tp {draft_tp!r}: below 1; valid: finite numbers >= 1")
        constants["draft_tp"] = np.float32(number)
    overhead = _scalar("speculation_overhead_s", speculation_overhead_s)
    if not overhead >= 0:
        raise ValueError(
            f"speculation_overhead_s {overhead!r}: negative; valid: finite numbers >= 0"
        )
    constants["speculation_overhead_s"] = np.float32(overhead)

    reduce_axes = _reduce_axes(over, axes, over_name)
    order = [a for a in AXES if a in axes and a not in reduce_axes] + list(reduce_axes)
    return _Grid(tuple(axes[a] for a in order), reduce_axes, kind, constants)


def _scalar(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        raise ValueError(f"{name} {value!r}: not a number; valid: finite numbers")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{name} {value!r}: not finite; valid: finite numbers")
    return number


def _reduce_axes(over: Sequence[str], axes: Mapping[str, _Axis], what: str) -> tuple[str, ...]:
    """The reduced axes in grid order (``ValueError`` for an unknown or repeated name)."""
    for name in over:
        if name not in axes:
            valid = ", ".join(a for a in AXES if a in axes)
            raise ValueError(f"{what} {name!r}: unknown axis; valid: {valid}")
    _check_unique(what, list(over))
    return tuple(a for a in AXES if a in over)


_NUMERIC_COLUMNS = tuple(
    c for c in REPORT_COLUMNS if c not in (*BOUND_COLUMNS, "fits", "feasibility")
)


def _reduction(reduce, best_over, objective, maximize) -> tuple[Reduction | None, str]:
    """The reduction asked for, and the argument name to quote in errors about it."""
    if reduce is not None and best_over is not None:
        raise ValueError("give either reduce= or best_over=, not both")
    if best_over is not None:
        names = [best_over] if isinstance(best_over, str) else list(best_over)
        if not names:
            raise ValueError("best_over: give at least one axis name")
        if not all(isinstance(n, str) for n in names):
            raise ValueError(f"best_over: expected axis names, got {best_over!r}")
        return TopK(tuple(names), 1, objective, maximize), "best_over"
    if reduce is None:
        return None, ""
    if not isinstance(reduce, TopK | Quantiles | Histogram):
        raise ValueError(
            f"reduce: expected specsim.TopK, specsim.Quantiles or specsim.Histogram, got {reduce!r}"
        )
    return reduce, "reduce"


def _columns(columns, reduction: Reduction | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(columns returned, fields computed)``, in report order."""
    if columns is None:
        selected = list(_NUMERIC_COLUMNS if isinstance(reduction, Quantiles) else REPORT_COLUMNS)
    else:
        if isinstance(reduction, Histogram):
            raise ValueError("columns: a Histogram returns counts of its field; drop columns=")
        selected = [columns] if isinstance(columns, str) else list(columns)
        for name in selected:
            if name not in REPORT_COLUMNS and name not in AXES:
                raise ValueError(
                    f"columns {name!r}: unknown column; valid: {', '.join(REPORT_COLUMNS)}"
                )
        selected = [c for c in REPORT_COLUMNS if c in selected]
    needed = set(selected)
    if isinstance(reduction, TopK):
        _check_numeric("objective", reduction.objective)
        needed |= {reduction.objective, "feasibility"}  # feasible points rank first
    elif isinstance(reduction, Quantiles):
        other = [c for c in selected if c not in _NUMERIC_COLUMNS]
        if other:
            raise ValueError(f"columns: quantiles need numeric fields; drop {', '.join(other)}")
    elif isinstance(reduction, Histogram):
        _check_numeric("field", reduction.field)
        selected, needed = [], {reduction.field}
    return tuple(selected), tuple(c for c in REPORT_COLUMNS if c in needed)


def _check_numeric(what: str, name: str) -> None:
    if name not in _NUMERIC_COLUMNS:
        raise ValueError(
            f"{what} {name!r}: not a numeric report field; valid: {', '.join(_NUMERIC_COLUMNS)}"
        )


# --------------------------------------------------------------------------- host loop


def _process_slice(total: int, index: int, count: int) -> tuple[int, int]:
    """Contiguous ``[lo, hi)`` of ``range(total)`` owned by process ``index`` of ``count``.

    Examples:
        >>> [_process_slice(10, i, 3) for i in range(3)]
        [(0, 3), (3, 6), (6, 10)]
    """
    return total * index // count, total * (index + 1) // count


def _check_out(out, process_count: int, process_index: int, overwrite: bool) -> str | None:
    if out is None:
        return None
    path = os.fspath(out)
    if not path.lower().endswith((".csv", ".parquet")):
        raise ValueError(f"out {path}: unknown file type; valid: a name ending in .csv or .parquet")
    if process_count > 1 and "{process}" not in path:
        raise ValueError(
            f"out={path!r}: with {process_count} processes give a per-process name "
            "containing '{process}', e.g. 'sweep-{process}.parquet'"
        )
    if path.lower().endswith(".parquet"):
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise ValueError("writing Parquet needs pyarrow: pip install pyarrow") from None
    path = path.replace("{process}", str(process_index))
    check_output_path(path, what="out", overwrite=overwrite)
    return path


def default_chunk_size(devices: Sequence[jax.Device], fields: int) -> int:
    """Grid points per device call, from the devices' memory.

    On an accelerator a chunk may use an eighth of the devices' memory (two chunks are
    in flight, and XLA needs room for temporaries), at about ``4 (fields + 8)`` bytes
    per point; on a CPU, 2^23 points (large enough that the trailing axes of most grids
    are evaluated whole, once, rather than once per outer point).

    Examples:
        >>> import jax
        >>> default_chunk_size(jax.devices("cpu")[:1], fields=19)
        8388608
    """
    stats = {}
    try:
        stats = devices[0].memory_stats() or {}
    except Exception:  # backends without memory statistics
        stats = {}
    limit = stats.get("bytes_limit")
    if devices[0].platform == "cpu" or not limit:
        return CPU_CHUNK_SIZE
    per_point = 4 * (fields + 8)
    budget = limit * len(devices) // 8
    return int(min(max(budget // per_point, 2**16), 2**28))


def sweep(
    *,
    hardware="h100",
    target="llama-3-8b",
    draft="llama-68m",
    tp=1,
    batch=1,
    prompt_tokens=512,
    generate_tokens=256,
    alpha=0.8,
    gamma=4,
    draft_tp=None,
    speculation_overhead_s=0.0,
    target_train_tokens=None,
    draft_train_tokens=None,
    columns: str | Sequence[str] | None = None,
    best_over: str | Sequence[str] | None = None,
    objective: str = "tokens_per_s",
    maximize: bool = True,
    reduce: Reduction | None = None,
    as_frame: bool = True,
    out: str | os.PathLike | None = None,
    overwrite: bool = False,
    shared_tokenizer: bool = False,
    chunk_size: int | None = None,
    quadrature_nodes: int = QUADRATURE_NODES,
    smooth: float | None = None,
    devices: Sequence[jax.Device] | None = None,
    process_index: int | None = None,
    process_count: int | None = None,
    progress: bool | None = None,
    check_only: bool = False,
) -> pd.DataFrame | SweepResult | None:
    """Throughput of every point of a Cartesian grid of what-if scenarios.

    Every axis takes one value or a sequence; the grid is their Cartesian product
    in the order of ``AXES`` (gamma varies fastest). All inputs are validated
    before anything is compiled. The grid is evaluated in chunks of
    ``chunk_size`` points by one jitted kernel, sharded over ``devices``; changing
    axis values (not lengths) never recompiles. Each report field is computed once
    per combination of the axes it depends on, and reductions (``best_over``,
    ``reduce``) run on the device: only the reduced rows reach the host.

    Args:
        hardware: accelerator names or aliases (``"h100"``, ``"tpu-v5p"``), ``.toml``
            paths, ``HardwareSpec`` s, or a mapping ``{label: name_or_spec}``.
        target: target model names, ``TransformerSpec`` s or a mapping ``{label: spec}``
            (all of one compute dtype).
        draft: draft models, likewise.
        tp: target tensor-parallel degrees, >= 1.
        batch: concurrent sequences, > 0.
        prompt_tokens: prompt lengths, tokens, >= 0.
        generate_tokens: generated tokens per sequence, > 0.
        alpha: constant per-token acceptance rates in (0, 1) (an axis); ``"sdsl"``
            for the SDSL perplexity law (alpha then depends on the draft and target
            sizes and pre-training tokens: the catalogue's, or ``target_train_tokens``;
            the draft is trained on the target's tokens unless ``draft_train_tokens``);
            or one ``PositionalAcceptance`` / ``SDSLAcceptance`` for every point.
        gamma: draft tokens per iteration, real >= 0 (0 = plain decoding).
        draft_tp: draft tensor-parallel degree for every point; ``None`` = the point's tp.
        speculation_overhead_s: fixed per-iteration overhead, s.
        target_train_tokens: with ``alpha="sdsl"``, pre-training tokens of every target.
        draft_train_tokens: with ``alpha="sdsl"``, pre-training tokens of every draft.
        columns: report fields to return (default all of ``REPORT_COLUMNS``); axis
            columns are always returned. Fields not asked for are not computed.
        best_over: axis name(s) to optimise over: one row per point of the other axes,
            holding the optimal value of each such axis and the report there (the first
            optimum on ties). E.g. ``best_over="gamma"`` gives the best lookahead.
            Short for ``reduce=TopK(best_over, 1, objective, maximize)``.
        objective: report field optimised by ``best_over``.
        maximize: maximise (default) or minimise ``objective``.
        reduce: a reduction over some axes computed on the device: `TopK` (the k best
            points of every group), `Quantiles` or `Histogram`.
        as_frame: return a pandas DataFrame (default), or a `SweepResult` holding every
            field at its own shape, whose rows are built only when asked for.
        out: stream rows to this ``.parquet`` or ``.csv`` file chunk by chunk (bounded
            host memory) and return ``None``. The file is written atomically: it
            appears under this name only once complete (an interrupted or failed sweep
            leaves nothing there).
        overwrite: replace an existing ``out`` file (refused otherwise, before any work).
        shared_tokenizer: target and draft vocabularies of different sizes belong to one
            tokenizer (padded embedding tables): do not mark such points "vocab".
        chunk_size: grid points per device call, across all devices (bounds memory);
            ``None`` chooses from the devices' memory (`default_chunk_size`).
        quadrature_nodes: Gauss-Legendre nodes over the growing context (static).
        smooth: ``None`` for each chip's roofline (the hard max unless calibrated), or a
            roofline sharpness p to smooth at least this much (see ``specsim.throughput``).
        devices: devices to shard over (default: all local devices).
        process_index, process_count: this process's slice of the grid under
            ``jax.distributed`` (default: ``jax.process_index()``, ``jax.process_count()``).
        progress: show a progress bar; ``None`` shows one on a terminal once a sweep takes
            more than a moment (never when stderr is not a terminal).
        check_only: validate every input (as above) and return ``None`` without
            compiling or computing anything.

    Returns:
        A tidy ``pandas.DataFrame``, one row per point (this process's points): the
        axis columns (names as categoricals; counts (tp, batch, tokens, gamma) as int64
        when every value is whole, other numbers as float64 exactly as given; an
        ``alpha`` column for constant rates, the default, none for ``"sdsl"`` or an
        acceptance model), then the report fields (float32;
        ``*_bound`` categorical over ``STEP_BOUND_NAMES``; ``fits`` bool). A reduction
        gives its rows instead (see `TopK`, `Quantiles`, `Histogram`). A `SweepResult`
        with ``as_frame=False``; ``None`` when ``out`` is given.

    Raises:
        ValueError: an empty axis, an unknown name, a value out of range (negative
            gamma, alpha outside (0, 1), tp < 1, ...), a duplicate, an unknown column,
            a bad reduction or ``out`` path; all before anything is compiled.

    Examples:
        >>> import specsim
        >>> frame = specsim.sweep(hardware=["h100", "tpu-v5p"], batch=[1, 64],
        ...                       gamma=range(9), columns=["tokens_per_s", "speedup"])
        >>> len(frame), list(frame.columns)[:4]
        (36, ['hardware', 'target', 'draft', 'tp'])
        >>> best = specsim.sweep(hardware=["h100", "tpu-v5p"], batch=[1, 64],
        ...                      gamma=range(9), columns=["speedup"], best_over="gamma")
        >>> bool((best.speedup >= 1).all())
        True
    """
    quadrature_nodes = _checked_nodes(quadrature_nodes)
    if chunk_size is not None and (
        not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1
    ):
        raise ValueError(
            f"chunk_size {chunk_size!r}: not a whole number >= 1; valid: 1, 2, ... or None"
        )
    smooth = check_smooth(smooth)
    # Checked with or without best_over: a misspelt objective is never silently ignored.
    _check_numeric("objective", objective)
    reduction, reduce_name = _reduction(reduce, best_over, objective, maximize)
    axis_values = dict(
        hardware=hardware,
        target=target,
        draft=draft,
        tp=tp,
        batch=batch,
        prompt_tokens=prompt_tokens,
        generate_tokens=generate_tokens,
        alpha=alpha,
        gamma=gamma,
    )
    if out is None and reduce is None and as_frame:
        # Before any axis is materialised (range(10**9) is cheap to hold).
        _check_host_memory_early(axis_values, columns, best_over)
    grid = _build_grid(
        hardware=hardware,
        target=target,
        draft=draft,
        tp=tp,
        batch=batch,
        prompt_tokens=prompt_tokens,
        generate_tokens=generate_tokens,
        alpha=alpha,
        gamma=gamma,
        draft_tp=draft_tp,
        speculation_overhead_s=speculation_overhead_s,
        target_train_tokens=target_train_tokens,
        draft_train_tokens=draft_train_tokens,
        over=reduction.over if reduction is not None else (),
        over_name=reduce_name,
    )
    fields, computed = _columns(columns, reduction)
    n_over = len(grid.reduce_axes)
    group = math.prod(a.size for a in grid.axes[len(grid.axes) - n_over :])
    if isinstance(reduction, TopK) and reduction.k > group:
        raise ValueError(f"reduce: k = {reduction.k} exceeds the {group} points of a group")
    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
    if not 0 <= process_index < process_count:
        raise ValueError(
            f"process_index {process_index}: out of range; valid: 0 .. {process_count - 1}"
        )
    path = _check_out(out, process_count, process_index, overwrite)
    devices = list(jax.local_devices() if devices is None else devices)
    if not devices:
        raise ValueError("devices []: no device; valid: one or more jax.Device")
    if check_only:  # every input is valid; nothing is compiled or computed
        return None
    if chunk_size is None:
        chunk_size = default_chunk_size(devices, len(computed))

    # Outer axes: the leading kept axes that do not fit in a chunk with the rest; the
    # reduced axes are always inner (a group is evaluated together).
    sizes = grid.sizes
    n_kept = len(sizes) - n_over
    split = n_kept
    while split > 0 and math.prod(sizes[split - 1 :]) <= chunk_size:
        split -= 1
    inner_size = math.prod(sizes[split:])
    outer_sizes = sizes[:split]
    outer_total = math.prod(outer_sizes)
    lo, hi = _process_slice(outer_total, process_index, process_count)
    outer_axes = tuple(a.name for a in grid.axes[:split])
    kept_inner = tuple(a.name for a in grid.axes[split:n_kept])

    n_dev = len(devices)
    per_call = -(-max(1, chunk_size // inner_size) // n_dev) * n_dev
    per_call = min(per_call, -(-max(hi - lo, 1) // n_dev) * n_dev)
    mesh = Mesh(np.asarray(devices), ("points",)) if n_dev > 1 else None
    host_tables = {a.name: a.table for a in grid.axes}
    # Points whose vocabularies differ are marked "vocab" unless the user vouches for one
    # tokenizer (a traced flag: no recompilation either way).
    grid.constants["shared_tokenizer"] = np.bool_(shared_tokenizer)
    dependence = field_dependence(
        host_tables, grid.constants, grid.acceptance_kind, computed, smooth, quadrature_nodes
    )
    plan = Plan(
        outer_sizes=outer_sizes,
        outer_axes=outer_axes,
        inner_axes=tuple(grid.reduce_axes) + kept_inner,
        n_over=n_over,
        fields=computed,
        dependence=dependence,
        reduction=reduction,
        acceptance_kind=grid.acceptance_kind,
        smooth=smooth,
        quadrature_nodes=quadrature_nodes,
        sharding=NamedSharding(mesh, PartitionSpec("points")) if mesh else None,
    )
    result_of = functools.partial(
        SweepResult,
        axes=[a for name in AXES for a in grid.axes if a.name == name],
        outer_axes=outer_axes,
        outer_sizes=outer_sizes,
        kept_inner=kept_inner,
        over=grid.reduce_axes,
        reduction=reduction,
        fields=fields,
    )
    if path is None:
        _check_host_memory(grid, plan, fields, (hi - lo) * (inner_size // group), as_frame)

    # Everything above is validation and bookkeeping; devices are touched from here on.
    if mesh is not None:
        replicated = NamedSharding(mesh, PartitionSpec())
        tables = jax.device_put(host_tables, replicated)
        constants = jax.device_put(grid.constants, replicated)
        offsets = jax.device_put(np.arange(per_call, dtype=np.int32), plan.sharding)
    else:
        tables = jax.device_put(host_tables, devices[0])
        constants = jax.device_put(grid.constants, devices[0])
        offsets = jax.device_put(np.arange(per_call, dtype=np.int32), devices[0])

    starts = list(range(lo, hi, per_call))
    # progress=None: shown on a terminal only, after half a second, with a running clock.
    progress_bar = live_bar(progress, total=(hi - lo) * inner_size, unit="pt", unit_scale=True)
    bar = progress_bar.__enter__()
    # A file is written under a temporary name and renamed once complete.
    output = contextlib.ExitStack()
    sink = None
    if path is not None:
        temp = output.enter_context(atomic_output(path, overwrite=overwrite, what="out"))
        sink = FileSink(temp)
    collected = _Collector(hi - lo, per_call)

    def launch(start: int):
        digits = np.asarray(_unravel(start, outer_sizes), np.int32).reshape(-1)
        return _evaluate_chunk(offsets, digits, tables, constants, plan=plan)

    try:
        # Double buffering: the next chunk is dispatched (and computes) while the host
        # copies this one out and builds its rows.
        pending = launch(starts[0]) if starts else None
        for k, start in enumerate(starts):
            result = pending
            pending = launch(starts[k + 1]) if k + 1 < len(starts) else None
            stop = min(start + per_call, hi)
            chunk = {name: np.asarray(value) for name, value in result.items()}
            del result
            if sink is not None:
                rows = result_of(outer_range=(start, stop), data=_points(chunk, stop - start))
                sink.write(rows.to_frame())
            else:
                collected.add(chunk, start - lo, stop - start)
            bar.update((stop - start) * inner_size)
    except BaseException as error:
        if sink is not None:
            sink.abort()
        output.__exit__(type(error), error, error.__traceback__)  # removes the partial file
        raise
    finally:
        progress_bar.__exit__(None, None, None)
    if sink is not None:
        empty = result_of(outer_range=(lo, lo), data=_empty_data(plan, reduction))
        with output:
            sink.close(empty.to_frame())
        return None
    data = collected.data if starts else _empty_data(plan, reduction)
    result = result_of(outer_range=(lo, hi), data=data)
    return result.to_frame() if as_frame else result


def _points(chunk: dict, n: int) -> dict:
    """The arrays of a chunk's first ``n`` outer points (the rest is padding)."""
    return {name: value[:n] if value.shape[0] > 1 else value for name, value in chunk.items()}


class _Collector:
    """Gathers chunk arrays into arrays over all of this process's outer points."""

    def __init__(self, points: int, per_call: int):
        self.points, self.per_call = points, per_call
        self.data: dict[str, np.ndarray] = {}

    def add(self, chunk: dict, offset: int, n: int) -> None:
        for name, value in chunk.items():
            per_point = value.shape[0] > 1 or self.per_call == 1
            if not per_point:
                self.data.setdefault(name, value)
            elif n == self.points:  # one chunk: keep the device's buffer
                self.data[name] = value[:n]
            else:
                if name not in self.data:
                    self.data[name] = np.empty((self.points, *value.shape[1:]), value.dtype)
                self.data[name][offset : offset + n] = value[:n]


def _empty_data(plan: Plan, reduction) -> dict[str, np.ndarray]:
    """Arrays of no outer point, shaped like the kernel's output."""
    inner = [1] * (len(plan.inner_axes) - plan.n_over)
    extra = [reduction.extra()] if reduction is not None else []
    data = {}
    for name in plan.fields:
        categorical = name in BOUND_COLUMNS or name == "feasibility"
        dtype = np.int8 if categorical else bool if name == "fits" else np.float32
        data[name] = np.zeros((0, *inner, *extra), dtype)
    if isinstance(reduction, TopK):
        data["_best"] = np.zeros((0, *inner, *extra), np.int32)
    if isinstance(reduction, Histogram):
        data = {"count": np.zeros((0, *inner, *extra), np.int32)}
    return data


def _unravel(index, shape: tuple[int, ...]) -> tuple:
    """``np.unravel_index`` that also accepts an empty shape (no outer axes)."""
    return np.unravel_index(index, shape) if shape else ()


def _memory_refusal(rows: int, need: float, physical: int) -> ValueError:
    return ValueError(
        f"grid of {rows:,} rows: the result would need {need / 2**30:,.1f} GiB, more than "
        f"{HOST_MEMORY_FRACTION:.0%} of this machine's {physical / 2**30:.1f} GiB; valid: "
        "fewer points, fewer columns=, a reduction with best_over= or reduce=, or "
        "out='sweep.parquet' to stream rows to a file"
    )


def _check_host_memory(grid: _Grid, plan: Plan, fields, rows: int, as_frame: bool) -> None:
    """Refuse, before computing, a result that cannot fit in this machine's memory."""
    physical = physical_memory_bytes()
    if physical is None:  # not a POSIX system: no guard
        return
    extra = plan.reduction.extra() if plan.reduction is not None else 1
    if as_frame:
        per_row = sum(1 if a.named else 8 for a in grid.axes) + 4 * max(len(fields), 1)
        need = rows * extra * per_row
    else:  # every field at its own size: the full-size ones dominate
        kept = [a for a in grid.axes[: len(grid.axes) - plan.n_over]]
        need = 0
        for name in plan.fields:
            axes = plan.depends(name)
            need += 4 * extra * math.prod(a.size for a in kept if a.name in axes)
        need = need * rows // max(math.prod(a.size for a in kept), 1)
    if need > HOST_MEMORY_FRACTION * physical:
        raise _memory_refusal(rows * extra, need, physical)


def _check_host_memory_early(axis_values: Mapping[str, Any], columns, best_over) -> None:
    """The same guard from the axes' lengths alone, before any axis is materialised.

    Axes given as sized containers (lists, ``range``, arrays) are measured with ``len``;
    anything else counts as one value here and is measured again once built.
    """
    physical = physical_memory_bytes()
    if physical is None:
        return
    sizes = {}
    for name, value in axis_values.items():
        if isinstance(value, str | bytes | os.PathLike | Mapping) or not hasattr(value, "__len__"):
            sizes[name] = len(value) if isinstance(value, Mapping) else 1
        else:
            try:
                sizes[name] = max(1, len(value))
            except TypeError:  # a 0-d array
                sizes[name] = 1
    reduced = [best_over] if isinstance(best_over, str) else list(best_over or ())
    rows = math.prod(n for name, n in sizes.items() if name not in reduced)
    if columns is None:
        n_fields = len(REPORT_COLUMNS)
    else:
        n_fields = 1 if isinstance(columns, str) else len(list(columns))
    per_row = len(_NAMED_AXES) + 8 * (len(AXES) - len(_NAMED_AXES)) + 4 * n_fields
    if rows * per_row > HOST_MEMORY_FRACTION * physical:
        raise _memory_refusal(rows, rows * per_row, physical)
