"""Goodput per dollar: the draft, the lookahead per batch bucket, TP and replicas, jointly.

The design space at one traffic and SLO: a draft model (layers and width; its acceptance
from the SDSL law of its size), a lookahead for each decode-batch bucket (ten buckets by
default), the tensor-parallel degree of each replica and the number of replicas. The
objective is SLO-meeting output tokens per dollar of fleet time (`serving_cost`), from the
steady-state model.

**Relaxation.** Every choice is a smooth map of an unconstrained vector ``z``: the draft's
log-width and log-depth sweep their feasible region with sigmoids (`DraftBounds`, as
`optimize_draft` does), each lookahead is ``max_lookahead x sigmoid``, ``tp = 2 ** (log2
max_tp x sigmoid)`` and ``replicas = max_replicas ** sigmoid``. The KV cache follows the
chips' free memory (traced in ``tp`` and the draft's size). The search maximises
``log(goodput per dollar)`` where the SLO attainment is the model's smooth one, minus a
softplus penalty on load above the model's approximation (``max_load``), with any optax
transformation over ``steps`` steps from ``restarts`` random starts (one ``vmap``).

**Rounding.** Each restart's end point is rounded to whole values: ``tp`` to the powers
of two on either side, replicas to the whole numbers on either side, lookaheads and layers
to the nearest whole number, the width to the nearest multiple of the head size; the four
(tp x replicas) candidates are scored exactly (the SLO met or not, within the model's
approximation) and the best is returned.

`random_serving_search` is the baseline with the same number of model evaluations: points
drawn uniformly in ``z``, rounded the same way, scored the same way.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from .._acceptance import SDSLAcceptance
from .._cost import memory_footprint
from .._deployment import Deployment
from .._draft import DraftBounds, DraftTemplate, build_draft, buildable_draft
from .._fast_jit import _backend_jit
from .._feasibility import domain_problem
from .._optimize import decode
from .._saturation import kv_bytes_per_token
from ..models import parameter_count
from ._cost_per_token import ChipPrice
from ._engine import DEFAULT_BATCH_BUCKETS, EngineConfig, SpecPolicy
from ._slo import SLO
from ._steady_state import DEFAULT_MAX_LOAD, evaluate
from ._traffic import Traffic

__all__ = ["ServingSearchResult", "optimize_serving", "random_serving_search"]

_LOAD_PENALTY = 20.0
_LOAD_SHARPNESS = 0.05
_INIT_SPREAD = 1.5
_RANDOM_SPREAD = 4.0
_CANDIDATES = 4
# One instance: the optimiser is a static argument of the jitted search, so a new
# ``optax.adam`` per call would recompile it every time.
DEFAULT_OPTIMIZER = optax.adam(0.1)
# The largest tensor-parallel degree searched unless told (fewer where the interconnect joins
# fewer chips).
DEFAULT_MAX_TP = 8


@dataclasses.dataclass(frozen=True)
class ServingSearchResult:
    """The best whole-numbered design a search found, and what it cost to find.

    Attributes:
        method: ``"gradient"`` or ``"random"``.
        goodput_tokens_per_usd: its exact score (0 when the SLO is missed or the load is
            beyond the model's approximation).
        draft_layers, draft_d_model: the draft's depth and width.
        draft_params: the draft's parameter count.
        acceptance_rate: the SDSL acceptance of that draft.
        lookahead: one whole lookahead per batch bucket.
        tp, replicas: chips per replica and replicas.
        slo_met, within_approximation: of the design at the traffic.
        usd_per_million_tokens: its cost per million output tokens.
        evaluations: model evaluations spent (a value and gradient count as one).
        history: the best exact score after each evaluation batch (gradient: the smooth
            objective of the best restart per step).
    """

    method: str
    goodput_tokens_per_usd: float
    draft_layers: int
    draft_d_model: int
    draft_params: float
    acceptance_rate: float
    lookahead: tuple[int, ...]
    tp: int
    replicas: int
    slo_met: bool
    within_approximation: bool
    usd_per_million_tokens: float
    evaluations: int
    history: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        """Plain Python values (history left out)."""
        out = dataclasses.asdict(self)
        out.pop("history")
        out["lookahead"] = list(self.lookahead)
        return out


@struct.dataclass
class _Problem:
    """The fixed inputs of one search (traced; the bucket bounds are static)."""

    deployment: Deployment
    traffic: Traffic
    engine: EngineConfig
    slo: SLO
    price: ChipPrice
    bounds: DraftBounds
    template: DraftTemplate
    max_tp: Any
    max_replicas: Any
    max_lookahead: Any
    buckets: tuple = struct.field(pytree_node=False, default=DEFAULT_BATCH_BUCKETS)


def _dims(problem: _Problem) -> int:
    return 3 + len(problem.buckets) + 1 + 2


def _design(z, p: _Problem):
    """Continuous design at unconstrained ``z``: (draft, lookaheads, tp, replicas)."""
    n = len(p.buckets) + 1
    params = decode(z[:3], p.bounds)
    lookahead = p.max_lookahead * jax.nn.sigmoid(z[3 : 3 + n])
    tp = 2.0 ** (jnp.log2(p.max_tp) * jax.nn.sigmoid(z[3 + n]))
    replicas = p.max_replicas ** jax.nn.sigmoid(z[4 + n])
    return params, lookahead, tp, replicas


def _kv_blocks(p: _Problem, deployment: Deployment, draft, tp):
    """KV-cache blocks per replica in the free memory of its chips (traced; >= ~0)."""
    e = p.engine
    target = deployment.target
    weights = memory_footprint(target, 0.0, 0.0).weight_bytes / tp
    draft_weights = memory_footprint(draft, 0.0, 0.0).weight_bytes / tp
    # (the target's per chip as the engine and the saturation model count it: heads
    # replicated beyond their number, a latent cache whole on every chip)
    per_token = (
        kv_bytes_per_token(target, tp) + memory_footprint(draft, 1.0, 1.0).kv_cache_bytes / tp
    )
    free = deployment.hardware.hbm_capacity_bytes - weights - draft_weights
    blocks = e.memory_fraction * free / (per_token * e.block_size)
    return 1e3 * jax.nn.softplus(blocks / 1e3)  # no room: a sliver of cache, a huge load


def _score(p: _Problem, draft, lookahead, tp, replicas):
    """(smooth objective, exact goodput per dollar, report, cost per million tokens)."""
    deployment = p.deployment.replace(tp=tp, draft_tp=tp)
    policy = SpecPolicy(draft, lookahead, p.buckets)
    engine = p.engine.replace(kv_blocks=_kv_blocks(p, deployment, draft, tp))
    report, attainment = evaluate(
        deployment, policy, p.traffic, engine, p.slo, replicas, DEFAULT_MAX_LOAD
    )
    usd_per_s = tp * replicas * p.price.usd_per_hour / 3600.0
    served = report.throughput_tokens_per_s
    smooth = jnp.log(served * attainment + 1e-6) - jnp.log(usd_per_s)
    excess = (report.load - DEFAULT_MAX_LOAD) / _LOAD_SHARPNESS
    objective = smooth - _LOAD_PENALTY * _LOAD_SHARPNESS * jax.nn.softplus(excess)
    ok = report.slo_met & report.within_approximation
    exact = jnp.where(ok, report.goodput_tokens_per_s / usd_per_s, 0.0)
    return objective, exact, report, usd_per_s / served * 1e6


def _objective(z, p: _Problem):
    params, lookahead, tp, replicas = _design(z, p)
    draft = build_draft(params, p.template)
    return _score(p, draft, lookahead, tp, replicas)[0]


def _rounded(z, p: _Problem):
    """The whole-numbered candidates of ``z``: (tp x replicas) floor/ceil, shape (4, ...)."""
    params, lookahead, tp, replicas = _design(z, p)
    step = p.template.head_dim
    layers = jnp.clip(jnp.round(params.n_layers), p.bounds.min_layers, p.bounds.max_layers)
    width = jnp.clip(
        step * jnp.round(params.d_model / step), p.bounds.min_d_model, p.bounds.max_d_model
    )
    log_tp = jnp.log2(tp)
    tps = 2.0 ** jnp.stack([jnp.floor(log_tp), jnp.ceil(log_tp)])
    reps = jnp.stack([jnp.floor(replicas), jnp.ceil(replicas)])
    tps, reps = (a.reshape(-1) for a in jnp.meshgrid(tps, reps, indexing="ij"))
    reps = jnp.clip(reps, 1.0, p.max_replicas)
    return layers, width, jnp.round(lookahead), tps, reps


def _exact(p: _Problem, layers, width, lookahead, tp, replicas):
    draft = buildable_draft(params_of(layers, width), p.template)
    _, exact, report, per_million = _score(p, draft, lookahead, tp, replicas)
    return exact, report, per_million


def params_of(layers, width):
    from .._draft import DraftParams

    return DraftParams(n_layers=layers, d_model=width, gamma=jnp.zeros_like(layers))


def _best_of_candidates(z, p: _Problem):
    layers, width, lookahead, tps, reps = _rounded(z, p)
    exact, report, per_million = jax.vmap(lambda t, r: _exact(p, layers, width, lookahead, t, r))(
        tps, reps
    )
    i = jnp.argmax(exact)
    pick = jax.tree.map(lambda v: v[i], (exact, report, per_million))
    return (layers, width, lookahead, tps[i], reps[i]), pick


# XLA's CPU fusion pass is quadratic in the size of a fusion for every reduction it fuses
# (it counts the reductions already inside, up to five), and the steady-state model's
# gradient is thousands of small reductions (the transposes of its broadcasts): 97% of a
# 300 s compile on a 2-core CPU went there. Unfused, it compiled in about 40 s on a 2-core
# Xeon, and one value and gradient runs in about 5 ms. The program's size matters as
# much: the steady-state model reads its step times from three mapped calls, not nine
# inlined copies of the step's model, which took the test's search from 200 to 87 s on a
# slower 2-core EPYC. (Other programs, such as the draft and tree
# searches, compile no faster unfused: they keep the default.) Like those searches, it
# also compiles at LLVM's optimisation level 0 on the CPU (`_backend_jit`), but its kernels
# go through XLA's current (MLIR) emitters, against `_backend_jit`'s default and whatever
# XLA_FLAGS say: with the older emitter this unfused program crashed the process while it
# compiled.
_UNFUSED = {"xla_disable_hlo_passes": "fusion", "xla_cpu_use_fusion_emitters": True}


@functools.partial(
    _backend_jit, cpu_options=_UNFUSED, static_argnames=("optimizer", "steps", "restarts")
)
def _gradient_search(problem, key, optimizer, steps, restarts):
    z0 = jax.random.uniform(
        key, (restarts, _dims(problem)), minval=-_INIT_SPREAD, maxval=_INIT_SPREAD
    )
    loss = jax.value_and_grad(lambda z: -_objective(z, problem))

    def one(z):
        def body(carry, _):
            z, state = carry
            value, grad = loss(z)
            grad = jnp.where(jnp.isfinite(grad), grad, 0.0)
            updates, state = optimizer.update(grad, state, z)
            return (optax.apply_updates(z, updates), state), -value

        (z, _), trace = jax.lax.scan(body, (z, optimizer.init(z)), None, length=steps)
        return z, trace

    z, traces = jax.vmap(one)(z0)
    designs, picks = jax.vmap(lambda zi: _best_of_candidates(zi, problem))(z)
    return designs, picks, traces


@functools.partial(jax.jit, static_argnames=("points",))
def _random_search(problem, key, points):
    z = jax.random.uniform(
        key, (points, _dims(problem)), minval=-_RANDOM_SPREAD, maxval=_RANDOM_SPREAD
    )

    def one(zi):
        layers, width, lookahead, tps, reps = _rounded(zi, problem)
        # One evaluation per point: its first (floor tp, floor replicas) rounding.
        exact, report, per_million = _exact(problem, layers, width, lookahead, tps[0], reps[0])
        return (layers, width, lookahead, tps[0], reps[0]), (exact, report, per_million)

    return jax.lax.map(one, z, batch_size=64)


def _largest_power_of_two(limit: float) -> int:
    """The largest power of two <= ``limit`` (>= 1; ``inf``: 2**30, which ends the loop)."""
    power = 1
    while power * 2 <= min(limit, 2.0**30):
        power *= 2
    return power


def _problem(deployment, traffic, slo, engine, price, max_tp, max_replicas, max_lookahead):
    if not isinstance(deployment, Deployment):
        raise ValueError(f"deployment must be a Deployment, got {type(deployment).__name__}")
    deployment.validate()
    if max_tp is None:  # 8, or the chips the interconnect joins where fewer
        max_tp = min(
            DEFAULT_MAX_TP,
            _largest_power_of_two(float(deployment.hardware.domain_chips())),
        )
    if not isinstance(deployment.acceptance, SDSLAcceptance):
        raise ValueError(
            "the draft search needs an acceptance that depends on the draft's size: "
            "SDSLAcceptance (e.g. Deployment.create(..., acceptance=SDSLAcceptance.create(...)))"
        )
    if not isinstance(traffic, Traffic):
        raise ValueError(f"traffic must be a Traffic, got {type(traffic).__name__}")
    if not isinstance(slo, SLO):
        raise ValueError(f"slo must be an SLO, got {type(slo).__name__}")
    if not isinstance(price, ChipPrice) or not math.isfinite(float(price.usd_per_hour)):
        raise ValueError("price must be a ChipPrice with a finite usd_per_hour")
    engine = EngineConfig.create() if engine is None else engine
    for name, value, low in (
        ("max_tp", max_tp, 1),
        ("max_replicas", max_replicas, 1),
        ("max_lookahead", max_lookahead, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be a whole number >= {low}, got {value!r}")
    if max_tp & (max_tp - 1):
        raise ValueError(f"max_tp must be a power of two, got {max_tp}")
    problem = domain_problem(deployment.hardware, float(max_tp))
    if problem is not None:
        largest = _largest_power_of_two(float(deployment.hardware.domain_chips()))
        raise ValueError(f"max_tp {max_tp}: {problem}; valid: powers of two up to {largest}")
    target = deployment.target
    return _Problem(
        deployment=deployment,
        traffic=traffic,
        engine=engine.replace(kv_blocks=1.0),  # traced per design
        slo=slo,
        price=price,
        bounds=DraftBounds.create(target, max_gamma=float(max_lookahead)),
        template=DraftTemplate.from_target(target),
        max_tp=jnp.asarray(float(max_tp)),
        max_replicas=jnp.asarray(float(max_replicas)),
        max_lookahead=jnp.asarray(float(max_lookahead)),
        buckets=DEFAULT_BATCH_BUCKETS,
    )


def _result(method, problem, designs, picks, evaluations, history) -> ServingSearchResult:
    exact = np.asarray(picks[0])
    i = int(np.argmax(exact))
    layers, width, lookahead, tp, replicas = (np.asarray(v)[i] for v in designs)
    report = jax.tree.map(lambda v: np.asarray(v)[i], picks[1])
    template = problem.template
    draft = buildable_draft(params_of(jnp.asarray(layers), jnp.asarray(width)), template)
    n_params = float(parameter_count(draft))
    alpha = float(_alpha(problem.deployment, draft))
    return ServingSearchResult(
        method=method,
        goodput_tokens_per_usd=float(exact[i]),
        draft_layers=int(layers),
        draft_d_model=int(width),
        draft_params=n_params,
        acceptance_rate=alpha,
        lookahead=tuple(int(v) for v in lookahead),
        tp=int(tp),
        replicas=int(replicas),
        slo_met=bool(report.slo_met),
        within_approximation=bool(report.within_approximation),
        usd_per_million_tokens=float(np.asarray(picks[2])[i]),
        evaluations=int(evaluations),
        history=np.asarray(history),
    )


def _alpha(deployment, draft):
    from .._acceptance import acceptance_rate

    return acceptance_rate(
        deployment.acceptance, parameter_count(draft), parameter_count(deployment.target)
    )


def optimize_serving(
    deployment: Deployment,
    traffic: Traffic,
    slo: SLO,
    price: ChipPrice,
    *,
    engine: EngineConfig | None = None,
    max_tp: int | None = None,
    max_replicas: int = 16,
    max_lookahead: int = 8,
    steps: int = 150,
    restarts: int = 8,
    optimizer: optax.GradientTransformation | None = None,
    seed: int = 0,
) -> ServingSearchResult:
    """The draft, lookahead per bucket, TP and replicas that maximise goodput per dollar.

    Gradient search on the continuous relaxation (module docstring), then exact scoring of
    the rounded candidates. Jitted as one program (``lax.scan`` over steps, ``vmap`` over
    restarts); compiling it takes a while, running it is fast.

    Args:
        deployment: target, chip and an `SDSLAcceptance` (the draft's size sets its
            acceptance); its ``tp`` is searched, not used.
        traffic: the fleet's traffic (rate and lengths).
        slo: the targets goodput counts against.
        price: `ChipPrice` of one chip (``usd_per_hour`` needed).
        engine: engine limits (its ``kv_blocks`` is derived per design).
        max_tp: largest tensor-parallel degree (a power of two, at most the chips the
            hardware's interconnect joins); ``None``: 8, or fewer where the interconnect
            joins fewer (the H100 NVL's pairs: 2).
        max_replicas: most replicas.
        max_lookahead: largest lookahead of any bucket.
        steps, restarts, optimizer, seed: the search (default ``optax.adam(0.1)``).

    Returns:
        `ServingSearchResult` (``evaluations = steps x restarts + 4 x restarts``).

    Raises:
        ValueError: a deployment without `SDSLAcceptance`, a price without dollars,
            bounds that are not whole numbers, or ``max_tp`` beyond the interconnect.
    """
    problem = _problem(deployment, traffic, slo, engine, price, max_tp, max_replicas, max_lookahead)
    for name, value in (("steps", steps), ("restarts", restarts)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
    optimizer = DEFAULT_OPTIMIZER if optimizer is None else optimizer
    designs, picks, traces = _gradient_search(
        problem, jax.random.PRNGKey(seed), optimizer, steps, restarts
    )
    history = np.max(np.asarray(traces), axis=0)
    return _result(
        "gradient", problem, designs, picks, steps * restarts + _CANDIDATES * restarts, history
    )


def random_serving_search(
    deployment: Deployment,
    traffic: Traffic,
    slo: SLO,
    price: ChipPrice,
    *,
    evaluations: int,
    engine: EngineConfig | None = None,
    max_tp: int | None = None,
    max_replicas: int = 16,
    max_lookahead: int = 8,
    seed: int = 0,
) -> ServingSearchResult:
    """The baseline: ``evaluations`` random whole-numbered designs, the best kept.

    Points are uniform in the relaxation's unconstrained coordinates (so every part of the
    design space is reached), rounded as `optimize_serving` rounds, and scored exactly.
    ``history`` is the running best score.
    """
    problem = _problem(deployment, traffic, slo, engine, price, max_tp, max_replicas, max_lookahead)
    if isinstance(evaluations, bool) or not isinstance(evaluations, int) or evaluations < 1:
        raise ValueError(f"evaluations must be a whole number >= 1, got {evaluations!r}")
    designs, picks = _random_search(problem, jax.random.PRNGKey(seed), evaluations)
    history = np.maximum.accumulate(np.asarray(picks[0]))
    return _result("random", problem, designs, picks, evaluations, history)
