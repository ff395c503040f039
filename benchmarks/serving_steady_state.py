"""Traffic scenarios per second of the steady-state serving model in a vmapped sweep.

One deployment (Llama-3-8B on one H100 SXM, vLLM-like limits), N traffic scenarios (arrival
rate, mean prompt and output lengths and their spreads, drawn at random inside ranges
that keep most of them below saturation), every `SteadyStateReport` field computed for each
(throughput, goodput, TTFT/TPOT/e2e p50/p90/p99, saturation, load, limits), for plain
decoding and for a llama-68m draft at lookahead 3. One jitted call per policy evaluates all
scenarios, ``vmap``-ed over chunks of ``--chunk`` scenarios in a ``lax.map`` (chunks that
fit in the CPU's caches: ~1.3x fewer CPU-seconds than one ``vmap`` over all 10^5; ``--chunk
0`` for that), after a warm-up call that compiles; the median of three timed calls is
reported as wall time and as process CPU time (all threads). The machine is shared: the
scenarios per CPU-second are what the model costs; the wall rate depends on the load
average printed beside it.

Usage::

    python benchmarks/serving_steady_state.py [--scenarios 100000] [--chunk 1024]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import specsim  # noqa: E402
from specsim.serving import SLO, LengthDistribution, SpecPolicy, Traffic  # noqa: E402
from specsim.serving._steady_state import _steady_state, check_inputs  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", type=int, default=100_000)
    parser.add_argument("--chunk", type=int, default=1024)
    args = parser.parse_args()
    n = args.scenarios
    rng = np.random.default_rng(0)
    rates = rng.uniform(0.5, 30.0, n)
    prompt_means = rng.uniform(64, 2048, n)
    output_means = rng.uniform(32, 512, n)
    sigmas = rng.uniform(0.0, 1.0, n)
    deployment = specsim.Deployment.create("llama-3-8b", "h100", acceptance=0.7)
    slo = SLO.create(ttft_s=0.5, tpot_s=0.05)
    base = Traffic.poisson(
        1.0, LengthDistribution.lognormal(512, 0.5), LengthDistribution.lognormal(128, 0.5)
    )
    print(
        f"specsim serving steady-state benchmark: {platform.machine()}, {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.1f}, JAX {jax.__version__} on "
        f"{jax.devices()[0].platform}"
    )
    print(
        f"{n:,} traffic scenarios in chunks of {args.chunk or n:,} (rate 0.5-30 req/s, "
        "prompt mean 64-2048, output mean 32-512, sigma 0-1)"
    )
    policies = {
        "plain": SpecPolicy.off(),
        "draft llama-68m, lookahead 3": SpecPolicy.fixed(
            specsim.models.get("llama-68m"), lookahead=3
        ),
    }
    for name, policy in policies.items():
        d, p, t, e, s = check_inputs(deployment, policy, base, None, slo)

        @jax.jit
        def sweep(rate, prompt, output, sigma, d=d, p=p, t=t, e=e, s=s):
            def one(rate, prompt, output, sigma):
                traffic = t.replace(
                    rate_per_s=rate,
                    prompt=t.prompt.replace(mean_tokens=prompt, sigma=sigma),
                    output=t.output.replace(mean_tokens=output, sigma=sigma),
                )
                return _steady_state(d, p, traffic, e, s, 1.0)

            if args.chunk:
                return jax.lax.map(
                    lambda a: one(*a), (rate, prompt, output, sigma), batch_size=args.chunk
                )
            return jax.vmap(one)(rate, prompt, output, sigma)

        inputs = [jnp.asarray(v, jnp.float32) for v in (rates, prompt_means, output_means, sigmas)]
        start = time.perf_counter()
        report = jax.block_until_ready(sweep(*inputs))
        first = time.perf_counter() - start
        times, cpu_times = [], []
        for _ in range(3):
            start, cpu_start = time.perf_counter(), time.process_time()
            report = jax.block_until_ready(sweep(*inputs))
            times.append(time.perf_counter() - start)
            cpu_times.append(time.process_time() - cpu_start)
        median, cpu = float(np.median(times)), float(np.median(cpu_times))
        fields = report.__dataclass_fields__
        values = np.stack([np.asarray(getattr(report, f), np.float64) for f in fields])
        finite = bool(np.all(np.isfinite(values)))
        feasible = float(np.mean(np.asarray(report.feasible)))
        within = float(np.mean(np.asarray(report.within_approximation)))
        print(
            f"{name}: first call {first:.1f} s (compiles), then median {median:.3f} s wall, "
            f"{cpu:.3f} CPU-s -> {n / median:.3g} scenarios/s, {n / cpu:.3g} per CPU-second "
            f"(load average {os.getloadavg()[0]:.1f}); {len(fields)} fields, all finite: "
            f"{finite}; feasible {feasible:.0%}, within the approximation {within:.0%}"
        )


if __name__ == "__main__":
    main()
