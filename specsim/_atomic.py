"""Output files written atomically: a file under its final name is always complete.

Every file specsim writes (sweep tables, charts, fitted hardware TOML, validation
reports) goes through `atomic_output`: the content is written to a hidden temporary
file in the target folder and renamed onto the final name only when it is complete.
An interrupted or failed run therefore leaves nothing under the final name (the
temporary file is removed), and two runs writing the same name at once cannot both
claim success: the rename is checked, under a lock on the folder, against the state
of the final name when the run started.

`check_output_path` runs the same checks up front, so a bad path is refused before
any work is done.

No JAX, NumPy or pandas here: the command line checks paths before starting them.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

__all__ = ["atomic_output", "check_output_path", "committed_paths", "hold_interrupts"]

# Set by the command line: once an output is committed, Ctrl-C no longer interrupts the
# run (what is left is printing), so an interrupted run never leaves a file behind.
_HOLD_AFTER_COMMIT = False
_COMMITTED: list[str] = []


def hold_interrupts(enabled: bool = True) -> None:
    """After an output is committed, ignore SIGINT (Ctrl-C) for the rest of the run.

    The command line sets this so that ``exit 130`` always means "nothing was written":
    an interrupt that arrives after a rename is ignored, and the run finishes.
    """
    global _HOLD_AFTER_COMMIT
    _HOLD_AFTER_COMMIT = enabled


def committed_paths() -> list[str]:
    """The outputs committed so far by this process, in order."""
    return list(_COMMITTED)


def _state(path: Path) -> tuple[int, int, int] | None:
    """Identity of the file at ``path`` (device, inode, mtime), or ``None`` if absent."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino, st.st_mtime_ns


def check_output_path(
    path: str | os.PathLike,
    *,
    what: str = "path",
    suffixes: Sequence[str] | None = None,
    overwrite: bool = False,
    overwrite_hint: str = "overwrite=True",
    make_parents: bool = False,
) -> Path:
    """Refuses an output path that cannot be written, before any work is done.

    Args:
        path: the file to write.
        what: how the path is named in messages (``"out"`` in the API, ``"--out"`` on
            the command line).
        suffixes: allowed suffixes (lower case, with the dot), or ``None`` for any.
        overwrite: whether an existing file may be replaced.
        overwrite_hint: how the caller allows that (``"--overwrite"`` on the CLI).
        make_parents: missing parent folders will be created (their nearest existing
            ancestor must then be writable).

    Returns:
        The path, with ``~`` expanded.

    Raises:
        ValueError: a wrong suffix, a folder, a missing or unwritable parent folder,
            or an existing file without ``overwrite``.

    Examples:
        >>> import tempfile, os
        >>> folder = tempfile.mkdtemp()
        >>> check_output_path(os.path.join(folder, "a.csv"), suffixes=(".csv",)).name
        'a.csv'
        >>> check_output_path(os.path.join(folder, "no", "a.csv"), what="out")
        Traceback (most recent call last):
        ...
        ValueError: out ...: folder ... does not exist; valid: a path in an existing folder
    """
    text = os.fspath(path)
    if not text.strip():
        raise ValueError(f"{what} {text!r}: empty path; valid: a file name")
    target = Path(text).expanduser()
    if suffixes is not None and not target.name.lower().endswith(tuple(suffixes)):
        raise ValueError(
            f"{what} {text}: unknown file type; valid: a name ending in {', '.join(suffixes)}"
        )
    if target.is_dir():
        raise ValueError(f"{what} {text}: is a folder; valid: a file name")
    parent = target.parent
    if make_parents:
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
    if not parent.is_dir():
        raise ValueError(
            f"{what} {text}: folder {str(target.parent)!r} does not exist; "
            "valid: a path in an existing folder"
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(
            f"{what} {text}: folder {str(parent)!r} is not writable; valid: a writable folder"
        )
    if target.exists() and not overwrite:
        raise ValueError(
            f"{what} {text}: file exists; valid: a new name, or {overwrite_hint} to replace it"
        )
    return target


@contextlib.contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``folder`` (no lock file left behind)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: the rename alone is atomic
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


@contextlib.contextmanager
def _interrupts_deferred() -> Iterator[None]:
    """Ctrl-C held back while a rename and its bookkeeping run (main thread only).

    SIGINT may be delivered to any thread, so it is not masked but caught: a Python
    handler records it, and it is raised once the block is done (or, after a commit in
    command-line mode, ignored for good: the run is as good as finished).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    committed = False
    try:
        yield
        committed = True
    finally:
        if committed and _HOLD_AFTER_COMMIT:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        else:
            signal.signal(signal.SIGINT, previous)
            if received:
                raise KeyboardInterrupt


@contextlib.contextmanager
def atomic_output(
    path: str | os.PathLike,
    *,
    overwrite: bool = False,
    what: str = "path",
    overwrite_hint: str = "overwrite=True",
    make_parents: bool = False,
) -> Iterator[str]:
    """Yields a temporary path to write; on success it becomes ``path`` atomically.

    The temporary file lives in the target folder (so the final rename never crosses
    file systems) under a hidden name ending in the final suffix. If the block raises,
    or is interrupted, the temporary file is removed and nothing appears under
    ``path``. On success the rename is done under a lock on the folder and only if
    ``path`` is as it was when the block began: another run that wrote it meanwhile
    makes this one fail instead of both claiming success. Without ``overwrite`` an
    existing file is never replaced (the last step is a hard link, which fails if the
    name is taken).

    Args:
        path: the final file name.
        overwrite: replace an existing file.
        what: how the path is named in messages.
        overwrite_hint: how the caller allows overwriting (for messages).
        make_parents: create missing parent folders.

    Raises:
        ValueError: the path cannot be written (see `check_output_path`), or another
            run wrote it while this one ran.

    Examples:
        >>> import pathlib, tempfile
        >>> target = pathlib.Path(tempfile.mkdtemp()) / "table.csv"
        >>> with atomic_output(target) as tmp:
        ...     _ = pathlib.Path(tmp).write_text("a,b")
        >>> target.read_text()
        'a,b'
    """
    final = check_output_path(
        path,
        what=what,
        overwrite=overwrite,
        overwrite_hint=overwrite_hint,
        make_parents=make_parents,
    )
    if make_parents:
        final.parent.mkdir(parents=True, exist_ok=True)
    before = _state(final)
    # Hidden, unique, and with the final suffix (writers pick the format from it).
    temp = final.parent / f".{final.stem}.{os.getpid()}-{secrets.token_hex(4)}.tmp{final.suffix}"
    try:
        yield str(temp)
        if not temp.exists():
            raise ValueError(f"{what} {os.fspath(path)}: nothing was written")
        with _interrupts_deferred():
            with _folder_lock(final.parent):
                now = _state(final)
                if now != before:
                    raise ValueError(
                        f"{what} {os.fspath(path)}: another run wrote this file while this one "
                        "ran; nothing written; valid: a name no other run writes"
                    )
                if overwrite:
                    os.replace(temp, final)
                else:
                    try:
                        os.link(temp, final)  # fails if the name is taken: never clobbers
                    except FileExistsError:
                        raise ValueError(
                            f"{what} {os.fspath(path)}: file exists; valid: a new name, or "
                            f"{overwrite_hint} to replace it"
                        ) from None
                    except OSError:  # no hard links on this file system
                        os.replace(temp, final)
            _COMMITTED.append(str(final))
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
