"""Nested ``jit`` calls inlined, so that transformations see one flat program.

The cost model calls many small jitted functions (``jax.numpy``'s own and a few of
specsim's). Traced inside ``vmap``, each call is a ``jit`` equation whose batching
rule traces the callee's program again, once per level of nesting and per pattern of
batched inputs: under a sweep's nested ``vmap`` s (one per grid axis) that re-tracing
is most of the tracing time. `inline_jits` traces the function once into a jaxpr and
replays its equations with the ``jit`` calls it makes (and those they make) expanded in
place, so each primitive is batched directly. The replayed program is the same
primitives in the same order (XLA inlines the calls anyway), with their source
locations and scope names. ``jit`` calls inside other sub-programs (custom derivatives,
loops, conditionals) are kept as they are.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
from jax._src import source_info_util  # (private: eval_jaxpr's way to keep source info)
from jax.extend import core as jax_core

__all__ = ["inline_jits"]

_JIT = frozenset({"jit", "pjit"})


def inline_jits(fn: Callable) -> Callable:
    """``fn`` as one flat program: the same primitives, its ``jit`` calls expanded in place.

    Every call traces ``fn`` at its arguments' shapes and dtypes (so call it under a
    transformation or an outer ``jit``, where it runs once per trace, not in a loop of
    eager calls) and evaluates the trace equation by equation, expanding ``jit``
    equations recursively. Arguments are traced, never static: Python numbers become
    traced values, as they would under an outer ``jit``.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> f = lambda x: jnp.clip(jnp.sin(x), 0.0, 0.5)  # jnp.clip is a nested jit
        >>> x = jnp.linspace(0.0, 3.0, 4)
        >>> bool((jax.vmap(inline_jits(f))(x) == jax.vmap(f)(x)).all())
        True
        >>> "jit" in str(jax.make_jaxpr(jax.vmap(inline_jits(f)))(x))
        False
    """

    @functools.wraps(fn)
    def flat(*args):
        closed, out_shape = jax.make_jaxpr(fn, return_shape=True)(*args)
        out = _evaluate(closed.jaxpr, closed.consts, jax.tree.leaves(args))
        return jax.tree.unflatten(jax.tree.structure(out_shape), out)

    return flat


def _evaluate(jaxpr, consts, args) -> list:
    """``jaxpr`` applied to ``args``, with ``jit`` equations expanded recursively."""
    env = {}

    def read(atom):
        return atom.val if isinstance(atom, jax_core.Literal) else env[atom]

    env.update(zip(jaxpr.constvars, consts, strict=True))
    env.update(zip(jaxpr.invars, args, strict=True))
    for eqn in jaxpr.eqns:
        operands = [read(atom) for atom in eqn.invars]
        name_stack = source_info_util.current_name_stack() + eqn.source_info.name_stack
        where = source_info_util.user_context(eqn.source_info.traceback, name_stack=name_stack)
        if eqn.primitive.name in _JIT:
            inner = eqn.params["jaxpr"]
            with where:
                results = _evaluate(inner.jaxpr, inner.consts, operands)
        else:
            params = eqn.primitive.get_bind_params(eqn.params)
            # (older jax returns sub-functions with the parameters)
            subfuns, params = params if isinstance(params, tuple) else ((), params)
            with where, eqn.ctx.manager:
                results = eqn.primitive.bind(*subfuns, *operands, **params)
            if not eqn.primitive.multiple_results:
                results = [results]
        for var, value in zip(eqn.outvars, results, strict=True):
            if not isinstance(var, jax_core.DropVar):
                env[var] = value
    return [read(atom) for atom in jaxpr.outvars]
