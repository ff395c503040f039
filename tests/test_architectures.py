"""Mixtures of experts, multi-head latent attention, sliding windows and block-scaled formats:
presets against the publishers' counts, forward cost against an independent per-layer,
per-expert count, Hugging Face configs, memory, and what MoE does to speculative decoding."""

import json
import math
from decimal import Decimal
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import RTOL_F64, assert_close, compilations
from jax.test_util import check_grads

import specsim
from specsim import fits, forward_cost, hardware, memory_footprint, models, runtime, step_time
from specsim._cost import (
    EXTRA_KERNELS_PER_MOE_LAYER,
    KERNELS_PER_FORWARD,
    KERNELS_PER_LAYER,
    KERNELS_PER_SHARED_EXPERT,
)

HF_CONFIGS = Path(__file__).parent / "data" / "hf_configs"  # sources: SOURCES.md there
# Presets added with the publisher's own parameter counts (MoE, MLA, sliding windows, and the
# dense Qwen3 sizes not in the reference table of test_models.py).
NEW_NAMES = [name for name in models.names() if "params_source" in models.info(name)]
EXTENDED = [
    name
    for name in NEW_NAMES
    if any(key in models.info(name) for key in ("n_moe_layers", "kv_lora_rank", "n_local_layers"))
]
BYTES = {"bf16": 2, "fp8": 1, "int8": 1, "int4": 0.5, "mxfp4": 4.25 / 8, "fp8_block": 1 + 4 / 16384}


# --------------------------------------------------------------------------- slow reference


def layer_plan(arch):
    """One (is_moe, is_local) pair per layer. Only the counts enter the cost, so MoE and
    sliding-window layers are placed first; the order does not matter."""
    n_moe, n_local = arch.get("n_moe_layers", 0), arch.get("n_local_layers", 0)
    return [(i < n_moe, i < n_local) for i in range(arch["n_layers"])]


def attention_kernels(arch):
    """One layer's attention projections, as kernels of (in, out) matrices sharing one input."""
    d, heads = arch["d_model"], arch["n_heads"]
    head_dim = arch.get("head_dim") or d // heads
    rank = arch.get("kv_lora_rank", 0)
    if not rank:
        kv = arch["n_kv_heads"] * head_dim
        return [[(d, heads * head_dim), (d, kv), (d, kv)], [(heads * head_dim, d)]]
    rope, q_rank = arch.get("rope_head_dim", 0), arch.get("q_lora_rank", 0)
    query = heads * (head_dim + rope)
    first = [(d, q_rank), (d, rank + rope)] if q_rank else [(d, query), (d, rank + rope)]
    kernels = [first]
    if q_rank:
        kernels.append([(q_rank, query)])
    kernels.append([(rank, heads * 2 * head_dim)])  # keys and values from the new latent
    kernels.append([(heads * head_dim, d)])
    return kernels


def mlp_kernels(arch, width):
    """A gated (gate/up fused) or plain MLP of ``width``."""
    d = arch["d_model"]
    inner = 2 if arch["gated_mlp"] else 1
    return [[(d, width)] * inner, [(width, d)]]


def kernel_weights(kernels):
    return sum(i * o for kernel in kernels for i, o in kernel)


def slow_parameters(arch):
    """Total and active (per token, with and without the embedding table) weights, matrix by
    matrix and expert by expert, plus the multi-token-prediction modules."""
    d, vocab = arch["d_model"], arch["vocab"]
    experts, k = arch.get("n_experts", 0), arch.get("experts_per_token", 0)
    total = active = 0
    for is_moe, _ in layer_plan(arch):
        attention = kernel_weights(attention_kernels(arch))
        total += attention
        active += attention
        if not is_moe:
            total += kernel_weights(mlp_kernels(arch, arch["d_ff"]))
            active += kernel_weights(mlp_kernels(arch, arch["d_ff"]))
            continue
        fixed = d * experts  # router
        if arch.get("d_ff_shared"):
            fixed += kernel_weights(mlp_kernels(arch, arch["d_ff_shared"]))
        total += fixed
        active += fixed
        for expert in range(experts):
            weights = kernel_weights(mlp_kernels(arch, arch["d_ff_expert"]))
            total += weights
            if expert < k:
                active += weights
    head = vocab * d
    table = 0 if arch["tied_embeddings"] else vocab * d
    total += head + table
    mtp = 0
    for _ in range(arch.get("n_mtp_layers", 0)):
        mlp = d * experts + kernel_weights(mlp_kernels(arch, arch.get("d_ff_shared", 0)))
        mlp += experts * kernel_weights(mlp_kernels(arch, arch["d_ff_expert"]))
        mtp += 2 * d * d + kernel_weights(attention_kernels(arch)) + mlp + 2 * vocab * d
    return {
        "total": total,
        "active": active + head + table,
        "active_no_table": active + head,
        "mtp": mtp,
    }


def slow_forward_cost(
    arch,
    batch,
    new_tokens,
    context,
    *,
    weight="bf16",
    expert=None,
    kv="bf16",
    act="bf16",
    absorbed=1.0,
    skew=0.0,
):
    """FLOPs and bytes of one forward pass counted layer by layer, kernel by kernel, expert by
    expert and query position by query position (float64 Python arithmetic)."""
    d, vocab, heads = arch["d_model"], arch["vocab"], arch["n_heads"]
    head_dim = arch.get("head_dim") or d // heads
    rank, rope = arch.get("kv_lora_rank", 0), arch.get("rope_head_dim", 0)
    experts, k = arch.get("n_experts", 0), arch.get("experts_per_token", 0)
    window = arch.get("sliding_window", 0)
    expert = expert or weight
    tokens = batch * new_tokens
    out = dict.fromkeys(
        (
            "matmul_flops",
            "attention_flops",
            "weight_bytes",
            "kv_read_bytes",
            "kv_write_bytes",
            "activation_bytes",
        ),
        0.0,
    )

    def run(kernels, n_tokens, weight_read_bytes):
        for kernel in kernels:
            out["activation_bytes"] += n_tokens * kernel[0][0] * BYTES[act]  # shared input
            for fan_in, fan_out in kernel:
                out["matmul_flops"] += 2 * n_tokens * fan_in * fan_out
                out["weight_bytes"] += fan_in * fan_out * weight_read_bytes
                out["activation_bytes"] += n_tokens * fan_out * BYTES[act]

    if rank:
        per_key = absorbed * 2 * heads * (2 * rank + rope) + (1 - absorbed) * 2 * heads * (
            2 * head_dim + rope
        )
        cache_elements = rank + rope
    else:
        per_key = 4 * heads * head_dim
        cache_elements = 2 * arch["n_kv_heads"] * head_dim
    for is_moe, is_local in layer_plan(arch):
        run(attention_kernels(arch), tokens, BYTES[weight])
        for position in range(1, int(new_tokens) + 1):
            keys = context + position
            keys = min(keys, window) if is_local else keys
            out["attention_flops"] += batch * per_key * keys
        cached = min(context, window) if is_local else context
        out["kv_read_bytes"] += batch * cached * cache_elements * BYTES[kv]
        out["kv_write_bytes"] += tokens * cache_elements * BYTES[kv]
        if rank and absorbed < 1:  # expand cached latents into per-head keys and values
            expanded = (1 - absorbed) * heads * 2 * head_dim
            out["attention_flops"] += 2 * batch * cached * rank * expanded
            out["kv_read_bytes"] += 2 * batch * cached * expanded * BYTES[act]
        if not is_moe:
            run(mlp_kernels(arch, arch["d_ff"]), tokens, BYTES[weight])
            continue
        run([[(d, experts)]], tokens, BYTES[weight])  # router
        if arch.get("d_ff_shared"):
            run(mlp_kernels(arch, arch["d_ff_shared"]), tokens, BYTES[weight])
        # Expert by expert: each token multiplies with k of them; a pass reads an expert if
        # any of its tokens picked it (probability under uniform, independent routing).
        expert_kernels = mlp_kernels(arch, arch["d_ff_expert"])
        independent = tokens ** (1 - skew)
        for _ in range(experts):
            picked = 1 - (1 - k / experts) ** independent
            out["weight_bytes"] += picked * kernel_weights(expert_kernels) * BYTES[expert]
        for _ in range(round(tokens * k)):
            for kernel in expert_kernels:  # FLOPs and activations per (token, expert) pair
                out["activation_bytes"] += kernel[0][0] * BYTES[act]
                for fan_in, fan_out in kernel:
                    out["matmul_flops"] += 2 * fan_in * fan_out
                    out["activation_bytes"] += fan_out * BYTES[act]
    # LM head (read even when tied) and the gathered embedding rows.
    out["matmul_flops"] += 2 * tokens * d * vocab
    out["weight_bytes"] += (d * vocab + tokens * d) * BYTES[weight]
    out["activation_bytes"] += tokens * (d + vocab) * BYTES[act]
    return out


SHAPES = [(1, 1, 0), (1, 5, 17), (3, 4, 5000), (16, 2, 1500)]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "b{}-n{}-c{}".format(*s))
@pytest.mark.parametrize("name", EXTENDED)
def test_forward_cost_against_slow_count(x64, name, shape):
    arch = models.info(name)
    spec = models.get(name, weight_dtype="bf16", expert_weight_dtype="bf16")
    expected = slow_forward_cost(arch, *shape)
    cost = forward_cost(spec, *(float(v) for v in shape))
    for key, value in expected.items():
        assert_close(getattr(cost, key), value, rtol=RTOL_F64, atol=1e-6)


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("DeepSeek-V3", {"absorbed": 0.0}),
        ("DeepSeek-V3", {"absorbed": 0.25, "kv": "fp8"}),
        ("Mixtral-8x7B", {"skew": 0.5, "weight": "int8"}),
        ("gpt-oss-120b", {"expert": "mxfp4"}),
        ("Qwen3-30B-A3B", {"skew": 0.2, "weight": "fp8_block", "act": "bf16"}),
    ],
)
def test_forward_cost_variants_against_slow_count(x64, name, options):
    arch = models.info(name)
    spec = models.get(
        name,
        weight_dtype=options.get("weight", "bf16"),
        expert_weight_dtype=options.get("expert", options.get("weight", "bf16")),
        kv_dtype=options.get("kv", "bf16"),
    ).replace(mla_absorbed=options.get("absorbed", 1.0), routing_skew=options.get("skew", 0.0))
    for shape in [(2, 5, 300), (1, 1, 9000)]:
        expected = slow_forward_cost(arch, *shape, **options)
        cost = forward_cost(spec, *(float(v) for v in shape))
        for key, value in expected.items():
            assert_close(getattr(cost, key), value, rtol=RTOL_F64, atol=1e-6)


def test_absorbed_mla_never_expands_the_cache(x64):
    spec = models.get("deepseek-v3")
    absorbed = forward_cost(spec, 1.0, 1.0, 32000.0)
    expanded = forward_cost(spec.replace(mla_absorbed=0.0), 1.0, 1.0, 32000.0)
    assert float(expanded.attention_flops) > 10 * float(absorbed.attention_flops)
    assert float(expanded.kv_read_bytes) > 10 * float(absorbed.kv_read_bytes)
    assert expanded.matmul_flops == absorbed.matmul_flops
    # The latent cache: 576 elements per token and layer instead of 2 x 128 x 128 x 2 bytes.
    assert float(absorbed.kv_write_bytes) == 61 * (512 + 64) * 2


def test_sliding_window_caps_kv_reads(x64):
    gemma = models.get("gemma-3-27b")
    short, long = (forward_cost(gemma, 1.0, 1.0, c) for c in (1000.0, 100_000.0))
    per_layer = 2 * 16 * 128 * 2
    assert float(short.kv_read_bytes) == 1000 * 62 * per_layer
    assert float(long.kv_read_bytes) == (100_000 * 10 + 1024 * 52) * per_layer
    mem = memory_footprint(gemma, 1.0, 100_000.0)
    assert float(mem.kv_cache_bytes) == float(long.kv_read_bytes)


# --------------------------------------------------------------------------- parameters


def half_unit(printed) -> float:
    exponent = Decimal(str(printed)).normalize().as_tuple().exponent
    return 0.5 * 10.0**exponent


def close_to_published(value, published):
    """Within 1% of the publisher's figure, or within its printed precision (a figure
    printed to two digits, like "3.3B", only says +-1.5%)."""
    return abs(value - published) <= max(0.01 * published, half_unit(published))


@pytest.mark.parametrize("name", NEW_NAMES)
def test_parameter_counts_against_slow_count_and_publisher(name):
    info, spec = models.info(name), models.get(name)
    slow = slow_parameters(info)
    assert models.parameter_count(spec) == slow["total"]
    assert models.active_parameter_count(spec) == slow["active"]
    assert models.active_parameter_count(spec, embedding=False) == slow["active_no_table"]
    assert models.mtp_parameter_count(spec) == slow["mtp"]
    total = slow["total"]
    if name.startswith("Llama-4"):
        # Meta's totals include the vision encoder (~0.9B), which the text model lacks:
        # Scout 107.77B vs 109B (-1.1%), Maverick 400.71B vs 400B.
        assert 0 < info["reference_params"] - total < 1.3e9 or close_to_published(
            total, info["reference_params"]
        )
    else:
        assert close_to_published(total, info["reference_params"]), total
    if "reference_non_embedding_params" in info:
        embedding = info["vocab"] * info["d_model"] * (2 - info["tied_embeddings"])
        assert close_to_published(total - embedding, info["reference_non_embedding_params"])
    if "reference_active_params" in info:
        excludes = "excludes the embedding" in info["reference_params_convention"]
        active = slow["active_no_table" if excludes else "active"]
        if name == "Qwen3-30B-A3B":
            # 3.353B vs the card's "3.3B" (+1.6%): just outside that figure's own rounding.
            assert abs(active / info["reference_active_params"] - 1) < 0.017
        else:
            assert close_to_published(active, info["reference_active_params"]), active
    if "reference_params_with_mtp" in info:
        assert close_to_published(total + slow["mtp"], info["reference_params_with_mtp"])
    assert info["params_source"] and info["source"]


def test_published_counts_to_the_digit():
    # Publishers that print more digits: gpt-oss model card Table 1 and Gemma 3 report Table 1.
    oss = models.get("gpt-oss-120b")
    assert abs(models.parameter_count(oss) / 116.83e9 - 1) < 5e-4
    assert abs(models.active_parameter_count(oss, embedding=False) / 5.13e9 - 1) < 5e-4
    assert abs(models.parameter_count(models.get("gpt-oss-20b")) / 20.91e9 - 1) < 5e-4
    for name, non_embedding in [
        ("gemma-3-4b", 3209e6),
        ("gemma-3-12b", 10759e6),
        ("gemma-3-27b", 25600e6),
    ]:
        spec = models.get(name)
        count = models.parameter_count(spec) - spec.vocab * spec.d_model
        assert abs(count / non_embedding - 1) < 2e-4, name
    # DeepSeek-V3: 671B main model (671.03B counted).
    assert abs(models.parameter_count(models.get("deepseek-v3")) / 671e9 - 1) < 1e-3


# --------------------------------------------------------------------------- Hugging Face

HF_PRESETS = {
    "mistralai--Mixtral-8x7B-v0.1": "Mixtral-8x7B",
    "mistralai--Mixtral-8x22B-v0.1": "Mixtral-8x22B",
    "Qwen--Qwen3-30B-A3B": "Qwen3-30B-A3B",
    "Qwen--Qwen3-235B-A22B": "Qwen3-235B-A22B",
    "Qwen--Qwen3-1.7B": "Qwen3-1.7B",
    "Qwen--Qwen3-32B": "Qwen3-32B",
    "deepseek-ai--DeepSeek-V3": "DeepSeek-V3",
    "openai--gpt-oss-20b": "gpt-oss-20b",
    "openai--gpt-oss-120b": "gpt-oss-120b",
    "meta-llama--Llama-4-Scout-17B-16E-Instruct": "Llama-4-Scout",
    "meta-llama--Llama-4-Maverick-17B-128E-Instruct": "Llama-4-Maverick",
    "google--gemma-3-4b-it": "Gemma-3-4B",
    "google--gemma-3-12b-it": "Gemma-3-12B",
    "google--gemma-3-27b-it": "Gemma-3-27B",
}


@pytest.mark.parametrize("config_name", list(HF_PRESETS))
def test_real_hf_configs_read_as_the_presets(config_name):
    path = HF_CONFIGS / f"{config_name}.json"
    spec = models.from_hf_config(path)
    assert spec == models.get(HF_PRESETS[config_name])
    assert models.from_hf_config(json.loads(path.read_text())) == spec
    assert specsim.models.TransformerSpec.from_hf_config(path) == spec


def test_hf_config_formats_and_layer_patterns():
    oss = models.from_hf_config(HF_CONFIGS / "openai--gpt-oss-120b.json")
    assert oss.expert_weight_bytes == 4.25 / 8 and oss.weight_bytes == 2.0  # MXFP4 experts only
    assert (oss.n_local_layers, oss.sliding_window) == (18.0, 128.0)
    deepseek = models.from_hf_config(HF_CONFIGS / "deepseek-ai--DeepSeek-V3.json")
    assert deepseek.weight_bytes == 1 + 4 / 16384 and deepseek.kv_bytes == 2.0
    assert (deepseek.n_moe_layers, deepseek.n_mtp_layers) == (58.0, 1.0)  # 3 dense layers first
    maverick_config = HF_CONFIGS / "meta-llama--Llama-4-Maverick-17B-128E-Instruct.json"
    maverick = models.from_hf_config(maverick_config)
    assert maverick.n_moe_layers == 24.0 and maverick.d_ff == 16384.0  # every 2nd layer MoE
    assert maverick.n_local_layers == 36.0  # chunked attention on 3 of every 4 layers
    gemma = models.from_hf_config(HF_CONFIGS / "google--gemma-3-4b-it.json")
    assert (gemma.n_local_layers, gemma.n_heads, gemma.vocab) == (29.0, 8.0, 262208.0)
    overridden = models.from_hf_config(
        HF_CONFIGS / "openai--gpt-oss-20b.json", expert_weight_dtype="bf16"
    )
    assert overridden.expert_weight_bytes == 2.0


def test_qwen2_moe_config_against_published_counts():
    # Qwen blog "Qwen1.5-MoE: Matching 7B Model Performance with 1/3 Activated Parameters"
    # (2024-03-28): 14.3B parameters in total, 2.7B activated (embedding table included).
    spec = models.from_hf_config(HF_CONFIGS / "Qwen--Qwen1.5-MoE-A2.7B.json")
    assert (spec.n_experts, spec.experts_per_token, spec.d_ff_shared) == (60.0, 4.0, 5632.0)
    arch = {
        "n_layers": 24,
        "d_model": 2048,
        "n_heads": 16,
        "n_kv_heads": 16,
        "d_ff": 5632,
        "vocab": 151936,
        "gated_mlp": True,
        "tied_embeddings": False,
        "n_moe_layers": 24,
        "n_experts": 60,
        "experts_per_token": 4,
        "d_ff_expert": 1408,
        "d_ff_shared": 5632,
    }
    slow = slow_parameters(arch)
    assert models.parameter_count(spec) == slow["total"]
    assert close_to_published(slow["total"], 14.3e9)
    assert close_to_published(slow["active"], 2.7e9)


def test_hf_config_errors():
    config = json.loads((HF_CONFIGS / "deepseek-ai--DeepSeek-V3.json").read_text())
    with pytest.raises(ValueError, match=r"qk_nope_head_dim .* != v_head_dim"):
        models.from_hf_config({**config, "v_head_dim": 64})
    with pytest.raises(ValueError, match=r"missing field.*kv_lora_rank"):
        models.from_hf_config({k: v for k, v in config.items() if k != "kv_lora_rank"})
    oss = json.loads((HF_CONFIGS / "openai--gpt-oss-20b.json").read_text())
    with pytest.raises(ValueError, match="'layer_types' must list 24"):
        models.from_hf_config({**oss, "layer_types": ["full_attention"]})
    with pytest.raises(ValueError, match=r"unsupported model_type 'mamba'; supported: .*qwen3_moe"):
        models.from_hf_config({"model_type": "mamba"})
    for model_type in (
        "mixtral",
        "qwen2_moe",
        "qwen3_moe",
        "deepseek_v3",
        "gpt_oss",
        "llama4",
        "gemma3",
    ):
        assert model_type in models.SUPPORTED_MODEL_TYPES


# --------------------------------------------------------------------------- experts touched


@pytest.mark.slow
def test_experts_touched_against_simulated_routing():
    rng = np.random.default_rng(0)
    spec = models.get("qwen3-30b-a3b")  # 128 experts, top-8
    for tokens in (1, 5, 40, 300):
        picks = np.argsort(rng.random((400, tokens, 128)), axis=-1)[..., :8]
        distinct = [len(np.unique(trial)) for trial in picks]
        # Monte Carlo of uniform top-8 routing: mean distinct experts within 3 standard errors
        # (plus 1e-3 experts, for 300 tokens where every trial touches all 128).
        stderr = np.std(distinct) / math.sqrt(len(distinct)) + 1e-3
        assert abs(models.experts_touched(spec, float(tokens)) - np.mean(distinct)) < 3 * stderr


def test_experts_touched_limits_and_skew(x64):
    mixtral = models.get("mixtral-8x7b")
    assert models.experts_touched(mixtral, 1.0) == 2.0
    assert models.experts_touched(mixtral, 0.0) == 0.0
    assert abs(models.experts_touched(mixtral, 1e4) - 8.0) < 1e-9
    assert models.experts_touched(models.get("llama-2-7b"), 64.0) == 0.0
    skewed = mixtral.replace(routing_skew=0.5)
    assert models.experts_touched(skewed, 1.0) == 2.0  # one token still uses its top-2
    assert models.experts_touched(skewed, 16.0) == models.experts_touched(mixtral, 4.0)
    every = mixtral.replace(experts_per_token=8.0)  # top-E: every token touches every expert
    assert models.experts_touched(every, 3.0) == 8.0
    grads = jax.grad(
        lambda n, s: models.experts_touched(mixtral.replace(routing_skew=s), n), argnums=(0, 1)
    )(jnp.float64(5.0), jnp.float64(0.3))
    assert all(np.isfinite(g) for g in grads) and grads[0] > 0 > grads[1]
    grad_full = jax.grad(lambda n: models.experts_touched(every, n))(jnp.float64(3.0))
    assert float(grad_full) == 0.0


# --------------------------------------------------------------------------- memory, formats


def test_gpt_oss_checkpoint_sizes():
    # OpenAI gpt-oss model card (arXiv 2508.10925), Table 1: checkpoint sizes 60.8 GiB (120b)
    # and 12.8 GiB (20b), MXFP4 experts (4.25 bits per parameter) and bf16 for the rest.
    for name, gib in [("gpt-oss-120b", 60.8), ("gpt-oss-20b", 12.8)]:
        weights = float(memory_footprint(models.get(name), 1.0, 0.0).weight_bytes)
        assert abs(weights / (gib * 2**30) - 1) < 0.01, (name, weights / 2**30)
    assert bool(fits(models.get("gpt-oss-120b"), hardware.get("h100"), 1.0, 8192.0))


def test_memory_counts_every_expert(x64):
    mixtral = models.get("mixtral-8x7b")
    mem = memory_footprint(mixtral, 2.0, 100.0)
    assert float(mem.weight_bytes) == 2 * slow_parameters(models.info("Mixtral-8x7B"))["total"]
    assert float(mem.kv_cache_bytes) == 2 * 100 * 32 * 2 * 8 * 128 * 2
    # DeepSeek-V3 FP8 block weights with their FP32 scales.
    deepseek = models.get("deepseek-v3")
    count = float(models.parameter_count(deepseek))
    assert_close(
        memory_footprint(deepseek, 1.0, 0.0).weight_bytes, count * (1 + 4 / 16384), rtol=RTOL_F64
    )


def test_block_scaled_formats():
    assert models.BYTES_PER_ELEMENT["mxfp4"] == 0.53125  # 4 bits + 8-bit scale per 32
    assert models.BYTES_PER_ELEMENT["nvfp4"] == 0.5625  # 4 bits + 8-bit scale per 16
    assert models.BYTES_PER_ELEMENT["fp8_block"] == 1 + 4 / (128 * 128)
    spec = models.get("llama-2-7b", weight_dtype="nvfp4")
    assert spec.weight_bytes == 0.5625 and spec.kv_bytes == 2.0  # weight-only: bf16 cache
    with pytest.raises(ValueError, match="unknown expert_weight_dtype 'fp3'"):
        models.get("mixtral-8x7b", expert_weight_dtype="fp3")


# --------------------------------------------------------------------------- gpt-fast Mixtral


def test_gpt_fast_mixtral_int8_on_one_a100():
    # gpt-fast mixtral-moe/README.md (commit 32971d3): Mixtral 8x7B, batch 1, one A100-80GB
    # (330 W), int8: 97.92 tokens/s; bf16: OOM. published-measurements.md section 11.
    a100 = hardware.get("a100-80gb")
    int8 = models.get("mixtral-8x7b", weight_dtype="int8")
    predicted = 1.0 / float(step_time(int8, a100, 1.0, 1.0, 5 + 200 / 2).time_s)
    assert abs(predicted / 97.92 - 1) < 0.15, predicted  # 109.2 tokens/s (+11.5%)
    assert bool(fits(int8, a100, 1.0, 205.0))
    bf16 = models.get("mixtral-8x7b")
    assert not bool(fits(bf16, a100, 1.0, 205.0))  # 93.4 GB of weights on 80 GB


# --------------------------------------------------------------------------- step time


def test_moe_step_time_kernels_and_expert_parallel_collectives(x64):
    spec, h100, entry = models.get("deepseek-v3"), hardware.get("h100"), hardware.entry("h100")
    one = step_time(spec, h100, 4.0, 2.0, 1000.0, tp=8.0)
    assert one == step_time(spec, h100, 4.0, 2.0, 1000.0, tp=8.0, ep=1.0)
    kernels = KERNELS_PER_LAYER * 61 + KERNELS_PER_FORWARD
    kernels += 58 * (EXTRA_KERNELS_PER_MOE_LAYER + KERNELS_PER_SHARED_EXPERT)
    assert_close(one.launch_s, kernels * entry["kernel_launch_us"] * 1e-6, rtol=RTOL_F64)
    ep = step_time(spec, h100, 4.0, 2.0, 1000.0, tp=8.0, ep=8.0)
    message = 4 * 2 * 7168 * 2
    hop, link = entry["interconnect_latency_us"] * 1e-6, entry["interconnect_gb_per_s"] * 1e9
    ll = entry["interconnect_ll_latency_us"] * 1e-6

    # All-reduces under the default runtime: its 10 us floor, the fastest of one-shot,
    # two-shot (both on the LL step) and NCCL's ring in its bandwidth and LL protocols (LL
    # at half the rate), at the link's achievable (interconnect_efficiency) rate.
    floor = runtime.entry("default")["allreduce_latency_us"] * 1e-6
    achievable = link * entry["interconnect_efficiency"]

    def allreduce(n):
        if n == 1:
            return 0.0
        share = 2 * (n - 1) / n * message / achievable
        return floor + min(
            ll + (n - 1) * message / achievable,
            2 * ll + share,
            2 * (n - 1) * hop + share,
            2 * (n - 1) * ll + 2 * share,
        )

    def all_to_all(n, size):
        return (n - 1) * hop + (n - 1) / n * size / link

    expected = 2 * 61 * allreduce(8) + 58 * (
        2 * all_to_all(8, message * 8 / 8) + allreduce(1) - allreduce(8)
    )
    assert_close(ep.communication_s, expected, rtol=RTOL_F64)
    assert_close(ep.linear_s, one.linear_s, rtol=RTOL_F64)


def test_verification_is_not_free_on_an_moe_target():
    h100 = hardware.get("h100")
    for name in ("mixtral-8x7b", "qwen3-30b-a3b"):
        spec = models.get(name)
        decode = float(step_time(spec, h100, 1.0, 1.0, 512.0).time_s)
        verify = float(step_time(spec, h100, 1.0, 5.0, 512.0).time_s)
        dense = dense_twin(spec)
        dense_ratio = float(step_time(dense, h100, 1.0, 5.0, 512.0).time_s) / float(
            step_time(dense, h100, 1.0, 1.0, 512.0).time_s
        )
        assert verify / decode > 1.5 > dense_ratio, name


# --------------------------------------------------------------------------- SD on MoE


def dense_twin(spec):
    """The dense model with the MoE's active size: same attention, one dense MLP as wide as
    the shared plus top-k routed experts (the router's d_model x E weights left out)."""
    width = float(spec.d_ff_shared + spec.experts_per_token * spec.d_ff_expert)
    return spec.replace(
        n_moe_layers=0.0,
        n_experts=0.0,
        experts_per_token=0.0,
        d_ff_expert=0.0,
        d_ff_shared=0.0,
        d_ff=width,
    )


def speedups(target, batches, tp):
    draft = models.get("qwen3-0.6b")
    acceptance = specsim.ConstantAcceptance.create(0.8)

    def one(batch):
        workload = specsim.Workload.create(batch=batch, prompt_tokens=512, generate_tokens=256)
        return float(
            specsim.throughput(
                target, draft, hardware.get("h100"), workload, 4.0, acceptance, tp=tp
            ).speedup
        )

    return np.array([one(b) for b in batches])


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "tp", "saturated"), [("qwen3-30b-a3b", 1.0, 64), ("mixtral-8x7b", 2.0, 16)]
)
def test_speculative_speedup_on_moe_versus_dense_of_the_same_active_size(name, tp, saturated):
    """The routing law makes verification cost most, relative to a decode step, at batch 1
    (a decode step reads k experts, verification of gamma + 1 tokens up to (gamma + 1) k);
    as the batch grows, plain decoding itself touches more experts and verification turns
    relatively cheaper, so the MoE's speedup *rises* with batch until decoding touches every
    expert, then falls as the pass turns compute-bound. The dense twin's speedup only falls.
    This is the non-monotonic curve of Huang et al. 2025 (MoESD, arXiv 2505.19645: "under
    medium batch sizes, MoE surprisingly benefits more from SD than dense models")."""
    moe = models.get(name)
    dense = dense_twin(moe)
    assert abs(models.active_parameter_count(moe) / models.parameter_count(dense) - 1) < 0.005
    batches = [1, 2, 4, 8, 16, 32, 64, 128, 256]
    s_moe, s_dense = speedups(moe, batches, tp), speedups(dense, batches, tp)
    # Batch 1: both decode steps read the same bytes (the MoE adds router kernels) ...
    h100 = hardware.get("h100")
    cost_moe, cost_dense = forward_cost(moe, 1.0, 1.0, 512.0), forward_cost(dense, 1.0, 1.0, 512.0)
    assert abs(float(cost_moe.weight_bytes) / float(cost_dense.weight_bytes) - 1) < 0.005
    extra_s = float(step_time(moe, h100, 1.0, 1.0, 512.0, tp=tp).time_s) - float(
        step_time(dense, h100, 1.0, 1.0, 512.0, tp=tp).time_s
    )
    launches_s = float(moe.n_moe_layers) * EXTRA_KERNELS_PER_MOE_LAYER * float(h100.kernel_launch_s)
    assert abs(extra_s / launches_s - 1) < 0.05  # the MoE's extra kernel launches, router bytes
    # ... but its verification reads several times the experts: speculation pays less.
    assert s_moe[0] < 0.9 * s_dense[0]
    # Until decoding touches nearly every expert the MoE's speedup rises while the dense one
    # falls. The top is flat: from Qwen3's batch 32 to 64 decoding reads 13% more of its
    # 128 experts (87% -> 98%) while the KV reads double, so its peak is at batch 32 (it
    # was already, by 0.019, with decode attention at the streaming rate; at 0.90 of it on
    # NVIDIA GPUs the dip is 2.12 -> 2.08); Mixtral's peaks at its saturation.
    upto = batches.index(saturated)
    assert np.all(np.diff(s_moe[:upto]) > -0.02)
    assert int(np.argmax(s_moe)) in (upto - 1, upto)
    assert s_moe[upto] > 0.97 * s_moe.max()  # the top is flat, not a collapse
    assert s_moe[upto] > s_moe[0] + 0.3
    # (up a few tenths of a percent between batch 2 and 4: decode switches from vector-unit
    # GEMVs to tensor-core tiles there, while verification already runs on tiles)
    assert np.all(np.diff(s_dense) < 0.01)
    # Past saturation the MoE's speedup falls too, and stays above the dense twin's.
    assert s_moe[-1] < max(s_moe)
    assert np.all(s_moe[upto:] > s_dense[upto:])
    assert models.experts_touched(moe, float(saturated)) > 0.95 * float(moe.n_experts)


# --------------------------------------------------------------------------- pytrees


@pytest.mark.slow
def test_dense_and_moe_specs_stack_into_one_grid(x64):
    names = ["llama-3-8b", "mixtral-8x7b", "deepseek-v3", "gemma-3-4b", "gpt-oss-20b"]
    specs = [models.get(n, weight_dtype="bf16", expert_weight_dtype="bf16") for n in names]
    grid = jax.tree_util.tree_map(lambda *xs: jnp.stack([jnp.asarray(x) for x in xs]), *specs)
    grid.validate()
    batched = jax.jit(jax.vmap(lambda s: forward_cost(s, 4.0, 5.0, 2000.0)))(grid)
    for i, spec in enumerate(specs):
        one = forward_cost(spec, 4.0, 5.0, 2000.0)
        for key in one.__dataclass_fields__:
            assert_close(getattr(batched, key)[i], getattr(one, key), rtol=1e-12)
    counts = jax.vmap(models.parameter_count)(grid)
    assert_close(counts, [models.parameter_count(s) for s in specs], rtol=1e-12)


def test_no_recompile_across_architectures():
    chip = hardware.get("h100")
    f = jax.jit(lambda m: step_time(m, chip, 4.0, 5.0, 1000.0).time_s)
    with compilations() as compiled:
        for name in ["mixtral-8x7b", "qwen3-30b-a3b", "llama-3-8b", "gemma-3-12b"]:
            f(models.get(name))
    assert compiled.count("<lambda>") == 1


@pytest.mark.slow
def test_gradients_through_moe_and_attention_fields(x64):
    chip = hardware.get("h100")

    def seconds(skew, absorbed, window):
        spec = models.get("deepseek-v3").replace(routing_skew=skew, mla_absorbed=absorbed)
        gemma = models.get("gemma-3-4b").replace(sliding_window=window)
        return (
            step_time(spec, chip, 8.0, 5.0, 3000.0, tp=8.0, smooth=16.0).time_s
            + step_time(gemma, chip, 8.0, 5.0, 3000.0, smooth=16.0).time_s
        )

    check_grads(seconds, (0.3, 0.7, 900.0), order=1, modes=["rev"], atol=1e-6, rtol=1e-3)
    grads = jax.grad(seconds, argnums=(0, 1, 2))(0.3, 0.7, 900.0)
    assert all(np.isfinite(float(g)) for g in grads)
    assert grads[0] < 0 and grads[1] < 0 and grads[2] > 0


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"n_moe_layers": 33}, "n_moe_layers must be <= n_layers"),
        ({"experts_per_token": 9}, "0 < experts_per_token <= n_experts"),
        ({"experts_per_token": 0}, "0 < experts_per_token <= n_experts"),
        ({"n_experts": 0}, "n_experts >= 1"),
        ({"d_ff_expert": 0}, "d_ff_expert > 0"),
        ({"routing_skew": 1.0}, r"routing_skew must be in \[0, 1\)"),
        ({"routing_skew": -0.1}, "routing_skew must be a non-negative"),
        ({"n_local_layers": 4}, "sliding-window layers need sliding_window > 0"),
        ({"mla_absorbed": 2.0}, r"mla_absorbed must be in \[0, 1\]"),
        ({"kv_lora_rank": float("nan")}, "kv_lora_rank must be a non-negative finite"),
    ],
)
def test_invalid_architecture_fields(override, message):
    base = dict(
        n_layers=32,
        d_model=4096,
        n_heads=32,
        n_kv_heads=8,
        d_ff=14336,
        vocab=32000,
        n_moe_layers=32,
        n_experts=8,
        experts_per_token=2,
        d_ff_expert=14336,
    )
    with pytest.raises(ValueError, match=message):
        models.TransformerSpec.create(**{**base, **override})


# --------------------------------------------------------------------------- acceptance, CLI


@pytest.mark.slow
def test_sdsl_takes_the_total_parameter_count_of_an_moe_target():
    target, draft = models.get("qwen3-30b-a3b"), models.get("qwen3-0.6b")
    acceptance = specsim.SDSLAcceptance.create(draft_train_tokens=36e12, target_train_tokens=36e12)
    workload = specsim.Workload.create(batch=1, prompt_tokens=128, generate_tokens=128)
    report = specsim.throughput(target, draft, hardware.get("h100"), workload, 3.0, acceptance)
    expected = specsim.acceptance_rate(acceptance, draft.parameter_count, target.parameter_count)
    assert_close(report.acceptance_rate, expected)


@pytest.mark.slow
def test_cli_optimize_and_evaluate_moe_targets(capsys):
    from specsim import cli

    assert (
        cli.main(
            ["optimize", "--target", "qwen3-30b-a3b", "--json", "--steps", "20", "--restarts", "2"]
        )
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert out["draft"]["n_layers"] >= 1 and out["gamma"] >= 0
    for name in NEW_NAMES:  # every preset added with the MoE work, dense ones included
        code = cli.main(
            [
                "evaluate",
                "--target",
                name,
                "--draft",
                "qwen3-0.6b",
                "--alpha",
                "0.7",
                "--tp",
                "8",
                "--shared-tokenizer",  # each preset's cost is tested here, not its vocabulary
                "--allow-infeasible",  # the largest presets exceed 8 x 80 GB: priced anyway
                "--json",
            ]
        )
        assert code == 0, name
        report = json.loads(capsys.readouterr().out)
        assert report["tokens_per_s"] > 0 and report["speedup"] > 0, name
