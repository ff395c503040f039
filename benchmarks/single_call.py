"""Cost of one configuration from Python: `throughput`, `predict` and a compiled `Evaluator`.

A notebook loop or an event-driven simulator asks for one configuration at a time. This
times, as the median of N calls each (N = 1,000 by default, after a warm-up), on
Llama-2-7B with a Llama-68M draft on an A100 at batch 1 (128 + 128 tokens, gamma 4,
alpha 0.8):

* ``specsim.throughput(target, draft, hardware, workload, gamma, acceptance)``: builds
  and validates a `Deployment` every call;
* ``specsim.predict(deployment, draft, gamma)``: validates the deployment every call;
* ``Evaluator(deployment, draft)(gamma)``: compiled once, a new gamma every call;
* the jitted core ``_throughput`` called directly with the pytrees (the dispatch cost the
  packed path avoids);

and the parts of a `throughput` call: building and validating the deployment, packing
the leaves, the compiled kernel, unpacking the report.

On a CPU, JAX runs a compiled call on a worker thread unless XLA counts it under 1,000
FLOPs (this kernel: about 6,900). On an idle machine, a virtual one especially, handing the
call to that thread and waking the caller again can cost several times the kernel.
``--sync-dispatch`` sets ``jax_cpu_enable_async_dispatch`` to False first (every CPU call
then runs in the calling thread), the setting for a loop of single calls.

Usage: ``python benchmarks/single_call.py [--calls N] [--sync-dispatch]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import specsim
from specsim import _throughput as core
from specsim import hardware, models


def median_us(fn, calls: int) -> float:
    fn()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument(
        "--sync-dispatch",
        action="store_true",
        help="run each CPU computation in the calling thread (jax_cpu_enable_async_dispatch off)",
    )
    args = parser.parse_args()
    n = args.calls
    if args.sync_dispatch:  # before JAX's CPU client exists: it reads the flag once
        jax.config.update("jax_cpu_enable_async_dispatch", False)

    target, draft = models.get("llama-2-7b"), models.get("llama-68m")
    chip = hardware.get("a100-80gb")
    workload = specsim.Workload.create(batch=1, prompt_tokens=128, generate_tokens=128)
    deployment = specsim.Deployment.create(target, chip, workload, 0.8)
    evaluate = specsim.Evaluator(deployment, draft, 4.0)
    floats, integers, layout = core._pack((deployment, draft, 4.0))
    structure = core._report_structure(layout, None, core.QUADRATURE_NODES)
    packed = np.asarray(
        core._throughput_packed(floats, integers, layout, None, core.QUADRATURE_NODES)
    )

    gammas = iter(np.tile(np.arange(1.0, 9.0), n + 16))
    rows = [
        (
            "specsim.throughput(...)",
            lambda: specsim.throughput(target, draft, chip, workload, 4.0, 0.8),
        ),
        ("specsim.predict(deployment, ...)", lambda: specsim.predict(deployment, draft, 4.0)),
        ("Evaluator(deployment, draft)(gamma)", lambda: evaluate(next(gammas))),
        (
            "jitted core, pytrees (no packing)",
            lambda: jax.block_until_ready(
                core._throughput(deployment, draft, 4.0, None, core.QUADRATURE_NODES)
            ),
        ),
    ]
    parts = [
        (
            "  build + validate the Deployment",
            lambda: core._deployment(target, chip, workload, 0.8, 1.0, None, 0.0),
        ),
        ("  pack leaves into one vector", lambda: core._pack((deployment, draft, 4.0))),
        (
            "  compiled kernel (one vector in, one out)",
            lambda: core.host_result(
                core._throughput_packed(floats, integers, layout, None, core.QUADRATURE_NODES)
            ),
        ),
        ("  unpack the report", lambda: core._unpack_report(packed, structure)),
    ]
    load = os.getloadavg()[0]
    device = jax.devices()[0]
    print(
        f"specsim single-call benchmark: {device.platform} ({device.device_kind}), "
        f"{os.cpu_count()} cores, jax {jax.__version__}, Python {platform.python_version()}; "
        f"load average {load:.1f}"
    )
    dispatch = "synchronous" if args.sync_dispatch else "asynchronous (JAX's default)"
    print(
        f"median of {n:,} calls each (Llama-2-7B + Llama-68M on A100 80GB, batch 1, gamma 4); "
        f"CPU dispatch {dispatch}"
    )
    for label, fn in rows:
        print(f"{label:44s} {median_us(fn, n):8.1f} us")
    print("parts of a throughput call:")
    for label, fn in parts:
        print(f"{label:44s} {median_us(fn, n):8.1f} us")
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
