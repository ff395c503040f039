"""The accelerator catalogue (``catalog.toml``): raw entries, looked up by forgiving names.

Plain data (no JAX); `specsim.hardware.get` turns an entry into a `HardwareSpec`.
"""

from __future__ import annotations

import math
from typing import Any

from .._registry import Registry, load_package_toml


def _load() -> dict[str, Any]:
    return load_package_toml("specsim.hardware", "catalog.toml")["hardware"]


_REGISTRY = Registry("hardware", _load)


def names() -> list[str]:
    """Canonical names of the catalogued accelerators.

    Examples:
        >>> from specsim import hardware
        >>> "H100 SXM" in hardware.names()
        True
    """
    return _REGISTRY.names()


def canonical_name(name: str) -> str:
    """The catalogue's display name for an alias (``"v5e"`` -> ``"TPU v5e"``)."""
    return _REGISTRY.canonical(name)


def entry(name: str) -> dict[str, Any]:
    """The raw catalogue entry (datasheet units, sources) for ``name``."""
    return dict(_REGISTRY.entry(name))


def board_power_w(name: str) -> float:
    """Board power of a catalogued chip at full load (TDP / TBP), W; ``nan`` where the
    catalogue has none.

    A fact about the chip, kept beside its datasheet numbers with its source
    (``entry(name)["sources"]["power"]``), not a number of the time model (so not a
    `HardwareSpec` leaf). ``specsim.serving`` prices tokens per joule with it.

    Raises:
        ValueError: an unknown name (the message names the closest valid ones).

    Examples:
        >>> from specsim import hardware
        >>> hardware.board_power_w("h100"), hardware.board_power_w("v5e")
        (700.0, nan)
    """
    return float(entry(canonical_name(name)).get("board_power_w", math.nan))
