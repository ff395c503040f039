"""Limits on what one call may ask of this machine, checked before any work (no JAX here).

``MAX_BATCH``, ``MAX_TOKENS`` and ``MAX_GAMMA`` bound a prediction's batch, token counts
and lookahead: far beyond any deployment, and small enough that float32 costs stay finite.
A result held in memory (a sweep's DataFrame) may use ``HOST_MEMORY_FRACTION`` of
`physical_memory_bytes`.

Examples:
    >>> from specsim import limits
    >>> limits.MAX_BATCH == limits.MAX_TOKENS == 2**30, limits.MAX_GAMMA
    (True, 1024)
    >>> limits.physical_memory_bytes() > 0
    True
"""

from ._limits import HOST_MEMORY_FRACTION as HOST_MEMORY_FRACTION
from ._limits import MAX_BATCH as MAX_BATCH
from ._limits import MAX_GAMMA as MAX_GAMMA
from ._limits import MAX_TOKENS as MAX_TOKENS
from ._limits import physical_memory_bytes as physical_memory_bytes

__all__ = ["HOST_MEMORY_FRACTION", "MAX_BATCH", "MAX_GAMMA", "MAX_TOKENS", "physical_memory_bytes"]
