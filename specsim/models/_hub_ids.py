"""Hugging Face Hub ids of catalogue models (``hub_ids.toml``): what a serving engine loads."""

from __future__ import annotations

import functools

from .._registry import load_package_toml, normalise
from ._catalog import canonical_name

__all__ = ["hub_id"]


@functools.cache
def _table() -> dict[str, str]:
    """``{normalised catalogue name or alias: Hub id}``."""
    raw = load_package_toml("specsim.models", "hub_ids.toml")["hub_id"]
    return {normalise(name): repo for name, repo in raw.items()}


def hub_id(name: str) -> str | None:
    """The Hugging Face Hub repository of a catalogue model, or ``None`` if it has none.

    The name as given is looked up first, so an alias that names another release (
    ``"Llama-3.1-8B"``, priced as Llama-3-8B) gets its own repository; then the canonical
    entry's. Sources and conventions: ``specsim/models/hub_ids.toml``.

    Args:
        name: a catalogue name or alias.

    Raises:
        ValueError: ``name`` is not in the catalogue.

    Examples:
        >>> from specsim import models
        >>> models.hub_id("llama-3.1-8b"), models.hub_id("Llama-3-8B")
        ('meta-llama/Llama-3.1-8B', 'meta-llama/Meta-Llama-3-8B')
        >>> models.hub_id("Chinchilla-70B") is None
        True
    """
    canonical = canonical_name(name)
    table = _table()
    return table.get(normalise(name), table.get(normalise(canonical)))
