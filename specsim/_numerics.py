"""Small array helpers shared by every layer (no specsim imports)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def as_float(value):
    """``value`` as a JAX array with a floating dtype (integers are promoted)."""
    value = jnp.asarray(value)
    return value if jnp.issubdtype(value.dtype, jnp.floating) else value.astype(float)


def concrete(value) -> np.ndarray | None:
    """``value`` as a float64 NumPy array, or ``None`` while it is being traced.

    Public entry points validate concrete inputs and skip tracers (those are
    validated where the caller made them concrete).
    """
    if isinstance(value, jax.core.Tracer):
        return None
    return np.asarray(value, dtype=np.float64)


def where(condition, if_true, if_false):
    """``jnp.where`` that keeps Python numbers Python numbers.

    Architecture formulas run both on concrete specs (exact float64 parameter counts) and
    on traced ones; a Python condition picks a branch without promoting to float32.

    Examples:
        >>> where(2.0 > 0, 1.0, 3.0)
        1.0
    """
    if isinstance(condition, bool | np.bool_):
        return if_true if condition else if_false
    return jnp.where(condition, if_true, if_false)


def minimum(a, b):
    """``jnp.minimum`` that keeps two Python numbers a Python number (see ``where``)."""
    if isinstance(a, int | float) and isinstance(b, int | float):
        return min(a, b)
    return jnp.minimum(a, b)


def maximum(a, b):
    """``jnp.maximum`` that keeps two Python numbers a Python number (see ``where``)."""
    if isinstance(a, int | float) and isinstance(b, int | float):
        return max(a, b)
    return jnp.maximum(a, b)
