"""A persistent JAX compilation cache, so a repeated command does not compile again.

XLA executables are stored on disk keyed by the lowered program, the compile options,
the backend and the jax/jaxlib versions, so an entry is only reused where it is valid.
The ``specsim`` command turns the cache on by default (``--no-jax-cache`` or
``SPECSIM_JAX_CACHE=off`` turn it off, ``SPECSIM_JAX_CACHE=DIR`` moves it); the library
leaves JAX's global configuration alone unless ``enable_compilation_cache`` is called.

JAX's defaults only store compilations that took at least 1 s. A command on the CPU is
mostly many small compilations (eager operations, the set-up of a search), each faster
than that, so here every compilation is stored (``MIN_COMPILE_TIME_S``) whatever its
size; the folder is capped (least recently used entries evicted, ``MAX_SIZE_BYTES``).

References:
    JAX documentation, "Persistent compilation cache" (``jax_compilation_cache_dir``,
    ``jax_persistent_cache_min_compile_time_secs``,
    ``jax_persistent_cache_min_entry_size_bytes``, ``jax_compilation_cache_max_size``).
"""

from __future__ import annotations

import os

__all__ = [
    "ENVIRONMENT_VARIABLE",
    "cache_dir_from_environment",
    "default_cache_dir",
    "enable_compilation_cache",
    "enable_compilation_cache_from_environment",
]

ENVIRONMENT_VARIABLE = "SPECSIM_JAX_CACHE"
# Store every compilation: on the 2-core CPU a repeated `specsim optimize` took a median
# 2.37 s of CPU with all stored against 2.62 s storing only those over 0.05 s.
MIN_COMPILE_TIME_S = 0.0
MAX_SIZE_BYTES = 2 * 1024**3
_OFF = ("0", "off", "false", "no", "none", "")


def default_cache_dir() -> str:
    """``<user cache directory>/specsim/jax`` (``~/.cache/specsim/jax`` on Linux, with
    ``$XDG_CACHE_HOME`` honoured; ``~/Library/Caches/specsim/jax`` on macOS).

    Examples:
        >>> default_cache_dir().endswith(os.path.join("specsim", "jax"))
        True
    """
    import platformdirs

    return os.path.join(platformdirs.user_cache_dir("specsim", appauthor=False), "jax")


def cache_dir_from_environment() -> str | None:
    """The folder ``SPECSIM_JAX_CACHE`` asks for: the default when unset, ``None`` for
    ``0``/``off``/``false``/``no``/``none`` or empty, else the path it holds.

    Examples:
        >>> from unittest import mock
        >>> with mock.patch.dict(os.environ, {"SPECSIM_JAX_CACHE": "off"}):
        ...     cache_dir_from_environment() is None
        True
    """
    value = os.environ.get(ENVIRONMENT_VARIABLE)
    if value is None:
        return default_cache_dir()
    if value.strip().lower() in _OFF:
        return None
    return os.path.expanduser(value.strip())


def enable_compilation_cache(
    path: str | os.PathLike | None = None,
    *,
    min_compile_time_s: float = MIN_COMPILE_TIME_S,
    max_size_bytes: int = MAX_SIZE_BYTES,
) -> str | None:
    """Turns on JAX's persistent compilation cache for this process.

    Call it before the first compilation (JAX reads the settings once). A folder already
    set through JAX itself (``JAX_COMPILATION_CACHE_DIR``) is kept.

    Args:
        path: the folder (created if missing); default: ``default_cache_dir()``.
        min_compile_time_s: compilations faster than this are not stored, s.
        max_size_bytes: the folder's cap; least recently used entries are evicted
            (-1: no cap).

    Returns:
        The folder in use, or ``None`` if it cannot be created (the cache stays off).
        Compiled search programs (``specsim._executable_cache``) go to its
        ``specsim-executables`` subfolder.

    Examples:
        >>> import tempfile, specsim
        >>> folder = specsim.enable_compilation_cache(tempfile.mkdtemp())  # doctest: +SKIP
    """
    import jax

    configured = jax.config.jax_compilation_cache_dir
    folder = configured or os.fspath(path if path is not None else default_cache_dir())
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError:
        return None
    jax.config.update("jax_compilation_cache_dir", folder)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_time_s))
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    jax.config.update("jax_compilation_cache_max_size", int(max_size_bytes))
    from . import _executable_cache

    _executable_cache.set_folder(os.path.join(folder, "specsim-executables"))
    return folder


def enable_compilation_cache_from_environment() -> str | None:
    """Turns the persistent cache on as ``SPECSIM_JAX_CACHE`` says, as ``specsim`` does.

    Unset: the default folder (`default_cache_dir`); ``0``, ``off``, ``false``, ``no``,
    ``none`` or empty: the cache stays off; anything else: that folder.

    Returns:
        The folder in use, or ``None`` when the variable turns the cache off or the folder
        cannot be created.

    Examples:
        >>> from unittest import mock
        >>> with mock.patch.dict(os.environ, {"SPECSIM_JAX_CACHE": "off"}):
        ...     enable_compilation_cache_from_environment() is None
        True
    """
    folder = cache_dir_from_environment()
    return None if folder is None else enable_compilation_cache(folder)
