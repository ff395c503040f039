"""Which inputs each output of a traced function depends on (jaxpr data flow).

A sweep evaluates report fields over a Cartesian grid; most fields depend on a few of
its axes only (a draft step does not depend on the target or on alpha). Knowing which,
the sweep kernel returns every field at its own, un-broadcast shape, and nothing is
replicated on the device or copied to the host until a caller asks for rows.

The answer is a conservative over-approximation: an output is said to depend on every
input that reaches it through the traced operations (``x * 0`` still depends on ``x``).
Call-like primitives (``jit``, custom derivatives) are followed inside; any other
primitive with sub-programs (loops, conditionals) makes each output depend on all of
its operands.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
from jax.extend import core as jax_core

__all__ = ["output_dependence"]

# Primitives whose sub-program maps operands to results one to one, once.
_CALLS = frozenset(
    {
        "jit",
        "pjit",
        "closed_call",
        "core_call",
        "remat",
        "checkpoint",
        "custom_jvp_call",
        "custom_vjp_call",
        "custom_vjp_call_jaxpr",
    }
)


def output_dependence(fn: Callable, *args) -> tuple[list[frozenset[int]], object]:
    """Input leaves each output leaf of ``fn(*args)`` depends on.

    Args:
        fn: a JAX-traceable function.
        *args: example arguments (pytrees of arrays or shape-dtype structs).

    Returns:
        ``(dependence, out_tree)``: for every output leaf (flattening order), the set
        of indices of input leaves (flattening order of ``args``) it depends on; and
        the output's tree structure.

    Examples:
        >>> import jax.numpy as jnp
        >>> deps, _ = output_dependence(lambda x, y: (x * 2, jnp.sin(y) + x, 1.0), 1.0, 2.0)
        >>> [sorted(d) for d in deps]
        [[0], [0, 1], []]
    """
    closed, out_shape = jax.make_jaxpr(fn, return_shape=True)(*args)
    jaxpr = closed.jaxpr
    dependence = _propagate(jaxpr, [frozenset({i}) for i in range(len(jaxpr.invars))])
    return dependence, jax.tree.structure(out_shape)


def _propagate(jaxpr, inputs: Sequence[frozenset[int]]) -> list[frozenset[int]]:
    env: dict = dict(zip(jaxpr.invars, inputs, strict=True))

    def read(var) -> frozenset[int]:
        if isinstance(var, jax_core.Literal):
            return frozenset()
        return env.get(var, frozenset())  # constants depend on nothing

    for eqn in jaxpr.eqns:
        operands = [read(v) for v in eqn.invars]
        callee = _callee(eqn)
        if callee is not None:
            results = _propagate(callee, operands)
        else:
            union = frozenset().union(*operands)
            results = [union] * len(eqn.outvars)
        for var, dependence in zip(eqn.outvars, results, strict=True):
            env[var] = dependence
    return [read(v) for v in jaxpr.outvars]


def _callee(eqn):
    """The sub-program of a call-like equation, if its signature matches the equation's."""
    if eqn.primitive.name not in _CALLS:
        return None
    for key in ("jaxpr", "call_jaxpr", "fun_jaxpr"):
        sub = eqn.params.get(key)
        sub = getattr(sub, "jaxpr", sub)  # ClosedJaxpr -> Jaxpr
        if (
            isinstance(sub, jax_core.Jaxpr)
            and len(sub.invars) == len(eqn.invars)
            and len(sub.outvars) == len(eqn.outvars)
        ):
            return sub
    return None
