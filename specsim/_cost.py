"""Cost of one forward pass of a transformer: FLOPs, bytes, time and memory.

A forward pass processes ``new_tokens`` per sequence for ``batch`` sequences
whose KV cache already holds ``context`` tokens: ``new_tokens = 1`` is a decode
step, ``gamma + 1`` a verification pass, the prompt length a prefill. Every
argument is a traced value, so changing model sizes, hardware, batch or context
never recompiles, and everything is differentiable.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
from flax import struct

from .hardware import HardwareSpec, allreduce_time, roofline_time
from .models import TransformerSpec, layer_weight_count, parameter_count

# A typical fused decode layer launches ~8 kernels (norm, QKV, RoPE + cache write,
# attention, O-projection + residual, norm, gate/up, down + residual), plus ~4 per
# forward outside the blocks (embedding gather, final norm, LM head, sampling).
KERNELS_PER_LAYER = 8.0
KERNELS_PER_FORWARD = 4.0

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
    compute_s: Any
    memory_s: Any
    compute_bound_s: Any
    memory_bound_s: Any
    communication_s: Any
    launch_s: Any
    overhead_s: Any
    bound: Any
    cost: ForwardCost


def forward_cost(model: TransformerSpec, batch, new_tokens, context) -> ForwardCost:
    """FLOPs and bytes of one forward pass.

    Args:
        model: the architecture.
        batch: sequences in the batch.
        new_tokens: tokens processed per sequence in this pass.
        context: tokens already in each sequence's KV cache.

    Returns:
        ``ForwardCost`` (whole model, before any tensor-parallel split).

    Examples:
        >>> from specsim import models
        >>> cost = forward_cost(models.get("llama-2-7b"), batch=1, new_tokens=1, context=0)
        >>> round(float(cost.weight_bytes) / 1e9, 2)  # bf16 weights, embedding table not read
        13.21
    """
    m = model
    tokens = batch * new_tokens
    q_width = m.n_heads * m.head_dim
    kv_width = m.n_kv_heads * m.head_dim
    block_weights = m.n_layers * layer_weight_count(m)
    head_weights = m.vocab * m.d_model

    matmul_flops = 2.0 * tokens * (block_weights + head_weights)
    # Each new token attends to the cached context plus, causally, the new tokens up to itself.
    attended = context + (new_tokens + 1.0) / 2.0
    attention_flops = 4.0 * batch * m.n_layers * q_width * new_tokens * attended

    weight_bytes = m.weight_bytes * (block_weights + head_weights + tokens * m.d_model)
    kv_per_token = m.n_layers * 2.0 * kv_width * m.kv_bytes
    kv_read_bytes = batch * context * kv_per_token
    kv_write_bytes = tokens * kv_per_token
    # Per block: QKV (in d, out q+2kv), O (in q, out d), MLP (in d, gate/up out, down in/out d).
    block_io = 4.0 * m.d_model + 2.0 * q_width + 2.0 * kv_width + m.mlp_matrices * m.d_ff
    activation_bytes = m.activation_bytes * tokens * (m.n_layers * block_io + m.d_model + m.vocab)
    return ForwardCost(
        matmul_flops=matmul_flops,
        attention_flops=attention_flops,
        weight_bytes=weight_bytes,
        kv_read_bytes=kv_read_bytes,
        kv_write_bytes=kv_write_bytes,
        activation_bytes=activation_bytes,
    )


def step_time(
    model: TransformerSpec,
    hardware: HardwareSpec,
    batch,
    new_tokens,
    context,
    tp=1.0,
    smooth: float | None = None,
) -> StepTime:
    """Wall time of one forward pass on ``tp`` chips of ``hardware``.

    Weight matmuls and attention are separate rooflines (they are separate
    kernels: the first reads weights, the second the KV cache, at
    ``hardware.attention_efficiency`` of the first's roofline); with tensor
    parallelism FLOPs and bytes split evenly over ``tp`` chips and each block adds
    two ring all-reduces of its activations. Kernel launches and a fixed step
    overhead are added on top.

    Args:
        model: the architecture.
        hardware: one chip.
        batch, new_tokens, context: as in ``forward_cost``.
        tp: tensor-parallel degree (a traced float; 1 = one chip).
        smooth: ``None`` for the exact roofline, or a sharpness for the smooth max.

    Returns:
        ``StepTime``.

    Examples:
        >>> from specsim import hardware, models
        >>> t = step_time(models.get("llama-2-7b"), hardware.get("a100-80gb"), 1, 1, 128)
        >>> STEP_BOUND_NAMES[int(t.bound)]
        'memory'
    """
    cost = forward_cost(model, batch, new_tokens, context)
    dtype = model.compute_dtype
    linear = roofline_time(
        cost.matmul_flops / tp,
        (cost.weight_bytes + cost.activation_bytes) / tp,
        hardware,
        dtype,
        smooth,
    )
    # Attention runs at a fraction of the matmul roofline; the roofline (hard or p-norm
    # max) is homogeneous, so scaling both FLOPs and bytes scales its time.
    attention_share = 1.0 / (tp * hardware.attention_efficiency)
    attention = roofline_time(
        cost.attention_flops * attention_share,
        (cost.kv_read_bytes + cost.kv_write_bytes) * attention_share,
        hardware,
        dtype,
        smooth,
    )
    message_bytes = batch * new_tokens * model.d_model * model.activation_bytes
    communication_s = 2.0 * model.n_layers * allreduce_time(message_bytes, tp, hardware)
    launch_s = hardware.kernel_launch_s * (KERNELS_PER_LAYER * model.n_layers + KERNELS_PER_FORWARD)
    overhead_s = hardware.step_overhead_s
    time_s = linear.time_s + attention.time_s + communication_s + launch_s + overhead_s
    compute_s = linear.compute_s + attention.compute_s
    memory_s = linear.memory_s + attention.memory_s
    compute_bound_s = linear.time_s * linear.bound + attention.time_s * attention.bound
    memory_bound_s = linear.time_s * (1 - linear.bound) + attention.time_s * (1 - attention.bound)
    step = StepTime(
        time_s=time_s,
        linear_s=linear.time_s,
        attention_s=attention.time_s,
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

    Examples:
        >>> from specsim import models
        >>> round(float(memory_footprint(models.get("llama-2-7b"), 1, 0).weight_bytes) / 1e9, 2)
        13.48
    """
    kv_per_token = model.n_layers * 2.0 * model.n_kv_heads * model.head_dim * model.kv_bytes
    return MemoryFootprint(
        weight_bytes=parameter_count(model) * model.weight_bytes,
        kv_cache_bytes=batch * context * kv_per_token,
    )


def fits(model: TransformerSpec, hardware: HardwareSpec, batch, context, tp=1.0):
    """Whether weights and KV cache fit in the HBM of ``tp`` chips (a boolean array).

    Examples:
        >>> from specsim import hardware, models
        >>> bool(fits(models.get("llama-2-70b"), hardware.get("a100-80gb"), 1, 4096))
        False
    """
    need = memory_footprint(model, batch, context).total_bytes
    return need <= hardware.hbm_capacity_bytes * tp
