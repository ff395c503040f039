"""A decoder-only flax transformer built from a `TransformerSpec`, with a KV cache.

The network has every feature the cost model prices: grouped-query attention
(``n_kv_heads < n_heads``), a gated (SwiGLU) or plain (GELU) MLP, any vocabulary,
tied or separate embeddings, the storage dtype of the spec (fp32 or bf16) and
mixture-of-experts MLPs (``n_moe_layers`` blocks with a router and ``n_experts``
experts, top-``experts_per_token`` routing with softmax gates over the chosen ones). It
adds what a real decoder needs and the cost model ignores as negligible: RMSNorm,
rotary position embeddings and a causal mask.

The KV cache is preallocated with a static length (as in gpt-fast): one
``(batch, n_kv_heads, max_len, head_dim)`` buffer per layer for keys and one for
values (heads before positions, so attention reads it without a transpose), and a
per-sequence ``positions`` vector counting the tokens already in it. A forward
pass writes the new tokens' keys and values at ``positions`` and attends, under a
causal mask, over the whole buffer. Sequences of one batch may hold different
numbers of tokens (speculative decoding accepts a different number per sequence),
so writes are per-sequence scatters.

An MoE MLP groups the pass's (token, expert) pairs by expert and runs each expert
that some pair chose on its own rows (padded to a power of two), skipping the others,
so a pass reads the weights of the distinct experts its tokens touch and does at most
twice the routed FLOPs, as the cost model prices (see `MixtureOfExperts`).

Weights are random from a fixed seed: enough for timing, and made to behave like
a language model where acceptance matters (see ``specsim.measure._drafts``):
``logit_scale`` sets how peaked next-token distributions are and
``residual_scale`` how much each block changes the residual stream.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import struct

from ..models import TransformerSpec

ROPE_THETA = 10_000.0
NORM_EPS = 1e-6
_DTYPES = {4.0: jnp.float32, 2.0: jnp.bfloat16}
_DTYPE_NAMES = {jnp.dtype(jnp.float32): "fp32", jnp.dtype(jnp.bfloat16): "bf16"}


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Integer architecture and dtypes of a concrete network (static, hashable).

    Attributes:
        n_layers, d_model, n_heads, n_kv_heads, head_dim, d_ff, vocab: sizes.
        gated_mlp: SwiGLU (three FFN matrices) instead of GELU (two).
        tied_embeddings: the LM head is the transposed input embedding.
        param_dtype: dtype of the weights (``float32`` or ``bfloat16``).
        kv_dtype: dtype of the KV cache.
        activation_dtype: dtype of activations between matmuls.
        logit_scale: multiplies the LM head at initialisation (peakier next-token
            distributions for larger values).
        residual_scale: multiplies the output projections of every block at
            initialisation (how far each block moves the residual stream).
        n_moe_layers: blocks (the first ones) whose MLP is a mixture of experts.
        n_experts: experts per MoE block.
        experts_per_token: experts each token is routed to (top-k).
        d_ff_expert: FFN width of one expert.
    """

    n_layers: int
    d_model: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    d_ff: int
    vocab: int
    gated_mlp: bool = True
    tied_embeddings: bool = False
    param_dtype: Any = jnp.float32
    kv_dtype: Any = jnp.float32
    activation_dtype: Any = jnp.float32
    logit_scale: float = 1.0
    residual_scale: float = 1.0
    n_moe_layers: int = 0
    n_experts: int = 0
    experts_per_token: int = 0
    d_ff_expert: int = 0

    def __post_init__(self):
        if self.n_moe_layers and not (
            0 < self.n_moe_layers <= self.n_layers
            and 0 < self.experts_per_token <= self.n_experts
            and self.d_ff_expert > 0
        ):
            raise ValueError(
                "MoE blocks need 0 < n_moe_layers <= n_layers, 0 < experts_per_token <= "
                f"n_experts and d_ff_expert > 0; got {self.n_moe_layers}, "
                f"{self.experts_per_token}, {self.n_experts}, {self.d_ff_expert}"
            )

    @classmethod
    def from_spec(
        cls, spec: TransformerSpec, *, logit_scale: float = 1.0, residual_scale: float = 1.0
    ) -> ModelConfig:
        """The concrete network of ``spec`` (sizes must be whole numbers).

        Raises:
            ValueError: a size is not a positive integer, ``n_heads`` is not a multiple of
                ``n_kv_heads``, or a dtype other than fp32/bf16 is requested.
        """
        if not isinstance(spec, TransformerSpec):
            raise ValueError(f"expected a TransformerSpec, got {type(spec).__name__}")
        spec.validate()
        sizes = {}
        for name in ("n_layers", "d_model", "n_heads", "n_kv_heads", "head_dim", "d_ff", "vocab"):
            value = _scalar(getattr(spec, name), name)
            if value != round(value) or value < 1:
                raise ValueError(f"TransformerSpec.{name} must be a positive integer, got {value}")
            sizes[name] = round(value)
        if sizes["n_heads"] % sizes["n_kv_heads"]:
            raise ValueError(
                f"n_heads ({sizes['n_heads']}) must be a multiple of n_kv_heads "
                f"({sizes['n_kv_heads']})"
            )
        mlp = _scalar(spec.mlp_matrices, "mlp_matrices")
        if mlp not in (2.0, 3.0):
            raise ValueError(f"mlp_matrices must be 2 or 3, got {mlp}")
        for name in _UNBUILT:
            if _scalar(getattr(spec, name), name) != 0:
                raise ValueError(
                    f"measure builds dense and MoE networks with grouped-query attention; "
                    f"TransformerSpec.{name} must be 0, got {_scalar(getattr(spec, name), name)}"
                )
        expert_bytes = _scalar(spec.expert_weight_bytes, "expert_weight_bytes")
        if expert_bytes not in (0.0, _scalar(spec.weight_bytes, "weight_bytes")):
            raise ValueError("measure stores experts like the other weights (expert_weight_bytes)")
        moe = {}
        for name in ("n_moe_layers", "n_experts", "experts_per_token", "d_ff_expert"):
            value = _scalar(getattr(spec, name), name)
            if value != round(value) or value < 0:
                raise ValueError(f"TransformerSpec.{name} must be a whole number, got {value}")
            moe[name] = round(value)
        dtypes = {}
        for name in ("weight_bytes", "kv_bytes", "activation_bytes"):
            nbytes = _scalar(getattr(spec, name), name)
            if nbytes not in _DTYPES:
                raise ValueError(
                    f"measure runs fp32 (4 bytes) or bf16 (2 bytes) networks; "
                    f"TransformerSpec.{name} = {nbytes}"
                )
            dtypes[name] = _DTYPES[nbytes]
        return cls(
            **sizes,
            gated_mlp=mlp == 3.0,
            tied_embeddings=_scalar(spec.tied_embeddings, "tied_embeddings") == 1.0,
            param_dtype=dtypes["weight_bytes"],
            kv_dtype=dtypes["kv_bytes"],
            activation_dtype=dtypes["activation_bytes"],
            logit_scale=float(logit_scale),
            residual_scale=float(residual_scale),
            **moe,
        )

    def to_spec(self) -> TransformerSpec:
        """The `TransformerSpec` this network realises (what the cost model prices)."""
        names = {jnp.dtype(d): n for d, n in _DTYPE_NAMES.items()}
        activation = names[jnp.dtype(self.activation_dtype)]
        return TransformerSpec.create(
            n_layers=self.n_layers,
            d_model=self.d_model,
            n_heads=self.n_heads,
            n_kv_heads=self.n_kv_heads,
            head_dim=self.head_dim,
            d_ff=self.d_ff,
            vocab=self.vocab,
            gated_mlp=self.gated_mlp,
            tied_embeddings=self.tied_embeddings,
            weight_dtype=names[jnp.dtype(self.param_dtype)],
            kv_dtype=names[jnp.dtype(self.kv_dtype)],
            activation_dtype=activation,
            compute_dtype=activation,
            n_moe_layers=self.n_moe_layers,
            n_experts=self.n_experts,
            experts_per_token=self.experts_per_token,
            d_ff_expert=self.d_ff_expert,
        )

    def with_layers(self, n_layers: int) -> ModelConfig:
        """The same network truncated (or extended) to ``n_layers`` blocks (MoE blocks
        come first, so a truncated network keeps as many of them as fit)."""
        n_layers = int(n_layers)
        return dataclasses.replace(
            self, n_layers=n_layers, n_moe_layers=min(self.n_moe_layers, n_layers)
        )

    @property
    def parameter_bytes(self) -> int:
        """Bytes of all weights (norm scales included)."""
        q = self.n_heads * self.head_dim
        kv = self.n_kv_heads * self.head_dim
        matrices = 3 if self.gated_mlp else 2
        mlp = matrices * self.d_model * self.d_ff
        block = self.d_model * (q + 2 * kv) + q * self.d_model + mlp + 2 * self.d_model
        moe_mlp = self.n_experts * (self.d_model + matrices * self.d_model * self.d_ff_expert)
        embeddings = self.vocab * self.d_model * (1 if self.tied_embeddings else 2)
        count = self.n_layers * block + self.n_moe_layers * (moe_mlp - mlp)
        count += embeddings + self.d_model
        return count * jnp.dtype(self.param_dtype).itemsize

    def cache_bytes(self, batch: int, max_len: int) -> int:
        """Bytes of a KV cache for ``batch`` sequences of up to ``max_len`` tokens."""
        per_token = 2 * self.n_layers * self.n_kv_heads * self.head_dim
        return batch * max_len * per_token * jnp.dtype(self.kv_dtype).itemsize


@struct.dataclass
class KVCache:
    """Keys and values of every layer, and how many tokens each sequence holds.

    Attributes:
        keys: one ``(batch, n_kv_heads, max_len, head_dim)`` array per layer.
        values: the same shapes as ``keys``.
        positions: ``(batch,)`` int32, tokens already cached per sequence.
    """

    keys: tuple
    values: tuple
    positions: jax.Array

    @property
    def max_len(self) -> int:
        """Capacity in tokens per sequence."""
        return self.keys[0].shape[2]


def init_cache(config: ModelConfig, batch: int, max_len: int) -> KVCache:
    """An empty cache for ``batch`` sequences of up to ``max_len`` tokens.

    Examples:
        >>> cfg = ModelConfig(n_layers=2, d_model=32, n_heads=4, n_kv_heads=2, head_dim=8,
        ...                   d_ff=64, vocab=50)
        >>> init_cache(cfg, batch=3, max_len=16).keys[0].shape
        (3, 2, 16, 8)
    """
    shape = (batch, config.n_kv_heads, max_len, config.head_dim)
    zeros = tuple(jnp.zeros(shape, config.kv_dtype) for _ in range(config.n_layers))
    return KVCache(
        keys=zeros,
        values=tuple(jnp.zeros(shape, config.kv_dtype) for _ in range(config.n_layers)),
        positions=jnp.zeros((batch,), jnp.int32),
    )


class RMSNorm(nn.Module):
    """Root-mean-square layer norm with a learned scale."""

    dtype: Any

    @nn.compact
    def __call__(self, x):
        scale = self.param("scale", nn.initializers.ones, (x.shape[-1],), self.dtype)
        x32 = x.astype(jnp.float32)
        normed = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + NORM_EPS)
        scale = scale.astype(jnp.float32).reshape((1,) * (x.ndim - 1) + (-1,))
        return (normed * scale).astype(x.dtype)


def _rope(x, positions):
    """Rotary embedding of ``x`` (batch, tokens, heads, head_dim) at ``positions``
    (batch, tokens)."""
    half = x.shape[-1] // 2
    freqs = ROPE_THETA ** (-jnp.arange(half, dtype=jnp.float32) / half)
    angles = (
        positions[..., None].astype(jnp.float32) * freqs[None, None, :]
    )  # (batch, tokens, half)
    cos = jnp.cos(angles)[:, :, None, :]
    sin = jnp.sin(angles)[:, :, None, :]
    x1, x2 = x[..., :half].astype(jnp.float32), x[..., half : 2 * half].astype(jnp.float32)
    rotated = jnp.concatenate([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1)
    if 2 * half < x.shape[-1]:  # odd head_dim: the last channel is not rotated
        rotated = jnp.concatenate([rotated, x[..., 2 * half :].astype(jnp.float32)], axis=-1)
    return rotated.astype(x.dtype)


def _write(cache, new, positions):
    """Writes ``new`` (batch, heads, tokens, head_dim) into ``cache`` (batch, heads, max_len,
    head_dim) at each sequence's position."""
    return jax.vmap(lambda c, n, p: jax.lax.dynamic_update_slice_in_dim(c, n, p, axis=1))(
        cache, new.astype(cache.dtype), positions
    )


class MixtureOfExperts(nn.Module):
    """Top-k routed experts, grouped as a serving kernel groups them.

    The router picks each token's ``experts_per_token`` experts (softmax gates over the
    chosen ones). The ``tokens x k`` (token, expert) pairs are sorted by expert; each
    expert then multiplies only its own contiguous rows, padded up to a power of two
    (a ``lax.switch`` over the static sizes; each expert's weights are their own arrays),
    and an expert no pair chose is skipped without reading its weights. So a pass reads
    the distinct experts its tokens touch and does at most twice the routed FLOPs, as the
    cost model prices a grouped GEMM.
    """

    config: ModelConfig

    @nn.compact
    def __call__(self, h):
        cfg = self.config
        batch, tokens, _ = h.shape
        n_tokens, k = batch * tokens, cfg.experts_per_token
        pairs = n_tokens * k
        x = h.reshape(n_tokens, cfg.d_model)
        router = nn.Dense(
            cfg.n_experts,
            use_bias=False,
            dtype=cfg.activation_dtype,
            param_dtype=cfg.param_dtype,
            name="router",
        )
        top_logits, chosen = jax.lax.top_k(router(x).astype(jnp.float32), k)
        gates = jax.nn.softmax(top_logits, axis=-1).reshape(pairs)
        expert_of_pair = chosen.reshape(pairs)
        order = jnp.argsort(expert_of_pair, stable=True)
        token_of_pair = (jnp.arange(pairs, dtype=jnp.int32) // k)[order]
        counts = jnp.bincount(expert_of_pair, length=cfg.n_experts)
        starts = jnp.cumsum(counts) - counts
        sizes = [1]
        while sizes[-1] < pairs:
            sizes.append(2 * sizes[-1])
        # Rows in expert order, with room for the largest padded slice at any start.
        rows = jnp.zeros((pairs + sizes[-1], cfg.d_model), cfg.activation_dtype)
        rows = rows.at[:pairs].set(x[token_of_pair].astype(cfg.activation_dtype))

        in_init = nn.initializers.variance_scaling(
            1.0, "fan_in", "truncated_normal", in_axis=-2, out_axis=-1
        )
        out_init = nn.initializers.variance_scaling(
            cfg.residual_scale**2, "fan_in", "normal", in_axis=-2, out_axis=-1
        )
        # One array per expert (not one stacked array indexed per expert): XLA's CPU
        # backend copies a slice of a stacked weight before multiplying it, which would
        # read each touched expert three times instead of once.
        names = ("gate", "up") if cfg.gated_mlp else ("in",)
        shape_in, shape_out = (cfg.d_model, cfg.d_ff_expert), (cfg.d_ff_expert, cfg.d_model)
        inputs = [
            [self.param(f"experts_{n}_{e}", in_init, shape_in, cfg.param_dtype) for n in names]
            for e in range(cfg.n_experts)
        ]
        outputs = [
            self.param(f"experts_out_{e}", out_init, shape_out, cfg.param_dtype)
            for e in range(cfg.n_experts)
        ]

        def run(e, size):
            def apply(out):
                start, count = starts[e], counts[e]
                block = jax.lax.dynamic_slice_in_dim(rows, start, size)
                projected = [block @ w.astype(cfg.activation_dtype) for w in inputs[e]]
                if cfg.gated_mlp:
                    inner = jax.nn.silu(projected[0]) * projected[1]
                else:
                    inner = jax.nn.gelu(projected[0])
                result = (inner @ outputs[e].astype(cfg.activation_dtype)).astype(jnp.float32)
                mine = (jnp.arange(size) < count)[:, None]  # rows past count are other experts'
                done = jax.lax.dynamic_slice_in_dim(out, start, size)
                return jax.lax.dynamic_update_slice_in_dim(
                    out, done + jnp.where(mine, result, 0.0), start, axis=0
                )

            return apply

        out = jnp.zeros((pairs + sizes[-1], cfg.d_model), jnp.float32)
        for e in range(cfg.n_experts):  # unrolled: each expert's weights are its own array
            count = counts[e]
            need = jnp.ceil(jnp.log2(jnp.maximum(count, 1).astype(jnp.float32))).astype(jnp.int32)
            index = jnp.clip(jnp.where(count == 0, 0, 1 + need), 0, len(sizes))
            # Branch 0 skips the expert; branch i >= 1 runs it on sizes[i - 1] >= count rows.
            branches = [lambda out: out] + [run(e, size) for size in sizes]
            out = jax.lax.switch(index, branches, out)
        weighted = out[:pairs] * gates[order][:, None]
        total = jnp.zeros((n_tokens, cfg.d_model), jnp.float32).at[token_of_pair].add(weighted)
        return total.astype(h.dtype).reshape(batch, tokens, cfg.d_model)


class Block(nn.Module):
    """Pre-norm transformer block: GQA attention over the KV cache, then the MLP (a
    mixture of experts if ``moe``)."""

    config: ModelConfig
    moe: bool = False

    @nn.compact
    def __call__(self, x, keys, values, positions):
        cfg = self.config
        dense = functools.partial(
            nn.DenseGeneral, use_bias=False, dtype=cfg.activation_dtype, param_dtype=cfg.param_dtype
        )
        out_init = nn.initializers.variance_scaling(cfg.residual_scale**2, "fan_in", "normal")
        batch, tokens, _ = x.shape
        groups = cfg.n_heads // cfg.n_kv_heads

        h = RMSNorm(cfg.param_dtype, name="attention_norm")(x)
        q = dense((cfg.n_heads, cfg.head_dim), name="wq")(h)
        k = dense((cfg.n_kv_heads, cfg.head_dim), name="wk")(h)
        v = dense((cfg.n_kv_heads, cfg.head_dim), name="wv")(h)
        token_positions = positions[:, None] + jnp.arange(tokens, dtype=jnp.int32)[None, :]
        q = _rope(q, token_positions)
        k = _rope(k, token_positions)
        keys = _write(keys, k.transpose(0, 2, 1, 3), positions)
        values = _write(values, v.transpose(0, 2, 1, 3), positions)

        # Queries of one KV head's group side by side: (batch, kv_heads, groups * tokens, dim).
        q = q.reshape(batch, tokens, cfg.n_kv_heads, groups, cfg.head_dim)
        q = q.transpose(0, 2, 3, 1, 4).reshape(batch, cfg.n_kv_heads, groups * tokens, -1)
        scores = jnp.einsum(
            "bkqd,bksd->bkqs", q, keys.astype(q.dtype), preferred_element_type=jnp.float32
        ) / math.sqrt(cfg.head_dim)
        slots = jnp.arange(keys.shape[2], dtype=jnp.int32)
        visible = slots[None, None, :] <= token_positions[:, :, None]  # (batch, tokens, slots)
        visible = jnp.tile(visible, (1, groups, 1))[:, None]  # (batch, 1, groups * tokens, slots)
        scores = jnp.where(visible, scores, -jnp.inf)
        weights = jax.nn.softmax(scores, axis=-1).astype(cfg.activation_dtype)
        attended = jnp.einsum("bkqs,bksd->bkqd", weights, values.astype(weights.dtype))
        attended = attended.reshape(batch, cfg.n_kv_heads, groups, tokens, cfg.head_dim)
        attended = attended.transpose(0, 3, 1, 2, 4).reshape(
            batch, tokens, cfg.n_heads, cfg.head_dim
        )
        x = x + dense(cfg.d_model, axis=(-2, -1), kernel_init=out_init, name="wo")(attended)

        h = RMSNorm(cfg.param_dtype, name="mlp_norm")(x)
        if self.moe:
            return x + MixtureOfExperts(cfg, name="moe")(h), keys, values
        if cfg.gated_mlp:
            gate = dense(cfg.d_ff, name="w_gate")(h)
            up = dense(cfg.d_ff, name="w_up")(h)
            inner = jax.nn.silu(gate) * up
        else:
            inner = jax.nn.gelu(dense(cfg.d_ff, name="w_in")(h))
        x = x + dense(cfg.d_model, kernel_init=out_init, name="w_out")(inner)
        return x, keys, values


class Transformer(nn.Module):
    """Decoder-only transformer; ``__call__`` is one forward pass over new tokens.

    Parameters are named ``embedding``, ``block_0`` ... ``block_{n-1}``, ``final_norm``
    and ``lm_head``, so a network with fewer layers can run on a prefix of another's
    parameters (the layer-skipping draft of ``specsim.measure.layer_skip_draft``).
    """

    config: ModelConfig

    @nn.compact
    def __call__(self, tokens, cache: KVCache):
        """Logits for ``tokens`` (batch, new_tokens) and the cache with them appended.

        Returns:
            ``(logits, cache)``: float32 logits (batch, new_tokens, vocab); the cache with
            the new keys/values written and ``positions`` advanced by ``new_tokens``.
        """
        cfg = self.config
        embedding = nn.Embed(
            cfg.vocab,
            cfg.d_model,
            dtype=cfg.activation_dtype,
            param_dtype=cfg.param_dtype,
            embedding_init=nn.initializers.normal(1.0),
            name="embedding",
        )
        x = embedding(tokens)
        keys, values = list(cache.keys), list(cache.values)
        for layer in range(cfg.n_layers):
            moe = layer < cfg.n_moe_layers
            x, keys[layer], values[layer] = Block(cfg, moe, name=f"block_{layer}")(
                x, keys[layer], values[layer], cache.positions
            )
        x = RMSNorm(cfg.param_dtype, name="final_norm")(x)
        if cfg.tied_embeddings:
            logits = embedding.attend(x) * (cfg.logit_scale / math.sqrt(cfg.d_model))
        else:
            head_init = nn.initializers.variance_scaling(cfg.logit_scale**2, "fan_in", "normal")
            logits = nn.Dense(
                cfg.vocab,
                use_bias=False,
                dtype=cfg.activation_dtype,
                param_dtype=cfg.param_dtype,
                kernel_init=head_init,
                name="lm_head",
            )(x)
        new_cache = KVCache(
            keys=tuple(keys),
            values=tuple(values),
            positions=cache.positions + tokens.shape[1],
        )
        return logits.astype(jnp.float32), new_cache


@struct.dataclass
class Model:
    """A concrete network: its static config and its parameters.

    Attributes:
        config: static architecture and dtypes.
        params: the flax parameter tree.
    """

    params: Any
    config: ModelConfig = struct.field(pytree_node=False)

    @property
    def spec(self) -> TransformerSpec:
        """The `TransformerSpec` the cost model prices this network with."""
        return self.config.to_spec()


def forward(model: Model, tokens, cache: KVCache):
    """One forward pass: ``(logits, cache)``, see ``Transformer.__call__``."""
    return Transformer(model.config).apply({"params": model.params}, tokens, cache)


def build_model(
    spec: TransformerSpec | ModelConfig,
    seed: int = 0,
    *,
    logit_scale: float = 1.0,
    residual_scale: float = 1.0,
    check_memory: bool = True,
) -> Model:
    """Random-weight network for ``spec`` on the default device.

    Args:
        spec: the architecture (whole-number sizes; fp32 or bf16 dtypes), or a config.
        seed: PRNG seed of the weights.
        logit_scale, residual_scale: see `ModelConfig` (ignored for a config).
        check_memory: refuse, before allocating, a model whose weights do not fit in
            the device's free memory.

    Returns:
        `Model` with parameters on the default device.

    Raises:
        ValueError: invalid spec, or weights larger than the device's memory.

    Examples:
        >>> from specsim.models import TransformerSpec
        >>> spec = TransformerSpec.create(n_layers=2, d_model=64, n_heads=4, d_ff=128,
        ...                               vocab=100, weight_dtype="fp32",
        ...                               activation_dtype="fp32")
        >>> model = build_model(spec)
        >>> model.params["block_1"]["wq"]["kernel"].shape
        (64, 4, 16)
    """
    if isinstance(spec, ModelConfig):
        config = spec
    else:
        config = ModelConfig.from_spec(spec, logit_scale=logit_scale, residual_scale=residual_scale)
    if check_memory:
        from ._device import check_fits

        check_fits(config.parameter_bytes, what=f"weights of a {config.n_layers}-layer model")
    cache = init_cache(config, batch=1, max_len=1)
    tokens = jnp.zeros((1, 1), jnp.int32)
    params = jax.jit(Transformer(config).init)(jax.random.key(seed), tokens, cache)["params"]
    return Model(params=params, config=config)


# Architecture fields measure does not build (MLA, sliding windows, shared experts).
_UNBUILT = ("kv_lora_rank", "n_local_layers", "d_ff_shared")


def _scalar(value, name: str) -> float:
    array = jnp.asarray(value)
    if array.ndim != 0:
        raise ValueError(f"TransformerSpec.{name} must be a scalar to build a network")
    return float(array)
