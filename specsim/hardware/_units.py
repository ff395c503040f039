"""Datasheet units and their SI factors (plain Python, no JAX)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

TERA = 1e12
GIGA = 1e9
GIB = 2.0**30
MICRO = 1e-6


def hbm_capacity_bytes(entry: Mapping[str, Any], name: str = "hardware") -> float:
    """Device memory in bytes from a datasheet entry's ``hbm_gb`` (1e9) or ``hbm_gib`` (2^30).

    Raises:
        ValueError: neither or both keys, or a value that is not a number.

    Examples:
        >>> hbm_capacity_bytes({"hbm_gib": 16}) / 1e9
        17.179869184
    """
    if "hbm_gb" not in entry and "hbm_gib" not in entry:
        raise ValueError(f"{name}: missing required key 'hbm_gb' (or 'hbm_gib')")
    if "hbm_gb" in entry and "hbm_gib" in entry:
        raise ValueError(f"{name}: give exactly one of 'hbm_gb' or 'hbm_gib', not both")
    key, factor = ("hbm_gb", GIGA) if "hbm_gb" in entry else ("hbm_gib", GIB)
    value = entry[key]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name}: {key} must be a number, got {value!r}")
    return float(value) * factor
