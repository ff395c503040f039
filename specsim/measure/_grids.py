"""Measurement presets: which networks, passes and speculative runs to time per device.

Sizes are chosen so that the full validation runs in a few minutes: tiny-to-small fp32
networks on a CPU (bf16 matmuls are emulated there), bf16 networks of up to about a
billion parameters on an accelerator. The networks form a family: two speculative-
decoding targets ("deep": many narrow layers; "big": few wide MHA layers with a plain
GELU MLP), one layer-skipping draft shape of each, and networks that stress other
terms of the cost model (a wide vocabulary, a middle size, a tiny overhead-bound one).
Every grid mixes grouped-query and multi-head attention, gated and plain MLPs, and
decode, verification (gamma = 4) and prefill passes at several batches and contexts,
so memory-bound, compute-bound and overhead-bound steps all appear.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from ._model import ModelConfig
from ._timing import MeasurementPoint

SIZES = ("tiny", "quick", "full")
VERIFY_GAMMA = 4

__all__ = [
    "SIZES",
    "SpeculativeConfig",
    "calibration_points",
    "default_repeats",
    "default_rounds",
    "model_presets",
    "moe_calibration_points",
    "moe_presets",
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


def _on_cpu(platform: str | None) -> bool:
    return (platform or jax.devices()[0].platform) == "cpu"


def _check_size(size: str) -> str:
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}, got {size!r}")
    return size


def _family(platform: str | None) -> dict[str, ModelConfig]:
    if _on_cpu(platform):
        deep = _config(8, 192, 3, 1, 512, 2048)
        big = _config(6, 384, 6, 6, 1024, 4096, gated=False)
        return {
            "tiny-target": _config(4, 64, 4, 2, 192, 512),
            "tiny-draft": _config(1, 64, 4, 2, 192, 512),
            "deep": deep,
            "deep-draft": deep.with_layers(2),
            "big": big,
            "big-draft": big.with_layers(1),
            "mid": _config(4, 256, 4, 2, 768, 4096),
            "wide-vocab": _config(2, 512, 8, 2, 1536, 8192),
        }
    bf16 = jnp.bfloat16
    # Kept to a dozen layers or fewer: every layer is traced and compiled separately.
    deep = _config(12, 1536, 12, 4, 4096, 32000, dtype=bf16)
    big = _config(4, 3072, 24, 24, 12288, 32000, gated=False, dtype=bf16)
    return {
        "tiny-target": _config(4, 256, 4, 2, 768, 4096, dtype=bf16),
        "tiny-draft": _config(1, 256, 4, 2, 768, 4096, dtype=bf16),
        "deep": deep,
        "deep-draft": deep.with_layers(2),
        "big": big,
        "big-draft": big.with_layers(1),
        "mid": _config(8, 1024, 16, 4, 2816, 32000, dtype=bf16),
        "wide-vocab": _config(2, 4096, 32, 8, 14336, 128256, dtype=bf16),
    }


_CHOSEN = {
    "tiny": ("tiny-target", "tiny-draft"),
    "quick": ("deep", "deep-draft", "big", "big-draft", "mid"),
    "full": (
        "tiny-target",
        "deep",
        "deep-draft",
        "big",
        "big-draft",
        "mid",
        "wide-vocab",
    ),
}


def model_presets(size: str = "full", platform: str | None = None) -> dict[str, ModelConfig]:
    """Named networks measured for a preset size on ``platform`` (default: the device's).

    Examples:
        >>> sorted(model_presets("tiny", "cpu"))
        ['tiny-draft', 'tiny-target']
    """
    family = _family(platform)
    chosen = _CHOSEN[_check_size(size)]
    if size == "quick" and not _on_cpu(platform):  # compilation dominates on a GPU
        chosen = tuple(name for name in chosen if name != "mid")
    return {name: family[name] for name in chosen}


def calibration_points(size: str = "full", platform: str | None = None) -> list[MeasurementPoint]:
    """The step-time grid of a preset size: per network, decode passes at every batch and
    context, verification passes (gamma = 4) at small batches, and prefills.

    Examples:
        >>> len(calibration_points("tiny", "cpu"))
        12
        >>> len(calibration_points("full", "cpu"))
        77
    """
    _check_size(size)
    cpu = _on_cpu(platform)
    verify = VERIFY_GAMMA + 1
    if size == "tiny":
        batches, contexts, prompt = (1, 4), (32,), 32
    elif cpu:
        # Contexts span those of the CPU speculative runs (prompt 32, up to ~130 tokens).
        batches, contexts, prompt = (1, 4, 16), (32, 128), 64
    else:
        batches, contexts, prompt = (1, 8, 32), (128, 1024), 512
    if size == "quick":
        contexts = contexts[-1:]
    points = []
    for config in model_presets(size, platform).values():
        for batch in batches:
            for context in contexts:
                points.append(MeasurementPoint(config, batch, 1, context, "decode"))
        for batch, context in (
            (batches[0], contexts[0]),
            *((b, contexts[-1]) for b in batches[:2]),
        ):
            point = MeasurementPoint(config, batch, verify, context, "verify")
            if point not in points:
                points.append(point)
        for batch in batches[:2]:
            points.append(MeasurementPoint(config, batch, prompt, 0, "prefill"))
    return points


def moe_presets(platform: str | None = None) -> dict[str, ModelConfig]:
    """A small mixture-of-experts network (8 experts, top-2, every block MoE) and its dense
    twin (the same network with one dense MLP as wide as a token's two experts).

    Examples:
        >>> presets = moe_presets("cpu")
        >>> presets["moe"].n_experts, presets["moe"].experts_per_token, presets["moe-dense"].d_ff
        (8, 2, 1024)
    """
    if _on_cpu(platform):
        moe = _config(4, 256, 4, 2, 512, 2048)
    else:
        moe = _config(4, 1024, 8, 2, 2048, 32000, dtype=jnp.bfloat16)
    moe = dataclasses.replace(
        moe, n_moe_layers=moe.n_layers, n_experts=8, experts_per_token=2, d_ff_expert=moe.d_ff
    )
    dense = dataclasses.replace(
        moe, n_moe_layers=0, n_experts=0, experts_per_token=0, d_ff_expert=0, d_ff=2 * moe.d_ff
    )
    return {"moe": moe, "moe-dense": dense}


def moe_calibration_points(platform: str | None = None) -> list[MeasurementPoint]:
    """Decode passes at batch 1-8 (a decode step touches more experts as the batch grows),
    verification passes (gamma = 4) at batch 1-4 and small prefills, of both networks of
    `moe_presets`.

    Examples:
        >>> len(moe_calibration_points("cpu"))
        26
    """
    contexts, prompt = ((32, 128), 32) if _on_cpu(platform) else ((128, 1024), 256)
    points = []
    for config in moe_presets(platform).values():
        for context in contexts:
            points += [MeasurementPoint(config, b, 1, context, "decode") for b in (1, 2, 4, 8)]
        points += [
            MeasurementPoint(config, b, VERIFY_GAMMA + 1, contexts[0], "verify") for b in (1, 2, 4)
        ]
        points += [MeasurementPoint(config, b, prompt, 0, "prefill") for b in (1, 2)]
    return points


def default_repeats(size: str) -> int:
    """Timed samples per forward pass for a preset size."""
    return {"tiny": 5, "quick": 16, "full": 48}[_check_size(size)]


def default_rounds(repeats: int, platform: str | None = None) -> int:
    """Interleaved sweeps of a grid timed with ``repeats`` samples per point.

    On a CPU, about three samples per point and sweep (at most 16 sweeps): slow drifts of
    a shared machine's load then reach every point alike. Elsewhere one sweep.

    Examples:
        >>> default_rounds(48, "cpu"), default_rounds(5, "cpu"), default_rounds(48, "gpu")
        (16, 1, 1)
    """
    return max(1, min(16, repeats // 3)) if _on_cpu(platform) else 1


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
    """Speculative-decoding runs whose measured acceptance spans about 0.15 to 0.85.

    Examples:
        >>> len(speculative_configs("full", "cpu"))
        8
    """
    _check_size(size)
    family = _family(platform)
    cpu = _on_cpu(platform)
    prompt, new = (32, 96) if cpu else (128, 128)
    run = SpeculativeConfig
    if size == "tiny":
        tiny = family["tiny-target"]
        runs = [
            run("tiny k=1 g=3 greedy", tiny, 1, 3, temperature=0.0, residual_scale=0.15),
            run("tiny k=2 g=4 T=1", tiny, 2, 4, residual_scale=0.3),
        ]
        return [dataclasses.replace(r, prompt_tokens=16, new_tokens=32) for r in runs]
    deep, big = family["deep"], family["big"]
    runs = [
        run("deep k=1 g=4 greedy", deep, 1, 4, temperature=0.0, residual_scale=0.15),
        run("deep k=2 g=3 T=1", deep, 2, 3, residual_scale=0.3),
        run("deep k=2 g=6 T=1 flat", deep, 2, 6, logit_scale=1.0, residual_scale=0.3),
        run("big k=1 g=2 T=1", big, 1, 2, residual_scale=1.0),
        run("big k=2 g=4 T=1", big, 2, 4, residual_scale=0.3),
        run("big k=3 g=4 b=4", big, 3, 4, batch=4, residual_scale=0.3),
        run("big k=1 g=3 b=4 greedy", big, 1, 3, batch=4, temperature=0.0, residual_scale=0.5),
        run("deep k=4 g=5 b=4", deep, 4, 5, batch=4, residual_scale=0.15),
    ]
    runs = [dataclasses.replace(r, prompt_tokens=prompt, new_tokens=new) for r in runs]
    if not cpu and size == "quick":  # compiling each run's passes dominates on a GPU
        return [runs[i] for i in (0, 1, 4, 5)]
    return runs[: {"quick": 6, "full": len(runs)}[size]]
