"""Reading Hugging Face ``config.json`` files into ``TransformerSpec``.

One reader per family turns the config's fields into ``TransformerSpec.create``
arguments. Missing optional fields take the defaults of the family's ``transformers``
config class (e.g. Gemma 3's text config omits ``vocab_size`` and the head counts of the
4B model). Layer-type patterns (MoE layers, sliding-window layers) are expanded layer by
layer and counted, since only their numbers enter the cost.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from typing import Any

from ._spec import TransformerSpec

_LLAMA_LIKE = {
    "n_layers": "num_hidden_layers",
    "d_model": "hidden_size",
    "n_heads": "num_attention_heads",
    "n_kv_heads": "num_key_value_heads",
    "d_ff": "intermediate_size",
    "vocab": "vocab_size",
}
_OPT = {
    "n_layers": "num_hidden_layers",
    "d_model": "hidden_size",
    "n_heads": "num_attention_heads",
    "d_ff": "ffn_dim",
    "vocab": "vocab_size",
}
_NEOX = {k: v for k, v in _LLAMA_LIKE.items() if k != "n_kv_heads"}
_TORCH_DTYPES = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}
# transformers' Gemma3TextConfig defaults (the released 4B config relies on them).
_GEMMA3_TEXT_DEFAULTS = {
    "vocab_size": 262_208,
    "hidden_size": 2304,
    "intermediate_size": 9216,
    "num_hidden_layers": 26,
    "num_attention_heads": 8,
    "num_key_value_heads": 4,
    "head_dim": 256,
    "sliding_window_pattern": 6,
}
# transformers' Llama4TextConfig: every 4th layer is global (no RoPE), the others chunked.
_LLAMA4_NO_ROPE_INTERVAL = 4


def from_hf_config(config: str | os.PathLike | Mapping[str, Any], **dtypes: str) -> TransformerSpec:
    """Builds a ``TransformerSpec`` from a Hugging Face ``config.json``.

    Supports dense Llama, Mistral, Qwen2/2.5, Qwen3, Gemma (1-3), OPT and GPT-NeoX/Pythia,
    and the mixture-of-experts and attention variants of Mixtral, Qwen1.5/2-MoE
    (``qwen2_moe``), Qwen3-MoE, DeepSeek-V2/V3 (multi-head latent attention, shared
    experts, leading dense layers, multi-token prediction), gpt-oss (sliding-window
    layers, MXFP4 experts), Llama 4 (shared expert, interleaved MoE, chunked attention)
    and Gemma 3 (5 sliding-window layers per global one). Multimodal wrappers
    (``gemma3``, ``llama4``) are read through their ``text_config``. The weight dtype
    follows ``torch_dtype`` (and ``quantization_config``: DeepSeek's 128 x 128 block FP8,
    gpt-oss's MXFP4 experts) unless given in ``dtypes``.

    Not modelled, and left out like biases and norms: Qwen2-MoE's shared-expert gate
    (``d_model`` weights per layer) and gpt-oss's per-head attention-sink logits.
    Mistral-7B-v0.1's ``sliding_window = 4096`` is not applied (it reads as the
    catalogue's all-global Mistral); set ``n_local_layers`` to price it.

    Args:
        config: path to ``config.json`` (or its folder), or the parsed dict.
        **dtypes: overrides forwarded to ``TransformerSpec.create`` (``weight_dtype``,
            ``kv_dtype``, ``activation_dtype``, ``compute_dtype``, ``expert_weight_dtype``).

    Raises:
        ValueError: unreadable or malformed file, unsupported ``model_type`` (the
            message lists the supported ones) or a missing or malformed field.

    Examples:
        >>> cfg = {"model_type": "llama", "num_hidden_layers": 2, "hidden_size": 64,
        ...        "num_attention_heads": 4, "intermediate_size": 128, "vocab_size": 100}
        >>> int(from_hf_config(cfg).n_kv_heads)
        4
        >>> moe = {**cfg, "model_type": "mixtral", "num_local_experts": 8,
        ...        "num_experts_per_tok": 2}
        >>> int(from_hf_config(moe).n_experts)
        8
    """
    cfg = _read(config)
    model_type = cfg.get("model_type")
    if model_type in _WRAPPERS:  # multimodal wrapper: the language model sits in text_config
        outer = cfg
        cfg = {**cfg.get("text_config", {})}
        model_type = _WRAPPERS[model_type]
        for key in ("torch_dtype", "dtype", "quantization_config"):
            if key not in cfg and key in outer:
                cfg[key] = outer[key]
    if model_type not in _READERS:
        raise ValueError(
            f"unsupported model_type {model_type!r}; supported: {', '.join(SUPPORTED_MODEL_TYPES)}"
        )
    kwargs = _READERS[model_type](_Config(cfg, model_type))
    return TransformerSpec.create(**{**kwargs, **_dtypes(cfg), **dtypes})


class _Config:
    """Typed access to one config's fields with the family's error messages."""

    def __init__(self, cfg: dict[str, Any], model_type: str):
        self.cfg, self.model_type = cfg, model_type

    def require(self, keys: Mapping[str, str]) -> dict[str, Any]:
        missing = [hf for ours, hf in keys.items() if ours != "n_kv_heads" and hf not in self.cfg]
        if missing:
            raise ValueError(f"{self.model_type} config is missing field(s): {', '.join(missing)}")
        sizes = {ours: self.number(hf) for ours, hf in keys.items() if hf in self.cfg}
        if sizes.get("n_kv_heads") is None:
            sizes["n_kv_heads"] = sizes["n_heads"]
        return sizes

    def number(self, key: str, default: Any = None) -> Any:
        value = self.cfg.get(key, default)
        if value is None:
            if default is None and key not in self.cfg:
                raise ValueError(f"{self.model_type} config is missing field(s): {key}")
            return default
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise ValueError(f"config field {key!r} must be a number, got {value!r}")
        return value

    def first(self, *keys: str) -> Any:
        for key in keys:
            if self.cfg.get(key) is not None:
                return self.number(key)
        raise ValueError(f"{self.model_type} config is missing field(s): {' or '.join(keys)}")

    def layer_types(self, n_layers: int) -> list[str] | None:
        types = self.cfg.get("layer_types")
        if types is None:
            return None
        if not isinstance(types, list) or len(types) != n_layers:
            raise ValueError(
                f"config field 'layer_types' must list {n_layers} layer types, got {types!r}"
            )
        return types


def _dense(keys: dict[str, str], gated: bool, tied_default: bool):
    def read(c: _Config) -> dict[str, Any]:
        # OPT-350M's 512-wide embedding projection is ignored, as in the reference counts.
        return {
            **c.require(keys),
            "head_dim": c.cfg.get("head_dim"),
            "gated_mlp": gated,
            "tied_embeddings": bool(c.cfg.get("tie_word_embeddings", tied_default)),
        }

    return read


def _gemma2(c: _Config) -> dict[str, Any]:
    kwargs = _dense(_LLAMA_LIKE, True, True)(c)
    if c.cfg.get("sliding_window") is not None:
        n = int(kwargs["n_layers"])
        alternating = ["sliding_attention" if i % 2 == 0 else "full" for i in range(n)]
        types = c.layer_types(n) or alternating
        kwargs.update(_windows(c, types))
    return kwargs


def _gemma3_text(c: _Config) -> dict[str, Any]:
    c = _Config({**_GEMMA3_TEXT_DEFAULTS, **c.cfg}, c.model_type)
    kwargs = _dense(_LLAMA_LIKE, True, True)(c)
    if c.cfg.get("sliding_window") is not None:
        n = int(kwargs["n_layers"])
        pattern = int(c.first("sliding_window_pattern", "_sliding_window_pattern"))
        types = c.layer_types(n) or [
            "full_attention" if (i + 1) % pattern == 0 else "sliding_attention" for i in range(n)
        ]
        kwargs.update(_windows(c, types))
    return kwargs


def _windows(c: _Config, types: list[str]) -> dict[str, Any]:
    local = sum(t in ("sliding_attention", "chunked_attention") for t in types)
    return {"n_local_layers": local, "sliding_window": c.number("sliding_window") if local else 0}


def _mixtral(c: _Config) -> dict[str, Any]:
    kwargs = _dense(_LLAMA_LIKE, True, False)(c)
    return {
        **kwargs,
        "n_moe_layers": kwargs["n_layers"],
        "n_experts": c.number("num_local_experts"),
        "experts_per_token": c.number("num_experts_per_tok"),
        "d_ff_expert": kwargs["d_ff"],
    }


def _qwen_moe(shared: bool):
    def read(c: _Config) -> dict[str, Any]:
        kwargs = _dense(_LLAMA_LIKE, True, False)(c)
        n = int(kwargs["n_layers"])
        step = int(c.number("decoder_sparse_step", 1))
        dense_only = set(c.cfg.get("mlp_only_layers") or [])
        experts = c.number("num_experts")
        moe = [experts > 0 and i not in dense_only and (i + 1) % step == 0 for i in range(n)]
        kwargs.update(
            n_moe_layers=sum(moe),
            n_experts=experts,
            experts_per_token=c.number("num_experts_per_tok"),
            d_ff_expert=c.number("moe_intermediate_size"),
            d_ff_shared=c.number("shared_expert_intermediate_size") if shared else 0,
        )
        return kwargs

    return read


def _deepseek(c: _Config) -> dict[str, Any]:
    sizes = c.require(_LLAMA_LIKE)
    n = int(sizes["n_layers"])
    nope, value = c.number("qk_nope_head_dim"), c.number("v_head_dim")
    if nope != value:
        raise ValueError(
            f"{c.model_type}: qk_nope_head_dim ({nope}) != v_head_dim ({value}) is not "
            "modelled (specsim's MLA has one head_dim for both)"
        )
    first_dense = int(c.number("first_k_dense_replace", 0))
    freq = int(c.number("moe_layer_freq", 1))
    experts = c.number("n_routed_experts", 0)
    moe = [experts > 0 and i >= first_dense and i % freq == 0 for i in range(n)]
    expert_width = c.number("moe_intermediate_size")
    return {
        **sizes,
        "n_kv_heads": sizes["n_heads"],  # MLA: every head has its own key and value
        "head_dim": nope,
        "gated_mlp": True,
        "tied_embeddings": bool(c.cfg.get("tie_word_embeddings", False)),
        "n_moe_layers": sum(moe),
        "n_experts": experts,
        "experts_per_token": c.number("num_experts_per_tok"),
        "d_ff_expert": expert_width,
        "d_ff_shared": c.number("n_shared_experts", 0) * expert_width,
        "kv_lora_rank": c.number("kv_lora_rank"),
        "q_lora_rank": c.number("q_lora_rank", 0) or 0,
        "rope_head_dim": c.number("qk_rope_head_dim"),
        "n_mtp_layers": c.number("num_nextn_predict_layers", 0),
    }


def _gpt_oss(c: _Config) -> dict[str, Any]:
    kwargs = _dense(_LLAMA_LIKE, True, False)(c)
    n = int(kwargs["n_layers"])
    # transformers' GptOssConfig default: alternate sliding-window and full attention.
    types = c.layer_types(n) or [
        "sliding_attention" if i % 2 == 0 else "full_attention" for i in range(n)
    ]
    return {
        **kwargs,
        **_windows(c, types),
        "n_moe_layers": n,
        "n_experts": c.number("num_local_experts"),
        "experts_per_token": c.first("num_experts_per_tok", "experts_per_token"),
        "d_ff_expert": kwargs["d_ff"],
    }


def _llama4_text(c: _Config) -> dict[str, Any]:
    kwargs = _dense(_LLAMA_LIKE, True, False)(c)
    n = int(kwargs["n_layers"])
    step = int(c.number("interleave_moe_layer_step", 1))
    moe_layers = c.cfg.get("moe_layers")
    if moe_layers is None:
        moe_layers = list(range(step - 1, n, step))
    no_rope = c.cfg.get("no_rope_layers") or [
        int((i + 1) % _LLAMA4_NO_ROPE_INTERVAL != 0) for i in range(n)
    ]
    chunk = c.cfg.get("attention_chunk_size")
    # RoPE layers attend within chunks of attention_chunk_size tokens: priced as a window.
    local = sum(1 for flag in no_rope if flag) if chunk else 0
    width = c.number("intermediate_size")
    return {
        **kwargs,
        "d_ff": c.number("intermediate_size_mlp", width),
        "n_moe_layers": len(moe_layers),
        "n_experts": c.number("num_local_experts"),
        "experts_per_token": c.number("num_experts_per_tok"),
        "d_ff_expert": width,
        "d_ff_shared": width,  # one shared expert of the routed experts' width
        "n_local_layers": local,
        "sliding_window": c.number("attention_chunk_size") if local else 0,
    }


def _dtypes(cfg: Mapping[str, Any]) -> dict[str, str]:
    """Storage dtypes from ``torch_dtype``/``dtype`` and ``quantization_config``."""
    torch_dtype = cfg.get("torch_dtype", cfg.get("dtype", "bfloat16"))
    weight_dtype = _TORCH_DTYPES.get(str(torch_dtype), "bf16")
    kwargs = {"weight_dtype": weight_dtype, "activation_dtype": "bf16"}
    quant = cfg.get("quantization_config") or {}
    method = quant.get("quant_method") if isinstance(quant, Mapping) else None
    if method == "fp8":
        kwargs["weight_dtype"] = "fp8_block" if quant.get("weight_block_size") else "fp8"
        kwargs["kv_dtype"] = "bf16"
    elif method == "mxfp4":  # gpt-oss: only the routed experts (attention, router, embeddings bf16)
        kwargs["expert_weight_dtype"] = "mxfp4"
    return kwargs


_READERS: dict[str, Callable[[_Config], dict[str, Any]]] = {
    "llama": _dense(_LLAMA_LIKE, True, False),
    "mistral": _dense(_LLAMA_LIKE, True, False),
    "qwen2": _dense(_LLAMA_LIKE, True, False),
    "qwen3": _dense(_LLAMA_LIKE, True, False),
    "gemma": _dense(_LLAMA_LIKE, True, True),
    "gemma2": _gemma2,
    "gemma3_text": _gemma3_text,
    "opt": _dense(_OPT, False, True),
    "gpt_neox": _dense(_NEOX, False, False),
    "mixtral": _mixtral,
    "qwen2_moe": _qwen_moe(shared=True),
    "qwen3_moe": _qwen_moe(shared=False),
    "deepseek_v2": _deepseek,
    "deepseek_v3": _deepseek,
    "gpt_oss": _gpt_oss,
    "llama4_text": _llama4_text,
}
_WRAPPERS = {"gemma3": "gemma3_text", "llama4": "llama4_text"}
SUPPORTED_MODEL_TYPES = tuple(sorted([*_READERS, *_WRAPPERS]))


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


def _spec_from_hf_config(cls, config, **dtypes) -> TransformerSpec:
    """Reads a Hugging Face ``config.json`` (path, folder or dict); see
    ``specsim.models.from_hf_config``."""
    return from_hf_config(config, **dtypes)


# ``_spec`` must not import this module (that was an import cycle), so the classmethod is
# attached here, where both are known; ``specsim.models`` imports this module on load.
TransformerSpec.from_hf_config = classmethod(_spec_from_hf_config)
