"""Goodput per dollar: gradient search against random search with the same evaluations.

Searched jointly: a draft model's depth and width (acceptance from the SDSL law of its
size), one lookahead for each of ten decode-batch buckets (0-8), the tensor-parallel degree
(1, 2, 4, 8) and the replica count (1-16): 16 dimensions. Llama-3-8B on H100 SXM chips
(3.99 USD per chip-hour, the price table's), Poisson traffic, lognormal lengths (sigma 0.5).
Two cases:

* ``loose``: 40 requests/s, prompts 512 / outputs 256, TTFT <= 0.5 s and TPOT <= 15 ms at
  p90. Every design that meets the SLO with the fewest chips (2) serves every request
  within it, so goodput per dollar is the same for all of them: a plateau, on which any
  search that finds 2 chips ties.
* ``tight TPOT``: 10 requests/s, prompts 256 / outputs 512, TTFT <= 0.5 s and TPOT <= 3.75
  ms at p50. One chip meets it only with speculation good enough for the median request,
  and the share of requests within 3.75 ms (goodput) grows continuously with the draft and
  the lookaheads, so the designs are ranked and the comparison means something. Scores are
  also given as a share of the best score found by a 4096-point random search (a reference
  for the attainable score; 1 = as good).

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
from specsim.serving._policy_search import (  # noqa: E402
    _problem,
    _random_search,
    optimize_serving,
    random_serving_search,
)

STEPS, RESTARTS, SEEDS = 40, 8, (0, 1)
REFERENCE_EVALUATIONS = 4096
# name: (rate req/s, prompt mean, output mean, TTFT s, TPOT s, percentile)
CASES = {
    "loose": (40.0, 512, 256, 0.5, 0.015, 90.0),
    "tight TPOT": (10.0, 256, 512, 0.5, 0.00375, 50.0),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args()
    acceptance = specsim.SDSLAcceptance.create(draft_train_tokens=1e12, target_train_tokens=15e12)
    deployment = specsim.Deployment.create("llama-3-8b", "h100", acceptance=acceptance)
    price = chip_price("h100")
    lines = [
        f"# python benchmarks/serving_policy_search.py: {platform.machine()}, "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}, JAX {jax.__version__}",
        "# Llama-3-8B on H100 SXM, 16 search dimensions (draft depth and width, 10 lookaheads, "
        "tp, replicas); lengths lognormal sigma 0.5",
    ]
    figure = Figure(figsize=(10.0, 4.0))
    rows = []
    for panel, (case, (rate, prompt, output, ttft, tpot, pct)) in enumerate(CASES.items()):
        ax = figure.add_subplot(1, len(CASES), panel + 1)
        traffic = Traffic.poisson(
            rate,
            LengthDistribution.lognormal(prompt, 0.5),
            LengthDistribution.lognormal(output, 0.5),
        )
        slo = SLO.create(ttft_s=ttft, tpot_s=tpot, percentile=pct)
        title = (
            f"{case}: {rate:g} req/s, prompts {prompt} / outputs {output}, SLO TTFT <= {ttft:g} s, "
            f"TPOT <= {tpot * 1e3:g} ms at p{pct:g}"
        )
        rows.append(f"## {title}")
        start = time.perf_counter()
        problem = _problem(deployment, traffic, slo, None, price, 8, 16, 8)
        _, picks = _random_search(problem, jax.random.PRNGKey(99), REFERENCE_EVALUATIONS)
        reference_scores = np.asarray(picks[0], np.float64)
        best = float(np.max(reference_scores))
        scores = np.maximum.accumulate(reference_scores)
        rows.append(
            f"reference: random search of {REFERENCE_EVALUATIONS} evaluations, best "
            f"{best / 1e6:.3f} M tokens/USD ({time.perf_counter() - start:.1f} s); its running "
            f"best after 352 evaluations: {scores[351] / best:.3f} of that; "
            f"{np.mean(reference_scores > 0):.0%} of its designs meet the SLO, "
            f"{np.mean(reference_scores >= 0.99 * best):.1%} are within 1% of its best"
        )
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
                    f"({d['goodput_tokens_per_usd'] / best:.3f} of the reference; "
                    f"{d['usd_per_million_tokens']:.3f} USD per M tokens), tp {d['tp']} x "
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
        ax.axhline(
            best / 1e6, color="gray", ls=":", label=f"best of {REFERENCE_EVALUATIONS} random"
        )
        ax.set_title(title, fontsize=7)
        ax.set_xlabel("model evaluations")
        ax.set_ylabel("best goodput per dollar (M output tokens / USD)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    figure.tight_layout()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    figure.savefig(out / "serving_policy_search_cpu.png", dpi=110)
    text = "\n".join(lines + rows) + "\n"
    (out / "serving_policy_search_cpu.txt").write_text(text)
    print(text, end="")


if __name__ == "__main__":
    main()
