"""Multi-token prediction (MTP) modules shipped with the target (DeepSeek-V3 style).

An MTP module is one transformer block of the target's shape fed with the previous
depth's hidden state and the next token's embedding through a ``2 d -> d`` projection,
sharing the target's embedding and LM head. Serving engines draft with the modules in
sequence, one pass per draft token, and reuse the last module when the lookahead
exceeds the number of modules; structurally one pass is an EAGLE-1 pass whose layer is
the target's own block (an MoE block on an MoE target). The modules' weights are not
part of the target's footprint (`specsim.models.mtp_parameter_count` counts them as
checkpointed); they are added here, without the embedding and head, which engines
share with the target.

References:
    DeepSeek-AI (2024), "DeepSeek-V3 Technical Report", arXiv 2412.19437, Section 2.2.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
from flax import struct

from ._feature_head import head_memory_bytes, head_model, head_pass, head_prefill_s
from ._protocol import Method, chain_or_tree_tokens, check_leaf, register, sequential_proposal

__all__ = ["MTP"]

_FUSION_INPUTS = 2.0  # the projection takes [hidden state, embedding]


@struct.dataclass
class MTP:
    """The target's MTP modules (a traced float leaf).

    Attributes:
        n_modules: MTP modules shipped with the target (DeepSeek-V3: 1); they sit in
            memory; each draft pass runs one of them.

    Examples:
        >>> from specsim.speculators import MTP
        >>> float(MTP.create().n_modules)
        1.0
    """

    n_modules: Any = 1.0

    @classmethod
    def create(cls, n_modules: float = 1.0) -> MTP:
        """Validated MTP modules (``ValueError`` unless ``n_modules >= 1``)."""
        mtp = cls(n_modules=jnp.asarray(n_modules, jnp.float32))
        _validate(mtp, None, None)
        return mtp


def _fusion_weights(target):
    return _FUSION_INPUTS * target.d_model**2


def _block(target):
    return head_model(target, 1.0, 0.0, mixture=True)


def _proposal(mtp: MTP, deployment, shape, contexts, weights, smooth):
    target = deployment.target
    pass_step = head_pass(
        deployment,
        contexts,
        weights,
        smooth,
        _block(target),
        _fusion_weights(target),
        _FUSION_INPUTS,
    )
    return sequential_proposal(pass_step, shape)


def _emitted_tokens(mtp: MTP, deployment, shape):
    return chain_or_tree_tokens(deployment.acceptance, shape)


def _memory_bytes(mtp: MTP, deployment, batch, context):
    # Engines share the target's embedding and LM head with the modules.
    target = deployment.target
    one = head_memory_bytes(
        deployment, _block(target), batch, context, _fusion_weights(target), 0.0
    )
    return mtp.n_modules * one


def _prefill_s(mtp: MTP, deployment, smooth):
    # Every module sees the prompt once to fill its KV cache.
    target = deployment.target
    return mtp.n_modules * head_prefill_s(
        deployment, smooth, _block(target), _fusion_weights(target), _FUSION_INPUTS
    )


def _validate(mtp: MTP, deployment, shape) -> None:
    check_leaf("MTP.n_modules", mtp.n_modules, lambda v: v >= 1, ">= 1")


register(
    MTP,
    Method(
        name="mtp",
        proposal=_proposal,
        emitted_tokens=_emitted_tokens,
        memory_bytes=_memory_bytes,
        prefill_s=_prefill_s,
        validate=_validate,
    ),
)
