"""The distribution's name and what it installs (issue 12: `specsim` on the package index is
an unrelated project, so `pip install specsim` installed the wrong thing)."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_distribution_name_is_free_and_the_import_name_stays():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    # Checked on 2026-12-05: `pip index versions specsim` lists an unrelated 1.0.0;
    # `pip download --no-deps specsim-jax` finds no distribution of that name.
    assert project["name"] == "specsim-jax"
    assert project["scripts"] == {"specsim": "specsim.cli:main"}
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert packages["packages"]["find"]["include"] == ["specsim*"]


def test_readme_and_ci_install_the_same_way():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert 'pip install -e ".[dev]"' in readme and '-e ".[dev]"' in ci
    assert "specsim-jax" in readme


def test_peers_extra_is_optional():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert {"genz-llm", "mlsysim", "llm-analysis"} == {
        requirement.split(">")[0].split("=")[0] for requirement in extras["peers"]
    }
    assert not any("genz" in r or "mlsysim" in r for r in extras["dev"])
