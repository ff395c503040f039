"""The steady-state model against the discrete-event reference, on the same step times.

Documented grid (issue 16, point 3): Llama-3-8B on one H100 SXM, an engine of 128 sequences
and 4096 tokens per step (chunked prefill, KV cache from memory), Poisson traffic with
lognormal prompts (mean 512, sigma 0.5) and outputs (mean 128, sigma 0.5); plain decoding
and a llama-68m draft at acceptance 0.7 and lookahead 3; loads 0.1, 0.3 and 0.5 of each
policy's saturation rate (the steady-state model's). The discrete-event replay runs 6000
requests and leaves the first 500 out of its percentiles (the engine starts empty).

Targets: throughput within 10%, median TPOT and p90 TTFT within 15%. Measured (seed 1):
throughput within 1%, median TPOT within 3%, p90 TTFT within 10% at load 0.5 (p90 TTFT
drifts to 13-18% at load 0.7, which is why the model's ``within_approximation`` stops at
0.6).
"""

import pytest

import specsim
from specsim.serving import (
    SLO,
    EngineConfig,
    LengthDistribution,
    SpecPolicy,
    StepTimeModel,
    Traffic,
    simulate,
    steady_state,
)

L = LengthDistribution
GRID_LOADS = (0.1, 0.3, 0.5)
TOLERANCE = {"throughput": 0.10, "tpot_p50": 0.15, "ttft_p90": 0.15}


def _setup():
    deployment = specsim.Deployment.create("llama-3-8b", "h100", acceptance=0.7)
    engine = EngineConfig.create(max_num_seqs=128, max_num_batched_tokens=4096).resolve(deployment)
    return deployment, engine


def _compare(deployment, engine, policy, load, requests, warmup, model=None):
    slo = SLO.create(ttft_s=0.5, tpot_s=0.05)
    lengths = (L.lognormal(512, 0.5), L.lognormal(128, 0.5))
    probe = steady_state(deployment, policy, Traffic.poisson(1.0, *lengths), engine, slo)
    traffic = Traffic.poisson(load * float(probe.saturation_rate_per_s), *lengths)
    model_report = steady_state(deployment, policy, traffic, engine, slo)
    assert bool(model_report.within_approximation)
    if model is None:
        model = StepTimeModel.build(deployment, policy, engine, max_context_tokens=8192)
    result = simulate(traffic, model, policy, engine, n_requests=requests, seed=1)
    des = result.summary(slo, warmup_requests=warmup)
    pairs = {
        "throughput": (float(model_report.throughput_tokens_per_s), des["output_tokens_per_s"]),
        "tpot_p50": (float(model_report.tpot_p50_s), des["tpot_s_p50"]),
        "ttft_p90": (float(model_report.ttft_p90_s), des["ttft_s_p90"]),
    }
    return {name: abs(ss / ref - 1.0) for name, (ss, ref) in pairs.items()}


@pytest.mark.slow
def test_quick_agreement_at_one_load():
    """One point of the grid, plain decoding, a short replay (the quick loop's check)."""
    deployment, engine = _setup()
    errors = _compare(deployment, engine, SpecPolicy.off(), 0.3, requests=1500, warmup=200)
    # 1500 requests: sampling noise of a p90 is a few percent, inside the 15% target.
    for name, error in errors.items():
        assert error <= TOLERANCE[name], (name, error)


@pytest.mark.slow  # six discrete-event replays of 6000 requests (> 3 s)
@pytest.mark.parametrize("policy_name", ["plain", "draft"])
def test_agreement_over_the_documented_grid(policy_name):
    deployment, engine = _setup()
    if policy_name == "plain":
        policy = SpecPolicy.off()
    else:
        policy = SpecPolicy.fixed(specsim.models.get("llama-68m"), lookahead=3)
    model = StepTimeModel.build(deployment, policy, engine, max_context_tokens=8192)
    for load in GRID_LOADS:
        errors = _compare(deployment, engine, policy, load, 6000, 500, model)
        for name, error in errors.items():
            assert error <= TOLERANCE[name], (policy_name, load, name, error)
