"""The steady-state serving model against closed forms, an independent solver, and itself.

References used: Little's law (B = lambda x W) and conservation (below saturation the fleet
emits rate x E[output] tokens/s); a plain fixed-point iteration in float64 NumPy on the
same step-time function as an independent solver; the uniform-wait TTFT at vanishing load
in closed form; the lognormal quantile of a fixed-length TPOT.

Every test that evaluates the model compiles it (about 10 s of CPU), hence slow; the quick
loop keeps the input checks, the length nodes, the price table and the doctests.
"""

import math
import types
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import assert_close, compilations

import specsim
from specsim.serving._cost_per_token import ChipPrice, chip_price, load_prices, serving_cost
from specsim.serving._engine import EngineConfig, SpecPolicy
from specsim.serving._slo import SLO
from specsim.serving._steady_state import (
    _steady_state,
    check_inputs,
    length_nodes,
    steady_state,
)
from specsim.serving._step_time import engine_step_time
from specsim.serving._traffic import LengthDistribution, Traffic

L = LengthDistribution


@pytest.fixture(scope="module")
def deployment():
    return specsim.Deployment.create("llama-3-8b", "h100", acceptance=0.7)


@pytest.fixture(scope="module")
def draft_policy():
    return SpecPolicy.fixed(specsim.models.get("llama-68m"), lookahead=3)


def _traffic(rate, prompt=512, output=128, sigma=0.5):
    """Lognormal lengths (sigma 0: fixed lengths, without a recompilation for the kind)."""
    return Traffic.poisson(rate, L.lognormal(prompt, sigma), L.lognormal(output, sigma))


def fixed(rate, prompt, output):
    return _traffic(rate, prompt, output, sigma=0.0)


@pytest.mark.slow  # compiles the steady-state model (> 3 s)
def test_throughput_is_rate_times_mean_output_below_saturation(deployment, draft_policy):
    for policy in (SpecPolicy.off(), draft_policy):
        for rate in (0.5, 10.0, 30.0):
            r = steady_state(deployment, policy, fixed(rate, 256, 100))
            assert bool(r.feasible)
            # Conservation: every request is served, each with exactly 100 output tokens.
            assert_close(r.throughput_tokens_per_s, rate * 100.0)


@pytest.mark.slow  # compiles the steady-state model (> 3 s)
def test_littles_law_and_an_independent_fixed_point_solver(deployment, draft_policy):
    """B = lambda n tau with tau the mixed step; re-solved by plain iteration in float64."""
    rate, prompt, output = 20.0, 300.0, 120.0
    for policy in (SpecPolicy.off(), draft_policy):
        r = steady_state(deployment, policy, fixed(rate, prompt, output))
        emitted = float(r.tokens_per_step)
        steps = (output - 1.0) / emitted
        # Little's law on the model's own output.
        assert_close(r.decode_batch, rate * steps * float(r.step_s), rtol=1e-3)

        # Independent solver: iterate tau <- mean step at B = rate n tau (NumPy, float64).
        k = float(r.lookahead)
        engine = EngineConfig.create()

        jitted = jax.jit(
            lambda b, c, p, k, s=policy.speculator: engine_step_time(deployment, s, b, c, p, k)
        )

        def step(b, p, k=k, jitted=jitted):
            return float(jitted(b, prompt + (output - 1) / 2, p, k))

        tau = step(1e-6, 0.0)
        for _ in range(200):
            b = rate * steps * tau
            arrivals = b / steps
            budget = min(engine.prefill_chunk_tokens, engine.max_num_batched_tokens - b * (k + 1))
            q = max(-math.expm1(-arrivals), prompt * arrivals / budget)
            chunk = min(prompt * arrivals / q, budget)
            tau = (1 - q) * step(b, 0.0) + q * step(b, chunk)
        # float32 model vs float64 iteration of the same equations.
        assert_close(r.step_s, tau, rtol=2e-3)


@pytest.mark.slow  # compiles the steady-state model (> 3 s)
def test_ttft_at_vanishing_load_is_a_uniform_wait_plus_the_prefill_step(deployment):
    prompt = 1000.0
    r = steady_state(deployment, SpecPolicy.off(), fixed(1e-3, prompt, 50))
    tau = float(engine_step_time(deployment, None, 0.0, 0.0, 0.0, 0.0))
    prefill = float(engine_step_time(deployment, None, 0.0, prompt + 25, prompt, 0.0))
    # Closed form: U(0, tau) + T_prefill; quantile q = T_prefill + q tau.
    for q, got in ((0.5, r.ttft_p50_s), (0.9, r.ttft_p90_s), (0.99, r.ttft_p99_s)):
        assert_close(got, prefill + q * tau, rtol=2e-2)  # B ~ 0 but not 0: a sliver of decode


@pytest.mark.slow  # compiles the steady-state model (> 3 s)
def test_tpot_of_fixed_lengths_without_speculation_is_the_step(deployment):
    r = steady_state(deployment, SpecPolicy.off(), fixed(0.2, 128, 400))
    assert_close(r.tpot_p50_s, r.step_s, rtol=1e-2)
    assert float(r.tpot_p50_s) <= float(r.tpot_p90_s) <= float(r.tpot_p99_s)


@pytest.mark.slow  # compiles the steady-state model (> 3 s)
def test_percentiles_ordered_and_latency_grows_with_load(deployment, draft_policy):
    for policy in (SpecPolicy.off(), draft_policy):
        previous = None
        for rate in (1.0, 10.0, 25.0, 40.0):
            d = steady_state(deployment, policy, _traffic(rate)).to_dict()
            for kind in ("ttft", "tpot", "e2e"):
                assert d[f"{kind}_p50_s"] <= d[f"{kind}_p90_s"] <= d[f"{kind}_p99_s"]
            if previous is not None:
                assert d["tpot_p50_s"] >= previous["tpot_p50_s"]
                assert d["ttft_p90_s"] >= previous["ttft_p90_s"]
                assert d["load"] > previous["load"]
            previous = d


@pytest.mark.slow  # compiles the steady-state model (> 3 s)
def test_speculation_cuts_tpot_at_low_load(deployment, draft_policy):
    off = steady_state(deployment, SpecPolicy.off(), _traffic(2.0))
    on = steady_state(deployment, draft_policy, _traffic(2.0))
    assert float(on.tpot_p50_s) < 0.6 * float(off.tpot_p50_s)
    assert_close(on.tokens_per_step, 2.533, rtol=1e-3)  # (1 - 0.7^4) / 0.3


@pytest.mark.slow  # compiles the steady-state model (> 3 s)
def test_saturation_is_explicit_and_finite(deployment):
    r = steady_state(deployment, SpecPolicy.off(), _traffic(10_000.0))
    d = r.to_dict()
    assert not d["feasible"] and not d["within_approximation"] and not d["slo_met"]
    assert d["load"] > 1.0
    assert all(math.isfinite(v) for v in d.values() if isinstance(v, float))
    # Throughput caps at what the fleet sustains.
    assert d["throughput_tokens_per_s"] < 10_000.0 * 128.0
    near = steady_state(deployment, SpecPolicy.off(), _traffic(0.9 * d["saturation_rate_per_s"]))
    assert bool(near.feasible) and not bool(near.within_approximation)
    # Just below saturation the rate's slope in the batch vanishes: still finite (a
    # scenario of the benchmark at load 0.997 once gave a NaN TPOT).
    for share in (0.99, 0.997, 0.9999):
        edge = steady_state(
            deployment, SpecPolicy.off(), _traffic(share * d["saturation_rate_per_s"])
        ).to_dict()
        assert all(math.isfinite(v) for v in edge.values() if isinstance(v, float)), share


@pytest.mark.slow  # compiles the steady-state model (> 3 s)
def test_kv_limited_engine_reports_the_kv_cache(deployment):
    engine = EngineConfig.create(kv_blocks=400, block_size=16)  # 6400 tokens
    r = steady_state(deployment, SpecPolicy.off(), fixed(1.0, 1000, 200), engine)
    assert r.to_dict()["limit"] == "kv_cache"
    # At most 6400 / (1000 + 100 + 8) resident decoders at saturation.
    saturation = float(r.saturation_rate_per_s)
    at = steady_state(deployment, SpecPolicy.off(), fixed(0.999 * saturation, 1000, 200), engine)
    assert float(at.kv_utilization) == pytest.approx(1.0, abs=0.02)


@pytest.mark.slow  # compiles the steady-state model (> 3 s)
def test_slo_attainment_goodput_and_an_infeasible_slo(deployment):
    slo = SLO.create(ttft_s=1.0, tpot_s=0.1)
    r = steady_state(deployment, SpecPolicy.off(), _traffic(5.0), slo=slo)
    assert bool(r.slo_met) and float(r.slo_attainment) == pytest.approx(1.0, abs=1e-4)
    assert_close(r.goodput_tokens_per_s, r.throughput_tokens_per_s, rtol=1e-4)
    # No load meets a 1 ms TTFT: explicit zero attainment, not NaN.
    tight = steady_state(deployment, SpecPolicy.off(), _traffic(5.0), slo=SLO.create(ttft_s=1e-3))
    assert not bool(tight.slo_met) and float(tight.goodput_tokens_per_s) == 0.0


@pytest.mark.slow  # compiles the steady-state model (> 3 s)
def test_replicas_split_the_traffic(deployment):
    one = steady_state(deployment, SpecPolicy.off(), _traffic(10.0))
    four = steady_state(deployment, SpecPolicy.off(), _traffic(40.0), replicas=4.0)
    for name in ("step_s", "decode_batch", "ttft_p90_s", "tpot_p50_s", "load"):
        assert_close(getattr(four, name), getattr(one, name), rtol=1e-4)
    assert_close(four.saturation_rate_per_s, 4 * one.saturation_rate_per_s, rtol=1e-5)
    # A NumPy integer is a number too (it was refused as "replicas must be >= 1, got 4").
    numpy_four = steady_state(deployment, SpecPolicy.off(), _traffic(40.0), replicas=np.int64(4))
    assert_close(numpy_four.step_s, four.step_s, rtol=1e-6)


def test_bad_inputs_are_value_errors(deployment):
    with pytest.raises(ValueError, match="rate_per_s"):
        Traffic.poisson(-1.0)
    with pytest.raises(ValueError, match="replicas"):
        steady_state(deployment, SpecPolicy.off(), _traffic(1.0), replicas=0.5)
    with pytest.raises(ValueError, match="policy"):
        steady_state(deployment, None, _traffic(1.0))
    with pytest.raises(ValueError, match="traffic"):
        steady_state(deployment, SpecPolicy.off(), 3.0)


@pytest.mark.slow
def test_length_nodes_match_the_distributions():
    tokens, weights = length_nodes(L.lognormal(512, 0.6))
    assert_close(jnp.sum(weights), 1.0)
    # Quantile nodes: the weighted mean of a lognormal is its mean (to the node spacing).
    assert_close(jnp.sum(weights * tokens), 512.0, rtol=3e-2)
    sample = np.random.default_rng(0).integers(1, 2000, 5000)
    tokens, weights = length_nodes(L.empirical(sample))
    assert_close(jnp.sum(weights * tokens), sample.mean(), rtol=2e-2)


@pytest.mark.slow  # compiles the steady-state model (> 3 s)
def test_vmap_matches_calls_and_no_recompile(deployment):
    d, policy, traffic, engine, slo = check_inputs(
        deployment, SpecPolicy.off(), _traffic(5.0), None, SLO.create(ttft_s=0.5, tpot_s=0.05)
    )
    rates = jnp.asarray([1.0, 7.0, 20.0])

    def at(rate):
        return _steady_state(d, policy, traffic.replace(rate_per_s=rate), engine, slo, 1.0)

    batched = jax.vmap(at)(rates)
    for i, rate in enumerate(rates):
        single = at(rate)
        assert_close(batched.ttft_p90_s[i], single.ttft_p90_s, rtol=1e-4)
        assert_close(batched.goodput_tokens_per_s[i], single.goodput_tokens_per_s, rtol=1e-4)
    steady_state(deployment, SpecPolicy.off(), _traffic(1.5))  # compiles here, in any order
    with compilations() as compiled:
        for rate in (2.0, 3.0):
            steady_state(deployment, SpecPolicy.off(), _traffic(rate))
    assert "_steady_state" not in compiled


@pytest.mark.slow  # tracing the bisection in float64: 2.1 s (2-core EPYC)
def test_the_slo_rate_bisection_traces_in_float64(deployment, x64):
    """Its loop carries the model's float: float64 under x64 (traced only, not compiled)."""
    from specsim.serving._steady_state import _max_slo_rate

    inputs = check_inputs(deployment, SpecPolicy.off(), _traffic(5.0), None, SLO.create(0.5))
    rate, saturation = jax.eval_shape(lambda: _max_slo_rate(*inputs, 1.0))
    assert rate.dtype == saturation.dtype == jnp.float64


@pytest.mark.slow  # compiles the steady-state model and its gradient (> 3 s)
def test_gradients_are_finite_and_match_finite_differences(deployment):
    d, policy, traffic, engine, slo = check_inputs(
        deployment, SpecPolicy.off(), _traffic(10.0), None, SLO.create(ttft_s=0.5, tpot_s=0.05)
    )

    def tpot(rate, bandwidth):
        hw = d.hardware.replace(hbm_bytes_per_s=bandwidth)
        r = _steady_state(
            d.replace(hardware=hw), policy, traffic.replace(rate_per_s=rate), engine, slo, 1.0
        )
        return r.tpot_p50_s

    bandwidth = float(d.hardware.hbm_bytes_per_s)
    grad = jax.grad(tpot, argnums=(0, 1))(10.0, bandwidth)
    assert all(np.isfinite(float(g)) for g in grad)
    h = 0.25
    fd_rate = (tpot(10.0 + h, bandwidth) - tpot(10.0 - h, bandwidth)) / (2 * h)
    # float32 central differences over a solved state: a few percent.
    assert_close(grad[0], fd_rate, rtol=5e-2)
    assert float(grad[0]) > 0  # more load, slower tokens
    assert float(grad[1]) < 0  # more bandwidth, faster tokens


def test_cost_per_token_and_tokens_per_joule():
    # Only the throughputs of a report enter the cost: 256 tokens/s, all within the SLO.
    r = types.SimpleNamespace(throughput_tokens_per_s=256.0, goodput_tokens_per_s=256.0)
    cost = serving_cost(r, ChipPrice.create(3.6, 700.0), tp=2.0, replicas=3.0)
    # 6 chips x 3.6 $/h = 21.6 $/h = 6e-3 $/s for 256 tokens/s.
    assert_close(cost.usd_per_million_tokens, 6e-3 / 256 * 1e6, rtol=1e-5)
    assert_close(cost.tokens_per_joule, 256 / (6 * 700.0), rtol=1e-5)
    assert_close(cost.goodput_tokens_per_usd, 256 / 6e-3, rtol=1e-5)
    assert math.isnan(float(chip_price("tpu-v4").usd_per_hour))


def test_board_power_comes_from_the_hardware_catalogue(tmp_path):
    """Board power is a hardware fact: the catalogue holds it with its source, the price
    table holds prices only, and a user price file may still override a chip's power."""
    powered = [n for n in specsim.hardware.names() if "board_power_w" in specsim.hardware.entry(n)]
    assert len(powered) >= 19
    for name in powered:
        entry = specsim.hardware.entry(name)
        assert len(entry["sources"]["power"]) > 10, name
        assert float(chip_price(name).power_w) == entry["board_power_w"]
    assert specsim.hardware.board_power_w("h100") == 700.0
    assert math.isnan(specsim.hardware.board_power_w("v5e"))
    assert math.isnan(float(chip_price("v5e").power_w))
    packaged = (Path(specsim.serving.__file__).parent / "prices.toml").read_text()
    assert "\npower_w" not in packaged
    user = tmp_path / "prices.toml"
    user.write_text('[chip."h100"]\npower_w = 500.0\npower_source = "measured"\n')
    assert float(chip_price("h100", user).power_w) == 500.0
    assert_close(chip_price("h100", user).usd_per_hour, 3.99)


def test_price_table_is_sourced_and_overridable(tmp_path):
    table = load_prices()
    for name, entry in table.items():
        assert specsim.hardware.canonical_name(name) == name
        if "usd_per_hour" in entry:
            assert entry["price_source"] and entry["price_date"]
        assert entry.get("power_source"), name
    user = tmp_path / "prices.toml"
    user.write_text('[chip."h100"]\nusd_per_hour = 1.5\n')
    assert float(chip_price("h100", user).usd_per_hour) == 1.5
    assert float(chip_price("h100", user).power_w) == 700.0
    user.write_text('[chip."h100"]\nusd_per_hour = -1\n')
    with pytest.raises(ValueError, match="usd_per_hour"):
        chip_price("h100", user)
    with pytest.raises(ValueError, match="no such"):
        load_prices(tmp_path / "missing.toml")


def test_bucket_weights_match_the_normal_cdf_to_float32():
    """The weights come from erf (cheaper): within 1e-6 of the same weights from SciPy's
    normal CDF in float64, at batches from 0.01 to 4x the last bound, and they sum to 1."""
    from scipy.special import ndtr

    from specsim.serving._steady_state import bucket_weights

    policy = SpecPolicy.off()
    bounds = np.asarray(policy.bucket_max_batch, np.float64) + 0.5
    for batch in (0.01, 0.7, 3.0, 17.0, 100.0, 255.0, 1000.0):
        cdf = np.concatenate([[0.0], ndtr((bounds - batch) / np.sqrt(batch)), [1.0]])
        expected = np.diff(cdf)
        got = np.asarray(bucket_weights(policy, jnp.float32(batch)), np.float64)
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
        assert abs(got.sum() - 1.0) < 1e-6


@pytest.mark.slow
def test_quantile_bisection_against_a_dense_inversion():
    """`_quantile` on a mixture of uniforms (the TTFT's form) against the inverse of its
    CDF on a dense grid: within the bisection's bracket (range / 2^12)."""
    from specsim.serving._steady_state import _QUANTILE_STEPS, _quantile

    rng = np.random.default_rng(3)
    starts = rng.uniform(0.01, 0.5, 40)
    widths = rng.uniform(0.001, 0.2, 40)
    weights = rng.uniform(0.0, 1.0, 40)
    weights /= weights.sum()

    def cdf_np(t):
        return np.sum(weights * np.clip((t[:, None] - starts) / widths, 0.0, 1.0), axis=1)

    s, w, v = (jnp.asarray(a, jnp.float32) for a in (starts, widths, weights))

    def cdf(t):
        return jnp.sum(v * jnp.clip((t - s) / w, 0.0, 1.0))

    lo, hi = starts.min(), (starts + widths).max()
    probs = np.array([0.5, 0.9, 0.99])
    got = np.asarray(
        _quantile(cdf, jnp.asarray(probs, jnp.float32), jnp.float32(lo), jnp.float32(hi))
    )
    grid = np.linspace(lo, hi, 200_001)
    expected = grid[np.searchsorted(cdf_np(grid), probs)]
    np.testing.assert_allclose(got, expected, rtol=0, atol=(hi - lo) / 2**_QUANTILE_STEPS)


@pytest.mark.slow  # compiles the interpolated and the exact step times (~3 s)
def test_prefill_interpolation_is_exact_at_its_ends_and_close_to_the_step_time(deployment):
    """`_interpolation` against the step time evaluated at every count: exact for a
    linear function and at the least and largest counts; within 1% of the engine's
    step time at a decode batch of 8 (its knee from memory- to compute-bound included)."""
    from specsim.serving._steady_state import _interpolation

    def _interpolated_steps(step_of, tokens):  # as the model reads its prefill steps
        nodes, weights = _interpolation(tokens)
        return (weights @ step_of(nodes)).reshape(tokens.shape)

    tokens = jnp.asarray([[3.0, 40.0, 700.0], [1.0, 2048.0, 8192.0], [150.0, 150.0, 5000.0]])

    def linear(p):
        return 2e-3 + 3e-7 * p

    np.testing.assert_allclose(
        np.asarray(_interpolated_steps(linear, tokens)), np.asarray(linear(tokens)), rtol=1e-5
    )

    def step(p):
        return jax.vmap(lambda q: engine_step_time(deployment, None, 8.0, 1000.0, q, 0.0))(p)

    exact = np.asarray(step(tokens.reshape(-1)).reshape(tokens.shape))
    got = np.asarray(jax.jit(lambda t: _interpolated_steps(step, t))(tokens))
    # Nodes 1.8x apart over 1..8192 tokens: the chord of the convex prefill cost
    # (attention grows as p^2) lies up to 0.51% above it here; 1% bounds that.
    np.testing.assert_allclose(got, exact, rtol=1e-2)
    assert np.all(got >= exact * (1 - 1e-6))  # a chord of a convex curve: never below
    for index in ((1, 0), (1, 2)):  # the least and the largest counts are nodes
        np.testing.assert_allclose(got[index], exact[index], rtol=1e-5)


def test_saturation_vertex_of_a_parabola_and_none_at_the_ends():
    """`_vertex` recovers the maximum of a sampled parabola and where it lies exactly; a
    maximum at either end of the grid is not extrapolated."""
    from specsim.serving._steady_state import _vertex

    x = np.arange(16, dtype=np.float64)
    values = 3.0 - 0.2 * (x - 6.3) ** 2  # maximum 3.0 at 6.3, sampled peak at x = 6
    peak = int(np.argmax(values))
    rise, offset = (float(v) for v in _vertex(jnp.asarray(values, jnp.float32), peak))
    assert_close(values[peak] + rise, 3.0, rtol=1e-5)
    assert_close(peak + offset, 6.3, rtol=1e-4)
    rising = jnp.asarray(np.log1p(x), jnp.float32)  # a limit-bound curve: peak at the end
    assert [float(v) for v in _vertex(rising, 15)] == [0.0, 0.0]
    assert [float(v) for v in _vertex(-rising, 0)] == [0.0, 0.0]


@pytest.mark.slow  # compiles the steady-state model (> 3 s)
def test_rates_below_the_batch_grid_keep_littles_law(deployment, draft_policy):
    """At rates whose mean decode batch lies below the grid of rate(B) (B << 0.01), the
    root is extrapolated (rate proportional to B) and refined: Little's law holds and the
    throughput is still rate x mean output."""
    for policy in (SpecPolicy.off(), draft_policy):
        for rate in (1e-4, 1e-2):
            r = steady_state(deployment, policy, fixed(rate, 256, 100))
            assert float(r.decode_batch) < 1e-2
            steps = 99.0 / float(r.tokens_per_step)
            assert_close(r.decode_batch, rate * steps * float(r.step_s), rtol=1e-3)
    # Prefill-heavy: 32k-token prompts, one decode step per request. At B = 0.01 a step's
    # prefill share is ~1% and its mixed step ~150x a plain one, so the step time there is
    # ~2.5x its B -> 0 limit: rate(B) is far from proportional to B below the grid (a
    # Newton step from that extrapolation missed Little's law by 1.9x at 0.01 req/s).
    engine = EngineConfig.create(max_num_batched_tokens=32768)
    for rate in (1e-2, 1e-1):
        r = steady_state(deployment, SpecPolicy.off(), fixed(rate, 32768, 2), engine)
        assert_close(r.decode_batch, rate * 1.0 * float(r.step_s), rtol=1e-2)
