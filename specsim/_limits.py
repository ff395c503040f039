"""Limits on what one call may ask of this machine, checked before any work (no JAX here)."""

from __future__ import annotations

import os

__all__ = ["HOST_MEMORY_FRACTION", "physical_memory_bytes"]

# A result held in memory (a sweep's DataFrame) may use this fraction of physical memory.
HOST_MEMORY_FRACTION = 0.8


def physical_memory_bytes() -> int | None:
    """This machine's physical memory, bytes (``None`` where the OS does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):  # not a POSIX system
        return None


# The largest batch, token count and lookahead a prediction accepts. Far beyond any
# deployment (contexts of 10^7 tokens are the longest served), and small enough that
# float32 costs stay finite: prefill attention grows as prompt^2, and 2^30 tokens keep
# it below 1e30 FLOPs even for the largest catalogue models.
MAX_BATCH = 2**30
MAX_TOKENS = 2**30
MAX_GAMMA = 2**10
