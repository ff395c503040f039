"""Wall and CPU time of a repeated ``specsim optimize`` (or another command): cold, warm
cache, and no cache.

Runs ``python -m specsim.cli COMMAND ARGS`` (``--command``, default ``optimize``) in fresh
processes against an empty cache folder (``SPECSIM_JAX_CACHE``): the first run fills it
(JAX's compilation cache and the stored traced programs: the optimiser's search, the
serving model's), the next ``--repeats`` runs reuse it; then ``--repeats`` runs with
``--no-jax-cache`` for comparison. Prints the median wall time and the median CPU time
(user + system of the child process), with the load average before and after: on a
shared machine the wall time of a loaded run overstates what an idle one takes, and the
CPU time is the closer estimate. Target (issue 12): a repeated default ``specsim
optimize`` under 3 s on the project's 2-core machine.

Usage: ``python benchmarks/repeat_optimize.py [--repeats N] [--command serve] [-- extra
flags of the command]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_once(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall s, CPU s) of one run of ``argv`` to completion."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(argv, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="warm runs (default 5)")
    parser.add_argument("--command", default="optimize", help="specsim command (default optimize)")
    parser.add_argument("extra", nargs="*", help="flags passed on to the command")
    args = parser.parse_args()
    command = [sys.executable, "-m", "specsim.cli", args.command, *args.extra]
    pythonpath = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "PYTHONPATH": pythonpath, "SPECSIM_JAX_CACHE": cache}
        load_before = load()
        cold = run_once(command, env)
        warm = [run_once(command, env) for _ in range(args.repeats)]
        none = [run_once([*command, "--no-jax-cache"], env) for _ in range(args.repeats)]
        load_after = load()
        stored = sum(f.stat().st_size for f in Path(cache).rglob("*") if f.is_file())
    machine = platform.processor() or platform.machine()
    print(
        f"specsim {args.command} {' '.join(args.extra)}".rstrip()
        + f"; {machine}, {os.cpu_count()} cores; load average {load_before} before, "
        f"{load_after} after"
    )
    print(f"  {'':34s} {'wall':>8s} {'CPU':>8s}")
    print(f"  {'first run (empty cache)':34s} {cold[0]:7.2f}s {cold[1]:7.2f}s")
    for label, runs in (
        (f"repeat, cache warm (median of {args.repeats})", warm),
        (f"--no-jax-cache (median of {args.repeats})", none),
    ):
        wall = statistics.median(r[0] for r in runs)
        cpu = statistics.median(r[1] for r in runs)
        print(f"  {label:34s} {wall:7.2f}s {cpu:7.2f}s")
    print(f"  cache folder after the runs: {stored / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
