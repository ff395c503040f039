"""Clocks a measurement can read."""

from __future__ import annotations

import time

# Wall time, or CPU time of this process (all threads). On a CPU device running
# single-threaded XLA, process time equals the wall time the work would take on an idle
# core, and it is robust against other processes sharing the machine.
CLOCKS = {"wall": time.perf_counter, "process": time.process_time}


def clock_function(clock: str):
    """The time source named ``clock`` (a key of ``CLOCKS``).

    Raises:
        ValueError: an unknown clock name.

    Examples:
        >>> clock_function("wall") is time.perf_counter
        True
    """
    try:
        return CLOCKS[clock]
    except KeyError:
        raise ValueError(f"clock must be one of {sorted(CLOCKS)}, got {clock!r}") from None
