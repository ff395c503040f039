"""Where the test suite's time goes: JAX tracing, lowering and XLA compiling, per test file.

A pytest plugin that listens to JAX's monitoring events (``/jax/core/compile/*``: tracing
to a jaxpr, lowering to StableHLO, the backend's compile) and adds their durations to the
test that triggered them; run as a script, it runs pytest with itself loaded (also in
pytest-xdist's workers) and prints, per test file, the tests' wall time, the part of it
spent in those three stages, and the number of backend compiles.

    python benchmarks/compile_profile.py -m "not slow" -n auto
    python benchmarks/compile_profile.py -n auto --doctest-modules   # README's full command

Arguments are passed to pytest. Notebook kernels and commands run as subprocesses are
counted in their tests' wall time, not in the compile columns.
"""

from __future__ import annotations

import collections
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import pytest

_STAGES = {
    "/jax/core/compile/jaxpr_trace_duration": "trace_s",
    "/jax/core/compile/jaxpr_to_mlir_module_duration": "lower_s",
    "/jax/core/compile/backend_compile_duration": "compile_s",
}
_FOLDER = "_SPECSIM_COMPILE_PROFILE_DIR"
_totals: collections.Counter = collections.Counter()
_records: list[dict] = []


def _listener(event: str, duration_s: float, **_) -> None:
    stage = _STAGES.get(event)
    if stage is not None:
        _totals[stage] += duration_s
        if stage == "compile_s":
            _totals["compiles"] += 1


def pytest_configure(config) -> None:
    import jax

    jax.monitoring.register_event_duration_secs_listener(_listener)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    before, start_s = dict(_totals), time.perf_counter()
    yield
    record = {k: _totals[k] - before.get(k, 0) for k in ("trace_s", "lower_s", "compile_s")}
    record.update(
        file=item.nodeid.split("::")[0],
        wall_s=time.perf_counter() - start_s,
        compiles=_totals["compiles"] - before.get("compiles", 0),
    )
    _records.append(record)


def pytest_sessionfinish(session) -> None:
    folder = os.environ.get(_FOLDER)
    if folder and _records:
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        Path(folder, f"{worker}.json").write_text(json.dumps(_records))


def summary(folder: Path) -> str:
    """The per-file table of the records the workers wrote into ``folder``."""
    rows: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for path in folder.glob("*.json"):
        for record in json.loads(path.read_text()):
            for key in ("wall_s", "trace_s", "lower_s", "compile_s", "compiles"):
                rows[record["file"]][key] += record[key]
    total = sum(rows.values(), collections.Counter())
    jax_s = total["trace_s"] + total["lower_s"] + total["compile_s"]
    lines = [
        f"tests' wall time {total['wall_s']:.0f} s, of which JAX {jax_s:.0f} s "
        f"({100 * jax_s / max(total['wall_s'], 1e-9):.0f}%): trace {total['trace_s']:.0f} s, "
        f"lower {total['lower_s']:.0f} s, XLA compile {total['compile_s']:.0f} s "
        f"({total['compiles']} compiles)",
        f"{'file':52s} {'wall s':>8s} {'JAX s':>8s} {'compiles':>9s}",
    ]
    for name, row in sorted(rows.items(), key=lambda kv: -kv[1]["wall_s"]):
        jax_s = row["trace_s"] + row["lower_s"] + row["compile_s"]
        lines.append(f"{name:52s} {row['wall_s']:8.1f} {jax_s:8.1f} {row['compiles']:9d}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    root = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory() as folder:
        os.environ[_FOLDER] = folder
        # (importable as benchmarks.compile_profile in pytest-xdist's workers too)
        os.environ["PYTHONPATH"] = os.pathsep.join(
            [str(root), *filter(None, [os.environ.get("PYTHONPATH")])]
        )
        sys.path.insert(0, str(root))
        code = pytest.main([*argv, "-p", "benchmarks.compile_profile"])
        print(summary(Path(folder)))
    return int(code)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
