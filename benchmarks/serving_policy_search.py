"""Goodput per dollar: gradient search against random search with the same evaluations.

Problem: serve Llama-3-8B on H100 SXM chips (3.99 USD per chip-hour, the price table's) at
a Poisson traffic of 40 requests/s (lognormal prompts of mean 512 and outputs of mean 256,
sigma 0.5) under an SLO of TTFT <= 0.5 s and TPOT <= 15 ms at p90. Searched jointly: a draft
model's depth and width (acceptance from the SDSL law of its size), one lookahead for each
of ten decode-batch buckets (0-8), the tensor-parallel degree (1, 2, 4, 8) and the replica
count (1-16): 16 dimensions.

* gradient: ``optimize_serving`` (optax Adam, learning rate 0.1, 40 steps x 8 restarts,
  then 4 rounding candidates per restart: 352 evaluations).
* random: ``random_serving_search`` with the same 352 evaluations.

Two seeds each; the score is the exact goodput per dollar of the returned whole-numbered
design (0 if it misses the SLO or lies beyond the model's approximation). Writes a table
and a figure (best score against evaluations).

Usage::

    python benchmarks/serving_policy_search.py [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import jax
import numpy as np
from matplotlib.figure import Figure

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import specsim  # noqa: E402
from specsim.serving import SLO, LengthDistribution, Traffic, chip_price  # noqa: E402
from specsim.serving._policy_search import optimize_serving, random_serving_search  # noqa: E402

STEPS, RESTARTS, SEEDS = 40, 8, (0, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args()
    acceptance = specsim.SDSLAcceptance.create(draft_train_tokens=1e12, target_train_tokens=15e12)
    deployment = specsim.Deployment.create("llama-3-8b", "h100", acceptance=acceptance)
    traffic = Traffic.poisson(
        40.0, LengthDistribution.lognormal(512, 0.5), LengthDistribution.lognormal(256, 0.5)
    )
    slo = SLO.create(ttft_s=0.5, tpot_s=0.015)
    price = chip_price("h100")
    lines = [
        f"# python benchmarks/serving_policy_search.py: {platform.machine()}, "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}, JAX {jax.__version__}",
        "# Llama-3-8B on H100 SXM, 40 req/s, prompts 512 / outputs 256 (lognormal 0.5), "
        "SLO TTFT <= 0.5 s, TPOT <= 15 ms at p90; 16 search dimensions",
    ]
    figure = Figure(figsize=(6.4, 4.0))
    ax = figure.add_subplot()
    rows = []
    for seed in SEEDS:
        start = time.perf_counter()
        grad = optimize_serving(
            deployment, traffic, slo, price, steps=STEPS, restarts=RESTARTS, seed=seed
        )
        grad_s = time.perf_counter() - start
        start = time.perf_counter()
        rand = random_serving_search(
            deployment, traffic, slo, price, evaluations=grad.evaluations, seed=seed
        )
        rand_s = time.perf_counter() - start
        for result, seconds in ((grad, grad_s), (rand, rand_s)):
            d = result.to_dict()
            rows.append(
                f"seed {seed} {d['method']:>8}: "
                f"{d['goodput_tokens_per_usd'] / 1e6:7.3f} M tokens/USD "
                f"({d['usd_per_million_tokens']:.3f} USD per M tokens), tp {d['tp']} x "
                f"{d['replicas']} replicas, draft {d['draft_layers']} x {d['draft_d_model']} "
                f"({d['draft_params'] / 1e6:.0f} M params, alpha {d['acceptance_rate']:.3f}), "
                f"lookahead {d['lookahead']}, SLO met {d['slo_met']}, "
                f"{d['evaluations']} evaluations, {seconds:.1f} s (first call compiles)"
            )
        ax.plot(
            np.arange(1, rand.evaluations + 1),
            rand.history / 1e6,
            color="tab:orange",
            alpha=0.6,
            label="random search" if seed == SEEDS[0] else None,
        )
        ax.plot(
            [grad.evaluations],
            [grad.goodput_tokens_per_usd / 1e6],
            "o",
            color="tab:blue",
            label="gradient search (end)" if seed == SEEDS[0] else None,
        )
    ax.set_xlabel("model evaluations")
    ax.set_ylabel("best goodput per dollar (M output tokens / USD)")
    ax.set_title("Goodput per dollar, same evaluation budget (2 seeds)", fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend()
    figure.tight_layout()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    figure.savefig(out / "serving_policy_search_cpu.png", dpi=110)
    text = "\n".join(lines + rows) + "\n"
    (out / "serving_policy_search_cpu.txt").write_text(text)
    print(text, end="")


if __name__ == "__main__":
    main()
