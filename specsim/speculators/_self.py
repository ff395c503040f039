"""Self-speculation: the target drafts for itself with fewer layers or a bounded cache.

Layer skipping (Draft & Verify, LayerSkip, SWIFT) drafts with ``draft_layers`` of the
target's layers; a bounded KV cache (StreamingLLM-style drafts in MagicDec, TriForce)
drafts attending to ``kv_budget_tokens`` cached tokens whatever the context length, which
is what makes drafting cheap at long context and large batch. Both can combine. No
extra weights; a bounded cache is an extra cache of ``kv_budget_tokens`` per sequence,
a layer-skipping draft shares the target's cache.

References:
    Zhang et al. (2024), "Draft & Verify", arXiv 2309.08168; Sadhukhan et al. (2025),
    "MagicDec", arXiv 2408.11049.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import struct

from .._cost import memory_footprint
from .._numerics import concrete
from .._quadrature import mean_step
from ._protocol import Method, chain_or_tree_tokens, check_leaf, register, sequential_proposal

__all__ = ["SelfSpeculation"]


@struct.dataclass
class SelfSpeculation:
    """The target drafting with a layer subset and/or a bounded KV cache.

    Attributes:
        draft_layers: layers run when drafting (<= the target's); a real number.
        kv_budget_tokens: cached tokens a draft step attends to (``inf``: the whole
            context).

    Examples:
        >>> from specsim.speculators import SelfSpeculation
        >>> s = SelfSpeculation.create(draft_layers=16, kv_budget_tokens=512)
        >>> float(s.draft_layers), float(s.kv_budget_tokens)
        (16.0, 512.0)
    """

    draft_layers: Any
    kv_budget_tokens: Any = float("inf")

    @classmethod
    def create(cls, draft_layers: float, kv_budget_tokens: float = float("inf")):
        """Validated self-speculation (``ValueError`` on non-positive sizes)."""
        spec = cls(
            draft_layers=jnp.asarray(draft_layers, jnp.float32),
            kv_budget_tokens=jnp.asarray(kv_budget_tokens, jnp.float32),
        )
        _check_leaves(spec)
        return spec


def _draft(spec: SelfSpeculation, target):
    # A layer subset keeps the target's mix of MoE and sliding-window layers.
    share = spec.draft_layers / target.n_layers
    return target.replace(
        n_layers=spec.draft_layers,
        n_moe_layers=target.n_moe_layers * share,
        n_local_layers=target.n_local_layers * share,
    )


def _proposal(spec: SelfSpeculation, deployment, shape, contexts, weights, smooth):
    draft = _draft(spec, deployment.target)
    hardware, batch, tp = deployment.hardware, deployment.workload.batch, deployment.tp
    attended = jnp.minimum(contexts, spec.kv_budget_tokens)

    runtime = deployment.resolved_runtime()

    def pass_step(new_tokens):
        return mean_step(draft, hardware, batch, new_tokens, attended, weights, tp, smooth, runtime)

    return sequential_proposal(pass_step, shape)


def _emitted_tokens(spec: SelfSpeculation, deployment, shape):
    return chain_or_tree_tokens(deployment.acceptance, shape)


def _memory_bytes(spec: SelfSpeculation, deployment, batch, context):
    draft = _draft(spec, deployment.target)
    bounded = spec.kv_budget_tokens < context
    budget = jnp.where(bounded, spec.kv_budget_tokens, 0.0)
    return memory_footprint(draft, batch, budget).kv_cache_bytes / deployment.tp


def _prefill_s(spec: SelfSpeculation, deployment, smooth):
    return jnp.zeros((), jnp.float32)  # the target's own prefill fills what the draft reads


def _check_leaves(spec: SelfSpeculation) -> None:
    check_leaf("SelfSpeculation.draft_layers", spec.draft_layers, lambda v: v > 0, "> 0")
    budget = concrete(spec.kv_budget_tokens)
    if budget is not None and not np.all(budget > 0):
        raise ValueError(
            f"SelfSpeculation.kv_budget_tokens must be > 0 (inf: the whole context), got {budget}"
        )


def _validate(spec: SelfSpeculation, deployment, shape) -> None:
    _check_leaves(spec)
    layers, target_layers = concrete(spec.draft_layers), concrete(deployment.target.n_layers)
    if layers is not None and target_layers is not None and np.any(layers > target_layers):
        raise ValueError(
            f"SelfSpeculation.draft_layers ({float(np.max(layers)):g}) must not exceed the "
            f"target's {float(np.min(target_layers)):g} layers"
        )


register(
    SelfSpeculation,
    Method(
        name="self",
        proposal=_proposal,
        emitted_tokens=_emitted_tokens,
        memory_bytes=_memory_bytes,
        prefill_s=_prefill_s,
        validate=_validate,
    ),
)
