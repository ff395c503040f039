"""Name lookup shared by the hardware and model catalogues (forgiving aliases)."""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Callable, Mapping
from importlib import resources
from typing import Any


def normalise(name: str) -> str:
    """Lower-cases and keeps only letters, digits and dots: ``"TPU-v5e"`` -> ``"tpuv5e"``."""
    return re.sub(r"[^a-z0-9.]", "", name.lower())


def load_package_toml(package: str, filename: str) -> dict[str, Any]:
    """Reads a TOML data file shipped inside ``package``."""
    with resources.files(package).joinpath(filename).open("rb") as f:
        return tomllib.load(f)


class Registry:
    """Maps canonical names and aliases to catalogue entries, built lazily once.

    Args:
        kind: what the entries are (``"hardware"``, ``"model"``), used in messages.
        load: returns ``{canonical_name: entry_dict}``; each entry may have ``aliases``.
    """

    def __init__(self, kind: str, load: Callable[[], Mapping[str, Mapping[str, Any]]]):
        self._kind = kind
        self._load = load
        self._entries: dict[str, Mapping[str, Any]] | None = None
        self._index: dict[str, str] = {}

    def _ensure(self) -> None:
        if self._entries is not None:
            return
        entries = dict(self._load())
        index: dict[str, str] = {}
        for canonical, entry in entries.items():
            for alias in [canonical, *entry.get("aliases", [])]:
                key = normalise(alias)
                if index.get(key, canonical) != canonical:
                    raise ValueError(
                        f"{self._kind} alias {alias!r} names both {index[key]!r} and {canonical!r}"
                    )
                index[key] = canonical
        self._entries, self._index = entries, index

    def names(self) -> list[str]:
        """Canonical names in catalogue order."""
        self._ensure()
        return list(self._entries)

    def canonical(self, name: str) -> str:
        """The canonical name for ``name`` or a ``ValueError`` naming the closest valid ones."""
        self._ensure()
        if not isinstance(name, str):
            raise ValueError(f"{self._kind} {name!r}: not a name; valid: {', '.join(self.names())}")
        key = normalise(name)
        if key in self._index:
            return self._index[key]
        close = difflib.get_close_matches(key, list(self._index), n=3, cutoff=0.5)
        suggestions = list(dict.fromkeys(self._index[c] for c in close))
        hint = f", did you mean {' or '.join(map(repr, suggestions))}?" if suggestions else ""
        raise ValueError(
            f"{self._kind} {name!r}: unknown {self._kind}{hint}; valid: {', '.join(self.names())}"
        )

    def entry(self, name: str) -> Mapping[str, Any]:
        """The raw catalogue entry for ``name``."""
        canonical = self.canonical(name)
        return self._entries[canonical]  # type: ignore[index]
