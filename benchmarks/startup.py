"""Start-up time of the ``specsim`` command: help texts and the catalogue listings.

Runs ``python -m specsim.cli ARGS`` (the same code as the console script, without the
shell shims some Python installers put in front of it) several times per command line
and prints the median wall time, next to ``python -c pass`` (the interpreter alone) and
``python -c "import jax"`` (what every command paid before its imports became lazy).
Targets (issue 10, on the project's 2-core machine): ``specsim --help`` and every
``specsim COMMAND --help`` at most 1 s, ``specsim hardware`` at most 1.5 s.

Usage: ``python benchmarks/startup.py [--repeats N]`` from the repository root.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from specsim.cli import COMMANDS  # noqa: E402  (after the path to this checkout)


def median_wall_s(argv: list[str], repeats: int) -> float:
    """Median wall time of running ``argv`` to completion, s."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(argv, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="runs per command (default 5)")
    args = parser.parse_args()
    cli = [sys.executable, "-m", "specsim.cli"]
    lines = [
        ("python -c pass", [sys.executable, "-c", "pass"]),
        ("python -c 'import jax'", [sys.executable, "-c", "import jax"]),
        ("specsim --help", [*cli, "--help"]),
        *((f"specsim {name} --help", [*cli, name, "--help"]) for name in COMMANDS),
        ("specsim hardware", [*cli, "hardware"]),
        ("specsim models", [*cli, "models"]),
    ]
    load = " ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    machine = platform.processor() or platform.machine()
    print(
        f"specsim start-up, median of {args.repeats} runs; {machine}, {os.cpu_count()} cores, "
        f"load average {load}"
    )
    for label, argv in lines:
        print(f"  {label:34s} {median_wall_s(argv, args.repeats):6.2f} s")


if __name__ == "__main__":
    main()
