"""`TransformerSpec`: the architecture of a decoder-only transformer as a pytree.

Every architectural number is a traced float leaf, so layer count and width can
be real numbers (the cost model is a smooth function of them and the optimiser
differentiates through them) and specs of different models can be stacked into
one vmapped grid. Only the compute dtype, which selects a peak-FLOP/s column of
the hardware, is static.
"""

from __future__ import annotations

import math
from typing import Any

from flax import struct

from .._numerics import concrete

BYTES_PER_ELEMENT = {
    "fp32": 4.0,
    "float32": 4.0,
    "bf16": 2.0,
    "bfloat16": 2.0,
    "fp16": 2.0,
    "float16": 2.0,
    "fp8": 1.0,
    "int8": 1.0,
    "int4": 0.5,
}
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


@struct.dataclass
class TransformerSpec:
    """Architecture of a decoder-only transformer (all sizes are traced floats).

    Attributes:
        n_layers: number of transformer blocks.
        d_model: residual-stream width.
        n_heads: query heads.
        n_kv_heads: key/value heads (``< n_heads`` means grouped-query attention).
        head_dim: width of one attention head.
        d_ff: FFN intermediate width.
        vocab: vocabulary size.
        mlp_matrices: 3 for a gated MLP (SwiGLU/GeGLU), 2 for a plain one.
        tied_embeddings: 1.0 if the LM head shares the input embedding, else 0.0.
        weight_bytes: bytes per weight element (2 bf16, 1 int8/fp8, 0.5 int4).
        kv_bytes: bytes per KV-cache element.
        activation_bytes: bytes per activation element.
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
    compute_dtype: str = struct.field(pytree_node=False, default="bf16")

    @classmethod
    def from_hf_config(cls, config, **dtypes) -> TransformerSpec:
        """Reads a Hugging Face ``config.json`` (path, folder or dict); see
        ``specsim.models.from_hf_config``."""
        from ._hf import from_hf_config

        return from_hf_config(config, **dtypes)

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
    ) -> TransformerSpec:
        """Builds a validated spec from concrete numbers and dtype names.

        Args:
            n_layers, d_model, n_heads, d_ff, vocab: positive sizes.
            n_kv_heads: defaults to ``n_heads`` (multi-head attention).
            head_dim: defaults to ``d_model / n_heads``.
            gated_mlp: three FFN matrices (SwiGLU) instead of two.
            tied_embeddings: LM head shares the embedding matrix.
            weight_dtype, kv_dtype, activation_dtype: ``"fp32"``, ``"bf16"``,
                ``"fp16"``, ``"fp8"``, ``"int8"`` or ``"int4"`` (weights only).
            compute_dtype: defaults to ``"fp8"``/``"int8"`` when activations are
                8-bit, else ``"bf16"`` (or ``"fp32"`` for fp32 activations).

        Raises:
            ValueError: a size is not positive/finite or a dtype is unknown.
        """
        kv_dtype = kv_dtype or (activation_dtype if weight_dtype == "int4" else weight_dtype)
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
            weight_bytes=_dtype_bytes(weight_dtype, "weight_dtype"),
            kv_bytes=_dtype_bytes(kv_dtype, "kv_dtype"),
            activation_bytes=_dtype_bytes(activation_dtype, "activation_dtype"),
            compute_dtype=compute_dtype,
        )
        spec.validate()
        return spec

    def validate(self) -> TransformerSpec:
        """Raises ``ValueError`` if a concrete field is not a positive finite number."""
        if self.compute_dtype not in COMPUTE_DTYPES:
            raise ValueError(
                f"compute_dtype must be one of {COMPUTE_DTYPES}, got {self.compute_dtype!r}"
            )
        for name in _FIELDS:
            for v in _concrete_values(getattr(self, name)):
                if name == "tied_embeddings":
                    if v not in (0.0, 1.0):
                        raise ValueError(f"TransformerSpec.tied_embeddings must be 0 or 1, got {v}")
                elif not (math.isfinite(v) and v > 0):
                    raise ValueError(
                        f"TransformerSpec.{name} must be a positive finite number, got {v}"
                    )
        return self

    def with_dtypes(
        self, weight_dtype: str = "bf16", kv_dtype: str | None = None, compute_dtype=None
    ):
        """Returns a copy with other storage dtypes (e.g. int8 or int4 weights).

        Weight-only quantisation keeps bf16 compute unless ``compute_dtype`` says otherwise.
        """
        return self.replace(
            weight_bytes=_dtype_bytes(weight_dtype, "weight_dtype"),
            kv_bytes=self.kv_bytes if kv_dtype is None else _dtype_bytes(kv_dtype, "kv_dtype"),
            compute_dtype=compute_dtype or self.compute_dtype,
        )

    @property
    def layer_weights(self):
        """Weight elements of one block: attention projections plus the MLP."""
        return layer_weight_count(self)

    @property
    def parameter_count(self):
        """Total parameters: blocks, input embedding and (untied) LM head.

        Biases, norms and position embeddings are excluded (they are < 0.1% of a
        modern LLM), matching the convention of the reference parameter table.
        """
        return parameter_count(self)


def layer_weight_count(spec: TransformerSpec):
    """Weight elements of one transformer block (Q, K, V, O projections and the MLP)."""
    q_out = spec.n_heads * spec.head_dim
    kv_out = spec.n_kv_heads * spec.head_dim
    attention = spec.d_model * (q_out + 2.0 * kv_out) + q_out * spec.d_model
    mlp = spec.mlp_matrices * spec.d_model * spec.d_ff
    return attention + mlp


def parameter_count(spec: TransformerSpec):
    """Total parameter count of ``spec`` (traced-friendly).

    Examples:
        >>> from specsim import models
        >>> round(float(models.parameter_count(models.get("llama-2-7b"))) / 1e9, 3)
        6.738
    """
    embeddings = spec.vocab * spec.d_model * (2.0 - spec.tied_embeddings)
    return spec.n_layers * layer_weight_count(spec) + embeddings


def _dtype_bytes(dtype: str, what: str) -> float:
    try:
        return BYTES_PER_ELEMENT[dtype.lower()]
    except (KeyError, AttributeError):
        raise ValueError(
            f"unknown {what} {dtype!r}; valid: {', '.join(sorted(BYTES_PER_ELEMENT))}"
        ) from None


def _concrete_values(value) -> list[float]:
    """The values of a concrete leaf; nothing for a tracer (checked where it was concrete)."""
    array = concrete(value)
    return [] if array is None else array.ravel().tolist()
