"""`TransformerSpec`: the architecture of a decoder-only transformer as a pytree.

Every architectural number is a traced float leaf, so layer count and width can
be real numbers (the cost model is a smooth function of them and the optimiser
differentiates through them) and specs of different models can be stacked into
one vmapped grid. Only the compute dtype, which selects a peak-FLOP/s column of
the hardware, is static.
"""

from __future__ import annotations

import math
import operator
from typing import Any

import numpy as np
from flax import struct

from .._numerics import concrete, concrete_values, remember_valid, validated_before, where
from . import _attention, _moe
from ._formats import BYTES_PER_ELEMENT as BYTES_PER_ELEMENT
from ._formats import WEIGHT_ONLY_FORMATS, dtype_bytes

COMPUTE_DTYPES = ("fp32", "bf16", "fp8", "int8")

_FIELDS = (
    "n_layers",
    "d_model",
    "n_heads",
    "n_kv_heads",
    "head_dim",
    "d_ff",
    "vocab",
    "mlp_matrices",
    "tied_embeddings",
    "weight_bytes",
    "kv_bytes",
    "activation_bytes",
)
# Architecture extensions: zero (their default) is a dense model with plain attention.
_NON_NEGATIVE = (
    "n_moe_layers",
    "n_experts",
    "experts_per_token",
    "d_ff_expert",
    "d_ff_shared",
    "routing_skew",
    "expert_weight_bytes",
    "kv_lora_rank",
    "q_lora_rank",
    "rope_head_dim",
    "mla_absorbed",
    "n_local_layers",
    "sliding_window",
    "n_mtp_layers",
)
_positive_fields = operator.attrgetter(*(f for f in _FIELDS if f != "tied_embeddings"))
_non_negative_fields = operator.attrgetter(*_NON_NEGATIVE)


@struct.dataclass
class TransformerSpec:
    """Architecture of a decoder-only transformer (all sizes are traced floats).

    The first group of fields describes a dense transformer with grouped-query
    attention. The others extend it to mixtures of experts (``specsim.models._moe``),
    multi-head latent attention and sliding-window layers
    (``specsim.models._attention``); their defaults (zeros) leave a dense model's costs
    exactly unchanged, and since every field is a float leaf, dense and MoE specs stack
    into one vmapped grid.

    Attributes:
        n_layers: number of transformer blocks.
        d_model: residual-stream width.
        n_heads: query heads.
        n_kv_heads: key/value heads (``< n_heads`` means grouped-query attention).
        head_dim: width of one attention head (for MLA: the non-rotary query/key width,
            equal to the value width).
        d_ff: FFN intermediate width of the dense MLP layers.
        vocab: vocabulary size.
        mlp_matrices: 3 for a gated MLP (SwiGLU/GeGLU), 2 for a plain one (experts too).
        tied_embeddings: 1.0 if the LM head shares the input embedding, else 0.0.
        weight_bytes: bytes per weight element (2 bf16, 1 int8/fp8, 0.5 int4; block
            formats include their scales, see ``specsim.models._formats``).
        kv_bytes: bytes per KV-cache element.
        activation_bytes: bytes per activation element.
        n_moe_layers: blocks whose MLP is a mixture of experts (0: dense model).
        n_experts: routed experts per MoE layer.
        experts_per_token: routed experts each token uses (top-k).
        d_ff_expert: FFN width of one routed expert.
        d_ff_shared: total FFN width of the shared expert(s) every token of an MoE layer
            uses (0: none).
        routing_skew: in [0, 1); 0 is uniform independent routing (see ``_moe``).
        expert_weight_bytes: bytes per routed-expert weight element; 0 means
            ``weight_bytes`` (gpt-oss stores only its experts in MXFP4).
        kv_lora_rank: latent width of multi-head latent attention (0: grouped-query).
        q_lora_rank: rank of MLA's low-rank query projection (0: full rank).
        rope_head_dim: MLA's decoupled rotary key/query width per head.
        mla_absorbed: 1 for absorbed MLA compute, 0 for expanded keys and values.
        n_local_layers: blocks with sliding-window attention (0: all global).
        sliding_window: tokens a sliding-window layer attends to and keeps cached.
        n_mtp_layers: multi-token-prediction modules shipped with the model (DeepSeek-V3);
            counted by ``mtp_parameter_count``, not by a forward pass of the main model.
        compute_dtype: static; which peak FLOP/s of the hardware the matmuls run at
            (``"fp32"``, ``"bf16"``, ``"fp8"`` or ``"int8"``).

    Examples:
        >>> from specsim.models import TransformerSpec
        >>> spec = TransformerSpec.create(n_layers=2, d_model=256, n_heads=4, d_ff=1024,
        ...                               vocab=8000, gated_mlp=False)
        >>> round(float(spec.parameter_count) / 1e6, 3)
        5.669
    """

    n_layers: Any
    d_model: Any
    n_heads: Any
    n_kv_heads: Any
    head_dim: Any
    d_ff: Any
    vocab: Any
    mlp_matrices: Any = 3.0
    tied_embeddings: Any = 0.0
    weight_bytes: Any = 2.0
    kv_bytes: Any = 2.0
    activation_bytes: Any = 2.0
    n_moe_layers: Any = 0.0
    n_experts: Any = 0.0
    experts_per_token: Any = 0.0
    d_ff_expert: Any = 0.0
    d_ff_shared: Any = 0.0
    routing_skew: Any = 0.0
    expert_weight_bytes: Any = 0.0
    kv_lora_rank: Any = 0.0
    q_lora_rank: Any = 0.0
    rope_head_dim: Any = 0.0
    mla_absorbed: Any = 1.0
    n_local_layers: Any = 0.0
    sliding_window: Any = 0.0
    n_mtp_layers: Any = 0.0
    compute_dtype: str = struct.field(pytree_node=False, default="bf16")

    @classmethod
    def create(
        cls,
        *,
        n_layers: float,
        d_model: float,
        n_heads: float,
        d_ff: float,
        vocab: float,
        n_kv_heads: float | None = None,
        head_dim: float | None = None,
        gated_mlp: bool = True,
        tied_embeddings: bool = False,
        weight_dtype: str = "bf16",
        kv_dtype: str | None = None,
        activation_dtype: str = "bf16",
        compute_dtype: str | None = None,
        n_moe_layers: float = 0,
        n_experts: float = 0,
        experts_per_token: float = 0,
        d_ff_expert: float = 0,
        d_ff_shared: float = 0,
        routing_skew: float = 0,
        expert_weight_dtype: str | None = None,
        kv_lora_rank: float = 0,
        q_lora_rank: float = 0,
        rope_head_dim: float = 0,
        mla_absorbed: bool | float = True,
        n_local_layers: float = 0,
        sliding_window: float = 0,
        n_mtp_layers: float = 0,
    ) -> TransformerSpec:
        """Builds a validated spec from concrete numbers and dtype names.

        Args:
            n_layers, d_model, n_heads, d_ff, vocab: positive sizes.
            n_kv_heads: defaults to ``n_heads`` (multi-head attention).
            head_dim: defaults to ``d_model / n_heads``.
            gated_mlp: three FFN matrices (SwiGLU) instead of two.
            tied_embeddings: LM head shares the embedding matrix.
            weight_dtype, kv_dtype, activation_dtype: ``"fp32"``, ``"bf16"``,
                ``"fp16"``, ``"fp8"``, ``"int8"``, or (weights only) ``"int4"``,
                ``"mxfp4"``, ``"nvfp4"``, ``"fp8_block"``.
            compute_dtype: defaults to ``"fp8"``/``"int8"`` when activations are
                8-bit, else ``"bf16"`` (or ``"fp32"`` for fp32 activations).
            n_moe_layers, n_experts, experts_per_token, d_ff_expert, d_ff_shared,
                routing_skew: mixture of experts (all 0: dense).
            expert_weight_dtype: storage of the routed experts (default ``weight_dtype``).
            kv_lora_rank, q_lora_rank, rope_head_dim, mla_absorbed: multi-head latent
                attention (``kv_lora_rank = 0``: grouped-query attention).
            n_local_layers, sliding_window: sliding-window layers and their window.
            n_mtp_layers: multi-token-prediction modules shipped with the model.

        Raises:
            ValueError: a size is not positive/finite, the MoE, MLA or window fields
                are inconsistent, or a dtype is unknown.
        """
        if kv_dtype is None:
            kv_dtype = activation_dtype if weight_dtype in WEIGHT_ONLY_FORMATS else weight_dtype
        if weight_dtype in ("int8", "int4") and kv_dtype == weight_dtype:
            kv_dtype = activation_dtype
        if compute_dtype is None:
            compute_dtype = {"fp32": "fp32", "float32": "fp32", "fp8": "fp8", "int8": "int8"}.get(
                activation_dtype, "bf16"
            )
        n_kv_heads = n_heads if n_kv_heads is None else n_kv_heads
        if head_dim is None:
            # n_heads <= 0 must reach validate() below as a ValueError, not a ZeroDivisionError.
            head_dim = d_model / n_heads if n_heads else math.nan
        spec = cls(
            n_layers=float(n_layers),
            d_model=float(d_model),
            n_heads=float(n_heads),
            n_kv_heads=float(n_kv_heads),
            head_dim=float(head_dim),
            d_ff=float(d_ff),
            vocab=float(vocab),
            mlp_matrices=3.0 if gated_mlp else 2.0,
            tied_embeddings=1.0 if tied_embeddings else 0.0,
            weight_bytes=dtype_bytes(weight_dtype, "weight_dtype"),
            kv_bytes=dtype_bytes(kv_dtype, "kv_dtype"),
            activation_bytes=dtype_bytes(activation_dtype, "activation_dtype"),
            n_moe_layers=float(n_moe_layers),
            n_experts=float(n_experts),
            experts_per_token=float(experts_per_token),
            d_ff_expert=float(d_ff_expert),
            d_ff_shared=float(d_ff_shared),
            routing_skew=float(routing_skew),
            expert_weight_bytes=0.0
            if expert_weight_dtype is None
            else dtype_bytes(expert_weight_dtype, "expert_weight_dtype"),
            kv_lora_rank=float(kv_lora_rank),
            q_lora_rank=float(q_lora_rank),
            rope_head_dim=float(rope_head_dim),
            mla_absorbed=float(mla_absorbed),
            n_local_layers=float(n_local_layers),
            sliding_window=float(sliding_window),
            n_mtp_layers=float(n_mtp_layers),
            compute_dtype=compute_dtype,
        )
        spec.validate()
        return spec

    def validate(self) -> TransformerSpec:
        """Raises ``ValueError`` if a concrete field is invalid.

        Sizes must be positive and finite; the extension fields non-negative and finite,
        with MoE layers having experts, ``0 < experts_per_token <= n_experts`` and a
        positive expert width, ``routing_skew < 1``, ``mla_absorbed <= 1``, at most
        ``n_layers`` MoE or sliding-window layers and a positive window where there are
        sliding-window layers.
        """
        if validated_before(self):  # plain floats, found valid before: cannot have changed
            return self
        if self.compute_dtype not in COMPUTE_DTYPES:
            raise ValueError(
                f"compute_dtype must be one of {COMPUTE_DTYPES}, got {self.compute_dtype!r}"
            )
        if _valid_floats(self):  # the common case, checked without NumPy
            self._validate_extensions()
            remember_valid(self, ())  # _valid_floats: every checked field a Python float
            return self
        for name in _FIELDS:
            for v in _concrete_values(getattr(self, name)):
                if name == "tied_embeddings":
                    if v not in (0.0, 1.0):
                        raise ValueError(f"TransformerSpec.tied_embeddings must be 0 or 1, got {v}")
                elif not (math.isfinite(v) and v > 0):
                    raise ValueError(
                        f"TransformerSpec.{name} must be a positive finite number, got {v}"
                    )
        for name in _NON_NEGATIVE:
            for v in _concrete_values(getattr(self, name)):
                if not (math.isfinite(v) and v >= 0):
                    raise ValueError(
                        f"TransformerSpec.{name} must be a non-negative finite number, got {v}"
                    )
        self._validate_extensions()
        return self

    def _validate_extensions(self) -> None:
        names = (
            "n_layers",
            "n_moe_layers",
            "n_experts",
            "experts_per_token",
            "d_ff_expert",
            "routing_skew",
            "mla_absorbed",
            "n_local_layers",
            "sliding_window",
        )
        v = {name: getattr(self, name) for name in names}
        if not all(type(x) is float for x in v.values()):  # catalogue specs: plain floats
            values = {name: concrete(x) for name, x in v.items()}
            if any(x is None for x in values.values()):
                return  # traced: checked where the values were concrete
            shape = np.broadcast_shapes(*(x.shape for x in values.values()))
            v = {name: np.broadcast_to(x, shape) for name, x in values.items()}
        moe = v["n_moe_layers"] > 0
        checks = (
            (v["n_moe_layers"] > v["n_layers"], "n_moe_layers must be <= n_layers"),
            (moe & (v["n_experts"] < 1), "MoE layers need n_experts >= 1"),
            (
                moe & ((v["experts_per_token"] <= 0) | (v["experts_per_token"] > v["n_experts"])),
                "MoE layers need 0 < experts_per_token <= n_experts",
            ),
            (moe & (v["d_ff_expert"] <= 0), "MoE layers need d_ff_expert > 0"),
            (v["routing_skew"] >= 1, "routing_skew must be in [0, 1)"),
            (v["mla_absorbed"] > 1, "mla_absorbed must be in [0, 1]"),
            (v["n_local_layers"] > v["n_layers"], "n_local_layers must be <= n_layers"),
            (
                (v["n_local_layers"] > 0) & (v["sliding_window"] <= 0),
                "sliding-window layers need sliding_window > 0",
            ),
        )
        for bad, message in checks:
            if bad is False:  # plain floats: a Python bool, no NumPy call
                continue
            if np.any(bad):
                got = ", ".join(
                    f"{k}={np.asarray(x)[bad].ravel()[0]:g}" for k, x in v.items() if k in message
                )
                raise ValueError(f"TransformerSpec: {message} (got {got})")

    def with_dtypes(
        self,
        weight_dtype: str = "bf16",
        kv_dtype: str | None = None,
        compute_dtype=None,
        expert_weight_dtype: str | None = None,
    ):
        """Returns a copy with other storage dtypes (e.g. int8 or int4 weights).

        Every weight, routed experts included, takes ``weight_dtype`` unless
        ``expert_weight_dtype`` says otherwise. Weight-only quantisation keeps bf16
        compute unless ``compute_dtype`` says otherwise.
        """
        return self.replace(
            weight_bytes=dtype_bytes(weight_dtype, "weight_dtype"),
            kv_bytes=self.kv_bytes if kv_dtype is None else dtype_bytes(kv_dtype, "kv_dtype"),
            expert_weight_bytes=0.0
            if expert_weight_dtype is None
            else dtype_bytes(expert_weight_dtype, "expert_weight_dtype"),
            compute_dtype=compute_dtype or self.compute_dtype,
        )

    @property
    def layer_weights(self):
        """Weight elements of one dense block: attention projections plus the MLP."""
        return layer_weight_count(self)

    @property
    def parameter_count(self):
        """Total parameters: blocks (every expert), input embedding and (untied) LM head.

        Biases, norms and position embeddings are excluded (they are < 0.1% of a
        modern LLM), matching the convention of the reference parameter table.
        """
        return parameter_count(self)


def layer_weight_count(spec: TransformerSpec):
    """Weight elements of one dense transformer block (attention and the dense MLP)."""
    return _attention.attention_weight_count(spec) + _moe.dense_mlp_weight_count(spec)


def parameter_count(spec: TransformerSpec):
    """Total parameter count of ``spec``: every expert, no multi-token-prediction module.

    Examples:
        >>> from specsim import models
        >>> round(float(models.parameter_count(models.get("llama-2-7b"))) / 1e9, 3)
        6.738
        >>> round(float(models.parameter_count(models.get("mixtral-8x7b"))) / 1e9, 2)
        46.7
    """
    embeddings = spec.vocab * spec.d_model * (2.0 - spec.tied_embeddings)
    moe = spec.n_moe_layers * (_moe.moe_mlp_weight_count(spec) - _moe.dense_mlp_weight_count(spec))
    return spec.n_layers * layer_weight_count(spec) + embeddings + moe


def active_parameter_count(spec: TransformerSpec, embedding: bool = True):
    """Parameters one token uses: attention, dense and active MoE MLPs (router, shared
    and ``experts_per_token`` routed experts), the LM head and, if ``embedding``, the
    input embedding table (publishers differ: Mistral and Qwen count it, OpenAI and
    DeepSeek do not).

    Examples:
        >>> from specsim import models
        >>> round(float(models.active_parameter_count(models.get("mixtral-8x7b"))) / 1e9, 2)
        12.88
    """
    dense_layers = spec.n_layers - spec.n_moe_layers
    blocks = (
        spec.n_layers * _attention.attention_weight_count(spec)
        + dense_layers * _moe.dense_mlp_weight_count(spec)
        + spec.n_moe_layers * _moe.active_moe_mlp_weight_count(spec)
    )
    head = spec.vocab * spec.d_model
    table = (1.0 - spec.tied_embeddings) * head if embedding else 0.0
    return blocks + head + table


def mtp_parameter_count(spec: TransformerSpec):
    """Parameters of the multi-token-prediction modules (DeepSeek-V3), as checkpointed.

    Each module holds a projection of the concatenated hidden state and next-token
    embedding (``2 d_model x d_model``), one transformer block (an MoE block if the
    model has MoE layers) and its own copies of the embedding and output head.
    """
    mlp = where(
        _moe.is_mixture(spec), _moe.moe_mlp_weight_count(spec), _moe.dense_mlp_weight_count(spec)
    )
    module = (
        2.0 * spec.d_model * spec.d_model
        + _attention.attention_weight_count(spec)
        + mlp
        + 2.0 * spec.vocab * spec.d_model
    )
    return spec.n_mtp_layers * module


def _valid_floats(spec: TransformerSpec) -> bool:
    """Whether every size is a Python float passing `TransformerSpec.validate`'s rules."""
    positive = _positive_fields(spec)
    non_negative = _non_negative_fields(spec)
    return (
        all(type(v) is float and 0.0 < v < math.inf for v in positive)
        and all(type(v) is float and 0.0 <= v < math.inf for v in non_negative)
        and spec.tied_embeddings in (0.0, 1.0)
        and type(spec.tied_embeddings) is float
    )


def _concrete_values(value) -> tuple[float, ...]:
    """The values of a concrete leaf; nothing for a tracer (checked where it was concrete)."""
    return concrete_values(value)
