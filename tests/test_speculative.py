"""Real speculative decoding: exactness of greedy and sampled modes, statistics, errors."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from specsim.measure import (
    build_model,
    forward,
    generate,
    init_cache,
    layer_skip_draft,
    speculative_generate,
    tiny_spec,
)
from specsim.measure._runs import measure_decoding, measure_speculative
from specsim.measure._speculative import SPECULATIVE_CHECK_EVERY, argmax, sample_from

# Builds, compiles and runs real (tiny) networks: the slow tier.
pytestmark = pytest.mark.slow

# Chi-square tests run at a fixed seed; p-values below this would flag a real mismatch.
P_VALUE_FLOOR = 1e-3


@pytest.fixture(scope="module")
def target():
    # Peaked next-token distributions, so drafts are sometimes right and sometimes wrong.
    return build_model(tiny_spec(n_layers=3, vocab=48), seed=3, logit_scale=3.0)


@pytest.mark.parametrize(("draft_layers", "gamma"), [(1, 1), (1, 4), (2, 3), (3, 5)])
def test_greedy_speculative_output_equals_greedy_target_decoding(target, draft_layers, gamma):
    prompt = jax.random.randint(jax.random.key(7), (3, 5), 0, target.config.vocab)
    overshoot = SPECULATIVE_CHECK_EVERY * (gamma + 1)
    plain = generate(target, prompt, 24 + overshoot, temperature=0.0)
    draft = layer_skip_draft(target, draft_layers)
    out = speculative_generate(target, draft, prompt, 24, gamma, temperature=0.0)
    n = out.tokens.shape[1]
    assert 5 + 24 <= n <= 5 + 24 + overshoot
    np.testing.assert_array_equal(out.tokens, plain.tokens[:, :n])


def test_acceptance_statistics_are_consistent(target):
    prompt = jax.random.randint(jax.random.key(8), (4, 6), 0, target.config.vocab)
    out = speculative_generate(target, layer_skip_draft(target, 1), prompt, 40, 4, seed=1)
    accepted = np.asarray(out.accepted_counts)
    judged = np.asarray(out.judged_counts)
    # Every iteration emits the accepted drafts plus one token per sequence.
    assert out.generated_tokens == accepted.sum() + out.iterations * 4
    assert judged[0] == out.iterations * 4
    np.testing.assert_array_equal(judged[1:], accepted[:-1])  # judged i+1 = accepted i
    assert out.alpha == pytest.approx(accepted.sum() / judged.sum())
    assert out.tokens_per_step == pytest.approx(out.generated_tokens / (out.iterations * 4))
    assert out.iterations % SPECULATIVE_CHECK_EVERY == 0
    assert len(out.iteration_s) == out.iterations // SPECULATIVE_CHECK_EVERY
    assert out.steady_tokens_per_s > 0


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_a_draft_identical_to_the_target_is_always_accepted(target, temperature):
    prompt = jnp.zeros((2, 3), jnp.int32)
    same = layer_skip_draft(target, target.config.n_layers)
    out = speculative_generate(target, same, prompt, 20, 3, temperature=temperature)
    assert out.alpha == 1.0
    assert out.tokens_per_step == pytest.approx(4.0)


def _conditional(model, prefix, temperature=1.0):
    """p(next | prefix) for a (batch, tokens) prefix, float64."""
    logits, _ = forward(model, prefix, init_cache(model.config, *prefix.shape))
    return np.asarray(jax.nn.softmax(logits[:, -1] / temperature, axis=-1), dtype=np.float64)


def _pooled_chisquare(counts, expected):
    """Chi-square over cells with expected count >= 5 (the rest pooled into one cell)."""
    counts, expected = np.ravel(counts), np.ravel(expected)
    big = expected >= 5
    observed = np.append(counts[big], counts[~big].sum())
    wanted = np.append(expected[big], expected[~big].sum())
    keep = wanted > 0
    return stats.chisquare(observed[keep], wanted[keep] * observed.sum() / wanted[keep].sum())


def test_sampled_speculative_decoding_reproduces_the_target_distribution():
    vocab, samples = 6, 4000
    target = build_model(tiny_spec(n_layers=2, vocab=vocab), seed=11, logit_scale=2.0)
    # A poor draft (its own random weights): many rejections exercise the residual path.
    draft = build_model(tiny_spec(n_layers=1, vocab=vocab), seed=12, logit_scale=2.0)
    prompt = jnp.tile(jnp.array([[1, 4, 2]], jnp.int32), (samples, 1))
    out = speculative_generate(target, draft, prompt, 3, gamma=2, seed=5)
    assert 0.2 < out.alpha < 0.95  # both acceptance and rejection happen
    first, second = np.asarray(out.tokens[:, 3]), np.asarray(out.tokens[:, 4])

    # Exact joint of (first, second): the first comes from the target's prefill, the
    # second from the speculative iteration (accepted draft, residual or bonus token).
    p_first = _conditional(target, prompt[:1])[0]
    prefixes = jnp.concatenate([jnp.tile(prompt[:1], (vocab, 1)), jnp.arange(vocab)[:, None]], 1)
    joint = p_first[:, None] * _conditional(target, prefixes)
    counts = np.zeros((vocab, vocab))
    np.add.at(counts, (first, second), 1)
    assert _pooled_chisquare(counts, joint * samples).pvalue > P_VALUE_FLOOR

    # The test has power: the draft's own distribution is rejected.
    q_joint = p_first[:, None] * _conditional(draft, prefixes)
    assert _pooled_chisquare(counts, q_joint * samples).pvalue < 1e-6


def test_sampled_third_token_follows_the_target_given_the_first_two():
    vocab, samples = 5, 3000
    target = build_model(tiny_spec(n_layers=2, vocab=vocab), seed=21, logit_scale=2.5)
    draft = layer_skip_draft(target, 1)
    prompt = jnp.tile(jnp.array([[0, 3]], jnp.int32), (samples, 1))
    out = speculative_generate(target, draft, prompt, 4, gamma=3, seed=9, temperature=0.8)
    tokens = np.asarray(out.tokens[:, 2:5])
    prefixes = jnp.array(
        [[0, 3, a, b] for a, b in itertools.product(range(vocab), repeat=2)], jnp.int32
    )
    p_third = _conditional(target, prefixes, temperature=0.8).reshape(vocab, vocab, vocab)
    p_first = _conditional(target, prompt[:1], temperature=0.8)[0]
    p_second = _conditional(
        target,
        jnp.concatenate([jnp.tile(prompt[:1], (vocab, 1)), jnp.arange(vocab)[:, None]], 1),
        temperature=0.8,
    )
    joint = p_first[:, None, None] * p_second[:, :, None] * p_third
    counts = np.zeros((vocab,) * 3)
    np.add.at(counts, tuple(tokens.T), 1)
    assert _pooled_chisquare(counts, joint * samples).pvalue > P_VALUE_FLOOR


def test_sample_from_draws_in_proportion_to_the_weights():
    weights = jnp.array([0.1, 0.0, 0.5, 0.4] + [0.0] * 70 + [0.2])  # two sampler blocks
    keys = jax.random.split(jax.random.key(3), 20000)
    draws = np.asarray(jax.vmap(lambda k: sample_from(k, weights))(keys))
    counts = np.bincount(draws, minlength=weights.size)
    assert counts[np.asarray(weights) == 0].sum() == 0
    weights64 = np.asarray(weights, dtype=np.float64)
    expected = weights64 / weights64.sum() * draws.size
    nonzero = expected > 0
    assert stats.chisquare(counts[nonzero], expected[nonzero]).pvalue > P_VALUE_FLOOR
    np.testing.assert_array_equal(argmax(jnp.array([[1.0, 3.0, 3.0, 2.0]])), [1])


def test_measurements_repeat_and_pool_acceptance(target):
    draft = layer_skip_draft(target, 2)
    sd = measure_speculative(target, draft, 2, 4, 16, 3, repeats=2, temperature=0.0)
    plain = measure_decoding(target, 2, 4, 16, repeats=2)
    assert 0.0 <= sd.alpha <= 1.0 and len(sd.positional_alpha) == 3
    assert sd.tokens_per_step >= 1.0 and plain.tokens_per_step == 1.0
    assert sd.tokens_per_s_p10 <= sd.tokens_per_s <= sd.tokens_per_s_p90
    assert sd.steady_tokens_per_s > 0 and plain.steady_tokens_per_s > 0


def test_bad_inputs_get_clear_errors(target):
    draft = layer_skip_draft(target, 1)
    prompt = jnp.zeros((1, 3), jnp.int32)
    with pytest.raises(ValueError, match="gamma"):
        speculative_generate(target, draft, prompt, 5, 0)
    with pytest.raises(ValueError, match="temperature"):
        speculative_generate(target, draft, prompt, 5, 2, temperature=-1.0)
    with pytest.raises(ValueError, match="vocab"):
        speculative_generate(target, build_model(tiny_spec(vocab=10)), prompt, 5, 2)
    with pytest.raises(ValueError, match="prompt"):
        generate(target, jnp.full((1, 3), 999), 5)
    with pytest.raises(ValueError, match="prompt"):
        generate(target, jnp.zeros((3,), jnp.int32), 5)
    with pytest.raises(ValueError, match="new_tokens"):
        generate(target, prompt, 0)
    with pytest.raises(ValueError, match="repeats"):
        measure_speculative(target, draft, 1, 3, 5, 2, repeats=0)
