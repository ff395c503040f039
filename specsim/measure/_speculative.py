"""Speculative decoding with real networks: draft proposes, target verifies.

One iteration: the draft proposes ``gamma`` tokens autoregressively (``gamma``
forward passes), the target scores all ``gamma + 1`` positions in one forward
pass, and the modified rejection sampling of Leviathan et al. (2023) and Chen et
al. (2023) accepts a prefix: draft token ``x`` at position ``i`` is accepted with
probability ``min(1, p_i(x) / q_i(x))``; at the first rejection a token is drawn
from ``norm(max(0, p_i - q_i))``; if all ``gamma`` are accepted a bonus token is
drawn from ``p_{gamma+1}``. The emitted tokens are distributed exactly as the
target's own samples. In greedy mode (``temperature=0``) a draft token is
accepted while it equals the target's argmax, and the output equals greedy
target decoding token for token.

Every forward pass is one jitted call (as in gpt-fast), so a measured iteration
costs what the simulator prices: ``gamma`` draft steps plus one verification.
The draft's first step of an iteration feeds two tokens (the last two of the
sequence) so that its cache also holds the final draft token of an iteration in
which everything was accepted; the simulator prices that pass at two tokens.

Sequences of a batch advance independently (each keeps its own length), so
batched speculation is exact too.

References:
    Leviathan, Kalman, Matias (2023), arXiv 2211.17192, Algorithm 1.
    Chen et al. (2023), arXiv 2302.01318, Algorithm 2.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from ._clock import clock_function
from ._model import KVCache, Model, forward, init_cache

__all__ = [
    "DecodeResult",
    "SpeculativeResult",
    "generate",
    "speculative_generate",
]


SAMPLER_BLOCK = 64
# Plain decoding waits for the device once per this many steps (a serving loop checks
# its stopping criteria now and then, not after every token).
DECODE_CHUNK = 4
# Speculative decoding checks for the end of generation once per this many iterations.
SPECULATIVE_CHECK_EVERY = 2


def argmax(logits):
    """Index of the largest logit along the last axis, int32.

    ``lax.top_k`` with k = 1: on XLA:CPU much faster than the variadic reduction
    behind ``jnp.argmax``, and the same answer (first index among ties).
    """
    return jax.lax.top_k(logits, 1)[1][..., 0].astype(jnp.int32)


def probabilities(logits, temperature: float):
    """Next-token distribution at ``temperature`` (one-hot argmax at 0), float32."""
    if temperature == 0.0:
        return jax.nn.one_hot(argmax(logits), logits.shape[-1], dtype=jnp.float32)
    return jax.nn.softmax(logits / temperature, axis=-1)


def sample_from(key, weights):
    """One index per row of ``weights`` (..., vocab), drawn with probability proportional
    to the (non-negative, not necessarily normalised) weights.

    Inverse-CDF sampling in two levels (blocks of ``SAMPLER_BLOCK`` entries, then
    entries of the chosen block), so it needs one uniform number per row and
    cumulative sums over short vectors only. Exact up to float rounding; about ten
    times cheaper on a CPU than the Gumbel-max trick of ``jax.random.categorical``,
    which draws one random number per vocabulary entry.
    """
    vocab = weights.shape[-1]
    batch_shape = weights.shape[:-1]
    padded = jnp.pad(weights, [(0, 0)] * len(batch_shape) + [(0, (-vocab) % SAMPLER_BLOCK)])
    blocks = padded.reshape(*batch_shape, -1, SAMPLER_BLOCK)
    block_mass = jnp.sum(blocks, axis=-1)
    block_end = jnp.cumsum(block_mass, axis=-1)
    u = jax.random.uniform(key, (*batch_shape, 1), dtype=block_end.dtype) * block_end[..., -1:]
    chosen = jnp.minimum(jnp.sum(block_end <= u, axis=-1), block_end.shape[-1] - 1)
    block_start = jnp.take_along_axis(block_end - block_mass, chosen[..., None], axis=-1)
    inner = jnp.take_along_axis(blocks, chosen[..., None, None], axis=-2)[..., 0, :]
    inner_end = block_start + jnp.cumsum(inner, axis=-1)
    offset = jnp.minimum(jnp.sum(inner_end <= u, axis=-1), SAMPLER_BLOCK - 1)
    return jnp.minimum(chosen * SAMPLER_BLOCK + offset, vocab - 1).astype(jnp.int32)


def sample(key, logits, temperature: float):
    """A token from ``logits`` (..., vocab): argmax at temperature 0, else a sample."""
    if temperature == 0.0:
        return argmax(logits)
    return sample_from(key, probabilities(logits, temperature))


def sample_step(model: Model, cache: KVCache, tokens, key, temperature: float):
    """Forward ``tokens`` (batch, new) and sample the token after the last one.

    Returns:
        ``(cache, token, probs)``: the updated cache, the sampled token (batch,) and the
        distribution it was drawn from (batch, vocab).
    """
    logits, cache = forward(model, tokens, cache)
    probs = probabilities(logits[:, -1], temperature)
    token = argmax(probs) if temperature == 0.0 else sample_from(key, probs)
    return cache, token, probs


def verify_tokens(model: Model, cache: KVCache, tokens, draft_probs, key, temperature: float):
    """Target pass over ``[last, d_1..d_gamma]`` and acceptance of a prefix of the drafts.

    Args:
        model: the target.
        cache: the target's cache, ``positions`` at the slot of ``tokens[:, 0]``.
        tokens: (batch, gamma + 1) int32: the last sequence token, then the drafts.
        draft_probs: (batch, gamma, vocab) distributions the drafts were drawn from.
        key: PRNG key.
        temperature: static; 0 for greedy verification.

    Returns:
        ``(cache, n_accepted, emitted)``: cache positions advanced by ``n_accepted + 1``;
        ``n_accepted`` (batch,) accepted drafts; ``emitted`` (batch, gamma + 1), whose first
        ``n_accepted + 1`` entries are the accepted drafts and the correction/bonus token.
    """
    start = cache.positions
    logits, cache = forward(model, tokens, cache)
    drafts = tokens[:, 1:]
    gamma = drafts.shape[1]
    accept_key, residual_key = jax.random.split(key)
    if temperature == 0.0:
        target_tokens = argmax(logits)  # (batch, gamma + 1)
        accepted = drafts == target_tokens[:, :gamma]
        n_accepted = jnp.sum(jnp.cumprod(accepted, axis=1), axis=1)
        correction = jnp.take_along_axis(target_tokens, n_accepted[:, None], axis=1)[:, 0]
    else:
        p = jax.nn.softmax(logits / temperature, axis=-1)  # (batch, gamma + 1, vocab)
        p_draft = jnp.take_along_axis(p[:, :gamma], drafts[..., None], axis=-1)[..., 0]
        q_draft = jnp.take_along_axis(draft_probs, drafts[..., None], axis=-1)[..., 0]
        uniform = jax.random.uniform(accept_key, q_draft.shape)
        accepted = uniform * q_draft < p_draft  # u < p/q, safe where q is tiny
        n_accepted = jnp.sum(jnp.cumprod(accepted, axis=1), axis=1)
        p_n = jnp.take_along_axis(p, n_accepted[:, None, None], axis=1)[:, 0]
        last_draft = jnp.minimum(n_accepted, gamma - 1)[:, None, None]
        q_n = jnp.take_along_axis(draft_probs, last_draft, axis=1)[:, 0]
        # The bonus position has no draft: q = 0 there, so its residual is p itself.
        q_n = jnp.where((n_accepted < gamma)[:, None], q_n, 0.0)
        residual = jnp.maximum(p_n - q_n, 0.0)
        # Where p == q up to rounding the residual vanishes; p is the exact limit then.
        residual = jnp.where(jnp.sum(residual, -1, keepdims=True) > 1e-6, residual, p_n)
        correction = sample_from(residual_key, residual)
    slot = jnp.arange(gamma + 1)[None, :]
    drafts_padded = jnp.concatenate([drafts, jnp.zeros_like(drafts[:, :1])], axis=1)
    emitted = jnp.where(slot < n_accepted[:, None], drafts_padded, correction[:, None])
    cache = cache.replace(positions=start + n_accepted + 1)
    return cache, n_accepted.astype(jnp.int32), emitted.astype(jnp.int32)


@struct.dataclass
class _Sequences:
    """Token buffer and per-sequence lengths (the last token is not yet in any cache)."""

    tokens: jax.Array  # (batch, capacity) int32
    length: jax.Array  # (batch,) int32


def _write_tokens(seqs: _Sequences, new, count):
    """Appends the first ``count[b]`` of ``new[b]`` to each sequence."""
    tokens = jax.vmap(lambda row, n, p: jax.lax.dynamic_update_slice_in_dim(row, n, p, 0))(
        seqs.tokens, new, seqs.length
    )
    return _Sequences(tokens=tokens, length=seqs.length + count)


@functools.partial(jax.jit, static_argnames=("temperature",), donate_argnames=("cache",))
def _prefill(model, cache, prompt, key, temperature):
    cache, token, _ = sample_step(model, cache, prompt, key, temperature)
    return cache, token


@functools.partial(jax.jit, static_argnames=("temperature",), donate_argnames=("cache", "seqs"))
def _decode(model, cache, seqs, key, temperature):
    last = jnp.take_along_axis(seqs.tokens, seqs.length[:, None] - 1, axis=1)
    cache = cache.replace(positions=seqs.length - 1)
    cache, token, _ = sample_step(model, cache, last, key, temperature)
    return cache, _write_tokens(seqs, token[:, None], jnp.ones_like(seqs.length))


@functools.partial(jax.jit, static_argnames=("temperature",), donate_argnames=("cache",))
def _draft_first(model, cache, seqs, key, temperature):
    # Refeeds the token before the last one: it is missing from the draft cache after an
    # iteration that accepted every draft, and rewriting it otherwise changes nothing.
    index = seqs.length[:, None] + jnp.array([[-2, -1]], jnp.int32)
    tokens = jnp.take_along_axis(seqs.tokens, index, axis=1)
    cache = cache.replace(positions=seqs.length - 2)
    return sample_step(model, cache, tokens, key, temperature)


@functools.partial(jax.jit, static_argnames=("temperature",), donate_argnames=("cache",))
def _draft_next(model, cache, token, key, temperature):
    return sample_step(model, cache, token[:, None], key, temperature)


@functools.partial(
    jax.jit, static_argnames=("temperature",), donate_argnames=("cache", "seqs", "counts")
)
def _verify(model, cache, seqs, drafts, draft_probs, key, counts, temperature):
    last = jnp.take_along_axis(seqs.tokens, seqs.length[:, None] - 1, axis=1)
    tokens = jnp.concatenate([last, jnp.stack(drafts, axis=1)], axis=1)
    cache = cache.replace(positions=seqs.length - 1)
    cache, n_accepted, emitted = verify_tokens(
        model, cache, tokens, jnp.stack(draft_probs, axis=1), key, temperature
    )
    gamma = len(drafts)
    position = jnp.arange(gamma)[None, :]
    counts = counts + jnp.stack(
        [
            jnp.sum(n_accepted[:, None] > position, axis=0),  # draft i accepted
            jnp.sum(n_accepted[:, None] >= position, axis=0),  # draft i was judged
        ]
    ).astype(counts.dtype)
    return cache, _write_tokens(seqs, emitted, n_accepted + 1), counts


@struct.dataclass
class DecodeResult:
    """Output and timing of plain autoregressive decoding.

    Attributes:
        tokens: (batch, prompt + generated) int32.
        generated_tokens: tokens generated after the prefill, over all sequences.
        prefill_s: prompt prefill (and its sampled token), s.
        decode_s: time of the generation after prefill, s.
        tokens_per_s: ``generated_tokens / decode_s``.
        step_s: time per decode step of every chunk of ``DECODE_CHUNK`` steps, s (the host
            waits for the device once per chunk).
        steady_tokens_per_s: ``batch / median(step_s)``: the same rate with the median
            chunk, insensitive to bursts of other load on a shared machine.
    """

    tokens: Any
    generated_tokens: int = struct.field(pytree_node=False)
    prefill_s: float = struct.field(pytree_node=False)
    decode_s: float = struct.field(pytree_node=False)
    tokens_per_s: float = struct.field(pytree_node=False)
    step_s: tuple = struct.field(pytree_node=False)
    steady_tokens_per_s: float = struct.field(pytree_node=False)


@struct.dataclass
class SpeculativeResult:
    """Output, timing and acceptance statistics of speculative decoding.

    Attributes:
        tokens: (batch, prompt + generated) int32, trimmed to the shortest sequence.
        generated_tokens: tokens emitted by speculative iterations over all sequences.
        iterations: speculative iterations run.
        prefill_s: prefill of target and draft, s.
        decode_s: time of the iterations, s.
        tokens_per_s: ``generated_tokens / decode_s``.
        iteration_s: time per iteration of every ``SPECULATIVE_CHECK_EVERY`` iterations
            between two checks of the host, s.
        steady_tokens_per_s: ``batch * tokens_per_step / median(iteration_s)``: the same
            rate with the median iteration, insensitive to bursts of other load.
        tokens_per_step: mean tokens emitted per sequence per iteration (tau).
        alpha: acceptance rate, accepted / judged draft tokens (the maximum-likelihood
            i.i.d. alpha of the truncated-geometric acceptance model).
        positional_alpha: (gamma,) P(draft i accepted | drafts before it accepted).
        accepted_counts: (gamma,) drafts accepted at each position, all sequences.
        judged_counts: (gamma,) drafts judged at each position (all before it accepted).
        gamma: draft tokens proposed per iteration.
    """

    tokens: Any
    generated_tokens: int = struct.field(pytree_node=False)
    iterations: int = struct.field(pytree_node=False)
    prefill_s: float = struct.field(pytree_node=False)
    decode_s: float = struct.field(pytree_node=False)
    tokens_per_s: float = struct.field(pytree_node=False)
    iteration_s: tuple = struct.field(pytree_node=False)
    steady_tokens_per_s: float = struct.field(pytree_node=False)
    tokens_per_step: float = struct.field(pytree_node=False)
    alpha: float = struct.field(pytree_node=False)
    positional_alpha: tuple = struct.field(pytree_node=False)
    accepted_counts: tuple = struct.field(pytree_node=False)
    judged_counts: tuple = struct.field(pytree_node=False)
    gamma: int = struct.field(pytree_node=False)


def _prepare(model: Model, prompt, capacity: int, extra_models=()):
    prompt = jnp.asarray(prompt, jnp.int32)
    if prompt.ndim != 2 or prompt.shape[1] < 1:
        raise ValueError(f"prompt must be (batch, tokens) with tokens >= 1, got {prompt.shape}")
    vocab = model.config.vocab
    if int(jnp.min(prompt)) < 0 or int(jnp.max(prompt)) >= vocab:
        raise ValueError(f"prompt tokens must be in [0, {vocab})")
    from ._device import check_fits

    batch = prompt.shape[0]
    need = sum(m.config.cache_bytes(batch, capacity) for m in (model, *extra_models))
    check_fits(need, what=f"KV caches for batch {batch} x {capacity} tokens")
    tokens = jnp.zeros((batch, capacity), jnp.int32).at[:, : prompt.shape[1]].set(prompt)
    return prompt, _Sequences(tokens=tokens, length=jnp.full((batch,), prompt.shape[1], jnp.int32))


def _check_temperature(temperature: float) -> float:
    temperature = float(temperature)
    if not temperature >= 0.0:
        raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature}")
    return temperature


def generate(
    model: Model,
    prompt,
    new_tokens: int,
    *,
    seed: int = 0,
    temperature: float = 1.0,
    clock: str = "wall",
) -> DecodeResult:
    """Plain autoregressive decoding: prefill, then one forward pass per token.

    Args:
        model: the network.
        prompt: (batch, prompt_tokens) int array.
        new_tokens: tokens to generate per sequence (the first comes from the prefill).
        seed: PRNG seed of the sampling.
        temperature: sampling temperature; 0 for greedy decoding.
        clock: ``"wall"`` or ``"process"`` (CPU time; see ``specsim.measure.CLOCKS``).

    Returns:
        `DecodeResult`; call it once first if the timing must exclude compilation.

    Examples:
        >>> import jax.numpy as jnp
        >>> from specsim.measure import build_model, tiny_spec
        >>> model = build_model(tiny_spec())
        >>> out = generate(model, jnp.zeros((1, 4), jnp.int32), 6, temperature=0.0)
        >>> out.tokens.shape
        (1, 10)
    """
    temperature = _check_temperature(temperature)
    now = clock_function(clock)
    if int(new_tokens) < 1:
        raise ValueError(f"new_tokens must be >= 1, got {new_tokens}")
    capacity = plain_buffer_tokens(prompt_len(prompt), new_tokens)
    prompt, seqs = _prepare(model, prompt, capacity=capacity)
    key = jax.random.key(seed)
    cache = init_cache(model.config, seqs.tokens.shape[0], seqs.tokens.shape[1])
    start = now()
    key, sub = jax.random.split(key)
    cache, token = _prefill(model, cache, prompt, sub, temperature)
    seqs = _write_tokens(seqs, token[:, None], jnp.ones_like(seqs.length))
    jax.block_until_ready(seqs)
    prefill_s = now() - start
    keys = list(jax.random.split(key, max(int(new_tokens) - 1, 1)))  # sliced before timing
    batch = seqs.tokens.shape[0]
    steps = int(new_tokens) - 1
    marks, chunk_steps = [now()], []
    for first in range(0, steps, DECODE_CHUNK):
        # The host runs ahead of the device within a chunk and waits once per chunk.
        for i in range(first, min(first + DECODE_CHUNK, steps)):
            cache, seqs = _decode(model, cache, seqs, keys[i], temperature)
        seqs.length.block_until_ready()
        marks.append(now())
        chunk_steps.append(min(DECODE_CHUNK, steps - first))
    step_s = tuple((np.diff(marks) / np.asarray(chunk_steps)).tolist()) if steps else ()
    decode_s = marks[-1] - marks[0]
    generated = (int(new_tokens) - 1) * batch
    return DecodeResult(
        tokens=seqs.tokens,
        generated_tokens=generated,
        prefill_s=prefill_s,
        decode_s=decode_s,
        tokens_per_s=generated / decode_s if decode_s > 0 and generated else float("nan"),
        step_s=step_s,
        steady_tokens_per_s=batch / float(np.median(step_s)) if step_s else float("nan"),
    )


def plain_buffer_tokens(prompt_tokens: int, new_tokens: int) -> int:
    """Length of `generate`'s static KV buffer: the prompt and every new token. Each of its
    passes attends over the whole buffer (under a causal mask), whatever the position."""
    return int(prompt_tokens) + int(new_tokens)


def speculative_buffer_tokens(prompt_tokens: int, new_tokens: int, gamma: int) -> int:
    """Length of `speculative_generate`'s static KV buffers (target and draft): the goal and
    the iterations that may run past it before the host checks (``gamma + 1`` tokens
    each); every pass attends over the whole buffer."""
    return plain_buffer_tokens(prompt_tokens, new_tokens) + SPECULATIVE_CHECK_EVERY * (
        int(gamma) + 1
    )


def prompt_len(prompt) -> int:
    """Tokens per sequence of a (batch, tokens) prompt."""
    return int(np.shape(prompt)[-1])


def speculative_generate(
    target: Model,
    draft: Model,
    prompt,
    new_tokens: int,
    gamma: int,
    *,
    seed: int = 0,
    temperature: float = 1.0,
    clock: str = "wall",
) -> SpeculativeResult:
    """Speculative decoding of ``new_tokens`` per sequence (at least: the host checks for
    the end every ``SPECULATIVE_CHECK_EVERY`` iterations, so up to that many iterations of
    ``gamma + 1`` tokens may follow the goal; all generated tokens count).

    Args:
        target: the model whose distribution is reproduced.
        draft: a cheaper model with the same vocabulary.
        prompt: (batch, prompt_tokens) int array, prompt_tokens >= 2 is not required.
        new_tokens: tokens to generate per sequence (the first comes from the prefill).
        gamma: draft tokens proposed per iteration, >= 1.
        seed: PRNG seed of all sampling.
        temperature: 0 for greedy (output equals greedy target decoding), else the
            sampling temperature of both models.
        clock: ``"wall"`` or ``"process"`` (CPU time; see ``specsim.measure.CLOCKS``).

    Returns:
        `SpeculativeResult` with tokens, tokens/s, tokens per step and acceptance.

    Raises:
        ValueError: mismatched vocabularies, gamma < 1, bad prompt or sizes.

    Examples:
        >>> import jax.numpy as jnp
        >>> from specsim.measure import build_model, layer_skip_draft, tiny_spec
        >>> target = build_model(tiny_spec(n_layers=2))
        >>> draft = layer_skip_draft(target, 1)
        >>> out = speculative_generate(target, draft, jnp.zeros((1, 4), jnp.int32), 8, gamma=3,
        ...                            temperature=0.0)
        >>> greedy = generate(target, jnp.zeros((1, 4), jnp.int32), 8, temperature=0.0)
        >>> bool(jnp.all(out.tokens[:, :12] == greedy.tokens))  # 4 prompt + 8 new tokens
        True
    """
    temperature = _check_temperature(temperature)
    now = clock_function(clock)
    gamma = int(gamma)
    if gamma < 1:
        raise ValueError(f"gamma must be >= 1, got {gamma}")
    if int(new_tokens) < 1:
        raise ValueError(f"new_tokens must be >= 1, got {new_tokens}")
    if draft.config.vocab != target.config.vocab:
        raise ValueError(f"draft vocab {draft.config.vocab} != target vocab {target.config.vocab}")
    goal = prompt_len(prompt) + int(new_tokens)
    capacity = speculative_buffer_tokens(prompt_len(prompt), new_tokens, gamma)
    prompt, seqs = _prepare(target, prompt, capacity, extra_models=(draft,))
    batch = seqs.tokens.shape[0]
    key = jax.random.key(seed)
    target_cache = init_cache(target.config, batch, capacity)
    draft_cache = init_cache(draft.config, batch, capacity)

    start = now()
    key, sub = jax.random.split(key)
    target_cache, token = _prefill(target, target_cache, prompt, sub, temperature)
    draft_cache, _ = _prefill(draft, draft_cache, prompt, sub, temperature)
    seqs = _write_tokens(seqs, token[:, None], jnp.ones_like(seqs.length))
    jax.block_until_ready((seqs, draft_cache))
    prefill_s = now() - start
    first_length = np.asarray(seqs.length)

    counts = jnp.zeros((2, gamma), jnp.int32)
    iterations = 0
    # At most new_tokens iterations (each emits >= 1 token per sequence), plus those of the
    # last check interval; keys drawn upfront so that splitting them is not timed.
    rows = int(new_tokens) + SPECULATIVE_CHECK_EVERY
    all_keys = [list(row) for row in jax.random.split(key, (rows, gamma + 1))]
    marks = [now()]
    # Positions and lengths live on the device, so the host only waits to check whether
    # every sequence is long enough, once per SPECULATIVE_CHECK_EVERY iterations.
    while int(jnp.min(seqs.length)) < goal:
        if iterations:
            marks.append(now())
        for _ in range(SPECULATIVE_CHECK_EVERY):
            keys = all_keys[iterations]
            draft_cache, token, q = _draft_first(draft, draft_cache, seqs, keys[0], temperature)
            drafts, draft_probs = [token], [q]
            for i in range(1, gamma):
                draft_cache, token, q = _draft_next(draft, draft_cache, token, keys[i], temperature)
                drafts.append(token)
                draft_probs.append(q)
            target_cache, seqs, counts = _verify(
                target,
                target_cache,
                seqs,
                tuple(drafts),
                tuple(draft_probs),
                keys[gamma],
                counts,
                temperature,
            )
            iterations += 1
    marks.append(now())
    iteration_s = tuple((np.diff(marks) / SPECULATIVE_CHECK_EVERY).tolist())
    decode_s = marks[-1] - marks[0]

    length = np.asarray(seqs.length)
    counts = np.asarray(counts, dtype=np.float64)
    generated = int(np.sum(length - first_length))
    positional = tuple(
        float(a / j) if j > 0 else float("nan") for a, j in zip(counts[0], counts[1], strict=True)
    )
    tokens_per_step = generated / (iterations * batch) if iterations else float("nan")
    return SpeculativeResult(
        tokens=seqs.tokens[:, : int(length.min())],
        generated_tokens=generated,
        iterations=iterations,
        prefill_s=prefill_s,
        decode_s=decode_s,
        tokens_per_s=generated / decode_s if decode_s > 0 else float("nan"),
        iteration_s=iteration_s,
        steady_tokens_per_s=batch * tokens_per_step / float(np.median(iteration_s))
        if iterations
        else float("nan"),
        tokens_per_step=tokens_per_step,
        alpha=float(counts[0].sum() / counts[1].sum()) if counts[1].sum() else float("nan"),
        positional_alpha=positional,
        accepted_counts=tuple(int(c) for c in counts[0]),
        judged_counts=tuple(int(c) for c in counts[1]),
        gamma=gamma,
    )
