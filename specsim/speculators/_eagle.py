"""EAGLE, EAGLE-2 and EAGLE-3: a one-layer draft head on the target's features.

EAGLE (Li et al., ICML 2024) drafts with an "autoregression head": an FC layer fusing
the target's last hidden state with the next token's embedding (``2 d -> d``), one
decoder layer at the target's width, and the target's (frozen, shared) LM head; it
drafts a static token tree, one pass per depth. EAGLE-2 (EMNLP 2024) keeps the head and
makes the tree dynamic (expand and verify the most confident nodes: a `DynamicTree`).
EAGLE-3 (NeurIPS 2025) fuses low, middle and high layers' features (``3 d -> d``),
feeds the decoder layer's attention with the fused feature and the embedding
concatenated (``2 d`` wide QKV input) and drafts over a reduced vocabulary with its own
LM head (32k tokens for Llama-3's 128k).

References:
    Li, Wei, Zhang, Zhang, arXiv 2401.15077 (EAGLE), 2406.16858 (EAGLE-2),
    2503.01840 (EAGLE-3); architecture as in SafeAILab/EAGLE ``model/cnets.py``.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
from flax import struct

from ._feature_head import head_memory_bytes, head_model, head_pass, head_prefill_s
from ._protocol import Method, chain_or_tree_tokens, check_leaf, register, sequential_proposal

__all__ = ["EAGLE3_DRAFT_VOCAB", "Eagle"]

# EAGLE-3's released Llama-3.1-8B head drafts over 32000 tokens (draft_vocab_size in its
# config.json, yuhuili/EAGLE3-LLaMA3.1-Instruct-8B); a smaller target vocabulary wins.
EAGLE3_DRAFT_VOCAB = 32000.0


@struct.dataclass
class Eagle:
    """An EAGLE-family draft head (traced float leaves; ``version`` is static).

    Attributes:
        n_layers: decoder layers of the head (1 in every released EAGLE head).
        fusion_inputs: width of the fusion FC's input in units of ``d_model`` (2 for
            EAGLE-1/2: feature and embedding; 3 for EAGLE-3: three layers' features).
        attention_inputs: width of the decoder layer's QKV input in units of ``d_model``
            (1; 2 for EAGLE-3, which concatenates the fused feature and the embedding).
        vocab: the head's own LM-head vocabulary; 0 shares the target's LM head.
        version: 1, 2 or 3 (static; names the method and its engine settings).

    Examples:
        >>> from specsim.speculators import Eagle
        >>> e3 = Eagle.create(version=3)
        >>> float(e3.fusion_inputs), float(e3.vocab)
        (3.0, 32000.0)
    """

    n_layers: Any = 1.0
    fusion_inputs: Any = 2.0
    attention_inputs: Any = 1.0
    vocab: Any = 0.0
    version: int = struct.field(pytree_node=False, default=2)

    @classmethod
    def create(cls, version: int = 2, *, n_layers: float = 1.0, vocab: float | None = None):
        """The head of EAGLE ``version`` (1, 2 or 3); ``vocab`` overrides the LM head
        (default: shared for 1 and 2, 32000 tokens for 3).

        Raises:
            ValueError: another version, or non-positive sizes.
        """
        if version not in (1, 2, 3):
            raise ValueError(f"EAGLE version must be 1, 2 or 3, got {version!r}")
        three = version == 3
        head = cls(
            n_layers=jnp.asarray(n_layers, jnp.float32),
            fusion_inputs=jnp.asarray(3.0 if three else 2.0, jnp.float32),
            attention_inputs=jnp.asarray(2.0 if three else 1.0, jnp.float32),
            vocab=jnp.asarray(
                (EAGLE3_DRAFT_VOCAB if three else 0.0) if vocab is None else vocab, jnp.float32
            ),
            version=version,
        )
        _validate(head, None, None)
        return head


def _fusion_weights(head: Eagle, target):
    qkv = target.d_model * (target.n_heads + 2.0 * target.n_kv_heads) * target.head_dim
    return head.fusion_inputs * target.d_model**2 + (head.attention_inputs - 1.0) * qkv


def _vocab(head: Eagle, target):
    return jnp.where(head.vocab > 0, jnp.minimum(head.vocab, target.vocab), 0.0)


def _model(head: Eagle, target):
    return head_model(target, head.n_layers, head.vocab)


def _proposal(head: Eagle, deployment, shape, contexts, weights, smooth):
    target = deployment.target
    pass_step = head_pass(
        deployment,
        contexts,
        weights,
        smooth,
        _model(head, target),
        _fusion_weights(head, target),
        head.fusion_inputs,
    )
    return sequential_proposal(pass_step, shape)


def _emitted_tokens(head: Eagle, deployment, shape):
    return chain_or_tree_tokens(deployment.acceptance, shape)


def _memory_bytes(head: Eagle, deployment, batch, context):
    target = deployment.target
    own_head = _vocab(head, target) * target.d_model
    return head_memory_bytes(
        deployment, _model(head, target), batch, context, _fusion_weights(head, target), own_head
    )


def _prefill_s(head: Eagle, deployment, smooth):
    target = deployment.target
    return head_prefill_s(
        deployment, smooth, _model(head, target), _fusion_weights(head, target), head.fusion_inputs
    )


def _validate(head: Eagle, deployment, shape) -> None:
    check_leaf("Eagle.n_layers", head.n_layers, lambda v: v > 0, "> 0")
    check_leaf("Eagle.fusion_inputs", head.fusion_inputs, lambda v: v >= 0, ">= 0")
    check_leaf("Eagle.attention_inputs", head.attention_inputs, lambda v: v >= 1, ">= 1")
    check_leaf("Eagle.vocab", head.vocab, lambda v: v >= 0, ">= 0 (0 shares the target's head)")


register(
    Eagle,
    Method(
        name="eagle",
        proposal=_proposal,
        emitted_tokens=_emitted_tokens,
        memory_bytes=_memory_bytes,
        prefill_s=_prefill_s,
        validate=_validate,
        name_of=lambda head: "eagle3" if head.version == 3 else "eagle",
    ),
)
