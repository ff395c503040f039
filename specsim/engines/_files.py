"""What an engine emitter returns, and the provenance header every emitted file carries."""

from __future__ import annotations

import dataclasses
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

from ._plan import ServingPlan, is_placeholder
from ._schema import EngineVersion

__all__ = [
    "EngineFiles",
    "UnsupportedPlan",
    "comment",
    "header_lines",
    "json_text",
    "ranges_text",
    "shell_command",
]


class UnsupportedPlan(ValueError):
    """The plan asks for something the engine release cannot do (e.g. Medusa in vLLM 0.34)."""


@dataclasses.dataclass(frozen=True)
class EngineFiles:
    """The files of one engine release for one `ServingPlan`.

    Attributes:
        engine: ``"vllm"``, ``"sglang"`` or ``"tensorrt-llm"``.
        version: the schema entry the files were checked against (`EngineVersion`).
        files: ``{relative path: text}``; the first one is the one to show.
        config: ``{section: {key: value}}``, the structured settings the files hold
            (what `specsim.engines.check` tests).
        notes: what the plan could not express in this release, or assumed.
    """

    engine: str
    version: EngineVersion
    files: Mapping[str, str]
    config: Mapping[str, Mapping[str, Any]]
    notes: tuple[str, ...] = ()

    @property
    def main(self) -> str:
        """The text of the first file (the command or snippet to start with)."""
        return next(iter(self.files.values()))

    @property
    def loadable(self) -> bool:
        """False while a model id is a placeholder (``<set --target-id: ...>``)."""
        return not any(
            is_placeholder(v) for section in self.config.values() for v in section.values()
        )


def ranges_text(ranges: Sequence[tuple[int, int, int]]) -> str:
    """``"1-16: 4, 17-64: 2, 65: 0"`` (batch sizes: lookahead).

    Examples:
        >>> ranges_text([(1, 16, 4), (17, 17, 0)])
        'batch 1-16: 4, 17: 0'
    """
    parts = [f"{a}-{b}: {k}" if b > a else f"{a}: {k}" for a, b, k in ranges]
    return "batch " + ", ".join(parts)


def header_lines(version: EngineVersion, plan: ServingPlan, notes: Sequence[str]) -> list[str]:
    """The comment lines (without ``#``) every file starts with: what was checked, where."""
    lines = [
        f"specsim: speculation settings for {version.label} (schema read from {version.name}; "
        f"covers {version.span})",
        f"read from: {version.artifact}",
        *(f"  {source}" for source in version.sources),
        f"method {plan.method}; target {plan.target_id}"
        + (f"; draft {plan.draft_id}" if plan.draft_id else "")
        + f"; tp {plan.tp}"
        + (f", draft tp {plan.draft_tp}" if plan.draft_id else ""),
        f"lookahead by batch size (specsim): {ranges_text(plan.ranges)}",
    ]
    if any(is_placeholder(v) for v in (plan.target_id, plan.draft_id)):
        lines.append(
            "NOT LOADABLE YET: replace the <set ...> placeholders (or pass --target-id / "
            "--draft-id to specsim schedule)"
        )
    lines += [f"note: {note}" for note in notes]
    return lines


def comment(lines: Sequence[str], mark: str = "#") -> str:
    """``lines`` as a comment block."""
    return "\n".join(f"{mark} {line}".rstrip() for line in lines) + "\n"


def shell_command(program: Sequence[str], args: Sequence[tuple[str, Any]]) -> str:
    """A POSIX shell command, one flag per line (``True`` values are bare flags).

    Examples:
        >>> print(shell_command(["vllm", "serve", "org/m"], [("--tp", 2), ("--x", True)]))
        exec vllm serve org/m \\
          --tp 2 \\
          --x
    """
    parts = ["exec " + " ".join(shlex.quote(str(p)) for p in program)]
    for flag, value in args:
        parts.append(flag if value is True else f"{flag} {_quote(value)}")
    return " \\\n  ".join(parts)


def json_text(config: Mapping[str, Any]) -> str:
    """``config`` as JSON, one key per line, each value on one line.

    Examples:
        >>> print(json_text({"a": [[1, 2, 3]], "b": "x"}))
        {
          "a": [[1, 2, 3]],
          "b": "x"
        }
    """
    import json

    body = ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in config.items())
    return "{\n" + body + "\n}"


def _quote(value: Any) -> str:
    text = str(value)
    if text.startswith('"$(dirname "$0")'):  # a path beside the script: keep it expandable
        return text
    return shlex.quote(text)
