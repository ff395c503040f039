"""``jax.jit`` with fast-compile options on the CPU, for programs compiled once and run
briefly (the searches, the schedule grid, the serving model): XLA's CPU compile time, not
the run, is what a user waits for there.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

import jax

from . import _executable_cache

__all__ = ["_backend_jit", "cpu_compiler_options"]

# XLA's CPU backend spends most of its compile time in LLVM optimisation passes that buy
# nothing measurable here (the search runs in milliseconds either way); level 0 cuts the
# compile of the search from ~17 s to ~6 s on a 2-core CPU. XLA's older emitter for fused
# kernels compiles the same HLO faster than its MLIR fusion emitters: `specsim optimize`
# from cold (no compilation cache) took 18.1-19.7 s instead of 24.2-24.7 s, with the same
# answer. Other backends keep defaults.
_CPU_COMPILER_OPTIONS = {"xla_backend_optimization_level": 0, "xla_cpu_use_fusion_emitters": False}


def cpu_compiler_options(options: dict[str, Any]) -> dict[str, Any]:
    """``options`` less the ones this jaxlib's XLA does not know (it refuses a program
    compiled with one; these are debug options, which come and go between versions)."""
    return {name: value for name, value in options.items() if _known_option(name, value)}


@functools.cache
def _known_option(name: str, value: Any) -> bool:
    try:  # one tiny program per option, once per process (~20 ms)
        jax.jit(lambda x: x, compiler_options={name: value}).lower(0.0).compile()
    except Exception:  # "No such compile option" (its error class differs across jaxlibs)
        return False
    return True


def _top_level() -> bool:
    """Whether no JAX trace is active (JAX's own test, which is private: a JAX without it
    counts as inside one, so the options are left out, never misplaced)."""
    try:
        from jax._src.core import trace_state_clean
    except ImportError:
        return False
    return bool(trace_state_clean())


def _backend_jit(fun=None, *, cpu_options=None, stored=None, **jit_kwargs):
    """``jax.jit`` with fast-compile options when the default backend is the CPU
    (``cpu_options``: XLA options to add to them there; options this jaxlib does not know
    are left out). Called inside another trace (a caller's ``jit``, ``vmap`` or ``grad``),
    a plain ``jax.jit``: XLA takes options for a top-level program only, so there the
    caller's program decides them. ``.jitted()`` gives the ``jax.jit`` object for the
    default backend and its compiler options (``None`` off the CPU).

    ``stored``: a name under which a top-level call's traced program is kept on disk
    (`specsim._executable_cache`, when its folder is set), so that a later process skips
    tracing it; for functions whose traced arguments all come before their static ones
    (``static_argnames``, whose values must ``repr`` the same in every process; with
    ``static_argnums`` or donated arguments it is a ``ValueError``). Any other call, every
    call inside another trace or under ``jax.disable_jit()``, and a program that cannot be
    exported, is a plain call."""
    if fun is None:
        return functools.partial(_backend_jit, cpu_options=cpu_options, stored=stored, **jit_kwargs)
    wanted = {**_CPU_COMPILER_OPTIONS, **(cpu_options or {})}
    elsewhere = jax.jit(fun, **jit_kwargs)
    names = jit_kwargs.get("static_argnames", ())
    static_names = frozenset((names,) if isinstance(names, str) else names)
    signature = inspect.signature(fun) if stored is not None else None
    unsupported = {"static_argnums", "donate_argnums", "donate_argnames"} & set(jit_kwargs)
    if stored is not None and unsupported:
        raise ValueError(
            f"stored={stored!r} supports static_argnames only, not {sorted(unsupported)} "
            "(the stored program is called without them)"
        )

    @functools.cache
    def on_cpu():  # built at the first call: which options are known needs the backend
        options = cpu_compiler_options(wanted)
        return jax.jit(fun, compiler_options=options, **jit_kwargs), options

    def jitted():
        return on_cpu() if jax.default_backend() == "cpu" else (elsewhere, None)

    @functools.wraps(fun)
    def call(*args, **kwargs):
        jitted_fun, options = jitted()
        top_level = _top_level()
        if options and not top_level:
            # Inside another trace (a caller's jit, vmap or grad) it is a nested jit, which
            # takes no compiler options: the program being traced decides them.
            jitted_fun = elsewhere
        if (
            signature is not None
            and top_level
            and _executable_cache.folder() is not None
            and not jax.config.jax_disable_jit
        ):
            split = _traced_then_static(signature, static_names, args, kwargs)
            if split is not None:
                traced, static = split
                return _executable_cache.call(
                    jitted_fun,
                    traced,
                    static,
                    name=stored,
                    static_key=repr(sorted(static.items())),
                    compiler_options=options,
                )
        return jitted_fun(*args, **kwargs)

    call.jitted = jitted
    return call


_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def _traced_then_static(signature, static_names, args, kwargs):
    """``(traced arguments in order, static arguments by name)`` of a call, or ``None``
    when a traced argument is keyword-only or follows a static one (then it cannot be
    passed positionally ahead of them)."""
    try:
        bound = signature.bind(*args, **kwargs)
    except TypeError:
        return None
    traced, static = [], {}
    for name, value in bound.arguments.items():
        kind = signature.parameters[name].kind
        if name in static_names:
            static[name] = value
        elif static or kind not in _POSITIONAL:
            return None
        else:
            traced.append(value)
    return tuple(traced), static
