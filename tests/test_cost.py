"""Cost of one forward pass: FLOPs and bytes, step time, regimes, memory footprint."""

import math
import re

import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import RTOL_F32, RTOL_F64, assert_close, compilations
from hypothesis import given, settings
from jax.test_util import check_grads

from specsim import (
    STEP_BOUND_NAMES,
    fits,
    forward_cost,
    hardware,
    memory_footprint,
    models,
    pass_time,
    runtime,
    step_time,
)

# Dense presets with grouped-query attention (the slow reference below counts those);
# MoE, MLA and sliding-window presets have their own reference in test_architectures.py.
MODEL_NAMES = [name for name in models.names() if "params_source" not in models.info(name)]
HARDWARE_NAMES = hardware.names()
MEMORY, COMPUTE = STEP_BOUND_NAMES.index("memory"), STEP_BOUND_NAMES.index("compute")
BYTES = {"bf16": 2, "fp16": 2, "fp8": 1, "int8": 1, "int4": 0.5}

# (batch, new tokens per sequence, cached context): decode, long-context decode,
# verification of gamma = 4 draft tokens, and a small prefill.
SHAPES = [(1, 1, 0), (1, 1, 4096), (8, 5, 1000), (2, 33, 17)]


# --------------------------------------------------------------------------- slow reference


def layer_kernels(arch):
    """One block's matmul kernels, each a list of (name, in_features, out_features) matrices
    that share one input (fused QKV and gate/up, as a serving stack runs them)."""
    d, ff = arch["d_model"], arch["d_ff"]
    head_dim = arch.get("head_dim") or d // arch["n_heads"]
    q, kv = arch["n_heads"] * head_dim, arch["n_kv_heads"] * head_dim
    mlp_in = [("gate_proj", d, ff), ("up_proj", d, ff)] if arch["gated_mlp"] else [("fc1", d, ff)]
    return [
        [("q_proj", d, q), ("k_proj", d, kv), ("v_proj", d, kv)],
        [("o_proj", q, d)],
        mlp_in,
        [("down_proj", ff, d)],
    ]


def slow_forward_cost(arch, batch, new_tokens, context, weight="bf16", kv="bf16", act="bf16"):
    """FLOPs and bytes of one forward pass counted matrix by matrix, position by position
    and layer by layer, in Python integers (exact)."""
    d, vocab, n_layers = arch["d_model"], arch["vocab"], arch["n_layers"]
    head_dim = arch.get("head_dim") or d // arch["n_heads"]
    tokens = batch * new_tokens
    matmul_flops = weight_elements = activation_elements = 0
    for _layer in range(n_layers):
        for kernel in layer_kernels(arch):
            activation_elements += tokens * kernel[0][1]  # the shared input, read once
            for _name, fan_in, fan_out in kernel:
                matmul_flops += 2 * tokens * fan_in * fan_out  # one multiply-add per weight
                weight_elements += fan_in * fan_out
                activation_elements += tokens * fan_out  # each output written once
    # LM head (read even when tied to the embedding) and the gathered embedding rows.
    matmul_flops += 2 * tokens * d * vocab
    weight_elements += d * vocab + tokens * d
    activation_elements += tokens * (d + vocab)

    attention_flops = 0
    for _layer in range(n_layers):
        for position in range(new_tokens):  # causal: query i sees the cache and new keys <= i
            keys = context + position + 1
            scores = 2 * head_dim * keys  # q . k for every key
            values = 2 * head_dim * keys  # weighted sum of the values
            attention_flops += batch * arch["n_heads"] * (scores + values)

    kv_elements_per_token_layer = 2 * arch["n_kv_heads"] * head_dim  # K and V
    kv_read = kv_write = 0
    for _layer in range(n_layers):
        kv_read += batch * context * kv_elements_per_token_layer * BYTES[kv]
        kv_write += batch * new_tokens * kv_elements_per_token_layer * BYTES[kv]
    return {
        "matmul_flops": matmul_flops,
        "attention_flops": attention_flops,
        "weight_bytes": weight_elements * BYTES[weight],
        "kv_read_bytes": kv_read,
        "kv_write_bytes": kv_write,
        "activation_bytes": activation_elements * BYTES[act],
    }


def slow_runtime(chip, name="default"):
    """A runtime-profile catalogue entry in SI units, "hardware" taken from ``chip``."""
    entry = runtime.entry(name)
    take = {"kernel_launch_us": "kernel_launch_us", "step_overhead_us": "step_overhead_us"}
    out = {}
    for key, value in entry.items():
        if key in ("aliases", "description", "sources"):
            continue
        if value == "hardware":
            value = chip[take[key]]
        out[key] = value * 1e-6 if key.endswith("_us") else value
    return out


def slow_step_time(arch, chip, batch, new_tokens, context, tp=1, weight="bf16", stack="default"):
    """The step-time model from datasheet units, term by term (weight matmuls, attention,
    element-wise kernels and sampling, all-reduces, kernel launches, fixed overheads)."""
    rt = slow_runtime(chip, stack)
    cost = slow_forward_cost(arch, batch, new_tokens, context, weight=weight)
    tokens = batch * new_tokens
    # Rows of the smallest matmul tile: fewer tokens still compute a whole tile, unless a
    # GEMV on the vector units (fp32 peak) is cheaper.
    tile = chip.get("matmul_tile_tokens", 1.0)
    padded = (tokens**4 + tile**4) ** 0.25
    fp32 = chip.get("fp32_tflops", chip["bf16_tflops"] / 8)
    tile_factor = max(
        min(padded / tokens, chip["bf16_tflops"] * chip["compute_efficiency"] / fp32), 1.0
    )
    p = chip.get("roofline_sharpness", math.inf)

    def overlap(a, b):
        return max(a, b) if math.isinf(p) else (a**p + b**p) ** (1 / p)

    peak = chip["bf16_tflops"] * 1e12 * chip["compute_efficiency"]
    bandwidth = chip["hbm_tb_per_s"] * 1e12 * chip["memory_efficiency"]
    # The LM head is split over tp only where the runtime shards its vocabulary.
    head = arch["d_model"] * arch["vocab"]
    head_share = rt["lm_head_sharding"] / tp + (1 - rt["lm_head_sharding"])
    head_flops, head_bytes = 2 * tokens * head, head * BYTES[weight]
    flops = (cost["matmul_flops"] - head_flops) / tp + head_flops * head_share
    # A matmul of two or more rows reads its weights gemm_weight_passes more times (a CPU
    # GEMM packing them), ramped in between one row and two; here every matmul has
    # `tokens` rows, the LM head included.
    reads = 1.0 + chip.get("gemm_weight_passes", 0.0) * min(max(tokens - 1.0, 0.0), 1.0)
    weight_bytes = ((cost["weight_bytes"] - head_bytes) / tp + head_bytes * head_share) * reads
    dequant = 1.0
    if weight == "int8":
        dequant = chip.get("int8_dequant_efficiency", 1.0)
    elif weight == "int4":  # 0.5 bytes: the 4-bit payload itself
        dequant = chip.get("int4_dequant_efficiency", 1.0)
    linear = overlap(
        flops * tile_factor / peak,
        (weight_bytes / dequant + cost["activation_bytes"] / tp) / bandwidth,
    )
    # Attention kernels reach a fraction of the matmul roofline (1 unless the entry says);
    # their FLOPs the same fraction of the FLOP rate unless the entry gives another.
    attention_fraction = chip.get("attention_efficiency", 1.0)
    attention_compute = chip.get("attention_compute_efficiency", attention_fraction)
    # A kernel that reads a KV head once per query head (gqa_kv_read_sharing 0) reads the
    # cache n_heads / n_kv_heads times (latent caches have no groups).
    group = 1 if arch.get("kv_lora_rank", 0) else arch["n_heads"] / arch["n_kv_heads"]
    kv_reads = 1 + (1 - rt["gqa_kv_read_sharing"]) * (group - 1)
    attention = overlap(
        cost["attention_flops"] / tp / (peak * attention_compute),
        (cost["kv_read_bytes"] * kv_reads + cost["kv_write_bytes"])
        / tp
        / (bandwidth * attention_fraction),
    )
    elementwise = (
        rt["elementwise_passes"] * cost["activation_bytes"] / tp
        + rt["sampling_bytes_per_logit"] * tokens * arch["vocab"]
    ) / bandwidth
    message = batch * new_tokens * arch["d_model"] * 2  # bf16 activations
    hop_s = chip["interconnect_latency_us"] * 1e-6
    # NCCL's low-latency protocol: its own per-step latency, half the bandwidth.
    ll_s = chip.get("interconnect_ll_latency_us", chip["interconnect_latency_us"]) * 1e-6
    link = chip["interconnect_gb_per_s"] * 1e9 * chip.get("interconnect_efficiency", 1.0)
    small = link * rt["allreduce_bandwidth_fraction"]
    if tp > 1:
        one_shot = rt["allreduce_latency_us"] + ll_s + (tp - 1) * message / small
        two_shot = rt["allreduce_latency_us"] + 2 * ll_s + 2 * (tp - 1) / tp * message / small
        if not chip.get("interconnect_switched", 1.0):  # a torus: only the ring exists
            one_shot = two_shot = math.inf
        ring = (
            rt["ring_allreduce_latency_us"]
            + 2 * (tp - 1) * hop_s
            + 2 * (tp - 1) / tp * message / link
        )
        ring_ll = (
            rt["ring_allreduce_latency_us"]
            + 2 * (tp - 1) * ll_s
            + 2 * (tp - 1) / tp * message / (0.5 * link)
        )
        allreduce = min(one_shot, two_shot, ring, ring_ll)
    else:
        allreduce = 0.0
    communication = 2 * arch["n_layers"] * allreduce  # after attention and after the MLP
    launches = rt["kernels_per_layer"] * arch["n_layers"] + rt["kernels_per_forward"]
    fixed = (
        launches * rt["kernel_launch_us"]
        + rt["step_overhead_us"]
        + rt["sequence_overhead_us"] * batch
    )
    return linear + attention + elementwise + communication + fixed


def stack(specs):
    return jax.tree_util.tree_map(lambda *xs: jnp.stack([jnp.asarray(x) for x in xs]), *specs)


@jax.jit
def step_seconds(model, chip, batch, new_tokens, context, tp):
    return step_time(model, chip, batch, new_tokens, context, tp).time_s


# --------------------------------------------------------------------------- FLOPs and bytes


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "b{}-n{}-c{}".format(*s))
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_forward_cost_against_slow_count(x64, name, shape):
    arch = models.info(name)
    expected = slow_forward_cost(arch, *shape)
    cost = forward_cost(models.get(name), *(float(v) for v in shape))
    for key, value in expected.items():
        assert_close(getattr(cost, key), value, rtol=RTOL_F64, atol=0)
    assert_close(cost.flops, expected["matmul_flops"] + expected["attention_flops"], rtol=RTOL_F64)
    total_bytes = sum(v for k, v in expected.items() if k.endswith("_bytes"))
    assert_close(cost.bytes, total_bytes, rtol=RTOL_F64)


@pytest.mark.parametrize(
    ("weight", "kv"), [("int8", "bf16"), ("int4", "bf16"), ("bf16", "fp8"), ("int4", "int8")]
)
def test_forward_cost_dtypes_against_slow_count(x64, weight, kv):
    for name in ("Llama-2-70B", "Qwen3-0.6B", "Pythia-160M"):
        spec = models.get(name).with_dtypes(weight, kv_dtype=kv)
        expected = slow_forward_cost(models.info(name), 4, 3, 300, weight=weight, kv=kv)
        cost = forward_cost(spec, 4.0, 3.0, 300.0)
        for key, value in expected.items():
            assert_close(getattr(cost, key), value, rtol=RTOL_F64, atol=0)


def test_matmul_flops_are_twice_the_weights_per_token(x64):
    # The "2 N FLOPs per token" rule of thumb, with N the non-embedding weights plus LM head.
    spec = models.get("llama-2-7b")
    cost = forward_cost(spec, 3.0, 7.0, 0.0)
    n = float(models.parameter_count(spec)) - 32000 * 4096  # minus the input embedding
    assert_close(cost.matmul_flops, 2 * 21 * n, rtol=RTOL_F64)


# --------------------------------------------------------------------------- step time


@pytest.mark.slow
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_model_through_step_time(name):
    """Same checks for every catalogue model: the jitted step equals the independent
    reference, eager equals jit, and each part of the breakdown is consistent."""
    arch, spec = models.info(name), models.get(name)
    chip, chip_entry = hardware.get("a100"), hardware.entry("a100")
    for batch, new_tokens, context in [(1, 1, 512), (16, 8, 2048)]:
        expected = slow_step_time(arch, chip_entry, batch, new_tokens, context)
        jitted = step_seconds(spec, chip, float(batch), float(new_tokens), float(context), 1.0)
        eager = step_time(spec, chip, float(batch), float(new_tokens), float(context))
        assert_close(jitted, expected)
        assert_close(eager.time_s, jitted)
        parts = eager.linear_s + eager.attention_s + eager.elementwise_s + eager.communication_s
        assert_close(eager.time_s, parts + eager.launch_s + eager.overhead_s)
        assert float(eager.communication_s) == 0.0
        # Two rooflines (p-norm maxima, p >= 1) plus memory-bound element-wise kernels lie
        # between max(compute, memory) and compute + memory.
        kernels = float(eager.linear_s) + float(eager.attention_s) + float(eager.elementwise_s)
        compute_s, memory_s = float(eager.compute_s), float(eager.memory_s)
        assert max(compute_s, memory_s) * (1 - RTOL_F32) <= kernels
        assert kernels <= (compute_s + memory_s) * (1 + RTOL_F32)
        breakdown = [eager.memory_bound_s, eager.compute_bound_s, eager.communication_s]
        breakdown.append(eager.launch_s + eager.overhead_s)
        assert int(eager.bound) == int(np.argmax([float(v) for v in breakdown]))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["H100 SXM", "TPU v5e", "MI300X", "B200", "Gaudi 3"])
def test_step_time_against_reference_on_other_chips(x64, name):
    arch, entry = models.info("Mistral-7B-v0.1"), hardware.entry(name)
    for shape in [(1, 1, 100), (64, 1, 8000), (4, 512, 0)]:
        for tp in (1, 2, 8):
            expected = slow_step_time(arch, entry, *shape, tp=tp)
            actual = step_time(models.get("mistral-7b-v0.1"), hardware.get(name), *shape, tp=tp)
            assert_close(actual.time_s, expected, rtol=RTOL_F64)


def test_attention_efficiency_against_reference(x64):
    arch = models.info("Mistral-7B-v0.1")
    entry = {**hardware.entry("H100 SXM"), "attention_efficiency": 0.25}
    chip = hardware.HardwareSpec.from_datasheet(entry)
    # The catalogue's value on NVIDIA GPUs (vidur's measured A100 decode kernels).
    assert float(hardware.get("H100 SXM").attention_efficiency) == 0.9
    default = hardware.HardwareSpec.from_datasheet({**entry, "attention_efficiency": 1.0})
    for shape in [(1, 1, 100), (64, 1, 8000), (4, 512, 0)]:
        for tp in (1, 8):
            expected = slow_step_time(arch, entry, *shape, tp=tp)
            actual = step_time(models.get("mistral-7b-v0.1"), chip, *shape, tp=tp)
            assert_close(actual.time_s, expected, rtol=RTOL_F64)
            # Only the attention roofline slows down, by exactly 1 / 0.25.
            base = step_time(models.get("mistral-7b-v0.1"), default, *shape, tp=tp)
            assert_close(actual.attention_s, 4 * base.attention_s, rtol=RTOL_F64)
            assert_close(actual.linear_s, base.linear_s, rtol=RTOL_F64)


def test_attention_compute_efficiency_against_reference(x64):
    # A CPU-like split: KV reads at 80% of the bandwidth, attention FLOPs at 5% of the rate.
    arch = models.info("Mistral-7B-v0.1")
    split = {"attention_efficiency": 0.8, "attention_compute_efficiency": 0.05}
    entry = {**hardware.entry("H100 SXM"), **split}
    chip = hardware.HardwareSpec.from_datasheet(entry)
    kv_only = hardware.HardwareSpec.from_datasheet({**entry, "attention_compute_efficiency": 0.8})
    spec = models.get("mistral-7b-v0.1")
    for shape in [(1, 1, 100), (64, 1, 8000), (4, 512, 0), (1, 2048, 2048)]:
        for tp in (1, 8):
            expected = slow_step_time(arch, entry, *shape, tp=tp)
            actual = step_time(spec, chip, *shape, tp=tp)
            assert_close(actual.time_s, expected, rtol=RTOL_F64)
            # Only attention changes: its FLOPs run 0.8 / 0.05 = 16x slower.
            assert_close(actual.linear_s, step_time(spec, kv_only, *shape, tp=tp).linear_s)
    # Under the hard roofline: a long prefill's attention, compute-bound at either split,
    # is exactly 16x slower; a decode over a long cache stays bound by its KV reads.
    chip, kv_only = (c.replace(roofline_sharpness=None) for c in (chip, kv_only))
    prefill, base = (step_time(spec, c, 1, 2048, 2048) for c in (chip, kv_only))
    assert_close(prefill.attention_s, 16 * base.attention_s, rtol=RTOL_F64)
    decode, base = (step_time(spec, c, 64, 1, 8000) for c in (chip, kv_only))
    assert_close(decode.attention_s, base.attention_s, rtol=RTOL_F64)
    # Left out, the compute fraction follows attention_efficiency, as replaced.
    followed = hardware.HardwareSpec.from_datasheet(
        {**hardware.entry("H100 SXM"), "attention_efficiency": 0.05}
    )
    assert followed.attention_compute_efficiency is None
    replaced = hardware.get("H100 SXM").replace(attention_efficiency=0.05)
    for c in (followed, replaced):  # (compute-bound: the KV side's 0.8 or 0.05 binds nothing)
        c = c.replace(roofline_sharpness=None)
        assert_close(step_time(spec, c, 1, 2048, 2048).attention_s, prefill.attention_s)


def test_unshared_gqa_reads_against_reference(x64):
    # TensorRT-LLM's masked multi-head attention kernel (trtllm-mmha): one thread block per
    # query head, so Llama-2-70B (64 query heads, 8 KV heads) reads its cache 8 times a step.
    h100, entry = hardware.get("H100 SXM"), hardware.entry("H100 SXM")
    shared, unshared = (runtime.get(name, h100) for name in ("trtllm", "trtllm-mmha"))
    assert float(shared.gqa_kv_read_sharing) == 1.0
    assert float(unshared.gqa_kv_read_sharing) == 0.0
    for name in ("llama-2-70b", "llama-2-7b"):  # grouped-query, multi-head
        arch, spec = models.info(name), models.get(name)
        for shape in [(1, 1, 100), (64, 1, 2048), (4, 5, 8000), (1, 512, 1024)]:
            for tp in (1, 4):
                expected = slow_step_time(arch, entry, *shape, tp=tp, stack="trtllm-mmha")
                actual = step_time(spec, h100, *shape, tp=tp, runtime=unshared)
                assert_close(actual.time_s, expected, rtol=RTOL_F64)
    # Under the hard roofline a long decode's attention is bound by its KV bytes: reads x8,
    # writes (one token per sequence) unchanged. Multi-head attention has no group.
    hard = h100.replace(roofline_sharpness=None)
    spec = models.get("llama-2-70b")
    once, per_head = (step_time(spec, hard, 64, 1, 4096, runtime=r) for r in (shared, unshared))
    read, write = float(once.cost.kv_read_bytes), float(once.cost.kv_write_bytes)
    assert_close(per_head.attention_s, once.attention_s * (8 * read + write) / (read + write))
    assert_close(per_head.linear_s, once.linear_s, rtol=RTOL_F64)
    # No groups: multi-head attention, and a latent cache even where n_kv_heads says 8.
    latent = models.get("deepseek-v3").replace(n_kv_heads=8.0)
    for spec in (models.get("llama-2-7b"), latent):
        assert_close(
            step_time(spec, hard, 64, 1, 4096, runtime=unshared).time_s,
            step_time(spec, hard, 64, 1, 4096, runtime=shared).time_s,
            rtol=RTOL_F64,
        )


def test_gemm_weight_passes_against_reference(x64):
    # A CPU-like chip whose GEMM packs its weights (two extra passes) where a single row runs
    # as a GEMV: a decode at batch 1 reads the weights once, a pass of 2 or more rows 3x.
    arch = models.info("llama-2-7b")
    spec = models.get("llama-2-7b")
    entry = {**hardware.entry("H100 SXM"), "gemm_weight_passes": 2.0}
    chip = hardware.HardwareSpec.from_datasheet(entry)
    plain = hardware.get("H100 SXM")
    for shape in [(1, 1, 100), (2, 1, 100), (4, 1, 100), (1, 5, 2048), (64, 1, 8000)]:
        for tp in (1, 8):
            expected = slow_step_time(arch, entry, *shape, tp=tp)
            assert_close(step_time(spec, chip, *shape, tp=tp).time_s, expected, rtol=RTOL_F64)
    # One row: exactly the chip without passes; under the hard roofline, a memory-bound
    # pass of a few rows reads the weights (not the activations) three times.
    hard, plain = chip.replace(roofline_sharpness=None), plain.replace(roofline_sharpness=None)
    assert step_time(spec, hard, 1, 1, 100).time_s == step_time(spec, plain, 1, 1, 100).time_s
    few, base = (step_time(spec, c, 1, 4, 100) for c in (hard, plain))
    weights = float(base.cost.weight_bytes)
    bandwidth = float(plain.hbm_bytes_per_s * plain.memory_efficiency)
    assert_close(few.linear_s - base.linear_s, 2.0 * weights / bandwidth, rtol=RTOL_F64)
    # Ramped in linearly between one row and two: 1.5 rows (a mean over sequences) pay half.
    half, base = (step_time(spec, c, 1.5, 1, 100) for c in (hard, plain))
    weights = float(base.cost.weight_bytes)
    assert_close(half.linear_s - base.linear_s, 1.0 * weights / bandwidth, rtol=RTOL_F64)
    # A prefill that computes logits for one position per sequence: the blocks' matmuls
    # have 64 rows (three reads), the LM head one (one read).
    one_logit, base = (step_time(spec, c, 1, 64, 0, logit_positions=1) for c in (hard, plain))
    head_bytes = float(spec.vocab * spec.d_model * spec.weight_bytes)
    blocks = float(base.cost.weight_bytes) - head_bytes
    assert_close(one_logit.linear_s - base.linear_s, 2.0 * blocks / bandwidth, rtol=RTOL_F64)
    # Its default, 0, leaves every catalogue chip as it was.
    assert all(float(hardware.get(n).gemm_weight_passes) == 0.0 for n in hardware.names())


def test_three_regimes_llama_2_7b_on_a100():
    spec, a100 = models.get("llama-2-7b"), hardware.get("a100")
    # 1. Batch-1 decode: memory-bound on the weights.
    decode = step_time(spec, a100, 1.0, 1.0, 128.0)
    assert int(decode.bound) == MEMORY
    assert float(decode.cost.weight_bytes) > 0.95 * float(decode.cost.bytes)
    # Compute is that of a whole 16-row tensor-core tile (matmul_tile_tokens), not one row.
    assert float(decode.memory_s) > 8 * float(decode.compute_s)
    assert float(decode.linear_s) > 20 * float(decode.attention_s)
    # 2. Long context: the KV cache outweighs the weights and attention dominates the step.
    long = step_time(spec, a100, 4.0, 1.0, 8192.0)
    assert int(long.bound) == MEMORY
    assert float(long.cost.kv_read_bytes) > float(long.cost.weight_bytes)
    assert float(long.attention_s) > float(long.linear_s)
    # 3. Large-batch prefill: compute-bound.
    prefill = step_time(spec, a100, 16.0, 2048.0, 0.0)
    assert int(prefill.bound) == COMPUTE
    # (memory_s includes the element-wise kernels' pass over 16 x 2048 tokens' activations)
    assert float(prefill.compute_s) > 5 * float(prefill.memory_s)
    # And decode itself turns compute-bound at large batch (ridge ~160 FLOP/byte on A100).
    assert int(step_time(spec, a100, 1024.0, 1.0, 0.0).bound) == COMPUTE
    assert int(step_time(spec, a100, 32.0, 1.0, 0.0).bound) == MEMORY


def test_regimes_are_reported_for_every_chip():
    spec = models.get("llama-3-8b")
    for name in HARDWARE_NAMES:
        chip = hardware.get(name)
        assert int(step_time(spec, chip, 1.0, 1.0, 0.0).bound) == MEMORY, name
        assert int(step_time(spec, chip, 64.0, 4096.0, 0.0).bound) == COMPUTE, name


def test_tensor_parallelism_halves_weight_reads_of_memory_bound_decode(x64):
    spec, h100, entry = models.get("llama-2-70b"), hardware.get("h100"), hardware.entry("h100")
    one = step_time(spec, h100, 1.0, 1.0, 1024.0, tp=1.0)
    two = step_time(spec, h100, 1.0, 1.0, 1024.0, tp=2.0)
    assert int(one.bound) == MEMORY
    assert_close(two.linear_s, one.linear_s / 2, rtol=RTOL_F64)
    assert_close(two.attention_s, one.attention_s / 2, rtol=RTOL_F64)
    # Two all-reduces per block of batch x new_tokens x d_model bf16 activations; this small
    # message goes one-shot: the runtime's floor, one hop (flag-synchronised, NCCL's LL step),
    # the peer's buffer over the link.
    message = 1 * 1 * 8192 * 2
    hop_s = entry["interconnect_ll_latency_us"] * 1e-6
    link = entry["interconnect_gb_per_s"] * 1e9 * entry["interconnect_efficiency"]
    floor = runtime.entry("default")["allreduce_latency_us"] * 1e-6
    allreduce = floor + hop_s + message / link
    assert_close(two.communication_s, 2 * 80 * allreduce, rtol=RTOL_F64)
    assert float(one.communication_s) == 0.0
    # Launches and fixed overhead are per chip and do not shrink.
    assert_close(two.launch_s + two.overhead_s, one.launch_s + one.overhead_s, rtol=RTOL_F64)
    assert float(one.time_s) / 2 < float(two.time_s) < float(one.time_s)


# --------------------------------------------------------------------------- golden: gpt-fast

# gpt-fast README (commit 32971d3): batch-1 decode on an A100-80GB power-limited to 330 W,
# prompt of 5 tokens, 200 new tokens (its default), tokens/s; published-measurements.md §2.
GPT_FAST = [
    ("Llama-2-7B", "bf16", 104.9),
    ("Llama-2-7B", "int8", 155.58),
    ("Llama-2-7B", "int4", 196.80),
    ("Llama-2-70B", "int8", 19.13),
    ("Llama-2-70B", "int4", 25.25),
]
MEAN_CONTEXT = 5 + 200 / 2  # average cache length over the 200 decode steps


def gpt_fast_prediction(name, weight_dtype):
    spec = models.get(name).with_dtypes(weight_dtype)
    return 1.0 / float(step_time(spec, hardware.get("a100-80gb"), 1.0, 1.0, MEAN_CONTEXT).time_s)


def test_gpt_fast_llama_2_7b_bf16_within_15_percent():
    predicted = gpt_fast_prediction("Llama-2-7B", "bf16")  # 111.8 tokens/s with the defaults
    assert abs(predicted / 104.9 - 1) < 0.15
    # gpt-fast's bandwidth column: model_size x tokens/s = 1397.31 GB/s, so 13.32 GB per token
    # (all parameters except the embedding, plus its small KV-cache buffer). Ours: 13.27 GB.
    bytes_per_token = 1397.31e9 / 104.9
    cost = forward_cost(models.get("llama-2-7b"), 1.0, 1.0, MEAN_CONTEXT)
    assert_close(cost.bytes, bytes_per_token, rtol=0.01)


@pytest.mark.parametrize(("name", "weight_dtype", "measured"), GPT_FAST[1:])
def test_gpt_fast_quantised_rows(name, weight_dtype, measured):
    predicted = gpt_fast_prediction(name, weight_dtype)
    # The roofline prices quantised weights by bytes alone; gpt-fast's int8/int4 kernels reach
    # lower bandwidth (its own column: 1069 and 863 GB/s vs 1397 for bf16) because of
    # dequantisation, so these rows are over-predicted (by 21-73%, see the report). What must
    # hold: never more than 15% slow, and the measured ordering.
    assert predicted > 0.85 * measured
    assert predicted > gpt_fast_prediction(name, "bf16")
    if weight_dtype == "int4":
        assert predicted > gpt_fast_prediction(name, "int8")


def test_gpt_fast_llama_2_70b_bf16_is_out_of_memory():
    a100 = hardware.get("a100-80gb")
    seventy = models.get("llama-2-70b")
    assert not bool(fits(seventy, a100, 1.0, 205.0))  # the table's "OOM"
    assert bool(fits(seventy.with_dtypes("int8"), a100, 1.0, 205.0))
    assert bool(fits(seventy.with_dtypes("int4"), a100, 1.0, 205.0))


# --------------------------------------------------------------------------- memory


@pytest.mark.parametrize("name", ["Llama-2-70B", "Mistral-7B-v0.1", "Qwen3-0.6B", "OPT-125M"])
def test_memory_footprint_closed_form(x64, name):
    arch = models.info(name)
    head_dim = arch.get("head_dim") or arch["d_model"] // arch["n_heads"]
    for weight, kv, batch, context in [("bf16", "bf16", 1, 4096), ("int4", "fp8", 32, 1000)]:
        spec = models.get(name).with_dtypes(weight, kv_dtype=kv)
        mem = memory_footprint(spec, float(batch), float(context))
        kv_bytes = sum(
            batch * context * 2 * arch["n_kv_heads"] * head_dim * BYTES[kv]
            for _layer in range(arch["n_layers"])
        )
        weights = float(models.parameter_count(spec)) * BYTES[weight]
        assert_close(mem.weight_bytes, weights, rtol=RTOL_F64)
        assert_close(mem.kv_cache_bytes, kv_bytes, rtol=RTOL_F64)
        assert_close(mem.total_bytes, weights + kv_bytes, rtol=RTOL_F64)


def test_fits_closed_form():
    a100 = hardware.get("a100-80gb")
    seventy = models.get("llama-2-70b")
    # 68.98e9 bf16 parameters = 137.95 GB of weights alone.
    assert not bool(fits(seventy, a100, 1.0, 4096.0))
    assert bool(fits(seventy, a100, 1.0, 4096.0, tp=2.0))
    # The KV cache counts: 80 layers x 2 x 8 x 128 x 2 bytes = 327,680 bytes per token.
    spare = 2 * 80e9 - float(memory_footprint(seventy, 1.0, 0.0).weight_bytes)
    tokens_that_fit = spare / 327_680
    assert bool(fits(seventy, a100, 1.0, math.floor(tokens_that_fit) - 1.0, tp=2.0))
    assert not bool(fits(seventy, a100, 1.0, math.ceil(tokens_that_fit) + 1.0, tp=2.0))
    # Vectorised over a grid of contexts.
    contexts = jnp.array([0.0, 5e4, 1e5])
    np.testing.assert_array_equal(fits(seventy, a100, 1.0, contexts, tp=2.0), [True, True, False])
    assert bool(fits(models.get("llama-2-7b"), a100, 1.0, 4096.0))


# --------------------------------------------------------------------------- JAX semantics


def test_jit_equals_eager_in_float32():
    spec, chip = models.get("llama-3-8b"), hardware.get("h100")
    for shape in [(1.0, 1.0, 0.0), (8.0, 5.0, 3000.0), (32.0, 512.0, 100.0)]:
        eager = step_time(spec, chip, *shape, 2.0)
        assert_close(step_seconds(spec, chip, *shape, 2.0), eager.time_s, rtol=RTOL_F32)
    smooth = jax.jit(step_time, static_argnames="smooth")(spec, chip, 8.0, 5.0, 3000.0, smooth=16.0)
    eager = step_time(spec, chip, 8.0, 5.0, 3000.0, smooth=16.0)
    assert_close(smooth.time_s, eager.time_s, rtol=RTOL_F32)


@pytest.mark.slow
def test_vmap_equals_loop(x64):
    spec, chip = models.get("qwen2.5-7b"), hardware.get("mi300x")
    batches = jnp.array([1.0, 4.0, 64.0, 256.0])
    contexts = jnp.array([0.0, 512.0, 8192.0, 32768.0])
    grid = jax.vmap(step_time, in_axes=(None, None, 0, None, 0))(spec, chip, batches, 1.0, contexts)
    for i in range(len(batches)):
        single = step_time(spec, chip, float(batches[i]), 1.0, float(contexts[i]))
        for field in ("time_s", "linear_s", "attention_s", "compute_s", "memory_s", "launch_s"):
            assert_close(getattr(grid, field)[i], getattr(single, field), rtol=RTOL_F64)
        assert int(grid.bound[i]) == int(single.bound)
    # Over stacked models and stacked chips (specs are pytrees of traced leaves).
    names = ["Llama-2-7B", "Qwen3-0.6B", "OPT-125M", "LaMDA-137B"]
    chips = ["H100 SXM", "TPU v5e", "A10G", "TPU7x"]
    stacked = jax.jit(jax.vmap(step_time, in_axes=(0, 0, None, None, None)))(
        stack([models.get(n) for n in names]),
        stack([hardware.get(c) for c in chips]),
        2.0,
        3.0,
        99.0,
    )
    for i, (name, chip_name) in enumerate(zip(names, chips, strict=True)):
        single = step_time(models.get(name), hardware.get(chip_name), 2.0, 3.0, 99.0)
        assert_close(stacked.time_s[i], single.time_s, rtol=RTOL_F64)


def test_no_recompilation_when_only_traced_values_change():
    traces = []

    @jax.jit
    def seconds(model, chip, batch, new_tokens, context, tp):
        traces.append(None)  # Python side effect: runs only while tracing
        return step_time(model, chip, batch, new_tokens, context, tp).time_s

    calls = [
        ("llama-2-7b", "a100", 1.0, 1.0, 0.0, 1.0),
        ("llama-2-70b", "h100", 8.0, 5.0, 4096.0, 2.0),
        ("qwen3-0.6b", "v5e", 64.0, 512.0, 10.0, 4.0),
        ("llama-68m", "mi300x", 2.5, 3.5, 123.4, 8.0),  # real-valued sizes are fine
    ]
    with compilations() as compiled:
        for name, chip, *args in calls:
            seconds(models.get(name), hardware.get(chip), *args)
        int4 = models.get("llama-2-7b").with_dtypes("int4", kv_dtype="fp8")
        seconds(int4, hardware.get("b200"), 1.0, 1.0, 1.0, 1.0)
        wider = models.get("llama-2-7b").replace(n_layers=40.5, d_model=5000.0)
        seconds(wider, hardware.get("h100").replace(memory_efficiency=0.5), 1.0, 1.0, 1.0, 1.0)
    assert len(traces) == 1
    assert compiled.count("seconds") == 1
    # The counter does see a retrace: compute_dtype is static (it picks a peak column).
    fp8 = models.get("llama-2-7b", activation_dtype="fp8")
    seconds(fp8, hardware.get("h100"), 1.0, 1.0, 1.0, 1.0)
    assert len(traces) == 2


@pytest.mark.slow
def test_check_grads_float64(x64):
    base_model, base_chip = models.get("llama-2-7b"), hardware.get("a100")

    def time_ms(layers, width, bandwidth, peak, batch, context, smooth):
        # Relative multipliers around the base point keep every direction O(1).
        model = base_model.replace(
            n_layers=32.0 * layers, d_model=4096.0 * width, d_ff=11008.0 * width
        )
        chip = base_chip.replace(
            hbm_bytes_per_s=base_chip.hbm_bytes_per_s * bandwidth,
            bf16_flops_per_s=base_chip.bf16_flops_per_s * peak,
        )
        t = step_time(model, chip, 16.0 * batch, 4.0, 1000.0 * context, 2.0, smooth=smooth)
        return 1e3 * t.time_s

    # Eager: check_grads transforms the function several ways, and each jit of those would
    # compile anew, while eager primitives are compiled once for the whole suite.
    point = (1.0, 1.0, 1.0, 1.0, 1.0, 1.0)
    check_grads(lambda *x: time_ms(*x, smooth=16.0), point, order=1)
    check_grads(lambda *x: time_ms(*x, smooth=None), point, order=1)
    check_grads(lambda *x: time_ms(*x, smooth=16.0), (0.5, 1.5, 2.0, 0.7, 3.0, 8.0), order=1)


@pytest.mark.slow
def test_gradients_finite_and_signed_for_every_model_and_chip(x64):
    # float64: d(time)/d(peak FLOP/s) of a memory-bound step is ~1e-17 s per FLOP/s times the
    # smooth max's ratio**15, which underflows to -0.0 in float32.
    def seconds(model, chip):
        return step_time(model, chip, 4.0, 2.0, 2048.0, 2.0, smooth=16.0).time_s

    # One vmapped grad over (model, chip) pairs that covers every model and every chip.
    pairs = [(m, HARDWARE_NAMES[i % len(HARDWARE_NAMES)]) for i, m in enumerate(MODEL_NAMES)]
    assert {c for _, c in pairs} == set(HARDWARE_NAMES)
    model_grid = stack([models.get(m) for m, _ in pairs])
    chip_grid = stack([hardware.get(c) for _, c in pairs])
    model_grads, chip_grads = jax.jit(jax.vmap(jax.grad(seconds, argnums=(0, 1))))(
        model_grid, chip_grid
    )
    for leaf in jax.tree_util.tree_leaves((model_grads, chip_grads)):
        assert np.all(np.isfinite(np.asarray(leaf)))
    # More bandwidth and more FLOP/s always help (the smooth max keeps both gradients alive);
    # more layers always cost time.
    assert np.all(np.asarray(chip_grads.hbm_bytes_per_s) < 0)
    # A pass over few rows may run as a GEMV on the vector units, whose fp32 rate then
    # matters instead of the tensor peak: one of the two always helps, neither hurts.
    tensor, vector = (
        np.asarray(chip_grads.bf16_flops_per_s),
        np.asarray(chip_grads.fp32_flops_per_s),
    )
    # (1e-30: a denormal crumb of the smooth max's non-binding term where the GEMV binds)
    assert np.all(tensor <= 1e-30) and np.all(vector <= 1e-30)
    assert np.all((tensor < 0) | (vector < 0))
    assert np.all(np.asarray(model_grads.n_layers) > 0)
    assert np.all(np.asarray(chip_grads.kernel_launch_s) > 0)


def test_unknown_compute_dtype_is_a_clear_error():
    spec = models.get("llama-2-7b").replace(compute_dtype="fp2")
    with pytest.raises(ValueError, match="unknown compute dtype 'fp2'"):
        step_time(spec, hardware.get("h100"), 1.0, 1.0, 0.0)


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((-1.0, 1.0, 0.0), {}, "batch -1: out of range; valid: finite numbers in [0, 1.07374e+09]"),
        ((1.0, -2.0, 0.0), {}, "new_tokens -2: out of range"),
        ((1.0, 1.0, float("nan")), {}, "context nan: out of range"),
        ((1.0, 1.0, 0.0), {"tp": 0.5}, "tp 0.5: out of range; valid: finite numbers >= 1"),
        ((1.0, 1.0, 0.0), {"tp": -1.0}, "tp -1: out of range"),
        (
            (1.0, 1.0, 0.0),
            {"tp": 2.0, "ep": 4.0},
            "ep 4: out of range; valid: finite numbers in [1, tp] (tp 2)",
        ),
        # Pairwise: ep 4 fits tp 8 but not tp 1.
        (
            (1.0, 1.0, 0.0),
            {"tp": np.array([8.0, 1.0]), "ep": 4.0},
            "ep 4: out of range; valid: finite numbers in [1, tp] (tp 1)",
        ),
        (
            (2.0**31, 1.0, 0.0),
            {},
            "batch 2.14748e+09: out of range; valid: finite numbers in [0, 1.07374e+09]",
        ),
        ((1.0, 1.0, 0.0), {"logit_positions": -1.0}, "logit_positions -1: out of range"),
    ],
)
def test_concrete_sizes_out_of_range_are_value_errors(args, kwargs, message):
    """Until 2026-12-08 ``step_time(..., tp=-1)`` returned 0.89 ms and a batch of -1 5.5
    ms: numbers for passes that cannot exist."""
    with pytest.raises(ValueError, match=re.escape(message)):
        step_time(models.get("llama-2-7b"), hardware.get("h100"), *args, **kwargs)


def test_memory_of_negative_sizes_is_a_value_error():
    """``memory_footprint`` of a context of -5 tokens was a negative KV cache (-2.6 MB),
    and a batch of -1 "fit" on any chip."""
    llama, h100 = models.get("llama-2-7b"), hardware.get("h100")
    with pytest.raises(ValueError, match="context -5: out of range"):
        memory_footprint(llama, 1, -5)
    with pytest.raises(ValueError, match="batch -1: out of range"):
        fits(llama, h100, -1, 0)
    with pytest.raises(ValueError, match="tp 0: out of range"):
        fits(llama, h100, 1, 0, 0)
    with pytest.raises(ValueError, match="tokens -1: out of range"):
        pass_time(llama, h100, forward_cost(llama, 1, 1, 0), 1, -1)


def test_an_empty_pass_and_traced_sizes_are_not_refused():
    llama, h100 = models.get("llama-2-7b"), hardware.get("h100")
    # A workload without a prompt prefills no tokens: an empty pass, still a valid size.
    assert math.isfinite(float(step_time(llama, h100, 1.0, 0.0, 0.0).time_s))
    # Traced sizes are the callers' to check (`Deployment`, `Workload`): never refused here.
    t = jax.jit(lambda b: step_time(llama, h100, b, 1.0, 0.0).time_s)(-1.0)
    assert t.shape == ()


# --------------------------------------------------------------------------- properties


@settings(max_examples=40, deadline=None)
@given(
    name=st.sampled_from(MODEL_NAMES),
    chip=st.sampled_from(HARDWARE_NAMES),
    batch=st.floats(1.0, 4096.0),
    new_tokens=st.floats(1.0, 4096.0),
    context=st.floats(0.0, 131072.0),
    tp=st.sampled_from([1.0, 2.0, 4.0, 8.0]),
)
def test_step_time_finite_and_monotone(name, chip, batch, new_tokens, context, tp):
    spec, hw = models.get(name), hardware.get(chip)
    t = float(step_seconds(spec, hw, batch, new_tokens, context, tp))
    assert math.isfinite(t) and t > 0
    # More bandwidth never slows a step; more context, batch or new tokens never speed it up.
    faster_memory = hw.replace(hbm_bytes_per_s=hw.hbm_bytes_per_s * 2)
    assert float(step_seconds(spec, faster_memory, batch, new_tokens, context, tp)) <= t
    assert float(step_seconds(spec, hw, batch, new_tokens, context * 2 + 1, tp)) >= t
    assert float(step_seconds(spec, hw, batch * 2, new_tokens, context, tp)) >= t
    assert float(step_seconds(spec, hw, batch, new_tokens + 1, context, tp)) >= t


def test_tp8_is_faster_than_tp4_for_an_8b_model_at_batch_1():
    """gpt-fast README (32971d3), Llama-3.1-8B bf16 on A100s, batch 1: 217.21 tokens/s on 4
    GPUs, 276.01 on 8 (+27%). Small decode all-reduces cost a latency floor, not 2 (tp - 1)
    ring hops, so halving each chip's weights still pays at TP8."""
    model = models.get("llama-3.1-8b")
    for chip in ("h100", "a100"):
        for stack in ("default", "cuda-graphs", "trtllm"):
            rt = runtime.get(stack, chip)
            tps = {
                tp: 1.0
                / float(step_time(model, hardware.get(chip), 1.0, 1.0, 105.0, tp, None, rt).time_s)
                for tp in (1.0, 2.0, 4.0, 8.0)
            }
            assert tps[8.0] > 1.1 * tps[4.0] > 1.1 * tps[2.0] > 1.1 * tps[1.0], (chip, stack, tps)
