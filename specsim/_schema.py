"""Strict reading of the entries of user files: known keys, types and ranges.

Every file specsim reads (hardware TOML, published measurements) goes through these
checks, so a typo or an impossible number is an error naming the file, the entry, the
key and what is valid, in one line::

    <file>: <entry>: <key> <value>: <why>; valid: <choices>

Plain Python (no JAX), so catalogue listings stay fast.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any


@dataclass(frozen=True)
class Rule:
    """Which numbers a key accepts.

    Attributes:
        accepts: ``True`` for a valid number (called with a float, never NaN-safe by itself).
        valid: the valid range in words, for messages (``"> 0 and finite"``).
    """

    accepts: Callable[[float], bool]
    valid: str

    def __call__(self, value: float) -> bool:
        return bool(self.accepts(value))


POSITIVE = Rule(lambda v: math.isfinite(v) and v > 0, "> 0 and finite")
NON_NEGATIVE = Rule(lambda v: math.isfinite(v) and v >= 0, ">= 0 and finite")
FRACTION = Rule(lambda v: 0 < v <= 1, "in (0, 1]")
ANY_FINITE = Rule(math.isfinite, "finite")


def closest(key: str, valid: Iterable[str], aliases: Mapping[str, str] | None = None) -> list[str]:
    """The valid keys closest to ``key``, best first (at most 3).

    Args:
        key: the unknown key.
        valid: the valid keys.
        aliases: other spellings of valid keys (e.g. the SI field name or the label of a
            datasheet key), matched too and reported as the key they stand for.

    Examples:
        >>> closest("hbm_bandwith", ["hbm_tb_per_s", "hbm_gb"], {"hbm_bandwidth": "hbm_tb_per_s"})
        ['hbm_tb_per_s']
    """
    spellings = {v: v for v in valid} | dict(aliases or {})
    near = difflib.get_close_matches(key.lower(), list(spellings), n=6, cutoff=0.6)
    return list(dict.fromkeys(spellings[n] for n in near))[:3]


def message(where: str, key: str, value: Any, why: str, valid: str) -> str:
    """One line: ``<where>: <key> <value>: <why>; valid: <valid>``.

    A ``value`` that is not a plain scalar (a table, a list) is left out.

    Examples:
        >>> message("chip.toml: Lab GPU", "memory_efficiency", 2.0, "out of range", "in (0, 1]")
        'chip.toml: Lab GPU: memory_efficiency 2.0: out of range; valid: in (0, 1]'
    """
    if isinstance(value, Decimal):
        value = float(value)
    shown = f" {value!r}" if isinstance(value, int | float | str) else ""
    prefix = f"{where}: " if where else ""
    return f"{prefix}{key}{shown}: {why}; valid: {valid}"


def check_keys(
    entry: Mapping[str, Any],
    valid: Iterable[str],
    where: str,
    aliases: Mapping[str, str] | None = None,
) -> None:
    """Raises ``ValueError`` for the first key of ``entry`` not in ``valid``.

    The message names the closest valid keys (see `closest`), then all of them.

    Examples:
        >>> check_keys({"hbm_gbs": 80}, ["hbm_gb", "year"], "x.toml")
        Traceback (most recent call last):
        ...
        ValueError: x.toml: hbm_gbs 80: unknown key (did you mean hbm_gb?); valid: hbm_gb, year
    """
    valid = sorted(valid)
    for key, value in entry.items():
        if key not in valid:
            near = closest(key, valid, aliases)
            why = f"unknown key (did you mean {' or '.join(near)}?)" if near else "unknown key"
            raise ValueError(message(where, key, value, why, ", ".join(valid)))


def number(where: str, key: str, value: Any, rule: Rule = ANY_FINITE) -> float:
    """``value`` as a float if it is a number (not a bool) that ``rule`` accepts.

    ``value`` may be an ``int``, a ``float`` or a ``Decimal`` (TOML read exactly).

    Raises:
        ValueError: a non-number or a number outside ``rule``, in the one-line style.

    Examples:
        >>> number("chip", "kernel_launch_us", 4)
        4.0
        >>> number("chip", "compute_efficiency", 1.5, FRACTION)
        Traceback (most recent call last):
        ...
        ValueError: chip: compute_efficiency 1.5: out of range; valid: in (0, 1]
    """
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise ValueError(message(where, key, value, "not a number", f"a number {rule.valid}"))
    if not rule(float(value)):
        raise ValueError(message(where, key, value, "out of range", rule.valid))
    return float(value)


def text(where: str, key: str, value: Any) -> str:
    """``value`` if it is a string (``ValueError`` otherwise)."""
    if not isinstance(value, str):
        raise ValueError(message(where, key, value, "not a string", "a quoted string"))
    return value


@dataclass(frozen=True)
class Key:
    """What one key of an entry holds.

    Attributes:
        kind: ``"number"``, ``"string"`` or ``"bool"``.
        rule: the valid numbers (``kind == "number"``).
        choices: the valid strings, if only some are (``kind == "string"``).
        required: the entry must have it.
    """

    kind: str
    rule: Rule = ANY_FINITE
    choices: tuple[str, ...] = ()
    required: bool = False


def check_entry(entry: Any, keys: Mapping[str, Key], where: str) -> None:
    """Checks a table against its keys: no unknown key, every required one, types, ranges.

    Raises:
        ValueError: the first problem, in the one-line style.

    Examples:
        >>> keys = {"batch": Key("number", POSITIVE, required=True), "note": Key("string")}
        >>> check_entry({"batch": 0}, keys, "data.toml: row 1")
        Traceback (most recent call last):
        ...
        ValueError: data.toml: row 1: batch 0: out of range; valid: > 0 and finite
    """
    if not isinstance(entry, Mapping):
        raise ValueError(message("", where, entry, "not a table", "a [table] of keys"))
    check_keys(entry, keys, where)
    for name, key in keys.items():
        if name not in entry:
            if key.required:
                raise ValueError(f"{where}: missing required key {name!r}")
            continue
        value = entry[name]
        if key.kind == "number":
            number(where, name, value, key.rule)
        elif key.kind == "bool":
            if not isinstance(value, bool):
                raise ValueError(message(where, name, value, "not true or false", "a boolean"))
        else:
            text(where, name, value)
            if key.choices and value not in key.choices:
                raise ValueError(message(where, name, value, "unknown", ", ".join(key.choices)))
