"""Acceptance models: values, transformations and validation."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import assert_close, compilations

from specsim._acceptance import (
    ConstantAcceptance,
    PositionalAcceptance,
    SDSLAcceptance,
    acceptance_rate,
    expected_tokens_per_step,
    validate_acceptance,
)
from specsim._scaling import HOFFMANN_2022, sdsl_alpha
from specsim.theory import expected_tokens

POSITIONAL = [0.9, 0.8, 0.6, 0.5, 0.3]


def closed_form_positional(alphas, gamma):
    """1 + sum_{k <= gamma} prod_{i <= k} a_i for integer gamma, in Python floats."""
    return 1.0 + math.fsum(math.prod(alphas[:k]) for k in range(1, min(gamma, len(alphas)) + 1))


def test_positional_matches_closed_form_at_integer_gamma():
    acceptance = PositionalAcceptance.create(POSITIONAL)
    gammas = jnp.arange(0.0, 8.0)  # includes gamma > K = 5: nothing beyond K is accepted
    actual = jax.vmap(expected_tokens_per_step, (None, 0))(acceptance, gammas)
    expected = [closed_form_positional(POSITIONAL, g) for g in range(8)]
    assert_close(actual, expected)


def test_positional_interpolates_linearly_between_integers():
    acceptance = PositionalAcceptance.create(POSITIONAL)
    at = lambda g: float(expected_tokens_per_step(acceptance, g))
    assert_close(at(2.25), 0.75 * at(2.0) + 0.25 * at(3.0))
    # The slope in gamma between k - 1 and k is prod_{i <= k} a_i.
    assert_close(jax.grad(expected_tokens_per_step, argnums=1)(acceptance, 2.5), 0.9 * 0.8 * 0.6)


def test_positional_with_equal_entries_matches_constant():
    alpha = 0.7
    positional = PositionalAcceptance.create([alpha] * 12)
    constant = ConstantAcceptance.create(alpha)
    for gamma in range(13):
        assert_close(
            expected_tokens_per_step(positional, float(gamma)),
            expected_tokens_per_step(constant, float(gamma)),
        )


@pytest.mark.slow
def test_constant_under_jit_vmap_grad():
    stacked = ConstantAcceptance(alpha=jnp.asarray([0.3, 0.6, 0.9]))
    gamma = jnp.asarray([1.0, 4.0, 7.5])
    batched = jax.jit(jax.vmap(expected_tokens_per_step))(stacked, gamma)
    assert_close(batched, expected_tokens(stacked.alpha, gamma))

    grad = jax.grad(lambda acc: expected_tokens_per_step(acc, 4.0))(ConstantAcceptance(0.8))
    assert isinstance(grad, ConstantAcceptance)
    assert_close(grad.alpha, jax.grad(expected_tokens)(0.8, 4.0))
    assert_close(acceptance_rate(ConstantAcceptance(0.8)), 0.8)


def test_positional_under_jit_vmap_grad():
    alphas = jnp.asarray([POSITIONAL, [0.5] * 5])
    batched = jax.jit(jax.vmap(expected_tokens_per_step, (0, None)))(
        PositionalAcceptance(alphas=alphas), 3.0
    )
    assert_close(batched, [closed_form_positional(POSITIONAL, 3), 1 + 0.5 + 0.25 + 0.125])

    # d E / d a_j at gamma = 3: sum over k in [j, 3] of prod_{i <= k, i != j} a_i.
    acc = PositionalAcceptance.create(POSITIONAL)
    grad = jax.grad(lambda a: expected_tokens_per_step(a, 3.0))(acc).alphas
    a1, a2, a3 = POSITIONAL[:3]
    assert_close(grad, [1 + a2 + a2 * a3, a1 + a1 * a3, a1 * a2, 0.0, 0.0], atol=1e-7)
    geometric_mean = math.prod(POSITIONAL) ** (1 / len(POSITIONAL))
    assert_close(acceptance_rate(acc), geometric_mean)


@pytest.mark.slow
def test_sdsl_under_jit_vmap_grad():
    acc = SDSLAcceptance.create(draft_train_tokens=2e12, target_train_tokens=2e12)
    draft_params = jnp.asarray([1e8, 3e8, 1e9])
    alpha = jax.vmap(acceptance_rate, (None, 0, None))(acc, draft_params, 7e10)
    assert_close(alpha, sdsl_alpha(draft_params, 2e12, 7e10, 2e12))
    tokens = jax.jit(jax.vmap(expected_tokens_per_step, (None, None, 0, None)))(
        acc, 5.0, draft_params, 7e10
    )
    assert_close(tokens, expected_tokens(alpha, 5.0))
    # A bigger draft has a lower perplexity, hence a higher alpha and more tokens per step.
    assert np.all(np.diff(np.asarray(tokens)) > 0)

    # Gradient with respect to the draft size (through the law), checked by differences
    # in log N (float32: step 1e-2, tolerance 1e-3).
    tokens_of_log_n = lambda log_n: expected_tokens_per_step(acc, 5.0, jnp.exp(log_n), 7e10)
    log_n = math.log(3e8)
    numeric = (tokens_of_log_n(log_n + 1e-2) - tokens_of_log_n(log_n - 1e-2)) / 2e-2
    assert_close(jax.grad(tokens_of_log_n)(log_n), numeric, rtol=1e-3)
    # Law constants are traced leaves too.
    law_grad = jax.grad(lambda a: expected_tokens_per_step(a, 5.0, 3e8, 7e10))(acc).law
    assert np.isfinite(float(law_grad.param_exponent)) and float(law_grad.param_coef) < 0


def test_sdsl_law_is_selectable():
    default = SDSLAcceptance.create(180e9, 180e9)
    hoffmann = SDSLAcceptance.create(180e9, 180e9, law=HOFFMANN_2022)
    assert float(acceptance_rate(default, 1.25e8, 1.285e10)) != pytest.approx(
        float(acceptance_rate(hoffmann, 1.25e8, 1.285e10)), abs=1e-3
    )


def test_no_recompile_when_values_change():
    gamma = jnp.float32(4.0)
    expected_tokens_per_step(ConstantAcceptance.create(0.6), gamma)
    with compilations() as compiled:
        expected_tokens_per_step(ConstantAcceptance.create(0.9), jnp.float32(2.5))
    assert compiled == []


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: ConstantAcceptance.create(0.0), r"alpha must be in \(0, 1\), got 0$"),
        (lambda: ConstantAcceptance.create(1.0), r"alpha must be in \(0, 1\), got 1$"),
        (lambda: ConstantAcceptance.create(1.2), r"alpha must be in \(0, 1\), got 1.2$"),
        (lambda: ConstantAcceptance.create(-0.1), r"alpha must be in \(0, 1\), got -0.1$"),
        (lambda: ConstantAcceptance.create(float("nan")), r"\(0, 1\), got nan"),
        (lambda: PositionalAcceptance.create([]), r"non-empty 1-D .* got shape \(0,\)"),
        (lambda: PositionalAcceptance.create([[0.5, 0.5]]), r"got shape \(1, 2\)"),
        (lambda: PositionalAcceptance.create([0.9, 1.5]), r"\[0, 1\], got alphas\[1\] = 1.5"),
        (lambda: SDSLAcceptance.create(-1e9, 1e12), r"draft_train_tokens must be positive"),
        (lambda: SDSLAcceptance.create(1e12, 0.0), r"target_train_tokens must be positive"),
    ],
)
def test_validation_errors(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_validation_other_cases():
    with pytest.raises(TypeError, match="ConstantAcceptance, PositionalAcceptance"):
        validate_acceptance(0.8)
    with pytest.raises(ValueError, match="needs draft_params and target_params"):
        expected_tokens_per_step(SDSLAcceptance.create(1e12, 1e12), 3.0)
    # Positional entries may be 0 or 1 (certain rejection or acceptance).
    PositionalAcceptance.create([1.0, 0.0])
    # Traced leaves cannot be inspected; validation skips them instead of failing.
    unchecked = jax.jit(lambda a: validate_acceptance(ConstantAcceptance(alpha=a)).alpha)
    assert float(unchecked(2.0)) == 2.0
