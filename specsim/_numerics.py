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
