"""Throughput of a continuously batching engine at saturation.

A serving engine fed requests faster than it completes them (an offline benchmark such as
``trtllm-bench throughput``) settles into a steady state: every forward pass decodes one
token for each resident sequence and prefills the prompts of the requests that replace
those finishing. How many sequences are resident is set by the engine's limits: the KV
cache it can hold in the memory left after the weights, its maximum batch and its
maximum tokens per pass. This module predicts that steady state from a `Deployment`
(target, chip, tensor parallelism, runtime; the workload's prompt and generation lengths
are the requests' input and output lengths) and `BatchingLimits`.

Steady state with ``S`` resident sequences, input length ``I`` and output length ``O``:
``R = S / O`` requests finish (and start) per pass; the pass decodes ``S - R`` tokens at
the mean context ``I + O / 2`` and prefills ``R x I`` prompt tokens (computing logits only
for their last positions), reading the weights once. ``S`` is the smallest of the KV
cache's capacity in reserved sequences, the maximum batch, and the maximum tokens per
pass ``x O / (I + O - 1)`` (each resident sequence brings ``(I + O - 1) / O`` tokens per
pass). Output throughput is ``R x O / pass time``.

Everything is traced and differentiable; the limit that binds is reported.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from ._cost import ForwardCost, StepTime, forward_cost, memory_footprint, pass_time
from ._deployment import Deployment
from ._numerics import concrete, real_number
from .models import TransformerSpec

__all__ = [
    "LIMIT_NAMES",
    "BatchingLimits",
    "SaturationReport",
    "kv_bytes_per_token",
    "saturated_throughput",
    "trtllm_bench_limits",
]

LIMIT_NAMES = ("kv_cache", "max_batch", "max_tokens")


@struct.dataclass
class BatchingLimits:
    """What a continuously batching engine admits (traced leaves).

    Attributes:
        max_batch: most sequences resident at once (``inf``: no limit).
        max_batched_tokens: most tokens in one forward pass, prefill and decode together
            (``inf``: no limit).
        kv_memory_fraction: fraction of the HBM left after weights and ``reserved_bytes``
            that holds the KV cache.
        reserved_bytes: HBM per chip held by the runtime besides weights and KV cache
            (activations, CUDA graphs, workspaces), bytes.
        kv_reserved_fraction: fraction of a request's output whose KV cache is reserved
            when it is admitted: 1 for schedulers that guarantee no eviction (prompt plus
            the whole output), 0.5 for on-demand paging (the mean occupancy).

    Examples:
        >>> limits = BatchingLimits.create(max_batch=256)
        >>> float(limits.max_batch), float(limits.kv_memory_fraction)
        (256.0, 0.9)
    """

    max_batch: Any
    max_batched_tokens: Any
    kv_memory_fraction: Any
    reserved_bytes: Any
    kv_reserved_fraction: Any

    @classmethod
    def create(
        cls,
        max_batch: float = math.inf,
        max_batched_tokens: float = math.inf,
        kv_memory_fraction: float = 0.9,
        reserved_bytes: float = 0.0,
        kv_reserved_fraction: float = 1.0,
    ) -> BatchingLimits:
        """Validated limits (``ValueError`` naming what is out of range)."""
        checks = {
            "max_batch": (max_batch, lambda v: v >= 1, ">= 1"),
            "max_batched_tokens": (max_batched_tokens, lambda v: v >= 1, ">= 1"),
            "kv_memory_fraction": (kv_memory_fraction, lambda v: 0 < v <= 1, "in (0, 1]"),
            "reserved_bytes": (
                reserved_bytes,
                lambda v: math.isfinite(v) and v >= 0,
                "finite and >= 0",
            ),
            "kv_reserved_fraction": (kv_reserved_fraction, lambda v: 0 <= v <= 1, "in [0, 1]"),
        }
        numbers = []
        for name, (value, ok, text) in checks.items():
            number = real_number(value)
            if number is None or not ok(number):
                raise ValueError(f"BatchingLimits.{name} must be {text}, got {value!r}")
            numbers.append(number)
        return cls(*(jnp.asarray(v, jnp.float32) for v in numbers))


@struct.dataclass
class SaturationReport:
    """The steady state of an engine at saturation (all times in s).

    Attributes:
        output_tokens_per_s: generated tokens per second, all requests.
        requests_per_s: requests completed per second.
        resident_sequences: sequences resident in the engine (``S``).
        decode_tokens: tokens decoded per pass (``S - R``).
        prefill_tokens: prompt tokens prefilled per pass (``R x I``).
        kv_capacity_sequences: sequences whose reserved KV cache fits in memory.
        pass_s: time of one forward pass.
        step: the `StepTime` breakdown of that pass.
        limit: index into ``LIMIT_NAMES`` of the limit that binds.
    """

    output_tokens_per_s: Any
    requests_per_s: Any
    resident_sequences: Any
    decode_tokens: Any
    prefill_tokens: Any
    kv_capacity_sequences: Any
    pass_s: Any
    step: StepTime
    limit: Any


def kv_bytes_per_token(model: TransformerSpec, tp=1.0):
    """KV-cache bytes one token occupies on each of ``tp`` chips.

    Every chip holds at least one KV head (``max(n_kv_heads, tp) / tp`` of them), as
    engines replicate heads when ``tp`` exceeds their number; a multi-head latent attention
    cache (one latent per token and layer, no heads) is held whole by every chip. The
    whole model's bytes per token are `memory_footprint`'s (sliding-window layers cache
    every token up to their window). The serving engine (``specsim.serving``) sizes its
    paged cache with the same function.

    Examples:
        >>> from specsim import models
        >>> float(kv_bytes_per_token(models.get("llama-3-8b")))  # 32 x K,V x 8 heads x 128 x 2 B
        131072.0
        >>> float(kv_bytes_per_token(models.get("llama-3-8b"), 16.0))  # one head on each chip
        16384.0
    """
    whole = memory_footprint(model, 1.0, 1.0).kv_cache_bytes
    heads = jnp.maximum(model.n_kv_heads, 1.0)
    share = jnp.where(model.kv_lora_rank > 0, 1.0, jnp.maximum(heads, tp) / (heads * tp))
    return whole * share


def _add_costs(decode: ForwardCost, prefill: ForwardCost, weights_bytes) -> ForwardCost:
    """One pass doing both: weights are read once."""
    total = jax.tree.map(lambda a, b: a + b, decode, prefill)
    return total.replace(weight_bytes=total.weight_bytes - weights_bytes)


@functools.partial(jax.jit, static_argnames=("smooth",))
def _saturated(deployment: Deployment, limits: BatchingLimits, smooth=None) -> SaturationReport:
    d = deployment
    model, hardware, workload, tp = d.target, d.hardware, d.workload, d.tp
    runtime = d.resolved_runtime()
    prompt, output = workload.prompt_tokens, workload.generate_tokens

    # (resident weights as `memory_footprint` counts them: routed experts at their own width)
    weights_per_chip = memory_footprint(model, 0.0, 0.0).weight_bytes / tp
    free = hardware.hbm_capacity_bytes - weights_per_chip - limits.reserved_bytes
    kv_budget = jnp.maximum(free, 0.0) * limits.kv_memory_fraction
    reserved_tokens = prompt + limits.kv_reserved_fraction * output
    kv_capacity = kv_budget / (kv_bytes_per_token(model, tp) * reserved_tokens)
    by_tokens = limits.max_batched_tokens * output / (prompt + output - 1.0)
    candidates = jnp.stack(jnp.broadcast_arrays(kv_capacity, limits.max_batch, by_tokens), axis=-1)
    resident = jnp.min(candidates, axis=-1)
    limit = jnp.argmin(candidates, axis=-1)

    requests = resident / output  # per pass
    decode = resident - requests
    prefill = requests * prompt
    decode_cost = forward_cost(model, decode, 1.0, prompt + output / 2.0)
    prefill_cost = forward_cost(model, requests, prompt, 0.0, logit_positions=1.0)
    weights = forward_cost(model, 0.0, 1.0, 0.0).weight_bytes
    cost = _add_costs(decode_cost, prefill_cost, weights)
    step = pass_time(
        model,
        hardware,
        cost,
        batch=resident,
        tokens=decode + prefill,
        logit_tokens=resident,
        tp=tp,
        smooth=smooth,
        runtime=runtime,
    )
    return SaturationReport(
        output_tokens_per_s=requests * output / step.time_s,
        requests_per_s=requests / step.time_s,
        resident_sequences=resident,
        decode_tokens=decode,
        prefill_tokens=prefill,
        kv_capacity_sequences=kv_capacity,
        pass_s=step.time_s,
        step=step,
        limit=limit,
    )


def saturated_throughput(
    deployment: Deployment, limits: BatchingLimits | None = None, *, smooth: float | None = None
) -> SaturationReport:
    """Output tokens/s of a continuously batching engine fed requests without pause.

    Plain decoding (no speculation) of ``deployment.target`` on ``deployment.tp`` chips
    under ``deployment.runtime``; every request has ``workload.prompt_tokens`` input and
    ``workload.generate_tokens`` output tokens (``workload.batch`` is not used: the
    engine's limits set the batch). Jitted; differentiable in every leaf.

    Args:
        deployment: the `Deployment` (its acceptance model is not used).
        limits: the engine's `BatchingLimits` (default: no batch or token limit, 90% of
            the free memory for the KV cache, whole requests reserved).
        smooth: as in `step_time`.

    Returns:
        `SaturationReport`.

    Raises:
        ValueError: an invalid deployment or limits, an output length below 2 tokens
            (a request that only prefills has no decode steady state), or weights that
            leave no memory for a KV cache.

    Examples:
        >>> import specsim
        >>> d = specsim.Deployment.create("llama-3-8b", "h100", specsim.Workload.create(
        ...     prompt_tokens=128, generate_tokens=128), acceptance=0.5, runtime="trtllm")
        >>> report = saturated_throughput(d, BatchingLimits.create(max_batch=64))
        >>> LIMIT_NAMES[int(report.limit)], float(report.resident_sequences)
        ('max_batch', 64.0)
    """
    if not isinstance(deployment, Deployment):
        raise ValueError(f"deployment must be a Deployment, got {type(deployment).__name__}")
    deployment.validate()
    limits = BatchingLimits.create() if limits is None else limits
    if not isinstance(limits, BatchingLimits):
        raise ValueError(f"limits must be BatchingLimits, got {type(limits).__name__}")
    output = concrete(deployment.workload.generate_tokens)
    if output is not None and np.any(output < 2):
        raise ValueError(
            f"saturated throughput needs generate_tokens >= 2 (a decode phase), got {output}"
        )
    _check_weights_fit(deployment, limits)
    return _saturated(deployment, limits, smooth)


def _check_weights_fit(deployment: Deployment, limits: BatchingLimits) -> None:
    """``ValueError`` where the weights (and the runtime's reserve) leave no memory for a
    KV cache on a chip: the engine cannot start (concrete values only)."""
    weights = concrete(memory_footprint(deployment.target, 0.0, 0.0).weight_bytes)
    tp = concrete(deployment.tp)
    capacity = concrete(deployment.hardware.hbm_capacity_bytes)
    reserved = concrete(limits.reserved_bytes)
    if any(v is None for v in (weights, tp, capacity, reserved)):
        return
    need, capacity = (np.ravel(a) for a in np.broadcast_arrays(weights / tp + reserved, capacity))
    bad = np.flatnonzero(need >= capacity)
    if bad.size:
        raise ValueError(
            f"the target does not fit: its weights (and the engine's reserve) need "
            f"{need[bad[0]] / 1e9:.1f} GB per chip, the chip has {capacity[bad[0]] / 1e9:.1f} "
            "GB, none left for a KV cache; valid: a larger tp or narrower weights"
        )


def trtllm_bench_limits(deployment: Deployment, kv_memory_fraction: float = 0.90) -> BatchingLimits:
    """The limits ``trtllm-bench throughput`` chooses for a deployment and dataset.

    trtllm-bench sizes the engine from the dataset's input and output lengths: the number
    of requests whose whole KV cache (input + output tokens) fits in
    ``kv_memory_fraction`` of the memory left after the weights, capped at 4096, rounded
    *up* (to 64 at least, then to multiples of 32, 128 or 256) as the maximum batch; that
    number times ``1 + input / output``, capped at 32768 and rounded up (to 2048 at least)
    as the maximum tokens per pass. Its scheduler then admits a request only when its
    whole KV cache is free (``GUARANTEED_NO_EVICT``), so the KV cache binds, not these
    rounded-up limits. Concrete inputs only (the rounding is not differentiable).

    Args:
        deployment: target, chip, tensor parallelism and the requests' lengths.
        kv_memory_fraction: ``--kv_cache_free_gpu_mem_fraction`` (default 0.90; 0.95 in
            most of TensorRT-LLM's published runs).

    References:
        TensorRT-LLM ``tensorrt_llm/bench/build/tuning.py`` (``calc_engine_setting``,
        ``finetune_setting``): https://github.com/NVIDIA/TensorRT-LLM

    Examples:
        >>> import specsim
        >>> d = specsim.Deployment.create("llama-3-8b", "h100", specsim.Workload.create(
        ...     prompt_tokens=2048, generate_tokens=128), acceptance=0.5)
        >>> limits = trtllm_bench_limits(d, 0.95)
        >>> float(limits.max_batch), float(limits.max_batched_tokens)
        (224.0, 3840.0)
    """
    if not isinstance(deployment, Deployment):
        raise ValueError(f"deployment must be a Deployment, got {type(deployment).__name__}")
    d = deployment.validate()
    model, hardware, tp = d.target, d.hardware, float(d.tp)
    prompt = float(d.workload.prompt_tokens)
    output = float(d.workload.generate_tokens)
    weights = float(memory_footprint(model, 0.0, 0.0).weight_bytes)
    free = float(hardware.hbm_capacity_bytes) * tp - weights
    per_request = float(kv_bytes_per_token(model, tp)) * tp * (prompt + output)
    requests = max(free * kv_memory_fraction / per_request, 1.0)
    batch = min(requests, 4096.0)
    tokens = min(batch * (1.0 + prompt / output), 32768.0)
    if batch < 256:
        max_batch = max(64, 32 * math.ceil(batch / 32))
    elif batch < 1024:
        max_batch = 128 * math.ceil(batch / 128)
    else:
        max_batch = 256 * math.ceil(batch / 256)
    if tokens < 4096:
        max_tokens = max(2048, 256 * math.ceil(tokens / 256))
    elif tokens < 8192:
        max_tokens = 512 * math.ceil(tokens / 512)
    else:
        max_tokens = 1024 * math.ceil(tokens / 1024)
    return BatchingLimits.create(
        max_batch=float(max_batch),
        max_batched_tokens=float(max_tokens),
        kv_memory_fraction=kv_memory_fraction,
        kv_reserved_fraction=1.0,
    )
