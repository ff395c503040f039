"""Attention variants: grouped-query, multi-head latent (MLA) and sliding-window layers.

Every function takes a ``TransformerSpec`` (duck-typed: this module does not import it)
and returns Python numbers for a concrete spec (exact counts) or arrays for a traced one.

* **Grouped-query / multi-head attention** (``kv_lora_rank = 0``): Q, K, V and O
  projections; the cache holds a key and a value of ``n_kv_heads * head_dim`` per token
  and layer; a query costs ``4 * n_heads * head_dim`` FLOPs per key (scores, then the
  weighted sum of values).
* **Multi-head latent attention** (``kv_lora_rank > 0``, DeepSeek-V2/V3): keys and
  values are compressed into a latent of ``kv_lora_rank`` plus a decoupled rotary key of
  ``rope_head_dim`` shared by all heads, which is all the cache holds
  (``kv_lora_rank + rope_head_dim`` elements per token and layer). Per head the
  non-rotary query/key width and the value width are both ``head_dim`` (DeepSeek's
  ``qk_nope_head_dim = v_head_dim``). Weights: the query (optionally low-rank through
  ``q_lora_rank``), the joint down-projection ``d_model -> kv_lora_rank + rope_head_dim``,
  the up-projection ``kv_lora_rank -> n_heads * 2 * head_dim`` and the output.
  *Non-absorbed* compute expands the cached latents into per-head keys and values on
  every pass (``2 * kv_lora_rank * n_heads * 2 * head_dim`` FLOPs per cached token and
  layer, and those keys and values are written and read back), then attends at
  ``2 n_heads (2 head_dim + rope_head_dim)`` FLOPs per key. *Absorbed* compute folds the
  up-projection into the query and the output (same FLOPs per new token as applying it
  to the new tokens) and attends in the latent space at
  ``2 n_heads (kv_lora_rank + rope_head_dim) + 2 n_heads kv_lora_rank`` FLOPs per key,
  never expanding the cache. ``mla_absorbed`` (1 absorbed, 0 not; values between blend
  the two linearly) selects the variant; serving stacks absorb for decode.
* **Sliding-window layers** (``n_local_layers`` of the ``n_layers``, window
  ``sliding_window`` tokens, as in Mistral, Gemma 2/3 and gpt-oss): a query attends to
  at most ``sliding_window`` keys and the cache keeps the last ``sliding_window``
  tokens. Chunked local attention (Llama 4's ``attention_chunk_size``) attends to at
  most a chunk, so it is priced as a window of the chunk size (an upper bound).
* **Attention sinks.** gpt-oss's learned sinks add one logit per head to the softmax and
  keep no tokens: no measurable cost (their ``n_heads`` parameters per layer are left
  out like biases). StreamingLLM-style sink *tokens* kept beside a window cost exactly
  like a window longer by their number: add them to ``sliding_window``.

References:
    DeepSeek-AI, DeepSeek-V2 (arXiv 2405.04434), section 2.1.2-2.1.3 (MLA, low-rank KV
    joint compression, decoupled RoPE; "W^UK can be absorbed into W^Q, and W^UV can be
    absorbed into W^O"). Beltagy et al. 2020, Longformer (arXiv 2004.05150) and Jiang et
    al. 2023, Mistral 7B (arXiv 2310.06825): sliding-window attention. Gemma Team 2025,
    Gemma 3 technical report (arXiv 2503.19786): 5 local layers (window 1024) per
    global layer. Xiao et al. 2023, StreamingLLM (arXiv 2309.17453): attention sinks.
"""

from __future__ import annotations

from .._numerics import maximum, minimum, where


def is_latent(spec):
    """Whether ``spec`` uses multi-head latent attention (a boolean, or a boolean array)."""
    return spec.kv_lora_rank > 0


def attention_weight_count(spec):
    """Weight elements of one attention block (projections only, no biases or norms).

    Examples:
        >>> from specsim import models
        >>> attention_weight_count(models.get("llama-2-7b")) == 4 * 4096 * 4096
        True
    """
    q_out = spec.n_heads * spec.head_dim
    kv_out = spec.n_kv_heads * spec.head_dim
    grouped = spec.d_model * (q_out + 2.0 * kv_out) + q_out * spec.d_model
    query_width = spec.n_heads * (spec.head_dim + spec.rope_head_dim)
    query = where(
        spec.q_lora_rank > 0,
        spec.d_model * spec.q_lora_rank + spec.q_lora_rank * query_width,
        spec.d_model * query_width,
    )
    latent = (
        query
        + spec.d_model * (spec.kv_lora_rank + spec.rope_head_dim)  # joint KV down-projection
        + spec.kv_lora_rank * spec.n_heads * 2.0 * spec.head_dim  # up-projection to K and V
        + q_out * spec.d_model  # output
    )
    return where(is_latent(spec), latent, grouped)


def kv_elements_per_token(spec):
    """KV-cache elements one token occupies in one layer (keys and values, or the latent)."""
    return where(
        is_latent(spec),
        spec.kv_lora_rank + spec.rope_head_dim,
        2.0 * spec.n_kv_heads * spec.head_dim,
    )


def flops_per_query_key(spec):
    """Attention FLOPs of one query against one key in one layer (scores plus values)."""
    grouped = 4.0 * spec.n_heads * spec.head_dim
    absorbed = 2.0 * spec.n_heads * (2.0 * spec.kv_lora_rank + spec.rope_head_dim)
    expanded = 2.0 * spec.n_heads * (2.0 * spec.head_dim + spec.rope_head_dim)
    a = spec.mla_absorbed
    return where(is_latent(spec), a * absorbed + (1.0 - a) * expanded, grouped)


def expanded_kv_elements_per_token(spec):
    """Per-head keys and values one cached token expands into per layer without absorption
    (0 for absorbed MLA and for grouped-query attention, which reads its cache directly)."""
    return where(
        is_latent(spec), (1.0 - spec.mla_absorbed) * spec.n_heads * 2.0 * spec.head_dim, 0.0
    )


def mean_keys(context, new_tokens):
    """Keys a new token attends to, averaged over the pass's ``new_tokens`` (causal):
    the ``context`` cached tokens plus the new ones up to itself."""
    return context + (new_tokens + 1.0) / 2.0


# Passes over fewer tokens than this (over all sequences) count as passes over none: a
# quotient by the token count has a derivative of 1 / tokens^2, which leaves float32's
# range below about 1e-19 tokens (and a zero cotangent times it is NaN); 1e-12 leaves
# a margin, and the FLOPs of so few tokens take about 1e-13 s or less on any chip.
NO_TOKENS = 1e-12


def mean_keys_in_window(context, new_tokens, window):
    """``mean_keys`` for a sliding window: new token ``i`` (1-based) attends to
    ``min(context + i, window)`` keys; the mean over ``i = 1 .. new_tokens`` in closed form.

    Examples:
        >>> mean_keys_in_window(0.0, 4.0, 2.0)  # keys 1, 2, 2, 2
        1.75
    """
    below = minimum(maximum(window - context, 0.0), new_tokens)  # positions not yet clipped
    total = below * context + below * (below + 1.0) / 2.0 + (new_tokens - below) * window
    # A pass of no new tokens (an empty prompt's prefill) attends to nothing: its limit,
    # not 0 / 0 = NaN (which the where below keeps out of values and gradients); nor
    # one of fewer than NO_TOKENS, whose quotient's derivative overflows float32.
    some = new_tokens >= NO_TOKENS
    return where(some, total / where(some, new_tokens, 1.0), minimum(context, window))


def cached_in_window(context, window):
    """Tokens a sliding-window layer keeps in its cache: the last ``window`` of them."""
    return minimum(context, window)
