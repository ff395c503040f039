"""What a benchmark needs to know about the device it runs on (shared by sweep.py and
optimize.py): a description, the machine's load, its arithmetic limit, and the device
profile of one compiled call.

The arithmetic limit is measured, not looked up: the float32 FLOP/s XLA reaches on a large
matrix product on this device (what a vectorised kernel can hope for). For accelerators
with a published float32 vector peak the nominal figure is printed beside it.
"""

from __future__ import annotations

import collections
import glob
import gzip
import json
import os
import shutil
import tempfile
import time

# Published dense float32 (non-tensor-core) peaks, FLOP/s, by JAX device kind.
NOMINAL_FP32_FLOPS = {
    "NVIDIA H100 80GB HBM3": 67e12,  # H100 SXM5 datasheet, FP32
    "NVIDIA H100 PCIe": 51e12,
    "NVIDIA H200": 67e12,  # H200 SXM datasheet, FP32
    "NVIDIA A100-SXM4-80GB": 19.5e12,
    "NVIDIA A100-SXM4-40GB": 19.5e12,
}


def load_average() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def describe() -> dict:
    import jax

    device = jax.devices()[0]
    return {
        "platform": device.platform,
        "device_kind": device.device_kind,
        "devices": jax.device_count(),
        "cores": os.cpu_count(),
        "jax": jax.__version__,
    }


def matmul_flops_per_s(n: int = 2048, repeats: int = 5) -> float:
    """float32 FLOP/s of an ``n x n`` matrix product on the default device (best of runs)."""
    import jax
    import jax.numpy as jnp

    a = jnp.ones((n, n), jnp.float32)
    product = jax.jit(lambda x: x @ x)
    product(a).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        product(a).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return 2.0 * n**3 / best


def arithmetic_limit() -> dict:
    """``{"measured": FLOP/s, "nominal": FLOP/s or None}`` for the default device."""
    kind = describe()["device_kind"]
    return {"measured": matmul_flops_per_s(), "nominal": NOMINAL_FP32_FLOPS.get(kind)}


def cost(compiled) -> dict:
    """FLOPs, transcendentals and bytes of a compiled call (XLA's cost analysis)."""
    analysis = compiled.cost_analysis()
    if isinstance(analysis, list):
        analysis = analysis[0] if analysis else {}
    return {
        "flops": float(analysis.get("flops", 0.0)),
        "transcendentals": float(analysis.get("transcendentals", 0.0)),
        "bytes": float(analysis.get("bytes accessed", 0.0)),
    }


def trace_summary(call, repeats: int = 3, top: int = 12) -> list[tuple[str, float, float]]:
    """``(name, microseconds per run, calls per run)`` of the busiest device operations
    (XLA thunks / kernels) while running ``call()`` ``repeats`` times under the profiler."""
    import jax

    call()
    folder = tempfile.mkdtemp(prefix="specsim-trace-")
    try:
        with jax.profiler.trace(folder, create_perfetto_trace=True):
            for _ in range(repeats):
                call()
        files = glob.glob(os.path.join(folder, "**", "*.json.gz"), recursive=True)
        if not files:
            return []
        with gzip.open(files[0]) as f:
            events = json.load(f)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    events = events["traceEvents"] if isinstance(events, dict) else events
    total, count = collections.Counter(), collections.Counter()
    for event in events:
        name = event.get("name", "")
        if event.get("ph") != "X" or name.startswith("$") or "Execute" in name:
            continue  # Python frames and executor bookkeeping
        total[name] += event.get("dur", 0)
        count[name] += 1
    return [(name, us / repeats, count[name] / repeats) for name, us in total.most_common(top)]
