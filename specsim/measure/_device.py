"""The local device: its memory, and a nominal `HardwareSpec` from micro-benchmarks.

``local_hardware()`` measures the two peaks a roofline needs on whatever JAX runs
on (CPU, GPU or TPU): dense matmul FLOP/s (a large square product in the compute
dtype) and memory bandwidth (a large array copy, bytes read plus written). The
efficiencies are set to 1 and the overheads to a measured dispatch latency;
`specsim.calibrate` then fits efficiencies and overheads to measured step times.
"""

from __future__ import annotations

import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

from ..hardware import HardwareSpec
from ._clock import clock_function

# Fraction of the free memory a measurement may plan to use (the rest is headroom for
# activations, compiled programs and the runtime).
MEMORY_HEADROOM = 0.8


def device_kind() -> str:
    """Short description of the default device, e.g. ``"cpu (Intel Xeon, 2 cores)"``."""
    device = jax.devices()[0]
    if device.platform == "cpu":
        return f"cpu ({cpu_model()}, {os.cpu_count()} cores)"
    return f"{device.platform} ({device.device_kind})"


def cpu_model() -> str:
    """The processor's model name from ``/proc/cpuinfo`` (or ``platform.processor()``)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown cpu"


def memory_capacity_bytes() -> float:
    """Total memory of the default device, bytes (host RAM on CPU)."""
    device = jax.devices()[0]
    stats = _memory_stats(device)
    if stats and "bytes_limit" in stats:
        return float(stats["bytes_limit"])
    return float(_host_memory()[0])


def free_memory_bytes() -> float:
    """Memory of the default device not in use, bytes (host RAM available on CPU)."""
    device = jax.devices()[0]
    stats = _memory_stats(device)
    if stats and "bytes_limit" in stats:
        return float(stats["bytes_limit"] - stats.get("bytes_in_use", 0))
    return float(_host_memory()[1])


def check_fits(required_bytes: float, what: str = "the measurement") -> None:
    """Raises ``ValueError`` if ``required_bytes`` exceed the usable free device memory.

    Examples:
        >>> check_fits(1e30, "a galaxy-sized model")
        Traceback (most recent call last):
        ...
        ValueError: a galaxy-sized model needs 1e+21 GB but the device (...) has ...
    """
    free = free_memory_bytes()
    if required_bytes > MEMORY_HEADROOM * free:
        raise ValueError(
            f"{what} needs {required_bytes / 1e9:.3g} GB but the device ({device_kind()}) "
            f"has {free / 1e9:.3g} GB free ({MEMORY_HEADROOM:.0%} usable); "
            "choose a smaller model, batch or context"
        )


def _memory_stats(device):
    try:
        return device.memory_stats()
    except Exception:  # CPU backends may not implement it
        return None


def _host_memory() -> tuple[int, int]:
    try:
        import psutil

        vm = psutil.virtual_memory()
        return vm.total, vm.available
    except ImportError:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        return pages, available


def _best_time_s(fn, *args, repeats: int, clock: str = "wall") -> float:
    now = clock_function(clock)
    jax.block_until_ready(fn(*args))  # compile and warm up
    best = np.inf
    for _ in range(repeats):
        start = now()
        jax.block_until_ready(fn(*args))
        best = min(best, now() - start)
    return float(best)


def measure_matmul_flops_per_s(
    dtype=jnp.float32, size: int | None = None, repeats: int = 10, clock: str = "wall"
):
    """Dense matmul rate of the default device, FLOP/s (best of ``repeats``).

    Args:
        dtype: operand dtype.
        size: square matrix size. Default: the best of several sizes (512 to 2048 on a
            CPU, 4096 and 8192 elsewhere), so that the nominal peak is a peak.
        repeats: timed runs after one warm-up.
        clock: ``"wall"`` or ``"process"`` (see ``specsim.measure.CLOCKS``).
    """
    if size is None:
        on_cpu = jax.devices()[0].platform == "cpu"
        sizes = (512, 1024, 2048) if on_cpu else (4096, 8192)
        return max(measure_matmul_flops_per_s(dtype, n, repeats, clock) for n in sizes)
    a = jax.random.normal(jax.random.key(0), (size, size), jnp.float32).astype(dtype)
    b = jax.random.normal(jax.random.key(1), (size, size), jnp.float32).astype(dtype)
    time_s = _best_time_s(jax.jit(jnp.matmul), a, b, repeats=repeats, clock=clock)
    return 2.0 * size**3 / time_s


def measure_copy_bytes_per_s(n_bytes: float | None = None, repeats: int = 10, clock: str = "wall"):
    """Memory bandwidth of the default device from an array copy, bytes/s (read + write).

    Args:
        n_bytes: size of the copied array. Default: the best of several sizes, 1 to 64 MB
            on a CPU (weights of small networks stay in its caches, so the achievable
            bandwidth is the caches' rather than DRAM's) and 0.25 to 2 GB elsewhere.
        repeats: timed runs after one warm-up.
        clock: ``"wall"`` or ``"process"`` (see ``specsim.measure.CLOCKS``).
    """
    if n_bytes is None:
        on_cpu = jax.devices()[0].platform == "cpu"
        sizes = (1e6, 4e6, 16e6, 64e6) if on_cpu else (0.25e9, 1e9, 2e9)
        return max(measure_copy_bytes_per_s(size, repeats, clock) for size in sizes)
    x = jnp.ones((int(n_bytes // 4),), jnp.float32)
    time_s = _best_time_s(jax.jit(lambda v: v * 1.0001), x, repeats=repeats, clock=clock)
    return 2.0 * x.size * 4 / time_s


def measure_dispatch_s(repeats: int = 50) -> float:
    """Latency of launching a trivial jitted computation and waiting for it, s (median)."""
    fn = jax.jit(lambda v: v + 1.0)
    x = jnp.zeros((8,), jnp.float32)
    jax.block_until_ready(fn(x))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(x))
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def local_hardware(compute_dtype: str | None = None, clock: str = "wall") -> HardwareSpec:
    """Nominal `HardwareSpec` of the default device from quick micro-benchmarks.

    Peak FLOP/s is a large matmul in ``compute_dtype`` (default fp32 on CPU, bf16
    elsewhere) and is reported under every dtype (CPUs have no faster bf16 path);
    bandwidth is a large copy; capacity is the device's (or host's) memory;
    efficiencies are 1 and both overheads the measured dispatch latency, as a
    starting point for `specsim.calibrate`.

    Args:
        compute_dtype: ``"fp32"`` or ``"bf16"``.
        clock: ``"wall"`` or ``"process"`` (see ``specsim.measure.CLOCKS``).

    Returns:
        `HardwareSpec` in SI units (interconnect: a single chip, so nominal values).
    """
    on_cpu = jax.devices()[0].platform == "cpu"
    compute_dtype = compute_dtype or ("fp32" if on_cpu else "bf16")
    dtype = {"fp32": jnp.float32, "bf16": jnp.bfloat16}[compute_dtype]
    flops = measure_matmul_flops_per_s(dtype, clock=clock)
    bandwidth = measure_copy_bytes_per_s(clock=clock)
    dispatch_s = measure_dispatch_s()
    return HardwareSpec(
        fp32_flops_per_s=flops,
        bf16_flops_per_s=flops,
        fp8_flops_per_s=flops,
        int8_flops_per_s=flops,
        hbm_bytes_per_s=bandwidth,
        hbm_capacity_bytes=memory_capacity_bytes(),
        interconnect_bytes_per_s=1e9,
        interconnect_latency_s=0.0,
        compute_efficiency=1.0,
        memory_efficiency=1.0,
        kernel_launch_s=dispatch_s / 16.0,
        step_overhead_s=dispatch_s,
    ).validate("local")
