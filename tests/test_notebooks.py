"""Every notebook in ``notebooks/`` is stored executed, and its outputs are current.

The notebooks are committed with their outputs (so the repository's web view shows
results and charts), built by ``python notebooks/build.py``, which records a digest of
the code cells in the notebook's metadata. The quick tests fail when a code cell was
edited without rebuilding, when a cell has no stored run, or when an output leaks a path
of the machine that built it. The slow tier re-executes every notebook (they carry
their own ``assert`` s: the SDSL law within a few percent of the paper, the gradient
search matching the exhaustive grid), concurrently, each in its own kernel started in
the repository root (so ``import specsim`` finds this checkout). The kernels start one at
a time, and a kernel that dies before it is ready is started again: one of eight kernels
started at once on a loaded CI machine died before replying to ``kernel_info`` (a known
start-up race of Jupyter kernels; no cell had run).
"""

import asyncio
import importlib.util
import itertools
import os
import sys
from pathlib import Path

import nbformat
import pytest
from conftest import TEST_JAX_CACHE
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
# A guard against a hung kernel, not a speed target: eight kernels share the cores with the
# other pytest-xdist worker (and, on a shared machine, with whatever else runs there).
CELL_TIMEOUT_S = 600


def _kernel_env(path: Path) -> dict[str, str]:
    """The kernel's environment: the suite's, plus (with SPECSIM_TEST_JAX_CACHE=1, as in
    tests/conftest.py) a persistent JAX compilation cache in a folder of its own beside
    the suite's, so that no kernel reads a file another is writing."""
    if not TEST_JAX_CACHE:
        return dict(os.environ)
    folder = ROOT / ".pytest_cache" / "jax" / f"notebook-{path.stem}"
    return {
        **os.environ,
        "JAX_COMPILATION_CACHE_DIR": str(folder),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
    }


# Tries at starting a notebook's kernel; cells only ever run once.
KERNEL_STARTS = 3


async def _execute(path: Path, starting: asyncio.Lock) -> nbformat.NotebookNode:
    """Run ``path`` in a fresh kernel; ``starting`` is held until the kernel is ready."""
    for start in itertools.count(1):
        notebook = nbformat.read(path, as_version=4)
        ready = False

        def kernel_ready(**_) -> None:
            nonlocal ready
            ready = True
            starting.release()

        client = NotebookClient(
            notebook,
            timeout=CELL_TIMEOUT_S,
            kernel_name="python3",
            resources={"metadata": {"path": str(ROOT)}},
            on_notebook_start=kernel_ready,
        )
        await starting.acquire()
        try:
            await client.async_execute(env=_kernel_env(path))
            return notebook
        except RuntimeError as error:  # nbclient's "Kernel died before replying ..."
            if ready or start == KERNEL_STARTS:
                raise
            print(f"{path.name}: kernel start {start} failed: {error}", file=sys.stderr)
        finally:
            if not ready:
                starting.release()


async def _execute_all() -> dict[str, BaseException | nbformat.NotebookNode]:
    starting = asyncio.Lock()
    runs = await asyncio.gather(*(_execute(p, starting) for p in NOTEBOOKS), return_exceptions=True)
    return {path.name: run for path, run in zip(NOTEBOOKS, runs, strict=True)}


@pytest.fixture(scope="module")
def executed():
    return asyncio.run(_execute_all())


def _build_module():
    spec = importlib.util.spec_from_file_location(
        "notebooks_build", ROOT / "notebooks" / "build.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_notebooks_are_the_ones_the_builder_builds():
    assert {p.name for p in NOTEBOOKS} >= {
        "quickstart.ipynb",
        "sdsl_reproduction.ipynb",
        "gpu_vs_tpu.ipynb",
        "calibration.ipynb",
        "gradient_search.ipynb",
        "methods.ipynb",
        "moe.ipynb",
    }
    assert _build_module().notebooks() == NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_stored_with_current_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    rebuild = f"rebuild it: python notebooks/build.py {path.stem}"
    stored = notebook.metadata.get("specsim", {}).get("code_sha256")
    assert stored == _build_module().code_digest(notebook), f"{path.name}: code changed; {rebuild}"
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    # Run top to bottom in one kernel: execution counts 1, 2, 3, ...
    assert [cell.execution_count for cell in code] == list(range(1, len(code) + 1)), rebuild
    outputs = [output for cell in code for output in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"], f"{path.name} stored an error"
    assert any("image/png" in o.get("data", {}) for o in outputs), f"{path.name} shows no figure"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_refers_to_nothing_outside_the_repository(path):
    text = path.read_text()
    # Folders of this project's workspace (outside the repository), and absolute paths of
    # the machine that built the outputs.
    for outside in ("shared/", "reference/", "/work/", "/tmp/", "/home/", str(ROOT)):
        assert outside not in text, f"{path.name} mentions {outside!r}"
    # Relative paths go up at most to the repository root (notebooks/ is one level down).
    assert "../../" not in text, path.name


@pytest.mark.slow
@pytest.mark.parametrize("name", [p.name for p in NOTEBOOKS])
def test_notebook_runs(executed, name):
    run = executed[name]
    if isinstance(run, BaseException):
        raise run
    images = [
        output
        for cell in run.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if "image/png" in output.get("data", {})
    ]
    assert images, f"{name} shows no figure"
