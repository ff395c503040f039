"""n-gram (prompt-lookup) speculation: drafts copied from the context, no model.

The last few generated tokens are looked up in the context (prompt and output so far);
where they occur, the tokens that followed are proposed as a chain of ``gamma`` drafts.
A sequence without a match decodes plainly (emits one token, verifies one). With match
probability ``p`` and acceptance given a match (the deployment's acceptance),

    E = p * E_match(gamma) + (1 - p),    verified tokens per sequence = 1 + p * gamma

(the verification batch is ragged: each sequence verifies what it proposed). The lookup
runs on the host: ``lookup_s`` per sequence per iteration.

References:
    Saxena (2023), prompt-lookup decoding; vLLM's ``ngram`` method
    (``vllm/v1/spec_decode/ngram_proposer.py``); TensorRT-LLM's n-gram blog
    (``docs/source/blogs/tech_blog/blog07_NGram_performance_Analysis_And_Auto_Enablement.md``).
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
from flax import struct

from .._acceptance import expected_tokens_per_step
from ._protocol import Method, Proposal, check_leaf, register

__all__ = ["DEFAULT_LOOKUP_S", "Ngram"]

# Host time to search one sequence's context per iteration. FALLBACK, not a measurement:
# a numba/C++ suffix match over a few thousand tokens takes microseconds; calibrate it.
DEFAULT_LOOKUP_S = 5e-6
_OVERHEAD_BOUND = 3  # index of "overhead" in STEP_BOUND_NAMES


@struct.dataclass
class Ngram:
    """n-gram lookup (traced float leaves).

    Attributes:
        match_probability: chance that a sequence finds a match in an iteration, [0, 1].
        lookup_s: host time of one sequence's lookup per iteration, s.

    Examples:
        >>> from specsim.speculators import Ngram
        >>> float(Ngram.create(match_probability=0.5).match_probability)
        0.5
    """

    match_probability: Any = 1.0
    lookup_s: Any = DEFAULT_LOOKUP_S

    @classmethod
    def create(cls, match_probability: float = 1.0, lookup_s: float = DEFAULT_LOOKUP_S) -> Ngram:
        """Validated n-gram lookup (``ValueError`` outside the documented ranges)."""
        ngram = cls(
            match_probability=jnp.asarray(match_probability, jnp.float32),
            lookup_s=jnp.asarray(lookup_s, jnp.float32),
        )
        _check_leaves(ngram)
        return ngram


def _proposal(ngram: Ngram, deployment, shape, contexts, weights, smooth):
    host_s = deployment.workload.batch * ngram.lookup_s
    speculating = jnp.clip(jnp.asarray(shape, jnp.float32), 0.0, 1.0)
    return Proposal(time_s=speculating * host_s, step_s=host_s, bound=_OVERHEAD_BOUND)


def _verification(ngram: Ngram, shape):
    return 1.0 + ngram.match_probability * jnp.asarray(shape, jnp.float32), None


def _emitted_tokens(ngram: Ngram, deployment, shape):
    matched = expected_tokens_per_step(deployment.acceptance, shape)
    p = ngram.match_probability
    return p * matched + (1.0 - p)


def _no_memory(ngram: Ngram, deployment, batch, context):
    return jnp.zeros((), jnp.float32)


def _no_prefill(ngram: Ngram, deployment, smooth):
    return jnp.zeros((), jnp.float32)


def _check_leaves(ngram: Ngram) -> None:
    check_leaf(
        "Ngram.match_probability",
        ngram.match_probability,
        lambda v: (v >= 0) & (v <= 1),
        "in [0, 1]",
    )
    check_leaf("Ngram.lookup_s", ngram.lookup_s, lambda v: v >= 0, ">= 0")


def _validate(ngram: Ngram, deployment, shape) -> None:
    from .._tree import is_tree

    if is_tree(shape):
        raise ValueError("n-gram lookup proposes a chain (one continuation), not a token tree")
    _check_leaves(ngram)


register(
    Ngram,
    Method(
        name="ngram",
        proposal=_proposal,
        verification=_verification,
        emitted_tokens=_emitted_tokens,
        memory_bytes=_no_memory,
        prefill_s=_no_prefill,
        validate=_validate,
        sampled_proposals=False,
    ),
)
