"""The runtime-profile catalogue (``catalog.toml``), looked up by forgiving names."""

from __future__ import annotations

from typing import Any

from .._registry import Registry, load_package_toml
from ._spec import RuntimeProfile

DEFAULT = "default"


def _load() -> dict[str, Any]:
    return load_package_toml("specsim.runtime", "catalog.toml")["runtime"]


_REGISTRY = Registry("runtime", _load)


def names() -> list[str]:
    """Canonical names of the catalogued runtime profiles.

    Examples:
        >>> from specsim import runtime
        >>> "cuda-graphs" in runtime.names()
        True
    """
    return _REGISTRY.names()


def canonical_name(name: str) -> str:
    """The catalogue's name for an alias (``"gpt-fast"`` -> ``"cuda-graphs"``)."""
    return _REGISTRY.canonical(name)


def entry(name: str) -> dict[str, Any]:
    """The raw catalogue entry (datasheet units, sources) for ``name``."""
    return dict(_REGISTRY.entry(name))


def get(name: str = DEFAULT, hardware=None) -> RuntimeProfile:
    """The `RuntimeProfile` named ``name`` for a chip.

    Args:
        name: a catalogue name or alias (``"default"``, ``"cuda-graphs"``, ``"eager"``,
            ``"trtllm"``, ``"xla-tpu"``, ...).
        hardware: a `HardwareSpec` or a hardware catalogue name; profiles that take a
            chip's own overheads (``"default"``) need it.

    Raises:
        ValueError: unknown name (the message names the valid ones), or a profile that
            needs a chip without one.

    Examples:
        >>> from specsim import runtime
        >>> round(float(runtime.get("default", "a100").step_overhead_s) * 1e6)
        60
    """
    if isinstance(hardware, str):
        from .. import hardware as _hardware

        hardware = _hardware.get(hardware)
    canonical = _REGISTRY.canonical(name)
    return RuntimeProfile.from_datasheet(_REGISTRY.entry(canonical), hardware, canonical)


def default_for(hardware) -> RuntimeProfile:
    """The ``"default"`` profile on ``hardware``: the chip's catalogue overheads."""
    return get(DEFAULT, hardware)
