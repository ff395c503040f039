"""Every notebook in ``notebooks/`` runs green, top to bottom, in a fresh kernel.

The notebooks are committed without outputs and carry their own ``assert`` s (the SDSL
law within a few percent of the paper, the gradient search matching the exhaustive
grid), so executing them is the test. They run concurrently, each in its own kernel
started in the repository root (so ``import specsim`` finds this checkout), with a
per-cell limit of ten minutes.
"""

import asyncio
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
# A guard against a hung kernel, not a speed target: five kernels share the cores with the
# other pytest-xdist worker (and, on a shared machine, with whatever else runs there).
CELL_TIMEOUT_S = 600


async def _execute(path: Path) -> nbformat.NotebookNode:
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(ROOT)}},
    )
    await client.async_execute()
    return notebook


async def _execute_all() -> dict[str, BaseException | nbformat.NotebookNode]:
    runs = await asyncio.gather(*(_execute(p) for p in NOTEBOOKS), return_exceptions=True)
    return {path.name: run for path, run in zip(NOTEBOOKS, runs, strict=True)}


@pytest.fixture(scope="module")
def executed():
    return asyncio.run(_execute_all())


def test_notebooks_are_committed_without_outputs():
    assert {p.name for p in NOTEBOOKS} >= {
        "quickstart.ipynb",
        "sdsl_reproduction.ipynb",
        "gpu_vs_tpu.ipynb",
    }
    for path in NOTEBOOKS:
        notebook = nbformat.read(path, as_version=4)
        nbformat.validate(notebook)
        for cell in notebook.cells:
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, path.name


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
