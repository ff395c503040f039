"""The jitted chunk kernel of a sweep: report fields at their own shapes, reduced on device.

A chunk is a contiguous range of *outer* grid points (gathered from the axis tables
by mixed-radix index arithmetic) times the full box of *inner* axes, evaluated as
nested ``vmap`` s. Every report field depends on a few axes only (the draft step not
on the target, alpha or gamma; the expected tokens per step only on alpha and gamma):
which ones is read once from the data flow of one grid point (`output_dependence`),
and each ``vmap`` returns a field unbatched along an axis it does not depend on. A
field is therefore computed, stored and transferred at its own size, with size-1
dimensions elsewhere, and broadcast only where rows are built (on the host, if ever).

Layout of every returned array: ``(points, *inner)`` with ``points`` the chunk's outer
points (or 1 for a field that depends on no outer axis) and ``inner`` the inner axes in
``vmap`` order, reduced axes first (size 1 where the field does not depend on them).
A reduction (`TopK`, `Quantiles`, `Histogram`) then replaces the reduced axes by one
trailing dimension (rank, quantile or bin) before anything leaves the device.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding

from ._acceptance import ConstantAcceptance, SDSLAcceptance
from ._cost import STEP_BOUND_NAMES
from ._dataflow import output_dependence
from ._deployment import Deployment
from ._feasibility import feasibility_code
from ._inline import inline_jits
from ._reduce import Reduction
from ._throughput import _throughput
from ._workload import Workload

__all__ = ["BOUND_COLUMNS", "Plan", "evaluate_chunk", "field_dependence", "outer_digits"]

BOUND_COLUMNS = ("draft_bound", "verify_bound", "target_bound")
assert len(STEP_BOUND_NAMES) < 128  # bounds travel as int8


@dataclasses.dataclass(frozen=True)
class Plan:
    """Static description of one compiled chunk kernel (hashable).

    Attributes:
        outer_sizes: lengths of the outer axes.
        outer_axes: names of the outer axes (gathered per point).
        inner_axes: names of the inner axes in ``vmap`` order, reduced axes first.
        n_over: how many leading inner axes a reduction removes (0: none).
        fields: report fields computed.
        dependence: ``(field, axes)`` pairs: the grid axes each field depends on.
        reduction: a `TopK`, `Quantiles` or `Histogram`, or ``None``.
        acceptance_kind: ``"constant"`` (alpha axis), ``"sdsl"`` or ``"fixed"``.
        smooth: ``None`` or the smooth-max sharpness.
        quadrature_nodes: Gauss-Legendre nodes over the context.
        sharding: of the ``points`` dimension over devices, or ``None`` on one device.
    """

    outer_sizes: tuple[int, ...]
    outer_axes: tuple[str, ...]
    inner_axes: tuple[str, ...]
    n_over: int
    fields: tuple[str, ...]
    dependence: tuple[tuple[str, frozenset], ...]
    reduction: Reduction | None
    acceptance_kind: str
    smooth: float | None
    quadrature_nodes: int
    sharding: NamedSharding | None

    def depends(self, field: str) -> frozenset:
        return dict(self.dependence)[field]


def point_fields(values: dict, constants: dict, acceptance_kind: str, fields, smooth, nodes):
    """Report fields of one grid point (``values``: one entry per axis)."""
    target = values["target"]
    if acceptance_kind == "constant":
        acceptance = ConstantAcceptance(alpha=values["alpha"])
    elif acceptance_kind == "sdsl":
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
    report = _throughput(deployment, values["draft"]["spec"], values["gamma"], smooth, nodes)
    out = {}
    for name in fields:
        if name == "feasibility":  # can the point be served at all (FEASIBILITY_NAMES)
            out[name] = feasibility_code(
                target["spec"],
                values["draft"]["spec"],
                deployment.tp,
                deployment.draft_tp,
                report.fits,
                shared_vocab=constants.get("shared_tokenizer", False),
                domain_chips=deployment.hardware.domain_chips(),
            )
            continue
        value = getattr(report, name)
        out[name] = value.astype(jnp.int8) if name in BOUND_COLUMNS else value
    return out


@functools.lru_cache(maxsize=32)
def _dependence(structure, acceptance_kind, fields, smooth, nodes, constants_key):
    example_values, constants = structure.examples()
    axis_of_leaf = [
        path[0].key for path, _ in jax.tree_util.tree_flatten_with_path(example_values)[0]
    ]
    dependence, out_tree = output_dependence(
        lambda v: point_fields(v, constants, acceptance_kind, fields, smooth, nodes),
        example_values,
    )
    names = jax.tree.unflatten(out_tree, list(range(len(dependence))))
    return tuple(
        (name, frozenset(axis_of_leaf[i] for i in dependence[names[name]])) for name in fields
    )


@dataclasses.dataclass(frozen=True)
class _TableStructure:
    """Hashable key of the axis tables' structure (shapes only), with example entries."""

    key: Any
    tables: Any = dataclasses.field(compare=False, hash=False)
    constants: Any = dataclasses.field(compare=False, hash=False)

    def examples(self):
        values = {name: jax.tree.map(lambda t: t[0], table) for name, table in self.tables.items()}
        return values, self.constants


def field_dependence(tables: dict, constants: dict, acceptance_kind, fields, smooth, nodes):
    """``(field, axes)`` pairs: the grid axes each report field depends on."""

    def key(tree):
        leaves, treedef = jax.tree.flatten(tree)
        return treedef, hash(treedef), tuple(getattr(x, "shape", ()) for x in leaves)

    structure = _TableStructure(key(tables), tables, constants)
    return _dependence(structure, acceptance_kind, tuple(fields), smooth, nodes, key(constants))


def outer_digits(offsets, start_digits, sizes: tuple[int, ...]) -> list:
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
def evaluate_chunk(offsets, start_digits, tables, constants, plan: Plan) -> dict:
    """Report fields of ``len(offsets)`` outer points times the full inner box.

    Returns:
        A dict of arrays ``(points or 1, *inner or 1)``; after a reduction ``(points or
        1, *kept inner or 1, extra)``, with ``"_best"`` (`TopK`) holding the flat index
        within the group of each kept point.
    """
    digits = outer_digits(offsets, start_digits, plan.outer_sizes)
    outer = {
        name: jax.tree.map(lambda t, d=d: t[d], tables[name])
        for name, d in zip(plan.outer_axes, digits, strict=True)
    }
    dependence = dict(plan.dependence)

    # Traced once and replayed flat: batching nested jit calls at every vmap level
    # took 5.6 s of a 4-axis sweep's 8.2 s first call, 2.0 s flat.
    point = inline_jits(
        functools.partial(
            point_fields,
            acceptance_kind=plan.acceptance_kind,
            fields=plan.fields,
            smooth=plan.smooth,
            nodes=plan.quadrature_nodes,
        )
    )

    def fn(values):
        return point(values, constants)

    for name in reversed(plan.inner_axes):
        out_axes = {f: 0 if name in dependence[f] else None for f in plan.fields}
        fn = _vmap_over(fn, name, tables[name], out_axes)
    outer_names = set(plan.outer_axes)
    out_axes = {f: 0 if dependence[f] & outer_names else None for f in plan.fields}
    fields = jax.vmap(fn, axis_size=offsets.shape[0], out_axes=out_axes)(outer)
    fields = {name: _keepdims(value, dependence[name], plan) for name, value in fields.items()}
    if plan.reduction is not None:
        sizes = {name: tables[name] for name in plan.inner_axes[: plan.n_over]}
        over_shape = tuple(_axis_size(table) for table in sizes.values())
        fields = plan.reduction.reduce(fields, over_shape)
    if plan.sharding is not None:
        fields = {
            name: jax.lax.with_sharding_constraint(value, plan.sharding)
            if value.shape[0] == offsets.shape[0]
            else value
            for name, value in fields.items()
        }
    return fields


def _axis_size(table) -> int:
    return jax.tree.leaves(table)[0].shape[0]


def _vmap_over(fn, name: str, table, out_axes):
    """``fn(values)`` vmapped over the full table of axis ``name``."""

    def batched(values):
        return jax.vmap(lambda entry: fn({**values, name: entry}), out_axes=out_axes)(table)

    return batched


def _keepdims(value, axes: frozenset, plan: Plan):
    """``value`` with a size-1 dimension for each axis of the chunk it does not depend on."""
    shape = [value.shape[0] if axes & set(plan.outer_axes) else 1]
    k = 1 if axes & set(plan.outer_axes) else 0
    for name in plan.inner_axes:
        if name in axes:
            shape.append(value.shape[k])
            k += 1
        else:
            shape.append(1)
    return value.reshape(shape)
