"""One front door: `emit` a plan for an engine release, `write` the files to a folder."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from .._atomic import atomic_output
from ._files import EngineFiles
from ._plan import ServingPlan
from ._schema import EngineVersion, engine_name, resolve_version
from ._sglang import emit_sglang
from ._tensorrt_llm import emit_tensorrt_llm
from ._vllm import emit_vllm

__all__ = ["emit", "write"]

_EMITTERS = {"vllm": emit_vllm, "sglang": emit_sglang, "tensorrt-llm": emit_tensorrt_llm}


def emit(plan: ServingPlan, engine: str, version: str | EngineVersion | None = None) -> EngineFiles:
    """The serving files of ``plan`` for one release of one engine.

    Every key written is one the release's schema (``specsim/engines/schemas``) lists,
    and the result is checked against it (`check`) unless a model id is still a
    placeholder (then `EngineFiles.loadable` is False and the files say what to set).

    Args:
        plan: a `ServingPlan`.
        engine: ``"vllm"``, ``"sglang"`` or ``"tensorrt-llm"``.
        version: the engine release (``"0.34.0"``, ``"1.2.1"``; the newest named one if
            ``None``), or an `EngineVersion`. A release is served by the schema entry
            whose range holds it.

    Returns:
        `EngineFiles`.

    Raises:
        ValueError: an unknown engine or an unchecked release.
        UnsupportedPlan: the release cannot run the plan's method (a ``ValueError``).

    Examples:
        >>> from specsim import engines
        >>> plan = engines.ServingPlan.create(
        ...     "draft", "meta-llama/Meta-Llama-3-8B", [(1, 16, 4), (17, 64, 2), (65, 512, 0)],
        ...     draft_id="JackFram/llama-68m")
        >>> out = engines.emit(plan, "vllm", "0.34.0")
        >>> out.config["speculative_config"]["num_speculative_tokens_per_batch_size"]
        [[1, 16, 4], [17, 64, 2], [65, 512, 0]]
        >>> engines.emit(plan, "tensorrt-llm", "1.2.1").config["speculative_config"][
        ...     "draft_len_schedule"]
        {1: 4, 17: 2, 65: 0}
    """
    name = engine_name(engine)
    entry = version if isinstance(version, EngineVersion) else resolve_version(name, version)
    return _EMITTERS[name](plan, entry)


def write(outputs: Iterable[EngineFiles], out_dir: str | os.PathLike) -> list[str]:
    """Writes each engine's files under ``out_dir/<engine>/`` (scripts executable).

    Args:
        outputs: `EngineFiles`, one per engine.
        out_dir: the folder (created if missing).

    Returns:
        The paths written, in order.
    """
    written = []
    for output in outputs:
        folder = Path(out_dir) / output.engine
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in output.files.items():
            path = folder / name
            # (atomic: an interrupted or failed write leaves no file and no temporary; the
            # command line's folder check has already decided on overwriting)
            with atomic_output(path, overwrite=True, what="--out-dir file") as temporary:
                Path(temporary).write_text(text)
                if name.endswith(".sh"):
                    Path(temporary).chmod(0o755)
            written.append(str(path))
    return written
