"""The serving design search: inputs, rounding to whole numbers, and the evaluation budget."""

import pytest

import specsim
from specsim.serving import (
    SLO,
    ChipPrice,
    LengthDistribution,
    Traffic,
    chip_price,
    optimize_serving,
    random_serving_search,
)


def _inputs():
    acceptance = specsim.SDSLAcceptance.create(draft_train_tokens=1e12, target_train_tokens=15e12)
    deployment = specsim.Deployment.create("llama-3-8b", "h100", acceptance=acceptance)
    traffic = Traffic.poisson(
        8.0, LengthDistribution.lognormal(512, 0.5), LengthDistribution.lognormal(256, 0.5)
    )
    return deployment, traffic, SLO.create(ttft_s=1.0, tpot_s=0.05), chip_price("h100")


def test_bad_inputs_are_value_errors():
    deployment, traffic, slo, price = _inputs()
    constant = specsim.Deployment.create("llama-3-8b", "h100", acceptance=0.7)
    with pytest.raises(ValueError, match="SDSLAcceptance"):
        optimize_serving(constant, traffic, slo, price)
    with pytest.raises(ValueError, match="usd_per_hour"):
        optimize_serving(deployment, traffic, slo, ChipPrice.create(power_w=700.0))
    with pytest.raises(ValueError, match="max_tp"):
        optimize_serving(deployment, traffic, slo, price, max_tp=3)
    with pytest.raises(ValueError, match="evaluations"):
        random_serving_search(deployment, traffic, slo, price, evaluations=0)
    # An H100 node's NVSwitch joins 8 GPUs: tensor parallelism across nodes is not priced.
    with pytest.raises(ValueError, match=r"max_tp 16: exceeds the 8 chips .* up to 8"):
        optimize_serving(deployment, traffic, slo, price, max_tp=16)


def test_the_default_tp_bound_follows_the_interconnect():
    from specsim.serving._policy_search import _problem

    deployment, traffic, slo, price = _inputs()
    bound = _problem(deployment, traffic, slo, None, price, None, 4, 4).max_tp
    assert float(bound) == 8.0
    # The H100 NVL's NVLink bridge joins pairs: the search stops at 2, and 4 is refused.
    nvl = deployment.replace(hardware=specsim.hardware.get("h100-nvl"))
    assert float(_problem(nvl, traffic, slo, None, price, None, 4, 4).max_tp) == 2.0
    with pytest.raises(ValueError, match=r"max_tp 4: exceeds the 2 chips .* up to 2"):
        _problem(nvl, traffic, slo, None, price, 4, 4, 4)


@pytest.mark.slow  # compiles the gradient of the steady-state model in a scan (> 3 s)
def test_gradient_and_random_search_return_whole_designs_within_budget():
    deployment, traffic, slo, price = _inputs()
    grad = optimize_serving(deployment, traffic, slo, price, steps=4, restarts=2, max_replicas=4)
    assert grad.evaluations == 4 * 2 + 4 * 2
    rand = random_serving_search(
        deployment, traffic, slo, price, evaluations=grad.evaluations, max_replicas=4
    )
    for result in (grad, rand):
        assert result.tp in (1, 2, 4, 8) and 1 <= result.replicas <= 4
        assert len(result.lookahead) == 10 and all(0 <= k <= 8 for k in result.lookahead)
        assert 2 <= result.draft_layers and result.draft_d_model % 128 == 0
        assert 0 < result.acceptance_rate < 1
        # An easy SLO at a light load: one chip meets it, and goodput per dollar is
        # then the traffic's tokens over the fleet's cost.
        if result.slo_met:
            tokens_per_s = 8.0 * 256.0
            usd_per_s = result.tp * result.replicas * 3.99 / 3600
            # The model's mean output is its quantile nodes' (a few percent off 256).
            assert result.goodput_tokens_per_usd == pytest.approx(
                tokens_per_s / usd_per_s, rel=0.05
            )
    assert grad.slo_met
    assert len(rand.history) == rand.evaluations
