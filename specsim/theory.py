"""Hardware-free closed forms of speculative decoding.

Chain speculation with lookahead gamma (draft tokens per iteration, a real number >= 0)
and i.i.d. per-token acceptance probability alpha (Leviathan et al. 2023), plus the
tokens-per-FLOP throughput and optimal lookahead / draft size of the SDSL scaling law
(Bozorgkhoo & Molybog 2026). Every function is jitted, differentiable, and safe at the
edges of its domain (alpha -> 1, size ratios in the thousands).

References:
    Leviathan, Kalman, Matias (2023), "Fast Inference from Transformers via Speculative
    Decoding", ICML, arXiv 2211.17192.
    Bozorgkhoo, Molybog (2026), "Speculative Decoding Scaling Laws (SDSL): Throughput
    Optimization Made Simple", arXiv 2603.11053.
"""

import functools
import inspect

import jax
import jax.numpy as jnp
import numpy as np

from ._lambertw import lambertw_m1_from_log
from ._numerics import as_float, concrete
from ._scaling import DEFAULT_SCALING_LAW, SDSL_2026, sdsl_alpha

__all__ = [
    "expected_tokens",
    "operations_factor",
    "optimal_draft_size",
    "optimal_gamma",
    "speedup",
    "tokens_per_flop",
]

# |(gamma + 1) log(alpha)| below which expected_tokens switches to its series about
# alpha = 1; there the truncation error (first omitted term ~ y**8 / 1e7) is < 1e-17.
_SERIES_RADIUS = 0.05

# Draft-size search of `optimal_draft_size`: a log-spaced grid over
# [min(1e6, M / 500), M / 2], then bisection on the sign of d objective / d log N inside
# the best cell (the slope locates a flat optimum to ~eps, value comparisons only to
# ~sqrt(eps)); 40 halvings shrink the two-cell bracket (< 0.1 in log N) below 1e-12.
_SEARCH_MIN_DRAFT_PARAMS = 1e6
_SEARCH_MAX_DRAFT_FRACTION = 0.5
_SEARCH_GRID_SIZE = 256
_BISECTION_STEPS = 40


# Domains of the closed forms: (test on a NumPy array, the valid range as text).
_PROBABILITY = (lambda v: (v >= 0.0) & (v <= 1.0), "0 <= alpha <= 1")
_OPEN_PROBABILITY = (lambda v: (v > 0.0) & (v < 1.0), "0 < alpha < 1")
_LOOKAHEAD = (lambda v: np.isfinite(v) & (v >= 0.0), "a finite gamma >= 0")
_RATIO = (lambda v: np.isfinite(v) & (v >= 0.0), "a finite ratio >= 0")
_POSITIVE = (lambda v: np.isfinite(v) & (v > 0.0), "a finite number > 0")


def _closed_form(**domain):
    """Jits a closed form; a call with concrete inputs checks them against ``domain``
    first (``ValueError`` naming the argument) and the result after (finite, or
    ``ValueError``). Traced inputs are not checked: there the function itself returns
    NaN outside its domain, for the caller's checked entry point to report."""

    def decorate(function):
        core = jax.jit(function)
        signature = inspect.signature(function)

        @functools.wraps(function)
        def checked(*args, **kwargs):
            arguments = signature.bind(*args, **kwargs).arguments
            all_concrete = True
            for name, (ok, valid) in domain.items():
                value = concrete(arguments[name])
                if value is None:
                    all_concrete = False
                    continue
                bad = np.flatnonzero(~ok(value))
                if bad.size:
                    raise ValueError(
                        f"{name} {value.ravel()[bad[0]]:g}: outside the domain of "
                        f"{function.__name__}; valid: {valid}"
                    )
            result = core(*args, **kwargs)
            values = concrete(result) if all_concrete else None
            if values is not None and not np.all(np.isfinite(values)):
                raise ValueError(
                    f"{function.__name__} {values.ravel()[~np.isfinite(values.ravel())][0]}: "
                    "the result is not finite in float32 (it overflows at these inputs); "
                    "valid: smaller magnitudes, or float64 (jax.enable_x64)"
                )
            return result

        checked.jitted = core  # the unchecked, jitted function (its compilation cache)
        return checked

    return decorate


def _nan_unless(valid, *inputs):
    """1 where ``valid``, NaN elsewhere: a factor that makes the value *and* its gradient
    with respect to ``inputs`` NaN outside the domain (a plain ``where`` would give a zero
    gradient there). Inside the domain the inputs are cut off by a first ``where``, so no
    NaN reaches their gradients (the double-``where`` trick)."""
    tie = sum(jnp.where(valid, 0.0, x) for x in inputs)
    return jnp.where(valid, 1.0, jnp.nan * (1.0 + tie))


def _log_expm1_ratio_series(y):
    """log(expm1(y) / y) = y/2 + y**2/24 - y**4/2880 + y**6/181440 - ... (|y| small)."""
    y2 = y * y
    return 0.5 * y + y2 * (1.0 / 24.0 + y2 * (-1.0 / 2880.0 + y2 * (1.0 / 181440.0)))


@_closed_form(alpha=_PROBABILITY, gamma=_LOOKAHEAD)
def expected_tokens(alpha, gamma):
    """Expected tokens emitted per speculative iteration, (1 - alpha**(gamma+1)) / (1 - alpha).

    Evaluated as 1 + alpha expm1(gamma l) / expm1(l) with l = log(alpha), which is
    exactly 1, with exactly zero alpha-gradient, at gamma = 0. Near alpha = 1, where the
    ratio is 0/0, a series of its logarithm is used instead (double-`where`, so neither
    branch ever produces NaN); the value tends to gamma + 1 with finite, exact gradients
    (dE/dalpha -> gamma (gamma + 1) / 2, dE/dgamma -> 1).

    Args:
        alpha: per-token acceptance probability, any shape, in (0, 1] (alpha = 0 gives
            1, without a gradient).
        gamma: lookahead (draft tokens per iteration), broadcastable, real >= 0.

    Returns:
        Expected tokens per iteration, in [1, gamma + 1], broadcast shape.

    Examples:
        >>> from specsim.theory import expected_tokens
        >>> print(f"{float(expected_tokens(0.8, 5.0)):.4f}", float(expected_tokens(1.0, 3.0)))
        3.6893 4.0

    References:
        Leviathan et al. (2023), arXiv 2211.17192, Eq. 1.
    """
    alpha, gamma = as_float(alpha), as_float(gamma)
    positive = alpha > 0.0
    log_alpha = jnp.log(jnp.where(positive, alpha, 1.0))
    near_one = jnp.abs((gamma + 1.0) * log_alpha) < _SERIES_RADIUS
    # Double-where: the direct ratio never sees l = 0, the series never sees large l.
    log_direct = jnp.where(near_one, -1.0, log_alpha)
    log_series = jnp.where(near_one, log_alpha, 0.0)
    # (1 - alpha**gamma) / (1 - alpha), the expected number of accepted draft tokens / alpha.
    direct = jnp.expm1(gamma * log_direct) / jnp.expm1(log_direct)
    series = gamma * jnp.exp(
        _log_expm1_ratio_series(gamma * log_series) - _log_expm1_ratio_series(log_series)
    )
    accepted_over_alpha = jnp.where(near_one, series, direct)
    value = jnp.where(positive, 1.0 + alpha * accepted_over_alpha, 1.0)
    # Outside the domain (possible only when traced: concrete calls are checked) the
    # answer is NaN, never a clamped number: a NaN alpha must not act as alpha = 0.
    valid = (alpha >= 0.0) & (alpha <= 1.0) & (gamma >= 0.0)
    return value * _nan_unless(valid, alpha, gamma)


@_closed_form(alpha=_PROBABILITY, gamma=_LOOKAHEAD, cost_ratio=_RATIO)
def speedup(alpha, gamma, cost_ratio):
    """Expected walltime improvement of speculative decoding over plain decoding.

    (1 - alpha**(gamma+1)) / ((1 - alpha) (gamma c + 1)): tokens per iteration over the
    iteration's cost in target-step units, assuming the target scores gamma + 1 tokens in
    the time of one.

    Args:
        alpha: per-token acceptance probability, any shape, in (0, 1].
        gamma: lookahead, broadcastable, real >= 0.
        cost_ratio: c = time of one draft step / time of one target step, >= 0.

    Returns:
        Speedup factor (dimensionless), broadcast shape.

    Examples:
        >>> from specsim.theory import speedup
        >>> print(f"{float(speedup(0.75, 7.0, 0.02)):.2f}")
        3.16

    References:
        Leviathan et al. (2023), arXiv 2211.17192, Theorem 3.8.
    """
    gamma = as_float(gamma)
    value = expected_tokens(alpha, gamma) / (gamma * cost_ratio + 1.0)
    return value * _nan_unless(cost_ratio >= 0.0, cost_ratio)


@_closed_form(alpha=_PROBABILITY, gamma=_LOOKAHEAD, op_ratio=_RATIO)
def operations_factor(alpha, gamma, op_ratio):
    """Factor by which speculative decoding multiplies the total arithmetic operations.

    (1 - alpha) (gamma c_hat + gamma + 1) / (1 - alpha**(gamma+1)): the gamma + 1 target
    token-evaluations and gamma draft evaluations of an iteration, per emitted token.

    Args:
        alpha: per-token acceptance probability, any shape, in (0, 1].
        gamma: lookahead, broadcastable, real >= 0.
        op_ratio: c_hat = arithmetic operations per token of the draft / of the target.

    Returns:
        Operations factor (dimensionless, >= 1 when c_hat >= 0), broadcast shape.

    Examples:
        >>> from specsim.theory import operations_factor
        >>> print(f"{float(operations_factor(0.8, 5.0, 0.0)):.2f}")
        1.63

    References:
        Leviathan et al. (2023), arXiv 2211.17192, Theorem 3.11.
    """
    gamma = as_float(gamma)
    value = (gamma * op_ratio + gamma + 1.0) / expected_tokens(alpha, gamma)
    return value * _nan_unless(op_ratio >= 0.0, op_ratio)


@_closed_form(alpha=_PROBABILITY, gamma=_LOOKAHEAD, draft_params=_POSITIVE, target_params=_POSITIVE)
def tokens_per_flop(alpha, gamma, draft_params, target_params):
    """Hardware-free speculative throughput: expected tokens per FLOP of one iteration.

    E(alpha, gamma) / (2 N gamma + 2 M): gamma draft forward passes and one parallel
    verification pass of the target, each costing 2 x parameters FLOPs per token.

    Args:
        alpha: per-token acceptance probability, any shape, in (0, 1].
        gamma: lookahead, broadcastable, real >= 0.
        draft_params: N, draft parameter count, > 0.
        target_params: M, target parameter count, > 0.

    Returns:
        Throughput in tokens/FLOP, broadcast shape.

    Examples:
        >>> from specsim.theory import tokens_per_flop
        >>> print(f"{float(tokens_per_flop(0.8, 4.0, 1e8, 1e10)):.4e}")
        1.6162e-10

    References:
        Bozorgkhoo, Molybog (2026), arXiv 2603.11053 (tokens-per-FLOP objective, as
        reconstructed in sdsl.md §2.2); Leviathan et al. (2023), arXiv 2211.17192.
    """
    gamma = as_float(gamma)
    flops = 2.0 * draft_params * gamma + 2.0 * target_params
    valid = (draft_params > 0.0) & (target_params > 0.0)
    return expected_tokens(alpha, gamma) / flops * _nan_unless(valid, draft_params, target_params)


@_closed_form(alpha=_OPEN_PROBABILITY, size_ratio=_POSITIVE)
def optimal_gamma(alpha, size_ratio):
    """Real lookahead maximising `tokens_per_flop` for a draft M / N times smaller.

    gamma* = [1 + W_{-1}(-alpha**(r-1) / e)] / ln(alpha) - r, with r = M / N, solves the
    stationarity condition alpha**(gamma+1) (1 - (gamma + r) ln alpha) = 1. It is
    evaluated as gamma* = -ln(-W) / ln(alpha) - 1 (the same value, without cancelling
    against r), with W from log(-x) = (r - 1) ln(alpha) - 1, so alpha**(r-1) is never
    formed and r = 1e5 does not underflow. Where speculation does not pay even at
    gamma = 0 (alpha (1 - r ln alpha) <= 1, always so for r <= 1) the result is 0 and the
    Lambert W is evaluated at a harmless placeholder, keeping gradients finite. gamma*
    diverges as alpha -> 1: a concrete alpha must be below 1 (``ValueError`` otherwise);
    traced, alpha = 1 gives +inf and alpha outside (0, 1] NaN.

    Args:
        alpha: per-token acceptance probability, any shape, in (0, 1).
        size_ratio: r = M / N, target over draft parameter count (cost ratio 1 / c),
            broadcastable, > 0.

    Returns:
        Optimal real gamma >= 0, broadcast shape.

    Examples:
        >>> from specsim.theory import optimal_gamma
        >>> print(f"{float(optimal_gamma(0.7, 200.0)):.2f}", float(optimal_gamma(0.6, 1.0)))
        11.15 0.0

    References:
        Bozorgkhoo, Molybog (2026), arXiv 2603.11053 (Lambert-W form of the optimal
        lookahead; derivation in sdsl.md §2.3); Corless et al. (1996), Adv. Comput. Math.
        5, 329-359.
    """
    alpha, size_ratio = as_float(alpha), as_float(size_ratio)
    log_alpha = jnp.log(alpha)
    unbounded = alpha >= 1.0
    no_gain = alpha * (1.0 - size_ratio * log_alpha) <= 1.0
    inactive = unbounded | no_gain
    log_neg_arg = jnp.where(inactive, -2.0, (size_ratio - 1.0) * log_alpha - 1.0)
    safe_log_alpha = jnp.where(inactive, -1.0, log_alpha)
    w = lambertw_m1_from_log(log_neg_arg)
    gamma = jnp.maximum(jnp.log(-w) / -safe_log_alpha - 1.0, 0.0)
    gamma = jnp.where(unbounded, jnp.inf, jnp.where(no_gain, 0.0, gamma))
    valid = (alpha > 0.0) & (alpha <= 1.0) & (size_ratio > 0.0)
    return gamma * _nan_unless(valid, alpha, size_ratio)


def _log_speedup_at_best_gamma(
    log_draft_params, target_params, train_tokens, draft_train_tokens, law, coefficients
):
    """log of tokens_per_flop x 2M (a speedup of order 1) at gamma*, vs. log N."""
    draft_params = jnp.exp(log_draft_params)
    alpha = sdsl_alpha(
        draft_params, draft_train_tokens, target_params, train_tokens, law, coefficients
    )
    size_ratio = target_params / draft_params
    gamma = optimal_gamma(alpha, size_ratio)
    return jnp.log(expected_tokens(alpha, gamma)) - jnp.log1p(gamma / size_ratio)


_objective_slope = jax.grad(_log_speedup_at_best_gamma)
_objective_curvature = jax.grad(_objective_slope)


@jax.custom_jvp
def _log_optimal_draft_size(target_params, train_tokens, draft_train_tokens, law, coefficients):
    args = (target_params, train_tokens, draft_train_tokens, law, coefficients)
    objective = lambda log_n: _log_speedup_at_best_gamma(log_n, *args)

    log_hi = jnp.log(_SEARCH_MAX_DRAFT_FRACTION * target_params)
    log_lo = jnp.minimum(jnp.log(_SEARCH_MIN_DRAFT_PARAMS), log_hi - jnp.log(500.0))
    grid = jnp.linspace(log_lo, log_hi, _SEARCH_GRID_SIZE)
    best = jnp.argmax(jax.vmap(objective)(grid))
    lower = grid[jnp.maximum(best - 1, 0)]
    upper = grid[jnp.minimum(best + 1, _SEARCH_GRID_SIZE - 1)]

    def bisection_step(_, bracket):
        a, b = bracket
        middle = 0.5 * (a + b)
        rising = _objective_slope(middle, *args) > 0.0
        return jnp.where(rising, middle, a), jnp.where(rising, b, middle)

    a, b = jax.lax.fori_loop(0, _BISECTION_STEPS, bisection_step, (lower, upper))
    return 0.5 * (a + b)


@_log_optimal_draft_size.defjvp
def _log_optimal_draft_size_jvp(primals, tangents):
    # Implicit function theorem on d objective / d log N = 0 at the optimum.
    log_n = _log_optimal_draft_size(*primals)
    slope_of_args = lambda *args: _objective_slope(log_n, *args)
    _, slope_dot = jax.jvp(slope_of_args, primals, tangents)
    curvature = _objective_curvature(log_n, *primals)
    safe_curvature = jnp.where(curvature < 0.0, curvature, -1.0)
    log_n_dot = jnp.where(curvature < 0.0, -slope_dot / safe_curvature, 0.0)
    return log_n, log_n_dot


@jax.jit
def _optimal_draft_size(target_params, train_tokens, draft_train_tokens, law, coefficients):
    target_params, train_tokens = as_float(target_params), as_float(train_tokens)
    draft_train_tokens = as_float(draft_train_tokens)
    log_n = _log_optimal_draft_size(
        target_params, train_tokens, draft_train_tokens, law, coefficients
    )
    return jnp.exp(log_n)


def optimal_draft_size(
    target_params,
    train_tokens,
    law=DEFAULT_SCALING_LAW,
    coefficients=SDSL_2026,
    draft_train_tokens=None,
):
    """Throughput-optimal draft size N* of the SDSL scaling law.

    N* = argmax_N max_gamma tokens_per_flop(alpha(N), gamma, N, M), with alpha from
    `sdsl_alpha` (perplexities from the pre-training law) and gamma = `optimal_gamma`
    (real-valued). The search is jittable and vmappable: a 256-point log grid over
    [min(1e6, M/500), M/2], then bisection on the slope of the objective in log N inside
    the best cell. Its derivative with respect to every input (target size, tokens, law
    and coefficient leaves) comes from the implicit function theorem, which assumes the
    optimum is interior to that range (true for realistic targets, where N*/M is about
    1/100 to 1/300).

    Args:
        target_params: M, target parameter count, scalar > 0 (vmap for several).
        train_tokens: D, target pre-training tokens, scalar > 0.
        law: pre-training scaling law for both perplexities.
        coefficients: A, B, C of the SDSL acceptance law.
        draft_train_tokens: draft pre-training tokens; None means the draft is trained on
            the same D as the target (the paper's assumption).

    Returns:
        N*, draft parameter count (float scalar).

    Raises:
        ValueError: a non-scalar size or token count (use `jax.vmap` for several).

    Examples:
        >>> from specsim.theory import optimal_draft_size
        >>> print(f"{float(optimal_draft_size(12.85e9, 180e9)) / 1e6:.0f}M")
        118M

    References:
        Bozorgkhoo, Molybog (2026), arXiv 2603.11053 (N* by numerical maximisation;
        pooled fit N* = 2.71e-3 M + 8.71e7, Table 9).
    """
    if draft_train_tokens is None:
        draft_train_tokens = train_tokens
    sizes = {
        "target_params": target_params,
        "train_tokens": train_tokens,
        "draft_train_tokens": draft_train_tokens,
    }
    for name, value in sizes.items():
        if jnp.ndim(value) != 0:
            raise ValueError(
                f"optimal_draft_size takes scalars; {name} has shape {jnp.shape(value)} "
                "(use jax.vmap over several targets)"
            )
        number = concrete(value)
        if number is not None and not _POSITIVE[0](number):
            raise ValueError(
                f"{name} {float(number):g}: outside the domain of optimal_draft_size; "
                f"valid: {_POSITIVE[1]}"
            )
    return _optimal_draft_size(target_params, train_tokens, draft_train_tokens, law, coefficients)
