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

import dataclasses
import functools
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
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
from ._cost import STEP_BOUND_NAMES
from ._deployment import Deployment
from ._throughput import QUADRATURE_NODES, ThroughputReport, _throughput
from ._workload import Workload
from .hardware import HardwareSpec
from .hardware._roofline import check_smooth
from .models import TransformerSpec

__all__ = ["AXES", "REPORT_COLUMNS", "sweep"]

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
REPORT_COLUMNS = tuple(f for f in ThroughputReport.__dataclass_fields__ if f != "gamma")
_BOUND_COLUMNS = ("draft_bound", "verify_bound", "target_bound")

DEFAULT_CHUNK_SIZE = 2**20

_NUMERIC_RULES = {
    "tp": (lambda v: v >= 1, ">= 1"),
    "batch": (lambda v: v > 0, "> 0"),
    "prompt_tokens": (lambda v: v >= 0, ">= 0"),
    "generate_tokens": (lambda v: v > 0, "> 0"),
    "alpha": (lambda v: 0 < v < 1, "in (0, 1)"),
    "gamma": (lambda v: v >= 0, ">= 0"),
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
            raise ValueError(f"{name}: empty axis; give at least one value")
        return values
    return [value]


def _numbers(name: str, value) -> tuple[float, ...]:
    """A numeric axis as floats, checked against its rule (``ValueError`` on the first bad one)."""
    if isinstance(value, str):
        raise ValueError(
            f"{name}: expected numbers, got the string {value!r} "
            "(parse command-line text such as '0:8' with specsim.cli.sweep.parse_axis)"
        )
    items = _as_list(name, value)
    if not items:
        raise ValueError(f"{name}: empty axis; give at least one value")
    ok, text = _NUMERIC_RULES[name]
    out = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, int | float | np.number):
            raise ValueError(f"{name}: expected numbers, got {item!r}")
        number = float(item)
        if not (math.isfinite(number) and ok(number)):
            raise ValueError(f"{name} must be finite and {text}, got {item!r}")
        out.append(number)
    _check_unique(name, out)
    return tuple(out)


def _check_unique(name: str, labels: Sequence) -> None:
    seen = set()
    for label in labels:
        if label in seen:
            raise ValueError(f"{name}: {label!r} appears twice on the axis")
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
        raise ValueError(f"{name}: empty axis; give at least one value")
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
                raise ValueError(f"hardware: {e}") from None
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
                raise ValueError(f"{name}: {e}") from None
            source = _models.locate(item)
            key = source.catalogue_name
            label = label or source.label
        else:
            raise ValueError(f"{name}: expected a model name or a TransformerSpec, got {item!r}")
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
    best_over,
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
            raise ValueError(f"alpha: expected numbers in (0, 1) or 'sdsl', got {alpha!r}")
        kind = "sdsl"
    elif isinstance(alpha, PositionalAcceptance | SDSLAcceptance):
        kind = "fixed"
        try:
            constants["acceptance"] = validate_acceptance(alpha)
        except (TypeError, ValueError) as e:
            raise ValueError(f"alpha: {e}") from None
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
            raise ValueError(f"{name} only applies with alpha='sdsl'")
        number = _scalar(name, value)
        if not number > 0:
            raise ValueError(f"{name} must be finite and > 0, got {value!r}")
    if kind == "sdsl":
        per_target = []
        for label, key in zip(axes["target"].labels, target_keys, strict=True):
            count = target_train_tokens
            if count is None and key is not None:
                count = _models.train_tokens(key)
            if count is None:
                raise ValueError(
                    f"alpha='sdsl' needs pre-training tokens; the catalogue has none for "
                    f"{label!r}: pass target_train_tokens (--target-train-tokens)"
                )
            per_target.append(float(count))
        axes["target"].table["train_tokens"] = np.asarray(per_target, np.float32)
        if draft_train_tokens is not None:
            constants["draft_train_tokens"] = np.float32(draft_train_tokens)

    if draft_tp is not None:
        number = _scalar("draft_tp", draft_tp)
        if not number >= 1:
            raise ValueError(f"draft_tp must be finite and >= 1, got {draft_tp!r}")
        constants["draft_tp"] = np.float32(number)
    overhead = _scalar("speculation_overhead_s", speculation_overhead_s)
    if not overhead >= 0:
        raise ValueError(f"speculation_overhead_s must be finite and >= 0, got {overhead!r}")
    constants["speculation_overhead_s"] = np.float32(overhead)

    reduce_axes = _reduce_axes(best_over, axes)
    order = [a for a in AXES if a in axes and a not in reduce_axes] + list(reduce_axes)
    return _Grid(tuple(axes[a] for a in order), reduce_axes, kind, constants)


def _scalar(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        raise ValueError(f"{name} must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return number


def _reduce_axes(best_over, axes: Mapping[str, _Axis]) -> tuple[str, ...]:
    if best_over is None:
        return ()
    names = [best_over] if isinstance(best_over, str) else list(best_over)
    if not names:
        raise ValueError("best_over: give at least one axis name")
    for name in names:
        if name not in axes:
            valid = ", ".join(a for a in AXES if a in axes)
            raise ValueError(f"best_over: unknown axis {name!r}; valid: {valid}")
    _check_unique("best_over", names)
    return tuple(a for a in AXES if a in names)


def _columns(columns, objective: str, best_over) -> tuple[tuple[str, ...], str | None]:
    """Report columns to return, and the objective when reducing."""
    if columns is None:
        selected = list(REPORT_COLUMNS)
    else:
        selected = [columns] if isinstance(columns, str) else list(columns)
        for name in selected:
            if name not in REPORT_COLUMNS and name not in AXES:
                raise ValueError(
                    f"columns: unknown column {name!r}; valid: {', '.join(REPORT_COLUMNS)}"
                )
        selected = [c for c in REPORT_COLUMNS if c in selected]
    if best_over is None:
        return tuple(selected), None
    if objective not in REPORT_COLUMNS or objective in (*_BOUND_COLUMNS, "fits"):
        numeric = [c for c in REPORT_COLUMNS if c not in (*_BOUND_COLUMNS, "fits")]
        raise ValueError(f"objective: expected one of {', '.join(numeric)}, got {objective!r}")
    return tuple(selected), objective


# --------------------------------------------------------------------------- kernel


@dataclasses.dataclass(frozen=True)
class _Plan:
    """Static description of one compiled chunk kernel (hashable)."""

    outer_sizes: tuple[int, ...]
    outer_axes: tuple[str, ...]
    inner_axes: tuple[str, ...]
    n_reduced: int  # trailing inner axes reduced by argmax/argmin of the objective
    fields: tuple[str, ...]
    objective: str | None
    maximize: bool
    acceptance_kind: str
    smooth: float | None
    quadrature_nodes: int
    sharding: NamedSharding | None


def _point(values: dict, constants: dict, plan: _Plan) -> dict:
    """The selected report fields of one grid point (values: one entry per axis)."""
    target = values["target"]
    if plan.acceptance_kind == "constant":
        acceptance = ConstantAcceptance(alpha=values["alpha"])
    elif plan.acceptance_kind == "sdsl":
        target_tokens = target["train_tokens"]
        acceptance = SDSLAcceptance(
            draft_train_tokens=constants.get("draft_train_tokens", target_tokens),
            target_train_tokens=target_tokens,
        )
    else:
        acceptance = constants["acceptance"]
    tp = values["tp"]
    deployment = Deployment(
        target=target["spec"],
        hardware=values["hardware"],
        workload=Workload(
            batch=values["batch"],
            prompt_tokens=values["prompt_tokens"],
            generate_tokens=values["generate_tokens"],
        ),
        acceptance=acceptance,
        tp=tp,
        draft_tp=constants.get("draft_tp", tp),
        speculation_overhead_s=constants["speculation_overhead_s"],
    )
    report = _throughput(
        deployment, values["draft"]["spec"], values["gamma"], plan.smooth, plan.quadrature_nodes
    )
    out = {}
    for name in set(plan.fields) | ({plan.objective} - {None}):
        value = getattr(report, name)
        out[name] = value.astype(jnp.int8) if name in _BOUND_COLUMNS else value
    return out


def _vmap_over(fn, name: str, table):
    """``fn(values)`` vmapped over the full table of axis ``name``."""

    def batched(values):
        return jax.vmap(lambda entry: fn({**values, name: entry}))(table)

    return batched


def _outer_digits(offsets, start_digits, sizes: tuple[int, ...]) -> list:
    """Per-axis indices of ``start + offsets`` by mixed-radix addition (no int overflow).

    The flat outer index may exceed int32 for huge grids; each digit stays below its
    axis length. Padding past the end wraps around to valid (discarded) points.
    """
    offset_digits = []
    rest = offsets
    for n in reversed(sizes):
        offset_digits.append(rest % n)
        rest = rest // n
    offset_digits.reverse()
    digits = [None] * len(sizes)
    carry = jnp.zeros_like(offsets)
    for k in reversed(range(len(sizes))):
        total = start_digits[k] + offset_digits[k] + carry
        digits[k] = total % sizes[k]
        carry = total // sizes[k]
    return digits


@functools.partial(jax.jit, static_argnames=("plan",))
def _evaluate_chunk(offsets, start_digits, tables, constants, plan: _Plan):
    """Report fields of ``len(offsets)`` outer points times the full inner box.

    Returns a dict of arrays of shape ``(len(offsets), *kept_inner_shape)``; when
    reducing, ``"_best"`` holds the flat index of the optimum over the reduced axes.
    """
    digits = _outer_digits(offsets, start_digits, plan.outer_sizes)
    outer = {
        name: jax.tree.map(lambda t, d=d: t[d], tables[name])
        for name, d in zip(plan.outer_axes, digits, strict=True)
    }
    fn = functools.partial(_point, constants=constants, plan=plan)
    for name in reversed(plan.inner_axes):
        fn = _vmap_over(fn, name, tables[name])
    fields = jax.vmap(fn, axis_size=offsets.shape[0])(outer)
    if plan.n_reduced:
        fields = _reduce(fields, plan)
    if plan.sharding is not None:
        fields = jax.lax.with_sharding_constraint(fields, plan.sharding)
    return fields


def _reduce(fields: dict, plan: _Plan) -> dict:
    """Keep, for every kept point, the fields at the optimum of the objective over the
    trailing ``plan.n_reduced`` axes (first optimum on ties)."""
    objective = fields[plan.objective]
    kept_shape = objective.shape[: objective.ndim - plan.n_reduced]
    flat = lambda x: x.reshape((*kept_shape, -1))
    score = flat(objective)
    best = jnp.argmax(score, axis=-1) if plan.maximize else jnp.argmin(score, axis=-1)
    out = {
        name: jnp.take_along_axis(flat(value), best[..., None], axis=-1)[..., 0]
        for name, value in fields.items()
        if name in plan.fields
    }
    out["_best"] = best.astype(jnp.int32)
    return out


# --------------------------------------------------------------------------- host loop


def _process_slice(total: int, index: int, count: int) -> tuple[int, int]:
    """Contiguous ``[lo, hi)`` of ``range(total)`` owned by process ``index`` of ``count``.

    Examples:
        >>> [_process_slice(10, i, 3) for i in range(3)]
        [(0, 3), (3, 6), (6, 10)]
    """
    return total * index // count, total * (index + 1) // count


def _unravel(index, shape: tuple[int, ...]) -> tuple:
    """``np.unravel_index`` that also accepts an empty shape (no outer axes)."""
    return np.unravel_index(index, shape) if shape else ()


def _code_dtype(n: int):
    return np.int8 if n <= 127 else np.int16 if n <= 32767 else np.int32


class _Columns:
    """Host-side assembly of one process's rows: axis codes plus report fields."""

    def __init__(self, grid: _Grid, plan: _Plan, kept_inner: int):
        self.grid, self.plan, self.kept_inner = grid, plan, kept_inner
        n_outer = len(plan.outer_axes)
        self.outer = grid.axes[:n_outer]
        inner = grid.axes[n_outer:]
        self.kept = inner[: len(inner) - plan.n_reduced]
        self.reduced = inner[len(inner) - plan.n_reduced :]

    def _entries(self, axis: _Axis, codes: np.ndarray) -> np.ndarray:
        """Codes for a named axis (categorical), values for a numeric one."""
        if axis.named:
            return codes.astype(_code_dtype(axis.size), copy=False)
        return axis.values[codes]

    def chunk(self, lo: int, hi: int, fields: dict) -> dict[str, np.ndarray]:
        """Flat columns of outer points ``[lo, hi)``: axis codes or values, report fields.

        Axis columns are built by ``repeat``/``tile`` of per-axis entries (never a
        per-row gather), since on the host they cost as much as the kernel itself.
        """
        rows = (hi - lo) * self.kept_inner
        out: dict[str, np.ndarray] = {}
        outer_codes = _unravel(np.arange(lo, hi), self.plan.outer_sizes)
        for axis, codes in zip(self.outer, outer_codes, strict=True):
            out[axis.name] = np.repeat(self._entries(axis, codes), self.kept_inner)
        stride = self.kept_inner
        for axis in self.kept:
            stride //= axis.size
            block = np.repeat(self._entries(axis, np.arange(axis.size)), stride)
            out[axis.name] = np.tile(block, rows // block.size)
        if self.reduced:
            best = np.asarray(fields["_best"]).reshape(-1)[:rows]
            shape = tuple(a.size for a in self.reduced)
            for axis, codes in zip(self.reduced, np.unravel_index(best, shape), strict=True):
                out[axis.name] = self._entries(axis, codes)
        for name in self.plan.fields:
            out[name] = np.asarray(fields[name]).reshape(-1)[:rows]
        return out

    def frame(self, columns: Mapping[str, np.ndarray]) -> pd.DataFrame:
        """A DataFrame of ``chunk`` columns: axes in ``AXES`` order, then report fields."""
        data: dict[str, Any] = {}
        by_name = {a.name: a for a in self.grid.axes}
        for name in AXES:
            if name not in by_name:
                continue
            axis = by_name[name]
            if axis.named:
                codes = columns[name]
                data[name] = pd.Categorical.from_codes(codes, categories=list(axis.labels))
            else:
                data[name] = columns[name]
        for name in self.plan.fields:
            values = columns[name]
            if name in _BOUND_COLUMNS:
                data[name] = pd.Categorical.from_codes(values, categories=list(STEP_BOUND_NAMES))
            else:
                data[name] = values
        return pd.DataFrame(data, copy=False)


class _FileSink:
    """Streams chunks to ``.parquet`` (one row group per chunk) or ``.csv``."""

    def __init__(self, path: str):
        self.path = path
        self.parquet = path.lower().endswith(".parquet")
        self.writer = None
        self.rows = 0

    def write(self, frame: pd.DataFrame) -> None:
        if self.parquet:
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.Table.from_pandas(frame, preserve_index=False)
            if self.writer is None:
                self.writer = pq.ParquetWriter(self.path, table.schema)
            self.writer.write_table(table)
        else:
            frame.to_csv(
                self.path, mode="w" if self.rows == 0 else "a", header=self.rows == 0, index=False
            )
        self.rows += len(frame)

    def close(self, empty: pd.DataFrame) -> None:
        if self.rows == 0:  # still write a header / schema
            self.rows = -1
            if self.parquet:
                self.write(empty)
                self.writer.close()
            else:
                empty.to_csv(self.path, index=False)
            return
        if self.writer is not None:
            self.writer.close()


def _check_out(out, process_count: int) -> str | None:
    if out is None:
        return None
    path = os.fspath(out)
    if not path.lower().endswith((".csv", ".parquet")):
        raise ValueError(f"out must end in .csv or .parquet, got {path!r}")
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
    return path


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
    out: str | os.PathLike | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    quadrature_nodes: int = QUADRATURE_NODES,
    smooth: float | None = None,
    devices: Sequence[jax.Device] | None = None,
    process_index: int | None = None,
    process_count: int | None = None,
    progress: bool | None = None,
) -> pd.DataFrame | None:
    """Throughput of every point of a Cartesian grid of what-if scenarios.

    Every axis takes one value or a sequence; the grid is their Cartesian product
    in the order of ``AXES`` (gamma varies fastest). All inputs are validated
    before anything is compiled. The grid is evaluated in chunks of
    ``chunk_size`` points by one jitted kernel, sharded over ``devices``; changing
    axis values (not lengths) never recompiles.

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
            columns are always returned. Fewer columns also means less work.
        best_over: axis name(s) to optimise over: one row per point of the other axes,
            holding the optimal value of each such axis and the report there (the first
            optimum on ties). E.g. ``best_over="gamma"`` gives the best lookahead.
        objective: report field optimised by ``best_over``.
        maximize: maximise (default) or minimise ``objective``.
        out: stream rows to this ``.parquet`` or ``.csv`` file chunk by chunk (bounded
            host memory) and return ``None``.
        chunk_size: grid points per device call, across all devices (bounds memory).
        quadrature_nodes: Gauss-Legendre nodes over the growing context (static).
        smooth: ``None`` for each chip's roofline (the hard max unless calibrated), or a
            roofline sharpness p to smooth at least this much (see ``specsim.throughput``).
        devices: devices to shard over (default: all local devices).
        process_index, process_count: this process's slice of the grid under
            ``jax.distributed`` (default: ``jax.process_index()``, ``jax.process_count()``).
        progress: show a progress bar; ``None`` shows one for sweeps of several chunks.

    Returns:
        A tidy ``pandas.DataFrame``, one row per point (this process's points): the
        axis columns (names as categoricals; counts (tp, batch, tokens, gamma) as int64
        when every value is whole, other numbers as float64 exactly as given; no
        ``alpha`` column unless alpha is an axis), then the report fields (float32;
        ``*_bound`` categorical over ``STEP_BOUND_NAMES``; ``fits`` bool). ``None``
        when ``out`` is given.

    Raises:
        ValueError: an empty axis, an unknown name, a value out of range (negative
            gamma, alpha outside (0, 1), tp < 1, ...), a duplicate, an unknown column,
            or a bad ``out`` path; all before anything is compiled.

    Examples:
        >>> import specsim
        >>> frame = specsim.sweep(hardware=["h100", "tpu-v5p"], batch=[1, 64],
        ...                       gamma=range(9), columns=["tokens_per_s", "speedup"])
        >>> len(frame), list(frame.columns)[:4]
        (36, ['hardware', 'target', 'draft', 'tp'])
        >>> best = frame.loc[frame.groupby(["hardware", "batch"], observed=True)
        ...                  .tokens_per_s.idxmax()]
        >>> bool((best.speedup >= 1).all())
        True
    """
    if (
        not isinstance(quadrature_nodes, int)
        or isinstance(quadrature_nodes, bool)
        or (quadrature_nodes < 1)
    ):
        raise ValueError(f"quadrature_nodes must be an integer >= 1, got {quadrature_nodes!r}")
    if not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1:
        raise ValueError(f"chunk_size must be an integer >= 1, got {chunk_size!r}")
    smooth = check_smooth(smooth)
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
        best_over=best_over,
    )
    fields, objective = _columns(columns, objective, best_over)
    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index {process_index} not in [0, {process_count})")
    path = _check_out(out, process_count)
    devices = list(jax.local_devices() if devices is None else devices)
    if not devices:
        raise ValueError("devices: give at least one device")

    # Inner axes: the longest suffix of the evaluation order that fits in a chunk
    # (always including the reduced axes, which must be evaluated together).
    sizes = grid.sizes
    n_axes = len(sizes)
    split = n_axes - len(grid.reduce_axes)
    while split > 0 and math.prod(sizes[split - 1 :]) <= chunk_size:
        split -= 1
    inner_size = math.prod(sizes[split:])
    reduced_size = math.prod(a.size for a in grid.axes[n_axes - len(grid.reduce_axes) :])
    kept_inner = inner_size // reduced_size
    outer_sizes = sizes[:split]
    outer_total = math.prod(outer_sizes)
    lo, hi = _process_slice(outer_total, process_index, process_count)

    n_dev = len(devices)
    per_call = -(-max(1, chunk_size // inner_size) // n_dev) * n_dev
    per_call = min(per_call, -(-max(hi - lo, 1) // n_dev) * n_dev)
    mesh = Mesh(np.asarray(devices), ("points",)) if n_dev > 1 else None
    points_sharding = NamedSharding(mesh, PartitionSpec("points")) if mesh else None
    plan = _Plan(
        outer_sizes=outer_sizes,
        outer_axes=tuple(a.name for a in grid.axes[:split]),
        inner_axes=tuple(a.name for a in grid.axes[split:]),
        n_reduced=len(grid.reduce_axes),
        fields=fields,
        objective=objective,
        maximize=bool(maximize),
        acceptance_kind=grid.acceptance_kind,
        smooth=smooth,
        quadrature_nodes=quadrature_nodes,
        sharding=points_sharding,
    )
    assembler = _Columns(grid, plan, kept_inner)
    if path is None:
        _check_host_memory(grid, fields, (hi - lo) * kept_inner)
    if path is not None:
        path = path.replace("{process}", str(process_index))

    # Everything above is validation and bookkeeping; devices are touched from here on.
    if mesh is not None:
        replicated = NamedSharding(mesh, PartitionSpec())
        tables = jax.device_put({a.name: a.table for a in grid.axes}, replicated)
        constants = jax.device_put(grid.constants, replicated)
        offsets = jax.device_put(np.arange(per_call, dtype=np.int32), points_sharding)
    else:
        tables = jax.device_put({a.name: a.table for a in grid.axes}, devices[0])
        constants = jax.device_put(grid.constants, devices[0])
        offsets = jax.device_put(np.arange(per_call, dtype=np.int32), devices[0])

    starts = list(range(lo, hi, per_call))
    rows_total = (hi - lo) * kept_inner
    show = progress if progress is not None else len(starts) > 4
    from tqdm import tqdm

    bar = tqdm(total=(hi - lo) * inner_size, unit="pt", unit_scale=True, disable=not show)
    sink = _FileSink(path) if path is not None else None
    buffers: dict[str, np.ndarray] = {}
    row = 0

    def launch(start: int):
        digits = np.asarray(_unravel(start, outer_sizes), np.int32).reshape(-1)
        return _evaluate_chunk(offsets, digits, tables, constants, plan=plan)

    try:
        # Accelerators compute the next chunk while the host copies this one out; on a
        # CPU both would fight for the same cores, so there it is strictly one at a time.
        overlap = devices[0].platform != "cpu"
        pending = launch(starts[0]) if starts else None
        for k, start in enumerate(starts):
            result = pending if overlap else jax.block_until_ready(pending)
            following = starts[k + 1] if k + 1 < len(starts) else None
            pending = launch(following) if overlap and following is not None else None
            stop = min(start + per_call, hi)
            chunk = assembler.chunk(start, stop, result)
            n_rows = (stop - start) * kept_inner
            if sink is not None:
                sink.write(assembler.frame(chunk))
            elif len(starts) == 1:
                buffers = chunk
            else:
                for name, values in chunk.items():
                    if name not in buffers:
                        buffers[name] = np.empty(rows_total, values.dtype)
                    buffers[name][row : row + n_rows] = values
            row += n_rows
            bar.update((stop - start) * inner_size)
            if not overlap and following is not None:
                pending = launch(following)
    finally:
        bar.close()
    if sink is not None:
        sink.close(assembler.frame(_empty_chunk(assembler)))
        return None
    if not buffers:
        buffers = _empty_chunk(assembler)
    return assembler.frame(buffers)


def _check_host_memory(grid: _Grid, fields: Sequence[str], rows: int) -> None:
    """Refuse, before computing, a DataFrame that cannot fit in this machine's memory."""
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):  # not a POSIX system: no guard
        return
    per_row = sum(1 if a.named else 8 for a in grid.axes) + 4 * len(fields)
    need = rows * per_row
    if need > 0.8 * physical:
        raise ValueError(
            f"the result would need {need / 2**30:.1f} GiB for {rows:,} rows, more than this "
            f"machine's {physical / 2**30:.1f} GiB: select fewer columns=, reduce with "
            "best_over=, or stream to a file with out='sweep.parquet'"
        )


def _empty_chunk(assembler: _Columns) -> dict[str, np.ndarray]:
    out = {a.name: np.zeros(0, np.int8) if a.named else a.values[:0] for a in assembler.grid.axes}
    for name in assembler.plan.fields:
        dtype = np.int8 if name in _BOUND_COLUMNS else bool if name == "fits" else np.float32
        out[name] = np.zeros(0, dtype)
    return out
