"""Shared test configuration: strict JAX semantics and one place for tolerances."""

import contextlib
import gc
import os
import re
from pathlib import Path

import jax
import numpy as np
import pytest

from specsim.measure._session import _xla_accepts

# The suite checks numbers, not speed, and spends most of its time in XLA's CPU compiler:
# LLVM's cheaper settings (no float semantics change; XLA's HLO passes all still run)
# took tests/test_reduce.py's 25 compilations from 88.6 to 54.8 s, and XLA's older code
# emitter for fused kernels (instead of its MLIR fusion emitters; the same HLO) took three
# compile-bound test files from 149 to 105 s and the quick tier from 99 to 85 s. Read when
# JAX starts its backend (the first computation, after this file); inherited by the
# commands and notebook kernels the tests start and by pytest-xdist's workers. Flags of
# the same name already in XLA_FLAGS win (they come last). Benchmarks (benchmarks/) run
# with the defaults.
_FAST_COMPILE = (
    "--xla_backend_optimization_level=0",
    "--xla_llvm_disable_expensive_passes=true",
    "--xla_cpu_use_fusion_emitters=false",
)
# The flags kept, set once they were probed (so that workers do not probe again).
_PROBED = "_SPECSIM_TEST_XLA_FLAGS_PROBED"


def _known_xla_flags(flags: tuple[str, ...]) -> list[str]:
    """The ``flags`` this jaxlib knows: XLA aborts a process whose XLA_FLAGS name an
    unknown one (these are debug options, and a newer jaxlib may drop one), so each is
    tried in a child process first (about a second, once per run), as a measurement
    session tries its own flags."""
    if _xla_accepts(" ".join(flags)):
        return list(flags)
    return [flag for flag in flags if _xla_accepts(flag)]


if _PROBED not in os.environ:
    os.environ[_PROBED] = " ".join(_known_xla_flags(_FAST_COMPILE))
    os.environ["XLA_FLAGS"] = f"{os.environ[_PROBED]} {os.environ.get('XLA_FLAGS', '')}".strip()


def pytest_report_header() -> str:
    """Says which of the suite's compile flags this jaxlib refused (the suite then runs
    slower, not differently)."""
    kept = os.environ[_PROBED].split()
    dropped = [flag for flag in _FAST_COMPILE if flag not in kept]
    return f"XLA flags for fast compiles: {' '.join(kept) or 'none'}" + (
        f" (unknown to this jaxlib, left out: {' '.join(dropped)})" if dropped else ""
    )


# Commands run in-process must not write the user's compilation cache (nor read a stale
# one); tests/test_compilation_cache.py turns it on in a temporary folder.
os.environ["SPECSIM_JAX_CACHE"] = "off"

# Silent broadcasting between arrays of different rank is a bug in a cost model.
jax.config.update("jax_numpy_rank_promotion", "raise")

# Four CPU devices, so that sweeps run sharded as on a multi-chip host (test_sharding.py
# compares them with one device). Must precede the backend's start, hence here.
jax.config.update("jax_num_cpu_devices", 4)

# JAX's persistent compilation cache is off in the suite unless SPECSIM_TEST_JAX_CACHE=1:
# on a fresh clone (CI) it cannot pay for itself (every compiled program is serialised to
# disk, none is read back). Locally, SPECSIM_TEST_JAX_CACHE=1 keeps one folder per xdist
# worker in .pytest_cache/jax (no worker reads a file another is writing), so a second
# run compiles little; a hit still counts in `compilations()` below.
TEST_JAX_CACHE = os.environ.get("SPECSIM_TEST_JAX_CACHE", "").strip().lower() in ("1", "on", "yes")
_JAX_CACHE = Path(__file__).resolve().parents[1] / ".pytest_cache" / "jax"
if TEST_JAX_CACHE:
    jax.config.update(
        "jax_compilation_cache_dir",
        str(_JAX_CACHE / os.environ.get("PYTEST_XDIST_WORKER", "main")),
    )
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


# Every compiled XLA CPU program keeps its machine code in memory maps of its own (about
# 500 for a program of 100 fused kernels), and a process may hold at most
# vm.max_map_count of them (65530 by default). Long-lived workers crashed inside a
# compilation (a segfault in backend_compile_and_load, an abort in the cache write) with
# memory to spare, which this limit explains, and pytest-xdist then waited forever for
# their tests; with the fixture below no run has crashed. So
# after any test that leaves the worker past a third of the limit, JAX's caches are dropped
# (the next test recompiles what it needs).
def _memory_map_limit() -> int:
    try:
        return int(Path("/proc/sys/vm/max_map_count").read_text())
    except (OSError, ValueError):
        return 0  # not Linux: no /proc to read, and no such limit to respect


_MEMORY_MAP_LIMIT = _memory_map_limit()


def _memory_maps() -> int:
    with open("/proc/self/maps", "rb") as maps:
        return sum(1 for _ in maps)


@pytest.fixture(autouse=True)
def _release_compiled_programs():
    yield
    if _MEMORY_MAP_LIMIT and _memory_maps() > _MEMORY_MAP_LIMIT // 3:
        jax.clear_caches()
        gc.collect()


# float32 is the library default; tests that need float64 say so with `x64()` below.
RTOL_F32 = 1e-5
RTOL_F64 = 1e-10


def assert_close(actual, expected, rtol=RTOL_F32, atol=0.0):
    """One tolerance helper for the whole suite (comment where a test loosens it)."""
    np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), rtol=rtol, atol=atol)


@pytest.fixture
def x64():
    """Run a test body in float64 (for check_grads and tight closed-form comparisons)."""
    with jax.enable_x64(True):
        yield


# Emitted by JAX (jax.monitoring) once per XLA compilation, on every backend, with the
# compiled function's name; a persistent-cache hit still counts as a compile request.
_BACKEND_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


@contextlib.contextmanager
def compilations():
    """Collect the names (``__name__``) of the functions XLA compiles inside the block.

    Built on public ``jax.monitoring`` listeners, so it counts real compilations on the
    CPU, a GPU or a TPU alike (a jitted function's private cache size does not say what
    the backend compiled). Eager operations compile too, under their primitive's name
    (``add``, ``reduce_max``), the first time they meet a new shape or dtype: a test
    that calls eager code in the block filters by the jitted function's name.

    Examples:
        >>> with compilations() as compiled:
        ...     f = jax.jit(lambda x: x + 1)
        ...     _ = f(1.0), f(2.0), f(np.ones(3))  # a new shape compiles again
        >>> compiled
        ['<lambda>', '<lambda>']
    """
    names: list[str] = []

    def listener(event: str, duration_s: float, **kwargs) -> None:
        if event == _BACKEND_COMPILE_EVENT:
            name = str(kwargs.get("fun_name", "?"))
            names.append(re.sub(r"^jit\((.*)\)$", r"\1", name))  # JAX says "jit(f)"

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield names
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
