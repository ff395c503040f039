"""`SLO`: latency targets a served request must meet.

Two targets, as serving benchmarks state them (vLLM's ``benchmark_serving``, DistServe):
time to first token (TTFT, arrival to first output token, queueing and prefill included)
and time per output token (TPOT, the mean gap between a request's later tokens:
``(finish - first token) / (output tokens - 1)``), each met at a percentile of requests.
A request meets the SLO when its own TTFT and TPOT are within the targets; *goodput* counts
only those (DistServe's definition).

References:
    Zhong et al. (2024), "DistServe: Disaggregating Prefill and Decoding for Goodput-optimized
    Large Language Model Serving", OSDI, section 2 (goodput, SLO attainment).
"""

from __future__ import annotations

import math
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import struct

__all__ = ["SLO"]


@struct.dataclass
class SLO:
    """Latency targets (traced leaves).

    Attributes:
        ttft_s: target time to first token, s (``inf``: none).
        tpot_s: target time per output token after the first, s (``inf``: none).
        percentile: share of requests, in percent (0, 100], that must meet each target.

    Examples:
        >>> slo = SLO.create(ttft_s=0.5, tpot_s=0.05)
        >>> float(slo.percentile)
        90.0
        >>> slo.met_by(np.array([0.2, 0.7]), np.array([0.01, 0.01])).tolist()
        [True, False]
    """

    ttft_s: Any
    tpot_s: Any
    percentile: Any

    @classmethod
    def create(
        cls, ttft_s: float = math.inf, tpot_s: float = math.inf, percentile: float = 90.0
    ) -> SLO:
        """Validated targets (``ValueError`` for a non-positive target or percentile)."""
        for name, value, ok, text in (
            ("ttft_s", ttft_s, lambda v: v > 0, "> 0 s (inf for none)"),
            ("tpot_s", tpot_s, lambda v: v > 0, "> 0 s (inf for none)"),
            ("percentile", percentile, lambda v: 0 < v <= 100, "in (0, 100]"),
        ):
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float | np.integer | np.floating)
                or math.isnan(value)
                or not ok(value)
            ):
                raise ValueError(f"SLO.{name} must be {text}, got {value!r}")
        if math.isinf(percentile):
            raise ValueError(f"SLO.percentile must be in (0, 100], got {percentile!r}")
        return cls(
            ttft_s=jnp.asarray(float(ttft_s), jnp.float32),
            tpot_s=jnp.asarray(float(tpot_s), jnp.float32),
            percentile=jnp.asarray(float(percentile), jnp.float32),
        )

    def met_by(self, ttft_s, tpot_s) -> np.ndarray:
        """Which requests meet both targets (NumPy; a NaN TPOT, one output token, passes)."""
        ttft_s, tpot_s = np.asarray(ttft_s), np.asarray(tpot_s)
        ttft_ok = ttft_s <= float(self.ttft_s)
        tpot_ok = np.isnan(tpot_s) | (tpot_s <= float(self.tpot_s))
        return ttft_ok & tpot_ok
