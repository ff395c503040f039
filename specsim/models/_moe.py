"""Mixture-of-experts layers: weights, active experts and distinct experts touched.

An MoE layer replaces the dense MLP by a router (``d_model x n_experts``), optional
shared experts that every token uses (total width ``d_ff_shared``), and ``n_experts``
routed experts of width ``d_ff_expert``, of which each token uses
``experts_per_token`` (top-k). ``n_moe_layers`` of the ``n_layers`` blocks are MoE
layers (the rest are dense, width ``d_ff``): leading dense layers (DeepSeek's
``first_k_dense_replace``) and interleaved ones (Llama 4 Maverick's
``interleave_moe_layer_step``) cost the same per layer, so only their number matters.

**FLOPs follow the active experts** (``experts_per_token`` per token), **weight reads
follow the distinct experts touched** by all the tokens of a pass: a decode step of one
token reads ``k`` experts, a verification pass of ``batch x (gamma + 1)`` tokens reads
many more, which is why verification is not nearly free on an MoE target. Under uniform,
independent top-k routing a given expert is missed by one token with probability
``1 - k/E`` and by ``n`` tokens with probability ``(1 - k/E)**n``, so the expected
number of distinct experts touched is ``E * (1 - (1 - k/E)**n)``.

**Routing skew.** Real routers are neither uniform nor independent across a pass's
tokens: the tokens of one sequence, and popular experts, concentrate the load, so fewer
distinct experts are touched. ``routing_skew = s`` in ``[0, 1)`` models this with one
number: the ``n`` tokens of a pass touch as many experts as ``n**(1 - s)`` independent,
uniformly routed tokens. ``s = 0`` is the uniform law; one token still touches exactly
``k`` experts for every ``s``; as ``n`` grows every expert is eventually touched.
It is phenomenological (fit it to measured expert-hit counts of your router and
traffic); the presets use 0.

References:
    Shazeer et al. 2017 (arXiv 1701.06538) and Fedus et al. 2022, Switch Transformer
    (arXiv 2101.03961): top-k routed experts. Jiang et al. 2024, Mixtral of Experts
    (arXiv 2401.04088): 8 experts, top-2. DeepSeek-AI, DeepSeek-V3 technical report
    (arXiv 2412.19437): shared experts, leading dense layers.
"""

from __future__ import annotations

from .._numerics import where


def is_mixture(spec):
    """Whether ``spec`` has MoE layers (a boolean, or a boolean array)."""
    return spec.n_moe_layers > 0


def dense_mlp_weight_count(spec):
    """Weight elements of the dense MLP of one block (width ``d_ff``)."""
    return spec.mlp_matrices * spec.d_model * spec.d_ff


def expert_weight_count(spec):
    """Weight elements of one routed expert."""
    return spec.mlp_matrices * spec.d_model * spec.d_ff_expert


def shared_expert_weight_count(spec):
    """Weight elements of the shared expert(s) of one MoE layer (all of them together)."""
    return spec.mlp_matrices * spec.d_model * spec.d_ff_shared


def router_weight_count(spec):
    """Weight elements of the router of one MoE layer (``d_model x n_experts``)."""
    return spec.d_model * spec.n_experts


def moe_mlp_weight_count(spec):
    """Weight elements of the MLP of one MoE layer: router, shared and all routed experts.

    Examples:
        >>> from specsim import models
        >>> round(moe_mlp_weight_count(models.get("mixtral-8x7b")) / 1e6, 1)
        1409.3
    """
    return (
        router_weight_count(spec)
        + shared_expert_weight_count(spec)
        + spec.n_experts * expert_weight_count(spec)
    )


def active_moe_mlp_weight_count(spec):
    """Weight elements of one MoE layer's MLP that one token multiplies with."""
    return (
        router_weight_count(spec)
        + shared_expert_weight_count(spec)
        + spec.experts_per_token * expert_weight_count(spec)
    )


def experts_touched(spec, tokens):
    """Expected distinct routed experts of one MoE layer used by ``tokens`` tokens.

    ``E * (1 - (1 - k/E)**(tokens**(1 - routing_skew)))``; 0 for a dense spec, ``E`` when
    every token uses every expert.

    Args:
        spec: the architecture.
        tokens: tokens in the pass (``batch x new_tokens``), >= 0.

    Examples:
        >>> from specsim import models
        >>> mixtral = models.get("mixtral-8x7b")
        >>> experts_touched(mixtral, 1.0)  # one token reads its top-2 experts
        2.0
        >>> round(experts_touched(mixtral, 5.0), 3)  # gamma = 4 verification at batch 1
        6.102
    """
    experts = spec.n_experts
    routed = experts > 0
    share = spec.experts_per_token / where(routed, experts, 1.0)
    missed = 1.0 - share
    partly = missed > 0
    independent = tokens ** (1.0 - spec.routing_skew)
    touched = experts * (1.0 - where(partly, missed, 0.5) ** independent)
    return where(routed, where(partly, touched, experts), 0.0 * experts)
