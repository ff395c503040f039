"""The persistent compilation cache and the on-disk executables of the optimiser's search
and of other programs that opt in (``_backend_jit(stored=...)``: the serving model).

Speed is a benchmark figure (benchmarks/repeat_optimize.py); here: where the cache lives,
how it is turned off, that a stored search is loaded instead of compiled and gives the
same answer bit for bit, that a damaged entry is replaced, and which calls are stored.
"""

from __future__ import annotations

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import specsim
from specsim import _compilation_cache, _executable_cache, _optimize, hardware, models
from specsim._fast_jit import _backend_jit


def test_cache_folder_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("SPECSIM_JAX_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    if sys.platform.startswith("linux"):
        assert _compilation_cache.default_cache_dir() == str(tmp_path / "xdg" / "specsim" / "jax")
    assert _compilation_cache.cache_dir_from_environment() == (
        _compilation_cache.default_cache_dir()
    )
    for off in ("0", "off", "OFF", "false", "no", "none", ""):
        monkeypatch.setenv("SPECSIM_JAX_CACHE", off)
        assert _compilation_cache.cache_dir_from_environment() is None
    monkeypatch.setenv("SPECSIM_JAX_CACHE", "~/elsewhere")
    assert _compilation_cache.cache_dir_from_environment() == os.path.expanduser("~/elsewhere")


@pytest.fixture
def executable_folder(tmp_path):
    folder = tmp_path / "executables"
    previous = _executable_cache.folder()
    _executable_cache.set_folder(folder)
    yield folder
    _executable_cache.set_folder(previous)


def _search(optimizer=_optimize.DEFAULT_OPTIMIZER):
    return specsim.optimize_draft(
        models.get("llama-3-8b"),
        hardware.get("h100"),
        specsim.Workload.create(4),
        specsim.ConstantAcceptance.create(0.7),
        steps=3,
        restarts=2,
        optimizer=optimizer,
    )


def _same(a, b) -> None:
    for x, y in zip(
        __import__("jax").tree.leaves(a), __import__("jax").tree.leaves(b), strict=True
    ):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.fixture(scope="module")
def stored_search(tmp_path_factory):
    """One search traced, compiled and stored: (its result, the stored entry's name and
    bytes). The tests below start from a copy of the entry instead of each compiling the
    same program again (each compile is ~20 s on a 2-core CPU)."""
    folder = tmp_path_factory.mktemp("stored") / "executables"
    previous = _executable_cache.folder()
    _executable_cache.set_folder(folder)
    try:
        first = _search()
    finally:
        _executable_cache.set_folder(previous)
    (entry,) = os.listdir(folder)
    assert entry.startswith("optimize-") and entry.endswith(".jaxexport")
    return first, entry, (folder / entry).read_bytes()


@pytest.mark.slow
def test_a_stored_search_is_loaded_not_compiled(stored_search, executable_folder, monkeypatch):
    first, entry, stored = stored_search
    # A new process: nothing in memory (set_folder emptied it), the entry on disk.
    executable_folder.mkdir()
    (executable_folder / entry).write_bytes(stored)
    reads = []
    read = _executable_cache._read
    monkeypatch.setattr(_executable_cache, "_read", lambda *a: reads.append(read(*a)) or reads[-1])

    # Recorded, not raised: a failing trace would fall back to a plain call unseen.
    traced = []
    monkeypatch.setattr(_executable_cache, "_trace", lambda *a: traced.append(a))
    second = _search()
    assert not traced, "the stored program should have been used"
    assert reads and reads[0] is not None
    _same(first, second)


@pytest.mark.slow
def test_a_damaged_entry_is_replaced(stored_search, executable_folder):
    first, entry, _ = stored_search
    executable_folder.mkdir()
    (executable_folder / entry).write_bytes(b"not an executable")
    second = _search()
    _same(first, second)
    assert os.listdir(executable_folder) == [entry]
    assert (executable_folder / entry).stat().st_size > 1000  # written again


@pytest.mark.slow
def test_an_optimizer_unknown_across_processes_is_not_stored(executable_folder):
    _search(optimizer=optax.adam(0.05))
    assert not executable_folder.exists() or not os.listdir(executable_folder)


@pytest.mark.slow
def test_folder_is_capped(executable_folder, monkeypatch):
    monkeypatch.setattr(_executable_cache, "MAX_FOLDER_BYTES", 10)
    _search()
    assert not os.listdir(executable_folder)  # larger than the cap: evicted at once


@pytest.mark.slow  # one `specsim optimize` process, compiled cold into an empty cache
def test_cli_writes_the_cache(tmp_path):
    env = {**os.environ, "SPECSIM_JAX_CACHE": str(tmp_path / "on")}
    command = [sys.executable, "-m", "specsim.cli", "optimize", "--steps", "3", "--json"]
    subprocess.run(command, env=env, check=True, capture_output=True)
    names = os.listdir(tmp_path / "on")
    assert "specsim-executables" in names and len(names) > 1  # plus JAX's own entries
    assert os.listdir(tmp_path / "on" / "specsim-executables")


def test_cli_turns_the_cache_on_unless_told_not_to(tmp_path, monkeypatch, capsys):
    """Which folder the command line asks for (what it writes there is the test above).

    In-process: this process's JAX cache is the suite's (tests/conftest.py), so the
    request itself is recorded rather than the folder's contents."""
    from specsim.cli import main

    asked = []
    monkeypatch.setattr(_compilation_cache, "enable_compilation_cache", asked.append)
    argv = ["cost", "--json"]  # the cheapest command that compiles (JAX_CACHE_COMMANDS)
    for flags, setting, expected in (
        ([], str(tmp_path / "on"), [str(tmp_path / "on")]),
        (["--no-jax-cache"], str(tmp_path / "flag"), []),
        ([], "off", []),
    ):
        asked.clear()
        monkeypatch.setenv("SPECSIM_JAX_CACHE", setting)
        assert main([*argv, *flags]) == 0, capsys.readouterr().err
        assert asked == expected, (flags, setting)
    assert not any(tmp_path.iterdir())


@_backend_jit(static_argnames=("power",), stored="test-scaled")
def _scaled(x, weights, power=1):
    return {"sum": jnp.sum(weights["a"] * x**power), "x": x}


def _entries(folder):
    return sorted(os.listdir(folder)) if folder.exists() else []


def test_a_stored_program_is_loaded_for_new_values(executable_folder, monkeypatch):
    x, weights = jnp.arange(3.0), {"a": jnp.ones(3)}
    first = _scaled(x, weights, 2)  # the static argument passed positionally
    (entry,) = _entries(executable_folder)
    assert entry.startswith("test-scaled-") and entry.endswith(".jaxexport")
    assert float(first["sum"]) == 5.0
    # A new process (memory emptied, the entry on disk), other values of the same shapes.
    _executable_cache.set_folder(executable_folder)

    # Recorded, not raised: a failing trace would fall back to a plain call unseen.
    traced = []
    monkeypatch.setattr(_executable_cache, "_trace", lambda *a: traced.append(a))
    second = _scaled(x + 1.0, {"a": 2.0 * jnp.ones(3)}, power=2)
    assert not traced, "the stored program should have been used"
    assert float(second["sum"]) == 2.0 * (1.0 + 4.0 + 9.0)
    np.testing.assert_array_equal(second["x"], x + 1.0)


def test_each_static_value_is_its_own_program(executable_folder):
    x, weights = jnp.arange(3.0), {"a": jnp.ones(3)}
    assert float(_scaled(x, weights)["sum"]) == 3.0  # the default power: not in the key
    assert float(_scaled(x, weights, power=3)["sum"]) == 9.0
    assert len(_entries(executable_folder)) == 2


def test_calls_that_cannot_be_stored_are_plain_calls(executable_folder):
    x, weights = jnp.arange(3.0), {"a": jnp.ones(3)}
    # Inside another trace: the caller's program decides, nothing is stored.
    inner = jax.jit(lambda v: _scaled(v, weights, 2)["sum"])(x)
    grad = jax.grad(lambda v: _scaled(v, weights, 2)["sum"])(x)
    assert float(inner) == 5.0
    np.testing.assert_allclose(grad, 2.0 * np.arange(3.0))
    assert _entries(executable_folder) == []

    @_backend_jit(static_argnames=("power",), stored="test-keyword")
    def keyword_only(x, *, weights, power=1):
        return jnp.sum(weights * x**power)

    assert float(keyword_only(x, weights=jnp.ones(3), power=2)) == 5.0  # traced keyword-only
    assert _entries(executable_folder) == []
    _executable_cache.set_folder(None)  # the cache off
    assert float(_scaled(x, weights, 2)["sum"]) == 5.0
    assert _entries(executable_folder) == []


def test_weak_and_strong_scalars_are_different_programs(executable_folder):
    # A Python float is weakly typed: the program traced with it keeps a bfloat16 array
    # bfloat16, where one traced with a float32 scalar promotes it to float32.
    @_backend_jit(stored="test-promote")
    def times(x, factor):
        return x * factor

    x = jnp.ones(2, jnp.bfloat16)
    assert times(x, 2.0).dtype == jnp.bfloat16
    assert times(x, jnp.float32(2.0)).dtype == jnp.float32
    assert len(_entries(executable_folder)) == 2


def test_a_program_that_cannot_be_exported_runs_plainly(executable_folder):
    @_backend_jit(stored="test-callback")
    def via_host(x):
        return jax.pure_callback(np.sin, jax.ShapeDtypeStruct(x.shape, x.dtype), x)

    np.testing.assert_allclose(via_host(jnp.ones(2)), np.sin(np.ones(2)), rtol=1e-6)
    assert _entries(executable_folder) == []


def test_stored_refuses_what_the_stored_program_cannot_honour():
    for option in ({"static_argnums": (1,)}, {"donate_argnames": ("x",)}):
        with pytest.raises(ValueError, match="static_argnames only"):
            _backend_jit(lambda x, n: x * n, stored="test-refused", **option)


@pytest.mark.slow  # compiles the steady-state model twice (plain, then from the export)
def test_the_stored_serving_model_matches_the_plain_one(executable_folder):
    from specsim.serving import SpecPolicy, Traffic, steady_state

    deployment = specsim.Deployment.create("llama-3-8b", "h100", acceptance=0.7)
    traffic = Traffic.poisson(4.0, 512, 128)
    _executable_cache.set_folder(None)
    plain = steady_state(deployment, SpecPolicy.off(), traffic)
    _executable_cache.set_folder(executable_folder)
    steady_state(deployment, SpecPolicy.off(), traffic)  # traced, exported and stored
    (entry,) = _entries(executable_folder)
    assert entry.startswith("steady_state-")
    _executable_cache.set_folder(executable_folder)  # a new process: loaded from disk
    loaded = steady_state(deployment, SpecPolicy.off(), traffic)
    # Not bit for bit: the exported module is the same computation inside a call, and XLA
    # fuses and reorders it differently: the TTFT percentiles came out one float32 ulp
    # apart (1.2e-7 relative); the stored program itself gives the same bits every call.
    for name, value in vars(plain).items():
        np.testing.assert_allclose(
            np.asarray(getattr(loaded, name)), np.asarray(value), rtol=1e-6, err_msg=name
        )
