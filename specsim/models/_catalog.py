"""The preset model catalogue (``catalog.toml``), looked up by forgiving names."""

from __future__ import annotations

from typing import Any

from .. import _schema
from .._registry import Registry, load_package_toml
from ._spec import TransformerSpec

_ARCH_KEYS = ("n_layers", "d_model", "n_heads", "n_kv_heads", "d_ff", "vocab")
# Optional architecture keys (mixture of experts, latent and sliding-window attention) and
# the checkpoint's storage formats; absent means dense, grouped-query, bf16.
_EXTENSION_KEYS = (
    "n_moe_layers",
    "n_experts",
    "experts_per_token",
    "d_ff_expert",
    "d_ff_shared",
    "kv_lora_rank",
    "q_lora_rank",
    "rope_head_dim",
    "n_local_layers",
    "sliding_window",
    "n_mtp_layers",
)
_DTYPE_KEYS = ("weight_dtype", "expert_weight_dtype")
# Facts about a preset that are not inputs of the cost model.
_METADATA_KEYS = (
    "aliases",
    "source",
    "params_source",
    "reference_params",
    "reference_active_params",
    "reference_non_embedding_params",
    "reference_params_convention",
    "reference_params_with_mtp",
    "train_tokens",
    "train_tokens_source",
)
# Every key an entry may have: a typo (``n_expert``) is an error, not a dense model.
_KEYS = (
    *_ARCH_KEYS,
    *_EXTENSION_KEYS,
    *_DTYPE_KEYS,
    "head_dim",
    "gated_mlp",
    "tied_embeddings",
    *_METADATA_KEYS,
)


def _load() -> dict[str, Any]:
    return load_package_toml("specsim.models", "catalog.toml")["model"]


_REGISTRY = Registry("model", _load)


def names() -> list[str]:
    """Canonical names of the preset models.

    Examples:
        >>> from specsim import models
        >>> "Llama-2-7B" in models.names()
        True
    """
    return _REGISTRY.names()


def canonical_name(name: str) -> str:
    """The catalogue's canonical name for ``name`` or an alias (``ValueError`` if unknown).

    Examples:
        >>> from specsim import models
        >>> models.canonical_name("llama3-8b")
        'Llama-3-8B'
    """
    return _REGISTRY.canonical(name)


def get(name: str, **dtypes: str) -> TransformerSpec:
    """Returns the preset ``TransformerSpec`` called ``name`` (case/punctuation-insensitive).

    Args:
        name: a catalogue name or alias, e.g. ``"llama-2-7b"`` or ``"Qwen2.5-0.5B"``.
        **dtypes: forwarded to ``TransformerSpec.create`` (``weight_dtype``, ``kv_dtype``,
            ``activation_dtype``, ``compute_dtype``, ``expert_weight_dtype``); by default
            the released checkpoint's formats (bf16 unless the entry says otherwise, e.g.
            gpt-oss's MXFP4 experts).

    Raises:
        ValueError: unknown name (the message lists the closest valid names).

    Examples:
        >>> from specsim import models
        >>> spec = models.get("llama-3-8b")
        >>> int(spec.n_kv_heads), int(spec.vocab)
        (8, 128256)
    """
    canonical = _REGISTRY.canonical(name)
    entry = _REGISTRY.entry(canonical)
    _schema.check_keys(entry, _KEYS, f"specsim/models/catalog.toml: {canonical}")
    native = {k: entry[k] for k in _DTYPE_KEYS if k in entry}
    return TransformerSpec.create(
        **{k: entry[k] for k in _ARCH_KEYS},
        **{k: entry[k] for k in _EXTENSION_KEYS if k in entry},
        head_dim=entry.get("head_dim"),
        gated_mlp=entry["gated_mlp"],
        tied_embeddings=entry["tied_embeddings"],
        **{**native, **dtypes},
    )


def info(name: str) -> dict[str, Any]:
    """The catalogue entry for ``name``: architecture, reference parameter count,
    pre-training tokens (where published) and sources."""
    return {"name": _REGISTRY.canonical(name), **_REGISTRY.entry(name)}


def train_tokens(name: str) -> float | None:
    """Published pre-training tokens of the preset ``name``, or ``None`` if unpublished."""
    value = _REGISTRY.entry(name).get("train_tokens")
    return None if value is None else float(value)
