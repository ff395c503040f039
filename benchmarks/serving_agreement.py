"""Steady-state model against the discrete-event reference on the documented grid.

Llama-3-8B on one H100 SXM, 128 sequences and 4096 tokens per step, Poisson traffic with
lognormal prompts (512) and outputs (128), sigma 0.5; plain decoding and a llama-68m draft
(acceptance 0.7, lookahead 3); loads 0.1-0.7 of saturation; 6000 replayed requests (first
500 left out of the percentiles), seed 1. Prints the model, the reference and the error.

Usage::

    python benchmarks/serving_agreement.py
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import specsim
from specsim.serving import (
    SLO,
    EngineConfig,
    SpecPolicy,
    StepTimeModel,
    Traffic,
    simulate,
    steady_state,
)
from specsim.serving import LengthDistribution as L

d = specsim.Deployment.create("llama-3-8b", "h100", acceptance=0.7)
eng = EngineConfig.create(max_num_seqs=128, max_num_batched_tokens=4096).resolve(d)
slo = SLO.create(ttft_s=0.5, tpot_s=0.05)
pols = {
    "plain": SpecPolicy.off(),
    "draft k=3": SpecPolicy.fixed(specsim.models.get("llama-68m"), lookahead=3),
}
print("policy load | throughput model/DES | TPOT p50 ms model/DES | TTFT p90 ms model/DES")
for name, pol in pols.items():
    model = StepTimeModel.build(d, pol, eng, max_context_tokens=8192)
    sat = float(
        steady_state(
            d, pol, Traffic.poisson(1.0, L.lognormal(512, 0.5), L.lognormal(128, 0.5)), eng, slo
        ).saturation_rate_per_s
    )
    for frac in [0.1, 0.3, 0.5, 0.6, 0.7]:
        tr = Traffic.poisson(frac * sat, L.lognormal(512, 0.5), L.lognormal(128, 0.5))
        ss = steady_state(d, pol, tr, eng, slo).to_dict()
        s = simulate(tr, model, pol, eng, n_requests=6000, seed=1).summary(slo, warmup_requests=500)
        pairs = (
            (ss["throughput_tokens_per_s"], s["output_tokens_per_s"], "6.0f"),
            (ss["tpot_p50_s"] * 1e3, s["tpot_s_p50"] * 1e3, "5.2f"),
            (ss["ttft_p90_s"] * 1e3, s["ttft_s_p90"] * 1e3, "5.1f"),
        )
        cells = [f"{m:{f}} {r:{f}} ({(m / r - 1) * 100:+.1f}%)" for m, r, f in pairs]
        print(f"{name:9s} {frac:.1f} | " + " | ".join(cells), flush=True)
