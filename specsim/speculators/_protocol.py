"""The speculator protocol: what every speculation method tells the throughput core.

A speculator is a small frozen pytree (traced float leaves) that proposes draft tokens.
The core asks each one the same three questions, for a deployment (target, chip,
workload, acceptance), a *shape* (a chain's real-valued ``gamma`` or a token tree) and
the contexts of the quadrature over the growing KV cache:

1. **proposal**: how long drafting takes per iteration (which forward passes, of which
   shapes): `Proposal`.
2. **verification**: how many tokens per sequence the target verifies (``gamma + 1``,
   or the tree's nodes + 1 with a tree-attention mask), and how many extra cached
   tokens that mask costs to attend.
3. **emitted tokens**: the expected tokens per sequence per iteration, from the
   deployment's acceptance.

Plus the speculator's memory, its share of the prefill, its acceptance rate for the
report, and a check of concrete inputs. Implementations register per type
(`register`); the functions here dispatch on the Python type (static under ``jit``),
so each method lives in its own module and the core has one call path for all.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from .._acceptance import (
    SDSLAcceptance,
    TreeAcceptance,
    acceptance_rate,
    expected_tokens_per_step,
)
from .._numerics import concrete
from .._tree import (
    is_tree,
    tree_expected_tokens,
    tree_level_widths,
    tree_nodes,
)

__all__ = [
    "Method",
    "Proposal",
    "chain_or_tree_tokens",
    "draft_tokens",
    "emitted_tokens",
    "implementation",
    "memory_bytes",
    "method_name",
    "prefill_s",
    "proposal",
    "register",
    "report_acceptance_rate",
    "sampled_proposals",
    "sequential_proposal",
    "validate_speculation",
    "verification",
]


@struct.dataclass
class Proposal:
    """The drafting part of one speculative iteration.

    Attributes:
        time_s: drafting time per iteration (every proposal pass, host work), s.
        step_s: one proposal pass over one token per sequence, s (the report's
            ``draft_step_s``; for a method without passes, its per-iteration cost).
        bound: index into ``STEP_BOUND_NAMES`` of what binds that pass.
    """

    time_s: Any
    step_s: Any
    bound: Any


@dataclasses.dataclass(frozen=True)
class Method:
    """How one speculator type answers the protocol (plain functions, jit-traceable).

    Attributes:
        name: the method's name (``"draft"``, ``"eagle"``, ...).
        proposal: ``(spec, deployment, shape, contexts, weights, smooth) -> Proposal``.
        emitted_tokens: ``(spec, deployment, shape) -> E``.
        memory_bytes: ``(spec, deployment, batch, context) -> bytes per chip``.
        prefill_s: ``(spec, deployment, smooth) -> s`` of the speculator's prefill.
        validate: ``(spec, deployment, shape) -> None``, raising ``ValueError``.
        verification: ``(spec, shape) -> (new_tokens, extra_context or None)``.
        acceptance_rate: ``(spec, deployment) -> alpha`` for the report.
        name_of: ``spec -> name`` where one type serves several names (EAGLE versions).
        sampled_proposals: whether each proposed token comes with a distribution over the
            vocabulary that rejection sampling reads back (draft models, heads); False for
            drafts copied from the context (n-gram lookup), checked by exact match.
    """

    name: str
    proposal: Callable
    emitted_tokens: Callable
    memory_bytes: Callable
    prefill_s: Callable
    validate: Callable
    verification: Callable | None = None
    acceptance_rate: Callable | None = None
    name_of: Callable | None = None
    sampled_proposals: bool = True


_REGISTRY: dict[type, Method] = {}


def register(kind: type, method: Method) -> None:
    """Registers the implementation of speculator type ``kind``."""
    _REGISTRY[kind] = method


def implementation(speculator) -> Method:
    """The registered `Method` of ``speculator``'s type (``ValueError`` if none)."""
    method = _REGISTRY.get(type(speculator))
    if method is None:
        names = ", ".join(sorted(t.__name__ for t in _REGISTRY if _REGISTRY[t].name != "draft"))
        raise ValueError(
            f"draft must be a TransformerSpec (a draft model) or a speculator ({names}); "
            f"got {type(speculator).__name__}"
        )
    return method


def method_name(speculator) -> str:
    """The method's name: ``"draft"``, ``"eagle"``, ``"eagle3"``, ``"medusa"``, ..."""
    method = implementation(speculator)
    return method.name_of(speculator) if method.name_of else method.name


# --------------------------------------------------------------------------- dispatch


def proposal(speculator, deployment, shape, contexts, weights, smooth) -> Proposal:
    """Drafting time of one iteration (see `Proposal`)."""
    return implementation(speculator).proposal(
        speculator, deployment, shape, contexts, weights, smooth
    )


def verification(speculator, shape):
    """``(new_tokens per sequence, extra attended context or None)`` of verification."""
    method = implementation(speculator)
    if method.verification is not None:
        return method.verification(speculator, shape)
    return shape_verification(shape)


def sampled_proposals(speculator) -> bool:
    """Whether rejection sampling reads a distribution for each proposed token."""
    return implementation(speculator).sampled_proposals


def emitted_tokens(speculator, deployment, shape):
    """Expected tokens emitted per sequence per iteration (>= 1)."""
    return implementation(speculator).emitted_tokens(speculator, deployment, shape)


def memory_bytes(speculator, deployment, batch, context):
    """HBM the speculator adds per chip (weights, caches) at ``context`` tokens."""
    return implementation(speculator).memory_bytes(speculator, deployment, batch, context)


def prefill_s(speculator, deployment, smooth):
    """Time the speculator adds to the prompt's prefill, s."""
    return implementation(speculator).prefill_s(speculator, deployment, smooth)


def report_acceptance_rate(speculator, deployment):
    """Per-token acceptance rate for the report (see ``acceptance_rate``)."""
    method = implementation(speculator)
    if method.acceptance_rate is not None:
        return method.acceptance_rate(speculator, deployment)
    return acceptance_rate(deployment.acceptance)


# --------------------------------------------------------------------------- shapes


def draft_tokens(shape):
    """Draft tokens per iteration: a chain's gamma or a tree's node count."""
    return tree_nodes(shape) if is_tree(shape) else jnp.asarray(shape, jnp.float32)


def shape_verification(shape):
    """A chain verifies ``gamma + 1`` causal tokens. A tree verifies its ``T`` nodes
    plus the root under a tree mask: a dense masked kernel scores every tree token
    against every other, ``(T - D) / 2`` more than a causal chain of the same length
    on average for a tree of depth ``D`` (none for a chain, about ``(T + 1) / 2`` more
    for a wide tree); it is priced as attending that many more cached tokens."""
    if not is_tree(shape):
        return jnp.asarray(shape, jnp.float32) + 1.0, None
    widths = tree_level_widths(shape)
    nodes = jnp.sum(widths, axis=-1)
    depth = jnp.sum(jnp.clip(widths, 0.0, 1.0), axis=-1)
    return nodes + 1.0, (nodes - depth) / 2.0


def sequential_proposal(pass_step: Callable, shape, first_pass_tokens: float = 1.0) -> Proposal:
    """Drafting by sequential passes: a chain runs ``gamma`` passes of one token; a tree
    runs one pass per depth, pass ``d`` over the ``w_{d-1}`` nodes of the previous depth
    (``w_0 = 1``, the root; at least one token), counted with weight ``min(w_d, 1)`` so a
    fractional last depth is a fractional pass.

    ``first_pass_tokens`` is what the first pass feeds per sequence instead of one token.
    The draft-model speculator passes 2: its own KV cache never received its last
    proposal, so after an iteration that accepted every draft the cache misses that
    token, and a static-shape loop refeeds it with the target's token every iteration.
    (EAGLE, MTP and self-speculation keep 1: their passes are priced as one token each.)
    The first pass's weight stays ``min(gamma, 1)``, so the time is continuous at ``gamma
    = 0``; its derivative in ``gamma`` steps down at ``gamma = 1`` by what the second
    token adds (a small kink for optimisers crossing 1).

    Args:
        pass_step: ``new_tokens -> StepTime`` (mean over the contexts) of one pass.
        shape: a chain's gamma or a tree.
        first_pass_tokens: tokens per sequence of the first pass (>= 1, static).
    """
    if not is_tree(shape):
        gamma = jnp.asarray(shape, jnp.float32)
        if first_pass_tokens == 1.0:
            step = pass_step(1.0)
            return Proposal(time_s=gamma * step.time_s, step_s=step.time_s, bound=step.bound)
        # Both passes from one mapped program (one copy of the pass's model to compile).
        both = jax.vmap(pass_step)(jnp.asarray([1.0, first_pass_tokens], jnp.float32))
        step, first = (jax.tree.map(lambda v, i=i: v[i], both) for i in (0, 1))
        time_s = gamma * step.time_s + jnp.minimum(gamma, 1.0) * (first.time_s - step.time_s)
        return Proposal(time_s=time_s, step_s=step.time_s, bound=step.bound)
    widths = tree_level_widths(shape)
    # A pass processes at least one token per sequence (and a missing depth none: its
    # weight is 0; the floor keeps its unused cost finite).
    tokens_in = jnp.maximum(jnp.concatenate([jnp.ones(1, jnp.float32), widths[:-1]]), 1.0)
    tokens_in = tokens_in.at[0].set(float(first_pass_tokens))
    depth = tokens_in.shape[-1]
    if first_pass_tokens != 1.0:  # the one-token step, read from the same mapped program
        tokens_in = jnp.concatenate([tokens_in, jnp.ones(1, jnp.float32)])
    steps = jax.vmap(pass_step)(tokens_in)
    time_s = jnp.sum(jnp.clip(widths, 0.0, 1.0) * steps.time_s[:depth])
    one = 0 if first_pass_tokens == 1.0 else depth
    return Proposal(time_s=time_s, step_s=steps.time_s[one], bound=steps.bound[one])


def chain_or_tree_tokens(acceptance, shape, draft_params=None, target_params=None):
    """Expected tokens of a chain (``expected_tokens_per_step``) or a tree
    (`tree_expected_tokens`)."""
    if is_tree(shape):
        return tree_expected_tokens(acceptance, shape)
    return expected_tokens_per_step(acceptance, shape, draft_params, target_params)


# --------------------------------------------------------------------------- checks


def validate_speculation(speculator, deployment, shape) -> None:
    """Checks a speculator, its shape and its fit with the deployment's acceptance.

    Raises:
        ValueError: an unknown speculator type, invalid leaves, a negative gamma, a tree
            that is not a tree, a tree without per-rank acceptance (`TreeAcceptance`),
            or the SDSL law with a method other than a draft model.
    """
    method = implementation(speculator)
    if type(shape) is float or type(shape) is int:  # a plain chain: checked without NumPy
        if not (math.isfinite(shape) and shape >= 0):
            raise ValueError(f"gamma must be a real number >= 0, got {shape}")
    elif is_tree(shape):
        shape.validate()
        if not isinstance(deployment.acceptance, TreeAcceptance):
            raise ValueError(
                "a token tree needs TreeAcceptance (per-depth, per-rank acceptance "
                f"probabilities), got {type(deployment.acceptance).__name__}; a chain "
                "(a number gamma) works with any acceptance"
            )
    elif isinstance(shape, str | bool) or not _is_number(shape):
        raise ValueError(
            "the speculation shape must be a number gamma >= 0 (a chain), a TokenTree or a "
            f"DynamicTree, got {shape!r}"
        )
    else:
        value = concrete(shape)
        if value is not None and not np.all(np.isfinite(value) & (value >= 0)):
            raise ValueError(f"gamma must be a real number >= 0, got {shape}")
    if isinstance(deployment.acceptance, SDSLAcceptance) and method.name != "draft":
        raise ValueError(
            "SDSLAcceptance predicts a draft model's acceptance from its size; for "
            f"{method_name(speculator)} give measured acceptance (a rate, per-position rates "
            "or TreeAcceptance)"
        )
    method.validate(speculator, deployment, shape)


def check_leaf(name: str, value, ok: Callable, text: str) -> None:
    """``ValueError`` naming the leaf unless every concrete value satisfies ``ok``."""
    array = concrete(value)
    if array is not None and not np.all(np.isfinite(array) & ok(array)):
        raise ValueError(f"{name} must be {text}, got {np.asarray(array).tolist()}")


def _is_number(value) -> bool:
    """A real number or array of them (a traced gamma counts)."""
    if isinstance(value, jax.Array):
        return jnp.issubdtype(value.dtype, jnp.number)
    try:
        np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return False
    return True
