"""Reading Hugging Face ``config.json`` files into ``TransformerSpec``."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from ._spec import TransformerSpec

# model_type -> (field names, gated MLP, default for tie_word_embeddings)
_LLAMA_LIKE = {
    "n_layers": "num_hidden_layers",
    "d_model": "hidden_size",
    "n_heads": "num_attention_heads",
    "n_kv_heads": "num_key_value_heads",
    "d_ff": "intermediate_size",
    "vocab": "vocab_size",
}
_FAMILIES: dict[str, tuple[dict[str, str], bool, bool]] = {
    "llama": (_LLAMA_LIKE, True, False),
    "mistral": (_LLAMA_LIKE, True, False),
    "qwen2": (_LLAMA_LIKE, True, False),
    "qwen3": (_LLAMA_LIKE, True, False),
    "gemma": (_LLAMA_LIKE, True, True),
    "gemma2": (_LLAMA_LIKE, True, True),
    "gemma3_text": (_LLAMA_LIKE, True, True),
    "opt": (
        {
            "n_layers": "num_hidden_layers",
            "d_model": "hidden_size",
            "n_heads": "num_attention_heads",
            "d_ff": "ffn_dim",
            "vocab": "vocab_size",
        },
        False,
        True,
    ),
    "gpt_neox": (
        {
            "n_layers": "num_hidden_layers",
            "d_model": "hidden_size",
            "n_heads": "num_attention_heads",
            "d_ff": "intermediate_size",
            "vocab": "vocab_size",
        },
        False,
        False,
    ),
}
SUPPORTED_MODEL_TYPES = tuple(sorted(_FAMILIES))
_TORCH_DTYPES = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}


def from_hf_config(config: str | os.PathLike | Mapping[str, Any], **dtypes: str) -> TransformerSpec:
    """Builds a ``TransformerSpec`` from a Hugging Face ``config.json``.

    Supports Llama, Mistral, Qwen2/2.5, Qwen3, Gemma (1-3), OPT and GPT-NeoX/Pythia.
    The weight dtype follows ``torch_dtype`` unless given in ``dtypes``.

    Args:
        config: path to ``config.json`` (or its folder), or the parsed dict.
        **dtypes: overrides forwarded to ``TransformerSpec.create``.

    Raises:
        ValueError: unreadable or malformed file, unsupported ``model_type`` (the
            message lists the supported ones) or a missing field.

    Examples:
        >>> cfg = {"model_type": "llama", "num_hidden_layers": 2, "hidden_size": 64,
        ...        "num_attention_heads": 4, "intermediate_size": 128, "vocab_size": 100}
        >>> int(from_hf_config(cfg).n_kv_heads)
        4
    """
    cfg = _read(config)
    model_type = cfg.get("model_type")
    if model_type == "gemma3":  # multimodal wrapper: the language model sits in text_config
        cfg, model_type = {**cfg.get("text_config", {})}, "gemma3_text"
    if model_type not in _FAMILIES:
        raise ValueError(
            f"unsupported model_type {model_type!r}; supported: {', '.join(SUPPORTED_MODEL_TYPES)}"
        )
    keys, gated, tied_default = _FAMILIES[model_type]
    missing = [hf for ours, hf in keys.items() if ours != "n_kv_heads" and hf not in cfg]
    if missing:
        raise ValueError(f"{model_type} config is missing field(s): {', '.join(missing)}")
    sizes = {ours: cfg[hf] for ours, hf in keys.items() if hf in cfg}
    for name, value in sizes.items():
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise ValueError(f"config field {keys[name]!r} must be a number, got {value!r}")
    if sizes.get("n_kv_heads") is None:
        sizes["n_kv_heads"] = sizes["n_heads"]
    # OPT-350M's 512-wide embedding projection is ignored, as in the reference counts.
    weight_dtype = _TORCH_DTYPES.get(str(cfg.get("torch_dtype", "bfloat16")), "bf16")
    kwargs = {"weight_dtype": weight_dtype, "activation_dtype": "bf16", **dtypes}
    return TransformerSpec.create(
        **sizes,
        head_dim=cfg.get("head_dim"),
        gated_mlp=gated,
        tied_embeddings=bool(cfg.get("tie_word_embeddings", tied_default)),
        **kwargs,
    )


def _read(config: str | os.PathLike | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(config, Mapping):
        return dict(config)
    path = os.fspath(config)
    if os.path.isdir(path):
        path = os.path.join(path, "config.json")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as e:
        raise ValueError(f"cannot read Hugging Face config {path!r}: {e.strerror}") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"malformed JSON in {path!r}: {e}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path!r} does not hold a JSON object")
    return data
