"""Gradient-based draft search: `optimize_draft`, its batched form, and the grid certificate.

The question: for this target, on this hardware and workload, which draft (depth, width,
training tokens) and which lookahead gamma give the most tokens per second, and what will
they deliver? The answer comes from gradient descent through the differentiable throughput
model, in three steps, all inside one ``jax.jit``:

1. **Search.** Unconstrained variables ``z`` map onto the bounded region (`DraftBounds`) by
   sigmoids in log space: ``log d_model`` over its feasible range, then ``log n_layers`` over
   the range the aspect-ratio bound allows for that width, then gamma linearly. Every ``z`` is
   feasible by construction, so any optax optimizer works unmodified. The objective is
   ``log tokens/s`` (scale-free) under the smooth roofline (``smooth=16``), minus a smooth
   penalty once the weights and KV caches of target and draft exceed the chip's HBM.
   ``restarts`` random starts are ``vmap``-ed and the steps run in ``lax.scan``.
2. **Rounding.** Around each restart's continuous optimum, the neighbouring buildable points
   (floor/ceil layers x the nearest multiples of the width step, clipped into the aspect range
   of that layer count, x gamma from ``floor - 1`` to ``ceil + 1``) are scored with the exact
   roofline; infeasible ones (outside bounds, out of memory) are dropped and the best wins.
3. **Sensitivities.** ``jax.grad`` of the exact tokens/s at the chosen point with respect to
   every `HardwareSpec` leaf, reported as elasticities ``d log tokens/s / d log leaf``: an
   elasticity of 0.6 for ``hbm_bytes_per_s`` means 10% more bandwidth buys about 6% more
   tokens/s (first order, with the draft and gamma held fixed).

Speedup over plain decoding divides tokens/s by a baseline that does not depend on the draft
or gamma, so maximising either gives the same answer.

`optimize_scenarios` runs the same compiled search over many scenarios at once (``vmap``
over stacked scenario pytrees, on whatever device JAX has). `grid_search` /
`grid_search_scenarios` evaluate every buildable point in the same bounds (exhaustively,
vmapped in chunks): the certificate the tests hold the optimiser to.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from . import _executable_cache
from ._acceptance import SDSLAcceptance
from ._cost import memory_footprint, target_fit
from ._deployment import DEPLOYMENT_FIELDS, Deployment, check_draft, check_gamma
from ._draft import (
    DraftBounds,
    DraftParams,
    DraftTemplate,
    build_draft,
    buildable_draft,
    buildable_points,
    gamma_values,
    train_tokens_for,
)
from ._fast_jit import _backend_jit
from ._inline import inline_jits
from ._throughput import ThroughputReport, _throughput
from ._workload import Workload
from .hardware import DEFAULT_SMOOTH as ROOFLINE_DEFAULT_SMOOTH
from .hardware import HardwareSpec
from .hardware._roofline import check_smooth
from .models import TransformerSpec

__all__ = [
    "DEFAULT_LEARNING_RATE",
    "DEFAULT_OPTIMIZER",
    "DEFAULT_RESTARTS",
    "DEFAULT_SMOOTH",
    "DEFAULT_STEPS",
    "GridResult",
    "OptimizeResult",
    "Scenario",
    "grid_search",
    "grid_search_scenarios",
    "optimize_draft",
    "optimize_scenarios",
]

# Adam on the unconstrained variables: a step of ~0.08 in z moves a sigmoid-mapped variable by
# at most 2% of its log range, and 100 steps can cross the whole range from any start. Four
# restarts plus the rounding neighbourhood matched the exhaustive grid to < 1e-6 on 120 random
# scenarios (every catalogue chip, 1B-70B targets, batch 1-256, both acceptance models).
DEFAULT_LEARNING_RATE = 0.08
DEFAULT_OPTIMIZER = optax.adam(DEFAULT_LEARNING_RATE)
DEFAULT_STEPS = 100
DEFAULT_RESTARTS = 4
# Roofline sharpness p during the search (<= 4.4% above the hard max).
DEFAULT_SMOOTH = ROOFLINE_DEFAULT_SMOOTH
# Restarts start uniformly in z in [-spread, spread], i.e. sigmoid in [0.08, 0.92].
_INIT_SPREAD = 2.5
# Memory penalty: weight x softplus(k x relative excess) / k, nats of log tokens/s.
_MEMORY_PENALTY_WEIGHT = 20.0
_MEMORY_PENALTY_SHARPNESS = 50.0
# Buildable candidates per restart: 2 layer counts x 8 widths x 4 gammas (see `_candidates`).
_LAYER_OFFSETS = (0.0, 1.0)
_WIDTHS_PER_LAYER_COUNT = 8
_GAMMA_OFFSETS = (-1.0, 0.0, 1.0, 2.0)
CANDIDATES_PER_RESTART = len(_LAYER_OFFSETS) * _WIDTHS_PER_LAYER_COUNT * len(_GAMMA_OFFSETS)
# Grid certificate: throughput evaluations per jitted chunk (bounds memory, not results).
# Accelerators get bigger chunks: a GPU finishes 2^20 evaluations faster than it launches them.
_GRID_CHUNK_EVALUATIONS = {"cpu": 1 << 20}
_GRID_CHUNK_EVALUATIONS_ACCELERATOR = 1 << 24


@struct.dataclass
class Scenario:
    """A `Deployment` plus where the draft search may go (a pytree; stack several to vmap).

    The deployment's fields (``target``, ``hardware``, ``workload``, ``acceptance``,
    ``tp``, ``draft_tp``, ``speculation_overhead_s``) read through as attributes, and
    ``replace`` accepts them too (``scenario.replace(hardware=...)``).

    Attributes:
        deployment: everything fixed while the draft is optimised.
        bounds: where the draft search may go.
        template: the draft's architecture apart from depth and width.

    Examples:
        >>> import specsim
        >>> from specsim import hardware, models
        >>> s = specsim.Scenario.create(models.get("llama-3-8b"), hardware.get("h100"),
        ...                             specsim.Workload.create(batch=4), 0.7)
        >>> float(s.bounds.max_d_model), float(s.deployment.workload.batch)
        (4096.0, 4.0)
    """

    deployment: Deployment
    bounds: DraftBounds
    template: DraftTemplate

    @classmethod
    def create(
        cls,
        target: TransformerSpec,
        hardware: HardwareSpec,
        workload: Workload,
        acceptance,
        *,
        bounds: DraftBounds | None = None,
        template: DraftTemplate | None = None,
        tp: float = 1.0,
        draft_tp: float | None = None,
        speculation_overhead_s: float = 0.0,
        runtime=None,
    ) -> Scenario:
        """A validated scenario; default template and bounds follow the target.

        Arguments as in `Deployment.create` (a number ``acceptance`` is a constant rate).

        Raises:
            ValueError: invalid models, hardware, workload, acceptance, tp or overhead, or
                training tokens searched under an acceptance model that ignores them.
        """
        deployment = Deployment.create(
            target,
            hardware,
            workload,
            acceptance,
            tp=tp,
            draft_tp=draft_tp,
            speculation_overhead_s=speculation_overhead_s,
            runtime=runtime,
        )
        return cls.from_deployment(deployment, bounds=bounds, template=template)

    @classmethod
    def from_deployment(
        cls,
        deployment: Deployment,
        *,
        bounds: DraftBounds | None = None,
        template: DraftTemplate | None = None,
    ) -> Scenario:
        """A validated scenario around ``deployment`` (bounds and template as in `create`)."""
        if not isinstance(deployment, Deployment):
            raise ValueError(f"deployment must be a Deployment, got {type(deployment).__name__}")
        deployment.validate()
        template = template or DraftTemplate.from_target(deployment.target)
        bounds = bounds or DraftBounds.create(deployment.target, template=template)
        probe = build_draft(
            DraftParams(bounds.min_layers, bounds.max_d_model, bounds.min_gamma), template
        )
        check_draft(probe)
        check_gamma(bounds.min_gamma)
        if bounds.search_train_tokens and not isinstance(deployment.acceptance, SDSLAcceptance):
            raise ValueError(
                "draft training tokens only change acceptance under the SDSL law; "
                "drop max_train_tokens/train_flops_budget or use SDSLAcceptance"
            )
        return cls(deployment=deployment, bounds=bounds, template=template)

    target = property(lambda self: self.deployment.target, doc="The served model.")
    hardware = property(lambda self: self.deployment.hardware, doc="One chip.")
    workload = property(lambda self: self.deployment.workload, doc="Batch and lengths.")
    acceptance = property(lambda self: self.deployment.acceptance, doc="Acceptance model.")
    tp = property(lambda self: self.deployment.tp, doc="Target tensor parallelism.")
    draft_tp = property(lambda self: self.deployment.draft_tp, doc="Draft tensor parallelism.")
    speculation_overhead_s = property(
        lambda self: self.deployment.speculation_overhead_s,
        doc="Fixed cost per speculative iteration, s.",
    )


def _replace_scenario(self: Scenario, **changes) -> Scenario:
    """``dataclasses.replace`` that also takes the deployment's field names."""
    moved = {name: changes.pop(name) for name in list(changes) if name in DEPLOYMENT_FIELDS}
    if moved:
        changes["deployment"] = changes.get("deployment", self.deployment).replace(**moved)
    return dataclasses.replace(self, **changes)


# flax.struct installs its own ``replace``; this one forwards deployment fields.
Scenario.replace = _replace_scenario


@struct.dataclass
class OptimizeResult:
    """The optimised draft and lookahead, what they deliver, and why.

    Attributes:
        draft: the buildable answer (whole layers, width a multiple of the width step, whole
            gamma; ``train_tokens`` set when they were searched).
        draft_spec: its full architecture (``TransformerSpec``).
        report: the exact-roofline ``ThroughputReport`` at ``draft``.
        continuous: the best continuous optimum found (real-valued ``DraftParams``).
        continuous_tokens_per_s: exact-roofline tokens/s at ``continuous``.
        elasticities: ``d log tokens/s / d log leaf`` at ``draft`` for every hardware leaf
            (a ``HardwareSpec`` of dimensionless numbers).
        objective_history: best smooth ``log tokens/s`` over restarts after each step,
            shape ``(steps,)``.
        feasible: whether a buildable draft that fits in memory was found.
        evaluations: throughput evaluations used (search steps x restarts, each a value
            and gradient, plus the continuous optima, the rounding candidates and the
            sensitivity gradient).
        message: why the scenario is infeasible ("" when it is feasible).

    Examples:
        >>> import specsim
        >>> from specsim import hardware, models
        >>> from specsim import optimize_draft
        >>> r = optimize_draft(models.get("llama-3-8b"), hardware.get("h100"),
        ...                    specsim.Workload.create(1, 512, 256),
        ...                    specsim.SDSLAcceptance.create(15e12, 15e12))
        >>> bool(r.feasible), bool(r.speedup > 1.5), r.objective_history.shape, r.evaluations
        (True, True, (100,), 662)
        >>> bool(r.tokens_per_s >= 0.99 * r.continuous_tokens_per_s)  # rounding costs little
        True
    """

    draft: DraftParams
    draft_spec: TransformerSpec
    report: ThroughputReport
    continuous: DraftParams
    continuous_tokens_per_s: Any
    elasticities: HardwareSpec
    objective_history: Any
    feasible: Any
    evaluations: int = struct.field(pytree_node=False, default=0)
    message: str = struct.field(pytree_node=False, default="")

    @property
    def tokens_per_s(self):
        """Predicted tokens/s at the buildable answer."""
        return self.report.tokens_per_s

    @property
    def speedup(self):
        """Speedup over plain decoding of the same target at the buildable answer."""
        return self.report.speedup

    def to_dict(self) -> dict[str, Any]:
        """Plain Python numbers (single, unbatched result)."""
        spec = self.draft_spec
        draft = {
            "n_layers": round(float(self.draft.n_layers)),
            "d_model": round(float(self.draft.d_model)),
            "n_heads": round(float(spec.n_heads)),
            "n_kv_heads": round(float(spec.n_kv_heads)),
            "head_dim": round(float(spec.head_dim)),
            "d_ff": round(float(spec.d_ff)),
            "vocab": round(float(spec.vocab)),
            "gated_mlp": bool(float(spec.mlp_matrices) == 3.0),
            "tied_embeddings": bool(float(spec.tied_embeddings) == 1.0),
            "parameters": float(spec.parameter_count),
            "aspect_ratio": float(self.draft.aspect_ratio),
            "train_tokens": _optional_float(self.draft.train_tokens),
        }
        continuous = {
            "n_layers": float(self.continuous.n_layers),
            "d_model": float(self.continuous.d_model),
            "gamma": float(self.continuous.gamma),
            "train_tokens": _optional_float(self.continuous.train_tokens),
            "tokens_per_s": float(self.continuous_tokens_per_s),
        }
        return {
            "feasible": bool(self.feasible),
            "message": self.message,
            "draft": draft,
            "gamma": round(float(self.draft.gamma)),
            "tokens_per_s": float(self.report.tokens_per_s),
            "baseline_tokens_per_s": float(self.report.baseline_tokens_per_s),
            "speedup": float(self.report.speedup),
            "continuous_optimum": continuous,
            "elasticities": {  # a field without a leaf (the hard roofline's sharpness) has none
                name: float(getattr(self.elasticities, name))
                for name in self.elasticities.__dataclass_fields__
                if getattr(self.elasticities, name) is not None
            },
            "report": self.report.to_dict(),
            "evaluations": self.evaluations,
        }


@struct.dataclass
class GridResult:
    """Best buildable point of an exhaustive grid search.

    Attributes:
        draft: the best buildable ``DraftParams``.
        report: exact-roofline ``ThroughputReport`` at ``draft``.
        feasible: whether any grid point fits in memory.
        evaluations: grid points evaluated.
    """

    draft: DraftParams
    report: ThroughputReport
    feasible: Any
    evaluations: int = struct.field(pytree_node=False, default=0)

    @property
    def tokens_per_s(self):
        """Exact tokens/s at the best grid point."""
        return self.report.tokens_per_s


def _optional_float(value) -> float | None:
    return None if value is None else float(value)


# --------------------------------------------------------------------------- the model


def _evaluate(scenario: Scenario, params: DraftParams, draft: TransformerSpec, smooth):
    """Throughput report of ``draft`` at ``params.gamma`` (training tokens from the bounds)."""
    deployment = scenario.deployment
    if scenario.bounds.search_train_tokens:
        acceptance = deployment.acceptance.replace(draft_train_tokens=params.train_tokens)
        deployment = deployment.replace(acceptance=acceptance)
    return _throughput(deployment, draft, params.gamma, smooth)


def _with_train_tokens(params: DraftParams, draft: TransformerSpec, bounds: DraftBounds):
    if not bounds.search_train_tokens:
        return params
    return params.replace(train_tokens=train_tokens_for(draft, bounds))


def _width_range(bounds: DraftBounds):
    """Log-width interval of the feasible (layers, width) region."""
    lo = jnp.maximum(jnp.log(bounds.min_d_model), jnp.log(bounds.min_layers * bounds.min_aspect))
    hi = jnp.minimum(jnp.log(bounds.max_d_model), jnp.log(bounds.max_layers * bounds.max_aspect))
    return lo, hi


def decode(z, bounds: DraftBounds) -> DraftParams:
    """Maps unconstrained ``z`` (shape ``(3,)``) onto the bounded region (continuous).

    ``log d_model`` sweeps its feasible interval with ``sigmoid(z[0])``; ``log n_layers``
    sweeps the interval the aspect-ratio and layer bounds leave for that width with
    ``sigmoid(z[1])``; gamma sweeps ``[min_gamma, max_gamma]`` with ``sigmoid(z[2])``. Every
    ``z`` lands inside the bounds, and the map is smooth, so gradients are finite everywhere.

    Examples:
        >>> import jax.numpy as jnp
        >>> from specsim import models
        >>> from specsim import DraftBounds
        >>> from specsim._optimize import decode
        >>> p = decode(jnp.zeros(3), DraftBounds.create(models.get("llama-3-8b")))
        >>> 32 <= float(p.aspect_ratio) <= 512, float(p.gamma)
        (True, 8.0)
    """
    lo_d, hi_d = _width_range(bounds)
    log_d = lo_d + jax.nn.sigmoid(z[0]) * (hi_d - lo_d)
    lo_l = jnp.maximum(jnp.log(bounds.min_layers), log_d - jnp.log(bounds.max_aspect))
    hi_l = jnp.minimum(jnp.log(bounds.max_layers), log_d - jnp.log(bounds.min_aspect))
    log_l = lo_l + jax.nn.sigmoid(z[1]) * jnp.maximum(hi_l - lo_l, 0.0)
    gamma = bounds.min_gamma + jax.nn.sigmoid(z[2]) * (bounds.max_gamma - bounds.min_gamma)
    return DraftParams(n_layers=jnp.exp(log_l), d_model=jnp.exp(log_d), gamma=gamma)


def _objective(z, scenario: Scenario, smooth):
    """Smooth ``log tokens/s`` minus the memory penalty, at unconstrained ``z``."""
    params = decode(z, scenario.bounds)
    draft = build_draft(params, scenario.template)
    params = _with_train_tokens(params, draft, scenario.bounds)
    report = _evaluate(scenario, params, draft, smooth)
    excess = report.memory_per_chip_bytes / scenario.hardware.hbm_capacity_bytes - 1.0
    penalty = (
        _MEMORY_PENALTY_WEIGHT
        * jax.nn.softplus(_MEMORY_PENALTY_SHARPNESS * excess)
        / _MEMORY_PENALTY_SHARPNESS
    )
    return jnp.log(report.tokens_per_s) - penalty


def _score_buildable(scenario: Scenario, n_layers, d_model, gamma, valid):
    """Exact tokens/s of a buildable point (``-inf`` where invalid or out of memory)."""
    params = DraftParams(n_layers=n_layers, d_model=d_model, gamma=gamma)
    draft = buildable_draft(params, scenario.template)
    params = _with_train_tokens(params, draft, scenario.bounds)
    report = _evaluate(scenario, params, draft, None)
    ok = valid & report.fits
    return jnp.where(ok, report.tokens_per_s, -jnp.inf), params, draft, report


def _layer_width_limits(n_layers, bounds: DraftBounds, step):
    """Smallest and largest multiple-of-step width allowed at ``n_layers`` (as counts)."""
    lo = jnp.maximum(bounds.min_d_model, bounds.min_aspect * n_layers)
    hi = jnp.minimum(bounds.max_d_model, bounds.max_aspect * n_layers)
    first = jnp.maximum(jnp.ceil(lo / step - 1e-4), 1.0)
    last = jnp.floor(hi / step + 1e-4)
    return first, last


def _candidates(params: DraftParams, scenario: Scenario):
    """Neighbouring buildable points of one continuous optimum, and their validity.

    Layer counts: floor and ceil. Widths at each layer count, from two reference widths (the
    continuous width, and the width keeping the continuous aspect ratio at that layer count,
    since optima often sit on the aspect bound): the multiples of the width step just below
    and above, and those of ``width_step x kv_group`` (where whole KV groups make the
    buildable draft match the continuous relaxation), all clipped into the widths that layer
    count allows. Gammas: ``floor - 1`` to ``ceil + 1``.
    """
    bounds, template = scenario.bounds, scenario.template
    step = template.width_step
    group_step = step * jnp.maximum(jnp.round(template.kv_group), 1.0)
    layer_lo = jnp.ceil(bounds.min_layers - 1e-4)
    layer_hi = jnp.floor(bounds.max_layers + 1e-4)
    gamma_lo = jnp.ceil(bounds.min_gamma - 1e-4)
    gamma_hi = jnp.floor(bounds.max_gamma + 1e-4)
    base_layers = jnp.floor(params.n_layers)
    base_gamma = jnp.floor(params.gamma)
    layers, widths, gammas, valid = [], [], [], []
    for dl in _LAYER_OFFSETS:
        n_layers = jnp.clip(base_layers + dl, layer_lo, layer_hi)
        first, last = _layer_width_limits(n_layers, bounds, step)
        same_aspect = params.d_model / params.n_layers * n_layers
        for reference in (params.d_model, same_aspect):
            for lattice in (step, group_step):
                for rounding in (jnp.floor, jnp.ceil):
                    count = jnp.clip(rounding(reference / lattice) * lattice / step, first, last)
                    for dg in _GAMMA_OFFSETS:
                        layers.append(n_layers)
                        widths.append(step * count)
                        gammas.append(jnp.clip(base_gamma + dg, gamma_lo, gamma_hi))
                        valid.append(
                            (first <= last) & (layer_lo <= layer_hi) & (gamma_lo <= gamma_hi)
                        )
    return jnp.stack(layers), jnp.stack(widths), jnp.stack(gammas), jnp.stack(valid)


def _elasticities(scenario: Scenario, params: DraftParams, draft: TransformerSpec):
    def log_tokens_per_s(hardware):
        return jnp.log(
            _evaluate(scenario.replace(hardware=hardware), params, draft, None).tokens_per_s
        )

    grad = jax.grad(log_tokens_per_s)(scenario.hardware)
    # An infinite leaf (the hard roofline's sharpness) has no relative change: elasticity 0.
    return jax.tree.map(
        lambda g, x: jnp.where(jnp.isfinite(x), g * x, 0.0), grad, scenario.hardware
    )


def _optimize_one(scenario: Scenario, key, optimizer, steps: int, restarts: int, smooth):
    z0 = jax.random.uniform(key, (restarts, 3), minval=-_INIT_SPREAD, maxval=_INIT_SPREAD)
    value_and_grad = jax.vmap(jax.value_and_grad(lambda z: -_objective(z, scenario, smooth)))
    opt_state = jax.vmap(optimizer.init)(z0)

    def step(carry, _):
        z, state = carry
        loss, grad = value_and_grad(z)
        updates, state = jax.vmap(optimizer.update)(grad, state, z)
        return (optax.apply_updates(z, updates), state), -jnp.min(loss)

    (z, _), history = jax.lax.scan(step, (z0, opt_state), None, length=steps)

    # Continuous optima of every restart, scored with the smooth objective.
    final = jax.vmap(lambda zi: _objective(zi, scenario, smooth))(z)
    continuous = jax.vmap(lambda zi: decode(zi, scenario.bounds))(z)
    best = jnp.argmax(final)
    best_continuous = jax.tree.map(lambda x: x[best], continuous)
    best_draft = build_draft(best_continuous, scenario.template)
    best_continuous = _with_train_tokens(best_continuous, best_draft, scenario.bounds)
    continuous_report = _evaluate(scenario, best_continuous, best_draft, None)

    # Buildable neighbours of every restart's optimum, scored exactly.
    layers, widths, gammas, valid = jax.vmap(lambda p: _candidates(p, scenario))(continuous)
    layers, widths, gammas, valid = (x.reshape(-1) for x in (layers, widths, gammas, valid))
    scores, params, drafts, reports = jax.vmap(
        lambda n, d, g, v: _score_buildable(scenario, n, d, g, v)
    )(layers, widths, gammas, valid)
    chosen = jnp.argmax(scores)
    pick = functools.partial(jax.tree.map, lambda x: x[chosen])
    params, draft, report = pick(params), pick(drafts), pick(reports)
    feasible = jnp.isfinite(scores[chosen])
    return OptimizeResult(
        draft=params,
        draft_spec=draft,
        report=report,
        continuous=best_continuous,
        continuous_tokens_per_s=continuous_report.tokens_per_s,
        elasticities=_elasticities(scenario, params, draft),
        objective_history=history,
        feasible=feasible,
    )


@functools.partial(_backend_jit, static_argnames=("optimizer", "steps", "restarts", "smooth"))
def _optimize_batch(scenarios: Scenario, keys, optimizer, steps, restarts, smooth):
    """The whole search for a stack of scenarios: vmap over scenarios of `_optimize_one`."""
    return jax.vmap(
        lambda scenario, key: _optimize_one(scenario, key, optimizer, steps, restarts, smooth)
    )(scenarios, keys)


# --------------------------------------------------------------------------- feasibility


def _feasibility_message(scenario: Scenario) -> str:
    """Why no buildable draft can work in ``scenario`` ("" if one might)."""
    bounds, template = scenario.bounds, scenario.template
    points = buildable_points(bounds, template)
    gammas = gamma_values(bounds)
    if points.shape[0] == 0:
        return (
            "the bounds exclude every buildable draft: no whole layer count in "
            f"[{float(bounds.min_layers):g}, {float(bounds.max_layers):g}] has a width that is "
            f"a multiple of {float(template.width_step):g} in "
            f"[{float(bounds.min_d_model):g}, {float(bounds.max_d_model):g}] with "
            f"{float(bounds.min_aspect):g} <= d_model / n_layers <= {float(bounds.max_aspect):g}"
        )
    if gammas.size == 0:
        return (
            f"the bounds exclude every whole lookahead: gamma in [{float(bounds.min_gamma):g}, "
            f"{float(bounds.max_gamma):g}]"
        )
    workload = scenario.workload
    context = float(workload.prompt_tokens) + float(workload.generate_tokens) + float(gammas[-1])
    capacity = float(scenario.hardware.hbm_capacity_bytes)
    target_bytes, problem = target_fit(
        scenario.target, scenario.hardware, workload.batch, context, scenario.tp
    )
    if problem is not None:
        return problem
    where = (
        f"(tp={float(scenario.tp):g}, batch {float(workload.batch):g}, context {context:g} tokens)"
    )
    if gammas[-1] < 1:
        return ""
    params = DraftParams(n_layers=points[:, 0], d_model=points[:, 1], gamma=np.ones(len(points)))
    host_template = jax.tree.map(np.asarray, template)
    drafts = buildable_draft(params, host_template, xp=np)
    batch = float(workload.batch)
    draft_bytes = np.asarray(memory_footprint(drafts, batch, context).total_bytes) / float(
        scenario.draft_tp
    )
    smallest = float(draft_bytes.min())
    if target_bytes + smallest > capacity:
        return (
            "no draft within the bounds fits beside the target: the target takes "
            f"{target_bytes / 1e9:.1f} GB of {capacity / 1e9:.1f} GB per chip {where} and the "
            f"smallest buildable draft needs {smallest / 1e9:.2f} GB more"
        )
    return ""


# --------------------------------------------------------------------------- front doors


def _group_by_structure(items: Sequence[Any]) -> list[list[int]]:
    """Indices of ``items`` grouped by pytree structure (what can be stacked together)."""
    groups: dict[Any, list[int]] = {}
    for i, item in enumerate(items):
        groups.setdefault(jax.tree.structure(item), []).append(i)
    return list(groups.values())


def _stack(items: Sequence[Any]):
    """Leaves of ``items`` stacked as float32 (on the host: one array per leaf, not one
    device operation per item and leaf)."""

    def stack(*leaves):
        if any(isinstance(x, jax.core.Tracer) for x in leaves):
            return jnp.stack([jnp.asarray(x, jnp.float32) for x in leaves])
        return np.asarray(leaves, np.float32)

    return jax.tree.map(stack, *items)


def _unstack(tree, n: int) -> list[Any]:
    host = jax.device_get(tree)
    return [jax.tree.map(lambda x, i=i: x[i], host) for i in range(n)]


def _search_evaluations(steps: int, restarts: int) -> int:
    # value+gradient per restart per step, the continuous optima (restarts + 1 exact), the
    # rounding candidates, and one gradient for the sensitivities.
    return steps * restarts + restarts + 1 + restarts * CANDIDATES_PER_RESTART + 1


def optimize_scenarios(
    scenarios: Sequence[Scenario],
    *,
    optimizer: optax.GradientTransformation = DEFAULT_OPTIMIZER,
    steps: int = DEFAULT_STEPS,
    restarts: int = DEFAULT_RESTARTS,
    seed: int = 0,
    smooth: float = DEFAULT_SMOOTH,
) -> list[OptimizeResult]:
    """Optimises the draft and lookahead of many scenarios at once.

    Scenarios of the same pytree structure (same acceptance model type, compute dtypes and
    training-token switch) are stacked and searched by one ``vmap``-ed, jitted call, on the
    default JAX device (CPU, GPU or TPU); each structure compiles once. Infeasible scenarios
    (nothing fits in memory, bounds that exclude every buildable draft) do not stop the
    others: their result has ``feasible=False`` and a ``message``.

    Args:
        scenarios: `Scenario` objects (e.g. every chip in the catalogue x several batches).
        optimizer: any optax ``GradientTransformation`` (default ``optax.adam(0.08)``); pass
            the same object again to reuse the compiled search.
        steps: optimizer steps per restart.
        restarts: random starts per scenario, searched in parallel.
        seed: PRNG seed of the starting points (the same seed gives the same answer).
        smooth: roofline sharpness cap of the search (p = min(spec's, ``smooth``)), a
            number in [0.1, 1e4], or ``None`` to search on the spec's own roofline.

    Returns:
        One `OptimizeResult` per scenario, in order (NumPy-backed leaves).

    Examples:
        >>> import specsim
        >>> from specsim import hardware, models
        >>> from specsim import Scenario, optimize_scenarios
        >>> target, acc = models.get("llama-3-8b"), specsim.ConstantAcceptance.create(0.8)
        >>> scenarios = [Scenario.create(target, hardware.get(h), specsim.Workload.create(b),
        ...                              acc) for h in ("h100", "a100-80gb") for b in (1, 64)]
        >>> results = optimize_scenarios(scenarios, steps=60, restarts=4)
        >>> [round(float(r.speedup), 1) > 1 for r in results]
        [True, True, True, True]
    """
    scenarios = list(scenarios)
    if not scenarios:
        return []
    if steps < 1 or restarts < 1:
        raise ValueError(f"steps and restarts must be >= 1, got {steps} and {restarts}")
    smooth = check_smooth(smooth)  # the throughput entry points' rule: None or [0.1, 1e6]
    messages = [_feasibility_message(s) for s in scenarios]
    keys = jax.random.split(jax.random.PRNGKey(seed), len(scenarios))
    results: list[OptimizeResult | None] = [None] * len(scenarios)
    evaluations = _search_evaluations(steps, restarts)
    for group in _group_by_structure(scenarios):
        stacked = _stack([scenarios[i] for i in group])
        search, options = _optimize_batch.jitted()
        batch = _executable_cache.call(
            search,
            (stacked, keys[np.asarray(group)]),
            {"optimizer": optimizer, "steps": steps, "restarts": restarts, "smooth": smooth},
            name="optimize",
            # Only the default optimizer is known across processes (any other is an object).
            static_key=f"adam-default,{steps},{restarts},{smooth!r}"
            if optimizer is DEFAULT_OPTIMIZER
            else None,
            compiler_options=options,
        )
        for i, result in zip(group, _unstack(batch, len(group)), strict=True):
            feasible = bool(result.feasible) and not messages[i]
            message = messages[i] or ("" if feasible else _NO_FIT_MESSAGE)
            results[i] = result.replace(
                feasible=np.asarray(feasible), evaluations=evaluations, message=message
            )
    return results  # type: ignore[return-value]


_NO_FIT_MESSAGE = "no buildable draft near the optimum fits in memory beside the target"


def optimize_draft(
    target: TransformerSpec,
    hardware: HardwareSpec,
    workload: Workload,
    acceptance,
    *,
    bounds: DraftBounds | None = None,
    template: DraftTemplate | None = None,
    tp: float = 1.0,
    draft_tp: float | None = None,
    speculation_overhead_s: float = 0.0,
    optimizer: optax.GradientTransformation = DEFAULT_OPTIMIZER,
    steps: int = DEFAULT_STEPS,
    restarts: int = DEFAULT_RESTARTS,
    seed: int = 0,
    smooth: float = DEFAULT_SMOOTH,
) -> OptimizeResult:
    """The throughput-optimal buildable draft and lookahead for one scenario.

    Gradient search (any optax optimizer, ``restarts`` vmapped starts, ``lax.scan`` over
    ``steps``, all in one ``jax.jit``) on the smooth roofline, rounding to the best
    neighbouring buildable point on the exact roofline, and hardware sensitivities; see the
    module docstring. With a constant (or per-position) acceptance rate the draft's size does
    not change acceptance, so the answer is the fastest draft in the bounds, and what is
    really optimised is gamma and the draft's shape under the latency model.

    Args:
        target: the model being served.
        hardware: one chip.
        workload: batch, prompt and generation lengths.
        acceptance: ``ConstantAcceptance``, ``PositionalAcceptance`` or ``SDSLAcceptance``.
        bounds: search region (default ``DraftBounds.create(target)``).
        template: the draft's fixed architecture (default ``DraftTemplate.from_target``).
        tp: tensor-parallel degree of the target.
        draft_tp: tensor-parallel degree of the draft (default ``tp``).
        speculation_overhead_s: fixed cost per speculative iteration, s.
        optimizer: any optax ``GradientTransformation`` (default ``optax.adam(0.08)``).
        steps: optimizer steps per restart (default 100).
        restarts: random starts (default 4).
        seed: PRNG seed of the starting points.
        smooth: roofline sharpness cap during the search (p = min(spec's, ``smooth``);
            default 16; a number in [0.1, 1e4], or ``None`` for the spec's own roofline);
            the rounding and the report use the spec's own roofline.

    Returns:
        `OptimizeResult`.

    Raises:
        ValueError: invalid inputs; the target does not fit on its chips; no buildable draft
            fits beside it; or the bounds exclude every buildable draft.

    Examples:
        >>> import specsim
        >>> from specsim import hardware, models
        >>> from specsim import optimize_draft
        >>> target = models.get("llama-3-8b")
        >>> acc = specsim.SDSLAcceptance.create(15e12, 15e12)
        >>> r = optimize_draft(target, hardware.get("h100"), specsim.Workload.create(1, 512, 256),
        ...                    acc)
        >>> bool(r.speedup > 1), 2 <= int(r.draft.n_layers) <= 32
        (True, True)
    """
    scenario = Scenario.create(
        target,
        hardware,
        workload,
        acceptance,
        bounds=bounds,
        template=template,
        tp=tp,
        draft_tp=draft_tp,
        speculation_overhead_s=speculation_overhead_s,
    )
    message = _feasibility_message(scenario)
    if message:
        raise ValueError(message)
    (result,) = optimize_scenarios(
        [scenario], optimizer=optimizer, steps=steps, restarts=restarts, seed=seed, smooth=smooth
    )
    if not result.feasible:
        raise ValueError(result.message)
    return result


# --------------------------------------------------------------------------- certificate


def _grid_axes(scenario: Scenario) -> tuple[np.ndarray, np.ndarray]:
    """Every buildable ``(layers, width)``, shape ``(P, 2)``, and every whole gamma ``(G,)``."""
    shapes = buildable_points(scenario.bounds, scenario.template)
    gammas = gamma_values(scenario.bounds)
    if shapes.shape[0] == 0 or gammas.size == 0:
        return np.zeros((0, 2)), np.zeros(0)
    return shapes, gammas


@jax.jit
def _grid_best(scenarios: Scenario, layers, widths, shape_valid, gammas, gamma_valid):
    """Best score and its flat index ``p * G + g`` per scenario over a chunk of shapes.

    Nested ``vmap`` s (scenarios, then draft shapes, then gammas) evaluate what does not
    depend on an axis once for all of it: the target step once per scenario, the draft
    step once per shape, the verification once per gamma. The arg-max is taken on the
    device; only one score and one index per scenario leave it.
    """

    @inline_jits  # (batched flat: see `specsim._inline`)
    def score(scenario, n_i, d_i, g_j, ok):
        return _score_buildable(scenario, n_i, d_i, g_j, ok)[0]

    def scenario_best(scenario, n, d, n_valid, g, g_valid):
        def shape_scores(n_i, d_i, ok):
            return jax.vmap(lambda g_j, ok_j: score(scenario, n_i, d_i, g_j, ok & ok_j))(g, g_valid)

        scores = jax.vmap(shape_scores)(n, d, n_valid).reshape(-1)
        # The first maximum, as max then min of the matching indices: two plain reductions
        # vectorise on a CPU, where a fused (value, index) arg-max runs ~2x slower.
        best = jnp.max(scores)
        positions = jnp.arange(scores.size, dtype=jnp.int32)
        return best, jnp.min(jnp.where(scores == best, positions, scores.size))

    return jax.vmap(scenario_best)(scenarios, layers, widths, shape_valid, gammas, gamma_valid)


@_backend_jit
def _grid_report(scenarios: Scenario, layers, widths, gammas):
    def one(scenario, n, d, g):
        _, params, _, report = _score_buildable(scenario, n, d, g, jnp.asarray(True))
        return params, report

    return jax.vmap(one)(scenarios, layers, widths, gammas)


def grid_search_scenarios(scenarios: Sequence[Scenario]) -> list[GridResult]:
    """Exhaustive search over every buildable point of each scenario's bounds.

    Every whole layer count, every width that is a multiple of the width step inside the
    aspect range, and every whole gamma, scored with the exact roofline (memory-infeasible
    points excluded). Scenarios of one pytree structure are evaluated together: ``vmap``-ed
    over scenarios, draft shapes and gammas in one jitted call per chunk of shapes (2^20
    evaluations on a CPU, 2^24 elsewhere), the best point of each scenario found on the
    device. The first best point in (layers, width, gamma) order wins ties.

    Args:
        scenarios: `Scenario` objects.

    Returns:
        One `GridResult` per scenario, in order.

    Examples:
        >>> import specsim
        >>> from specsim import hardware, models
        >>> from specsim import DraftBounds
        >>> from specsim import Scenario, grid_search_scenarios
        >>> target = models.get("llama-3-8b")
        >>> s = Scenario.create(target, hardware.get("h100"), specsim.Workload.create(),
        ...                     specsim.ConstantAcceptance.create(0.8),
        ...                     bounds=DraftBounds.create(target, max_layers=4, max_gamma=8))
        >>> (g,) = grid_search_scenarios([s])
        >>> g.evaluations, int(g.draft.n_layers)
        (297, 2)
    """
    scenarios = list(scenarios)
    results: list[GridResult | None] = [None] * len(scenarios)
    for group in _group_by_structure(scenarios):
        members = [scenarios[i] for i in group]
        n = len(members)
        axes = [_grid_axes(s) for s in members]
        n_gammas = max(1, max(g.size for _, g in axes))
        n_shapes = max(1, max(p.shape[0] for p, _ in axes))
        budget = _GRID_CHUNK_EVALUATIONS.get(
            jax.default_backend(), _GRID_CHUNK_EVALUATIONS_ACCELERATOR
        )
        # A chunk shape that depends only on the group and on the longest gamma range, so
        # grids of any extent share one compiled function.
        per_chunk = 1 << max(0, (max(1, budget // (n * n_gammas))).bit_length() - 1)
        per_chunk = min(per_chunk, 1 << (n_shapes - 1).bit_length())
        n_chunks = math.ceil(n_shapes / per_chunk)
        shapes = np.ones((n, n_chunks * per_chunk, 2))
        shape_valid = np.zeros((n, n_chunks * per_chunk), dtype=bool)
        gammas = np.ones((n, n_gammas))
        gamma_valid = np.zeros((n, n_gammas), dtype=bool)
        for row, (points, values) in enumerate(axes):
            if points.shape[0]:
                shapes[row] = points[0]  # padding: a buildable point, masked out
                shapes[row, : points.shape[0]] = points
                shape_valid[row, : points.shape[0]] = True
                gammas[row] = values[0]
                gammas[row, : values.size] = values
                gamma_valid[row, : values.size] = True
        stacked = _stack(members)
        g_dev = jnp.asarray(gammas, jnp.float32)
        gv_dev = jnp.asarray(gamma_valid)
        pending = []
        for c in range(n_chunks):  # dispatched back to back; reduced on the host after
            part = slice(c * per_chunk, (c + 1) * per_chunk)
            pending.append(
                _grid_best(
                    stacked,
                    jnp.asarray(shapes[:, part, 0], jnp.float32),
                    jnp.asarray(shapes[:, part, 1], jnp.float32),
                    jnp.asarray(shape_valid[:, part]),
                    g_dev,
                    gv_dev,
                )
            )
        best_score = np.full(n, -np.inf)
        best_index = np.zeros(n, dtype=np.int64)
        for c, (score, index) in enumerate(pending):
            score, index = np.asarray(score), np.asarray(index)
            better = score > best_score
            best_score = np.where(better, score, best_score)
            best_index = np.where(better, c * per_chunk * n_gammas + index, best_index)
        shape_index, gamma_index = np.divmod(best_index, n_gammas)
        rows = np.arange(n)
        chosen_shapes = shapes[rows, shape_index]
        params, reports = _grid_report(
            stacked,
            jnp.asarray(chosen_shapes[:, 0], jnp.float32),
            jnp.asarray(chosen_shapes[:, 1], jnp.float32),
            jnp.asarray(gammas[rows, gamma_index], jnp.float32),
        )
        per = _unstack((params, reports), n)
        for row, i in enumerate(group):
            p, report = per[row]
            results[i] = GridResult(
                draft=p,
                report=report,
                feasible=np.asarray(np.isfinite(best_score[row])),
                evaluations=int(axes[row][0].shape[0] * axes[row][1].size),
            )
    return results  # type: ignore[return-value]


def grid_search(
    target: TransformerSpec,
    hardware: HardwareSpec,
    workload: Workload,
    acceptance,
    *,
    bounds: DraftBounds | None = None,
    template: DraftTemplate | None = None,
    tp: float = 1.0,
    draft_tp: float | None = None,
    speculation_overhead_s: float = 0.0,
) -> GridResult:
    """Exhaustive integer search of one scenario (the certificate for `optimize_draft`).

    Same arguments and bounds as `optimize_draft`; see `grid_search_scenarios`.

    Examples:
        >>> import specsim
        >>> from specsim import hardware, models
        >>> from specsim import DraftBounds
        >>> from specsim import grid_search
        >>> target = models.get("llama-3-8b")
        >>> g = grid_search(target, hardware.get("h100"), specsim.Workload.create(),
        ...                 specsim.ConstantAcceptance.create(0.8),
        ...                 bounds=DraftBounds.create(target, max_layers=4))
        >>> int(g.draft.gamma) > 0
        True
    """
    scenario = Scenario.create(
        target,
        hardware,
        workload,
        acceptance,
        bounds=bounds,
        template=template,
        tp=tp,
        draft_tp=draft_tp,
        speculation_overhead_s=speculation_overhead_s,
    )
    (result,) = grid_search_scenarios([scenario])
    return result


def is_size_sensitive(acceptance) -> bool:
    """Whether the draft's size changes acceptance (only under the SDSL law)."""
    return isinstance(acceptance, SDSLAcceptance)
