"""How well pytest-xdist splits the test suite over its workers, from a JUnit XML report.

CI runs README's full command (``python -m pytest -n auto --doctest-modules``) with
``--dist loadfile``: each test file runs whole on one worker. This script reads the
per-test times of a run (``--junitxml``), sums them per file, and replays xdist's file
scheduler on those times: files in the order it takes them (most tests first, its
``--loadscope-reorder`` default), a worker taking the next file when two or fewer of its
tests are left. It prints the heaviest files, the replayed finish time of each worker,
the same replay with the longest files first, and the ideal split (total / workers). If
the replay is near the ideal, the suite's wall time is its total work over the workers,
and only less work (not another order) makes CI faster.

Usage (from the repository root):
    python -m pytest -n auto --doctest-modules --junitxml=/tmp/suite.xml
    python benchmarks/suite_balance.py /tmp/suite.xml [--workers 2] [--top 25]
"""

from __future__ import annotations

import argparse
import collections
import xml.etree.ElementTree as ET


def file_times(junit_path: str) -> dict[str, list[float]]:
    """Each test file's test times (setup + call + teardown, s), in report order."""
    files: dict[str, list[float]] = {}
    for case in ET.parse(junit_path).getroot().iter("testcase"):
        parts = case.get("classname", "").split(".")
        while len(parts) > 1 and parts[-1].startswith("Test"):  # a test class, not a file
            parts.pop()
        path = "/".join(parts) + ".py"
        files.setdefault(path, []).append(float(case.get("time", 0.0)))
    return files


def replay(files: dict[str, list[float]], order: list[str], workers: int) -> list[float]:
    """Finish time of each worker (s) when xdist hands out ``order``'s files."""
    queue = collections.deque(order)
    pending = [collections.deque() for _ in range(workers)]
    clock = [0.0] * workers

    def refill(i: int) -> None:  # xdist's _reschedule: one file when almost depleted
        if queue and len(pending[i]) <= 2:
            pending[i].extend(files[queue.popleft()])

    for i in range(workers):
        if queue:
            pending[i].extend(files[queue.popleft()])
    for i in range(workers):
        refill(i)
    while any(pending):
        i = min((j for j in range(workers) if pending[j]), key=lambda j: clock[j] + pending[j][0])
        clock[i] += pending[i].popleft()
        refill(i)
    return clock


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("junit", help="a pytest --junitxml report of the whole suite")
    parser.add_argument("--workers", type=int, default=2, help="xdist workers (default: 2)")
    parser.add_argument("--top", type=int, default=25, help="heaviest files to list")
    args = parser.parse_args()
    files = file_times(args.junit)
    total = sum(map(sum, files.values()))
    tests = sum(map(len, files.values()))
    print(f"{len(files)} files, {tests} tests, {total:.0f} s of test time")
    for path, times in sorted(files.items(), key=lambda kv: -sum(kv[1]))[: args.top]:
        print(f"  {sum(times):7.1f} s  {len(times):4d} tests  {path}")
    # Ties keep collection order: testpaths "tests" then "specsim", paths sorted within.
    collected = sorted(files, key=lambda f: (not f.startswith("tests/"), f))
    by_count = sorted(collected, key=lambda f: -len(files[f]))
    by_time = sorted(collected, key=lambda f: -sum(files[f]))
    for label, order in (
        ("xdist's order (most tests first)", by_count),
        ("longest files first", by_time),
    ):
        clocks = replay(files, order, args.workers)
        print(f"{label}: workers finish at {', '.join(f'{c:.0f}' for c in clocks)} s")
    print(f"ideal split: {total / args.workers:.0f} s per worker")


if __name__ == "__main__":
    main()
