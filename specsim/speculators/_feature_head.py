"""Cost of a draft head that runs on the target's features (EAGLE, MTP modules).

Such a head is a few decoder layers at the target's width, fed with the target's hidden
states through a fusion matmul (EAGLE's FC, an MTP module's projection), ending in an LM
head (the target's, shared, or its own over a reduced vocabulary). One pass over
``new_tokens`` tokens per sequence costs the layers as a `TransformerSpec` of the
target's shape (attention over the context, its own KV cache, embedding and LM head)
plus the fusion matmul as one more roofline kernel.
"""

from __future__ import annotations

import jax.numpy as jnp

from .._cost import memory_footprint, step_time
from .._quadrature import mean_step
from ..hardware import roofline_time
from ..runtime import default_for

__all__: list[str] = []


def head_model(target, n_layers, vocab, mixture: bool = False):
    """The head's layers as a `TransformerSpec`: ``n_layers`` blocks of the target's
    width and attention, dense (EAGLE heads are dense decoder layers, also on MoE
    targets) or, with ``mixture``, of the target's MLP kind (an MTP module's block is
    an MoE block on an MoE target); global attention; LM head over ``vocab`` (0 = the
    target's vocabulary)."""
    own = jnp.where(vocab > 0, jnp.minimum(vocab, target.vocab), target.vocab)
    moe_layers = jnp.where(target.n_moe_layers > 0, n_layers, 0.0) if mixture else 0.0
    return target.replace(
        n_layers=n_layers,
        vocab=own,
        n_moe_layers=moe_layers,
        n_local_layers=0.0,
        n_mtp_layers=0.0,
    )


def fusion_time(target, hardware, tokens, fusion_weights, fusion_inputs, tp, smooth, runtime=None):
    """The fusion matmul over ``tokens`` tokens (all sequences): one kernel, s.

    ``runtime``: the software stack whose kernel launch it pays (``None``: the chip's
    default profile)."""
    if runtime is None:
        runtime = default_for(hardware)
    io = tokens * (fusion_inputs + 1.0) * target.d_model * target.activation_bytes
    fusion = roofline_time(
        2.0 * tokens * fusion_weights / tp,
        (fusion_weights * target.weight_bytes + io) / tp,
        hardware,
        target.compute_dtype,
        smooth,
    )
    return fusion.time_s + runtime.kernel_launch_s


def head_pass(deployment, contexts, weights, smooth, model, fusion_weights, fusion_inputs):
    """``new_tokens -> StepTime``: one pass of the head ``model`` (`head_model`) plus
    its fusion matmul, averaged over the contexts."""
    target, hardware = deployment.target, deployment.hardware
    batch, tp = deployment.workload.batch, deployment.draft_tp
    runtime = deployment.resolved_runtime()

    def pass_step(new_tokens):
        step = mean_step(model, hardware, batch, new_tokens, contexts, weights, tp, smooth, runtime)
        extra = fusion_time(
            target,
            hardware,
            batch * new_tokens,
            fusion_weights,
            fusion_inputs,
            tp,
            smooth,
            runtime,
        )
        return step.replace(time_s=step.time_s + extra)

    return pass_step


def head_prefill_s(deployment, smooth, model, fusion_weights, fusion_inputs):
    """The head's pass over the prompt, s."""
    target, hardware, workload = deployment.target, deployment.hardware, deployment.workload
    tp = deployment.draft_tp
    runtime = deployment.resolved_runtime()
    # (one logit per sequence: the prompt's last position)
    layers = step_time(
        model, hardware, workload.batch, workload.prompt_tokens, 0.0, tp, smooth, runtime, 1.0
    ).time_s
    tokens = workload.batch * workload.prompt_tokens
    return layers + fusion_time(
        target, hardware, tokens, fusion_weights, fusion_inputs, tp, smooth, runtime
    )


def head_memory_bytes(deployment, model, batch, context, fusion_weights, own_head_weights):
    """Weights (blocks, fusion, own LM head; the embedding is the target's) and the
    head's KV cache, per chip."""
    footprint = memory_footprint(model, batch, context)
    embedding = model.vocab * model.d_model * (2.0 - model.tied_embeddings) * model.weight_bytes
    extra = (fusion_weights + own_head_weights) * model.weight_bytes
    total = footprint.weight_bytes - embedding + extra + footprint.kv_cache_bytes
    return total / deployment.draft_tp
