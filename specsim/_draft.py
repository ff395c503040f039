"""The draft model as a few optimisable numbers: `DraftParams`, `DraftTemplate`, `DraftBounds`.

A draft for speculative decoding must share the target's tokenizer, and the rest of its
architecture is, in practice, a scaled-down copy of the target's. So the optimiser moves only
four real numbers (`DraftParams`): layer count, width ``d_model``, lookahead ``gamma`` and,
optionally, pre-training tokens. Everything else follows a `DraftTemplate` derived from the
target (vocabulary, head width, grouped-query ratio, MLP type, FFN ratio, dtypes) unless the
caller overrides it, and `DraftBounds` says where the search may go.

Why an aspect-ratio bound. In the SDSL acceptance law a draft's acceptance depends on its
*size* (parameter count), not its shape, while under the latency model every layer costs
kernel launches: with a free shape the search would always pick one enormous layer. Kaplan
et al. (2020, §3.1 and Figs. 5-6) found the loss of a transformer at fixed non-embedding
parameter count nearly shape-independent only within limits: it varies "only a few percent
over a wide range of shapes", the aspect ratio ``d_model / n_layers`` "can vary by a factor
of 40 while only slightly impacting performance" (their (6, 4288) model, aspect 715, is within
3% of their (48, 1600) one, aspect 33), and "only models with fewer than 2 layers or with
extreme depth-to-width ratios deviate significantly". The default bounds therefore keep at
least ``DEFAULT_MIN_LAYERS = 2`` layers and an aspect ratio in ``DEFAULT_ASPECT_RATIO =
(32, 512)``, a factor of 16 inside the range Kaplan et al. measured as nearly flat; widen them
at your own risk (the size-only acceptance law becomes optimistic outside).

References:
    Kaplan et al. (2020), "Scaling Laws for Neural Language Models", arXiv 2001.08361,
    §3.1, Fig. 5 (shape at fixed size) and Fig. 6 (depth).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from .models import TransformerSpec, parameter_count

__all__ = [
    "DEFAULT_ASPECT_RATIO",
    "DEFAULT_MAX_GAMMA",
    "DEFAULT_MAX_LAYERS",
    "DEFAULT_MIN_LAYERS",
    "DraftBounds",
    "DraftParams",
    "DraftTemplate",
    "build_draft",
    "buildable_draft",
    "buildable_points",
]

# Kaplan et al. 2020, Fig. 6: models with fewer than 2 layers deviate from the size-only trend.
DEFAULT_MIN_LAYERS = 2.0
# Deeper drafts than this are never throughput-optimal under the latency model (each layer
# costs kernel launches), and they keep the exhaustive certificate grid small.
DEFAULT_MAX_LAYERS = 32.0
# d_model / n_layers; Kaplan et al. 2020 §3.1, Fig. 5 (see the module docstring).
DEFAULT_ASPECT_RATIO = (32.0, 512.0)
# Lookahead range; vLLM and TensorRT-LLM deployments rarely draft more than ~10 tokens.
DEFAULT_MIN_GAMMA = 0.0
DEFAULT_MAX_GAMMA = 16.0
# FFN widths of buildable drafts are rounded to a multiple of this (tensor-core friendly).
DEFAULT_FFN_MULTIPLE = 64.0
# Training FLOPs per parameter per token (Kaplan et al. 2020, Hoffmann et al. 2022: C = 6 N D).
TRAIN_FLOPS_PER_PARAM_TOKEN = 6.0


@struct.dataclass
class DraftParams:
    """What the optimiser moves: the draft's depth, width, lookahead and training tokens.

    Every leaf is a float (real-valued during the search, whole numbers once rounded).

    Attributes:
        n_layers: draft transformer blocks.
        d_model: draft residual width (``n_heads = d_model / head_dim``).
        gamma: lookahead, draft tokens proposed per iteration (0 = plain decoding).
        train_tokens: draft pre-training tokens, or ``None`` when they are not searched (the
            acceptance model's own ``draft_train_tokens`` apply).

    Examples:
        >>> from specsim import DraftParams
        >>> p = DraftParams(n_layers=4.0, d_model=1024.0, gamma=5.0)
        >>> float(p.aspect_ratio)
        256.0
    """

    n_layers: Any
    d_model: Any
    gamma: Any
    train_tokens: Any = None

    @property
    def aspect_ratio(self):
        """``d_model / n_layers``."""
        return self.d_model / self.n_layers


@struct.dataclass
class DraftTemplate:
    """Everything about the draft's architecture except depth and width.

    Attributes:
        head_dim: width of one attention head; ``d_model`` of a buildable draft is a multiple
            of ``width_step``, itself a multiple of ``head_dim``, so heads are whole.
        kv_group: query heads per key/value head in the target (its GQA ratio; 1 = MHA).
            A buildable draft with ``h`` query heads uses ``gcd(h, kv_group)`` query heads per
            KV head, so KV heads are whole and divide the query heads; the continuous search
            uses ``max(h / kv_group, 1)`` KV heads.
        ffn_ratio: ``d_ff / d_model``.
        ffn_multiple: a buildable draft's ``d_ff`` is ``ffn_ratio * d_model`` rounded to a
            multiple of this.
        width_step: granularity of a buildable ``d_model`` (default ``head_dim``).
        vocab: vocabulary size (the target's: speculative decoding needs one tokenizer).
        mlp_matrices: 3 for a gated MLP, 2 for a plain one.
        tied_embeddings: 1.0 if the LM head shares the embedding matrix, else 0.0.
        weight_bytes, kv_bytes, activation_bytes: bytes per element.
        compute_dtype: static; the draft's matmul dtype.

    Examples:
        >>> from specsim import models
        >>> from specsim import DraftTemplate
        >>> t = DraftTemplate.from_target(models.get("llama-3-8b"))
        >>> float(t.head_dim), float(t.kv_group), float(t.ffn_ratio)
        (128.0, 4.0, 3.5)
    """

    head_dim: Any
    kv_group: Any
    ffn_ratio: Any
    ffn_multiple: Any
    width_step: Any
    vocab: Any
    mlp_matrices: Any
    tied_embeddings: Any
    weight_bytes: Any
    kv_bytes: Any
    activation_bytes: Any
    compute_dtype: str = struct.field(pytree_node=False, default="bf16")

    @classmethod
    def from_target(cls, target: TransformerSpec, **overrides: Any) -> DraftTemplate:
        """The default template: a scaled-down copy of ``target``.

        Args:
            target: the model being served (concrete numbers).
            **overrides: any attribute of `DraftTemplate` (e.g. ``ffn_ratio=4.0``,
                ``tied_embeddings=1.0``, ``width_step=256.0``).

        Raises:
            ValueError: an unknown override, or a value that is not positive and finite, or a
                ``width_step`` that is not a whole multiple of ``head_dim``.
        """
        head_dim = float(overrides.pop("head_dim", float(target.head_dim)))
        fields = {
            "head_dim": head_dim,
            "kv_group": float(target.n_heads) / float(target.n_kv_heads),
            "ffn_ratio": float(target.d_ff) / float(target.d_model),
            "ffn_multiple": DEFAULT_FFN_MULTIPLE,
            "width_step": head_dim,
            "vocab": float(target.vocab),
            "mlp_matrices": float(target.mlp_matrices),
            "tied_embeddings": float(target.tied_embeddings),
            "weight_bytes": float(target.weight_bytes),
            "kv_bytes": float(target.kv_bytes),
            "activation_bytes": float(target.activation_bytes),
            "compute_dtype": target.compute_dtype,
        }
        unknown = sorted(set(overrides) - set(fields))
        if unknown:
            raise ValueError(
                f"unknown DraftTemplate field(s) {unknown}; valid: {', '.join(sorted(fields))}"
            )
        fields.update(overrides)
        for name, value in fields.items():
            if name == "compute_dtype":
                continue
            value = float(value)
            ok = math.isfinite(value) and (value >= 0 if name == "tied_embeddings" else value > 0)
            if not ok:
                raise ValueError(f"DraftTemplate.{name} must be positive and finite, got {value}")
            fields[name] = value
        ratio = fields["width_step"] / fields["head_dim"]
        if abs(ratio - round(ratio)) > 1e-9 or round(ratio) < 1:
            raise ValueError(
                f"DraftTemplate.width_step ({fields['width_step']:g}) must be a whole multiple "
                f"of head_dim ({fields['head_dim']:g}) so that heads are whole"
            )
        return cls(**fields)


@struct.dataclass
class DraftBounds:
    """Where the draft search may go (all traced floats; ``search_train_tokens`` is static).

    The region is the box ``[min_layers, max_layers] x [min_d_model, max_d_model]`` cut by
    ``min_aspect <= d_model / n_layers <= max_aspect``, times ``[min_gamma, max_gamma]``.

    Training tokens: in the SDSL law more draft training tokens always raise acceptance, so
    for a given draft size the best token count is the largest allowed,
    ``min(max_train_tokens, train_flops_budget / (6 N))`` (``C = 6 N D``, Kaplan et al. 2020).
    With ``search_train_tokens`` the search uses exactly that (an exact partial maximisation,
    not a gradient axis): under a training-FLOP budget a bigger draft gets fewer tokens, which
    couples size and data.

    Attributes:
        min_layers, max_layers: draft layer count.
        min_d_model, max_d_model: draft width.
        min_aspect, max_aspect: ``d_model / n_layers``.
        min_gamma, max_gamma: lookahead.
        max_train_tokens: cap on draft training tokens (``inf`` = none).
        train_flops_budget: draft training budget, FLOPs (``inf`` = none).
        search_train_tokens: static; whether training tokens are part of the answer.

    Examples:
        >>> from specsim import models
        >>> from specsim import DraftBounds
        >>> b = DraftBounds.create(models.get("llama-3-8b"), max_gamma=8)
        >>> float(b.max_d_model), float(b.max_aspect), float(b.max_gamma)
        (4096.0, 512.0, 8.0)
    """

    min_layers: Any
    max_layers: Any
    min_d_model: Any
    max_d_model: Any
    min_aspect: Any
    max_aspect: Any
    min_gamma: Any
    max_gamma: Any
    max_train_tokens: Any = float("inf")
    train_flops_budget: Any = float("inf")
    search_train_tokens: bool = struct.field(pytree_node=False, default=False)

    @classmethod
    def create(
        cls,
        target: TransformerSpec,
        *,
        min_layers: float = DEFAULT_MIN_LAYERS,
        max_layers: float | None = None,
        min_d_model: float | None = None,
        max_d_model: float | None = None,
        min_aspect: float = DEFAULT_ASPECT_RATIO[0],
        max_aspect: float = DEFAULT_ASPECT_RATIO[1],
        min_gamma: float = DEFAULT_MIN_GAMMA,
        max_gamma: float = DEFAULT_MAX_GAMMA,
        max_train_tokens: float | None = None,
        train_flops_budget: float | None = None,
        template: DraftTemplate | None = None,
    ) -> DraftBounds:
        """Validated bounds, with defaults derived from the target.

        Defaults: layers ``[2, min(32, target layers)]``; width from two heads
        (``2 * width_step``) to the target's ``d_model``; aspect ratio ``[32, 512]``;
        gamma ``[0, 16]``; training tokens not searched unless ``max_train_tokens`` or
        ``train_flops_budget`` is given.

        Args:
            target: the model being served (its width and depth cap the draft's).
            min_layers, max_layers, min_d_model, max_d_model, min_aspect, max_aspect,
                min_gamma, max_gamma: see the class attributes.
            max_train_tokens: cap on draft training tokens (searching tokens if given).
            train_flops_budget: draft training budget in FLOPs (searching tokens if given).
            template: the draft template (for the default minimum width).

        Raises:
            ValueError: a bound that is not finite and positive (gamma: >= 0), or a minimum
                above its maximum.
        """
        template = template or DraftTemplate.from_target(target)
        step = float(template.width_step)
        values = {
            "min_layers": float(min_layers),
            "max_layers": float(
                max_layers if max_layers is not None else min(DEFAULT_MAX_LAYERS, target.n_layers)
            ),
            "min_d_model": float(min_d_model if min_d_model is not None else 2.0 * step),
            "max_d_model": float(max_d_model if max_d_model is not None else target.d_model),
            "min_aspect": float(min_aspect),
            "max_aspect": float(max_aspect),
            "min_gamma": float(min_gamma),
            "max_gamma": float(max_gamma),
        }
        for name, value in values.items():
            ok = math.isfinite(value) and (value >= 0 if "gamma" in name else value > 0)
            if not ok:
                need = ">= 0" if "gamma" in name else "> 0"
                raise ValueError(f"bound {name} must be finite and {need}, got {value:g}")
        if values["min_layers"] < 1:
            raise ValueError(f"bound min_layers must be >= 1, got {values['min_layers']:g}")
        for what in ("layers", "d_model", "aspect", "gamma"):
            lo, hi = values[f"min_{what}"], values[f"max_{what}"]
            if lo > hi:
                raise ValueError(f"bound min_{what} ({lo:g}) is above max_{what} ({hi:g})")
        search = max_train_tokens is not None or train_flops_budget is not None
        tokens = float("inf") if max_train_tokens is None else float(max_train_tokens)
        budget = float("inf") if train_flops_budget is None else float(train_flops_budget)
        for name, value in (("max_train_tokens", tokens), ("train_flops_budget", budget)):
            if not value > 0:
                raise ValueError(f"bound {name} must be > 0, got {value:g}")
        return cls(
            **values,
            max_train_tokens=tokens,
            train_flops_budget=budget,
            search_train_tokens=search,
        )

    def describe(self) -> dict[str, Any]:
        """Plain numbers for display and JSON (single, unbatched bounds)."""
        out: dict[str, Any] = {
            name: float(getattr(self, name))
            for name in (
                "min_layers",
                "max_layers",
                "min_d_model",
                "max_d_model",
                "min_aspect",
                "max_aspect",
                "min_gamma",
                "max_gamma",
            )
        }
        for name in ("max_train_tokens", "train_flops_budget"):
            value = float(getattr(self, name))
            out[name] = value if math.isfinite(value) else None
        out["search_train_tokens"] = self.search_train_tokens
        return out


def _kv_heads_continuous(n_heads, kv_group):
    return jnp.maximum(n_heads / kv_group, 1.0)


def build_draft(params: DraftParams, template: DraftTemplate) -> TransformerSpec:
    """The continuous draft architecture of ``params`` (real layer count and width).

    Differentiable in every leaf of ``params`` and ``template``; heads are
    ``d_model / head_dim`` and KV heads ``max(heads / kv_group, 1)``, real numbers.

    Examples:
        >>> from specsim import models
        >>> from specsim import DraftParams, DraftTemplate
        >>> from specsim._draft import build_draft
        >>> t = DraftTemplate.from_target(models.get("llama-3-8b"))
        >>> spec = build_draft(DraftParams(n_layers=2.5, d_model=700.0, gamma=4.0), t)
        >>> round(float(spec.n_heads), 3), float(spec.d_ff)
        (5.469, 2450.0)
    """
    n_heads = params.d_model / template.head_dim
    return TransformerSpec(
        n_layers=params.n_layers,
        d_model=params.d_model,
        n_heads=n_heads,
        n_kv_heads=_kv_heads_continuous(n_heads, template.kv_group),
        head_dim=template.head_dim,
        d_ff=template.ffn_ratio * params.d_model,
        vocab=template.vocab,
        mlp_matrices=template.mlp_matrices,
        tied_embeddings=template.tied_embeddings,
        weight_bytes=template.weight_bytes,
        kv_bytes=template.kv_bytes,
        activation_bytes=template.activation_bytes,
        compute_dtype=template.compute_dtype,
    )


def buildable_draft(params: DraftParams, template: DraftTemplate, xp=jnp) -> TransformerSpec:
    """The buildable draft at a whole layer count and a width that is a multiple of the step.

    ``params.n_layers`` and ``params.d_model`` must already be whole (and the width a multiple
    of ``head_dim``); this fixes the integer details the continuous relaxation leaves out:
    ``gcd(heads, kv_group)`` query heads per KV head and ``d_ff`` rounded to
    ``ffn_multiple``.

    Args:
        params: whole layer count and width (any shape; ``vmap`` or broadcast over points).
        template: the rest of the architecture.
        xp: ``jax.numpy`` (traceable, the default) or ``numpy`` (host-side checks).

    Examples:
        >>> from specsim import models
        >>> from specsim import DraftParams, DraftTemplate, buildable_draft
        >>> t = DraftTemplate.from_target(models.get("llama-3-8b"))
        >>> spec = buildable_draft(DraftParams(n_layers=2.0, d_model=768.0, gamma=4.0), t)
        >>> int(spec.n_heads), int(spec.n_kv_heads), int(spec.d_ff)
        (6, 3, 2688)
    """
    n_heads = xp.round(xp.asarray(params.d_model) / template.head_dim)
    group = xp.gcd(
        xp.asarray(n_heads).astype(xp.int32),
        xp.round(xp.asarray(template.kv_group)).astype(xp.int32),
    )
    n_kv_heads = n_heads / xp.maximum(group, 1).astype(n_heads.dtype)
    ffn = template.ffn_multiple * xp.maximum(
        xp.round(template.ffn_ratio * params.d_model / template.ffn_multiple), 1.0
    )
    return TransformerSpec(
        n_layers=params.n_layers,
        d_model=params.d_model,
        n_heads=n_heads,
        n_kv_heads=n_kv_heads,
        head_dim=template.head_dim,
        d_ff=ffn,
        vocab=template.vocab,
        mlp_matrices=template.mlp_matrices,
        tied_embeddings=template.tied_embeddings,
        weight_bytes=template.weight_bytes,
        kv_bytes=template.kv_bytes,
        activation_bytes=template.activation_bytes,
        compute_dtype=template.compute_dtype,
    )


def train_tokens_for(draft: TransformerSpec, bounds: DraftBounds):
    """Best draft training tokens under the bounds: ``min(max_train_tokens, budget / 6N)``."""
    n_params = parameter_count(draft)
    return jnp.minimum(
        bounds.max_train_tokens,
        bounds.train_flops_budget / (TRAIN_FLOPS_PER_PARAM_TOKEN * n_params),
    )


def buildable_points(bounds: DraftBounds, template: DraftTemplate) -> np.ndarray:
    """Every buildable ``(n_layers, d_model)`` inside concrete ``bounds``, shape ``(P, 2)``.

    Whole layer counts in ``[min_layers, max_layers]`` and widths that are multiples of
    ``template.width_step`` in ``[min_d_model, max_d_model]`` with
    ``min_aspect <= d_model / n_layers <= max_aspect``. Empty if the bounds exclude every
    buildable draft.

    Examples:
        >>> from specsim import models
        >>> from specsim import DraftBounds, DraftTemplate
        >>> from specsim._draft import buildable_points
        >>> target = models.get("llama-3-8b")
        >>> b = DraftBounds.create(target, max_layers=3, max_d_model=512)
        >>> buildable_points(b, DraftTemplate.from_target(target)).tolist()
        [[2.0, 256.0], [2.0, 384.0], [2.0, 512.0], [3.0, 256.0], [3.0, 384.0], [3.0, 512.0]]
    """
    bounds = jax.device_get(bounds)  # one transfer, not one per number read below
    step = float(template.width_step)
    layers = np.arange(
        math.ceil(float(bounds.min_layers)), math.floor(float(bounds.max_layers)) + 1
    ).astype(np.float64)
    lo = np.maximum(float(bounds.min_d_model), float(bounds.min_aspect) * layers)
    hi = np.minimum(float(bounds.max_d_model), float(bounds.max_aspect) * layers)
    first = np.maximum(np.ceil(lo / step - 1e-9), 1.0)
    last = np.floor(hi / step + 1e-9)
    counts = np.maximum(last - first + 1.0, 0.0).astype(np.int64)
    # Width multiples first..last of every layer count, layer-major.
    starts = np.repeat(first - np.cumsum(counts) + counts, counts)
    multiples = starts + np.arange(counts.sum(), dtype=np.float64)
    return np.column_stack([np.repeat(layers, counts), step * multiples])


def gamma_values(bounds: DraftBounds) -> np.ndarray:
    """Whole lookaheads inside concrete ``bounds``."""
    lo = math.ceil(float(bounds.min_gamma) - 1e-9)
    hi = math.floor(float(bounds.max_gamma) + 1e-9)
    return np.arange(lo, hi + 1, dtype=np.float64)
