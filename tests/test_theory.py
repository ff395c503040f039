"""Closed forms of `specsim.theory` and the Lambert W they rest on."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special
from conftest import RTOL_F64, assert_close, compilations
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.test_util import check_grads
from scipy.optimize import brentq

from specsim._lambertw import lambertw_m1, lambertw_m1_from_log
from specsim.theory import (
    expected_tokens,
    operations_factor,
    optimal_gamma,
    speedup,
    tokens_per_flop,
)

# Gradient helpers, jitted once at module level: each transformation then compiles once
# per shape and dtype instead of once per primitive.
expected_tokens_grads = jax.jit(jax.vmap(jax.grad(expected_tokens, argnums=(0, 1))))
optimal_gamma_and_grads = jax.jit(jax.vmap(jax.value_and_grad(optimal_gamma, argnums=(0, 1))))
lambertw_m1_grad = jax.jit(jax.vmap(jax.grad(lambertw_m1)))

# ---------------------------------------------------------------------------------------
# Golden numbers from Leviathan, Kalman, Matias 2023 (arXiv 2211.17192).

# Table 1 (c = c_hat = 0): alpha, gamma, Operations, Speed.
LEVIATHAN_TABLE_1 = [
    (0.6, 2, 1.53, 1.96),
    (0.7, 3, 1.58, 2.53),
    (0.8, 2, 1.23, 2.44),
    (0.8, 5, 1.63, 3.69),
    (0.9, 2, 1.11, 2.71),
    (0.9, 10, 1.60, 6.86),
]

# Appendix A.3, Table 4: gamma, alpha, c, expected speedup (EnDe then CNNDM rows).
LEVIATHAN_TABLE_4 = [
    (7, 0.75, 0.02, 3.2),
    (7, 0.8, 0.04, 3.3),
    (7, 0.82, 0.11, 2.5),
    (7, 0.62, 0.02, 2.3),
    (5, 0.68, 0.04, 2.4),
    (3, 0.71, 0.11, 2.0),
    (5, 0.65, 0.02, 2.4),
    (5, 0.73, 0.04, 2.6),
    (3, 0.74, 0.11, 2.0),
    (5, 0.53, 0.02, 1.9),
    (3, 0.55, 0.04, 1.8),
    (3, 0.56, 0.11, 1.6),
]


@pytest.mark.parametrize("alpha, gamma, operations, speed", LEVIATHAN_TABLE_1)
def test_leviathan_table_1(alpha, gamma, operations, speed):
    assert round(float(speedup(alpha, float(gamma), 0.0)), 2) == speed
    assert round(float(operations_factor(alpha, float(gamma), 0.0)), 2) == operations


def test_leviathan_table_4_expected_speedup():
    gamma, alpha, cost_ratio, published = (
        np.array(c) for c in zip(*LEVIATHAN_TABLE_4, strict=True)
    )
    predicted = speedup(alpha, gamma.astype(np.float32), cost_ratio)
    # The paper rounds its profiled c to two decimals; 0.07 is the documented agreement.
    assert np.max(np.abs(np.asarray(predicted) - published)) <= 0.07


# ---------------------------------------------------------------------------------------
# expected_tokens, speedup, operations_factor, tokens_per_flop against slow references.


def slow_expected_tokens(alpha, gamma):
    """sum_{k=0}^{gamma} alpha**k for integer gamma, in Python floats."""
    return math.fsum(alpha**k for k in range(gamma + 1))


@pytest.mark.parametrize("gamma", [0, 1, 2, 5, 17, 64])
def test_expected_tokens_matches_python_sum(gamma, x64):
    alphas = [1e-6, 0.1, 0.5, 0.9, 0.99, 0.999, 1 - 1e-6, 1 - 1e-9, 1.0]
    expected = [slow_expected_tokens(a, gamma) for a in alphas]
    actual = expected_tokens(jnp.asarray(alphas), float(gamma))
    assert_close(actual, expected, rtol=1e-13)


def test_expected_tokens_matches_python_sum_float32():
    alphas = np.linspace(0.01, 1.0, 100)
    for gamma in (0, 3, 10):
        expected = [slow_expected_tokens(a, gamma) for a in np.float32(alphas).tolist()]
        assert_close(expected_tokens(alphas.astype(np.float32), float(gamma)), expected)


def test_expected_tokens_real_gamma_matches_formula(x64):
    alpha = np.linspace(0.05, 0.95, 19)
    gamma = np.linspace(0.0, 12.5, 19)
    assert_close(expected_tokens(alpha, gamma), (1 - alpha ** (gamma + 1)) / (1 - alpha), RTOL_F64)


def test_expected_tokens_exact_at_gamma_zero():
    alpha = jnp.asarray([1e-6, 0.3, 0.999, 1.0], jnp.float32)
    assert np.all(np.asarray(expected_tokens(alpha, 0.0)) == 1.0)
    d_alpha, _ = expected_tokens_grads(alpha, jnp.zeros_like(alpha))
    assert np.all(np.asarray(d_alpha) == 0.0)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_expected_tokens_limit_at_alpha_one(dtype):
    # lim E = gamma + 1, dE/dalpha -> gamma (gamma + 1) / 2, dE/dgamma -> 1.
    with jax.enable_x64(dtype == "float64"):
        gamma = jnp.asarray([0.0, 1.0, 3.5, 10.0, 100.0], dtype)
        one = jnp.ones_like(gamma)
        value = expected_tokens(one, gamma)
        d_alpha, d_gamma = expected_tokens_grads(one, gamma)
        assert_close(value, gamma + 1.0)
        assert_close(d_alpha, gamma * (gamma + 1.0) / 2.0, rtol=1e-5)
        assert_close(d_gamma, np.ones(5), rtol=1e-5)


def test_expected_tokens_gradient_near_alpha_one_finite_differences(x64):
    # Points on both sides of the series switch, |(gamma + 1) log alpha| = 0.05.
    switch = -np.expm1(-0.05 / 11)
    alpha = np.array([1 - 1e-2, 1 - 1e-3, switch - 1e-9, switch + 1e-9, 1 - 1e-5, 1 - 1e-8, 1])
    # The sum is a polynomial, so central differences may straddle alpha = 1; with this
    # step, truncation (~ step**2 x third derivative / 6) and rounding are < 1e-9.
    step = 1e-5
    numeric = [
        (slow_expected_tokens(a + step, 10) - slow_expected_tokens(a - step, 10)) / (2 * step)
        for a in alpha
    ]
    analytic, _ = expected_tokens_grads(alpha, np.full_like(alpha, 10.0))
    assert_close(analytic, numeric, rtol=1e-8)


def test_tokens_per_flop_and_operations_factor_formulas(x64):
    alpha, gamma, n, m = 0.7, 4.0, 1.2e8, 1.3e10
    e = (1 - alpha**5) / (1 - alpha)
    assert_close(tokens_per_flop(alpha, gamma, n, m), e / (2 * n * gamma + 2 * m), RTOL_F64)
    assert_close(operations_factor(alpha, gamma, 0.1), (gamma * 0.1 + gamma + 1) / e, RTOL_F64)
    assert_close(speedup(alpha, gamma, 0.1), e / (gamma * 0.1 + 1), RTOL_F64)


def test_theory_jit_vmap_and_no_recompile():
    alpha = jnp.linspace(0.1, 0.9, 7)
    gamma = jnp.linspace(0.0, 8.0, 7)
    batched = jax.vmap(speedup, (0, 0, None))(alpha, gamma, 0.05)
    assert_close(batched, [float(speedup(a, g, 0.05)) for a, g in zip(alpha, gamma, strict=True)])
    expected_tokens(jnp.float32(0.5), jnp.float32(2.0))
    with compilations() as compiled:
        expected_tokens(jnp.float32(0.7), jnp.float32(3.5))
    assert compiled == []


def test_check_grads_closed_forms(x64):
    for alpha, gamma in [(0.3, 2.5), (0.8, 7.0), (0.999, 4.0), (0.9999999, 20.0)]:
        # Finite differences stay inside the domain alpha <= 1 (outside it is refused).
        eps = min(1e-4, (1.0 - alpha) / 2)
        check_grads(expected_tokens, (alpha, gamma), order=1, modes=("rev",), eps=eps)
        check_grads(speedup, (alpha, gamma, 0.05), order=1, modes=("rev",), eps=eps)


# ---------------------------------------------------------------------------------------
# Lambert W_{-1}.

# Reference in log form: w + log(-w) = log(-x), root on w <= -1 (a bracket by brentq).


def reference_lambertw_m1_from_log(log_neg_x):
    residual = lambda w: w + math.log(-w) - log_neg_x
    return brentq(residual, 2 * log_neg_x - 10, -1.0, xtol=1e-300, rtol=1e-15, maxiter=500)


def reference_branch_offset(distance):
    """s > 0 with s - log1p(s) = distance, so W_{-1}(-exp(-1 - distance)) = -1 - s.

    s - log1p(s) is summed as a series for small s (it cancels otherwise), which keeps
    the reference accurate right at the branch point.
    """

    def excess(s):
        if s < 0.1:
            return math.fsum((-1) ** k * s**k / k for k in range(2, 40))
        return s - math.log1p(s)

    return brentq(lambda s: excess(s) - distance, 0.0, 100.0, xtol=1e-300, rtol=1e-15)


def test_lambertw_m1_matches_scipy(x64):
    # scipy's k=-1 branch loses accuracy within ~1e-7 of -1/e (its result there fails
    # w exp(w) = x); that region is checked against the series reference below.
    x = np.concatenate(
        [
            -np.exp(-1.0) + np.logspace(-6, np.log10(np.exp(-1.0)) - 1e-9, 400),
            -np.logspace(-300, -0.45, 600),
        ]
    )
    expected = scipy.special.lambertw(x, k=-1).real
    assert_close(jax.jit(lambertw_m1)(x), expected, rtol=1e-13)


def test_lambertw_m1_float32_matches_scipy():
    x = -np.logspace(-37, -0.45, 500).astype(np.float32)
    expected = scipy.special.lambertw(x.astype(np.float64), k=-1).real
    # The relative condition number 1 / |1 + W| is <= 2 on this range.
    assert_close(lambertw_m1(x), expected, rtol=6e-7)


def test_lambertw_m1_near_branch_point(x64):
    distance = np.logspace(-15, 0.3, 60)
    log_neg_x = -1.0 - distance
    expected = [-1.0 - reference_branch_offset(-(v + 1.0)) for v in log_neg_x]
    assert_close(lambertw_m1_from_log(log_neg_x), expected, rtol=1e-14)
    assert float(lambertw_m1(-np.exp(-1.0))) == -1.0


def test_lambertw_m1_from_log_far_arguments(x64):
    log_neg_x = -np.logspace(0.01, 4, 80)
    expected = [reference_lambertw_m1_from_log(v) for v in log_neg_x]
    assert_close(lambertw_m1_from_log(log_neg_x), expected, rtol=1e-14)
    with jax.enable_x64(False):
        single = lambertw_m1_from_log(log_neg_x.astype(np.float32))
    assert_close(single, expected, rtol=3e-7)


def test_lambertw_m1_edges():
    assert float(lambertw_m1(0.0)) == -np.inf
    assert float(lambertw_m1_from_log(-np.inf)) == -np.inf
    assert np.isnan(float(lambertw_m1(0.1)))
    assert np.isnan(float(lambertw_m1(-0.5)))
    assert np.isnan(float(lambertw_m1_from_log(-0.5)))


def test_lambertw_m1_gradients(x64):
    for x in [-0.36, -0.2, -1e-3, -1e-30]:
        # eps well inside the distance to the branch point (0.0079 at x = -0.36).
        check_grads(lambertw_m1, (x,), order=1, modes=("rev",), eps=abs(x) * 1e-6)
    for log_neg_x in [-1.01, -3.0, -5000.0]:
        check_grads(lambertw_m1_from_log, (log_neg_x,), order=1, modes=("rev",), eps=1e-6)
    x = np.array([-0.1, -0.3, -1e-5, -1e-200])
    w = np.asarray(lambertw_m1(x))
    assert_close(lambertw_m1_grad(x), w / (x * (1 + w)), RTOL_F64)


# ---------------------------------------------------------------------------------------
# optimal_gamma.

ALPHAS = [0.5, 0.6, 0.7, 0.8, 0.9, 0.95]
SIZE_RATIOS = [5.0, 20.0, 100.0, 200.0, 1000.0, 1e4]


def brute_force_optimal_gamma(alpha, size_ratio, step=1e-3, gamma_max=400.0):
    """argmax over a fine gamma grid of E(alpha, gamma) / (gamma + r) (tokens/FLOP x 2N)."""
    gamma = np.arange(0.0, gamma_max, step)
    throughput = (1.0 - alpha ** (gamma + 1.0)) / ((1.0 - alpha) * (gamma + size_ratio))
    return gamma[np.argmax(throughput)]


def test_optimal_gamma_matches_brute_force(x64):
    alpha, ratio = (np.array(v).ravel() for v in np.meshgrid(ALPHAS, SIZE_RATIOS))
    expected = [brute_force_optimal_gamma(a, r) for a, r in zip(alpha, ratio, strict=True)]
    assert_close(optimal_gamma(alpha, ratio), expected, atol=1e-3)  # grid step 1e-3
    with jax.enable_x64(False):
        single = optimal_gamma(alpha.astype(np.float32), ratio.astype(np.float32))
    # float32: ln(alpha) carries ~1e-7 relative error, amplified by gamma* ~ 100.
    assert_close(single, expected, rtol=2e-5, atol=1e-3)


# sdsl.md §2.3, gamma* for alpha (rows) and r = M/N in {100, 150, 200, 250, 300}.
SDSL_GAMMA_TABLE = {
    0.60: [6.9, 7.6, 8.2, 8.6, 8.9],
    0.65: [8.0, 8.8, 9.5, 10.0, 10.4],
    0.70: [9.3, 10.4, 11.2, 11.7, 12.2],
}


@pytest.mark.parametrize("alpha", sorted(SDSL_GAMMA_TABLE))
def test_optimal_gamma_sdsl_table(alpha):
    gamma = optimal_gamma(alpha, jnp.asarray([100.0, 150.0, 200.0, 250.0, 300.0]))
    assert_close(gamma, SDSL_GAMMA_TABLE[alpha], atol=0.05)  # table printed to 1 decimal


def test_optimal_gamma_edges_of_the_domain():
    edge_alpha = np.array([1e-4, 0.01, 0.3, 0.5, 0.9, 0.99, 0.9999, 1 - 1e-6], np.float32)
    edge_ratio = np.array([1.0, 1.0001, 1.5, 2.0, 10.0, 1e3, 1e4, 1e5], np.float32)
    # Speculation never pays for a draft as large as the target (r <= 1) or when
    # alpha (1 - r ln alpha) <= 1 (alpha = 0.05, r = 5): gamma* = 0, with zero gradient.
    no_gain_alpha = np.array([0.05, 0.5, 0.9, 1 - 1e-6] * 2 + [0.05], np.float32)
    no_gain_ratio = np.array([0.5] * 4 + [1.0] * 4 + [5.0], np.float32)
    a, r = (v.ravel() for v in np.meshgrid(edge_alpha, edge_ratio))
    gamma, grads = optimal_gamma_and_grads(
        np.concatenate([a, no_gain_alpha]), np.concatenate([r, no_gain_ratio])
    )
    gamma, grads = np.asarray(gamma), np.asarray(grads)
    assert np.all(np.isfinite(gamma)) and np.all(gamma >= 0.0)
    assert np.all(np.isfinite(grads))
    assert np.all(gamma[a.size :] == 0.0) and np.all(grads[:, a.size :] == 0.0)
    # alpha = 1 is the limit where gamma* diverges: refused when concrete, +inf when traced.
    with pytest.raises(ValueError, match="alpha 1: outside the domain of optimal_gamma"):
        optimal_gamma(1.0, 100.0)
    assert float(optimal_gamma.jitted(1.0, 100.0)) == np.inf
    # Large r must not collapse to 0 or inf through underflow of alpha**(r - 1).
    with jax.enable_x64(True):
        for alpha_64, ratio_64 in [(0.5, 1e5), (0.9, 1e5), (0.999, 1e5)]:
            assert_close(
                optimal_gamma(alpha_64, ratio_64),
                brute_force_optimal_gamma(alpha_64, ratio_64, step=1e-2, gamma_max=2e4),
                atol=1e-2,
            )


@pytest.mark.slow
def test_optimal_gamma_check_grads(x64):
    # eps well below 1 - alpha, where gamma* (~ 1 / (1 - alpha)) curves sharply.
    for alpha, ratio, eps in [(0.6, 20.0, 1e-6), (0.95, 1e4, 1e-6), (0.999999, 1e5, 1e-10)]:
        check_grads(optimal_gamma, (alpha, ratio), order=2, modes=("rev",), eps=eps)


def test_optimal_gamma_is_stationary(x64):
    # d tokens_per_flop / d gamma = 0 at the optimum (envelope of the closed form).
    for alpha, ratio in [(0.6, 50.0), (0.9, 300.0)]:
        gamma = optimal_gamma(alpha, ratio)
        slope = jax.grad(tokens_per_flop, argnums=1)(alpha, gamma, 1.0, ratio)
        assert abs(float(slope)) < 1e-12


# ---------------------------------------------------------------------------------------
# Property test: no NaN/inf in values or gradients anywhere in the valid domain.

alphas = st.floats(1e-6, 1.0 - 1e-6)
gammas = st.floats(0.0, 64.0)
ratios = st.floats(1.0, 1e5)
cost_ratios = st.floats(0.0, 1.0)


@jax.jit
def closed_forms_with_grads(alpha, gamma, ratio, cost_ratio):
    tokens = jax.value_and_grad(expected_tokens, (0, 1))(alpha, gamma)
    gain = jax.value_and_grad(speedup, (0, 1, 2))(alpha, gamma, cost_ratio)
    best = jax.value_and_grad(optimal_gamma, (0, 1))(alpha, ratio)
    return tokens, gain, best


@settings(max_examples=150, deadline=None)
@given(alpha=alphas, gamma=gammas, ratio=ratios, cost_ratio=cost_ratios)
def test_closed_forms_finite_everywhere(alpha, gamma, ratio, cost_ratio):
    args = (jnp.float32(v) for v in (alpha, gamma, ratio, cost_ratio))
    tokens, gain, best = closed_forms_with_grads(*args)
    values = np.asarray(jax.tree.leaves((tokens, gain, best)))
    assert np.all(np.isfinite(values)), values
    assert 1.0 - 1e-6 <= float(tokens[0]) <= np.float32(gamma) + 1.0 + 1e-4
    assert float(best[0]) >= 0.0


# Domains (issue 11, point 8): concrete inputs outside raise; traced ones give NaN values
# and NaN gradients, never a clamped number.


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: expected_tokens(1.5, 4), "alpha 1.5: outside the domain of expected_tokens"),
        (lambda: expected_tokens(0.5, -1.0), "gamma -1: outside the domain"),
        (lambda: expected_tokens(float("nan"), 4), "alpha nan: outside the domain"),
        (lambda: speedup(0.8, 4.0, -0.1), "cost_ratio -0.1: outside the domain of speedup"),
        (lambda: operations_factor(0.8, 4.0, -1.0), "op_ratio -1: outside the domain"),
        (lambda: tokens_per_flop(0.8, 4.0, 0.0, 1e9), "draft_params 0: outside the domain"),
        (lambda: optimal_gamma(0.0, 100.0), "alpha 0: outside the domain of optimal_gamma"),
        (lambda: optimal_gamma(0.5, -3.0), "size_ratio -3: outside the domain"),
        (lambda: operations_factor(0.5, 1e38, 1e38), "operations_factor inf: the result is not"),
    ],
)
def test_closed_forms_refuse_inputs_outside_their_domain(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_expected_tokens_beyond_gamma_plus_one_is_refused():
    """Issue 11: expected_tokens(1.5, 4) returned 13.19, more than gamma + 1."""
    with pytest.raises(ValueError, match=r"valid: 0 <= alpha <= 1"):
        expected_tokens(1.5, 4)


def test_a_nan_alpha_inside_vmap_is_nan_not_alpha_zero():
    """Issue 11: inside vmap a NaN alpha silently acted as alpha 0, with gradient 0."""
    alpha = jnp.asarray([0.5, jnp.nan, 1.5, -0.1, 0.0])
    gamma = jnp.full(5, 4.0)
    value = np.asarray(jax.vmap(expected_tokens)(alpha, gamma))
    grad = np.asarray(jax.vmap(jax.grad(expected_tokens))(alpha, gamma))
    assert np.isfinite(value[[0, 4]]).all() and np.isnan(value[1:4]).all()
    assert np.isfinite(grad[[0, 4]]).all() and np.isnan(grad[1:4]).all()
