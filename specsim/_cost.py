"""Cost of one forward pass of a transformer: FLOPs, bytes, time and memory.

A forward pass processes ``new_tokens`` per sequence for ``batch`` sequences
whose KV cache already holds ``context`` tokens: ``new_tokens = 1`` is a decode
step, ``gamma + 1`` a verification pass, the prompt length a prefill. Every
argument is a traced value, so changing model sizes, hardware, batch or context
never recompiles, and everything is differentiable.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from ._limits import MAX_BATCH, MAX_TOKENS
from ._numerics import CHIPS, check_range, concrete, where
from .hardware import HardwareSpec, all_to_all_time, allreduce_time, roofline_time, smooth_max
from .models import TransformerSpec, _attention, _moe, layer_weight_count, parameter_count
from .runtime import RuntimeProfile, default_for

# A typical fused decode layer launches ~8 kernels (norm, QKV, RoPE + cache write,
# attention, O-projection + residual, norm, gate/up, down + residual), plus ~4 per
# forward outside the blocks (embedding gather, final norm, LM head, sampling).
# (These are the counts of the "default" runtime profile, specsim/runtime/catalog.toml; a
# profile sets its own.)
KERNELS_PER_LAYER = 8.0
KERNELS_PER_FORWARD = 4.0
# Bytes per element of each compute dtype: weights narrower than this are dequantised.
COMPUTE_DTYPE_BYTES = {"fp32": 4.0, "bf16": 2.0, "fp8": 1.0, "int8": 1.0, "fp4": 0.5}
# Bytes per weight of a 4-bit payload, and of int4 with a bf16 scale and zero per 32 weights.
INT4_PAYLOAD_BYTES = 0.5
INT4_SCALED_BYTES = 0.625
# An MoE block replaces the dense MLP's 2 kernels (gate/up, down) by router GEMM, softmax +
# top-k, token permutation (dispatch), grouped gate/up, grouped down and unpermutation +
# weighted combine: 4 more; shared experts add their own gate/up and down kernels.
EXTRA_KERNELS_PER_MOE_LAYER = 4.0
KERNELS_PER_SHARED_EXPERT = 2.0

STEP_BOUND_NAMES = ("memory", "compute", "communication", "overhead")


@struct.dataclass
class ForwardCost:
    """FLOPs and HBM bytes of one forward pass, by category (whole model, all chips).

    Attributes:
        matmul_flops: weight matmuls (blocks and LM head), FLOPs.
        attention_flops: attention scores and weighted values, FLOPs.
        weight_bytes: weights read (every matrix once, plus the embedding rows gathered).
        kv_read_bytes: KV cache read for the ``context`` tokens already cached.
        kv_write_bytes: KV cache written for the new tokens.
        activation_bytes: inputs read and outputs written by every matmul.
    """

    matmul_flops: Any
    attention_flops: Any
    weight_bytes: Any
    kv_read_bytes: Any
    kv_write_bytes: Any
    activation_bytes: Any

    @property
    def flops(self):
        """Total FLOPs."""
        return self.matmul_flops + self.attention_flops

    @property
    def bytes(self):
        """Total HBM bytes moved."""
        return self.weight_bytes + self.kv_read_bytes + self.kv_write_bytes + self.activation_bytes


@struct.dataclass
class StepTime:
    """Time of one forward pass on ``tp`` chips, with its breakdown (all in s).

    Attributes:
        time_s: total wall time of the pass.
        linear_s: roofline time of the weight matmuls.
        attention_s: roofline time of attention (KV-cache traffic and its FLOPs).
        elementwise_s: memory-bound element-wise kernels (norms, rotary embedding,
            activation, residuals) and the sampler over the vocabulary.
        compute_s: FLOP time (FLOPs / achievable FLOP/s) summed over both groups.
        memory_s: HBM time (bytes / achievable bandwidth) summed over both groups.
        compute_bound_s: time of the groups whose compute time binds.
        memory_bound_s: time of the groups whose HBM time binds.
        communication_s: tensor-parallel all-reduces.
        launch_s: kernel-launch overheads.
        overhead_s: fixed per-step overhead.
        bound: index into ``STEP_BOUND_NAMES`` of the largest contribution among
            memory-bound time, compute-bound time, communication and fixed overheads.
        cost: the ``ForwardCost`` behind it.
    """

    time_s: Any
    linear_s: Any
    attention_s: Any
    elementwise_s: Any
    compute_s: Any
    memory_s: Any
    compute_bound_s: Any
    memory_bound_s: Any
    communication_s: Any
    launch_s: Any
    overhead_s: Any
    bound: Any
    cost: ForwardCost


# What a concrete size of a pass may be (traced sizes pass: their callers check them).
# Zero tokens is an empty pass (a workload without a prompt prefills nothing); the upper
# bounds are `specsim.limits`' (a pass's tokens are a batch of sequences of tokens).
def _within(low, high):
    return (lambda v: low <= v <= high), f"in [{low:g}, {high:g}]"


_SIZE_RULES = {
    "batch": _within(0, MAX_BATCH),
    "new_tokens": _within(0, MAX_TOKENS),
    "context": _within(0, MAX_TOKENS),
    "logit_positions": _within(0, MAX_TOKENS),
    "tokens": _within(0, MAX_BATCH * MAX_TOKENS),
    "logit_tokens": _within(0, MAX_BATCH * MAX_TOKENS),
    "tp": CHIPS,
}


def _check_sizes(**sizes) -> None:
    """Refuses a concrete size outside ``_SIZE_RULES`` (``ValueError`` naming it)."""
    for name, value in sizes.items():
        if value is not None:
            check_range(name, value, *_SIZE_RULES[name])


def _check_parallel(tp, ep=1.0) -> None:
    """Refuses a concrete ``tp`` below 1 or an ``ep`` outside [1, ``tp``] (pairwise, as
    they broadcast)."""
    _check_sizes(tp=tp)
    t, e = concrete(tp), concrete(ep)
    if e is None:
        return
    if t is None:
        check_range("ep", e, *CHIPS)
        return
    t, e = np.broadcast_arrays(t, e)
    bad = ~(np.isfinite(e) & (e >= 1) & (e <= t))
    if bad.any():
        i = np.flatnonzero(bad.ravel())[0]
        ep_i, tp_i = e.ravel()[i], t.ravel()[i]
        raise ValueError(
            f"ep {ep_i:g}: out of range; valid: finite numbers in [1, tp] (tp {tp_i:g})"
        )


def forward_cost(
    model: TransformerSpec, batch, new_tokens, context, logit_positions=None
) -> ForwardCost:
    """FLOPs and bytes of one forward pass.

    Per block: the attention projections and the MLP (dense, or for the
    ``n_moe_layers`` MoE blocks: router, shared experts and ``experts_per_token``
    routed experts per token), then attention over the cached and new tokens. Matmul
    FLOPs follow the weights each token multiplies with; weight bytes follow the
    weights the pass reads, which for routed experts is the expected number of distinct
    experts its ``batch x new_tokens`` tokens touch (``models.experts_touched``), read at
    ``expert_weight_bytes``. Sliding-window layers attend to and cache at most their
    window; multi-head latent attention caches the latent and, unabsorbed, expands it
    into keys and values on every pass (see ``specsim.models._attention``).

    Args:
        model: the architecture.
        batch: sequences in the batch.
        new_tokens: tokens processed per sequence in this pass.
        context: tokens already in each sequence's KV cache.
        logit_positions: positions per sequence whose logits the LM head computes
            (default ``new_tokens``: every new token, as decoding and verification need;
            a prefill needs only its last position, 1).

    Returns:
        ``ForwardCost`` (whole model, before any tensor-parallel split).

    Raises:
        ValueError: a concrete size negative, above ``specsim.limits`` or not finite
            (traced values are not checked).

    Examples:
        >>> from specsim import models
        >>> cost = forward_cost(models.get("llama-2-7b"), batch=1, new_tokens=1, context=0)
        >>> round(float(cost.weight_bytes) / 1e9, 2)  # bf16 weights, embedding table not read
        13.21
        >>> mixtral = models.get("mixtral-8x7b")  # one token reads 2 of 8 experts per layer
        >>> round(float(forward_cost(mixtral, 1, 1, 0).weight_bytes) / 1e9, 2)
        25.5
    """
    _check_sizes(
        batch=batch, new_tokens=new_tokens, context=context, logit_positions=logit_positions
    )
    m = model
    tokens = batch * new_tokens
    logit_tokens = tokens if logit_positions is None else batch * logit_positions
    q_width = m.n_heads * m.head_dim
    kv_width = m.n_kv_heads * m.head_dim
    block_weights = m.n_layers * layer_weight_count(m)
    head_weights = m.vocab * m.d_model

    # MoE blocks swap the dense MLP for router + shared experts + routed experts. Every
    # term below is exactly zero for a dense model, which keeps its numbers unchanged.
    dense_mlp = _moe.dense_mlp_weight_count(m)
    fixed_moe = _moe.router_weight_count(m) + _moe.shared_expert_weight_count(m) - dense_mlp
    expert = _moe.expert_weight_count(m)
    active_weights = block_weights + m.n_moe_layers * (fixed_moe + m.experts_per_token * expert)
    read_weights = block_weights + m.n_moe_layers * fixed_moe
    expert_bytes = where(m.expert_weight_bytes > 0, m.expert_weight_bytes, m.weight_bytes)
    touched = _moe.experts_touched(m, tokens)
    expert_read_bytes = m.n_moe_layers * touched * expert * expert_bytes

    matmul_flops = 2.0 * (tokens * active_weights + logit_tokens * head_weights)
    # Each new token attends to the cached context plus, causally, the new tokens up to itself;
    # in a sliding-window layer to at most the window. (Corrections are added to the dense
    # grouped-query expressions so that those stay bit-for-bit what they were.)
    attended = _attention.mean_keys(context, new_tokens)
    latent = _attention.is_latent(m)
    attention_flops = 4.0 * batch * m.n_layers * q_width * new_tokens * attended
    per_key = where(latent, _attention.flops_per_query_key(m), 4.0 * q_width)
    attention_flops = where(
        latent, per_key * batch * m.n_layers * new_tokens * attended, attention_flops
    )
    attended_local = _attention.mean_keys_in_window(context, new_tokens, m.sliding_window)
    beyond_window = m.n_local_layers * (attended - attended_local)
    attention_flops = attention_flops - per_key * batch * new_tokens * beyond_window
    # Unabsorbed MLA expands every cached latent into keys and values on every pass.
    not_cached = m.n_local_layers * (
        context - _attention.cached_in_window(context, m.sliding_window)
    )
    cached = m.n_layers * context - not_cached
    expanded = _attention.expanded_kv_elements_per_token(m)
    attention_flops = attention_flops + 2.0 * batch * cached * m.kv_lora_rank * expanded

    weight_bytes = (
        m.weight_bytes * (read_weights + head_weights + tokens * m.d_model) + expert_read_bytes
    )
    kv_per_token = m.n_layers * 2.0 * kv_width * m.kv_bytes
    kv_per_token_layer = _attention.kv_elements_per_token(m) * m.kv_bytes
    kv_per_token = where(latent, m.n_layers * kv_per_token_layer, kv_per_token)
    kv_read_bytes = batch * context * kv_per_token - batch * not_cached * kv_per_token_layer
    # The expanded keys and values are written once and read back by attention.
    kv_read_bytes = kv_read_bytes + 2.0 * batch * cached * expanded * m.activation_bytes
    kv_write_bytes = tokens * kv_per_token
    # Per block: QKV (in d, out q+2kv), O (in q, out d), MLP (in d, gate/up out, down in/out d).
    block_io = 4.0 * m.d_model + 2.0 * q_width + 2.0 * kv_width + m.mlp_matrices * m.d_ff
    block_io = where(_attention.is_latent(m), _latent_block_io(m), block_io)
    moe_io = _moe_mlp_io(m) - (2.0 * m.d_model + m.mlp_matrices * m.d_ff)
    activation_bytes = m.activation_bytes * (
        tokens * (m.n_layers * block_io + m.d_model + m.n_moe_layers * moe_io)
        + logit_tokens * m.vocab
    )
    return ForwardCost(
        matmul_flops=matmul_flops,
        attention_flops=attention_flops,
        weight_bytes=weight_bytes,
        kv_read_bytes=kv_read_bytes,
        kv_write_bytes=kv_write_bytes,
        activation_bytes=activation_bytes,
    )


def _latent_block_io(m):
    """Activation elements per token of one MLA block with a dense MLP: fused query and
    joint-KV down-projections (one input read), the low-rank query up-projection, the
    key/value up-projection of the new latent, the output projection, and the MLP."""
    query_width = m.n_heads * (m.head_dim + m.rope_head_dim)
    q_low_rank = m.q_lora_rank > 0
    first_out = where(q_low_rank, m.q_lora_rank, query_width) + m.kv_lora_rank + m.rope_head_dim
    q_up = where(q_low_rank, m.q_lora_rank + query_width, 0.0)
    kv_up = m.kv_lora_rank + m.n_heads * 2.0 * m.head_dim
    output = m.n_heads * m.head_dim + m.d_model
    mlp = 2.0 * m.d_model + m.mlp_matrices * m.d_ff
    return m.d_model + first_out + q_up + kv_up + output + mlp


def _moe_mlp_io(m):
    """Activation elements per token of one MoE MLP: the router (in d, out E), the shared
    experts if any and each of the token's routed experts (in d, gate/up out, down in/out d)."""
    has_shared = where(m.d_ff_shared > 0, 1.0, 0.0)
    shared = has_shared * 2.0 * m.d_model + m.mlp_matrices * m.d_ff_shared
    routed = m.experts_per_token * (2.0 * m.d_model + m.mlp_matrices * m.d_ff_expert)
    return m.d_model + m.n_experts + shared + routed


def step_time(
    model: TransformerSpec,
    hardware: HardwareSpec,
    batch,
    new_tokens,
    context,
    tp=1.0,
    smooth: float | None = None,
    runtime: RuntimeProfile | None = None,
    logit_positions=None,
    ep=1.0,
) -> StepTime:
    """Wall time of one forward pass on ``tp`` chips of ``hardware``.

    The pass is a sequence of kernels, each timed on its own roofline:

    * weight matmuls: FLOPs at the compute dtype's peak x efficiency, where a pass over
      fewer tokens than the chip's smallest matmul tile (``matmul_tile_tokens``) still
      computes a full tile; bytes at the HBM bandwidth, where weights narrower than the
      compute dtype (weight-only int8/int4) stream at the chip's dequantising efficiency,
      and a matmul of two or more rows reads them ``gemm_weight_passes`` more times
      (ramped in between one row and two; 0 except on CPUs); compute and memory
      overlap as far as ``roofline_sharpness`` says;
    * attention over the KV cache, its KV bytes at ``attention_efficiency`` of the
      bandwidth and its FLOPs at ``attention_compute_efficiency`` of the FLOP rate; the
      cache is read once per query head where the runtime's kernel does not share a
      grouped-query head's reads (``RuntimeProfile.kv_read_multiplier``);
    * element-wise kernels (norms, rotary embedding, activation, residual adds) and the
      sampler over the vocabulary, memory-bound, as the ``runtime`` fuses them;
    * two all-reduces per block with tensor parallelism (``allreduce_time``, with the
      runtime's latency floor);
    * the runtime's fixed costs: per kernel (more in MoE blocks), per pass and per
      sequence.

    FLOPs and bytes split evenly over ``tp`` chips.

    Expert parallelism: the ``tp`` chips form ``ep`` groups (``1 <= ep <= tp``), each
    holding ``n_experts / ep`` whole experts split over its ``tp / ep`` chips; a chip
    reads its share of the touched experts as under tensor parallelism (balanced
    routing: the busiest group's excess is not modelled). In each MoE block the MLP's
    all-reduce over ``tp`` chips becomes an all-reduce over the ``tp / ep`` chips of a
    group plus two all-to-alls among the ``ep`` groups (dispatch and combine), each
    chip sending its ``1 / tp`` share of the pass's ``tokens x experts_per_token``
    expert inputs (outputs). ``ep = 1`` is pure tensor parallelism.

    Args:
        model: the architecture.
        hardware: one chip.
        batch, new_tokens, context, logit_positions: as in ``forward_cost``.
        tp: tensor-parallel degree (a traced float; 1 = one chip).
        smooth: ``None``, or a roofline sharpness to smooth at least this much (p =
            min(``hardware.roofline_sharpness``, ``smooth``); see ``roofline_time``).
        runtime: the software stack (default: ``specsim.runtime.default_for(hardware)``,
            the chip's catalogue overheads).
        ep: expert-parallel degree among the ``tp`` chips (a traced float; 1 = none).

    Returns:
        ``StepTime``.

    Raises:
        ValueError: a concrete size out of range: ``batch``, ``new_tokens``, ``context``
            or ``logit_positions`` negative, above ``specsim.limits`` or not finite; ``tp``
            below 1; ``ep`` outside [1, ``tp``]. Traced values are not checked.

    Examples:
        >>> from specsim import hardware, models
        >>> t = step_time(models.get("llama-2-7b"), hardware.get("a100-80gb"), 1, 1, 128)
        >>> STEP_BOUND_NAMES[int(t.bound)]
        'memory'
    """
    cost = forward_cost(model, batch, new_tokens, context, logit_positions)
    logit_tokens = None if logit_positions is None else batch * logit_positions
    return pass_time(
        model, hardware, cost, batch, batch * new_tokens, logit_tokens, tp, smooth, runtime, ep
    )


def pass_time(
    model: TransformerSpec,
    hardware: HardwareSpec,
    cost: ForwardCost,
    batch,
    tokens,
    logit_tokens=None,
    tp=1.0,
    smooth: float | None = None,
    runtime: RuntimeProfile | None = None,
    ep=1.0,
) -> StepTime:
    """Wall time of one forward pass given its ``ForwardCost`` (see `step_time`).

    `step_time` counts the cost of a uniform pass; a serving engine's mixed pass (decodes
    of many sequences plus chunks of prefills, weights read once) adds the costs of its
    parts and is timed here.

    Args:
        model: the architecture.
        hardware: one chip.
        cost: FLOPs and bytes of the pass (whole model).
        batch: sequences in the pass (per-sequence host work).
        tokens: tokens through the weight matmuls (rows of each matmul).
        logit_tokens: tokens whose logits are computed and sampled (default ``tokens``).
        tp, smooth, runtime, ep: as in `step_time`.

    Raises:
        ValueError: a concrete ``batch``, ``tokens`` or ``logit_tokens`` negative, above
            ``specsim.limits`` or not finite, ``tp`` or ``ep`` as in `step_time` (traced
            values are not checked).
    """
    _check_sizes(batch=batch, tokens=tokens, logit_tokens=logit_tokens)
    _check_parallel(tp, ep)
    if runtime is None:
        runtime = default_for(hardware)
    if logit_tokens is None:
        logit_tokens = tokens
    dtype = model.compute_dtype
    # A tensor-core matmul over fewer rows than one tile computes the whole tile (smoothly);
    # a pass over very few rows may instead run as a GEMV on the vector units (fp32 rate),
    # whichever is faster: the factor multiplies the FLOPs priced at the dtype's peak.
    peak = hardware.peak_flops_per_s(dtype)  # an unknown compute dtype is a clear ValueError
    padded_tokens = _smooth_at_least(tokens, hardware.matmul_tile_tokens)
    # (the GEMV's time is FLOPs / fp32 peak: peak x efficiency cancel out of it)
    tensor_rate = peak * hardware.compute_efficiency_for(dtype)
    # (double where: a pass over no tokens, or fewer than NO_TOKENS, does no matmul FLOPs,
    # and the gradient of padded / tokens stays finite)
    has_tokens = tokens >= _attention.NO_TOKENS
    padding = padded_tokens / jnp.where(has_tokens, tokens, 1.0)
    small_m = jnp.minimum(
        jnp.where(has_tokens, padding, 1.0), tensor_rate / hardware.fp32_flops_per_s
    )
    tile_factor = jnp.maximum(small_m, 1.0)
    dequant = _dequant_efficiency(model, hardware)
    # Tensor parallelism splits the blocks; the LM head only where the runtime shards its
    # vocabulary (a replicated head is read whole by every chip).
    head_weights = model.vocab * model.d_model
    head_share = runtime.lm_head_sharding / tp + (1.0 - runtime.lm_head_sharding)
    head_flops = 2.0 * logit_tokens * head_weights
    head_bytes = model.weight_bytes * head_weights
    # A matmul of two or more rows may read its weights more than once (a CPU's GEMM
    # packing its weight panels; one row runs as a GEMV): ramped in linearly from one row
    # to two (its slope in the rows steps at both ends, finite everywhere). Approximations,
    # moot where the count is 0 (GPUs, TPUs): the copy is priced at the weights' width
    # (a dequantising GEMM would pack wider), and routed experts at the pass's rows.
    passes = hardware.gemm_weight_passes
    block_reads = 1.0 + passes * jnp.clip(tokens - 1.0, 0.0, 1.0)
    head_reads = 1.0 + passes * jnp.clip(logit_tokens - 1.0, 0.0, 1.0)
    linear = roofline_time(
        ((cost.matmul_flops - head_flops) / tp + head_flops * head_share) * tile_factor,
        ((cost.weight_bytes - head_bytes) / tp * block_reads + head_bytes * head_share * head_reads)
        / dequant
        + cost.activation_bytes / tp,
        hardware,
        dtype,
        smooth,
    )
    # Attention runs in bf16 (fp32 on fp32 models), its FLOPs and its KV bytes each at a
    # fraction of the matmul roofline's side (scaling both scales the p-norm max).
    attention_dtype = "fp32" if dtype == "fp32" else "bf16"
    attention = roofline_time(
        cost.attention_flops / (tp * hardware.attention_compute_fraction()),
        (cost.kv_read_bytes * runtime.kv_read_multiplier(model) + cost.kv_write_bytes)
        / (tp * hardware.attention_efficiency),
        hardware,
        attention_dtype,
        smooth,
    )
    elementwise_bytes = (
        runtime.elementwise_passes * cost.activation_bytes / tp
        + runtime.sampling_bytes_per_logit * logit_tokens * model.vocab
    )
    elementwise_s = elementwise_bytes / (hardware.hbm_bytes_per_s * hardware.memory_efficiency)
    message_bytes = tokens * model.d_model * model.activation_bytes

    def allreduce(parallel):
        return allreduce_time(
            message_bytes,
            parallel,
            hardware,
            runtime.allreduce_latency_s,
            runtime.allreduce_bandwidth_fraction,
            runtime.ring_allreduce_latency_s,
        )

    communication_s = 2.0 * model.n_layers * allreduce(tp)
    # Expert parallelism: exactly zero at ep = 1 (the same all-reduce subtracted and added).
    routed_bytes = message_bytes * model.experts_per_token / tp
    expert_parallel_s = (
        2.0 * all_to_all_time(routed_bytes, ep, hardware) + allreduce(tp / ep) - allreduce(tp)
    )
    communication_s = communication_s + model.n_moe_layers * expert_parallel_s
    kernels = runtime.kernels_per_layer * model.n_layers + runtime.kernels_per_forward
    shared_kernels = where(model.d_ff_shared > 0, KERNELS_PER_SHARED_EXPERT, 0.0)
    kernels = kernels + model.n_moe_layers * (EXTRA_KERNELS_PER_MOE_LAYER + shared_kernels)
    launch_s = runtime.kernel_launch_s * kernels
    overhead_s = runtime.step_overhead_s + runtime.sequence_overhead_s * batch
    time_s = (
        linear.time_s + attention.time_s + elementwise_s + communication_s + launch_s + overhead_s
    )
    compute_s = linear.compute_s + attention.compute_s
    memory_s = linear.memory_s + attention.memory_s + elementwise_s
    compute_bound_s = linear.time_s * linear.bound + attention.time_s * attention.bound
    memory_bound_s = (
        linear.time_s * (1 - linear.bound)
        + attention.time_s * (1 - attention.bound)
        + elementwise_s
    )
    step = StepTime(
        time_s=time_s,
        linear_s=linear.time_s,
        attention_s=attention.time_s,
        elementwise_s=elementwise_s,
        compute_s=compute_s,
        memory_s=memory_s,
        compute_bound_s=compute_bound_s,
        memory_bound_s=memory_bound_s,
        communication_s=communication_s,
        launch_s=launch_s,
        overhead_s=overhead_s,
        bound=0,
        cost=cost,
    )
    return step.replace(bound=binding_bound(step))


def _smooth_at_least(value, floor, sharpness: float = 4.0):
    """``max(value, floor)``, smoothly: ``(value**p + floor**p)**(1/p)`` (p = 4)."""
    return smooth_max(value, floor, sharpness)


def _dequant_efficiency(model: TransformerSpec, hardware: HardwareSpec):
    """Fraction of the memory roofline a matmul reaches on its stored weight bytes while it
    dequantises them.

    Weights narrower than the compute dtype (weight-only int8; int4 with its group scales)
    are converted in registers before the multiply, and that conversion, one per weight,
    binds: ``int8_dequant_efficiency`` is the speed of an int8 kernel relative to
    streaming its bytes, ``int4_dequant_efficiency`` that of a 4-bit kernel relative to
    streaming its 0.5-byte payload. Group scales (up to 1/8 byte per weight at 0.625 bytes)
    are read once per group and reused from on-chip memory, so a 4-bit kernel's time
    follows its weights, not its scale bytes: below 0.625 bytes per weight the efficiency
    on stored bytes is ``int4 x bytes / 0.5``; between 0.625 and 1 byte it is interpolated
    in log2(bytes) up to the int8 value. Weights as wide as the compute dtype (bf16, or fp8
    with fp8 compute) are not dequantised.
    """
    width = jnp.asarray(model.weight_bytes, jnp.result_type(float))
    int4, int8 = hardware.int4_dequant_efficiency, hardware.int8_dequant_efficiency
    four_bit = int4 * jnp.minimum(width, INT4_SCALED_BYTES) / INT4_PAYLOAD_BYTES
    at_scaled = int4 * INT4_SCALED_BYTES / INT4_PAYLOAD_BYTES
    x = jnp.clip(jnp.log2(width) / math.log2(INT4_SCALED_BYTES), 0.0, 1.0)  # 1 at 0.625, 0 at 1
    between = int8 + (at_scaled - int8) * x
    efficiency = jnp.minimum(jnp.where(width <= INT4_SCALED_BYTES, four_bit, between), 1.0)
    return jnp.where(width < COMPUTE_DTYPE_BYTES[model.compute_dtype], efficiency, 1.0)


def binding_bound(step: StepTime):
    """Index into ``STEP_BOUND_NAMES`` of what takes most of a step's time.

    Each roofline group's time counts for the bound that binds it (a compute-bound
    matmul counts as compute, a bandwidth-bound attention as memory), then it is
    compared with communication and the fixed launch and step overheads.
    """
    parts = jnp.broadcast_arrays(
        step.memory_bound_s,
        step.compute_bound_s,
        step.communication_s,
        step.launch_s + step.overhead_s,
    )
    return jnp.argmax(jnp.stack(parts, axis=-1), axis=-1)


@struct.dataclass
class MemoryFootprint:
    """HBM needed to serve a model (bytes, whole model before a tensor-parallel split)."""

    weight_bytes: Any
    kv_cache_bytes: Any

    @property
    def total_bytes(self):
        """Weights plus KV cache."""
        return self.weight_bytes + self.kv_cache_bytes


def memory_footprint(model: TransformerSpec, batch, context) -> MemoryFootprint:
    """Weights plus the KV cache of ``batch`` sequences of ``context`` tokens.

    Every routed expert is resident (at ``expert_weight_bytes``), whichever a pass
    touches; sliding-window layers keep at most their window of tokens, latent
    attention its latent. Multi-token-prediction modules are not counted (a speculator
    that uses them adds them).

    Raises:
        ValueError: a concrete size negative, above ``specsim.limits`` or not finite
            (traced values are not checked).

    Examples:
        >>> from specsim import models
        >>> round(float(memory_footprint(models.get("llama-2-7b"), 1, 0).weight_bytes) / 1e9, 2)
        13.48
        >>> round(float(memory_footprint(models.get("gpt-oss-120b"), 1, 0).weight_bytes) / 1e9, 1)
        65.2
    """
    _check_sizes(batch=batch, context=context)
    m = model
    kv_per_token = m.n_layers * 2.0 * m.n_kv_heads * m.head_dim * m.kv_bytes
    kv_per_token_layer = _attention.kv_elements_per_token(m) * m.kv_bytes
    kv_per_token = where(_attention.is_latent(m), m.n_layers * kv_per_token_layer, kv_per_token)
    window_kept = _attention.cached_in_window(context, m.sliding_window)
    not_cached = m.n_local_layers * (context - window_kept)
    routed = m.n_moe_layers * m.n_experts * _moe.expert_weight_count(m)
    expert_bytes = where(m.expert_weight_bytes > 0, m.expert_weight_bytes, m.weight_bytes)
    return MemoryFootprint(
        weight_bytes=parameter_count(m) * m.weight_bytes + routed * (expert_bytes - m.weight_bytes),
        kv_cache_bytes=batch * context * kv_per_token - batch * not_cached * kv_per_token_layer,
    )


def fits(model: TransformerSpec, hardware: HardwareSpec, batch, context, tp=1.0):
    """Whether weights and KV cache fit in the HBM of ``tp`` chips (a boolean array).

    Raises:
        ValueError: a concrete size out of range (``batch`` or ``context`` as in
            `memory_footprint`, ``tp`` below 1); traced values are not checked.

    Examples:
        >>> from specsim import hardware, models
        >>> bool(fits(models.get("llama-2-70b"), hardware.get("a100-80gb"), 1, 4096))
        False
    """
    _check_parallel(tp)
    need = memory_footprint(model, batch, context).total_bytes
    return need <= hardware.hbm_capacity_bytes * tp


def target_fit(model: TransformerSpec, hardware: HardwareSpec, batch, context, tp):
    """``(bytes per chip, problem)`` of a target's weights and KV cache on ``tp`` chips,
    concrete numbers: the problem is ``None`` where they fit, else the message with which
    the searches refuse the deployment (`fits`, in words)."""
    batch, context, tp = float(batch), float(context), float(tp)
    host_model = jax.tree.map(np.asarray, model)
    need = float(memory_footprint(host_model, batch, context).total_bytes) / tp
    capacity = float(hardware.hbm_capacity_bytes)
    if need <= capacity:
        return need, None
    return need, (
        f"the target does not fit: its weights and KV cache need {need / 1e9:.1f} GB per chip "
        f"(tp={tp:g}, batch {batch:g}, context {context:g} tokens) but the chip has "
        f"{capacity / 1e9:.1f} GB; valid: a larger tp, a smaller batch or context"
    )
