"""`SweepResult`: the rows of a sweep as arrays, built lazily; and the one file writer.

The kernel returns every report field at its own shape: a size-1 dimension wherever
it does not depend on an axis (a draft step is one number per hardware, draft, tp,
batch and context, whatever the target, alpha or gamma). A `SweepResult` keeps them
so. Rows exist only when asked for: `to_frame` (a pandas DataFrame, what `sweep`
returns by default), ``result[name]`` (one flat column) or `array` (an N-d array
broadcastable over the grid). A 10^6-point sweep thus costs the arithmetic and the
few full-size fields (tokens per second, speedup, latency), not 10^6 x 28 copies.

Row order is the grid's: the axes in ``AXES`` order (gamma fastest), then the extra
dimension of a reduction (rank, quantile or bin).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd

from ._cost import STEP_BOUND_NAMES
from ._feasibility import FEASIBILITY_NAMES
from ._reduce import Histogram, Quantiles, TopK
from ._sweep_kernel import BOUND_COLUMNS

__all__ = ["SweepResult"]

# Building columns is memory-bound; NumPy copies release the GIL, so big frames are
# assembled on every core.
_PARALLEL_ROWS = 1 << 18


class SweepResult:
    """The rows of a sweep, held as one array per field at the field's own shape.

    Returned by ``sweep(..., as_frame=False)``. Nothing is broadcast until asked for.

    Attributes:
        dims: the row dimensions, outermost first: the kept grid axes in ``AXES``
            order, then ``"rank"``, ``"quantile"`` or ``"bin"`` for a reduction that adds
            rows per group.
        shape: their lengths (the first ones cover only this process's slice of the
            grid under ``jax.distributed``).
        columns: the column names of `to_frame`, in order.

    Examples:
        >>> import specsim
        >>> result = specsim.sweep(batch=[1, 8, 64], gamma=range(5), as_frame=False)
        >>> result.shape, len(result)
        ((1, 1, 1, 1, 3, 1, 1, 1, 5), 15)
        >>> result.array("draft_step_s").shape  # does not depend on gamma
        (1, 1, 1, 1, 3, 1, 1, 1, 1)
        >>> bool((result["speedup"] == result.to_frame().speedup.to_numpy()).all())
        True
    """

    def __init__(
        self,
        *,
        axes: Sequence,
        outer_axes: Sequence[str],
        outer_sizes: Sequence[int],
        outer_range: tuple[int, int],
        kept_inner: Sequence[str],
        over: Sequence[str],
        reduction,
        fields: Sequence[str],
        data: Mapping[str, np.ndarray],
    ):
        self._axes = {a.name: a for a in axes}
        self._outer_axes = tuple(outer_axes)
        self._outer_sizes = tuple(outer_sizes)
        self._range = outer_range
        self._kept_inner = tuple(kept_inner)
        self._over = tuple(over)
        self._reduction = reduction
        self._fields = tuple(fields)
        if isinstance(reduction, TopK) and reduction.k == 1:
            data = {name: value[..., 0] for name, value in data.items()}  # no rank dimension
        self._data = dict(data)
        points = outer_range[1] - outer_range[0]
        extra = self._extra_shape()
        self._row_shape = (points, *(self._axes[n].size for n in self._kept_inner), *extra)
        grid_order = {name: i for i, name in enumerate(self._axes)}
        kept = [*self._outer_axes, *self._kept_inner]
        self.dims = tuple(sorted(kept, key=grid_order.get)) + self._extra_dims()
        sizes = {n: self._axes[n].size for n in kept}
        if points != math.prod(self._outer_sizes):  # a process's slice: not a box
            sizes.update(dict.fromkeys(self._outer_axes))
        sizes.update(zip(self._extra_dims(), extra, strict=True))
        self.shape = tuple(sizes[n] for n in self.dims)
        self.columns = self._column_names()

    # ----------------------------------------------------------------- structure

    def _extra_dims(self) -> tuple[str, ...]:
        if isinstance(self._reduction, TopK):
            return ("rank",) if self._reduction.k > 1 else ()
        if isinstance(self._reduction, Quantiles):
            return ("quantile",)
        if isinstance(self._reduction, Histogram):
            return ("bin",)
        return ()

    def _extra_shape(self) -> tuple[int, ...]:
        if self._reduction is None:
            return ()
        extra = self._reduction.extra()
        return (extra,) if self._extra_dims() else ()

    def _column_names(self) -> list[str]:
        names = [n for n in self._axes if n not in self._over]
        if isinstance(self._reduction, TopK):
            names = list(self._axes)
            if self._reduction.k > 1:
                names.append("rank")
            return names + list(self._fields)
        if isinstance(self._reduction, Quantiles):
            return [*names, "quantile", *self._fields]
        if isinstance(self._reduction, Histogram):
            return [*names, "bin_start", "bin_stop", "count"]
        return names + list(self._fields)

    def __len__(self) -> int:
        return math.prod(self._row_shape)

    def __repr__(self) -> str:
        dims = ", ".join(f"{d}: {s}" for d, s in zip(self.dims, self.shape, strict=True))
        return f"SweepResult({len(self):,} rows; {dims}; columns {', '.join(self.columns)})"

    # ----------------------------------------------------------------- columns

    def __getitem__(self, name: str):
        """One flat column, as `to_frame` holds it (categoricals for names and bounds)."""
        if name not in self.columns:
            raise KeyError(f"{name!r}; columns: {', '.join(self.columns)}")
        return self._column(name)

    def _row_view(self, name: str) -> tuple[np.ndarray, Any]:
        """``(values, categories)``: an array broadcastable to the row shape."""
        n_rows = len(self._row_shape)
        if name in self._outer_axes or name in self._kept_inner or name in self._over:
            axis = self._axes[name]
            codes = self._axis_codes(name, n_rows)
            if axis.named:
                return codes.astype(_code_dtype(axis.size), copy=False), list(axis.labels)
            return axis.values[codes], None
        extra = None
        if self._extra_dims():
            extra = np.arange(self._row_shape[-1]).reshape((1,) * (n_rows - 1) + (-1,))
        if name == "rank":
            return extra + 1, None
        if name == "quantile":
            return np.asarray(self._reduction.q, np.float64)[extra], None
        if name in ("bin_start", "bin_stop"):
            edges = np.asarray(self._reduction.edges, np.float64)
            return (edges[:-1] if name == "bin_start" else edges[1:])[extra], None
        if name == "count":
            return self._data["count"].astype(np.int64), None
        values = self._data[name]
        if name in BOUND_COLUMNS:
            return values, list(STEP_BOUND_NAMES)
        if name == "feasibility":
            return values, list(FEASIBILITY_NAMES)
        return values, None

    def _axis_codes(self, name: str, n_rows: int) -> np.ndarray:
        """Indices into an axis' labels, broadcastable to the row shape."""
        if name in self._outer_axes:
            lo, hi = self._range
            codes = _unravel(np.arange(lo, hi), self._outer_sizes)[self._outer_axes.index(name)]
            return np.asarray(codes).reshape((-1,) + (1,) * (n_rows - 1))
        if name in self._kept_inner:
            shape = [1] * n_rows
            k = 1 + self._kept_inner.index(name)
            shape[k] = self._axes[name].size
            return np.arange(self._axes[name].size).reshape(shape)
        best = self._data["_best"]  # TopK: flat index within the group
        over_shape = tuple(self._axes[n].size for n in self._over)
        return np.unravel_index(best, over_shape)[self._over.index(name)]

    def _column(self, name: str):
        values, categories = self._row_view(name)
        flat = _materialise(values, self._row_shape)
        if categories is not None:
            dtype = pd.CategoricalDtype(categories)
            return pd.Categorical.from_codes(flat, dtype=dtype, validate=False)
        return flat

    def to_frame(self) -> pd.DataFrame:
        """A tidy DataFrame: one row per point (or per group and rank, quantile or bin).

        Axis columns: names as categoricals, counts (tp, batch, tokens, gamma) as int64
        when every value is whole, other numbers as float64 exactly as given; report
        fields float32 (bounds categorical over ``STEP_BOUND_NAMES``, ``fits`` bool).
        """
        if len(self) >= _PARALLEL_ROWS and (os.cpu_count() or 1) > 1:
            with ThreadPoolExecutor(os.cpu_count()) as pool:
                columns = dict(zip(self.columns, pool.map(self._column, self.columns), strict=True))
        else:
            columns = {name: self._column(name) for name in self.columns}
        return pd.DataFrame(columns, copy=False)

    def array(self, name: str) -> np.ndarray:
        """``name`` as an N-d array over `dims`, with size 1 where it does not vary.

        Broadcast it to `shape` (``numpy.broadcast_to``) for the full grid; nothing
        is copied. Needs the whole grid (not a process's slice).
        """
        if name not in self.columns:
            raise KeyError(f"{name!r}; columns: {', '.join(self.columns)}")
        if None in self.shape:
            raise ValueError("array() needs the whole grid; this process holds a slice of it")
        values, categories = self._row_view(name)
        if categories is not None:
            values = np.asarray(categories, object)[values]
        # (points, *kept inner, extra) -> (*outer axes, *kept inner, extra), then grid order
        points = values.shape[0]
        outer_shape = self._outer_sizes if points > 1 else (1,) * len(self._outer_axes)
        values = values.reshape((*outer_shape, *values.shape[1:]))
        order = [*self._outer_axes, *self._kept_inner]
        grid_order = {n: i for i, n in enumerate(self._axes)}
        permutation = sorted(range(len(order)), key=lambda i: grid_order[order[i]])
        extra = list(range(len(order), values.ndim))
        return np.transpose(values, permutation + extra)


def _materialise(values: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``values`` broadcast to ``shape`` and flattened (no copy when it has that shape)."""
    values = np.asarray(values)
    if values.shape == shape:
        return values.reshape(-1)
    out = np.empty(shape, values.dtype)
    np.copyto(out, values)
    return out.reshape(-1)


def _unravel(index, shape: tuple[int, ...]) -> tuple:
    """``np.unravel_index`` that also accepts an empty shape (no outer axes)."""
    return np.unravel_index(index, shape) if shape else ()


def _code_dtype(n: int):
    return np.int8 if n <= 127 else np.int16 if n <= 32767 else np.int32


class FileSink:
    """Streams frames to ``.parquet`` (one row group per chunk) or ``.csv`` (Arrow writers).

    The one place a sweep writes files.
    """

    def __init__(self, path: str):
        self.path = path
        self.parquet = path.lower().endswith(".parquet")
        self.writer = None
        self.file = None  # the open CSV file under the writer
        self.rows = 0

    def write(self, frame: pd.DataFrame) -> None:
        import pyarrow as pa

        table = pa.Table.from_pandas(frame, preserve_index=False)
        if self.writer is None:
            if self.parquet:
                import pyarrow.parquet as pq

                self.writer = pq.ParquetWriter(self.path, table.schema)
            else:
                # Arrow's CSV writer: several times faster than DataFrame.to_csv per chunk.
                # The header is written as pandas writes it (Arrow quotes every name).
                import csv
                import io

                import pyarrow.csv as pc

                header = io.StringIO()
                csv.writer(header, lineterminator="\n").writerow(table.schema.names)
                self.file = open(self.path, "wb")  # closed by close() or abort()
                self.file.write(header.getvalue().encode())
                options = pc.WriteOptions(include_header=False, quoting_style="needed")
                self.writer = pc.CSVWriter(self.file, table.schema, write_options=options)
        self.writer.write_table(table)
        self.rows += len(frame)

    def abort(self) -> None:
        """Releases the file after a failure (the caller removes it)."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        if self.file is not None:
            self.file.close()
            self.file = None

    def close(self, empty: pd.DataFrame) -> None:
        if self.rows == 0:  # still write a header / schema
            self.rows = -1
            self.write(empty)
        self.abort()  # closes the writer and the file under it
