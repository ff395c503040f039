"""Benchmark of the draft search: compile time, time to optimum, evaluations vs the grid.

Two workloads, both SDSL acceptance with the catalogue's training tokens:

* one scenario: the ``specsim optimize`` default (Llama-3-8B, one H100 SXM, batch 1,
  512-token prompts, 256 generated tokens);
* 1,000 scenarios at once: every chip in the catalogue x batch 1..128 x five targets
  (Llama-3.2-1B/3B, Llama-3-8B, Qwen2.5-14B/32B), each on the smallest power-of-two tensor
  parallelism that holds the target, searched by one vmapped call.

For each it prints the compile time of the jitted search, the time from compiled function
to optimum (median of repeated runs), the throughput evaluations used by the gradient
search and by the exhaustive grid over the same bounds, the grid's wall time (median), its
device time (the compiled chunks back to back) against the host's, the FLOPs per grid
evaluation (XLA's cost analysis) and the share of the device's arithmetic limit (float32
matmul FLOP/s, measured) that reaches, and the gap between the two answers. Runs on
whatever device JAX has (CPU, GPU or TPU).

Usage: ``python benchmarks/optimize.py [--repeats N]``.
"""

from __future__ import annotations

import argparse
import itertools
import math
import platform
import statistics
import time

import jax
import numpy as np
from device_info import arithmetic_limit, cost, load_average

import specsim
import specsim._optimize as optimize_module
from specsim import hardware, models
from specsim._optimize import (
    DEFAULT_OPTIMIZER,
    DEFAULT_RESTARTS,
    DEFAULT_SMOOTH,
    DEFAULT_STEPS,
    Scenario,
    _optimize_batch,
    _search_evaluations,
    _stack,
    _unstack,
    grid_search_scenarios,
)

TARGETS = ("llama-3.2-1b", "llama-3.2-3b", "llama-3-8b", "qwen2.5-14b", "qwen2.5-32b")
BATCHES = (1, 2, 4, 8, 16, 32, 64, 128)
N_SCENARIOS = 1000


def _acceptance(target: str):
    tokens = models.train_tokens(target)
    return specsim.SDSLAcceptance.create(tokens, tokens)


def _smallest_tp(target, chip, workload) -> int:
    context = float(workload.prompt_tokens + workload.generate_tokens) + 16.0
    need = float(specsim.memory_footprint(target, float(workload.batch), context).total_bytes)
    # Leave a quarter of HBM for the draft and headroom.
    return 2 ** max(0, math.ceil(math.log2(need / (0.75 * float(chip.hbm_capacity_bytes)))))


def default_scenario() -> Scenario:
    target = models.get("llama-3-8b")
    return Scenario.create(
        target,
        hardware.get("h100"),
        specsim.Workload.create(1, 512, 256),
        _acceptance("llama-3-8b"),
    )


def many_scenarios(n: int = N_SCENARIOS) -> list[Scenario]:
    out = []
    for name, chip_name, batch in itertools.product(TARGETS, hardware.names(), BATCHES):
        target, chip = models.get(name), hardware.get(chip_name)
        workload = specsim.Workload.create(batch, 512, 256)
        tp = _smallest_tp(target, chip, workload)
        out.append(Scenario.create(target, chip, workload, _acceptance(name), tp=tp))
        if len(out) == n:
            break
    return out


def _search_function():
    return _optimize_batch.jitted()[0]


def measure(scenarios: list[Scenario], repeats: int) -> dict[str, float]:
    """Compile and run the search on ``scenarios``; certify it with the grid."""
    stacked = _stack(scenarios)
    keys = jax.random.split(jax.random.PRNGKey(0), len(scenarios))
    search = _search_function()
    static = (DEFAULT_OPTIMIZER, DEFAULT_STEPS, DEFAULT_RESTARTS, DEFAULT_SMOOTH)

    start = time.perf_counter()
    compiled = search.lower(stacked, keys, *static).compile()
    compile_s = time.perf_counter() - start

    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        batch = jax.block_until_ready(compiled(stacked, keys))
        runs.append(time.perf_counter() - start)
    results = _unstack(batch, len(scenarios))

    calls = []

    def recording(*args):
        calls.append(args)
        return grid_kernel(*args)

    grid_kernel = optimize_module._grid_best
    optimize_module._grid_best = recording
    try:
        start = time.perf_counter()
        grids = grid_search_scenarios(scenarios)
        grid_first_s = time.perf_counter() - start
    finally:
        optimize_module._grid_best = grid_kernel
    grid_runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        grid_search_scenarios(scenarios)
        grid_runs.append(time.perf_counter() - start)
    grid_s = statistics.median(grid_runs)
    # Device time: the certificate's compiled chunks back to back, nothing else.
    compiled = grid_kernel.lower(*calls[0]).compile()
    device_runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready([compiled(*args) for args in calls])
        device_runs.append(time.perf_counter() - start)
    grid_device_s = statistics.median(device_runs)
    grid_flops = cost(compiled)["flops"] * len(calls)

    feasible = [bool(r.feasible) and bool(g.feasible) for r, g in zip(results, grids, strict=True)]
    gaps = np.array(
        [
            1.0 - float(r.report.tokens_per_s) / float(g.tokens_per_s)
            for r, g, ok in zip(results, grids, feasible, strict=True)
            if ok
        ]
    )
    per_search = _search_evaluations(DEFAULT_STEPS, DEFAULT_RESTARTS)
    search_evaluations = per_search * len(scenarios)
    grid_evaluations = sum(g.evaluations for g in grids)
    return {
        "scenarios": len(scenarios),
        "feasible": sum(feasible),
        "compile_s": compile_s,
        "run_s": statistics.median(runs),
        "search_evaluations": search_evaluations,
        "grid_evaluations": grid_evaluations,
        "evaluation_ratio": grid_evaluations / search_evaluations,
        "min_ratio": min(g.evaluations for g in grids) / per_search,
        "grid_first_s": grid_first_s,
        "grid_s": grid_s,
        "grid_device_s": grid_device_s,
        "grid_chunks": len(calls),
        "grid_flops_per_evaluation": grid_flops / grid_evaluations,
        "max_gap": float(gaps.max()),
        "mean_gap": float(gaps.mean()),
    }


def report(title: str, m: dict[str, float], limit: dict) -> None:
    print(f"\n{title}")
    print(f"  scenarios                 {m['scenarios']} ({m['feasible']} feasible)")
    print(f"  compile (search)          {m['compile_s']:.2f} s")
    print(
        f"  time to optimum           {m['run_s'] * 1e3:.1f} ms after compile"
        f" ({m['run_s'] / m['scenarios'] * 1e6:.1f} us per scenario)"
    )
    print(
        f"  evaluations               search {m['search_evaluations']:,}, "
        f"grid {m['grid_evaluations']:,}: {m['evaluation_ratio']:.1f}x fewer "
        f"(smallest grid: {m['min_ratio']:.1f}x)"
    )
    print(
        f"  exhaustive grid           {m['grid_s']:.2f} s after compile "
        f"({m['grid_first_s']:.2f} s with compile): "
        f"{m['grid_evaluations'] / m['grid_s']:.3g} evaluations/s"
    )
    share = m["grid_evaluations"] * m["grid_flops_per_evaluation"] / m["grid_s"] / limit["measured"]
    print(
        f"  grid, device vs host      device {m['grid_device_s'] * 1e3:.1f} ms "
        f"({m['grid_chunks']} chunk(s) back to back), host "
        f"{max(m['grid_s'] - m['grid_device_s'], 0.0) * 1e3:.1f} ms; "
        f"{m['grid_flops_per_evaluation']:.0f} FLOPs/evaluation -> {share:.2%} of the "
        "arithmetic limit"
    )
    print(
        f"  relative gap to grid      max {m['max_gap']:.2e}, mean {m['mean_gap']:.2e} "
        "(1 - search / grid tokens/s; below 0 is float32 noise)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per workload")
    args = parser.parse_args()
    device = jax.devices()[0]
    print("specsim optimize benchmark")
    print(
        f"  device {device.platform}: {device.device_kind} (x{jax.device_count()}); "
        f"jax {jax.__version__}; python {platform.python_version()}"
    )
    print(
        f"  search: adam, {DEFAULT_RESTARTS} restarts x {DEFAULT_STEPS} steps, "
        f"smooth roofline p={DEFAULT_SMOOTH:g}; evaluations count a value+gradient as one"
    )
    limit = arithmetic_limit()
    nominal = limit["nominal"]
    print(
        f"  arithmetic limit {limit['measured']:.3g} FLOP/s (float32 matmul, measured)"
        + (f", {nominal:.3g} nominal" if nominal else "")
        + f"; load average {load_average():.1f}"
    )
    report(
        "one scenario (specsim optimize default)",
        measure([default_scenario()], args.repeats),
        limit,
    )
    report(
        f"{N_SCENARIOS} scenarios at once (chips x batches x targets)",
        measure(many_scenarios(), max(1, args.repeats // 2)),
        limit,
    )
    print(f"\nload average at the end {load_average():.1f}")


if __name__ == "__main__":
    main()
