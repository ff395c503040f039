"""Roofline primitives: time of an operation from its FLOPs and bytes."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
from flax import struct

from ._spec import HardwareSpec

MEMORY_BOUND = 0
COMPUTE_BOUND = 1
BOUND_NAMES = ("memory", "compute")
DEFAULT_SHARPNESS = 16.0


@struct.dataclass
class RooflineTime:
    """Time of one operation under the roofline.

    Attributes:
        time_s: the combined time, s (hard max, or the smooth max if requested).
        compute_s: FLOPs / (peak FLOP/s x compute efficiency), s.
        memory_s: bytes / (HBM bandwidth x memory efficiency), s.
        bound: 1 where compute binds, 0 where memory binds (``BOUND_NAMES`` indexes it).
    """

    time_s: Any
    compute_s: Any
    memory_s: Any
    bound: Any


def smooth_max(a, b, sharpness: float = DEFAULT_SHARPNESS):
    """p-norm of two non-negative times: ``(a**p + b**p)**(1/p)`` with ``p = sharpness``.

    Always ``>= max(a, b)`` and at most ``2**(1/p)`` times it (4.4% for the default
    p = 16, only where both terms are equal); the non-binding term keeps a nonzero
    gradient, which the optimiser needs. Scale-free, unlike log-sum-exp.

    Examples:
        >>> float(smooth_max(1.0, 0.0))
        1.0
    """
    a, b = jnp.asarray(a), jnp.asarray(b)
    hi = jnp.maximum(a, b)
    lo = jnp.minimum(a, b)
    safe_hi = jnp.where(hi > 0, hi, 1.0)
    ratio = jnp.where(hi > 0, lo / safe_hi, 0.0)
    return hi * (1.0 + ratio**sharpness) ** (1.0 / sharpness)


def roofline_time(
    flops,
    bytes_moved,
    hardware: HardwareSpec,
    compute_dtype: str = "bf16",
    smooth: float | None = None,
) -> RooflineTime:
    """Time of an operation doing ``flops`` and moving ``bytes_moved`` through HBM.

    Args:
        flops: floating-point operations (a multiply-add is 2).
        bytes_moved: bytes read from plus written to HBM.
        hardware: the chip.
        compute_dtype: static; which peak the FLOPs run at.
        smooth: ``None`` for the hard max (exact roofline), or the sharpness ``p`` of
            ``smooth_max`` (for gradient-based optimisation).

    Returns:
        ``RooflineTime`` with the total, both bounds and which one binds.

    Examples:
        >>> from specsim import hardware
        >>> t = roofline_time(2e12, 1e9, hardware.get("h100"))
        >>> int(t.bound)  # 2 TFLOP over 1 GB is compute-bound on an H100
        1
    """
    peak = hardware.peak_flops_per_s(compute_dtype)
    compute_s = flops / (peak * hardware.compute_efficiency)
    memory_s = bytes_moved / (hardware.hbm_bytes_per_s * hardware.memory_efficiency)
    time_s = (
        jnp.maximum(compute_s, memory_s)
        if smooth is None
        else smooth_max(compute_s, memory_s, smooth)
    )
    bound = jnp.where(compute_s > memory_s, COMPUTE_BOUND, MEMORY_BOUND)
    return RooflineTime(time_s=time_s, compute_s=compute_s, memory_s=memory_s, bound=bound)


def allreduce_time(bytes_per_chip, tp, hardware: HardwareSpec):
    """Ring all-reduce of ``bytes_per_chip`` over ``tp`` chips, s.

    A ring all-reduce takes ``2 (tp - 1)`` steps (reduce-scatter then all-gather),
    each paying the per-hop latency and moving ``bytes / tp`` per chip per
    direction: ``2 (tp-1) latency + 2 (tp-1)/tp * bytes / bandwidth``. Zero at
    ``tp = 1``; ``tp`` may be a traced float.

    Examples:
        >>> from specsim import hardware
        >>> float(allreduce_time(1e6, 1.0, hardware.get("h100")))
        0.0
    """
    steps = 2.0 * (tp - 1.0)
    return steps * hardware.interconnect_latency_s + (
        steps / tp * bytes_per_chip / hardware.interconnect_bytes_per_s
    )


def all_to_all_time(bytes_per_chip, n, hardware: HardwareSpec):
    """All-to-all among ``n`` chips, each sending ``bytes_per_chip`` spread evenly over all.

    ``(n - 1)`` steps each paying the per-hop latency, and the ``(n - 1) / n`` share of the
    bytes that leaves the chip at the per-direction link bandwidth:
    ``(n-1) latency + (n-1)/n * bytes / bandwidth``. Zero at ``n = 1``; ``n`` may be a
    traced float. This prices expert-parallel dispatch and combine.

    Examples:
        >>> from specsim import hardware
        >>> float(all_to_all_time(1e6, 1.0, hardware.get("h100")))
        0.0
    """
    steps = n - 1.0
    return steps * hardware.interconnect_latency_s + (
        steps / n * bytes_per_chip / hardware.interconnect_bytes_per_s
    )
