"""Execute the notebooks and store them with their outputs, so the repository's web view
shows results and charts.

Each notebook runs top to bottom in a fresh kernel started in the repository root (so
``import specsim`` is this checkout). Its code cells' digest is recorded in the
notebook's metadata (``specsim.code_sha256``): ``tests/test_notebooks.py`` fails when a
cell was edited without running this again, and its slow tier re-executes every
notebook (their own ``assert`` s check the results).

Usage, from the repository root::

    python notebooks/build.py               # every notebook
    python notebooks/build.py quickstart    # only notebooks/quickstart.ipynb
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
FOLDER = ROOT / "notebooks"
# A guard against a hung kernel, not a speed target.
CELL_TIMEOUT_S = 1200


def notebooks() -> list[Path]:
    """The notebooks, by name."""
    return sorted(FOLDER.glob("*.ipynb"))


def code_digest(notebook: nbformat.NotebookNode) -> str:
    """SHA-256 of the notebook's code cells, in order (what its outputs come from)."""
    digest = hashlib.sha256()
    for cell in notebook.cells:
        if cell.cell_type == "code":
            digest.update(cell.source.encode())
            digest.update(b"\0")
    return digest.hexdigest()


def execute(path: Path) -> nbformat.NotebookNode:
    """``path`` executed in a fresh kernel (the file is not changed)."""
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(ROOT)}},
        record_timing=False,  # no timestamps in the stored file
    )
    client.execute()
    return notebook


def build(path: Path) -> None:
    """Executes ``path`` and writes it back with its outputs and code digest."""
    notebook = execute(path)
    notebook.metadata["specsim"] = {"code_sha256": code_digest(notebook)}
    notebook.metadata.get("language_info", {}).pop("version", None)  # the builder's Python
    nbformat.validate(notebook)
    nbformat.write(notebook, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="notebook names without .ipynb (default: all)")
    args = parser.parse_args()
    paths = notebooks()
    if args.names:
        known = {p.stem: p for p in paths}
        unknown = [n for n in args.names if n not in known]
        if unknown:
            sys.exit(f"unknown notebook(s) {unknown}; valid: {', '.join(known)}")
        paths = [known[n] for n in args.names]
    for path in paths:
        start = time.perf_counter()
        build(path)
        print(f"{path.relative_to(ROOT)}: {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
