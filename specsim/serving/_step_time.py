"""Time of one engine step, from specsim's cost model, traced and tabulated.

One step of a continuously batching engine, as vLLM V1 runs it with speculation: the
speculator proposes ``k`` tokens for each of the ``b`` decoding sequences (its `proposal`
over batch ``b`` at their mean context), then *one* target pass verifies ``k + 1`` tokens per
decoding sequence and prefills ``p`` prompt tokens (chunks of waiting prompts) together:
the weights are read once, matmul FLOPs and activations follow the total tokens, attention
and KV traffic add up over the parts. The speculator also prefills the chunk (its
`prefill_s`) and the fixed speculation overhead is paid, both only when ``k > 0``. With
``k = 0`` the step is a plain mixed decode + prefill pass.

* `engine_step_time` is that time as a traced JAX function of ``(b, context, p, k)``: the
  steady-state model calls it directly (differentiable in every deployment leaf).
* `StepTimeModel.build` evaluates it once, ``vmap``-ed over a grid of ``b x context x p x
  k``, into a NumPy table; `StepTimeModel.step_s` interpolates it (multilinear in ``b``,
  context and ``p``; exact at whole ``k``) for the discrete-event simulator, whose Python
  loop cannot afford a JAX call per step.
* Tokens per step: `StepTimeModel.emitted_tokens` holds the expected tokens per decoding
  sequence at each whole lookahead (the speculator's `emitted_tokens`), and
  `StepTimeModel.survival` the probabilities ``P(tokens >= j + 1) = E(j) - E(j - 1)`` that the
  simulator samples from (for a chain, acceptance of position ``j`` needs all before it, so
  these differences are exactly the survival function; n-gram's miss probability is in
  them too).

Approximations (stated, small at serving sizes): the attention cost of decoding sequences
is linear in their context, so their mean context prices their sum exactly (sliding-window
layers excepted); a step's prefill chunks are priced as one sequence starting at context
0 (the attention of a chunk over its own prompt's earlier chunks is left out, a few percent
of a long prompt's FLOPs); n-gram's ragged verification is priced at its expected width.
"""

from __future__ import annotations

import bisect
import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from .._cost import forward_cost, pass_time
from .._deployment import Deployment
from .._throughput import speculation_overhead_s
from .._workload import Workload
from ..speculators import _protocol as _speculators
from ._engine import EngineConfig, SpecPolicy

__all__ = ["StepTimeModel", "emitted_tokens", "engine_step_time", "engine_step_times"]


def engine_step_time(
    deployment: Deployment,
    speculator,
    decode_seqs,
    context,
    prefill_tokens,
    lookahead,
    smooth: float | None = None,
):
    """Wall time of one engine step, s (traced; ``vmap`` it over grids).

    Args:
        deployment: target, chip, ``tp``, acceptance (its ``workload`` is not used).
        speculator: any speculator of ``specsim.speculators``, a draft `TransformerSpec`, or
            ``None`` (plain decoding; ``lookahead`` is then ignored).
        decode_seqs: sequences decoding in this step, ``b`` >= 0.
        context: their mean KV-cache length, tokens.
        prefill_tokens: prompt tokens prefilled in the same pass, ``p`` >= 0.
        lookahead: draft tokens per decoding sequence, ``k`` >= 0 (real).
        smooth: as in ``specsim.step_time``.

    Returns:
        Step time, s (a scalar, or the broadcast shape of the inputs under ``vmap``).

    Examples:
        >>> import specsim
        >>> d = specsim.Deployment.create("llama-3-8b", "h100", acceptance=0.7)
        >>> plain = engine_step_time(d, None, 32.0, 1024.0, 0.0, 0.0)
        >>> draft = specsim.models.get("llama-68m")
        >>> spec = engine_step_time(d, draft, 32.0, 1024.0, 0.0, 3.0)
        >>> 1.0 < float(spec / plain) < 2.0  # verifying 4 tokens per sequence + drafting
        True
    """
    return engine_step_times(
        deployment, speculator, decode_seqs, context, (prefill_tokens,), lookahead, smooth
    )[0]


def engine_step_times(
    deployment: Deployment,
    speculator,
    decode_seqs,
    context,
    prefills: tuple,
    lookahead,
    smooth: float | None = None,
) -> tuple:
    """`engine_step_time` at each prefill-token count of the tuple ``prefills``, with the
    decode side (the speculator's proposal, the speculation overhead, the decode's cost)
    computed once for all of them, and one program mapped over the counts (not one per
    count, for XLA to compile). With several counts, each step time has the counts'
    common broadcast shape.

    Examples:
        >>> import specsim
        >>> d = specsim.Deployment.create("llama-3-8b", "h100", acceptance=0.7)
        >>> plain, mixed = engine_step_times(d, None, 32.0, 1024.0, (0.0, 256.0), 0.0)
        >>> float(mixed) > float(plain) == float(engine_step_time(d, None, 32.0, 1024.0, 0.0, 0.0))
        True
    """
    d = deployment
    target = d.target
    b = jnp.asarray(decode_seqs, jnp.float32)
    context = jnp.asarray(context, jnp.float32)
    decoding = jnp.clip(b, 0.0, 1.0)  # a step without decodes drafts nothing
    if speculator is None:
        verify_tokens, extra_context = jnp.ones((), jnp.float32), 0.0
        speculating = jnp.zeros((), jnp.float32)
        drafting_s = jnp.zeros((), jnp.float32)
    else:
        k = jnp.asarray(lookahead, jnp.float32)
        speculating = jnp.clip(k, 0.0, 1.0)
        verify_tokens, extra = _speculators.verification(speculator, k)
        extra_context = 0.0 if extra is None else extra
        at_decode = d.replace(
            workload=Workload(batch=b, prompt_tokens=context, generate_tokens=1.0)
        )
        contexts = jnp.reshape(context, (1,))
        proposal = _speculators.proposal(
            speculator, at_decode, k, contexts, jnp.ones(1, jnp.float32), smooth
        )
        verify_tokens = jnp.asarray(verify_tokens, jnp.float32)
        overhead_s = speculation_overhead_s(at_decode, speculator, b, verify_tokens, speculating)
        drafting_s = decoding * (speculating * proposal.time_s + overhead_s)
    decode_cost = forward_cost(target, b, verify_tokens, context + extra_context)

    def with_prefill(p):
        return _with_prefill(
            d, speculator, b, verify_tokens, decode_cost, drafting_s, speculating, p, smooth
        )

    if len(prefills) == 1:
        return (with_prefill(prefills[0]),)
    # Several counts: one program mapped over them (a literal 0 among them is then priced
    # and multiplied by 0, the same value), not one copy of the step's model per count for
    # XLA to compile (with the steady-state model's other merges, its serving search
    # compiled in 87 s instead of 200 s).
    counts = jnp.stack(jnp.broadcast_arrays(*(jnp.asarray(p, jnp.float32) for p in prefills)))
    steps = jax.vmap(with_prefill)(counts)
    return tuple(steps[i] for i in range(len(prefills)))


def _with_prefill(d, speculator, b, verify_tokens, decode_cost, drafting_s, speculating, p, smooth):
    """One step's time: the shared decode side plus ``p`` prefill tokens in the same pass."""
    target = d.target
    # A literal 0 prefills nothing: the prefill's passes are left out of the program (a
    # traced 0 prices them and multiplies by 0, the same value at more cost). Only a
    # single count arrives literal: `engine_step_times` maps several as traced values.
    no_prefill = type(p) in (int, float) and p == 0
    p = jnp.asarray(p, jnp.float32)
    prefilling = jnp.clip(p, 0.0, 1.0)
    if speculator is not None and not no_prefill:
        at_prefill = d.replace(
            workload=Workload(
                batch=jnp.ones(()), prompt_tokens=jnp.maximum(p, 1.0), generate_tokens=1.0
            )
        )
        draft_prefill_s = _speculators.prefill_s(speculator, at_prefill, smooth)
        drafting_s = drafting_s + speculating * prefilling * draft_prefill_s
    # (a pass over 0 new tokens is not finite in `forward_cost`: price >= 1 and scale;
    # a prefill computes logits for its last position only)
    tokens = b * verify_tokens + p
    # Weight bytes depend on the pass's tokens only (weights once, embedding rows, experts
    # touched by all its tokens): price them for the whole pass.
    weight_bytes = forward_cost(target, tokens, 1.0, 0.0).weight_bytes
    cost = decode_cost
    if not no_prefill:
        prefill_cost = jax.tree.map(
            lambda x: prefilling * x,
            forward_cost(target, 1.0, jnp.maximum(p, 1.0), 0.0, logit_positions=1.0),
        )
        cost = jax.tree.map(jnp.add, cost, prefill_cost)
    cost = cost.replace(weight_bytes=weight_bytes)
    step = pass_time(
        target,
        d.hardware,
        cost,
        batch=b + prefilling,
        tokens=tokens,
        logit_tokens=b * verify_tokens + prefilling,
        tp=d.tp,
        smooth=smooth,
        runtime=d.resolved_runtime(),
    )
    return step.time_s + drafting_s


def emitted_tokens(deployment: Deployment, speculator, lookahead):
    """Expected tokens per decoding sequence per step at ``lookahead`` (1 without a
    speculator or at lookahead 0); traced."""
    if speculator is None:
        return jnp.ones_like(jnp.asarray(lookahead, jnp.float32))
    return _speculators.emitted_tokens(speculator, deployment, jnp.asarray(lookahead, jnp.float32))


@functools.partial(jax.jit, static_argnames=("smooth",))
def _table(deployment, speculator, batch, context, prefill, lookahead, smooth=None):
    def one(b, c, p, k):
        return engine_step_time(deployment, speculator, b, c, p, k, smooth)

    over_p = jax.vmap(one, in_axes=(None, None, 0, None))
    over_c = jax.vmap(over_p, in_axes=(None, 0, None, None))
    over_b = jax.vmap(over_c, in_axes=(0, None, None, None))
    over_k = jax.vmap(over_b, in_axes=(None, None, None, 0))
    return over_k(batch, context, prefill, lookahead)


@jax.jit
def _emitted(deployment, speculator, lookahead):
    return jax.vmap(lambda k: emitted_tokens(deployment, speculator, k))(lookahead)


def _grid(top: float, dense_until: int, per_octave: int) -> np.ndarray:
    """0, 1, ..., ``dense_until``, then ``per_octave`` geometric steps per doubling, up to
    and including ``top``."""
    values = list(range(0, min(dense_until, int(top)) + 1))
    x = float(dense_until)
    while x < top:
        x *= 2.0 ** (1.0 / per_octave)
        values.append(min(round(x), top))
    return np.unique(np.asarray(values, np.float64))


@dataclasses.dataclass(frozen=True)
class StepTimeModel:
    """Step times tabulated over ``(lookahead, decode batch, context, prefill tokens)``.

    Attributes:
        batch_grid: decode-batch nodes (0 .. the engine's ``max_num_seqs``).
        context_grid: mean-context nodes, tokens (0 .. the longest context; beyond it the
            last segment is extrapolated, linear as attention is).
        prefill_grid: prefill-token nodes (0 .. ``max_num_batched_tokens``).
        time_s: step times, shape ``(K + 1, len(batch_grid), len(context_grid),
            len(prefill_grid))`` for lookahead 0..K, s.
        emitted_tokens: expected tokens per decoding sequence at lookahead 0..K, shape
            ``(K + 1,)`` (1 at lookahead 0).
        survival: ``survival[j - 1] = P(tokens >= j + 1)`` for j = 1..K (shape ``(K,)``);
            a step at lookahead k emits ``1 + #{j <= k: u < survival[j - 1]}`` tokens for a
            uniform u per sequence.

    Examples:
        >>> import specsim
        >>> from specsim.serving import EngineConfig, SpecPolicy
        >>> d = specsim.Deployment.create("llama-3-8b", "h100", acceptance=0.7)
        >>> policy = SpecPolicy.fixed(specsim.models.get("llama-68m"), lookahead=3)
        >>> model = StepTimeModel.build(d, policy, EngineConfig.create(max_num_seqs=64),
        ...                             max_context_tokens=4096)
        >>> exact = float(engine_step_time(d, policy.speculator, 24.0, 1000.0, 300.0, 3.0))
        >>> abs(model.step_s(24, 1000.0, 300, 3) / exact - 1) < 0.01
        True
        >>> [round(float(e), 3) for e in model.emitted_tokens]
        [1.0, 1.7, 2.19, 2.533]
    """

    batch_grid: np.ndarray
    context_grid: np.ndarray
    prefill_grid: np.ndarray
    time_s: np.ndarray
    emitted_tokens: np.ndarray
    survival: np.ndarray

    @classmethod
    def build(
        cls,
        deployment: Deployment,
        policy: SpecPolicy | None = None,
        engine: EngineConfig | None = None,
        *,
        max_context_tokens: float = 32768,
        smooth: float | None = None,
    ) -> StepTimeModel:
        """Tabulates `engine_step_time` for a deployment, policy and engine (one jitted,
        ``vmap``-ed evaluation; a few seconds to compile).

        Args:
            deployment: a validated `Deployment`.
            policy: the `SpecPolicy` (lookahead 0..its ``max_lookahead`` is tabulated);
                default off.
            engine: the `EngineConfig` (its ``max_num_seqs`` and ``max_num_batched_tokens``
                bound the grid); default ``EngineConfig.create()``.
            max_context_tokens: longest context to tabulate (prompt + output).
            smooth: as in ``specsim.step_time``.
        """
        if not isinstance(deployment, Deployment):
            raise ValueError(f"deployment must be a Deployment, got {type(deployment).__name__}")
        deployment.validate()
        policy = SpecPolicy.off() if policy is None else policy
        engine = EngineConfig.create() if engine is None else engine
        if not max_context_tokens >= 1:
            raise ValueError(f"max_context_tokens must be >= 1, got {max_context_tokens!r}")
        max_k = policy.max_lookahead
        speculator = policy.speculator
        if speculator is not None:
            _speculators.validate_speculation(speculator, deployment, float(max_k))
        batch = _grid(float(engine.max_num_seqs), 16, 6)
        # Attention is linear in the context: a coarse grid (x sqrt 2) is plenty.
        top = float(max_context_tokens)
        context = np.unique(np.minimum([0.0, *(64.0 * 2.0 ** (i / 2) for i in range(40))], top))
        context = context[: np.searchsorted(context, top) + 1]
        prefill = _grid(float(engine.max_num_batched_tokens), 8, 6)
        lookahead = np.arange(max_k + 1, dtype=np.float64)
        f32 = functools.partial(jnp.asarray, dtype=jnp.float32)
        table = _table(
            deployment, speculator, f32(batch), f32(context), f32(prefill), f32(lookahead), smooth
        )
        emitted = np.asarray(_emitted(deployment, speculator, f32(lookahead)), np.float64)
        table = np.asarray(table, np.float64)
        if not np.all(np.isfinite(table) & (table > 0)):
            raise ValueError("the step-time table has non-finite or non-positive entries")
        survival = np.clip(np.diff(emitted), 0.0, 1.0)
        # A chain's survival never rises with depth (float32 rounding aside).
        survival = np.minimum.accumulate(survival) if survival.size else survival
        return cls(batch, context, prefill, table, emitted, survival)

    @classmethod
    def from_function(
        cls, step_s, batch_grid, context_grid, prefill_grid, emitted_tokens=(1.0,)
    ) -> StepTimeModel:
        """A table from any ``step_s(k, b, context, p)`` (NumPy-vectorised), e.g. a
        synthetic one for tests; ``emitted_tokens[k]`` for k = 0..K."""
        emitted = np.asarray(emitted_tokens, np.float64)
        grids = [np.asarray(g, np.float64) for g in (batch_grid, context_grid, prefill_grid)]
        k = np.arange(emitted.size, dtype=np.float64)
        mesh = np.meshgrid(k, *grids, indexing="ij")
        table = np.broadcast_to(np.asarray(step_s(*mesh), np.float64), mesh[0].shape).copy()
        survival = np.clip(np.diff(emitted), 0.0, 1.0)
        return cls(*grids, table, emitted, survival)

    @property
    def max_lookahead(self) -> int:
        """Largest tabulated whole lookahead."""
        return self.time_s.shape[0] - 1

    def step_s(
        self, decode_seqs: float, context: float, prefill_tokens: float, lookahead: int
    ) -> float:
        """One step's time, s, for scalar inputs (the simulator's hot path).

        ``decode_seqs`` and ``prefill_tokens`` are clamped to the grid; ``context`` beyond
        the grid is extrapolated linearly; ``lookahead`` is a whole number 0..K.
        """
        ib, wb = _locate(self.batch_grid.tolist(), float(decode_seqs), clamp=True)
        ic, wc = _locate(self._context, float(context), clamp=False)
        ip, wp = _locate(self.prefill_grid.tolist(), float(prefill_tokens), clamp=True)
        t = self.time_s[int(lookahead)]
        c00 = t[ib, ic, ip] + wp * (t[ib, ic, ip + 1] - t[ib, ic, ip])
        c01 = t[ib, ic + 1, ip] + wp * (t[ib, ic + 1, ip + 1] - t[ib, ic + 1, ip])
        c10 = t[ib + 1, ic, ip] + wp * (t[ib + 1, ic, ip + 1] - t[ib + 1, ic, ip])
        c11 = t[ib + 1, ic + 1, ip] + wp * (t[ib + 1, ic + 1, ip + 1] - t[ib + 1, ic + 1, ip])
        c0 = c00 + wc * (c01 - c00)
        c1 = c10 + wc * (c11 - c10)
        return float(c0 + wb * (c1 - c0))

    def time_s_at(self, decode_seqs, context, prefill_tokens, lookahead):
        """`step_s` for arrays (broadcast), with a real ``lookahead`` interpolated linearly
        between whole values (for the steady-state model's NumPy use)."""
        b, c, p, k = np.broadcast_arrays(
            *(np.asarray(v, np.float64) for v in (decode_seqs, context, prefill_tokens, lookahead))
        )
        k = np.clip(k, 0.0, self.max_lookahead)
        k0 = np.minimum(np.floor(k).astype(int), max(self.max_lookahead - 1, 0))
        wk = k - k0
        out = np.empty(b.shape)
        for index in np.ndindex(b.shape):
            low = self.step_s(b[index], c[index], p[index], int(k0[index]))
            if wk[index] > 0:
                high = self.step_s(b[index], c[index], p[index], int(k0[index]) + 1)
                low = low + wk[index] * (high - low)
            out[index] = low
        return out

    # The simulator's hot path: grids and table as Python lists (`bisect` and list indexing
    # are several times faster than NumPy calls on one scalar), and the interpolation
    # segment of every whole batch size and prefill count precomputed.
    @functools.cached_property
    def _context(self) -> list[float]:
        return self.context_grid.tolist()

    @functools.cached_property
    def _table_lists(self) -> list:
        return self.time_s.tolist()

    @functools.cached_property
    def _batch_segments(self) -> list[tuple[int, float]]:
        grid = self.batch_grid.tolist()
        return [_locate(grid, float(b), clamp=True) for b in range(int(grid[-1]) + 1)]

    @functools.cached_property
    def _prefill_segments(self) -> list[tuple[int, float]]:
        grid = self.prefill_grid.tolist()
        return [_locate(grid, float(p), clamp=True) for p in range(int(grid[-1]) + 1)]

    def _step_whole(self, decode_seqs: int, context: float, prefill_tokens: int, k: int) -> float:
        """`step_s` for whole ``decode_seqs`` and ``prefill_tokens`` within the grid."""
        ib, wb = self._batch_segments[decode_seqs]
        ip, wp = self._prefill_segments[prefill_tokens]
        ic, wc = _locate(self._context, context, clamp=False)
        t = self._table_lists[k]
        b0, b1 = t[ib], t[ib + 1]
        r = b0[ic]
        c00 = r[ip] + wp * (r[ip + 1] - r[ip])
        r = b0[ic + 1]
        c01 = r[ip] + wp * (r[ip + 1] - r[ip])
        r = b1[ic]
        c10 = r[ip] + wp * (r[ip + 1] - r[ip])
        r = b1[ic + 1]
        c11 = r[ip] + wp * (r[ip + 1] - r[ip])
        c0 = c00 + wc * (c01 - c00)
        return c0 + wb * (c10 + wc * (c11 - c10) - c0)


def _locate(grid: list[float], x: float, clamp: bool) -> tuple[int, float]:
    """Segment index and weight of ``x`` in ``grid`` (weight outside [0, 1] extrapolates)."""
    n = len(grid)
    if n == 1:
        return 0, 0.0
    i = bisect.bisect_right(grid, x) - 1
    i = min(max(i, 0), n - 2)
    low, high = grid[i], grid[i + 1]
    w = (x - low) / (high - low)
    if clamp:
        w = min(max(w, 0.0), 1.0)
    elif w < 0.0:
        w = 0.0
    return i, w
