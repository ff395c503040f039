"""Compiled search programs kept on disk, so a repeated run neither traces nor compiles.

JAX's persistent compilation cache (``specsim._compilation_cache``) skips XLA's
compilation, but every process still traces and lowers the program first, and for the
optimiser's search (a ``lax.scan`` of value-and-gradient steps through the whole cost
model, vmapped over restarts) tracing is most of a cold start. Here the *compiled
executable* of such a program is serialised (``jax.experimental.serialize_executable``)
into the specsim cache folder, keyed by everything that determines it: the program's
name and static arguments, the tree structure, shapes and dtypes of its inputs, the
source of the installed specsim package, the jax and jaxlib versions, the JAX settings
that change numerics, and the backend and devices. A later process with the same key
loads it and calls it directly.

Off unless a folder is set (``enable_compilation_cache`` sets one beside JAX's cache;
the ``specsim`` command does so by default). Any failure to read, write or load an entry
falls back to ordinary compilation; an unreadable entry is deleted.
"""

from __future__ import annotations

import functools
import hashlib
import os
import pathlib
import pickle
import tempfile
from collections.abc import Callable
from typing import Any

import jax
import jaxlib

__all__ = ["call", "folder", "set_folder"]

# Cap of the folder (oldest entries evicted first); one optimiser search is ~3.5 MB.
MAX_FOLDER_BYTES = 512 * 1024**2

_state: dict[str, Any] = {"folder": None}
_loaded: dict[str, Callable] = {}  # key -> executable, for this process


def set_folder(path: str | os.PathLike | None) -> None:
    """Stores compiled programs in ``path`` from now on (``None``: off)."""
    _state["folder"] = None if path is None else os.fspath(path)
    _loaded.clear()


def folder() -> str | None:
    """The folder in use, or ``None`` when the cache is off."""
    return _state["folder"]


def call(jitted, args: tuple, static: dict[str, Any], *, name: str, static_key: str | None):
    """``jitted(*args, **static)``, through an executable stored on disk when possible.

    Args:
        jitted: a ``jax.jit`` function whose ``static`` arguments are static.
        args: the traced arguments (pytrees).
        static: the static keyword arguments.
        name: the program's name (part of the key and of the file name).
        static_key: a text that identifies ``static`` across processes, or ``None`` when
            it cannot (e.g. an arbitrary optimizer object): then nothing is stored.
    """
    where = _state["folder"]
    if where is None or static_key is None:
        return jitted(*args, **static)
    try:
        key = _key(name, static_key, args)
    except Exception:  # a leaf without shape/dtype, an unhashable structure: no cache
        return jitted(*args, **static)
    executable = _loaded.get(key) or _read(os.path.join(where, f"{name}-{key}.bin"))
    if executable is None:
        executable = _lower(jitted, args, static).compile()
        _write(where, f"{name}-{key}.bin", executable)
    _loaded[key] = executable
    return executable(*args)


def _lower(jitted, args: tuple, static: dict[str, Any]):
    return jitted.lower(*args, **static)


@functools.cache
def _source_digest() -> str:
    """Hash of every Python file of the installed specsim package."""
    root = pathlib.Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _key(name: str, static_key: str, args: tuple) -> str:
    leaves, tree = jax.tree.flatten(args)
    avals = [(tuple(jax.numpy.shape(x)), str(jax.numpy.result_type(x))) for x in leaves]
    devices = jax.local_devices()
    parts = [
        name,
        static_key,
        str(tree),
        repr(avals),
        _source_digest(),
        jax.__version__,
        jaxlib.__version__,
        jax.default_backend(),
        repr(sorted({d.device_kind for d in devices})),
        str(len(devices)),
        repr(bool(jax.config.jax_enable_x64)),
        repr(jax.config.jax_default_matmul_precision),
        os.environ.get("XLA_FLAGS", ""),
    ]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]


def _read(path: str):
    if not os.path.isfile(path):
        return None
    from jax.experimental import serialize_executable

    try:
        with open(path, "rb") as f:
            payload, in_tree, out_tree, device_ids = pickle.load(f)
        by_id = {d.id: d for d in jax.local_devices()}
        executable = serialize_executable.deserialize_and_load(
            payload, in_tree, out_tree, execution_devices=[by_id[i] for i in device_ids]
        )
        os.utime(path)  # recently used: evicted last
        return executable
    except Exception:  # truncated, from another build, not loadable here: compile again
        try:
            os.remove(path)
        except OSError:
            pass
        return None


def _write(where: str, filename: str, executable) -> None:
    from jax.experimental import serialize_executable

    try:
        shardings = jax.tree.leaves(executable.input_shardings)
        device_ids = sorted({d.id for s in shardings for d in s.device_set})
        blob = pickle.dumps((*serialize_executable.serialize(executable), device_ids))
        os.makedirs(where, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=where, prefix=".tmp-", suffix=".bin")
        with os.fdopen(handle, "wb") as f:
            f.write(blob)
        os.replace(temporary, os.path.join(where, filename))  # readers never see half a file
        _evict(where)
    except Exception:  # a read-only or full disk, an executable that cannot be serialised
        return


def _evict(where: str) -> None:
    entries = []
    for entry in os.scandir(where):
        if entry.is_file() and entry.name.endswith(".bin") and not entry.name.startswith("."):
            stat = entry.stat()
            entries.append((stat.st_mtime, stat.st_size, entry.path))
    total = sum(size for _, size, _ in entries)
    for _, size, path in sorted(entries):
        if total <= MAX_FOLDER_BYTES:
            break
        try:
            os.remove(path)
            total -= size
        except OSError:
            pass
