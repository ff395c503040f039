"""Reductions of a sweep over some of its axes, computed on the device.

A sweep over ``over`` axes gives one group per point of the other axes; a reduction
turns each group into a few rows inside the jitted, sharded kernel, so only those rows
cross to the host:

* `TopK`: the ``k`` best points of each group by one report field (``k = 1``: the
  arg-max per group, what ``sweep(best_over=...)`` returns); ties keep grid order.
* `Quantiles`: quantiles of every numeric report field over each group (NumPy's
  default linear interpolation).
* `Histogram`: counts of one report field in fixed bins over each group (NumPy's
  convention: half-open bins, the last one closed).

Arrays inside the kernel have the layout ``(points, *over, *kept)``: the reduced axes
lead, so a reduction runs across contiguous slices of the kept axes (vectorised). Each
field keeps a size-1 dimension wherever it does not depend on an axis; a field that
does not depend on the reduced axes is not reduced at all (its quantiles are itself).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["Histogram", "Quantiles", "TopK"]


def _axis_names(over) -> tuple[str, ...]:
    names = (over,) if isinstance(over, str) else tuple(over)
    if not names or not all(isinstance(n, str) for n in names):
        raise ValueError(f"over: give one or more axis names, got {over!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"over: an axis appears twice in {names}")
    return names


@dataclasses.dataclass(frozen=True)
class TopK:
    """The ``k`` best points of every group by ``objective`` (``k = 1``: arg-max per group).

    Rows: ``k`` per group, best first, with the reduced axes' values at each point and a
    ``rank`` column (1 = best) when ``k > 1``.

    Args:
        over: axis name(s) forming each group, e.g. ``"gamma"``.
        k: points kept per group, 1 <= k <= group size.
        objective: report field ranked.
        maximize: best = largest (default) or smallest.

    Examples:
        >>> import specsim
        >>> frame = specsim.sweep(batch=[1, 64], gamma=range(9), columns=["tokens_per_s"],
        ...                       reduce=specsim.TopK("gamma", k=2))
        >>> frame[["batch", "rank", "gamma"]].values.tolist()
        [[1, 1, 8], [1, 2, 7], [64, 1, 4], [64, 2, 5]]
    """

    over: str | Sequence[str]
    k: int = 1
    objective: str = "tokens_per_s"
    maximize: bool = True

    def __post_init__(self):
        object.__setattr__(self, "over", _axis_names(self.over))
        if isinstance(self.k, bool) or not isinstance(self.k, int | np.integer) or self.k < 1:
            raise ValueError(f"k must be a whole number >= 1, got {self.k!r}")
        object.__setattr__(self, "k", int(self.k))
        object.__setattr__(self, "maximize", bool(self.maximize))

    def reduce(self, fields: dict, over_shape: tuple[int, ...]) -> dict:
        """Fields at the ``k`` best points: ``(points, *kept, k)``; ``"_best"`` holds the
        flat index within the group of each."""
        n_over, size = len(over_shape), math.prod(over_shape)
        score = _flat_over(fields[self.objective], over_shape)  # (P, R, *kept)
        if "feasibility" in fields:
            # Feasible points first: an infeasible one ranks only in a group without any.
            ok = _flat_over(fields["feasibility"], over_shape) == 0
            shape = jnp.broadcast_shapes(score.shape, ok.shape)
            score, ok = jnp.broadcast_to(score, shape), jnp.broadcast_to(ok, shape)
            worst = -jnp.inf if self.maximize else jnp.inf
            score = jnp.where(ok | ~jnp.any(ok, axis=1, keepdims=True), score, worst)
        if self.k == 1:
            return self._best(fields, score, over_shape)
        else:
            ranked = jnp.moveaxis(score, 1, -1)
            _, best = jax.lax.top_k(ranked if self.maximize else -ranked, self.k)
        out = {"_best": best.astype(jnp.int32)}
        for name, value in fields.items():
            if name.startswith("_"):
                continue
            if not _depends_on_over(value, n_over):
                out[name] = _drop_over(value, n_over)[..., None]
                continue
            flat = jnp.moveaxis(_flat_over(value, over_shape), 1, -1)  # (P, *kept, R)
            shape = jnp.broadcast_shapes(flat.shape[:-1], best.shape[:-1])
            flat = jnp.broadcast_to(flat, (*shape, size))
            index = jnp.broadcast_to(best, (*shape, best.shape[-1]))
            out[name] = jnp.take_along_axis(flat, index, axis=-1)
        return out

    def extra(self) -> int:
        return self.k

    def _best(self, fields: dict, score, over_shape: tuple[int, ...]) -> dict:
        """``k = 1``: one pass over the group keeping the running best and the fields
        there (a variadic arg-max reduction and a gather are several times slower on a
        CPU, and the objective's best value needs no gather)."""
        n_over, size = len(over_shape), math.prod(over_shape)
        others = {
            name: _flat_over(value, over_shape)
            for name, value in fields.items()
            if not name.startswith("_")
            and name != self.objective
            and _depends_on_over(value, n_over)
        }
        better = jnp.greater if self.maximize else jnp.less

        def step(carry, r):
            best, index, values = carry
            candidate = jax.lax.dynamic_index_in_dim(score, r, axis=1, keepdims=False)
            wins = better(candidate, best)
            values = {
                name: jnp.where(
                    wins,
                    jax.lax.dynamic_index_in_dim(flat, r, axis=1, keepdims=False),
                    values[name],
                )
                for name, flat in others.items()
            }
            return (jnp.where(wins, candidate, best), jnp.where(wins, r, index), values), None

        first = {
            name: jnp.broadcast_to(flat[:, 0], _result_shape(flat, score))
            for name, flat in others.items()
        }
        carry = (score[:, 0], jnp.zeros(score[:, 0].shape, jnp.int32), first)
        if size <= _UNROLL:  # straight-line code: XLA fuses the whole pass
            for r in range(1, size):
                carry, _ = step(carry, r)
        else:
            carry, _ = jax.lax.scan(step, carry, jnp.arange(1, size, dtype=jnp.int32))
        best, index, values = carry
        out = {"_best": index[..., None]}
        for name, value in fields.items():
            if name.startswith("_"):
                continue
            if name == self.objective:
                out[name] = best[..., None]
            elif name in values:
                out[name] = values[name][..., None]
            else:
                out[name] = _drop_over(value, n_over)[..., None]
        return out


@dataclasses.dataclass(frozen=True)
class Quantiles:
    """Quantiles of every numeric report field over each group.

    Rows: one per group and quantile, with a ``quantile`` column. Bound and ``fits``
    columns have no quantiles.

    Args:
        over: axis name(s) forming each group.
        q: quantiles in [0, 1], e.g. ``(0.1, 0.5, 0.9)``; linear interpolation between
            points, as ``numpy.quantile``'s default.

    Examples:
        >>> import specsim
        >>> frame = specsim.sweep(batch=[1, 64], alpha=[0.6, 0.7, 0.8, 0.9],
        ...                       columns=["speedup"], reduce=specsim.Quantiles("alpha", [0.5]))
        >>> len(frame), list(frame.columns)[-2:]
        (2, ['quantile', 'speedup'])
    """

    over: str | Sequence[str]
    q: Sequence[float] = (0.1, 0.5, 0.9)

    def __post_init__(self):
        object.__setattr__(self, "over", _axis_names(self.over))
        q = np.atleast_1d(np.asarray(self.q, dtype=float))
        if q.ndim != 1 or q.size == 0 or not np.all((q >= 0) & (q <= 1)):
            raise ValueError(f"q: give quantiles in [0, 1], got {self.q!r}")
        object.__setattr__(self, "q", tuple(float(v) for v in q))

    def reduce(self, fields: dict, over_shape: tuple[int, ...]) -> dict:
        n_over = len(over_shape)
        q = jnp.asarray(self.q, jnp.float32)
        out = {}
        for name, value in fields.items():
            if not _depends_on_over(value, n_over):
                out[name] = _drop_over(value, n_over)[..., None]
                continue
            quantiles = jnp.quantile(_flat_over(value, over_shape), q, axis=1)  # (Q, P, *kept)
            out[name] = jnp.moveaxis(quantiles, 0, -1)
        return out

    def extra(self) -> int:
        return len(self.q)


@dataclasses.dataclass(frozen=True)
class Histogram:
    """Counts of one report field in fixed bins over each group.

    Rows: one per group and bin, with ``bin_start``, ``bin_stop`` and ``count``
    columns. Bins are ``[edges[i], edges[i + 1])``, the last one closed, as in
    ``numpy.histogram``; values outside every bin are not counted. Edges are rounded to
    float32, the precision of the report.

    Args:
        over: axis name(s) forming each group.
        edges: increasing bin edges (at least two).
        field: report field counted.

    Examples:
        >>> import specsim
        >>> frame = specsim.sweep(batch=[1, 64], gamma=range(9),
        ...                       reduce=specsim.Histogram("gamma", [0, 0.5, 2, 4], "speedup"))
        >>> frame["count"].tolist()
        [0, 2, 7, 0, 4, 5]
    """

    over: str | Sequence[str]
    edges: Sequence[float]
    field: str = "tokens_per_s"

    def __post_init__(self):
        object.__setattr__(self, "over", _axis_names(self.over))
        try:
            edges = np.asarray(self.edges, dtype=np.float32)
        except (TypeError, ValueError):
            raise ValueError(f"edges: give increasing numbers, got {self.edges!r}") from None
        if (
            edges.ndim != 1
            or edges.size < 2
            or not np.all(np.isfinite(edges))
            or not np.all(np.diff(edges) > 0)
        ):
            raise ValueError(
                f"edges: give at least two finite, strictly increasing numbers (float32), "
                f"got {self.edges!r}"
            )
        object.__setattr__(self, "edges", tuple(float(e) for e in edges))

    def reduce(self, fields: dict, over_shape: tuple[int, ...]) -> dict:
        value = fields[self.field]
        edges = jnp.asarray(self.edges, jnp.float32)
        n_bins = len(self.edges) - 1
        flat = _flat_over(value, over_shape)  # (P, R, *kept)
        index = jnp.searchsorted(edges, flat, side="right") - 1
        index = jnp.where(flat == edges[-1], n_bins - 1, index)  # the last bin is closed
        inside = (flat >= edges[0]) & (flat <= edges[-1])
        bins = jnp.arange(n_bins, dtype=index.dtype).reshape((1,) * index.ndim + (n_bins,))
        hits = inside[..., None] & (index[..., None] == bins)  # (P, R, *kept, B)
        return {"count": jnp.sum(hits, axis=1, dtype=jnp.int32)}

    def extra(self) -> int:
        return len(self.edges) - 1


Reduction = TopK | Quantiles | Histogram


# Groups up to this size are reduced by unrolled code, larger ones by a scan.
_UNROLL = 64


def _result_shape(flat, score) -> tuple[int, ...]:
    """Shape of one slice of ``flat`` broadcast against one slice of ``score``."""
    return jnp.broadcast_shapes(flat[:, 0].shape, score[:, 0].shape)


def _flat_over(value, over_shape: tuple[int, ...]):
    """``(P, *over, *kept)`` -> ``(P, R, *kept)``, broadcast over the whole group."""
    n_over = len(over_shape)
    full = (value.shape[0], *over_shape, *value.shape[1 + n_over :])
    flat = (value.shape[0], math.prod(over_shape), *value.shape[1 + n_over :])
    return jnp.broadcast_to(value, full).reshape(flat)


def _depends_on_over(value, n_over: int) -> bool:
    return any(size != 1 for size in value.shape[1 : 1 + n_over])


def _drop_over(value, n_over: int):
    return value.reshape((value.shape[0], *value.shape[1 + n_over :]))
