"""Step times averaged over a growing context (Gauss-Legendre quadrature).

The KV cache grows from the prompt to the prompt plus the generation, so every step
time of a speculative iteration is averaged over that range. Shared by the throughput
core and the speculators' proposal costs.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ._cost import StepTime, binding_bound, step_time

__all__ = ["gauss_legendre", "mean_step"]


def gauss_legendre(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes in [0, 1] and weights summing to 1."""
    x, w = np.polynomial.legendre.leggauss(n)
    return (x + 1.0) / 2.0, w / 2.0


def mean_step(
    model, hardware, batch, new_tokens, contexts, weights, tp, smooth, runtime=None
) -> StepTime:
    """Quadrature-weighted mean of ``step_time`` over ``contexts``; bound from the means.

    ``runtime``: the software stack (``None``: the chip's default profile).

    The nodes are the last axis of the per-node step times, and the mean contracts that
    axis: in a sweep, where the node axis comes after every grid axis, the per-point parts
    of a step time then stay invariant along the innermost (node) loop, and the nodes of
    one point are contiguous. (Nodes first makes XLA compute the step times node by node
    over all points and transpose them for the product: several times slower on a CPU.)
    """
    steps = jax.vmap(
        lambda c: step_time(model, hardware, batch, new_tokens, c, tp, smooth, runtime),
        out_axes=-1,
    )(contexts)
    mean = jax.tree.map(lambda x: jnp.tensordot(x.astype(jnp.float32), weights, axes=1), steps)
    return mean.replace(bound=binding_bound(mean))
