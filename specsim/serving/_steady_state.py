"""A fast, differentiable steady-state model of a continuously batching engine.

Below saturation every arriving request is eventually served, so a replica that receives
``lambda`` requests/s emits ``lambda x E[output tokens]`` tokens/s; what the load changes
is *how long* each request takes, through the step time. The model finds the mean state
of the engine that is consistent with the traffic, then reads latency percentiles off
stated approximations.

**Mean state** (one replica). Let ``B`` be the mean number of decoding sequences. Each
engine step decodes all of them (``lookahead + 1`` verified tokens each when speculating)
and prefills prompt chunks; a sequence emits ``E`` tokens per step (``E = 1`` without
speculation), so a request decodes for ``n = (E[output] - 1) / E`` steps (the first output
token comes with its prefill). With mean step time ``tau``:

* Little's law: ``B = lambda x n x tau``;
* prefill tokens per step: ``P = lambda x E[prompt] x tau = E[prompt] x B / n``;
* the step time is the engine's step at that mix: ``tau = T(B, lookahead(B), P)``.

So every ``B`` fixes ``tau`` and the rate that sustains it in closed form,
``lambda(B) = B / (n x T(B, lookahead(B), E[prompt] B / n))``; the state at a given rate
is the root of ``lambda(B) = lambda``, interpolated on a log grid of ``B`` and refined
by one Newton step whose expansion also gives the root's implicit-function gradient (not
the gradient of the interpolation). The engine's limits bound ``B``: ``max_num_seqs``,
the KV cache (``B`` times the mean resident context, lookahead slots and half a block of
rounding per sequence), ``max_num_batched_tokens`` (verified plus prefill tokens) and the
prefill chunk budget.
The largest ``lambda(B)`` within those bounds is the *saturation rate*; ``load = lambda /
saturation rate``.

**Lookahead per batch bucket.** The decode batch of a step fluctuates around ``B``; the
number of decoding sequences of an M/G/infinity system is Poisson, approximated here by a
normal of mean and variance ``B``, whose mass in each bucket weights that bucket's
lookahead (verified tokens and emitted tokens are averaged with those weights). This keeps
the model smooth in ``B`` and in every bucket's lookahead.

**Latency approximations** (stated, tested against the discrete-event reference):

* TTFT of a prompt of ``I`` tokens = a uniform wait for the running step to end (0 to
  ``tau``) + ``max(1, (Q + I) / C)`` steps of duration ``T(B, lookahead, min(C, I + P))``
  (``T`` in the prefill tokens interpolated linearly between 16 log-spaced evaluations:
  its percentiles within 0.25% of those with ``T`` evaluated at every prompt length),
  where ``C`` is the prefill budget per step left after the decode tokens and ``Q`` the
  mean prefill backlog, Kingman's bound for the slotted queue ``Q' = max(0, Q + A - C)``:
  ``Q = Var[A] / (2 (C - E[A]))`` with ``A`` the compound-Poisson prompt tokens arriving
  per step. Its CDF is a mixture over prompt-length quantile nodes; percentiles invert it
  by bisection.
* TPOT of a request with ``O`` output tokens: lognormal with mean ``tau' / E`` (``tau'``
  the mean step at batch ``B + 1``: a decoding sequence sees itself and, Poisson, ``B``
  others on average) and a squared coefficient of variation from three independent
  sources: step-to-step prefill load (steps with and without chunks, share ``q``, averaged
  over the request's ``(O - 1) / E`` steps), the batch
  size over the request's life (Poisson with variance ``B``, time-averaged over one decode
  lifetime: factor 2/3, exact for equal lifetimes) and the number of accepted tokens
  (chain acceptance at the speculator's rate), averaged over output-length nodes; one
  lognormal with that mean and variance gives the percentiles.
* End-to-end latency: a normal per output-length node, mean TTFT + ``(O - 1)`` mean TPOT,
  variances added; the mixture over the nodes matched by one lognormal (mean, variance).

Prompt and output lengths are independent; a request's length quantiles are taken at
fixed probability nodes denser in the upper tail (for p99). Near saturation queues grow
without bound and none of this holds: ``within_approximation`` is ``False`` above
``max_load`` (default 0.6) or when any engine limit is more than ``max_load`` used, and a
load past saturation returns ``feasible = False`` with finite (capped) numbers, never NaN.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax.scipy.special import ndtr, ndtri

from .._deployment import Deployment
from .._fast_jit import _backend_jit
from .._numerics import real_number
from ..speculators import _protocol as _speculators
from ._engine import EngineConfig, SpecPolicy
from ._slo import SLO
from ._step_time import engine_step_time, engine_step_times
from ._traffic import LengthDistribution, Traffic

__all__ = [
    "DEFAULT_MAX_LOAD",
    "LIMIT_NAMES",
    "PERCENTILES",
    "SteadyStateReport",
    "load_curve",
    "max_slo_rate",
    "steady_state",
]

LIMIT_NAMES = (
    "compute",
    "max_num_seqs",
    "kv_cache",
    "max_num_batched_tokens",
    "prefill_chunk_tokens",
)
PERCENTILES = (50.0, 90.0, 99.0)
# Against the discrete-event reference, p90 TTFT stays within ~10% up to load 0.6 and
# drifts to 13-18% at 0.7 (tests/test_serving_agreement.py).
DEFAULT_MAX_LOAD = 0.6

# Probability bins of the length nodes: uniform in the body, finer in the upper tail so
# that p99 latencies are read off more than one node. Each node sits at its bin's middle.
_BODY_EDGES = [0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9]
_BIN_EDGES = np.array([*_BODY_EDGES, 0.93, 0.95, 0.97, 0.98, 0.99, 0.995, 0.998, 1.0])
_NODE_PROBS = (_BIN_EDGES[1:] + _BIN_EDGES[:-1]) / 2.0
_NODE_WEIGHTS = np.diff(_BIN_EDGES)
# Steps of the bisection in log B over [log 1e-6, log(max_num_seqs + 1)] (a range of ~20):
# 26 halve it below one float32 ulp of log B, where further steps change nothing.
_BISECTION_STEPS = 26
# Points of the rate(B) curve, log-spaced from _GRID_LOW_BATCH to the limits' bound (1.97x
# apart for a bound of 256), and one more at _MIN_BATCH (see `_solve`).
_GRID_POINTS = 16
_GRID_LOW_BATCH = 1e-2
# Prefill-token counts at which the TTFT's own prefill step is evaluated (interpolated
# between them): 16 keep every TTFT percentile within 0.25% of the exact evaluation of all
# 57 counts (20,480 random traffics), at a quarter of the cost.
_PREFILL_NODES = 16
# Prompts in the running step and others arriving during it: 0, 1 and >= 2 (lumped).
_OTHERS = 3
_RUNNING = 3
_FACTORIALS = np.array([math.factorial(k) for k in range(_OTHERS)], np.float32)
_QUANTILE_STEPS = 12
_MIN_BATCH = 1e-6
# Lifetime-averaged variance of an M/D/infinity count over one service time, over its
# instantaneous variance: (2 / L^2) int_0^L (L - t)(1 - t / L) dt = 2/3.
_BATCH_AVERAGING = 2.0 / 3.0


@struct.dataclass
class SteadyStateReport:
    """The steady state of a fleet of identical replicas at one traffic (SI units).

    Rates and throughputs are for the whole fleet (``replicas`` replicas, each receiving an
    equal share of the arrivals); batch, step and limit figures are per replica.

    Attributes:
        rate_per_s: arrival rate, requests/s.
        throughput_tokens_per_s: output tokens/s (``rate x E[output]`` when feasible; the
            saturated throughput otherwise).
        goodput_tokens_per_s: output tokens/s of requests meeting both SLO targets.
        slo_attainment: share of requests meeting both targets (TTFT and TPOT independent).
        slo_met: whether both targets hold at the SLO's percentile.
        ttft_p50_s, ttft_p90_s, ttft_p99_s: time to first token percentiles, s.
        tpot_p50_s, tpot_p90_s, tpot_p99_s: time per output token percentiles, s.
        e2e_p50_s, e2e_p90_s, e2e_p99_s: request latency percentiles, s.
        step_s: mean engine step, s.
        decode_batch: mean decoding sequences per replica (``B``).
        lookahead: mean draft tokens per sequence per step (bucket-weighted).
        tokens_per_step: mean tokens a decoding sequence emits per step (``E``).
        prefill_tokens_per_step: mean prompt tokens prefilled per step.
        saturation_rate_per_s: the largest rate the fleet sustains within its limits.
        load: ``rate / saturation rate``.
        limit: index into ``LIMIT_NAMES`` of what sets the saturation rate.
        kv_utilization, seq_utilization, token_utilization: shares of the KV cache,
            ``max_num_seqs`` and ``max_num_batched_tokens`` in use.
        feasible: a steady state exists (load < 1).
        within_approximation: load and every limit's use at most ``max_load``.
    """

    rate_per_s: Any
    throughput_tokens_per_s: Any
    goodput_tokens_per_s: Any
    slo_attainment: Any
    slo_met: Any
    ttft_p50_s: Any
    ttft_p90_s: Any
    ttft_p99_s: Any
    tpot_p50_s: Any
    tpot_p90_s: Any
    tpot_p99_s: Any
    e2e_p50_s: Any
    e2e_p90_s: Any
    e2e_p99_s: Any
    step_s: Any
    decode_batch: Any
    lookahead: Any
    tokens_per_step: Any
    prefill_tokens_per_step: Any
    saturation_rate_per_s: Any
    load: Any
    limit: Any
    kv_utilization: Any
    seq_utilization: Any
    token_utilization: Any
    feasible: Any
    within_approximation: Any

    def to_dict(self) -> dict[str, Any]:
        """Plain Python numbers (the limit as its name), for JSON and tables."""
        out: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            value = np.asarray(getattr(self, name))
            if name == "limit":
                out[name] = LIMIT_NAMES[int(value)]
            elif value.dtype == bool:
                out[name] = bool(value)
            else:
                out[name] = float(value)
        return out


# --------------------------------------------------------------------------- lengths


def length_nodes(dist: LengthDistribution):
    """``(tokens, weights)`` at fixed probability nodes of a length distribution.

    Lognormal: exact quantiles (differentiable in the mean and sigma); empirical: sample
    quantiles; fixed: the length at every node.
    """
    probs = jnp.asarray(_NODE_PROBS, jnp.float32)
    weights = jnp.asarray(_NODE_WEIGHTS, jnp.float32)
    mean = jnp.asarray(dist.mean_tokens, jnp.float32)
    if dist.kind == "lognormal":
        sigma = jnp.asarray(dist.sigma, jnp.float32)
        mu = jnp.log(mean) - sigma**2 / 2.0
        tokens = jnp.exp(mu + sigma * ndtri(probs))
    elif dist.kind == "empirical":
        tokens = jnp.quantile(jnp.asarray(dist.tokens, jnp.float32), probs)
    else:
        tokens = jnp.broadcast_to(mean, probs.shape)
    return jnp.maximum(tokens, 1.0), weights


def _moments(tokens, weights):
    return jnp.sum(weights * tokens), jnp.sum(weights * tokens**2)


# --------------------------------------------------------------------------- policy


def bucket_weights(policy: SpecPolicy, batch):
    """Share of steps whose decode batch falls in each bucket, batch ~ Normal(B, B).

    A continuity-corrected normal approximation of the Poisson number of decoding
    sequences; smooth in ``batch``.
    """
    bounds = jnp.asarray(policy.bucket_max_batch, jnp.float32) + 0.5
    spread = jnp.sqrt(jnp.maximum(batch, 1e-6))
    # The weights are differences of CDF values: the CDF's absolute error is what counts,
    # and erf's (under 2e-7) is float32 rounding, at a third of `ndtr`'s cost (which keeps
    # relative precision in the far tail with erfc).
    below = 0.5 + 0.5 * jax.lax.erf((bounds - batch) / (spread * math.sqrt(2.0)))
    cdf = jnp.concatenate([jnp.zeros(1), below, jnp.ones(1)])
    # Batch 0 (nothing decoding) is no step of the policy: renormalise over batch >= 1.
    return jnp.diff(cdf) / jnp.maximum(1.0 - cdf[0], 1e-12)


def _bucket_tokens(policy: SpecPolicy, deployment: Deployment):
    """Emitted tokens per sequence and their second moment at each bucket's lookahead."""
    if policy.speculator is None:
        one = jnp.ones(len(policy.bucket_max_batch) + 1, jnp.float32)
        return one, one
    lookahead = jnp.asarray(policy.lookahead, jnp.float32)
    emitted = jax.vmap(lambda g: _speculators.emitted_tokens(policy.speculator, deployment, g))(
        lookahead
    )
    alpha = _speculators.report_acceptance_rate(policy.speculator, deployment)
    second = jax.vmap(lambda g: _chain_second_moment(alpha, g))(lookahead)
    return emitted, second


def _lookahead_mix(x: _Inputs, batch):
    """``(mean lookahead, mean emitted tokens, emitted-token variance)`` at batch ``B``."""
    if x.policy.speculator is None:
        zero = jnp.zeros_like(batch)
        return zero, zero + 1.0, zero
    weights = bucket_weights(x.policy, batch)
    lookahead = jnp.asarray(x.policy.lookahead, jnp.float32)
    mean_e = jnp.sum(weights * x.bucket_emitted)
    variance = jnp.maximum(jnp.sum(weights * x.bucket_second) - mean_e**2, 0.0)
    return jnp.sum(weights * lookahead), mean_e, variance


def _chain_second_moment(alpha, gamma):
    """E[X^2] of the tokens a chain of ``gamma`` drafts emits, i.i.d. acceptance ``alpha``.

    ``P(X >= k) = alpha^(k-1)`` for ``k = 1 .. gamma + 1``, so ``E[X^2] = sum (2k - 1)
    alpha^(k-1)``; summed in closed form with ``n = gamma + 1`` (real ``gamma``).
    """
    a = jnp.clip(alpha, 1e-6, 1.0 - 1e-6)
    n = gamma + 1.0
    an = a**n
    geometric = (1.0 - an) / (1.0 - a)
    weighted = a * (1.0 - n * a ** (n - 1.0) + (n - 1.0) * an) / (1.0 - a) ** 2
    return 2.0 * weighted + geometric


# --------------------------------------------------------------------------- the state


@struct.dataclass
class _Inputs:
    """What `_state_at` needs besides ``B`` (all traced)."""

    deployment: Deployment
    policy: SpecPolicy
    engine: EngineConfig
    prompt_tokens: Any
    prompt_weights: Any
    output_tokens: Any
    output_weights: Any
    bucket_emitted: Any  # tokens per sequence per step at each bucket's lookahead
    bucket_second: Any  # their second moment
    lengths: Any  # `_lengths` of the nodes


def _lengths(prompt_tokens, prompt_weights, output_tokens, output_weights):
    prompt_mean, prompt_m2 = _moments(prompt_tokens, prompt_weights)
    output_mean, _ = _moments(output_tokens, output_weights)
    decoded = jnp.maximum(output_tokens - 1.0, 0.0)
    decoded_mean, decoded_m2 = _moments(decoded, output_weights)
    # Time-weighted mean context of a decoding sequence: prompt + half its decoded tokens,
    # weighted by its decode length (prompt and output independent).
    context = prompt_mean + decoded_m2 / (2.0 * jnp.maximum(decoded_mean, 1e-6))
    return prompt_mean, prompt_m2, output_mean, jnp.maximum(decoded_mean, 1e-3), context


def _mean_lengths(x: _Inputs):
    return x.lengths


def _budget(x: _Inputs, batch, lookahead):
    """Prefill tokens a step can take beside ``batch`` decoding sequences (>= 1)."""
    e = x.engine
    left = e.max_num_batched_tokens - batch * (lookahead + 1.0)
    return jnp.maximum(jnp.minimum(e.prefill_chunk_tokens, left), 1.0)


@struct.dataclass
class _State:
    """The engine's mean state at a mean decode batch ``B`` (one replica)."""

    rate: Any  # arrivals/s that sustain B
    step_s: Any  # mean step time
    plain_s: Any  # a step without prefill
    mixed_s: Any  # a step with prefill chunks
    prefill_share: Any  # q: share of steps with prefill chunks
    prefill: Any  # mean prefill tokens per step
    budget: Any  # prefill tokens a step can take
    lookahead: Any
    emitted: Any
    emitted_var: Any


def _plain_and_mixed(x: _Inputs, batch, context, chunk, lookahead):
    """Step times without prefill and with ``chunk`` prefill tokens (the decode side, the
    proposal included, shared)."""
    return engine_step_times(
        x.deployment, x.policy.speculator, batch, context, (0.0, chunk), lookahead
    )


def _state_at(x: _Inputs, log_batch) -> _State:
    """The state at ``B = exp(log_batch)``.

    ``B / n`` prompts arrive per step (Little). A step carries prefill with probability
    ``q = 1 - exp(-B / n)`` (Poisson arrivals), then ``P1 = P / q`` tokens, capped at the
    budget (then ``q = P / budget``); the mean step is ``(1 - q) T(B, 0) + q T(B, P1)``,
    which keeps the convexity of the step time in the prefill tokens that ``T(B, P)`` at
    the mean ``P`` would lose.
    """
    batch = jnp.exp(log_batch)
    prompt_mean, _, _, decoded_mean, context = _mean_lengths(x)
    lookahead, emitted, emitted_var = _lookahead_mix(x, batch)
    steps = decoded_mean / emitted
    arrivals = batch / steps
    prefill = prompt_mean * arrivals
    budget = _budget(x, batch, lookahead)
    q = jnp.clip(jnp.maximum(-jnp.expm1(-arrivals), prefill / budget), 1e-12, 1.0)
    chunk = jnp.minimum(prefill / q, budget)
    plain, mixed = _plain_and_mixed(x, batch, context, chunk, lookahead)
    tau = (1.0 - q) * plain + q * mixed
    return _State(
        rate=batch / (steps * tau),
        step_s=tau,
        plain_s=plain,
        mixed_s=mixed,
        prefill_share=q,
        prefill=prefill,
        budget=budget,
        lookahead=lookahead,
        emitted=emitted,
        emitted_var=emitted_var,
    )


def _limits(x: _Inputs, batch):
    """Use of each engine limit at mean decode batch ``batch`` (1 = full)."""
    e = x.engine
    prompt_mean, _, _, decoded_mean, context = _mean_lengths(x)
    lookahead, emitted, _ = _lookahead_mix(x, batch)
    steps = decoded_mean / emitted
    prefill = prompt_mean * batch / steps
    decode_tokens = batch * (lookahead + 1.0)
    kv_tokens = jnp.asarray(e.kv_blocks, jnp.float32) * e.block_size
    kv_used = batch * (context + lookahead + e.block_size / 2.0)
    # Sequences mid-prefill are resident too: about one per step's worth of prompts.
    prefilling = prefill / jnp.maximum(prompt_mean, 1.0)
    return jnp.stack(
        [
            (batch + prefilling) / e.max_num_seqs,
            kv_used / kv_tokens,
            (decode_tokens + prefill) / e.max_num_batched_tokens,
            prefill / e.prefill_chunk_tokens,
        ]
    )


def _max_batch(x: _Inputs):
    """The largest mean decode batch the engine's limits allow (and which binds)."""

    def excess(log_b):
        return jnp.max(_limits(x, jnp.exp(log_b))) - 1.0

    lo = jnp.log(jnp.asarray(_MIN_BATCH, jnp.float32))
    hi = jnp.log(jnp.asarray(x.engine.max_num_seqs, jnp.float32) + 1.0)
    log_b = _bisect(excess, lo, hi, _BISECTION_STEPS)
    return log_b, jnp.argmax(_limits(x, jnp.exp(log_b))) + 1


def _bisect(fn, lo, hi, steps):
    """The crossing of an increasing ``fn`` from < 0 to >= 0 in ``[lo, hi]`` (clamped)."""

    def body(_, bounds):
        a, b = bounds
        mid = (a + b) / 2.0
        up = fn(mid) >= 0.0
        return jnp.where(up, a, mid), jnp.where(up, mid, b)

    a, b = jax.lax.fori_loop(0, steps, body, (lo, hi))
    return (a + b) / 2.0


def _solve(x: _Inputs, rate):
    """The state at ``rate`` per replica, its saturation rate and the binding limit.

    ``rate(B)`` is evaluated on a log grid of ``B`` up to the limits' bound (one ``vmap``;
    `_GRID_POINTS` from `_GRID_LOW_BATCH` and one at `_MIN_BATCH`); its maximum is the
    saturation rate (at an interior maximum, the vertex of the parabola through the three
    points around it, in log-log); the root of ``rate(B) = rate`` is interpolated in
    log-log on the rising part of the curve (below `_MIN_BATCH`, extrapolated as ``rate``
    proportional to ``B``), then refined by one Newton step within the start's grid cell.
    The state at the root is the first-order expansion around the interpolated point (one
    ``jvp``), so its gradient is the implicit-function gradient of the root.
    """
    log_max, limit = _max_batch(x)
    stopped = jax.lax.stop_gradient
    fractions = jnp.linspace(0.0, 1.0, _GRID_POINTS)
    log_lo = jnp.minimum(jnp.log(jnp.asarray(_GRID_LOW_BATCH, jnp.float32)), log_max - 1.0)
    spacing = (log_max - log_lo) / (_GRID_POINTS - 1)
    # One more point far below, at _MIN_BATCH: where a step's prefill share is still large
    # at B = _GRID_LOW_BATCH (long prompts, few decode steps per request), rate(B) bends
    # below the grid, and interpolating down to _MIN_BATCH keeps the start of the Newton
    # step within its cell.
    log_min = jnp.log(jnp.asarray(_MIN_BATCH, jnp.float32))
    log_grid = stopped(jnp.concatenate([log_min[None], log_lo + fractions * (log_max - log_lo)]))
    points = _GRID_POINTS + 1
    log_rates = jnp.log(jax.vmap(lambda lb: _state_at(x, lb).rate)(log_grid))
    peak = jnp.argmax(log_rates)
    compute_bound = peak < points - 1
    limit = jnp.where(compute_bound, 0, limit)
    # (the vertex on the equally spaced part of the grid: a peak at _MIN_BATCH is an end)
    rise, offset = _vertex(log_rates[1:], peak - 1)
    saturation = jnp.exp(log_rates[peak] + rise)
    rising = jnp.where(jnp.arange(points) <= peak, log_rates, log_rates[peak] + 1.0)
    rising = jax.lax.cummax(rising)
    target = jnp.log(jnp.minimum(rate, saturation))
    below = log_grid[0] + (target - rising[0])  # rate proportional to B below _MIN_BATCH
    log_b0 = stopped(jnp.where(target < rising[0], below, jnp.interp(target, rising, log_grid)))

    def at(lb):
        return _state_at(x, lb)

    state, tangent = jax.jvp(at, (log_b0,), (jnp.ones_like(log_b0),))
    # Newton on log rate(log B) = target: value unchanged to second order at a good start.
    slope = jnp.maximum(stopped(tangent.rate / state.rate), 1e-3)
    delta = (target - jnp.log(state.rate)) / slope
    # A trust region of the start's grid cell: near the peak the slope vanishes and a full
    # Newton step would extrapolate the expansion far outside where it holds; nor does it
    # go past the saturation's vertex.
    cell = jnp.where(log_b0 < log_grid[1], log_grid[1] - log_grid[0], spacing)
    top = stopped(log_grid[peak] + offset * spacing)
    delta = jnp.minimum(jnp.clip(delta, -cell, cell), top - log_b0)
    state = jax.tree.map(lambda v, t: v + t * delta, state, tangent)
    log_b = log_b0 + delta
    # d(step)/dB for the batch-size part of the TPOT spread.
    slope_b = tangent.step_s / jnp.exp(log_b0)
    return jnp.exp(log_b), state, slope_b, saturation, limit


def _interpolation(tokens):
    """A step time at every prefill-token count of ``tokens``, read off ``_PREFILL_NODES``
    counts log-spaced from their least to their largest (both exact) and interpolated
    linearly in the tokens between them: the nodes, shape (``_PREFILL_NODES``,), and each
    count's weights on them, shape (``tokens.size``, ``_PREFILL_NODES``); the counts' step
    times are ``(weights @ step_times_at_nodes).reshape(tokens.shape)``."""
    count = _PREFILL_NODES
    stopped = jax.lax.stop_gradient
    log_lo = stopped(jnp.log(jnp.maximum(jnp.min(tokens), 1.0)))
    log_hi = stopped(jnp.maximum(jnp.log(jnp.maximum(jnp.max(tokens), 1.0)), log_lo + 1e-3))
    cell = (log_hi - log_lo) / (count - 1)
    nodes = jnp.exp(log_lo + cell * jnp.arange(count, dtype=jnp.float32))
    # Each count's weights on the nodes (the hat functions of linear interpolation),
    # applied by a matrix product: XLA materialises the step times for it, where it
    # fuses them into a gather and recomputes them for every count read.
    at = jnp.maximum(tokens, 1.0).reshape(-1)
    index = jnp.clip(jnp.floor((jnp.log(at) - log_lo) / cell), 0, count - 2)
    low = jnp.exp(log_lo + cell * index)
    share = (at - low) / (low * jnp.expm1(cell))
    nodes_index = jnp.arange(count, dtype=jnp.float32)[None, :]
    hat = jnp.where(nodes_index == index[:, None], 1.0 - share[:, None], 0.0) + jnp.where(
        nodes_index == index[:, None] + 1.0, share[:, None], 0.0
    )
    return nodes, hat


def _vertex(values, peak):
    """``(rise, offset)`` of the vertex of the parabola through ``values[peak - 1 : peak +
    2]`` (equally spaced, ``values[peak]`` the largest): how far it rises above
    ``values[peak]`` and where it lies, in cells from ``peak`` (within +-1/2); ``(0, 0)``
    when ``peak`` is at either end (or outside ``values``)."""
    n = values.shape[0]
    centre = values[jnp.clip(peak, 0, n - 1)]
    left = values[jnp.clip(peak - 1, 0, n - 1)]
    right = values[jnp.clip(peak + 1, 0, n - 1)]
    curvature = jnp.minimum(left - 2.0 * centre + right, -1e-12)  # < 0 at a maximum
    offset = jnp.clip((left - right) / (2.0 * curvature), -0.5, 0.5)
    rise = -((left - right) ** 2) / (8.0 * curvature)
    interior = (peak > 0) & (peak < n - 1)
    # With the largest value at the centre the parabola rises by at most 1/8 of the
    # larger drop beside it (a cap that only guards the flat case's rounding).
    cap = 0.125 * jnp.maximum(centre - left, centre - right)
    rise = jnp.where(interior, jnp.clip(rise, 0.0, cap), 0.0)
    return rise, jnp.where(interior, offset, 0.0)


# --------------------------------------------------------------------------- latencies


def _quantile(cdf, probs, lo, hi, cdf_lo=0.0, cdf_hi=1.0):
    """Where a non-decreasing ``cdf`` reaches each of ``probs`` within ``[lo, hi]``.

    Bisection to 1/2^12 of the range, then linear interpolation inside the last bracket.
    The CDF at the bracket's ends is carried through the bisection (``cdf_lo`` and
    ``cdf_hi`` at the start), so each step costs one evaluation and none is repeated.
    """

    def one(p):
        def body(_, bracket):
            a, b, fa, fb = bracket
            mid = (a + b) / 2.0
            f_mid = cdf(mid)
            up = f_mid >= p
            return (
                jnp.where(up, a, mid),
                jnp.where(up, mid, b),
                jnp.where(up, fa, f_mid),
                jnp.where(up, f_mid, fb),
            )

        start = (lo, hi, jnp.asarray(cdf_lo, lo.dtype), jnp.asarray(cdf_hi, lo.dtype))
        a, b, fa, fb = jax.lax.fori_loop(0, _QUANTILE_STEPS, body, start)
        share = jnp.clip((p - fa) / jnp.maximum(fb - fa, 1e-12), 0.0, 1.0)
        return a + share * (b - a)

    return jax.vmap(one)(probs)


def _latencies(x: _Inputs, batch, s: _State, slope_b, rate, slo: SLO):
    """TTFT / TPOT / e2e percentiles and SLO attainment at the state ``s``."""
    _, prompt_m2, _, _, context = _mean_lengths(x)
    tau, emitted = s.step_s, s.emitted

    # TTFT = the rest of the step running at arrival + the prompt's own prefill step(s).
    # The running step is size-biased (hit with probability proportional to its duration);
    # it carries j = 0, 1, >= 2 prompts (Poisson, mean rate x tau; priced at j mean
    # prompts). The k others arriving during it (Poisson, mean rate x its duration) are
    # prefilled with the prompt; Kingman's backlog of the slotted prefill queue and half
    # the others go first when the budget is exceeded.
    prompt_mean = jnp.sum(x.prompt_weights * x.prompt_tokens)
    work_var = rate * tau * prompt_m2
    backlog = work_var / (2.0 * jnp.maximum(s.budget - s.prefill, 1e-3 * s.budget))
    others = jnp.arange(_OTHERS, dtype=jnp.float32)  # (K,)

    def poisson(mean, n):  # P(0), .., P(n - 2), P(>= n - 1) of a Poisson count
        k = jnp.arange(n, dtype=jnp.float32).reshape((1,) * jnp.ndim(mean) + (n,))
        factorial = jnp.asarray(_FACTORIALS[:n]).reshape(k.shape)
        p = jnp.exp(-mean[..., None]) * mean[..., None] ** k / factorial
        return p.at[..., -1].set(1.0 - jnp.sum(p[..., :-1], axis=-1))

    prompts = x.prompt_tokens[:, None] + others[None, :] * prompt_mean  # (N, K)
    own_nodes, own_hat = _interpolation(jnp.minimum(s.budget, prompts))
    # A decoding sequence is in every step it waits for, with B others on average (the
    # Palm view of a Poisson population): its steps have batch B + 1, not B.
    chunk = jnp.minimum(s.prefill / s.prefill_share, s.budget)
    # Every step time read below in one mapped call (one copy of the step's model for XLA
    # to compile, not one per use): the running step with j = 0, 1, 2 prompts and the
    # prompt's own prefill step at the interpolation nodes, at batch B; the tagged
    # sequence's plain and mixed steps at B + 1.
    running_counts = jnp.minimum(s.budget, jnp.arange(_RUNNING) * prompt_mean)  # (J,)
    counts = jnp.concatenate([running_counts, own_nodes, jnp.stack([0.0, chunk])])
    at_batch = jnp.concatenate(
        [jnp.broadcast_to(batch, (_RUNNING + _PREFILL_NODES,)), jnp.stack([batch + 1.0] * 2)]
    )
    steps = jax.vmap(
        lambda b, p: engine_step_time(x.deployment, x.policy.speculator, b, context, p, s.lookahead)
    )(at_batch, counts)
    running = steps[:_RUNNING]  # (J,)
    own_step = (own_hat @ steps[_RUNNING : _RUNNING + _PREFILL_NODES]).reshape(prompts.shape)
    tagged = steps[-2:]
    running_weights = poisson(rate * tau, _RUNNING) * running
    running_weights = running_weights / jnp.sum(running_weights)
    poisson_others = poisson(rate * running, _OTHERS)  # (J, K)
    ahead = backlog + x.prompt_tokens[:, None] + others[None, :] * prompt_mean / 2.0
    prefill_steps = jnp.maximum(1.0, ahead / s.budget)
    base = (prefill_steps * own_step)[:, None, :]  # (N, 1, K)
    weights = (
        x.prompt_weights[:, None, None] * running_weights[None, :, None] * poisson_others[None]
    )  # (N, J, K)
    wait = running[None, :, None]
    inverse_wait = 1.0 / wait

    def ttft_cdf(t):
        return jnp.sum(weights * jnp.clip((t - base) * inverse_wait, 0.0, 1.0))

    probs = jnp.asarray(PERCENTILES, jnp.float32) / 100.0
    # (below every base no term has started; above every base + wait all have ended)
    ttft_q = _quantile(
        ttft_cdf, probs, jnp.min(base), jnp.max(base) + jnp.max(running), 0.0, jnp.sum(weights)
    )
    ttft_mean = jnp.sum(weights * (base + wait / 2.0))
    ttft_var = jnp.sum(weights * ((base + wait / 2.0) ** 2 + wait**2 / 12.0)) - ttft_mean**2

    # TPOT per output-length node: lognormal around tau / E.
    decoded = jnp.maximum(x.output_tokens - 1.0, 0.0)
    has_tpot = decoded >= 1.0
    w_out = jnp.where(has_tpot, x.output_weights, 0.0)
    w_out = w_out / jnp.maximum(jnp.sum(w_out), 1e-12)
    node_steps = jnp.maximum(decoded / emitted, 1.0)
    share = jnp.clip(s.prefill_share, 0.0, 1.0)
    tau_tagged = (1.0 - share) * tagged[0] + share * tagged[1]
    tpot_mean = tau_tagged / emitted
    step_var = s.prefill_share * (1.0 - s.prefill_share) * (s.mixed_s - s.plain_s) ** 2
    batch_var = _BATCH_AVERAGING * slope_b**2 * batch
    cv2 = (step_var / node_steps + batch_var) / tau**2 + s.emitted_var / (emitted**2 * node_steps)
    # One lognormal matched to the mixture's mean and variance (every node has mean
    # tau' / E; closed-form quantiles instead of a bisection over a mixture of normals).
    z = ndtri(probs)
    tpot_sigma = jnp.sqrt(jnp.log1p(jnp.sum(w_out * cv2)))
    tpot_mu = jnp.log(tpot_mean) - tpot_sigma**2 / 2.0
    tpot_q = jnp.exp(tpot_mu + tpot_sigma * z)

    def tpot_cdf(log_t):
        return ndtr((log_t - tpot_mu) / tpot_sigma)

    # End-to-end: a normal per output node (TTFT + decode), their mixture matched by one
    # lognormal (the output length's spread dominates it).
    e2e_mean = ttft_mean + decoded * tpot_mean
    e2e_var = jnp.maximum(ttft_var, 0.0) + (decoded * tpot_mean) ** 2 * cv2
    w = x.output_weights
    mean = jnp.sum(w * e2e_mean)
    variance = jnp.maximum(jnp.sum(w * (e2e_var + e2e_mean**2)) - mean**2, 0.0)
    e2e_sigma = jnp.sqrt(jnp.log1p(variance / mean**2))
    e2e_q = mean * jnp.exp(-(e2e_sigma**2) / 2.0 + e2e_sigma * z)

    ttft_ok = jnp.where(jnp.isinf(slo.ttft_s), 1.0, ttft_cdf(jnp.minimum(slo.ttft_s, 1e30)))
    tpot_ok = jnp.where(
        jnp.isinf(slo.tpot_s), 1.0, tpot_cdf(jnp.log(jnp.minimum(slo.tpot_s, 1e30)))
    )
    return ttft_q, tpot_q, e2e_q, ttft_ok, tpot_ok


# --------------------------------------------------------------------------- front door


def evaluate(
    deployment: Deployment,
    policy: SpecPolicy,
    traffic: Traffic,
    engine: EngineConfig,
    slo: SLO,
    replicas,
    max_load: float = DEFAULT_MAX_LOAD,
) -> tuple[SteadyStateReport, Any]:
    """The model's body: the report and the SLO attainment as if the load were stable.

    The second output is smooth through saturation (the report's attainment is 0 there),
    for optimisers. Inputs are not validated (they may be traced).
    """
    prompt_tokens, prompt_weights = length_nodes(traffic.prompt)
    output_tokens, output_weights = length_nodes(traffic.output)
    bucket_emitted, bucket_second = _bucket_tokens(policy, deployment)
    x = _Inputs(
        deployment=deployment,
        policy=policy,
        engine=engine,
        prompt_tokens=prompt_tokens,
        prompt_weights=prompt_weights,
        output_tokens=output_tokens,
        output_weights=output_weights,
        bucket_emitted=bucket_emitted,
        bucket_second=bucket_second,
        lengths=_lengths(prompt_tokens, prompt_weights, output_tokens, output_weights),
    )
    replicas = jnp.asarray(replicas, jnp.float32)
    rate = jnp.asarray(traffic.rate_per_s, jnp.float32)
    rate_replica = rate / replicas
    batch, state, slope_b, saturation, limit = _solve(x, rate_replica)
    load = rate_replica / saturation
    feasible = load < 1.0
    served = jnp.minimum(rate_replica, saturation)
    ttft, tpot, e2e, ttft_ok, tpot_ok = _latencies(x, batch, state, slope_b, served, slo)
    limits = _limits(x, batch)
    output_mean = jnp.sum(output_weights * output_tokens)
    throughput = served * replicas * output_mean
    p = slo.percentile / 100.0
    slo_met = feasible & (ttft_ok >= p) & (tpot_ok >= p)
    within = feasible & (load <= max_load) & (jnp.max(limits) <= max_load)
    attainment = jnp.where(feasible, ttft_ok * tpot_ok, 0.0)
    report = SteadyStateReport(
        rate_per_s=rate,
        throughput_tokens_per_s=throughput,
        goodput_tokens_per_s=throughput * attainment,
        slo_attainment=attainment,
        slo_met=slo_met,
        ttft_p50_s=ttft[0],
        ttft_p90_s=ttft[1],
        ttft_p99_s=ttft[2],
        tpot_p50_s=tpot[0],
        tpot_p90_s=tpot[1],
        tpot_p99_s=tpot[2],
        e2e_p50_s=e2e[0],
        e2e_p90_s=e2e[1],
        e2e_p99_s=e2e[2],
        step_s=state.step_s,
        decode_batch=batch,
        lookahead=state.lookahead,
        tokens_per_step=state.emitted,
        prefill_tokens_per_step=state.prefill,
        saturation_rate_per_s=saturation * replicas,
        load=load,
        limit=limit,
        kv_utilization=limits[1],
        seq_utilization=limits[0],
        token_utilization=limits[2],
        feasible=feasible,
        within_approximation=within,
    )
    return report, ttft_ok * tpot_ok


@functools.partial(_backend_jit, static_argnames=("max_load",), stored="steady_state")
def _steady_state(
    deployment: Deployment,
    policy: SpecPolicy,
    traffic: Traffic,
    engine: EngineConfig,
    slo: SLO,
    replicas,
    max_load: float = DEFAULT_MAX_LOAD,
) -> SteadyStateReport:
    """The jitted core (inputs validated by `steady_state`; may be traced)."""
    return evaluate(deployment, policy, traffic, engine, slo, replicas, max_load)[0]


def steady_state(
    deployment: Deployment,
    policy: SpecPolicy,
    traffic: Traffic,
    engine: EngineConfig | None = None,
    slo: SLO | None = None,
    *,
    replicas: float = 1.0,
    max_load: float = DEFAULT_MAX_LOAD,
) -> SteadyStateReport:
    """Throughput, latency percentiles and SLO goodput of an engine at a traffic.

    Jitted and differentiable in every traced leaf (rates, lengths, lookaheads, engine
    limits, hardware, tp, replicas); ``vmap`` it over stacked traffics for sweeps. See the
    module docstring for the model and its approximations.

    Args:
        deployment: target, chip, tensor parallelism and acceptance (its workload is not
            used: the traffic sets lengths, the engine the batch).
        policy: the `SpecPolicy` (``SpecPolicy.off()`` for plain decoding).
        traffic: a Poisson `Traffic` (its rate is for the whole fleet).
        engine: the `EngineConfig` (default ``EngineConfig.create()``); ``kv_blocks`` is
            derived from memory when unset.
        slo: the `SLO` (default: no targets).
        replicas: identical engine replicas sharing the traffic evenly (real, >= 1).
        max_load: the load (and limit use) above which ``within_approximation`` is False.

    Returns:
        `SteadyStateReport`.

    Raises:
        ValueError: an invalid deployment, policy, traffic, engine or SLO, ``replicas < 1``
            or ``max_load`` outside (0, 1).

    Examples:
        >>> import specsim
        >>> from specsim.serving import SLO, SpecPolicy, Traffic, steady_state
        >>> d = specsim.Deployment.create("llama-3-8b", "h100", acceptance=0.7)
        >>> r = steady_state(d, SpecPolicy.off(), Traffic.poisson(2.0, 512, 128),
        ...                  slo=SLO.create(ttft_s=0.5, tpot_s=0.05))
        >>> round(float(r.throughput_tokens_per_s)), bool(r.within_approximation)
        (256, True)
    """
    deployment, policy, traffic, engine, slo = check_inputs(
        deployment, policy, traffic, engine, slo
    )
    replicas, max_load = _replicas(replicas), real_number(max_load)
    if max_load is None or not 0 < max_load < 1:
        raise ValueError(f"max_load must be in (0, 1), got {max_load!r}")
    return _steady_state(deployment, policy, traffic, engine, slo, replicas, max_load)


def _replicas(replicas) -> float:
    """``replicas`` as a float: a real number >= 1 (``ValueError`` otherwise)."""
    number = real_number(replicas)
    if number is None or not (math.isfinite(number) and number >= 1):
        raise ValueError(f"replicas must be a number >= 1, got {replicas!r}")
    return number


def check_inputs(deployment, policy, traffic, engine, slo):
    """Validates and completes the inputs of `steady_state` (``ValueError``)."""
    if not isinstance(deployment, Deployment):
        raise ValueError(f"deployment must be a Deployment, got {type(deployment).__name__}")
    deployment.validate()
    if not isinstance(policy, SpecPolicy):
        raise ValueError(f"policy must be a SpecPolicy, got {type(policy).__name__}")
    if policy.speculator is not None:
        _speculators.validate_speculation(policy.speculator, deployment, 1.0)
    if not isinstance(traffic, Traffic):
        raise ValueError(
            f"traffic must be a Traffic (Traffic.poisson or Traffic.from_trace), "
            f"got {type(traffic).__name__}"
        )
    engine = EngineConfig.create() if engine is None else engine
    if not isinstance(engine, EngineConfig):
        raise ValueError(f"engine must be an EngineConfig, got {type(engine).__name__}")
    engine = engine.resolve(deployment, policy)
    slo = SLO.create() if slo is None else slo
    if not isinstance(slo, SLO):
        raise ValueError(f"slo must be an SLO, got {type(slo).__name__}")
    return deployment, policy, traffic, engine, slo


_RATE_STEPS = 24


@functools.partial(_backend_jit, static_argnames=("max_load",), stored="max_slo_rate")
def _max_slo_rate(deployment, policy, traffic, engine, slo, replicas, max_load=DEFAULT_MAX_LOAD):
    """Bisection between 1e-4 and 0.999 of the saturation rate, in one loop whose body is
    the only call of the model (XLA compiles one copy of a program per call site; three
    took three times as long): step 0 reads the saturation rate at the traffic's own rate
    (it does not depend on the rate), step 1 tries the lowest rate, the rest bisect."""

    def body(i, carry):
        lo, hi, saturation, lowest_fails = carry
        first, bisecting = i == 0, i > 1
        log_rate = jnp.where(i == 1, lo, (lo + hi) / 2.0)
        rate = jnp.where(first, traffic.rate_per_s, jnp.exp(log_rate))
        report = _steady_state(
            deployment, policy, traffic.replace(rate_per_s=rate), engine, slo, replicas, max_load
        )
        fails = ~report.slo_met
        top = jnp.log(report.saturation_rate_per_s * 0.999)
        new = (
            jnp.where(first, top + jnp.log(1e-4), jnp.where(bisecting & ~fails, log_rate, lo)),
            jnp.where(first, top, jnp.where(bisecting & fails, log_rate, hi)),
            jnp.where(first, report.saturation_rate_per_s, saturation),
            jnp.where(i == 1, fails, lowest_fails),
        )
        return tuple(jnp.asarray(v, c.dtype) for v, c in zip(new, carry, strict=True))

    zero = jnp.zeros((), jnp.result_type(float))  # float32, or float64 under x64
    start = (zero, zero, zero, jnp.zeros((), bool))
    lo, hi, saturation, lowest_fails = jax.lax.fori_loop(0, _RATE_STEPS + 2, body, start)
    rate = jnp.exp((lo + hi) / 2.0)
    return jnp.where(lowest_fails, 0.0, rate), saturation


def max_slo_rate(
    deployment: Deployment,
    policy: SpecPolicy,
    traffic: Traffic,
    engine: EngineConfig | None = None,
    slo: SLO | None = None,
    *,
    replicas: float = 1.0,
) -> tuple[float, float]:
    """The largest arrival rate at which the SLO holds (DistServe's goodput rate).

    Bisection in log rate (24 steps, 0.04% of the range) between 1e-4 and 0.999 of the
    saturation rate on `SteadyStateReport.slo_met`, which falls with the rate (latencies
    grow with load). The traffic's own rate is not used; its lengths are.

    Returns:
        ``(rate, saturation rate)`` in requests/s for the fleet; the rate is ``0.0`` when
        no load meets the SLO (an infeasible SLO: e.g. a TTFT target below one prefill).
        Rates above ``DEFAULT_MAX_LOAD x saturation`` are beyond the approximation.

    Raises:
        ValueError: as `steady_state`.

    Examples:
        >>> import specsim
        >>> from specsim.serving import SLO, SpecPolicy, Traffic
        >>> d = specsim.Deployment.create("llama-3-8b", "h100", acceptance=0.7)
        >>> rate, saturation = max_slo_rate(d, SpecPolicy.off(), Traffic.poisson(1.0, 512, 128),
        ...                                 slo=SLO.create(ttft_s=1e-3))
        >>> rate  # no load meets a 1 ms TTFT
        0.0
    """
    deployment, policy, traffic, engine, slo = check_inputs(
        deployment, policy, traffic, engine, slo
    )
    replicas = _replicas(replicas)
    rate, saturation = _max_slo_rate(deployment, policy, traffic, engine, slo, replicas)
    return float(rate), float(saturation)


@functools.partial(_backend_jit, static_argnames=("max_load",), stored="over_rates")
def _over_rates(deployment, policy, traffic, engine, slo, replicas, rates, max_load):
    def at(rate):
        return _steady_state(
            deployment, policy, traffic.replace(rate_per_s=rate), engine, slo, replicas, max_load
        )

    return jax.vmap(at)(rates)


def load_curve(
    deployment: Deployment,
    policies: dict[str, SpecPolicy],
    traffic: Traffic,
    engine: EngineConfig | None = None,
    slo: SLO | None = None,
    *,
    loads=None,
    replicas: float = 1.0,
    max_load: float = DEFAULT_MAX_LOAD,
):
    """Throughput and latency over a range of arrival rates, one row per (policy, rate).

    The rates are ``loads`` (fractions of the plain engine's saturation rate, default 24
    points from 0.02 to 0.98) times the saturation rate of the first policy, so every
    policy is compared at the same rates; one ``vmap``-ed evaluation per policy.

    Returns:
        A pandas DataFrame: ``policy``, ``load_of_first``, and every `SteadyStateReport`
        field (``limit`` as its name).

    Examples:
        >>> import specsim
        >>> from specsim.serving import SpecPolicy, Traffic
        >>> d = specsim.Deployment.create("llama-3-8b", "h100", acceptance=0.7)
        >>> frame = load_curve(d, {"plain": SpecPolicy.off()}, Traffic.poisson(1.0, 512, 128),
        ...                    loads=[0.1, 0.5])
        >>> frame[["load_of_first", "within_approximation"]].values.tolist()
        [[0.1, True], [0.5, True]]
    """
    import pandas as pd

    if not policies:
        raise ValueError("policies must name at least one SpecPolicy")
    loads = np.linspace(0.02, 0.98, 24) if loads is None else np.asarray(loads, np.float64)
    if loads.ndim != 1 or not np.all((loads > 0) & np.isfinite(loads)):
        raise ValueError(f"loads must be positive fractions of saturation, got {loads}")
    rows = []
    first = None
    for name, policy in policies.items():
        d, p, t, e, s = check_inputs(deployment, policy, traffic, engine, slo)
        if first is None:
            first = float(
                _steady_state(d, p, t, e, s, float(replicas), max_load).saturation_rate_per_s
            )
        rates = jnp.asarray(loads * first, jnp.float32)
        report = _over_rates(d, p, t, e, s, float(replicas), rates, max_load)
        for i, load in enumerate(loads):
            row = jax.tree.map(lambda v, i=i: v[i], report).to_dict()
            rows.append({"policy": name, "load_of_first": float(load), **row})
    return pd.DataFrame(rows)
