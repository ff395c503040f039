"""One style for messages about bad input: ``<what> <value>: <why>; valid: <choices>``.

The API names its arguments as Python spells them (``prompt_tokens``); the command
line prefixes ``specsim <command>: `` and names flags (``--prompt``). No JAX here.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["closest", "invalid", "relabel"]


def invalid(what: str, value, why: str, valid: str | Iterable[str] | None = None) -> ValueError:
    """A ``ValueError`` in the one message style.

    Args:
        what: the argument, field or flag (``"tp"``, ``"--tp"``, ``"h100.toml: hbm_tb_per_s"``).
        value: the offending value (shown with ``str``; strings as typed).
        why: what is wrong with it.
        valid: what would be accepted: a phrase, or choices joined with commas.

    Examples:
        >>> str(invalid("tp", 3, "does not divide the 32 attention heads", ["1", "2", "4"]))
        'tp 3: does not divide the 32 attention heads; valid: 1, 2, 4'
    """
    text = f"{what} {_show(value)}: {why}"
    if valid is not None:
        choices = valid if isinstance(valid, str) else ", ".join(map(str, valid))
        text += f"; valid: {choices}"
    return ValueError(text)


def _show(value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    text = str(value)
    return text if text.strip() and "\n" not in text else repr(value)


def closest(name: str, valid: Iterable[str], cutoff: float = 0.6) -> str | None:
    """The entry of ``valid`` closest to ``name`` (for "did you mean" messages), if any.

    Examples:
        >>> closest("hbm_bandwith", ["hbm_bandwidth", "bf16_tflops"])
        'hbm_bandwidth'
    """
    matches = difflib.get_close_matches(name, list(valid), n=1, cutoff=cutoff)
    return matches[0] if matches else None


def relabel(message: str, names: dict[str, str]) -> str:
    """``message`` with its leading ``<what>`` renamed by ``names`` (``{"model": "target"}``).

    Used where one layer reports another's error under its own name: a sweep reports an
    unknown ``model`` as its ``target`` axis, the command line reports ``prompt_tokens`` as
    ``--prompt``. A message whose ``<what>`` is not in ``names`` is returned unchanged.

    Examples:
        >>> relabel("model 'gpt-7': unknown model; valid: ...", {"model": "--target"})
        "--target 'gpt-7': unknown model; valid: ..."
    """
    for old, new in names.items():
        if message.startswith((old + " ", old + ":")):
            return new + message[len(old) :]
    return message
