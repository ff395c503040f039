"""Is a fitted `HardwareSpec` physically plausible beside the device's micro-benchmarks?

A calibration fits efficiencies to measured step times, and an efficiency fitted above 1
is folded into its peak (``specsim._calibrate``). Where no measured pass is bound by a
resource (a grid of small networks on a CPU is bound by dispatch overheads), the fit does
not pin that resource down and its rate can drift to any value: a CPU "calibrated" at
exaFLOP/s and tens of TB/s predicts nonsense wherever that resource binds. The
micro-benchmarks that start the fit (``specsim.measure.local_hardware``: a large matmul,
a large copy) measure what the device sustains; a fitted rate far above them is refused
or flagged, never silently saved. So is a fitted count of extra weight passes
(``gemm_weight_passes``) beyond what a packing GEMM can make.
"""

from __future__ import annotations

from .hardware import HardwareSpec

__all__ = ["MAX_GEMM_WEIGHT_PASSES", "MAX_RATIO", "implausible_rates"]

# A fitted rate may exceed its micro-benchmark (which can run during a slow spell of a
# shared machine, or miss a faster kernel), but not by this factor.
MAX_RATIO = 3.0
# A GEMM that packs its weights writes a copy and reads it back: about two passes beyond
# a GEMV's one read (`benchmarks/gemm_rows_cpu.py` measures 1.0-2.7 on a 2-core EPYC).
# Twice that says the fit used the count to absorb another cost.
MAX_GEMM_WEIGHT_PASSES = 4.0


def implausible_rates(
    fitted: HardwareSpec,
    measured: HardwareSpec,
    *,
    compute_dtype: str = "bf16",
    max_ratio: float = MAX_RATIO,
) -> list[str]:
    """One message per effective rate of ``fitted`` above ``max_ratio`` x ``measured``'s.

    Effective rates are peak x efficiency: matmul FLOP/s in ``compute_dtype`` and memory
    bandwidth. Also flags ``gemm_weight_passes`` above ``MAX_GEMM_WEIGHT_PASSES``.

    Args:
        fitted: the calibrated spec.
        measured: the micro-benchmarked spec the fit started from.
        compute_dtype: the dtype the measured networks computed in.
        max_ratio: the largest plausible ratio fitted / measured.

    Returns:
        Messages (empty when the fit is plausible).

    Examples:
        >>> from specsim import hardware
        >>> nominal = hardware.get("h100")
        >>> implausible_rates(nominal.replace(memory_efficiency=0.8), nominal)
        []
        >>> fast = nominal.replace(hbm_bytes_per_s=nominal.hbm_bytes_per_s * 10)
        >>> print(implausible_rates(fast, nominal)[0])  # doctest: +ELLIPSIS
        fitted memory bandwidth 2.98e+13 B/s is 10x the copy micro-benchmark (2.98e+12 B/s)...
    """
    pairs = (
        (
            f"{compute_dtype} matmul rate",
            "FLOP/s",
            "matmul",
            fitted.peak_flops_per_s(compute_dtype) * fitted.compute_efficiency,
            measured.peak_flops_per_s(compute_dtype) * measured.compute_efficiency,
        ),
        (
            "memory bandwidth",
            "B/s",
            "copy",
            fitted.hbm_bytes_per_s * fitted.memory_efficiency,
            measured.hbm_bytes_per_s * measured.memory_efficiency,
        ),
    )
    messages = []
    for what, unit, benchmark, value, reference in pairs:
        value, reference = float(value), float(reference)
        ratio = value / reference
        if ratio > max_ratio:
            messages.append(
                f"fitted {what} {value:.3g} {unit} is {ratio:.3g}x the {benchmark} "
                f"micro-benchmark ({reference:.3g} {unit}), above the plausible {max_ratio:g}x: "
                "no measured pass is bound by it, so the fit does not determine it"
            )
    passes = float(fitted.gemm_weight_passes)
    if passes > MAX_GEMM_WEIGHT_PASSES:
        messages.append(
            f"fitted gemm_weight_passes {passes:.3g} is above the plausible "
            f"{MAX_GEMM_WEIGHT_PASSES:g}: a GEMM packing its weights writes and reads back "
            "about one copy of them, so the fit used the count to absorb another cost"
        )
    return messages
