"""Measurement presets: which networks, passes and speculative runs to time per device.

Sizes are chosen so that the full validation runs in a few minutes: tiny-to-small fp32
networks on a CPU (bf16 matmuls are emulated there), bf16 networks of up to about a
billion parameters on an accelerator. Every preset mixes the features the cost model
prices differently: grouped-query and multi-head attention, gated and plain MLPs,
narrow and wide vocabularies, and decode, verification and prefill passes at several
batches and contexts (memory-bound, compute-bound and overhead-bound steps).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from ._model import ModelConfig
from ._timing import MeasurementPoint

SIZES = ("tiny", "quick", "full")

__all__ = [
    "SIZES",
    "SpeculativeConfig",
    "calibration_points",
    "default_repeats",
    "model_presets",
    "speculative_configs",
]


def _config(n_layers, d_model, n_heads, n_kv_heads, d_ff, vocab, gated=True, dtype=None):
    dtype = dtype or jnp.float32
    return ModelConfig(
        n_layers=n_layers,
        d_model=d_model,
        n_heads=n_heads,
        n_kv_heads=n_kv_heads,
        head_dim=d_model // n_heads,
        d_ff=d_ff,
        vocab=vocab,
        gated_mlp=gated,
        param_dtype=dtype,
        kv_dtype=dtype,
        activation_dtype=dtype,
    )


def _platform(platform: str | None) -> str:
    platform = platform or jax.devices()[0].platform
    return "cpu" if platform == "cpu" else "accelerator"


def _check_size(size: str) -> str:
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}, got {size!r}")
    return size


def model_presets(size: str = "full", platform: str | None = None) -> dict[str, ModelConfig]:
    """Named networks to measure on ``platform`` (default: the default device's).

    Examples:
        >>> sorted(model_presets("tiny", "cpu"))
        ['gqa-2x64', 'mha-1x96-gelu']
    """
    _check_size(size)
    if _platform(platform) == "cpu":
        presets = {
            "gqa-2x64": _config(2, 64, 4, 2, 192, 512),
            "mha-1x96-gelu": _config(1, 96, 4, 4, 256, 1024, gated=False),
            "gqa-4x256": _config(4, 256, 4, 2, 768, 4096),
            "mha-6x384-gelu": _config(6, 384, 6, 6, 1024, 4096, gated=False),
            "gqa-2x512-v8k": _config(2, 512, 8, 2, 1536, 8192),
            "gqa-8x192": _config(8, 192, 3, 1, 512, 2048),
        }
        chosen = {
            "tiny": presets.keys() - {"gqa-4x256", "mha-6x384-gelu", "gqa-2x512-v8k", "gqa-8x192"},
            "quick": ("gqa-2x64", "gqa-4x256", "mha-6x384-gelu"),
            "full": presets.keys() - {"mha-1x96-gelu"},
        }[size]
    else:
        bf16 = jnp.bfloat16
        presets = {
            "gqa-2x256": _config(2, 256, 4, 2, 768, 4096, dtype=bf16),
            "gqa-8x1024": _config(8, 1024, 16, 4, 2816, 32000, dtype=bf16),
            "mha-12x1536-gelu": _config(12, 1536, 12, 12, 6144, 32000, gated=False, dtype=bf16),
            "gqa-16x2048": _config(16, 2048, 16, 4, 5632, 32000, dtype=bf16),
            "gqa-4x4096-v128k": _config(4, 4096, 32, 8, 14336, 128256, dtype=bf16),
        }
        chosen = {
            "tiny": ("gqa-2x256",),
            "quick": ("gqa-2x256", "gqa-8x1024", "gqa-16x2048"),
            "full": presets.keys(),
        }[size]
    return {name: presets[name] for name in presets if name in chosen}


def calibration_points(size: str = "full", platform: str | None = None) -> list[MeasurementPoint]:
    """The step-time grid: decode and verify (gamma = 4) at several batches and contexts,
    plus prefills, for every preset network.

    Examples:
        >>> len(calibration_points("tiny", "cpu")) >= 8
        True
    """
    cpu = _platform(platform) == "cpu"
    batches = {"tiny": (1, 4), "quick": (1, 4, 16), "full": (1, 4, 16)}[_check_size(size)]
    if not cpu:
        batches = {"tiny": (1, 8), "quick": (1, 8, 64), "full": (1, 8, 64)}[size]
    contexts = (32, 256) if cpu else (128, 2048)
    prompt = 64 if cpu else 512
    points = []
    for config in model_presets(size, platform).values():
        for batch in batches:
            for context in contexts:
                points.append(MeasurementPoint(config, batch, 1, context, "decode"))
                points.append(MeasurementPoint(config, batch, 5, context, "verify"))
            if batch <= batches[1]:
                points.append(MeasurementPoint(config, batch, prompt, 0, "prefill"))
    return points


def default_repeats(size: str) -> int:
    """Timed samples per point for a preset size."""
    return {"tiny": 5, "quick": 15, "full": 25}[_check_size(size)]


@dataclasses.dataclass(frozen=True)
class SpeculativeConfig:
    """One end-to-end speculative-decoding run.

    Attributes:
        name: label of the run.
        target: the target network.
        draft_layers: blocks of the layer-skipping draft.
        gamma: draft tokens per iteration.
        batch: sequences.
        prompt_tokens: prompt length.
        new_tokens: tokens generated per sequence.
        temperature: 0 for greedy, else sampling temperature.
        logit_scale, residual_scale: acceptance knobs of the target's weights
            (see ``specsim.measure._drafts``).
    """

    name: str
    target: ModelConfig
    draft_layers: int
    gamma: int
    batch: int = 1
    prompt_tokens: int = 32
    new_tokens: int = 96
    temperature: float = 1.0
    logit_scale: float = 3.0
    residual_scale: float = 0.3


def speculative_configs(size: str = "full", platform: str | None = None) -> list[SpeculativeConfig]:
    """Speculative-decoding runs spanning acceptance rates from about 0.3 to 0.9.

    Examples:
        >>> len(speculative_configs("full", "cpu")) >= 6
        True
    """
    _check_size(size)
    cpu = _platform(platform) == "cpu"
    presets = model_presets("full", platform)
    if cpu:
        big, deep = presets["mha-6x384-gelu"], presets["gqa-8x192"]
        prompt, new = 32, 96
    else:
        big, deep = presets["gqa-16x2048"], presets["mha-12x1536-gelu"]
        prompt, new = 128, 256
    runs = [
        SpeculativeConfig("deep k=1 g=4 greedy", deep, 1, 4, temperature=0.0, residual_scale=0.15),
        SpeculativeConfig("deep k=2 g=3 T=1", deep, 2, 3, residual_scale=0.3),
        SpeculativeConfig("deep k=2 g=6 T=1 flat", deep, 2, 6, logit_scale=1.0, residual_scale=0.3),
        SpeculativeConfig("big k=1 g=2 T=1", big, 1, 2, residual_scale=1.0),
        SpeculativeConfig("big k=2 g=4 T=1", big, 2, 4, residual_scale=0.3),
        SpeculativeConfig("big k=3 g=4 b=4", big, 3, 4, batch=4, residual_scale=0.3),
        SpeculativeConfig(
            "big k=1 g=3 b=4 greedy", big, 1, 3, batch=4, temperature=0.0, residual_scale=0.5
        ),
        SpeculativeConfig("deep k=4 g=5 b=4", deep, 4, 5, batch=4, residual_scale=0.15),
    ]
    runs = [dataclasses.replace(r, prompt_tokens=prompt, new_tokens=new) for r in runs]
    count = {"tiny": 2, "quick": 6, "full": len(runs)}[size]
    return runs[:count]
