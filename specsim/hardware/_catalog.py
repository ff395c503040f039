"""The accelerator catalogue (``catalog.toml``): raw entries, looked up by forgiving names.

Plain data (no JAX); `specsim.hardware.get` turns an entry into a `HardwareSpec`.
"""

from __future__ import annotations

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
