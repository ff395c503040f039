"""Traced programs kept on disk, so a repeated run neither traces nor compiles.

JAX's persistent compilation cache (``specsim._compilation_cache``) skips XLA's
compilation, but every process still traces and lowers the program first, and for the
optimiser's search (a ``lax.scan`` of value-and-gradient steps through the whole cost
model, vmapped over restarts) and the serving model (``_backend_jit(stored=...)``)
tracing is most of a repeated run's time. Here the *lowered* program is kept: serialised
with ``jax.export`` into the specsim cache folder, keyed by everything that determines
it (the program's name and static arguments, the tree structure, shapes and dtypes of
its inputs, the source of the installed specsim package, the jax and jaxlib versions,
the JAX settings that change numerics, the backend and devices). A later process with
the same key deserialises it, and compiling it is a hit in JAX's persistent cache: no
tracing, no compilation.

(Serialising the *compiled* executable instead is unsafe: an executable that JAX itself
loaded from its persistent cache serialises without its CPU object code, and the copy
fails when run.)

Off unless a folder is set (``enable_compilation_cache`` sets one beside JAX's cache;
the ``specsim`` command does so by default). Any failure to read, write or load an entry
falls back to tracing as usual; an unreadable entry is deleted.
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

# Cap of the folder (oldest entries evicted first); one optimiser search is ~1 MB.
MAX_FOLDER_BYTES = 512 * 1024**2

_state: dict[str, Any] = {"folder": None}
_loaded: dict[str, tuple[Callable, Any]] = {}  # key -> (flat program, output tree)


def set_folder(path: str | os.PathLike | None) -> None:
    """Stores traced programs in ``path`` from now on (``None``: off)."""
    _state["folder"] = None if path is None else os.fspath(path)
    _loaded.clear()


def folder() -> str | None:
    """The folder in use, or ``None`` when the cache is off."""
    return _state["folder"]


def call(
    jitted: Callable,
    args: tuple,
    static: dict[str, Any],
    *,
    name: str,
    static_key: str | None,
    compiler_options: dict[str, Any] | None = None,
):
    """``jitted(*args, **static)``, through a traced program stored on disk if possible.

    Args:
        jitted: a ``jax.jit`` function whose ``static`` arguments are static (called as
            is when the cache is off, so its in-process cache keeps working).
        args: the traced arguments (pytrees of arrays).
        static: keyword arguments fixed at trace time.
        name: the program's name (part of the key and of the file name).
        static_key: a text that identifies ``static`` across processes, or ``None`` when
            it cannot (e.g. an arbitrary optimizer object): then nothing is stored.
        compiler_options: XLA options ``jitted`` compiles with (used for the stored
            program too, and part of the key).
    """
    where = _state["folder"]
    if where is None or static_key is None:
        return jitted(*args, **static)
    leaves, in_tree = jax.tree.flatten(args)
    options = sorted((compiler_options or {}).items())
    try:
        key = _key(name, f"{static_key}|{options!r}", leaves, in_tree)
    except Exception:  # a leaf without shape/dtype: no cache
        return jitted(*args, **static)
    entry = _loaded.get(key)
    if entry is None:
        path = os.path.join(where, f"{name}-{key}.jaxexport")
        stored = _read(path, in_tree)
        if stored is None:
            try:
                # The Python function under the jit: compiler options only go on the outer
                # jit.
                stored = _trace(getattr(jitted, "__wrapped__", jitted), static, leaves, in_tree)
            except Exception:  # not exportable (e.g. a host callback): a plain call
                return jitted(*args, **static)
            _write(where, os.path.basename(path), stored, in_tree)
        exported, out_tree = stored
        entry = (jax.jit(exported.call, compiler_options=compiler_options), out_tree)
        _loaded[key] = entry
    program, out_tree = entry
    return jax.tree.unflatten(out_tree, program(*leaves))


def _trace(function, static, leaves, in_tree):
    """``jax.export`` of ``function`` on flat leaves; returns (Exported, output tree)."""
    out_trees = []

    def flat(*flat_leaves):
        out = function(*jax.tree.unflatten(in_tree, flat_leaves), **static)
        out_leaves, out_tree = jax.tree.flatten(out)
        out_trees.append(out_tree)
        return out_leaves

    exported = jax.export.export(jax.jit(flat))(*leaves)
    return exported, out_trees[-1]


@functools.cache
def _source_digest() -> str:
    """Hash of every Python file of the installed specsim package."""
    root = pathlib.Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _key(name: str, static_key: str, leaves: list, in_tree) -> str:
    # Weak types too: a program traced with a Python float promotes differently from one
    # traced with a float32 array.
    avals = [(tuple(jax.numpy.shape(x)), str(jax.numpy.result_type(x)), _weak(x)) for x in leaves]
    devices = jax.local_devices()
    parts = [
        name,
        static_key,
        str(in_tree),
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


def _weak(x) -> bool:
    """Whether ``x`` enters a trace weakly typed (a Python scalar, or a weak JAX array)."""
    return bool(getattr(x, "weak_type", isinstance(x, bool | int | float | complex)))


def _read(path: str, in_tree):
    if not os.path.isfile(path):
        return None
    try:
        with open(path, "rb") as f:
            blob, stored_in_tree, out_tree = pickle.load(f)
        if stored_in_tree != in_tree:
            raise ValueError("a different input structure under the same key")
        exported = jax.export.deserialize(bytearray(blob))
        os.utime(path)  # recently used: evicted last
        return exported, out_tree
    except Exception:  # truncated, from another build, unreadable: trace again
        try:
            os.remove(path)
        except OSError:
            pass
        return None


def _write(where: str, filename: str, stored, in_tree) -> None:
    exported, out_tree = stored
    try:
        blob = pickle.dumps((bytes(exported.serialize()), in_tree, out_tree))
    except Exception:  # not serialisable here (e.g. flatbuffers missing): keep it in memory
        return
    try:
        os.makedirs(where, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=where, prefix=".tmp-", suffix=".jaxexport")
        with os.fdopen(handle, "wb") as f:
            f.write(blob)
        os.replace(temporary, os.path.join(where, filename))  # readers never see half a file
        _evict(where)
    except OSError:  # a read-only or full disk
        return


def _evict(where: str) -> None:
    entries = []
    for entry in os.scandir(where):
        if entry.is_file() and not entry.name.startswith("."):
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
