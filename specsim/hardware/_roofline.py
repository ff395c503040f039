"""Roofline primitives: time of an operation from its FLOPs and bytes."""

from __future__ import annotations

import math
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import struct

from .._numerics import AMOUNT, CHIPS, check_range
from ._fields import MIN_ROOFLINE_SHARPNESS
from ._spec import HardwareSpec

MEMORY_BOUND = 0
COMPUTE_BOUND = 1
BOUND_NAMES = ("memory", "compute")
# The roofline sharpness gradient searches use (``smooth=``): at most 2**(1/16) - 1 = 4.4%
# above the hard max, where compute and memory time are equal.
DEFAULT_SMOOTH = 16.0


def effective_flops_per_s(hardware: HardwareSpec, compute_dtype: str = "bf16"):
    """FLOP/s a large kernel reaches: peak for ``compute_dtype`` x ``compute_efficiency``.

    Examples:
        >>> from specsim import hardware
        >>> round(float(effective_flops_per_s(hardware.get("h100"))) / 1e12, 1)
        791.2
    """
    return hardware.peak_flops_per_s(compute_dtype) * hardware.compute_efficiency_for(compute_dtype)


def effective_hbm_bytes_per_s(hardware: HardwareSpec):
    """HBM bytes/s a streaming kernel reaches: ``hbm_bytes_per_s`` x ``memory_efficiency``.

    Examples:
        >>> from specsim import hardware
        >>> round(float(effective_hbm_bytes_per_s(hardware.get("h100"))) / 1e12, 4)
        2.9815
    """
    return hardware.hbm_bytes_per_s * hardware.memory_efficiency


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


# The smallest larger term smooth_max smooths: the ratio's derivative, lo / hi^2, leaves
# float32's range below about 1e-19; 1e-18 leaves a margin (as a time, 1e-18 s; as a count,
# far below one token).
_SMOOTH_FLOOR = 1e-18


def smooth_max(a, b, roofline_sharpness=DEFAULT_SMOOTH):
    """p-norm of two non-negative times: ``(a**p + b**p)**(1/p)``, ``p = roofline_sharpness``.

    For p >= 1 it is ``>= max(a, b)`` and at most ``2**(1/p)`` times it (4.4% for
    p = 16, only where both terms are equal); the non-binding term keeps a nonzero
    gradient, which the optimiser needs. Scale-free above 1e-18 (the hard max below),
    unlike log-sum-exp. p = +inf is the hard max, exactly (value and gradients); p may
    be traced. p in [0.1, 1) exceeds the sum (the two interfere), as calibration on a
    CPU finds.

    Examples:
        >>> float(smooth_max(1.0, 0.0))
        1.0
        >>> float(smooth_max(3.0, 4.0, 2.0)), float(smooth_max(3.0, 4.0, float("inf")))
        (5.0, 4.0)
    """
    a, b = jnp.asarray(a), jnp.asarray(b)
    p = jnp.asarray(roofline_sharpness)
    hi = jnp.maximum(a, b)
    lo = jnp.minimum(a, b)
    # Double `where`: a branch not taken sees safe inputs, so its gradient is finite
    # (0**p for p < 1 has an infinite derivative; p = inf gives inf / inf).
    finite = jnp.isfinite(p)
    safe_p = jnp.where(finite, p, 1.0)
    # A ratio below float32's smallest normal number may flush to 0 (XLA's CPU code
    # does), where log's derivative is infinite: such a term counts as 0. Below
    # _SMOOTH_FLOOR, the hard max.
    raw = lo / jnp.where(hi >= _SMOOTH_FLOOR, hi, 1.0)
    positive = (hi >= _SMOOTH_FLOOR) & (raw >= jnp.finfo(raw.dtype).tiny)
    ratio = jnp.where(positive, raw, 1.0)
    # The powers as exp(p log x): the same numbers to float32 rounding, and vectorised
    # on a CPU, where XLA's `pow` calls the scalar C library (about 4x slower in sweeps).
    powered = jnp.where(positive, jnp.exp(safe_p * jnp.log(ratio)), 0.0)
    return jnp.where(finite, hi * jnp.exp(jnp.log1p(powered) / safe_p), hi)


def overlap_max(a, b, sharpness):
    """``smooth_max(a, b, sharpness)``; the hard max where ``sharpness`` is ``None`` or inf.

    ``sharpness`` may be a traced leaf (``HardwareSpec.roofline_sharpness``); the
    double ``where`` keeps gradients finite on both branches.

    Examples:
        >>> float(overlap_max(3.0, 4.0, None)), float(overlap_max(3.0, 4.0, 1.0))
        (4.0, 7.0)
    """
    if sharpness is None:
        return jnp.maximum(a, b)
    sharpness = jnp.asarray(sharpness, jnp.result_type(float))
    finite = jnp.isfinite(sharpness)
    p = jnp.where(finite, sharpness, 1.0)
    return jnp.where(finite, smooth_max(a, b, p), jnp.maximum(a, b))


def roofline_time(
    flops,
    bytes_moved,
    hardware: HardwareSpec,
    compute_dtype: str = "bf16",
    smooth: float | None = None,
    compute_efficiency=None,
) -> RooflineTime:
    """Time of an operation doing ``flops`` and moving ``bytes_moved`` through HBM.

    The two times combine through the hard max (the catalogue's roofline:
    ``hardware.roofline_sharpness`` is ``None``), or through ``smooth_max`` with
    p = ``hardware.roofline_sharpness`` (e.g. fitted by ``specsim calibrate``), capped by
    ``smooth`` where that is smaller.

    Args:
        flops: floating-point operations (a multiply-add is 2).
        bytes_moved: bytes read from plus written to HBM.
        hardware: the chip.
        compute_dtype: static; which peak the FLOPs run at.
        smooth: ``None``, or a roofline sharpness to smooth at least this much (for
            gradient-based optimisation): p = min(``hardware.roofline_sharpness``,
            ``smooth``).
        compute_efficiency: fraction of the peak reached (default: the chip's for
            ``compute_dtype``, ``HardwareSpec.compute_efficiency_for``).

    Returns:
        ``RooflineTime`` with the total, both bounds and which one binds.

    Raises:
        ValueError: concrete ``flops`` or ``bytes_moved`` negative or not finite float32
            numbers (traced values are not checked).

    Examples:
        >>> from specsim import hardware
        >>> t = roofline_time(2e12, 1e9, hardware.get("h100"))
        >>> int(t.bound)  # 2 TFLOP over 1 GB is compute-bound on an H100
        1
    """
    check_range("flops", flops, *AMOUNT)
    check_range("bytes_moved", bytes_moved, *AMOUNT)
    peak = hardware.peak_flops_per_s(compute_dtype)
    if compute_efficiency is None:
        compute_efficiency = hardware.compute_efficiency_for(compute_dtype)
    compute_s = flops / (peak * compute_efficiency)
    memory_s = bytes_moved / effective_hbm_bytes_per_s(hardware)
    time_s = overlap_max(compute_s, memory_s, roofline_sharpness(hardware, smooth))
    bound = jnp.where(compute_s > memory_s, COMPUTE_BOUND, MEMORY_BOUND)
    return RooflineTime(time_s=time_s, compute_s=compute_s, memory_s=memory_s, bound=bound)


def roofline_sharpness(hardware: HardwareSpec, smooth: float | None = None):
    """The p a prediction uses: ``hardware.roofline_sharpness`` capped by ``smooth``.

    ``None`` (neither is set) is the hard max.

    Examples:
        >>> from specsim import hardware
        >>> h100 = hardware.get("h100")  # the catalogue's measured sharpness
        >>> float(roofline_sharpness(h100)), float(roofline_sharpness(h100, 1.5))
        (2.0, 1.5)
        >>> roofline_sharpness(h100.replace(roofline_sharpness=None)) is None
        True
    """
    p = hardware.roofline_sharpness
    if p is None or smooth is None:
        return smooth if p is None else p
    return jnp.minimum(p, smooth)


# Far beyond the p at which the smooth max equals the hard max in float32 (p itself overflows
# float32 near 3.4e38: a cast warning, then inf); larger values are refused.
MAX_SMOOTH = 1e6


def check_smooth(smooth) -> float | None:
    """``smooth`` as a float, or ``None``: the ``smooth=`` option of every prediction.

    ``smooth`` caps the roofline sharpness a prediction uses (see `roofline_sharpness`):
    a finite p >= 0.1. p < 1 is allowed (calibration finds compute and memory interfering
    on CPUs); ``None`` leaves the spec's sharpness as it is.

    Raises:
        ValueError: anything else, in the one-line style.

    Examples:
        >>> check_smooth(16), check_smooth(None)
        (16.0, None)
    """
    if smooth is None:
        return None
    valid = (
        f"None or a number in [{MIN_ROOFLINE_SHARPNESS:g}, {MAX_SMOOTH:g}] (a roofline sharpness p)"
    )
    if isinstance(smooth, bool) or not isinstance(smooth, int | float | np.integer | np.floating):
        raise ValueError(f"smooth {smooth!r}: not a number; valid: {valid}")
    if not (math.isfinite(smooth) and MIN_ROOFLINE_SHARPNESS <= smooth <= MAX_SMOOTH):
        raise ValueError(f"smooth {smooth!r}: out of range; valid: {valid}")
    return float(smooth)


# NCCL's low-latency (LL) protocol stores 8 bytes per 4 of data (a flag beside each word), so
# its ring reaches half the bus bandwidth: NCCL v2.28 src/graph/tuning.cc ("busBw * .5" for the
# ring's LL protocol; https://github.com/NVIDIA/nccl).
LL_BANDWIDTH_SHARE = 0.5


def allreduce_time(
    bytes_per_chip,
    tp,
    hardware: HardwareSpec,
    latency_floor_s=0.0,
    bandwidth_fraction=1.0,
    ring_latency_s=None,
):
    """All-reduce of ``bytes_per_chip`` over ``tp`` chips by the fastest algorithm, s.

    With the per-step latency ``h`` of the ring's bandwidth protocol, the per-step latency
    ``l`` of NCCL's low-latency protocol (``HardwareSpec.ll_latency_s``) and the achievable
    per-chip bandwidth ``B`` of the interconnect (``interconnect_bytes_per_s x
    interconnect_efficiency``), a runtime offers:

    * on switched fabrics (``interconnect_switched``: every peer one hop away), a
      latency-optimised kernel (TensorRT-LLM, vLLM and SGLang's custom all-reduce over
      peer memory, synchronised by flags as NCCL's LL protocol is) with its own fixed cost
      ``latency_floor_s`` and a fraction ``bandwidth_fraction`` of ``B``: one-shot (each
      chip reads every peer's buffer, ``floor + l + (tp - 1) bytes / (f B)``) or two-shot
      (reduce-scatter then all-gather, ``floor + 2 l + 2 (tp - 1)/tp bytes / (f B)``);
    * NCCL's ring, by whichever of its protocols is faster: the bandwidth protocol,
      ``ring floor + 2 (tp - 1) h + 2 (tp - 1)/tp bytes / B``, or LL,
      ``ring floor + 2 (tp - 1) l + 2 (tp - 1)/tp bytes / (B / 2)``
      (`LL_BANDWIDTH_SHARE`).

    The fastest binds: the small kernels or LL for decode messages, the bandwidth protocol
    for prefill. Zero at ``tp = 1``; ``tp`` may be a traced float (the fixed costs ramp in
    between 1 and 2).

    Left out of NCCL's model: its per-protocol base latencies (6.6 us for LL, 14 us for
    LL128, 8.4 us for Simple; one ``ring_latency_s`` here), its cap on LL's bandwidth
    (``llMaxBw``: 141 GB/s on Hopper, where half an H100's achievable bus bandwidth is
    169), its tree algorithm and NVLink SHARP.

    Args:
        bytes_per_chip: message size on each chip, bytes.
        tp: chips taking part.
        hardware: the chip (``interconnect_latency_s``, ``interconnect_ll_latency_s``,
            ``interconnect_bytes_per_s``, ``interconnect_efficiency``).
        latency_floor_s: fixed cost of the latency-optimised all-reduce, s.
        bandwidth_fraction: the fraction of ``B`` that kernel reaches.
        ring_latency_s: fixed cost of the ring all-reduce, s (default ``latency_floor_s``).

    Raises:
        ValueError: a concrete ``bytes_per_chip`` negative or not a finite float32 number,
            or ``tp`` below 1 (traced values are not checked).

    References:
        Thakur, Rabenseifner, Gropp, "Optimization of Collective Communication Operations
        in MPICH" (2005): ring and reduce-scatter/all-gather cost models. NCCL's tuning
        model (src/graph/tuning.cc): a base latency per collective, ``2 (tp - 1)`` steps
        of a per-protocol hardware latency, and each protocol's share of the bandwidth.

    Examples:
        >>> from specsim import hardware
        >>> float(allreduce_time(1e6, 1.0, hardware.get("h100")))
        0.0
        >>> round(float(allreduce_time(8192.0, 8.0, hardware.get("h100"), 5e-6)) * 1e6, 1)
        5.8
    """
    check_range("bytes_per_chip", bytes_per_chip, *AMOUNT)
    check_range("tp", tp, *CHIPS)
    ring_latency_s = latency_floor_s if ring_latency_s is None else ring_latency_s
    hop = hardware.interconnect_latency_s
    ll_hop = hardware.ll_latency_s()
    bandwidth = hardware.interconnect_bytes_per_s * hardware.interconnect_efficiency
    small = bandwidth * bandwidth_fraction
    share = (tp - 1.0) / tp
    steps, moved = 2.0 * (tp - 1.0), 2.0 * share * bytes_per_chip
    one_shot = latency_floor_s + ll_hop + (tp - 1.0) * bytes_per_chip / small
    two_shot = latency_floor_s + 2.0 * ll_hop + moved / small
    ring = ring_latency_s + steps * hop + moved / bandwidth
    ring_ll = ring_latency_s + steps * ll_hop + moved / (bandwidth * LL_BANDWIDTH_SHARE)
    parallel = jnp.clip(tp - 1.0, 0.0, 1.0)
    # On a torus of neighbour links (TPU ICI) only the ring exists.
    small_kernels = jnp.where(
        hardware.interconnect_switched > 0.5, jnp.minimum(one_shot, two_shot), jnp.inf
    )
    return parallel * jnp.minimum(small_kernels, jnp.minimum(ring, ring_ll))


def all_to_all_time(bytes_per_chip, n, hardware: HardwareSpec):
    """All-to-all among ``n`` chips, each sending ``bytes_per_chip`` spread evenly over all.

    ``(n - 1)`` steps each paying the per-hop latency, and the ``(n - 1) / n`` share of the
    bytes that leaves the chip at the per-direction link bandwidth:
    ``(n-1) latency + (n-1)/n * bytes / bandwidth``. Zero at ``n = 1``; ``n`` may be a
    traced float. This prices expert-parallel dispatch and combine.

    Raises:
        ValueError: a concrete ``bytes_per_chip`` negative or not a finite float32 number,
            or ``n`` below 1 (traced values are not checked).

    Examples:
        >>> from specsim import hardware
        >>> float(all_to_all_time(1e6, 1.0, hardware.get("h100")))
        0.0
    """
    check_range("bytes_per_chip", bytes_per_chip, *AMOUNT)
    check_range("n", n, *CHIPS)
    steps = n - 1.0
    return steps * hardware.interconnect_latency_s + (
        steps / n * bytes_per_chip / hardware.interconnect_bytes_per_s
    )
