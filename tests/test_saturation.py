"""Saturated throughput of a continuously batching engine: steady state, limits, KV capacity."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import assert_close

import specsim
from specsim import (
    BatchingLimits,
    Deployment,
    Workload,
    forward_cost,
    models,
    pass_time,
    saturated_throughput,
    trtllm_bench_limits,
)
from specsim._saturation import LIMIT_NAMES, kv_bytes_per_token

FP8_8B = models.get("llama-3-8b").with_dtypes("fp8", kv_dtype="fp8", compute_dtype="fp8")


def deployment(prompt=1000, output=1000, model=FP8_8B, chip="h100", tp=1.0, rt="trtllm"):
    workload = Workload.create(prompt_tokens=prompt, generate_tokens=output)
    return Deployment.create(model, chip, workload, 0.5, tp=tp, runtime=rt)


def test_steady_state_against_a_hand_built_pass():
    """S resident sequences: S/O requests finish and start per pass; the pass decodes the rest
    at the mean context and prefills the newcomers' prompts, reading weights once."""
    d = deployment(prompt=500, output=2000)
    report = saturated_throughput(d, BatchingLimits.create(max_batch=128))
    assert LIMIT_NAMES[int(report.limit)] == "max_batch"
    s, o, i = 128.0, 2000.0, 500.0
    r = s / o
    assert_close(report.resident_sequences, s)
    assert_close(report.decode_tokens, s - r)
    assert_close(report.prefill_tokens, r * i)
    decode = forward_cost(FP8_8B, s - r, 1.0, i + o / 2)
    prefill = forward_cost(FP8_8B, r, i, 0.0, logit_positions=1.0)
    weights = forward_cost(FP8_8B, 0.0, 1.0, 0.0).weight_bytes
    cost = jax.tree.map(lambda a, b: a + b, decode, prefill)
    cost = cost.replace(weight_bytes=cost.weight_bytes - weights)
    step = pass_time(FP8_8B, d.hardware, cost, s, s - r + r * i, s, 1.0, None, d.runtime)
    assert_close(report.pass_s, step.time_s)
    assert_close(report.output_tokens_per_s, r * o / step.time_s)
    assert_close(report.requests_per_s, r / step.time_s)


def test_kv_capacity_in_bytes():
    d = deployment(prompt=1000, output=1000)
    limits = BatchingLimits.create(kv_memory_fraction=0.9, reserved_bytes=2e9)
    report = saturated_throughput(d, limits)
    weights = float(models.parameter_count(FP8_8B)) * 1.0  # fp8 weights, one chip
    free = 80e9 - weights - 2e9
    per_sequence = 32 * 2 * 8 * 128 * 1.0 * (1000 + 1000)  # layers x K,V x heads x dim x fp8
    assert_close(report.kv_capacity_sequences, 0.9 * free / per_sequence)
    assert LIMIT_NAMES[int(report.limit)] == "kv_cache"
    # On-demand paging reserves half the output on average: more sequences fit.
    paged = saturated_throughput(d, limits.replace(kv_reserved_fraction=jnp.float32(0.5)))
    assert_close(paged.kv_capacity_sequences, 0.9 * free / (per_sequence * 1500 / 2000))
    # Tensor parallelism: each chip holds max(heads, tp) / tp KV heads.
    seventy = models.get("llama-3-70b")
    assert float(kv_bytes_per_token(seventy, 16.0)) == 80 * 2 * 1 * 128 * 2
    assert float(kv_bytes_per_token(seventy, 2.0)) == 80 * 2 * 4 * 128 * 2


def test_quantised_moe_weights_are_counted_at_their_own_width():
    """gpt-oss-120b keeps its routed experts in MXFP4 (4-bit values and one 8-bit scale per
    32: 0.53125 bytes, OCP Microscaling spec) and the rest in bf16; counted at bf16
    throughout (234 GB) it left no memory for a single sequence on one H100."""
    model = models.get("gpt-oss-120b")
    experts = 36 * 128 * 3 * 2880 * 2880  # MoE layers x experts x (gate, up, down) x d x d_ff
    weights = experts * 0.53125 + (float(models.parameter_count(model)) - experts) * 2.0
    assert weights == pytest.approx(65.17e9, rel=1e-3)
    d = deployment(prompt=1000, output=1000, model=model)
    report = saturated_throughput(
        d, BatchingLimits.create(kv_memory_fraction=0.9, reserved_bytes=2e9)
    )
    per_sequence = float(kv_bytes_per_token(model, 1.0)) * 2000
    assert_close(report.kv_capacity_sequences, 0.9 * (80e9 - weights - 2e9) / per_sequence)
    assert float(report.output_tokens_per_s) > 0
    # trtllm-bench sizes its batch from the same free memory: 95.6 requests, rounded up to 96.
    requests = 0.95 * (80e9 - weights) / per_sequence
    assert requests == pytest.approx(95.6, abs=0.1)
    assert float(trtllm_bench_limits(d, 0.95).max_batch) == 32 * math.ceil(requests / 32)


def _heads_formula(model, tp):
    """The saturation model's former per-chip KV bytes per token (heads only, no latent)."""
    heads = max(float(model.n_kv_heads), tp) / tp
    return float(model.n_layers) * 2.0 * heads * float(model.head_dim) * float(model.kv_bytes)


@pytest.mark.parametrize("name", models.names())
def test_kv_bytes_per_token_is_the_serving_engines(name):
    """One function sizes the KV cache of the saturation model and the serving engine:
    identical to the former heads formula on every catalogue model with heads, and the
    latent cache (MLA) whole on every chip, which the heads formula priced by head."""
    model = models.get(name)
    for tp in (1.0, 2.0, 8.0, 16.0):
        d = Deployment.create(model, "h200", acceptance=0.7)
        d = d.replace(tp=tp)  # (any tp: the KV arithmetic, not a feasible layout)
        shared = float(kv_bytes_per_token(model, tp))
        assert float(specsim.serving.kv_bytes_per_token(d)) == shared
        if float(model.kv_lora_rank) > 0:
            assert shared == float(kv_bytes_per_token(model, 1.0))
        else:
            assert_close(shared, _heads_formula(model, tp), rtol=1e-6)


def test_token_budget_limits_prefill_heavy_requests():
    d = deployment(prompt=2048, output=128)
    report = saturated_throughput(d, BatchingLimits.create(max_batched_tokens=4096))
    assert LIMIT_NAMES[int(report.limit)] == "max_tokens"
    tokens = float(report.decode_tokens + report.prefill_tokens)
    assert tokens == pytest.approx(4096, rel=1e-5)


def test_trtllm_bench_limits_follow_its_documented_heuristic():
    """TensorRT-LLM tuning.py: requests whose whole KV cache fits (cap 4096) rounded up; that
    times 1 + ISL/OSL tokens (cap 32768) rounded up, at least 2048."""
    for prompt, output in [(128, 128), (2048, 128), (20000, 2000), (128, 4096)]:
        d = deployment(prompt=prompt, output=output)
        limits = trtllm_bench_limits(d, 0.95)
        free = 80e9 - float(models.parameter_count(FP8_8B))
        requests = min(free * 0.95 / (32 * 2 * 8 * 128 * (prompt + output)), 4096)
        tokens = min(requests * (1 + prompt / output), 32768)
        step = 32 if requests < 256 else 128 if requests < 1024 else 256
        batch = (
            max(64, step * math.ceil(requests / step))
            if requests < 256
            else (step * math.ceil(requests / step))
        )
        token_step = 256 if tokens < 4096 else 512 if tokens < 8192 else 1024
        max_tokens = token_step * math.ceil(tokens / token_step)
        assert float(limits.max_batch) == batch
        assert float(limits.max_batched_tokens) == max(2048, max_tokens)
        # Its scheduler reserves whole requests, so the KV cache binds, not the rounded limits.
        assert LIMIT_NAMES[int(saturated_throughput(d, limits).limit)] == "kv_cache"


@pytest.mark.slow
def test_saturated_rates_are_monotone_and_differentiable():
    d = deployment(prompt=500, output=2000, model=models.get("llama-3-8b"))
    base = saturated_throughput(d)
    bigger = saturated_throughput(d.replace(hardware=d.hardware.replace(hbm_capacity_bytes=141e9)))
    faster = saturated_throughput(d.replace(hardware=d.hardware.replace(hbm_bytes_per_s=4.8e12)))
    assert float(bigger.output_tokens_per_s) > float(base.output_tokens_per_s)
    assert float(faster.output_tokens_per_s) > float(base.output_tokens_per_s)
    capped = saturated_throughput(d, BatchingLimits.create(max_batch=16))
    assert float(capped.output_tokens_per_s) < float(base.output_tokens_per_s)

    def rate(chip):
        return saturated_throughput(d.replace(hardware=chip)).output_tokens_per_s

    grads = jax.grad(rate)(d.hardware)
    assert float(grads.hbm_bytes_per_s) > 0 and float(grads.hbm_capacity_bytes) > 0
    assert all(np.isfinite(float(g)) for g in jax.tree_util.tree_leaves(grads))


def test_published_trtllm_row_within_its_group_bar():
    # TensorRT-LLM perf-overview.md (00f3768): Llama 3.1 8B FP8 on one H100, ISL/OSL 1000/1000,
    # 15,220 output tokens/s with trtllm-bench at --kv_cache_free_gpu_mem_fraction 0.95.
    d = deployment(prompt=1000, output=1000)
    report = saturated_throughput(d, trtllm_bench_limits(d, 0.95))
    assert float(report.output_tokens_per_s) == pytest.approx(15220, rel=0.12)


def test_bad_inputs_are_clear_errors():
    with pytest.raises(ValueError, match=r"kv_memory_fraction must be in \(0, 1\]"):
        BatchingLimits.create(kv_memory_fraction=1.5)
    with pytest.raises(ValueError, match="max_batch must be >= 1"):
        BatchingLimits.create(max_batch=0)
    for bad in ("8", True, np.array([8.0, 16.0])):
        with pytest.raises(ValueError, match="max_batch must be >= 1"):
            BatchingLimits.create(max_batch=bad)
    # NumPy and JAX scalars are numbers (they were refused as "must be >= 1, got 64")
    for scalar in (np.float32(64), np.int64(64), jnp.float32(64)):
        assert float(BatchingLimits.create(max_batch=scalar).max_batch) == 64.0
    with pytest.raises(ValueError, match="generate_tokens >= 2"):
        saturated_throughput(deployment(prompt=100, output=1))
    with pytest.raises(ValueError, match="limits must be BatchingLimits"):
        saturated_throughput(deployment(), {"max_batch": 8})
    with pytest.raises(ValueError, match="deployment must be a Deployment"):
        saturated_throughput("llama-3-8b")
    with pytest.raises(ValueError, match="deployment must be a Deployment, got str"):
        specsim.trtllm_bench_limits("llama-3-8b")  # was an AttributeError
    assert isinstance(specsim.trtllm_bench_limits(deployment()), BatchingLimits)


def test_weights_that_leave_no_kv_cache_are_refused():
    # Llama-3-70B's 141 GB of bf16 weights on one 80 GB H100: 0 tokens/s with zero
    # gradients and limit "kv_cache" (the engine cannot start), now a clear error.
    d = specsim.Deployment.create("llama-3-70b", "h100", acceptance=0.5)
    with pytest.raises(ValueError, match=r"need 141.1 GB per chip, the chip has 80.0 GB"):
        saturated_throughput(d)
    # 10 GB reserved beside Llama-3-8B's 16 GB on a 24 GB L4: nothing left either.
    small = specsim.Deployment.create("llama-3-8b", "l4", acceptance=0.5)
    with pytest.raises(ValueError, match="none left for a KV cache"):
        saturated_throughput(small, BatchingLimits.create(reserved_bytes=10e9))
    assert float(saturated_throughput(d.replace(tp=2.0)).output_tokens_per_s) > 0
