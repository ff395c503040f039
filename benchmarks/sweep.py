"""Configurations per second of ``specsim.sweep`` against a pure-Python loop and NumPy.

All three evaluate the same formulas (the roofline step time of ``specsim._cost``, averaged
over the growing context with Gauss-Legendre quadrature, and the speculative iteration of
``specsim._throughput``) on the same Cartesian grid of 1,008,000 points, and produce the
same 19 report fields per point; the Python and NumPy results are checked against the
sweep before any figure is printed.

* JAX: ``specsim.sweep`` end to end (a DataFrame with every column), after one warm-up
  call that compiles. Nested ``vmap`` over the grid's trailing axes evaluates each
  quantity once per combination of the axes it depends on.
* pure Python: a straightforward loop over the points, ``math`` and floats; timed on a
  random sample of the grid and reported per point.
* NumPy, two ways, float64: on arrays broadcast over one dimension per axis (which
  exploits the grid structure as the sweep does), and on one array entry per point
  (every input gathered to grid length first, as from a table of configurations).

Each method runs in its own subprocess, which reports its peak resident memory. A
10^8-point sweep (``best_over="gamma"`` reduced on the device, and every point streamed to
Parquet) checks the memory bound.

For every JAX configuration it prints configurations per second end to end, the device
time (the compiled chunks run back to back) and the host time (the rest), the FLOPs per
configuration of the compiled kernel (XLA's cost analysis) and the share of the device's
arithmetic limit that reaches (the float32 FLOP/s of a large matrix product on it).
``--profile FILE`` also writes the device profile of one chunk (cost analysis and the
busiest XLA operations of a ``jax.profiler`` trace).

Usage::

    python benchmarks/sweep.py            # everything (several minutes on 2 CPU cores)
    python benchmarks/sweep.py --quick    # skip the 10^8-point Parquet stream
    python benchmarks/sweep.py --quick --jax-only  # and the NumPy/Python references
    python benchmarks/sweep.py --profile benchmarks/results/sweep_chunk_profile_cpu.txt
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

GRID = dict(
    hardware=["h100", "h200", "tpu-v5p", "tpu-v5e", "a100-80gb"],
    target=["llama-2-7b", "llama-2-13b", "llama-3-8b", "llama-2-70b"],
    draft=["llama-68m", "llama-160m", "tinyllama-1.1b", "qwen2.5-0.5b"],
    tp=[1, 2, 4, 8],
    batch=[1, 2, 4, 8, 16, 32, 64, 128, 256, 512],
    prompt_tokens=[128, 512, 2048],
    generate_tokens=[256],
    alpha=[0.5, 0.6, 0.7, 0.8, 0.9],
    gamma=list(range(21)),
)
BIG_GRID = dict(  # 5 x 4 x 4 x 2 x 50 x 10 x 5 x 10 x 25 = 10^8 points
    GRID,
    tp=[1, 2],
    batch=list(range(1, 51)),
    prompt_tokens=list(range(128, 1281, 128)),
    generate_tokens=[64, 128, 256, 512, 1024],
    alpha=[0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95],
    gamma=list(range(25)),
)
QUADRATURE_NODES = 8
PYTHON_SAMPLE = 2000
FIELDS = (
    "tokens_per_s",
    "baseline_tokens_per_s",
    "speedup",
    "expected_tokens_per_step",
    "acceptance_rate",
    "draft_step_s",
    "verify_step_s",
    "target_step_s",
    "iteration_s",
    "speculation_overhead_s",
    "cost_ratio",
    "draft_bound",
    "verify_bound",
    "target_bound",
    "prefill_s",
    "request_latency_s",
    "baseline_request_latency_s",
    "memory_per_chip_bytes",
    "fits",
)


# --------------------------------------------------------------------------- formulas

MODEL_FIELDS = (
    "n_layers",
    "d_model",
    "n_heads",
    "n_kv_heads",
    "head_dim",
    "d_ff",
    "vocab",
    "mlp_matrices",
    "tied_embeddings",
    "weight_bytes",
    "kv_bytes",
    "activation_bytes",
)
HARDWARE_FIELDS = (
    "bf16_flops_per_s",
    "hbm_bytes_per_s",
    "hbm_capacity_bytes",
    "interconnect_bytes_per_s",
    "interconnect_latency_s",
    "compute_efficiency",
    "memory_efficiency",
    "kernel_launch_s",
    "step_overhead_s",
)


class PythonMath:
    """Scalar operations for the pure-Python loop."""

    maximum = staticmethod(max)

    @staticmethod
    def clip01(x):
        return min(max(x, 0.0), 1.0)

    @staticmethod
    def argmax(parts):
        return parts.index(max(parts))


class NumPyMath:
    """Broadcasting operations for the NumPy version."""

    maximum = staticmethod(np.maximum)

    @staticmethod
    def clip01(x):
        return np.clip(x, 0.0, 1.0)

    @staticmethod
    def argmax(parts):
        return np.argmax(np.stack(np.broadcast_arrays(*parts)), axis=0)


def step_time(m, hw, batch, new_tokens, context, tp, xp):
    """``specsim._cost.step_time``: time, memory-bound, compute-bound, communication, fixed (s)."""
    tokens = batch * new_tokens
    q_width = m["n_heads"] * m["head_dim"]
    kv_width = m["n_kv_heads"] * m["head_dim"]
    layer = m["d_model"] * (q_width + 2.0 * kv_width) + q_width * m["d_model"]
    layer = layer + m["mlp_matrices"] * m["d_model"] * m["d_ff"]
    block_weights = m["n_layers"] * layer
    head_weights = m["vocab"] * m["d_model"]
    matmul_flops = 2.0 * tokens * (block_weights + head_weights)
    attended = context + (new_tokens + 1.0) / 2.0
    attention_flops = 4.0 * batch * m["n_layers"] * q_width * new_tokens * attended
    weight_bytes = m["weight_bytes"] * (block_weights + head_weights + tokens * m["d_model"])
    kv_per_token = m["n_layers"] * 2.0 * kv_width * m["kv_bytes"]
    kv_bytes = batch * context * kv_per_token + tokens * kv_per_token
    block_io = 4.0 * m["d_model"] + 2.0 * q_width + 2.0 * kv_width + m["mlp_matrices"] * m["d_ff"]
    activation_bytes = (
        m["activation_bytes"] * tokens * (m["n_layers"] * block_io + m["d_model"] + m["vocab"])
    )
    flops_per_s = hw["bf16_flops_per_s"] * hw["compute_efficiency"]
    bytes_per_s = hw["hbm_bytes_per_s"] * hw["memory_efficiency"]
    linear_compute = matmul_flops / tp / flops_per_s
    linear_memory = (weight_bytes + activation_bytes) / tp / bytes_per_s
    attention_compute = attention_flops / tp / flops_per_s
    attention_memory = kv_bytes / tp / bytes_per_s
    message = batch * new_tokens * m["d_model"] * m["activation_bytes"]
    steps = 2.0 * (tp - 1.0)
    allreduce = (
        steps * hw["interconnect_latency_s"]
        + steps / tp * message / (hw["interconnect_bytes_per_s"])
    )
    communication = 2.0 * m["n_layers"] * allreduce
    fixed = hw["kernel_launch_s"] * (8.0 * m["n_layers"] + 4.0) + hw["step_overhead_s"]
    linear = xp.maximum(linear_compute, linear_memory)
    attention = xp.maximum(attention_compute, attention_memory)
    time_s = linear + attention + communication + fixed
    # Each roofline group's time counts for the bound that binds it (_cost.binding_bound).
    linear_compute_bound = 1.0 * (linear_compute > linear_memory)
    attention_compute_bound = 1.0 * (attention_compute > attention_memory)
    compute = linear * linear_compute_bound + attention * attention_compute_bound
    memory = linear * (1.0 - linear_compute_bound) + attention * (1.0 - attention_compute_bound)
    return time_s, memory, compute, communication, fixed


def mean_step(m, hw, batch, new_tokens, prompt, generate, tp, xp):
    """Quadrature mean over the growing context; bound from the mean parts."""
    nodes, weights = np.polynomial.legendre.leggauss(QUADRATURE_NODES)
    totals = None
    for node, weight in zip((nodes + 1.0) / 2.0, weights / 2.0, strict=True):
        parts = step_time(m, hw, batch, new_tokens, prompt + float(node) * generate, tp, xp)
        scaled = [float(weight) * p for p in parts]
        totals = scaled if totals is None else [t + s for t, s in zip(totals, scaled, strict=True)]
    time_s, memory, compute, communication, fixed = totals
    return time_s, xp.argmax([memory, compute, communication, fixed])


def report(target, draft, hw, tp, batch, prompt, generate, alpha, gamma, xp):
    """The 19 fields of ``ThroughputReport`` (without gamma) for one point or a broadcast grid."""
    draft_s, draft_bound = mean_step(draft, hw, batch, 1.0, prompt, generate, tp, xp)
    verify_s, verify_bound = mean_step(target, hw, batch, gamma + 1.0, prompt, generate, tp, xp)
    target_s, target_bound = mean_step(target, hw, batch, 1.0, prompt, generate, tp, xp)
    speculating = xp.clip01(gamma)
    overhead = 0.0 * speculating
    iteration = gamma * draft_s + verify_s + overhead
    expected = (1.0 - alpha ** (gamma + 1.0)) / (1.0 - alpha)
    tokens_per_s = batch * expected / iteration
    baseline = batch / target_s
    target_prefill = step_time(target, hw, batch, prompt, 0.0, tp, xp)[0]
    draft_prefill = step_time(draft, hw, batch, prompt, 0.0, tp, xp)[0]
    prefill = target_prefill + speculating * draft_prefill
    final_context = prompt + generate + gamma

    def memory(m, degree):
        kv_width = m["n_kv_heads"] * m["head_dim"]
        layer = m["d_model"] * (m["n_heads"] * m["head_dim"] + 2.0 * kv_width)
        layer = layer + m["n_heads"] * m["head_dim"] * m["d_model"]
        layer = layer + m["mlp_matrices"] * m["d_model"] * m["d_ff"]
        params = m["n_layers"] * layer + m["vocab"] * m["d_model"] * (2.0 - m["tied_embeddings"])
        kv = batch * final_context * m["n_layers"] * 2.0 * kv_width * m["kv_bytes"]
        return (params * m["weight_bytes"] + kv) / degree

    memory_bytes = memory(target, tp) + speculating * memory(draft, tp)
    return {
        "tokens_per_s": tokens_per_s,
        "baseline_tokens_per_s": baseline,
        "speedup": tokens_per_s / baseline,
        "expected_tokens_per_step": expected,
        "acceptance_rate": alpha,
        "draft_step_s": draft_s,
        "verify_step_s": verify_s,
        "target_step_s": target_s,
        "iteration_s": iteration,
        "speculation_overhead_s": overhead,
        "cost_ratio": draft_s / target_s,
        "draft_bound": draft_bound,
        "verify_bound": verify_bound,
        "target_bound": target_bound,
        "prefill_s": prefill,
        "request_latency_s": prefill + generate / expected * iteration,
        "baseline_request_latency_s": target_prefill + generate * target_s,
        "memory_per_chip_bytes": memory_bytes,
        "fits": memory_bytes <= hw["hbm_capacity_bytes"],
    }


def catalogue(grid):
    """Plain-float dictionaries of every hardware and model on the grid's axes."""
    from specsim import hardware, models

    def fields(spec, names):
        return {n: float(getattr(spec, n)) for n in names}

    return (
        [fields(hardware.get(h), HARDWARE_FIELDS) for h in grid["hardware"]],
        [fields(models.get(t), MODEL_FIELDS) for t in grid["target"]],
        [fields(models.get(d), MODEL_FIELDS) for d in grid["draft"]],
    )


# --------------------------------------------------------------------------- methods


def peak_rss_gib() -> float:
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**30


def device_peak_gib() -> float | None:
    """Peak accelerator memory in use (None where the backend does not report it, e.g. CPU)."""
    import jax

    stats = jax.devices()[0].memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
    return None if peak is None else peak / 2**30


def points(grid) -> int:
    return math.prod(len(v) for v in grid.values())


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # every thread: XLA's too
    return usage.ru_utime + usage.ru_stime


def measure_sweep(kwargs: dict, repeats: int) -> dict:
    """One configuration of ``specsim.sweep``: first call, then medians of ``repeats``.

    Besides the end-to-end wall (and process CPU) time it runs the same chunks through
    the compiled kernel back to back, with nothing else: the *device* time. The rest of
    the end-to-end time is the *host's* (validation, dispatch, copies, building rows).
    FLOPs per configuration come from XLA's cost analysis of the compiled kernel.
    """
    import jax
    from device_info import cost

    import specsim._sweep as sweeps

    kernel = sweeps._evaluate_chunk
    calls = []

    def recording(*args, **kw):
        calls.append((args, kw))
        return kernel(*args, **kw)

    sweeps._evaluate_chunk = recording
    try:
        start = time.perf_counter()
        result = sweeps.sweep(**kwargs)
        first = time.perf_counter() - start
    finally:
        sweeps._evaluate_chunk = kernel
    walls, cpus = [], []
    for _ in range(repeats):
        del result
        cpu, start = cpu_seconds(), time.perf_counter()
        result = sweeps.sweep(**kwargs)
        walls.append(time.perf_counter() - start)
        cpus.append(cpu_seconds() - cpu)
    args, kw = calls[0]
    compiled = kernel.lower(*args, **kw).compile()
    device = []
    for _ in range(repeats):
        start = time.perf_counter()
        outs = [compiled(*a) for a, _ in calls]
        jax.block_until_ready(outs)
        device.append(time.perf_counter() - start)
        del outs
    n = points({k: v for k, v in kwargs.items() if k in GRID})
    flops = cost(compiled)["flops"] * len(calls)
    wall = float(np.median(walls))
    return {
        "points": n,
        "rows": len(result) if result is not None else 0,
        "chunks": len(calls),
        "first_call_s": first,
        "median_s": wall,
        "best_s": float(np.min(walls)),
        "cpu_s": float(np.median(cpus)),
        "device_s": float(np.median(device)),
        "host_s": max(wall - float(np.median(device)), 0.0),
        "flops_per_config": flops / n,
        "result": result,
    }


JAX_VARIANTS = {
    "all columns, DataFrame": dict(),
    "all columns, SweepResult": dict(as_frame=False),
    "tokens_per_s only, DataFrame": dict(columns=["tokens_per_s"]),
    "tokens_per_s only, SweepResult": dict(columns=["tokens_per_s"], as_frame=False),
}


def run_jax(repeats: int) -> dict:
    import jax
    from device_info import arithmetic_limit, describe

    runs = {}
    for label, extra in JAX_VARIANTS.items():
        kwargs = dict(GRID, quadrature_nodes=QUADRATURE_NODES, progress=False, **extra)
        runs[label] = measure_sweep(kwargs, repeats)
    frame = runs["all columns, DataFrame"]["result"]
    columns = [
        frame[f].cat.codes if f.endswith("_bound") else frame[f].astype(np.float64) for f in FIELDS
    ]
    np.save(RESULT_PATH, np.stack([np.asarray(c, np.float64) for c in columns], axis=1))
    for run in runs.values():
        del run["result"]
    return {
        "method": "jax",
        **describe(),
        "limit": arithmetic_limit(),
        "points": len(frame),
        "runs": runs,
        "peak_rss_gib": peak_rss_gib(),
        "device_peak_gib": device_peak_gib(),
        "device": str(jax.devices()[0].device_kind),
    }


def run_numpy(repeats: int) -> dict:
    hws, targets, drafts = catalogue(GRID)
    names = list(GRID)
    ndim = len(names)

    def along(name, values):
        shape = [1] * ndim
        shape[names.index(name)] = -1
        return np.asarray(values, np.float64).reshape(shape)

    def stacked(name, dicts):
        return {k: along(name, [d[k] for d in dicts]) for k in dicts[0]}

    def evaluate():
        out = report(
            stacked("target", targets),
            stacked("draft", drafts),
            stacked("hardware", hws),
            along("tp", GRID["tp"]),
            along("batch", GRID["batch"]),
            along("prompt_tokens", GRID["prompt_tokens"]),
            along("generate_tokens", GRID["generate_tokens"]),
            along("alpha", GRID["alpha"]),
            along("gamma", GRID["gamma"]),
            NumPyMath,
        )
        shape = tuple(len(GRID[n]) for n in names)
        # Materialise every column at full length, as a DataFrame of results would.
        return {k: np.broadcast_to(v, shape).reshape(-1) for k, v in out.items()}

    evaluate()
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        columns = evaluate()
        timings.append(time.perf_counter() - start)
    expected = np.load(RESULT_PATH)
    worst = max_relative_error(np.stack([columns[f] for f in FIELDS], axis=1), expected)
    return {
        "method": "numpy",
        "points": points(GRID),
        "median_s": float(np.median(timings)),
        "best_s": float(np.min(timings)),
        "max_rel_error": worst,
        "peak_rss_gib": peak_rss_gib(),
    }


def run_numpy_flat(repeats: int) -> dict:
    """NumPy on one array entry per point (every input gathered to grid length first)."""
    hws, targets, drafts = catalogue(GRID)
    tables = {"hardware": hws, "target": targets, "draft": drafts}
    shape = [len(v) for v in GRID.values()]

    def evaluate():
        digits = dict(zip(GRID, np.unravel_index(np.arange(points(GRID)), shape), strict=True))
        values = {}
        for name, index in digits.items():
            if name in tables:
                values[name] = {
                    k: np.asarray([d[k] for d in tables[name]])[index] for k in tables[name][0]
                }
            else:
                values[name] = np.asarray(GRID[name], np.float64)[index]
        return report(
            values["target"],
            values["draft"],
            values["hardware"],
            values["tp"],
            values["batch"],
            values["prompt_tokens"],
            values["generate_tokens"],
            values["alpha"],
            values["gamma"],
            NumPyMath,
        )

    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        columns = evaluate()
        timings.append(time.perf_counter() - start)
    expected = np.load(RESULT_PATH)
    got = np.stack([np.broadcast_to(columns[f], (points(GRID),)) for f in FIELDS], axis=1)
    return {
        "method": "numpy-flat",
        "points": points(GRID),
        "median_s": float(np.median(timings)),
        "best_s": float(np.min(timings)),
        "max_rel_error": max_relative_error(got, expected),
        "peak_rss_gib": peak_rss_gib(),
    }


def run_python(sample: int) -> dict:
    hws, targets, drafts = catalogue(GRID)
    tables = {"hardware": hws, "target": targets, "draft": drafts}
    shape = [len(v) for v in GRID.values()]
    rng = random.Random(0)
    flat = sorted(rng.randrange(points(GRID)) for _ in range(sample))
    start = time.perf_counter()
    rows = []
    for index in flat:
        digits = np.unravel_index(index, shape)
        point = {
            name: (tables[name][i] if name in tables else float(GRID[name][i]))
            for name, i in zip(GRID, digits, strict=True)
        }
        out = report(
            point["target"],
            point["draft"],
            point["hardware"],
            point["tp"],
            point["batch"],
            point["prompt_tokens"],
            point["generate_tokens"],
            point["alpha"],
            point["gamma"],
            PythonMath,
        )
        rows.append([float(out[f]) for f in FIELDS])
    elapsed = time.perf_counter() - start
    expected = np.load(RESULT_PATH)[flat]
    return {
        "method": "python",
        "points": sample,
        "seconds": elapsed,
        "max_rel_error": max_relative_error(np.asarray(rows), expected),
        "peak_rss_gib": peak_rss_gib(),
    }


def max_relative_error(got: np.ndarray, expected: np.ndarray) -> float:
    # The sweep is float32; relative to each column's magnitude, so near-zero entries
    # (speculation overhead, which is 0) do not dominate.
    scale = np.maximum(np.abs(expected).max(axis=0), 1e-30)
    return float(np.max(np.abs(got - expected) / scale))


BIG_VARIANTS = {
    "SweepResult": dict(as_frame=False),
    "DataFrame": dict(),
}


def run_big(mode: str, repeats: int) -> dict:
    from specsim._sweep import sweep

    if mode == "best":
        runs = {}
        for label, extra in BIG_VARIANTS.items():
            kwargs = dict(
                BIG_GRID,
                columns=["tokens_per_s", "speedup"],
                best_over="gamma",
                progress=False,
                **extra,
            )
            run = measure_sweep(kwargs, max(1, repeats // 2))
            del run["result"]
            runs[label] = run
        return {
            "method": "1e8-best",
            "points": points(BIG_GRID),
            "runs": runs,
            "peak_rss_gib": peak_rss_gib(),
            "device_peak_gib": device_peak_gib(),
        }
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "grid.parquet")
        sweep(**BIG_GRID, columns=["tokens_per_s"], out=path, progress=False)
        file_gib = os.path.getsize(path) / 2**30
    return {
        "method": "1e8-parquet",
        "points": points(BIG_GRID),
        "seconds": time.perf_counter() - start,
        "file_gib": file_gib,
        "peak_rss_gib": peak_rss_gib(),
        "device_peak_gib": device_peak_gib(),
    }


def run_profile() -> dict:
    """Device profile of one chunk: all columns of the 10^6 grid, and the best gamma of
    one 10^8-grid chunk (cost analysis and the busiest XLA operations)."""
    import jax
    from device_info import cost, describe, trace_summary

    import specsim._sweep as sweeps

    out = {"method": "profile", **describe(), "chunks": {}}
    cases = {
        "10^6 grid, all columns (one chunk)": dict(GRID, quadrature_nodes=QUADRATURE_NODES),
        "10^8 grid, best gamma, tokens_per_s and speedup (first chunk)": dict(
            BIG_GRID, columns=["tokens_per_s", "speedup"], best_over="gamma"
        ),
    }
    kernel = sweeps._evaluate_chunk
    for label, kwargs in cases.items():
        calls = []

        def recording(*args, calls=calls, **kw):
            calls.append((args, kw))
            return kernel(*args, **kw)

        sweeps._evaluate_chunk = recording
        try:
            sweeps.sweep(**kwargs, as_frame=False, progress=False)
        finally:
            sweeps._evaluate_chunk = kernel
        args, kw = calls[0]
        compiled = kernel.lower(*args, **kw).compile()
        plan = kw["plan"]
        inner = math.prod(len(kwargs[a]) if a in kwargs else 1 for a in plan.inner_axes)
        chunk_points = args[0].shape[0] * inner
        out["chunks"][label] = {
            "points": chunk_points,
            "outer_axes": list(plan.outer_axes),
            "inner_axes": list(plan.inner_axes),
            **cost(compiled),
            "top": trace_summary(lambda c=compiled, a=args: jax.block_until_ready(c(*a))),
        }
    return out


RESULT_PATH = Path(tempfile.gettempdir()) / "specsim-sweep-benchmark-reference.npy"


# --------------------------------------------------------------------------- driver


def child(method: str, args) -> dict:
    cmd = [sys.executable, __file__, "--child", method, "--repeats", str(args.repeats)]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"{method} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def device_memory(run: dict) -> str:
    peak = run.get("device_peak_gib")
    return "" if peak is None else f", accelerator peak {peak:.2f} GiB"


def describe_run(label: str, run: dict, limit: dict) -> str:
    """One line per measured configuration: rates, host/device split, arithmetic share."""
    n = run["points"]
    rate = n / run["median_s"]
    device_rate = n / run["device_s"] if run["device_s"] > 0 else float("inf")
    flops = run["flops_per_config"]
    share = rate * flops / limit["measured"] if limit["measured"] else float("nan")
    return (
        f"  {label:32s} {rate:9.3g} configs/s (median {run['median_s'] * 1e3:7.1f} ms, best "
        f"{run['best_s'] * 1e3:7.1f} ms, CPU {run['cpu_s'] * 1e3:7.1f} ms; first call "
        f"{run['first_call_s']:.2f} s)\n"
        f"  {'':32s} device {run['device_s'] * 1e3:7.1f} ms ({device_rate:.3g} configs/s), "
        f"host {run['host_s'] * 1e3:7.1f} ms; {run['chunks']} chunk(s), {run['rows']:,} rows; "
        f"{flops:.1f} FLOPs/config -> {share:.2%} of the arithmetic limit; "
        f"{n / run['cpu_s']:.3g} configs per process CPU-second"
    )


def write_profile(path: str, profile: dict, limit: dict, load: float) -> None:
    lines = [
        f"# python benchmarks/sweep.py --profile {path}; load average {load:.1f} at start",
        f"# device: {profile['devices']} x {profile['device_kind']} ({profile['platform']}), "
        f"jax {profile['jax']}; arithmetic limit (float32 matmul, measured) "
        f"{limit['measured']:.3g} FLOP/s",
    ]
    for label, chunk in profile["chunks"].items():
        lines.append("")
        lines.append(f"{label}: {chunk['points']:,} points")
        lines.append(f"  outer axes {chunk['outer_axes']}, inner (vmapped) {chunk['inner_axes']}")
        lines.append(
            f"  XLA cost analysis: {chunk['flops']:.4g} FLOPs "
            f"({chunk['flops'] / chunk['points']:.1f} per point), "
            f"{chunk['transcendentals']:.4g} transcendentals, {chunk['bytes']:.4g} bytes"
        )
        lines.append("  busiest device operations (jax.profiler trace, per run):")
        for name, us, calls in chunk["top"]:
            lines.append(f"    {us:10.0f} us  x{calls:<4.0f} {name}")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def references_report(n: int, jx: dict, npy: dict, flat: dict, py: dict) -> None:
    """The NumPy and pure-Python references beside the all-column DataFrame sweep."""
    jax_rate = n / jx["runs"]["all columns, DataFrame"]["median_s"]
    numpy_rate = npy["points"] / npy["median_s"]
    flat_rate = flat["points"] / flat["median_s"]
    python_rate = py["points"] / py["seconds"]
    print(
        f"NumPy (float64, broadcast): median {npy['median_s']:.2f} s -> {numpy_rate:.3g} "
        f"configs/s; max rel. error vs sweep {npy['max_rel_error']:.1e}; "
        f"peak RSS {npy['peak_rss_gib']:.2f} GiB"
    )
    print(
        f"NumPy (float64, one entry per point): median {flat['median_s']:.2f} s -> "
        f"{flat_rate:.3g} configs/s; max rel. error vs sweep {flat['max_rel_error']:.1e}; "
        f"peak RSS {flat['peak_rss_gib']:.2f} GiB"
    )
    print(
        f"pure Python loop: {py['points']:,} sampled points in {py['seconds']:.2f} s -> "
        f"{python_rate:.3g} configs/s (10^6 points would take "
        f"{n / python_rate / 60:.0f} min); max rel. error vs sweep "
        f"{py['max_rel_error']:.1e}; peak RSS {py['peak_rss_gib']:.2f} GiB"
    )
    print(
        f"ratios (all columns, DataFrame): JAX / pure Python = {jax_rate / python_rate:,.0f}x, "
        f"JAX / NumPy broadcast = {jax_rate / numpy_rate:.1f}x, "
        f"JAX / NumPy per point = {jax_rate / flat_rate:.0f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip the 1e8 Parquet stream")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--jax-only", action="store_true", help="skip the NumPy and pure-Python references"
    )
    parser.add_argument(
        "--profile", metavar="FILE", default=None, help="also write a device profile of one chunk"
    )
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        runners = {
            "jax": lambda: run_jax(args.repeats),
            "numpy": lambda: run_numpy(max(1, args.repeats // 2)),
            "numpy-flat": lambda: run_numpy_flat(2),
            "python": lambda: run_python(PYTHON_SAMPLE),
            "best": lambda: run_big("best", args.repeats),
            "parquet": lambda: run_big("parquet", args.repeats),
            "profile": run_profile,
        }
        print(json.dumps(runners[args.child]()))
        return

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"specsim sweep benchmark: {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, load average {load:.1f}, Python {platform.python_version()}"
    )
    jx = child("jax", args)
    npy = flat = py = None
    if not args.jax_only:
        npy, flat, py = (child(m, args) for m in ("numpy", "numpy-flat", "python"))
    # A reference that computes other numbers is not a reference: its speed ratio is
    # left out (and said so), the sweep's own figures are still reported.
    stale = [
        run
        for run in (() if args.jax_only else (npy, flat, py))
        if not run["max_rel_error"] < 1e-4  # float32 sweep vs float64 references
    ]
    limit = jx["limit"]
    nominal = limit["nominal"]
    print(
        f"device: {jx['devices']} x {jx['device_kind']} ({jx['platform']}), jax {jx['jax']}; "
        f"arithmetic limit {limit['measured']:.3g} FLOP/s (float32 matmul, measured)"
        + (f", {nominal:.3g} nominal" if nominal else "")
    )
    n = jx["points"]
    print(
        f"grid: {n:,} points ({' x '.join(str(len(v)) for v in GRID.values())} over "
        f"{', '.join(GRID)}), {QUADRATURE_NODES} quadrature nodes, all 19 report fields"
    )
    print(
        "JAX sweep (device = the compiled chunks back to back; host = the rest of the "
        "end-to-end time):"
    )
    for label, run in jx["runs"].items():
        print(describe_run(label, run, limit))
    if args.jax_only:
        print("(--jax-only: NumPy and pure-Python references skipped)")
    elif stale:
        for run in stale:
            print(
                f"{run['method']} disagrees with the sweep (max relative error "
                f"{run['max_rel_error']:.1e}): its formulas are out of date, no ratio reported"
            )
    else:
        references_report(n, jx, npy, flat, py)
    best = child("best", args)
    print(
        f"10^8 points ({best['points']:,}), best gamma per point (tokens_per_s and speedup "
        f"there), reduced on the device; peak RSS {best['peak_rss_gib']:.2f} "
        f"GiB{device_memory(best)}:"
    )
    for label, run in best["runs"].items():
        print(describe_run(label, run, limit))
    if not args.quick:
        run = child("parquet", args)
        print(
            f"10^8 points ({run['points']:,}), every point streamed to Parquet "
            f"({run['file_gib']:.2f} GiB file): {run['seconds']:.1f} s, "
            f"{run['points'] / run['seconds']:.3g} configs/s, "
            f"peak RSS {run['peak_rss_gib']:.2f} GiB{device_memory(run)}"
        )
    if args.profile:
        write_profile(args.profile, child("profile", args), limit, load)
        print(f"device profile of one chunk written to {args.profile}")
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
