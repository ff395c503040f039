"""Serving inputs: traffic, traces, SLOs, engine limits, the SD policy and the step time."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import assert_close

import specsim
from specsim.serving import (
    SLO,
    EngineConfig,
    LengthDistribution,
    SpecPolicy,
    StepTimeModel,
    Trace,
    Traffic,
    engine_step_time,
    kv_bytes_per_token,
    load_trace,
)
from specsim.speculators import Ngram

# ----------------------------------------------------------------------------- traffic


def test_poisson_rate_and_lengths_match_their_parameters():
    traffic = Traffic.poisson(
        8.0,
        prompt=LengthDistribution.lognormal(mean_tokens=300, sigma=0.8),
        output=LengthDistribution.fixed(64),
    )
    trace = traffic.sample(200_000, seed=1)
    gaps = np.diff(trace.arrival_s)
    # Exponential gaps: mean 1/rate, coefficient of variation 1 (4 standard errors).
    se = (1 / 8.0) / math.sqrt(gaps.size)
    assert abs(gaps.mean() - 1 / 8.0) < 4 * se
    assert abs(gaps.std() / gaps.mean() - 1.0) < 0.02
    # Lognormal by its mean: the sample mean (rounding to whole tokens aside) and the
    # log-space spread are the parameters.
    assert abs(trace.prompt_tokens.mean() / 300 - 1) < 0.01
    assert abs(np.log(trace.prompt_tokens).std() - 0.8) < 0.01
    assert set(trace.output_tokens.tolist()) == {64}
    assert_close(traffic.prompt.second_moment_tokens2, 300**2 * math.exp(0.8**2))


def test_sampling_is_reproducible_by_seed():
    traffic = Traffic.poisson(2.0, LengthDistribution.lognormal(100, 1.0), 50)
    a, b, c = traffic.sample(100, 3), traffic.sample(100, 3), traffic.sample(100, 4)
    assert np.array_equal(a.arrival_s, b.arrival_s)
    assert np.array_equal(a.prompt_tokens, b.prompt_tokens)
    assert not np.array_equal(a.arrival_s, c.arrival_s)


def test_empirical_lengths_resample_the_trace():
    lengths = LengthDistribution.empirical([3, 3, 10])
    sample = lengths.sample(np.random.default_rng(0), 30_000)
    assert set(sample.tolist()) == {3, 10}
    assert abs((sample == 10).mean() - 1 / 3) < 0.02
    assert_close(lengths.mean_tokens, 16 / 3)
    assert_close(lengths.second_moment_tokens2, (9 + 9 + 100) / 3)


def test_traffic_from_trace():
    trace = Trace.create([0.0, 1.0, 2.0, 4.0], [5, 6, 7, 8], [1, 2, 3, 4])
    traffic = Traffic.from_trace(trace)
    assert_close(traffic.rate_per_s, 3 / 4)
    assert_close(traffic.output.mean_tokens, 2.5)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_trace_files_round_trip(tmp_path, suffix):
    trace = Traffic.poisson(3.0, LengthDistribution.lognormal(40, 0.5), 7).sample(50, seed=2)
    path = tmp_path / f"trace{suffix}"
    trace.save(path)
    back = load_trace(path)
    np.testing.assert_allclose(back.arrival_s, trace.arrival_s, rtol=1e-12)
    assert np.array_equal(back.prompt_tokens, trace.prompt_tokens)
    assert np.array_equal(back.output_tokens, trace.output_tokens)


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "empty trace"),
        ("arrival_s,prompt_tokens,output_tokens\n", "no requests"),
        ("arrival_s,prompt_tokens,output_tokens,user\n0,1,1,a\n", "unknown: user"),
        ("arrival_s,prompt_tokens\n0,1\n", "missing: output_tokens"),
        ("arrival_s,prompt_tokens,output_tokens\n1.0,5,5\n0.5,5,5\n", "must be sorted"),
        ("arrival_s,prompt_tokens,output_tokens\n-1.0,5,5\n", "finite and >= 0"),
        ("arrival_s,prompt_tokens,output_tokens\n0,5.5,5\n", "prompt_tokens must be whole"),
        ("arrival_s,prompt_tokens,output_tokens\n0,5,0\n", "output_tokens must be whole"),
        ("arrival_s,prompt_tokens,output_tokens\n0,5,abc\n", "output_tokens must be whole"),
        # 1e19 wrapped to a negative int64 and was accepted (then an IndexError in simulate)
        ("arrival_s,prompt_tokens,output_tokens\n0,1e19,3\n", r"in \[1, 1073741824\]"),
        # a fourth field on every row made the first column the index: arrival 5, prompt 3
        ("arrival_s,prompt_tokens,output_tokens\n0,5,3,9\n", "more fields than the header"),
        ("arrival_s,prompt_tokens,output_tokens\n0,5,3\n1,5,3,9\n", "Expected 3 fields"),
    ],
)
def test_bad_csv_traces_are_one_line_errors(tmp_path, text, message):
    path = tmp_path / "trace.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as error:
        load_trace(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "empty trace"),
        ('{"arrival_s": 0, "prompt_tokens": 3, "output_tokens": 1, "x": 1}\n', "unknown: x"),
        ('{"arrival_s": 0, "prompt_tokens": 3.25, "output_tokens": 1}\n', "prompt_tokens"),
        ("{not json\n", "line 1: not JSON"),
        ("[1, 2]\n", "not a JSON object"),
    ],
)
def test_bad_jsonl_traces_are_one_line_errors(tmp_path, text, message):
    path = tmp_path / "trace.jsonl"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_trace(path)


def test_unknown_trace_suffix_and_missing_file(tmp_path):
    with pytest.raises(ValueError, match="no such trace file"):
        load_trace(tmp_path / "nope.csv")
    (tmp_path / "t.txt").write_text("x")
    with pytest.raises(ValueError, match=r"\.csv or \.jsonl"):
        load_trace(tmp_path / "t.txt")


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: Traffic.poisson(-1.0), "rate_per_s"),
        (lambda: Traffic.poisson(0.0), "rate_per_s"),
        (lambda: Traffic.poisson(math.nan), "rate_per_s"),
        (lambda: LengthDistribution.lognormal(0.5, 1.0), "mean_tokens"),
        (lambda: LengthDistribution.lognormal(10, -1.0), "sigma"),
        (lambda: LengthDistribution.fixed(2.5), "whole number"),
        (lambda: LengthDistribution.empirical([]), "at least one"),
        (lambda: Traffic.poisson(1.0).sample(0), "n_requests"),
        (lambda: Trace.create([], [], []), "empty"),
        (lambda: Trace.create([0.0, 1.0], [1], [1, 1]), "one length"),
    ],
)
def test_bad_traffic_is_a_value_error(build, message):
    with pytest.raises(ValueError, match=message):
        build()


# ----------------------------------------------------------------------------- SLO


def test_slo_validation_and_attainment():
    slo = SLO.create(ttft_s=1.0, tpot_s=0.1, percentile=99)
    met = slo.met_by(np.array([0.5, 1.5, 0.5, 0.5]), np.array([0.05, 0.05, 0.2, np.nan]))
    assert met.tolist() == [True, False, False, True]
    for kwargs in ({"ttft_s": 0.0}, {"tpot_s": -1.0}, {"percentile": 0}, {"percentile": 101}):
        with pytest.raises(ValueError, match="SLO"):
            SLO.create(**kwargs)


# ----------------------------------------------------------------------------- engine


@pytest.fixture(scope="module")
def deployment():
    return specsim.Deployment.create("llama-3-8b", "h100", acceptance=0.7)


def test_kv_blocks_from_memory(deployment):
    """(HBM - weights) x fraction / (KV bytes per token x block size), by hand."""
    engine = EngineConfig.create(memory_fraction=0.8, block_size=32).resolve(deployment)
    weights = float(specsim.memory_footprint(deployment.target, 0, 0).weight_bytes)
    kv_per_token = 32 * 2 * 8 * 128 * 2  # layers x K,V x KV heads x head dim x bf16
    expected = math.floor((80e9 - weights) * 0.8 / (kv_per_token * 32))
    assert engine.kv_blocks == expected
    # Two chips: half the weights and half the KV heads per chip.
    tp2 = EngineConfig.create(memory_fraction=0.8, block_size=32).resolve(
        deployment.replace(tp=2.0)
    )
    assert tp2.kv_blocks == math.floor((80e9 - weights / 2) * 0.8 / (kv_per_token / 2 * 32))
    # More chips than KV heads: heads are replicated, one per chip (8 heads, tp = 16), on
    # an H100 whose interconnect is taken to join 16 (the catalogue's HGX node joins 8).
    joined = deployment.hardware.replace(interconnect_domain_chips=16.0)
    tp16 = EngineConfig.create(memory_fraction=0.8, block_size=32).resolve(
        deployment.replace(tp=16.0, hardware=joined)
    )
    assert tp16.kv_blocks == math.floor((80e9 - weights / 16) * 0.8 / (kv_per_token / 8 * 32))
    # A latent (MLA) cache has no heads to split: every chip holds it whole.
    mla = specsim.Deployment.create("DeepSeek-V3", "h200", acceptance=0.7)
    assert_close(kv_bytes_per_token(mla.replace(tp=8.0)), kv_bytes_per_token(mla))
    # A draft model costs its weights and its own cache per token.
    draft = specsim.models.get("llama-68m")
    with_draft = EngineConfig.create().resolve(deployment, SpecPolicy.fixed(draft, 3))
    assert with_draft.kv_blocks < EngineConfig.create().resolve(deployment).kv_blocks
    # An explicit capacity is kept.
    assert EngineConfig.create(kv_blocks=7).resolve(deployment).kv_blocks == 7


def test_kv_blocks_need_room_beside_the_weights():
    d = specsim.Deployment.create("llama-2-70b", "a100-80gb", acceptance=0.7)
    with pytest.raises(ValueError, match="no HBM for the KV cache"):
        EngineConfig.create().resolve(d)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"max_num_seqs": 0}, "max_num_seqs"),
        ({"max_num_batched_tokens": 2.5}, "max_num_batched_tokens"),
        ({"block_size": True}, "block_size"),
        ({"max_num_batched_tokens": 100, "prefill_chunk_tokens": 200}, "prefill_chunk_tokens"),
        ({"memory_fraction": 1.5}, "memory_fraction"),
        ({"kv_blocks": -3}, "kv_blocks"),
    ],
)
def test_bad_engine_config(kwargs, message):
    with pytest.raises(ValueError, match=message):
        EngineConfig.create(**kwargs)


def test_spec_policy_buckets():
    draft = specsim.models.get("llama-68m")
    policy = SpecPolicy.per_bucket(draft, [5, 5, 4, 4, 3, 3, 2, 2, 1, 0])
    batches = np.array([1, 2, 3, 4, 5, 8, 9, 16, 17, 32, 33, 64, 65, 128, 129, 256, 257, 1000])
    expected = [5, 5, 4, 4, 4, 4, 3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 0, 0]
    assert np.asarray(policy.lookahead_at(batches)).tolist() == expected
    # The same in JAX (traced batch), and lookahead values are differentiable leaves.
    assert np.asarray(jax.jit(policy.lookahead_at)(batches)).tolist() == expected
    grad = jax.grad(lambda p: p.lookahead_at(20.0))(policy)
    assert np.asarray(grad.lookahead).tolist() == [0, 0, 0, 0, 0, 1, 0, 0, 0, 0]
    assert policy.max_lookahead == 5
    off = SpecPolicy.off()
    assert off.max_lookahead == 0 and float(off.lookahead_at(3)) == 0.0
    assert len(off.lookahead) >= 8


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda d: SpecPolicy.per_bucket(d, [1, 2]), "one value per batch bucket"),
        (lambda d: SpecPolicy.per_bucket(d, [-1] * 10), ">= 0"),
        (lambda d: SpecPolicy.per_bucket(None, [1] * 10), "needs a speculator"),
        (lambda d: SpecPolicy.per_bucket("eagle", [1] * 10), "speculator"),
        (lambda d: SpecPolicy.fixed(d, 3, max_batch=20), "bucket bounds"),
        (lambda d: SpecPolicy.fixed(d, 3, bucket_max_batch=(4, 2)), "increasing"),
    ],
)
def test_bad_spec_policy(build, message):
    with pytest.raises(ValueError, match=message):
        build(specsim.models.get("llama-68m"))


# ----------------------------------------------------------------------------- step time


def test_plain_step_is_specsim_step_time(deployment):
    """Decode only (no prefill, no speculation): exactly `specsim.step_time`."""
    for batch, context in ((1.0, 0.0), (37.0, 1500.0), (256.0, 8000.0)):
        ours = engine_step_time(deployment, None, batch, context, 0.0, 0.0)
        ref = specsim.step_time(deployment.target, deployment.hardware, batch, 1.0, context)
        assert_close(ours, ref.time_s)


@pytest.mark.slow  # eager step times with a draft (~4 s)
def test_a_literal_zero_prefill_equals_a_traced_one(deployment):
    """A literal 0 prefill leaves the prefill passes out of the program; a traced 0 prices
    them and multiplies by 0: the same step time, with and without a draft."""
    draft = specsim.models.get("llama-68m")
    traced = jax.jit(engine_step_time, static_argnums=1)
    literal = jax.jit(lambda d, s, b, c, k: engine_step_time(d, s, b, c, 0.0, k), static_argnums=1)
    for speculator, lookahead in ((None, 0.0), (draft, 3.0)):
        for batch, context in ((1.0, 100.0), (48.0, 3000.0)):
            zero = traced(deployment, speculator, batch, context, jnp.float32(0.0), lookahead)
            left_out = literal(deployment, speculator, batch, context, lookahead)
            # (both compiled: the same float32 arithmetic up to XLA's fusion choices)
            assert_close(left_out, zero, rtol=1e-6)


def test_prefill_only_step_is_specsim_step_time(deployment):
    """A prefill-only pass of p tokens is one sequence of p new tokens at context 0 (logits
    for its last position only)."""
    ours = engine_step_time(deployment, None, 0.0, 0.0, 2048.0, 0.0)
    ref = specsim.step_time(
        deployment.target, deployment.hardware, 1.0, 2048.0, 0.0, logit_positions=1.0
    )
    assert_close(ours, ref.time_s)


@pytest.mark.slow
def test_speculative_step_matches_predict(deployment):
    """Decode-only with a draft at lookahead k: the draft's k steps + verification + the
    speculation overhead = `predict`'s iteration at a fixed context."""
    draft = specsim.models.get("llama-68m")
    d = deployment.replace(
        workload=specsim.Workload.fixed_context(16, 1000.0), speculation_overhead_s=1e-4
    )
    report = specsim.predict(d, draft, 3.0, quadrature_nodes=1)
    # One node at context 1000 + 1/2 (the midpoint of one generated token).
    ours = jax.jit(engine_step_time)(d, draft, 16.0, 1000.5, 0.0, 3.0)
    assert_close(ours, report.iteration_s)


def test_mixed_step_reads_weights_once(deployment):
    """Decodes plus a prefill chunk cost less than two separate passes, more than either."""
    mixed = float(engine_step_time(deployment, None, 32.0, 1000.0, 256.0, 0.0))
    decode = float(engine_step_time(deployment, None, 32.0, 1000.0, 0.0, 0.0))
    prefill = float(engine_step_time(deployment, None, 0.0, 0.0, 256.0, 0.0))
    assert max(decode, prefill) < mixed < decode + prefill


@pytest.mark.slow
def test_step_time_is_finite_with_gradients_at_the_edges(deployment):
    draft = specsim.models.get("llama-68m")

    def t(d):
        return engine_step_time(d, draft, 0.0, 0.0, 0.0, 0.0) + engine_step_time(
            d, draft, 3.0, 10.0, 1.0, 2.5
        )

    grad = jax.jit(jax.grad(t))(deployment)
    leaves = jax.tree.leaves(grad)
    assert all(np.all(np.isfinite(np.asarray(x))) for x in leaves)


@pytest.mark.slow
def test_table_interpolates_the_traced_function(deployment):
    draft = specsim.models.get("llama-68m")
    policy = SpecPolicy.fixed(draft, 4)
    engine = EngineConfig.create(max_num_seqs=128, max_num_batched_tokens=2048)
    model = StepTimeModel.build(deployment, policy, engine, max_context_tokens=8192)
    rng = np.random.default_rng(0)
    b = rng.uniform(0, 128, 40)
    c = rng.uniform(0, 8192, 40)
    p = rng.uniform(0, 2048, 40)
    k = rng.integers(0, 5, 40)
    exact_at = jax.jit(jax.vmap(lambda *a: engine_step_time(deployment, draft, *a)))
    exact = exact_at(b, c, p, k)
    table = model.time_s_at(b, c, p, k)
    # Linear interpolation between grid nodes (6 per doubling) of a piecewise-linear
    # roofline: within 1% (measured max ~0.3%).
    assert_close(table, exact, rtol=1e-2)
    # At the grid nodes it is the function itself.
    node = model.step_s(model.batch_grid[7], model.context_grid[3], model.prefill_grid[9], 2)
    grid = (model.batch_grid[7], model.context_grid[3], model.prefill_grid[9], 2)
    exact_node = exact_at(*(np.array([v], np.float32) for v in grid))[0]
    assert_close(node, exact_node)
    # Expected tokens and the survival function behind the sampling: alpha^j.
    assert_close(model.emitted_tokens, [1, 1.7, 2.19, 2.533, 2.7731], rtol=1e-5)
    assert_close(model.survival, 0.7 ** np.arange(1, 5), rtol=1e-5)


@pytest.mark.slow
def test_ngram_survival_includes_the_match_probability(deployment):
    policy = SpecPolicy.fixed(Ngram.create(match_probability=0.4), 3)
    model = StepTimeModel.build(
        deployment, policy, EngineConfig.create(max_num_seqs=8), max_context_tokens=1024
    )
    # P(tokens >= j + 1) = p alpha^j.
    assert_close(model.survival, 0.4 * 0.7 ** np.arange(1, 4), rtol=1e-5)
