"""Medusa heads: ``k`` extra decoding heads on the target's last hidden state.

Head ``i`` predicts the token ``i + 1`` positions ahead from the same hidden state, so
all heads run at once, in one pass after verification, whatever the chain or tree they
feed: a chain of at most ``k`` tokens, or a tree of depth at most ``k`` built from each
head's top candidates (Medusa's sparse trees). Each head is ``head_layers`` residual
blocks (a ``d x d`` linear and SiLU) and its own LM head.

References:
    Cai et al. (2024), "Medusa", arXiv 2401.10774; heads as in FasterDecoding/Medusa
    ``medusa/model/medusa_model.py`` (``ResBlock`` and a ``d -> vocab`` linear per head).
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import struct

from .._numerics import concrete
from .._tree import is_tree, tree_level_widths
from ..hardware import roofline_time
from ._protocol import (
    Method,
    Proposal,
    chain_or_tree_tokens,
    check_leaf,
    draft_tokens,
    register,
)

__all__ = ["Medusa"]


@struct.dataclass
class Medusa:
    """Medusa heads (traced float leaves).

    Attributes:
        n_heads: number of heads ``k`` (the deepest draft position).
        head_layers: residual blocks per head.
        vocab: LM-head vocabulary of each head; 0 = the target's.

    Examples:
        >>> from specsim.speculators import Medusa
        >>> float(Medusa.create(n_heads=4).n_heads)
        4.0
    """

    n_heads: Any = 5.0
    head_layers: Any = 1.0
    vocab: Any = 0.0

    @classmethod
    def create(cls, n_heads: float = 5.0, head_layers: float = 1.0, vocab: float = 0.0) -> Medusa:
        """Validated heads (``ValueError`` on non-positive counts)."""
        heads = cls(
            n_heads=jnp.asarray(n_heads, jnp.float32),
            head_layers=jnp.asarray(head_layers, jnp.float32),
            vocab=jnp.asarray(vocab, jnp.float32),
        )
        _check_leaves(heads)
        return heads


def _weights(heads: Medusa, target):
    vocab = jnp.where(heads.vocab > 0, heads.vocab, target.vocab)
    return heads.n_heads * (heads.head_layers * target.d_model**2 + vocab * target.d_model)


def _proposal(heads: Medusa, deployment, shape, contexts, weights, smooth):
    target, hardware = deployment.target, deployment.hardware
    batch, tp = deployment.workload.batch, deployment.draft_tp
    matrices = _weights(heads, target)
    vocab = jnp.where(heads.vocab > 0, heads.vocab, target.vocab)
    io = (
        batch
        * heads.n_heads
        * ((2.0 * heads.head_layers + 1.0) * target.d_model + vocab)
        * target.activation_bytes
    )
    roofline = roofline_time(
        2.0 * batch * matrices / tp,
        (matrices * target.weight_bytes + io) / tp,
        hardware,
        target.compute_dtype,
        smooth,
    )
    kernels = heads.n_heads * (heads.head_layers + 1.0)
    pass_s = roofline.time_s + kernels * deployment.resolved_runtime().kernel_launch_s
    speculating = jnp.clip(draft_tokens(shape), 0.0, 1.0)
    return Proposal(time_s=speculating * pass_s, step_s=pass_s, bound=roofline.bound)


def _emitted_tokens(heads: Medusa, deployment, shape):
    return chain_or_tree_tokens(deployment.acceptance, shape)


def _memory_bytes(heads: Medusa, deployment, batch, context):
    target = deployment.target
    return _weights(heads, target) * target.weight_bytes / deployment.draft_tp


def _prefill_s(heads: Medusa, deployment, smooth):
    return jnp.zeros((), jnp.float32)  # heads read only the last hidden state


def _check_leaves(heads: Medusa) -> None:
    check_leaf("Medusa.n_heads", heads.n_heads, lambda v: v >= 1, ">= 1")
    check_leaf("Medusa.head_layers", heads.head_layers, lambda v: v >= 0, ">= 0")
    check_leaf("Medusa.vocab", heads.vocab, lambda v: v >= 0, ">= 0 (0 = the target's)")


def _validate(heads: Medusa, deployment, shape) -> None:
    _check_leaves(heads)
    n_heads = concrete(heads.n_heads)
    if n_heads is None:
        return
    if is_tree(shape):
        widths = concrete(tree_level_widths(shape))
        depth = 0 if widths is None else int(np.count_nonzero(widths > 0))
        what = f"a tree of depth {depth}"
    else:
        value = concrete(shape)
        depth = 0 if value is None else float(np.max(value))
        what = f"gamma {depth:g}"
    if depth > float(np.min(n_heads)) + 1e-6:
        raise ValueError(
            f"Medusa with {float(np.min(n_heads)):g} heads drafts at most that many positions "
            f"ahead, got {what}"
        )


register(
    Medusa,
    Method(
        name="medusa",
        proposal=_proposal,
        emitted_tokens=_emitted_tokens,
        memory_bytes=_memory_bytes,
        prefill_s=_prefill_s,
        validate=_validate,
    ),
)
