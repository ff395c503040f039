"""Speed of the discrete-event serving simulator: a 10^6-request trace on this machine.

Target (issue 16, on the project's 2-core machine): a 10^6-request trace replays in under
2 minutes. The trace: Llama-3-8B on one H100 (vLLM-like engine: 256 sequences, 8192
tokens per step, 16-token blocks, KV cache from memory), Poisson arrivals at 45 requests/s
(about 75% of the engine's saturated request rate for these lengths), prompt and output
lengths lognormal (means 256 and 200 tokens, log-space sigma 1.0, ShareGPT-like spread),
with and without speculation (a Llama-68M draft, lookahead 3 up to batch 32, 2 above, off
above 128). The table build (JAX compile and evaluation) is timed apart from the replay.

Prints wall and CPU time (``time.process_time``: the machine is shared, so wall time
depends on the other processes), engine steps and requests/s of wall time.

Usage: ``python benchmarks/serving_des.py [--requests N] [--rate R]`` from the repository root.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import specsim  # noqa: E402  (after the path to this checkout)
from specsim.serving import (  # noqa: E402
    EngineConfig,
    LengthDistribution,
    SpecPolicy,
    StepTimeModel,
    Traffic,
    simulate,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--rate", type=float, default=45.0, help="requests/s")
    parser.add_argument("--progress", action="store_true")
    args = parser.parse_args()

    deployment = specsim.Deployment.create("llama-3-8b", "h100", acceptance=0.7)
    traffic = Traffic.poisson(
        args.rate,
        prompt=LengthDistribution.lognormal(256, 1.0),
        output=LengthDistribution.lognormal(200, 1.0),
    )
    start = time.perf_counter()
    trace = traffic.sample(args.requests, seed=0)
    sample_s = time.perf_counter() - start
    longest = int((trace.prompt_tokens + trace.output_tokens).max())
    draft = specsim.models.get("llama-68m")
    policies = {
        "off": SpecPolicy.off(),
        "draft": SpecPolicy.per_bucket(draft, [3, 3, 3, 3, 3, 3, 2, 2, 0, 0]),
    }
    print(f"# specsim serving DES benchmark, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(
        f"# machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs "
        f"(shared), Python {platform.python_version()}"
    )
    print(
        f"# trace: {len(trace)} requests, Poisson {args.rate:g}/s, prompt/output lognormal "
        f"mean 256/200 sigma 1.0 (longest request {longest} tokens); sampled in {sample_s:.2f} s"
    )
    for name, policy in policies.items():
        engine = EngineConfig.create().resolve(deployment, policy)
        start, cpu = time.perf_counter(), time.process_time()
        model = StepTimeModel.build(
            deployment, policy, engine, max_context_tokens=longest + policy.max_lookahead + 1
        )
        build_s, build_cpu = time.perf_counter() - start, time.process_time() - cpu
        start, cpu = time.perf_counter(), time.process_time()
        result = simulate(trace, model, policy, engine, seed=0, progress=args.progress)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        s = result.summary(warmup_requests=min(1000, len(trace) // 10))
        print(
            f"SD {name:5s}: replay {wall:7.1f} s wall, {cpu:7.1f} s CPU; "
            f"{len(trace) / wall:9.0f} requests/s, {result.steps / cpu:7.0f} steps/s CPU "
            f"({result.steps} steps, {1e6 * cpu / result.steps:.1f} us each); "
            f"table {build_s:.1f} s wall, {build_cpu:.1f} s CPU"
        )
        print(
            f"          simulated: {s['requests_per_s']:.2f} req/s, "
            f"{s['output_tokens_per_s']:.0f} output tokens/s, mean decode batch "
            f"{s['mean_decode_batch']:.1f}, TTFT p50/p90/p99 {1e3 * s['ttft_s_p50']:.1f}/"
            f"{1e3 * s['ttft_s_p90']:.1f}/{1e3 * s['ttft_s_p99']:.1f} ms, TPOT p50/p90 "
            f"{1e3 * s['tpot_s_p50']:.2f}/{1e3 * s['tpot_s_p90']:.2f} ms, "
            f"preemptions {s['preemptions']}"
        )


if __name__ == "__main__":
    main()
