"""Reading Hugging Face ``config.json`` files into ``TransformerSpec``.

One reader per family turns the config's fields into ``TransformerSpec.create``
arguments. Missing optional fields take the defaults of the family's ``transformers``
config class (e.g. Gemma 3's text config omits ``vocab_size`` and the head counts of the
4B model). Layer-type patterns (MoE layers, sliding-window layers) are expanded layer by
layer and counted, since only their numbers enter the cost.
"""

from __future__ import annotations

import difflib
import json
import math
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
_COUNT = "a whole number >= 0 (a size or a count)"
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
# transformers' LlamaConfig defaults (llava-1.5's text_config gives only vocab_size).
_LLAMA_DEFAULTS = {
    "vocab_size": 32000,
    "hidden_size": 4096,
    "intermediate_size": 11008,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
}
# transformers' Llama4TextConfig: every 4th layer is global (no RoPE), the others chunked.
_LLAMA4_NO_ROPE_INTERVAL = 4


def from_hf_config(config: str | os.PathLike | Mapping[str, Any], **dtypes: str) -> TransformerSpec:
    """Builds a ``TransformerSpec`` from a Hugging Face ``config.json``.

    Supports dense Llama, Mistral, Qwen2/2.5, Qwen3, Gemma (1-3), Phi-3/Phi-4 (``phi3``:
    fused QKV and gate-up projections, the same weights as Llama's), OPT and
    GPT-NeoX/Pythia, and the mixture-of-experts and attention variants of Mixtral,
    Phi-3.5-MoE (``phimoe``), Qwen1.5/2-MoE (``qwen2_moe``), Qwen3-MoE, DeepSeek-V2/V3
    (multi-head latent attention, shared experts, leading dense layers, multi-token
    prediction), gpt-oss (sliding-window layers, MXFP4 experts), Llama 4 (shared expert,
    interleaved MoE, chunked attention) and Gemma 3 (5 sliding-window layers per global
    one). Multimodal wrappers (``gemma3``, ``llama4``, ``mistral3``, ``llava``,
    ``llava_next``, ``qwen2_vl``, ``qwen2_5_vl``, and any config whose ``text_config``
    names a supported ``model_type``) are read through their language model; the vision
    encoder, which a decode step does not run, is left out.

    Storage formats: the weight dtype follows ``dtype`` (transformers >= 4.56) or
    ``torch_dtype``, and ``quantization_config`` where present: ``fp8`` (DeepSeek's
    128 x 128 block FP8), ``mxfp4`` (gpt-oss's experts), ``gptq``, ``awq``,
    ``bitsandbytes``, ``compressed-tensors`` (weights, and FP8/INT8 activations and KV
    cache when its scheme quantises them), ``modelopt`` (FP8, NVFP4, INT4-AWQ),
    ``fbgemm_fp8`` and ``eetq``. Anything passed in ``dtypes`` wins; an unknown
    ``quant_method`` is an error unless ``weight_dtype`` is given.

    Not modelled, and left out like biases and norms: Qwen2-MoE's shared-expert gate
    (``d_model`` weights per layer), gpt-oss's per-head attention-sink logits and the
    scales and zero points of grouped integer quantisers (GPTQ/AWQ ``int4`` is counted at
    0.5 bytes per weight). Mistral-7B-v0.1's ``sliding_window = 4096`` (and Phi-3-mini's
    2047) is not applied (it reads as an all-global model); set ``n_local_layers`` to
    price it.

    Args:
        config: path to ``config.json`` (or its folder), or the parsed dict.
        **dtypes: overrides forwarded to ``TransformerSpec.create`` (``weight_dtype``,
            ``kv_dtype``, ``activation_dtype``, ``compute_dtype``, ``expert_weight_dtype``).

    Raises:
        ValueError: unreadable or malformed file, unsupported ``model_type`` (the
            message lists the supported ones), a missing or malformed field, or a
            ``quantization_config`` that cannot be read.

    Examples:
        >>> cfg = {"model_type": "llama", "num_hidden_layers": 2, "hidden_size": 64,
        ...        "num_attention_heads": 4, "intermediate_size": 128, "vocab_size": 100}
        >>> int(from_hf_config(cfg).n_kv_heads)
        4
        >>> moe = {**cfg, "model_type": "mixtral", "num_local_experts": 8,
        ...        "num_experts_per_tok": 2}
        >>> int(from_hf_config(moe).n_experts)
        8
        >>> awq = {**cfg, "quantization_config": {"quant_method": "awq", "bits": 4}}
        >>> float(from_hf_config(awq).weight_bytes)
        0.5
    """
    cfg = _language_model(_read(config))
    model_type = cfg.get("model_type")
    if model_type not in _READERS:
        raise ValueError(
            f"unsupported model_type {model_type!r}; supported: {', '.join(SUPPORTED_MODEL_TYPES)}"
        )
    fields = _Config(cfg, model_type)
    kwargs = _READERS[model_type](fields)
    kwargs = {**kwargs, **_dtypes(fields.cfg, dtypes)}
    fields.check_misspelt()
    return TransformerSpec.create(**{**kwargs, **dtypes})


def _language_model(cfg: dict[str, Any]) -> dict[str, Any]:
    """The language model's config of a multimodal wrapper (else ``cfg`` itself).

    The wrapper's ``dtype``/``torch_dtype`` and ``quantization_config`` apply to the
    language model unless its own config repeats them.
    """
    model_type = cfg.get("model_type")
    text = cfg.get("text_config")
    if model_type in _READERS:
        return cfg
    if not isinstance(text, Mapping):
        if model_type in _TOP_LEVEL_WRAPPERS:  # older Qwen2-VL configs: sizes at the top
            return {**cfg, "model_type": _TOP_LEVEL_WRAPPERS[model_type]}
        return cfg
    inner = dict(text)
    inner_type = inner.get("model_type") or _WRAPPERS.get(model_type)
    if inner_type not in _READERS:
        inner_type = _WRAPPERS.get(inner_type, inner_type)
    if inner_type not in _READERS:
        return cfg  # reported as the wrapper's unsupported model_type
    inner["model_type"] = inner_type
    if inner_type == "llama":  # llava-1.5's text_config relies on LlamaConfig's defaults
        inner = {**_LLAMA_DEFAULTS, **inner}
    for key in ("torch_dtype", "dtype", "quantization_config"):
        if key not in inner and key in cfg:
            inner[key] = cfg[key]
    return inner


class _Lookups(dict):
    """A config dict that remembers every key looked up, present or not."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.looked_up: set[str] = set()

    def get(self, key, default=None):
        self.looked_up.add(key)
        return super().get(key, default)

    def __getitem__(self, key):
        self.looked_up.add(key)
        return super().__getitem__(key)

    def __contains__(self, key):
        self.looked_up.add(key)
        return super().__contains__(key)


class _Config:
    """Typed access to one config's fields with the family's error messages."""

    def __init__(self, cfg: dict[str, Any], model_type: str):
        self.cfg, self.model_type = _Lookups(cfg), model_type

    def check_misspelt(self) -> None:
        """Refuses a key that looks like a misspelling of one this family reads but the
        config lacks (``num_key_value_head``: its default would silently apply instead).

        Other unknown keys are accepted: Hugging Face configs carry many that do not
        change the cost (``rope_theta``, ``bos_token_id``, ...), and new ones appear with
        every release of ``transformers``.
        """
        missing = sorted(k for k in self.cfg.looked_up if k not in self.cfg)
        for key in sorted(set(self.cfg) - self.cfg.looked_up):
            near = difflib.get_close_matches(key, missing, n=1, cutoff=0.85)
            if near:
                raise ValueError(
                    f"{self.model_type} config key {key!r}: unknown, did you mean "
                    f"{near[0]!r}? (without it the default applies); valid: {near[0]!r}"
                )

    def require(self, keys: Mapping[str, str]) -> dict[str, Any]:
        missing = [hf for ours, hf in keys.items() if ours != "n_kv_heads" and hf not in self.cfg]
        if missing:
            raise ValueError(f"{self.model_type} config is missing field(s): {', '.join(missing)}")
        sizes = {ours: self.number(hf) for ours, hf in keys.items() if hf in self.cfg}
        if sizes.get("n_kv_heads") is None:
            sizes["n_kv_heads"] = sizes["n_heads"]
        heads, kv = sizes.get("n_heads"), sizes["n_kv_heads"]
        if heads and kv and heads % kv:
            raise ValueError(
                f"config field 'num_key_value_heads' {kv}: does not divide "
                f"num_attention_heads {heads} (each key/value head serves a whole group of "
                f"query heads); valid: a divisor of {heads}"
            )
        return sizes

    def number(self, key: str, default: Any = None) -> Any:
        value = self.cfg.get(key, default)
        if value is None:
            if default is None and key not in self.cfg:
                raise ValueError(f"{self.model_type} config is missing field(s): {key}")
            return default
        # Every number read here is a size or a count: a whole number >= 0.
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise ValueError(f"config field {key!r} {value!r}: not a number; valid: {_COUNT}")
        if not (math.isfinite(value) and value >= 0 and value == int(value)):
            raise ValueError(f"config field {key!r} {value!r}: not a whole count; valid: {_COUNT}")
        return int(value)

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
        tied = c.cfg.get("tie_word_embeddings", tied_default)
        if not isinstance(tied, bool):
            raise ValueError(
                f"config field 'tie_word_embeddings' {tied!r}: not a boolean; valid: true, false"
            )
        return {
            **c.require(keys),
            "head_dim": c.number("head_dim", None) if c.cfg.get("head_dim") is not None else None,
            "gated_mlp": gated,
            "tied_embeddings": tied,
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


# Checkpoint dtype names (``torch_dtype``/``dtype``) -> specsim formats.
_TORCH_DTYPES = {
    "bfloat16": "bf16",
    "float16": "fp16",
    "half": "fp16",
    "float32": "fp32",
    "float": "fp32",
    "float8_e4m3fn": "fp8",
    "float8_e5m2": "fp8",
}
# GPTQ/AWQ-style integer weights: bits -> format.
_INT_BITS = {4: "int4", 8: "int8"}
QUANT_METHODS = (
    "awq",
    "bitsandbytes",
    "compressed-tensors",
    "eetq",
    "fbgemm_fp8",
    "fp8",
    "gptq",
    "modelopt",
    "mxfp4",
)


def _dtypes(cfg: Mapping[str, Any], given: Mapping[str, str]) -> dict[str, str]:
    """Storage dtypes from ``dtype``/``torch_dtype`` and ``quantization_config``."""
    kwargs = {"weight_dtype": "bf16", "activation_dtype": "bf16"}
    stored = cfg.get("dtype", cfg.get("torch_dtype"))  # transformers >= 4.56 writes "dtype"
    if stored not in (None, "auto"):
        if str(stored) not in _TORCH_DTYPES and "weight_dtype" not in given:
            raise ValueError(
                f"config dtype {stored!r} is not understood (valid: "
                f"{', '.join(_TORCH_DTYPES)}); pass weight_dtype (--weight-dtype)"
            )
        kwargs["weight_dtype"] = _TORCH_DTYPES.get(str(stored), "bf16")
    quant = cfg.get("quantization_config")
    if quant is None or "weight_dtype" in given:
        return kwargs
    if not isinstance(quant, Mapping):
        raise ValueError(f"config field 'quantization_config' must be an object, got {quant!r}")
    return {**kwargs, **_quantized(quant)}


def _quantized(quant: Mapping[str, Any]) -> dict[str, str]:
    """Storage (and, where activations are quantised, compute) formats of a
    ``quantization_config``; KV cache stays 16-bit unless the config quantises it."""
    method = str(quant.get("quant_method", "")).lower().replace("_", "-")
    fp8_kv = {"kv_dtype": "bf16"}
    if method == "fp8":  # DeepSeek-V3, Qwen3-FP8: weights only, block-scaled when stated
        return {"weight_dtype": "fp8_block" if quant.get("weight_block_size") else "fp8", **fp8_kv}
    if method == "mxfp4":  # gpt-oss: only the routed experts (attention, router, embeddings bf16)
        return {"expert_weight_dtype": "mxfp4"}
    if method in ("gptq", "awq", "gptq-marlin", "awq-marlin", "auto-round"):
        bits = quant.get("bits", quant.get("w_bit"))
        if bits not in _INT_BITS:
            raise ValueError(
                f"{method} quantization with bits={bits!r} is not modelled (4 or 8); pass "
                "weight_dtype (--weight-dtype)"
            )
        return {"weight_dtype": _INT_BITS[bits], **fp8_kv}
    if method == "bitsandbytes":
        if quant.get("load_in_4bit"):
            return {"weight_dtype": "int4", **fp8_kv}
        if quant.get("load_in_8bit"):
            return {"weight_dtype": "int8", **fp8_kv}
        raise ValueError("bitsandbytes quantization_config sets neither load_in_4bit nor 8bit")
    if method == "fbgemm-fp8":  # FP8 weights, activations quantised per row at run time
        return {"weight_dtype": "fp8", "compute_dtype": "fp8", **fp8_kv}
    if method == "eetq":  # int8 weight-only
        return {"weight_dtype": "int8", **fp8_kv}
    if method == "compressed-tensors":
        return _compressed_tensors(quant)
    if method == "modelopt":
        return _modelopt(quant)
    raise ValueError(
        f"quantization_config quant_method {quant.get('quant_method')!r} is not understood "
        f"(known: {', '.join(QUANT_METHODS)}); pass weight_dtype (--weight-dtype) to say how "
        "the weights are stored"
    )


def _scheme_format(scheme: Any, what: str) -> str | None:
    """``{"num_bits": 8, "type": "float", ...}`` -> a storage format (None if absent)."""
    if not isinstance(scheme, Mapping):
        return None
    bits, kind = scheme.get("num_bits"), scheme.get("type", "int")
    formats = {(8, "float"): "fp8", (8, "int"): "int8", (4, "int"): "int4"}
    if (bits, kind) in formats:
        return formats[bits, kind]
    if (bits, kind) == (4, "float") and scheme.get("group_size") == 16:
        return "nvfp4"
    raise ValueError(
        f"compressed-tensors {what} scheme {bits}-bit {kind} is not modelled; pass "
        "weight_dtype (--weight-dtype) and kv_dtype (--kv-dtype)"
    )


def _compressed_tensors(quant: Mapping[str, Any]) -> dict[str, str]:
    groups = quant.get("config_groups")
    schemes = list(groups.values()) if isinstance(groups, Mapping) else []
    if not schemes or not isinstance(schemes[0], Mapping):
        raise ValueError("compressed-tensors quantization_config has no config_groups")
    scheme = schemes[0]  # one group covers the Linear layers in published checkpoints
    out = {"weight_dtype": _scheme_format(scheme.get("weights"), "weights") or "bf16"}
    activations = scheme.get("input_activations")
    if isinstance(activations, Mapping) and activations.get("num_bits") == 8:
        # W8A8: the matmuls run at the 8-bit peak (4-bit activations: left at bf16).
        out["compute_dtype"] = "fp8" if activations.get("type") == "float" else "int8"
    out["kv_dtype"] = _scheme_format(quant.get("kv_cache_scheme"), "kv_cache") or "bf16"
    return out


def _modelopt(quant: Mapping[str, Any]) -> dict[str, str]:
    algo = str(quant.get("quant_algo", "")).upper()
    formats = {
        "FP8": {"weight_dtype": "fp8", "compute_dtype": "fp8"},
        "NVFP4": {"weight_dtype": "nvfp4"},
        "W4A16_AWQ": {"weight_dtype": "int4"},
        "W4A8_AWQ": {"weight_dtype": "int4"},
    }
    if algo not in formats:
        raise ValueError(
            f"modelopt quant_algo {quant.get('quant_algo')!r} is not modelled (known: "
            f"{', '.join(formats)}); pass weight_dtype (--weight-dtype)"
        )
    kv = str(quant.get("kv_cache_quant_algo") or "").upper()
    return {**formats[algo], "kv_dtype": "fp8" if kv == "FP8" else "bf16"}


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
    "phi3": _dense(_LLAMA_LIKE, True, False),
    "qwen2_vl_text": _dense(_LLAMA_LIKE, True, False),
    "qwen2_5_vl_text": _dense(_LLAMA_LIKE, True, False),
    "mixtral": _mixtral,
    "phimoe": _mixtral,
    "qwen2_moe": _qwen_moe(shared=True),
    "qwen3_moe": _qwen_moe(shared=False),
    "deepseek_v2": _deepseek,
    "deepseek_v3": _deepseek,
    "gpt_oss": _gpt_oss,
    "llama4_text": _llama4_text,
}
# Multimodal wrappers -> the model_type of their text_config when it names none (the
# default language model of the wrapper's transformers config class).
_WRAPPERS = {
    "gemma3": "gemma3_text",
    "llama4": "llama4_text",
    "mistral3": "mistral",
    "llava": "llama",
    "llava_next": "llama",
    "qwen2_vl": "qwen2_vl_text",
    "qwen2_5_vl": "qwen2_5_vl_text",
}
# Wrappers whose older configs put the language model's sizes at the top level.
_TOP_LEVEL_WRAPPERS = {"qwen2_vl": "qwen2_vl_text", "qwen2_5_vl": "qwen2_5_vl_text"}
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
