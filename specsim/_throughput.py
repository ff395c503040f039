"""Throughput of speculative decoding: one differentiable function of pytrees.

One iteration = the speculator's proposal (``gamma`` draft decode steps for a draft
model's chain, the first over two tokens per sequence; one pass per depth for a tree; one
pass of Medusa heads; a host-side n-gram lookup) + one target pass over the verified
tokens (``gamma + 1``, or a tree's nodes + 1 under a tree mask) + a fixed speculation
overhead; it yields the speculator's expected tokens per sequence. Step times depend on
the KV-cache length, which grows over the generation, so they are averaged over the
context with Gauss-Legendre quadrature (exact for the piecewise-linear dependence inside
each regime).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from ._cost import STEP_BOUND_NAMES, memory_footprint, step_time
from ._deployment import Deployment, check_draft, check_gamma
from ._quadrature import gauss_legendre, mean_step
from ._workload import Workload
from .hardware import HardwareSpec
from .hardware._roofline import check_smooth
from .models import TransformerSpec
from .speculators import _protocol as _speculators

QUADRATURE_NODES = 8
# Beyond a few dozen nodes the quadrature is exact to float32 anyway; more only costs memory.
MAX_QUADRATURE_NODES = 64

__all__ = [
    "STEP_BOUND_NAMES",
    "ThroughputReport",
    "check_speculation",
    "crossover_batch",
    "predict",
    "throughput",
]


@struct.dataclass
class ThroughputReport:
    """Speculative decoding against plain decoding of the same target on the same chips.

    Times are averages over the generation (context from prompt to prompt + generation).

    Attributes:
        tokens_per_s: decode-phase throughput with speculation, tokens/s (all sequences).
        baseline_tokens_per_s: plain target decoding, tokens/s.
        speedup: ``tokens_per_s / baseline_tokens_per_s``.
        expected_tokens_per_step: tokens emitted per sequence per iteration.
        acceptance_rate: per-token acceptance alpha (top-1 rate for trees).
        gamma: draft tokens proposed per iteration (a tree's node count).
        draft_step_s: one proposal pass over one token per sequence (a draft model's
            decode step), s.
        verify_step_s: one target pass over the verified tokens, s.
        target_step_s: one plain target decode step, s.
        iteration_s: ``proposal_s + verify_step_s + speculation_overhead_s``
            (for a draft model's chain ``proposal_s = gamma * draft_step_s`` plus
            ``min(gamma, 1)`` times what the first pass's second token adds: the
            draft's last proposal, refed).
        speculation_overhead_s: fixed per-iteration cost of speculating, s.
        cost_ratio: ``draft_step_s / target_step_s`` (Leviathan et al.'s c).
        draft_bound, verify_bound, target_bound: index into ``STEP_BOUND_NAMES``.
        prefill_s: prompt prefill by the target (and the draft when speculating), s.
        request_latency_s: prefill plus generation with speculation, s.
        baseline_request_latency_s: the same with plain decoding, s.
        memory_per_chip_bytes: weights and KV caches of the target and the speculator
            on one chip.
        fits: whether that fits in one chip's HBM.
        proposal_s: drafting time per iteration (all proposal passes), s.
        verified_tokens: tokens per sequence in the verification pass (``gamma + 1``).
    """

    tokens_per_s: Any
    baseline_tokens_per_s: Any
    speedup: Any
    expected_tokens_per_step: Any
    acceptance_rate: Any
    gamma: Any
    draft_step_s: Any
    verify_step_s: Any
    target_step_s: Any
    iteration_s: Any
    speculation_overhead_s: Any
    cost_ratio: Any
    draft_bound: Any
    verify_bound: Any
    target_bound: Any
    prefill_s: Any
    request_latency_s: Any
    baseline_request_latency_s: Any
    memory_per_chip_bytes: Any
    fits: Any
    proposal_s: Any
    verified_tokens: Any

    def bound_names(self) -> dict[str, str]:
        """The binding bound of each phase as text (for a single, unbatched report)."""
        return {
            phase: STEP_BOUND_NAMES[int(getattr(self, f"{phase}_bound"))]
            for phase in ("draft", "verify", "target")
        }

    def to_dict(self) -> dict[str, Any]:
        """Plain Python numbers keyed by field name (bounds as text), for JSON/tables."""
        out: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            value = np.asarray(getattr(self, name))
            if name.endswith("_bound"):
                out[name] = STEP_BOUND_NAMES[int(value)]
            elif value.dtype == bool:
                out[name] = bool(value)
            else:
                out[name] = float(value)
        return out


def speculation_overhead_s(deployment: Deployment, speculator, batch, verify_tokens, speculating):
    """Time one speculative iteration adds beyond drafting and verification passes, s.

    The host work (``deployment.speculation_overhead_s`` plus the runtime's
    ``speculation_overhead_s``, ramped in by ``speculating`` in [0, 1]) and rejection
    sampling, which reads back the distributions over the vocabulary of the tokens each
    sequence verified beyond the first (the target's own are priced with its verification
    pass); drafts copied from the context (n-gram) carry none. Traced; shared by `predict`
    and ``specsim.serving.engine_step_time``.
    """
    d = deployment
    runtime, hardware = d.resolved_runtime(), d.hardware
    sampled = 1.0 if _speculators.sampled_proposals(speculator) else 0.0
    rejection_s = (
        sampled
        * runtime.sampling_bytes_per_logit
        * batch
        * (verify_tokens - 1.0)
        * d.target.vocab
        / (hardware.hbm_bytes_per_s * hardware.memory_efficiency)
    )
    return (d.speculation_overhead_s + runtime.speculation_overhead_s) * speculating + rejection_s


@functools.partial(jax.jit, static_argnames=("smooth", "quadrature_nodes"))
def _throughput(
    deployment: Deployment,
    speculator,
    shape,
    smooth: float | None = None,
    quadrature_nodes: int = QUADRATURE_NODES,
) -> ThroughputReport:
    """The jitted core: one call path for throughput, optimiser, schedule and sweep.

    ``speculator`` is any registered speculator (a `TransformerSpec` is a draft model);
    ``shape`` is a chain's real-valued gamma or a token tree. Nothing is validated here
    (inputs may be traced); public entry points validate concrete inputs first.
    """
    d = deployment
    target, hardware, workload = d.target, d.hardware, d.workload
    nodes, weights = gauss_legendre(quadrature_nodes)
    nodes = jnp.asarray(nodes, jnp.float32)
    weights = jnp.asarray(weights, jnp.float32)
    batch = workload.batch
    contexts = workload.prompt_tokens + nodes * workload.generate_tokens
    gamma = _speculators.draft_tokens(shape)
    tp = d.tp
    runtime = d.resolved_runtime()

    proposal = _speculators.proposal(speculator, d, shape, contexts, weights, smooth)
    verify_tokens, extra_context = _speculators.verification(speculator, shape)
    verify_contexts = contexts if extra_context is None else contexts + extra_context
    verify_step = mean_step(
        target, hardware, batch, verify_tokens, verify_contexts, weights, tp, smooth, runtime
    )
    target_step = mean_step(target, hardware, batch, 1.0, contexts, weights, tp, smooth, runtime)

    # Speculation costs nothing at gamma = 0 (plain decoding); its fixed overhead ramps in.
    speculating = jnp.clip(gamma, 0.0, 1.0)
    overhead_s = speculation_overhead_s(d, speculator, batch, verify_tokens, speculating)
    iteration_s = proposal.time_s + verify_step.time_s + overhead_s

    tokens_per_step = _speculators.emitted_tokens(speculator, d, shape)
    alpha = _speculators.report_acceptance_rate(speculator, d)

    tokens_per_s = batch * tokens_per_step / iteration_s
    baseline_tokens_per_s = batch / target_step.time_s

    prompt = workload.prompt_tokens
    target_prefill = step_time(target, hardware, batch, prompt, 0.0, tp, smooth, runtime, 1.0)
    prefill_s = target_prefill.time_s + speculating * _speculators.prefill_s(speculator, d, smooth)
    generate = workload.generate_tokens
    request_latency_s = prefill_s + generate / tokens_per_step * iteration_s
    baseline_request_latency_s = target_prefill.time_s + generate * target_step.time_s

    final_context = workload.final_context + gamma
    target_memory = memory_footprint(target, batch, final_context).total_bytes / tp
    speculator_memory = _speculators.memory_bytes(speculator, d, batch, final_context)
    memory = target_memory + speculating * speculator_memory
    return ThroughputReport(
        tokens_per_s=tokens_per_s,
        baseline_tokens_per_s=baseline_tokens_per_s,
        speedup=tokens_per_s / baseline_tokens_per_s,
        expected_tokens_per_step=tokens_per_step,
        acceptance_rate=alpha,
        gamma=gamma,
        draft_step_s=proposal.step_s,
        verify_step_s=verify_step.time_s,
        target_step_s=target_step.time_s,
        iteration_s=iteration_s,
        speculation_overhead_s=overhead_s,
        cost_ratio=proposal.step_s / target_step.time_s,
        draft_bound=proposal.bound,
        verify_bound=verify_step.bound,
        target_bound=target_step.bound,
        prefill_s=prefill_s,
        request_latency_s=request_latency_s,
        baseline_request_latency_s=baseline_request_latency_s,
        memory_per_chip_bytes=memory,
        fits=memory <= hardware.hbm_capacity_bytes,
        proposal_s=proposal.time_s,
        verified_tokens=verify_tokens,
    )


def predict(
    deployment: Deployment,
    speculator,
    gamma,
    *,
    smooth: float | None = None,
    quadrature_nodes: int = QUADRATURE_NODES,
) -> ThroughputReport:
    """Tokens per second of ``speculator`` proposing ``gamma`` tokens in a ``deployment``.

    The deployment-first form of `throughput`: what is fixed (target, chip, workload,
    acceptance, parallelism) in one pytree, what is chosen (the speculator and the
    lookahead or tree) beside it. Jitted; every leaf is traced, so nothing recompiles
    when values change, and the report is differentiable in all of them.

    Args:
        deployment: a `Deployment`.
        speculator: what proposes tokens: a draft model (`TransformerSpec`) or a
            speculator of `specsim.speculators` (EAGLE, Medusa, MTP, n-gram,
            self-speculation).
        gamma: a chain's draft tokens per iteration, a real number >= 0 (0 = plain
            decoding), or a `TokenTree` / `DynamicTree` (needs `TreeAcceptance`).
        smooth: ``None`` for the spec's roofline (the hard max unless calibrated), or a
            roofline sharpness p (e.g. 16) to smooth at least this much for gradients:
            p = min(``hardware.roofline_sharpness``, ``smooth``).
        quadrature_nodes: Gauss-Legendre nodes over the growing context.

    The software stack is the deployment's (``Deployment.create(..., runtime=...)``).

    Returns:
        ``ThroughputReport``.

    Raises:
        ValueError: an invalid deployment, speculator or tree, gamma < 0, or a tree without
            `TreeAcceptance`.

    Examples:
        >>> import specsim
        >>> d = specsim.Deployment.create("llama-2-7b", "a100-80gb", acceptance=0.8)
        >>> report = specsim.predict(d, specsim.models.get("llama-68m"), gamma=4)
        >>> bool(report.speedup > 1)
        True
        >>> tree_acc = specsim.TreeAcceptance.from_top1([0.8, 0.75, 0.7, 0.7], ranks=4)
        >>> d = d.replace(acceptance=tree_acc)
        >>> eagle = specsim.speculators.Eagle.create()
        >>> report = specsim.predict(d, eagle, specsim.DynamicTree.create([3, 4, 4, 2]))
        >>> float(report.gamma), bool(report.speedup > 2)
        (13.0, True)
    """
    if not isinstance(deployment, Deployment):
        raise ValueError(f"deployment must be a Deployment, got {type(deployment).__name__}")
    deployment.validate()
    check_speculation(deployment, speculator, gamma)
    return _evaluate(
        deployment, speculator, gamma, _checked_smooth(smooth), _checked_nodes(quadrature_nodes)
    )


def check_speculation(deployment: Deployment, speculator, gamma) -> None:
    """Validates a speculator and its chain or tree against a validated deployment: a
    draft model's split over ``draft_tp`` chips, a chain's gamma in [0, MAX_GAMMA]."""
    _speculators.validate_speculation(speculator, deployment, gamma)
    if isinstance(speculator, TransformerSpec):
        check_draft(speculator, deployment)
    if not _speculators.is_tree(gamma):
        check_gamma(gamma)


def throughput(
    target: TransformerSpec,
    draft: TransformerSpec,
    hardware: HardwareSpec,
    workload: Workload,
    gamma,
    acceptance,
    tp=1.0,
    draft_tp=None,
    speculation_overhead_s=0.0,
    smooth: float | None = None,
    quadrature_nodes: int = QUADRATURE_NODES,
    runtime=None,
) -> ThroughputReport:
    """Tokens per second of speculative decoding, and everything behind the number.

    A thin wrapper over `predict` (``Deployment`` built from the arguments). Jitted;
    every argument except ``smooth`` and ``quadrature_nodes`` is traced, so changing
    hardware, sizes, workload, gamma or acceptance does not recompile, and the report is
    differentiable in all of them. Concrete inputs are validated here (clear
    ``ValueError``); traced inputs (inside the caller's ``jit``/``vmap``/``grad``) are not.

    Args:
        target: the model being served.
        draft: the draft model proposing tokens, or any speculator (see `predict`).
        hardware: one chip (both models share the ``tp`` chips).
        workload: batch, prompt and generation lengths.
        gamma: draft tokens per iteration, a real number >= 0 (0 = plain decoding), or a
            token tree (see `predict`).
        acceptance: ``ConstantAcceptance``, ``PositionalAcceptance``, ``SDSLAcceptance`` or
            ``TreeAcceptance``; a number in (0, 1) means a constant rate, a 1-D sequence
            per-position rates.
        tp: tensor-parallel degree of the target.
        draft_tp: tensor-parallel degree of the draft (defaults to ``tp``).
        speculation_overhead_s: fixed cost per iteration (sampling, bookkeeping), s.
        smooth: ``None`` for the spec's roofline (the hard max unless calibrated), or a
            roofline sharpness p (e.g. 16) to smooth at least this much for gradients:
            p = min(``hardware.roofline_sharpness``, ``smooth``).
        quadrature_nodes: Gauss-Legendre nodes over the growing context.
        runtime: the software stack, a `RuntimeProfile` or a runtime catalogue name
            (default: the chip's own overheads, ``"default"``).

    Returns:
        ``ThroughputReport``.

    Raises:
        ValueError: gamma < 0, a non-positive size or tp, or acceptance outside (0, 1).

    Examples:
        >>> import specsim
        >>> from specsim import hardware, models
        >>> report = specsim.throughput(
        ...     models.get("llama-2-7b"), models.get("llama-68m"), hardware.get("a100-80gb"),
        ...     specsim.Workload.create(batch=1, prompt_tokens=128, generate_tokens=128),
        ...     gamma=4, acceptance=0.8)
        >>> bool(report.speedup > 1)
        True
    """
    deployment = _deployment(
        target, hardware, workload, acceptance, tp, draft_tp, speculation_overhead_s, runtime
    )
    check_speculation(deployment, draft, gamma)
    return _evaluate(
        deployment, draft, gamma, _checked_smooth(smooth), _checked_nodes(quadrature_nodes)
    )


def _deployment(
    target, hardware, workload, acceptance, tp, draft_tp, overhead, runtime=None
) -> Deployment:
    """A validated `Deployment` from `throughput`'s positional arguments (objects only)."""
    for what, value, kind in (
        ("target", target, TransformerSpec),
        ("hardware", hardware, HardwareSpec),
        ("workload", workload, Workload),
    ):
        if not isinstance(value, kind):
            raise ValueError(f"{what} must be a {kind.__name__}, got {type(value).__name__}")
    return Deployment.create(
        target,
        hardware,
        workload,
        acceptance,
        tp=tp,
        draft_tp=draft_tp,
        speculation_overhead_s=overhead,
        runtime=runtime,
    )


def _checked_smooth(smooth) -> float | None:
    """``None`` or a finite roofline sharpness p > 0 (p < 1: compute and memory interfere)."""
    return check_smooth(smooth)


def _checked_report(report: ThroughputReport) -> ThroughputReport:
    """``report`` if every concrete field is finite, else a ``ValueError`` naming the first
    field that is not (inputs valid one by one can still overflow float32 together).

    A report of traced values (inside the caller's ``jit``, ``vmap`` or ``grad``) passes
    unchecked: there NaN is how an invalid input shows, and the caller reports it.
    """
    leaves = jax.tree.leaves(report)
    if any(isinstance(leaf, jax.core.Tracer) for leaf in leaves):
        return report
    # One check of every number at once (a report of scalars, or of arrays of one shape):
    # field by field costs more than the compiled kernel of a single call. Bounds and
    # ``fits`` are always finite, so this passes exactly when the loop below would.
    try:
        values = np.array(leaves, np.float64)
    except (TypeError, ValueError):  # fields of different shapes
        values = None
    if values is not None and np.isfinite(values).all():
        return report
    for name in ThroughputReport.__dataclass_fields__:
        value = np.asarray(getattr(report, name))
        if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
            bad = value.ravel()[~np.isfinite(value.ravel())][0]
            raise ValueError(
                f"{name} {bad}: not finite in float32 at these inputs (a size, a token count "
                "or a rate too large for the others); valid: smaller batch, prompt or "
                "generated tokens, or a finite smooth"
            )
    return report


def _checked_nodes(quadrature_nodes) -> int:
    if (
        isinstance(quadrature_nodes, bool)
        or not isinstance(quadrature_nodes, int | np.integer)
        or not 1 <= quadrature_nodes <= MAX_QUADRATURE_NODES
    ):
        raise ValueError(
            f"quadrature_nodes must be a whole number in 1..{MAX_QUADRATURE_NODES}, "
            f"got {quadrature_nodes!r}"
        )
    return int(quadrature_nodes)


# --------------------------------------------------------------------------- one call, packed
#
# A jitted call pays per argument leaf and per result leaf (a deployment and a draft
# are ~60 leaves, a report 22): a few hundred µs on a CPU, several times the arithmetic.
# For concrete inputs the arguments travel as two vectors (floats; integers such as a
# token tree's parent indices) and the report comes back as one.


@dataclasses.dataclass(frozen=True)
class _Layout:
    """Static structure of packed ``(deployment, speculator, shape)``: pytree, leaf
    shapes and kinds (``"f"`` float, ``"i"`` integer, ``"b"`` bool)."""

    treedef: Any
    shapes: tuple[tuple[int, ...], ...]
    kinds: str
    # Tree definitions of two dataclasses with the same fields compare equal; their
    # hashes differ, so the hash keeps such layouts apart as static arguments.
    treedef_hash: int

    def unpack(self, floats, integers):
        leaves, f, i = [], 0, 0
        for shape, kind in zip(self.shapes, self.kinds, strict=True):
            size = _size(shape)
            if kind == "f":
                leaves.append(floats[f : f + size].reshape(shape))
                f += size
            else:
                value = integers[i : i + size].reshape(shape)
                leaves.append(value.astype(bool) if kind == "b" else value)
                i += size
        return jax.tree.unflatten(self.treedef, leaves)


def _kind(leaf) -> str | None:
    """``"f"``, ``"i"`` or ``"b"`` for a concrete numeric leaf; ``None`` for anything else
    (a tracer, a string), which the general path handles."""
    kind = type(leaf)
    if kind is float or kind is int:  # a Python number is a real-valued leaf (gamma=4)
        return "f"
    if kind is bool:
        return "b"
    if kind is np.ndarray:
        return _ARRAY_KINDS.get(leaf.dtype.kind)
    dtype = getattr(leaf, "dtype", None)
    if dtype is None or isinstance(leaf, jax.core.Tracer):
        return None
    return _ARRAY_KINDS.get(np.dtype(dtype).kind)


_ARRAY_KINDS = {"f": "f", "i": "i", "u": "i", "b": "b"}


def _pack(args) -> tuple[np.ndarray, np.ndarray, _Layout] | None:
    """Concrete ``args`` as a float32 and an int32 vector and their layout; ``None`` when
    a leaf is traced or not a number (or float64 is on): the general path handles those."""
    if jax.config.jax_enable_x64:
        return None
    leaves, treedef = jax.tree.flatten(args)
    kinds = "".join([_kind(leaf) or "?" for leaf in leaves])
    if "?" in kinds:
        return None
    if "i" not in kinds and "b" not in kinds:
        try:
            floats = np.array(leaves, np.float32)
        except (TypeError, ValueError):
            floats = None
        if floats is not None and floats.ndim == 1:  # all scalars: the common case
            return floats, _NO_INTEGERS, _scalar_layout(treedef, kinds)
    arrays = [np.asarray(leaf) for leaf in leaves]
    floats = [a.astype(np.float32).ravel() for a, k in zip(arrays, kinds, strict=True) if k == "f"]
    integers = [a.astype(np.int32).ravel() for a, k in zip(arrays, kinds, strict=True) if k != "f"]
    return (
        np.concatenate(floats) if floats else np.zeros(0, np.float32),
        np.concatenate(integers) if integers else _NO_INTEGERS,
        _Layout(treedef, tuple(a.shape for a in arrays), kinds, hash(treedef)),
    )


_NO_INTEGERS = np.zeros(0, np.int32)


def _scalar_layout(treedef, kinds: str) -> _Layout:
    return _scalar_layouts(treedef, hash(treedef), kinds)


@functools.lru_cache(maxsize=64)
def _scalar_layouts(treedef, treedef_hash: int, kinds: str) -> _Layout:
    return _Layout(treedef, ((),) * len(kinds), kinds, treedef_hash)


@functools.partial(jax.jit, static_argnames=("layout", "smooth", "quadrature_nodes"))
def _throughput_packed(floats, integers, layout: _Layout, smooth, quadrature_nodes):
    """`_throughput` of packed arguments, its report packed into one float32 vector."""
    deployment, speculator, shape = layout.unpack(floats, integers)
    report = _throughput(deployment, speculator, shape, smooth, quadrature_nodes)
    return jnp.concatenate([jnp.ravel(x).astype(jnp.float32) for x in jax.tree.leaves(report)])


@dataclasses.dataclass(frozen=True)
class _ReportStructure:
    """Shapes and dtypes of the report leaves, in field order (packed result layout)."""

    shapes: tuple[tuple[int, ...], ...]
    dtypes: tuple[np.dtype, ...]

    @functools.cached_property
    def scalar_casts(self) -> tuple[tuple[int, Any], ...] | None:
        """For an all-scalar report: ``(index, type)`` of the fields that are not float32."""
        if any(self.shapes):
            return None
        return tuple((i, d.type) for i, d in enumerate(self.dtypes) if d != np.float32)


@functools.lru_cache(maxsize=64)
def _report_structure(layout: _Layout, smooth, quadrature_nodes) -> _ReportStructure:
    n_floats = sum(_size(s) for s, k in zip(layout.shapes, layout.kinds, strict=True) if k == "f")
    n_integers = sum(_size(s) for s, k in zip(layout.shapes, layout.kinds, strict=True) if k != "f")
    shapes = jax.eval_shape(
        lambda f, i: _throughput(*layout.unpack(f, i), smooth, quadrature_nodes),
        jax.ShapeDtypeStruct((n_floats,), jnp.float32),
        jax.ShapeDtypeStruct((n_integers,), jnp.int32),
    )
    leaves = [getattr(shapes, name) for name in ThroughputReport.__dataclass_fields__]
    return _ReportStructure(
        tuple(leaf.shape for leaf in leaves), tuple(np.dtype(leaf.dtype) for leaf in leaves)
    )


def _size(shape) -> int:
    return int(np.prod(shape))


def _unpack_report(values: np.ndarray, structure: _ReportStructure) -> ThroughputReport:
    """A `ThroughputReport` of NumPy values from the packed result vector."""
    casts = structure.scalar_casts
    if casts is not None:
        items = list(values)
        for i, kind in casts:
            items[i] = kind(items[i])
        return ThroughputReport(*items)
    items, offset = [], 0
    for shape, dtype in zip(structure.shapes, structure.dtypes, strict=True):
        size = _size(shape)
        items.append(values[offset : offset + size].reshape(shape).astype(dtype))
        offset += size
    return ThroughputReport(*items)


def _evaluate(deployment, speculator, shape, smooth, quadrature_nodes) -> ThroughputReport:
    """`_throughput` of validated inputs, its report checked (`_checked_report`): packed
    when the inputs are concrete, else direct."""
    packed = _pack((deployment, speculator, shape))
    if packed is None:
        return _checked_report(_throughput(deployment, speculator, shape, smooth, quadrature_nodes))
    floats, integers, layout = packed
    out = host_result(_throughput_packed(floats, integers, layout, smooth, quadrature_nodes))
    return _checked_packed_report(out, _report_structure(layout, smooth, quadrature_nodes))


def _checked_packed_report(values: np.ndarray, structure: _ReportStructure) -> ThroughputReport:
    """`_unpack_report`, refused as `_checked_report` refuses a report with a number that is
    not finite (one test of the vector; the field is named only on failure)."""
    report = _unpack_report(values, structure)
    if not np.isfinite(values).all():
        _checked_report(report)
    return report


# Polling for a single configuration's result, s: several times its kernel on a CPU.
# Only where the process may use two cores or more: on one, polling would hold the core
# the worker needs.
_USABLE_CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
_POLL_S = 500e-6 if (_USABLE_CORES or 1) > 1 else 0.0


def host_result(out) -> np.ndarray:
    """A small computation's result on the host, polled for up to ``_POLL_S`` before blocking.

    On a CPU, JAX runs a call XLA counts above 1,000 FLOPs on a worker thread (one
    configuration: ~6,900) and wakes a blocked caller when it ends; on an idle machine,
    a virtual one especially, that wake-up costs more than the ~20 µs kernel. A caller
    that polls is awake when the result arrives (on the 2-core CPU here an `Evaluator`
    call takes 64 µs instead of 115, see ``benchmarks/single_call.py``).
    """
    ready = getattr(out, "is_ready", None)  # (a NumPy array is already on the host)
    if ready is not None:
        deadline = time.perf_counter() + _POLL_S
        while not ready() and time.perf_counter() < deadline:
            pass
    return np.asarray(out)


_CROSSOVER_BATCHES = 2.0 ** (np.arange(0, 12 * 8 + 1) / 8.0)  # 1 .. 4096, 8 points per octave


@jax.jit
def _speedup_over_batches(deployment: Deployment, draft, gamma, batches):
    def at(batch):
        at_batch = deployment.replace(workload=deployment.workload.replace(batch=batch))
        return _throughput(at_batch, draft, gamma).speedup

    return jax.vmap(at)(batches)


def crossover_batch(
    target,
    draft,
    hardware,
    workload,
    gamma,
    acceptance,
    tp=1.0,
    draft_tp=None,
    speculation_overhead_s=0.0,
    runtime=None,
) -> float:
    """The batch size above which speculation stops paying (speedup < 1).

    Speedup is evaluated on a log grid of batch sizes from 1 to 4096 (eight per
    octave) and the first crossing of 1 is interpolated in log-batch. Returns
    ``inf`` if speculation pays on the whole grid and ``1.0`` if it never pays.
    The workload's own batch is ignored; ``runtime`` as in `throughput`.

    Examples:
        >>> import specsim
        >>> from specsim import hardware, models
        >>> b = specsim.crossover_batch(models.get("llama-2-7b"), models.get("llama-68m"),
        ...                             hardware.get("a100-80gb"), specsim.Workload.create(),
        ...                             4, specsim.ConstantAcceptance.create(0.6))
        >>> round(b)
        150
    """
    deployment = _deployment(
        target, hardware, workload, acceptance, tp, draft_tp, speculation_overhead_s, runtime
    )
    check_speculation(deployment, draft, gamma)
    batches = jnp.asarray(_CROSSOVER_BATCHES, jnp.float32)
    speedup = np.asarray(_speedup_over_batches(deployment, draft, gamma, batches))
    below = np.nonzero(speedup < 1.0)[0]
    if below.size == 0:
        return float("inf")
    i = int(below[0])
    if i == 0:
        return 1.0
    x0, x1 = np.log(_CROSSOVER_BATCHES[i - 1]), np.log(_CROSSOVER_BATCHES[i])
    y0, y1 = speedup[i - 1] - 1.0, speedup[i] - 1.0
    return float(np.exp(x0 + (x1 - x0) * y0 / (y0 - y1)))
