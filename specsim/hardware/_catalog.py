"""The accelerator catalogue (``catalog.toml``), looked up by forgiving names."""

from __future__ import annotations

import os
from typing import Any

from .._registry import Registry, load_package_toml
from ._spec import HardwareSpec


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


def get(name: str | os.PathLike) -> HardwareSpec:
    """Returns the ``HardwareSpec`` for a catalogue name/alias or a TOML file path.

    Args:
        name: e.g. ``"h100"``, ``"H100 SXM"``, ``"tpu-v5e"``, ``"v5e"``, or a path
            ending in ``.toml`` (a user-defined or calibrated spec).

    Raises:
        ValueError: unknown name (the message names the closest valid ones) or a
            bad TOML file.

    Examples:
        >>> from specsim import hardware
        >>> float(hardware.get("v5e").bf16_flops_per_s) / 1e12
        197.0
    """
    if isinstance(name, os.PathLike) or str(name).endswith(".toml"):
        return HardwareSpec.from_toml(name)
    canonical = _REGISTRY.canonical(name)
    return HardwareSpec.from_datasheet(_REGISTRY.entry(canonical), canonical)
