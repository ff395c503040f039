"""Lower real branch W_{-1} of the Lambert W function, in pure JAX.

W_{-1}(x) is the solution w <= -1 of w * exp(w) = x for x in [-1/e, 0). It appears in
the optimal speculative lookahead (see `specsim.theory.optimal_gamma`), whose argument
-alpha**(r - 1) / e underflows for large size ratios r; hence the log-space entry
`lambertw_m1_from_log`, which takes log(-x) and never forms x itself.

Both entries are jit/vmap/grad-safe in float32 and float64: a series or asymptotic
initial guess followed by a fixed number of Halley steps (no data-dependent loops), and
a `jax.custom_jvp` using the analytic derivative instead of differentiating the
iteration.

References:
    Corless, Gonnet, Hare, Jeffrey, Knuth (1996), "On the Lambert W function",
    Adv. Comput. Math. 5, 329-359 (derivative, §3; series about the branch point and
    asymptotic expansion for x -> 0, §4).
"""

import jax
import jax.numpy as jnp

from ._numerics import as_float

# Branch-point series W = sum_k c_k p**k with p = -sqrt(2 (1 + e x)) for W_{-1}
# (Corless et al. 1996, §4; the coefficients mu_0..mu_7 of that paper).
_BRANCH_SERIES = (
    -1.0,
    1.0,
    -1.0 / 3.0,
    11.0 / 72.0,
    -43.0 / 540.0,
    769.0 / 17280.0,
    -221.0 / 8505.0,
    680863.0 / 43545600.0,
)
# Distance u = -(log(-x) + 1) from the branch point below which the series is used as
# the initial guess; beyond it the asymptotic expansion is the better start.
_SERIES_MAX_DISTANCE = 2.0
# Below this distance the 8-term series alone is accurate to float64 precision
# (|p| < 0.015, first omitted term ~ p**8 / 100 < 1e-16), and Halley steps would divide by ~0.
_SERIES_ONLY_DISTANCE = 1e-4
_HALLEY_STEPS = 4


def _initial_guess(distance, log_neg_x):
    """Starting point for Halley's method from u = -(log(-x) + 1) >= 0 and log(-x)."""
    near_branch = distance < _SERIES_MAX_DISTANCE
    # Double-where: each branch only sees arguments where it is well defined.
    series_distance = jnp.where(near_branch, distance, 0.0)
    branch_p = -jnp.sqrt(-2.0 * jnp.expm1(-series_distance))  # 1 + e x = -expm1(-u)
    series = jnp.zeros_like(branch_p)
    for coefficient in reversed(_BRANCH_SERIES):
        series = series * branch_p + coefficient

    # de Bruijn asymptotic expansion for x -> 0^- (Corless et al. 1996, §4).
    log1 = jnp.where(near_branch, -3.0, log_neg_x)
    log2 = jnp.log(-log1)
    inv1 = 1.0 / log1
    asymptotic = (
        log1
        - log2
        + log2 * inv1
        + log2 * (log2 - 2.0) * 0.5 * inv1**2
        + log2 * (6.0 - 9.0 * log2 + 2.0 * log2**2) / 6.0 * inv1**3
    )
    return jnp.where(near_branch, series, asymptotic)


def _halley_step(w, log_neg_x):
    """One Halley step on g(w) = w + log(-w) - log(-x), the log form of w e^w = x.

    The log form never evaluates exp(w), so it cannot underflow for tiny |x|. With
    g' = (w + 1) / w and g'' = -1 / w**2, Halley's update is
    g w / (w + 1) / (1 + g / (2 (w + 1)**2)); the denominator is > 1/2 on the branch.
    """
    one_plus_w = w + 1.0
    safe_one_plus_w = jnp.where(one_plus_w < 0.0, one_plus_w, -1.0)
    residual = w + jnp.log(-w) - log_neg_x
    newton = residual * w / safe_one_plus_w
    step = newton / (1.0 + residual / (2.0 * safe_one_plus_w**2))
    # The lower branch satisfies W_{-1} <= -1; never step onto the principal branch.
    return jnp.minimum(w - step, -1.0)


def _lambertw_m1_from_log_impl(log_neg_x):
    distance = -(log_neg_x + 1.0)
    # Arguments a few ulps past -1/e (rounding of x = -1/e) are treated as the branch point.
    tolerance = 8.0 * jnp.finfo(jnp.result_type(log_neg_x)).eps
    valid = distance >= -tolerance
    distance = jnp.maximum(distance, 0.0)
    safe_log = jnp.where(valid, -(distance + 1.0), -2.0)
    safe_log = jnp.where(jnp.isfinite(safe_log), safe_log, -2.0)

    w = _initial_guess(distance, safe_log)
    series_only = distance < _SERIES_ONLY_DISTANCE
    for _ in range(_HALLEY_STEPS):
        w = jnp.where(series_only, w, _halley_step(w, safe_log))

    w = jnp.where(log_neg_x == -jnp.inf, -jnp.inf, w)
    return jnp.where(valid, w, jnp.nan)


@jax.custom_jvp
def _lambertw_m1_from_log(log_neg_x):
    return _lambertw_m1_from_log_impl(log_neg_x)


@_lambertw_m1_from_log.defjvp
def _lambertw_m1_from_log_jvp(primals, tangents):
    (log_neg_x,), (log_neg_x_dot,) = primals, tangents
    w = _lambertw_m1_from_log(log_neg_x)
    return w, w / (1.0 + w) * log_neg_x_dot


@jax.custom_jvp
def _lambertw_m1(x):
    in_domain = x <= 0.0
    log_neg_x = jnp.log(jnp.where(in_domain, -x, 1.0))
    return jnp.where(in_domain, _lambertw_m1_from_log_impl(log_neg_x), jnp.nan)


@_lambertw_m1.defjvp
def _lambertw_m1_jvp(primals, tangents):
    (x,), (x_dot,) = primals, tangents
    w = _lambertw_m1(x)
    return w, w / (x * (1.0 + w)) * x_dot


@jax.jit
def lambertw_m1_from_log(log_neg_x):
    """Lower branch W_{-1}(x) of Lambert W, given log(-x) instead of x.

    Use this entry when x = -exp(log_neg_x) would underflow, e.g. x = -alpha**(r-1)/e
    for a size ratio r in the thousands: log_neg_x = (r - 1) log(alpha) - 1 is an
    ordinary number even when x is below the smallest float.

    Args:
        log_neg_x: log(-x), dimensionless, any shape; valid for log_neg_x <= -1
            (x in [-1/e, 0)). -inf gives -inf (x = 0^-); values above -1 (beyond a
            few ulps of rounding) give NaN.

    Returns:
        W_{-1}(x) <= -1, same shape and dtype as `log_neg_x`.

    The derivative is dW/dlog(-x) = W / (1 + W) (chain rule on Corless et al. §3).
    It is finite everywhere except at the branch point log(-x) = -1 (W = -1), where it
    diverges like 1 / sqrt(2 (-1 - log(-x))); callers that can reach the branch point
    must guard it (see `specsim.theory.optimal_gamma`).

    Examples:
        >>> import jax.numpy as jnp
        >>> from specsim._lambertw import lambertw_m1_from_log
        >>> print(f"{float(lambertw_m1_from_log(jnp.float32(-5000.0))):.2f}")
        -5008.52

    References:
        Corless, Gonnet, Hare, Jeffrey, Knuth (1996), "On the Lambert W function",
        Adv. Comput. Math. 5, 329-359.
    """
    return _lambertw_m1_from_log(as_float(log_neg_x))


@jax.jit
def lambertw_m1(x):
    """Lower real branch W_{-1}(x) of the Lambert W function.

    Solves w * exp(w) = x for w <= -1, in float32 or float64, to within the problem's
    own conditioning (a few ulps away from the branch point; the relative condition
    number 1 / |1 + W| grows near -1/e). x below the smallest normal float is fine: the
    evaluation goes through log(-x).

    Args:
        x: dimensionless, any shape, in [-1/e, 0). x = 0 gives -inf; x outside the
            branch's domain gives NaN.

    Returns:
        W_{-1}(x) <= -1, same shape and dtype as `x`.

    The derivative is W'(x) = W / (x (1 + W)) (Corless et al. 1996, §3): finite for
    x in (-1/e, 0), diverging at the branch point x = -1/e (W = -1, like
    -1 / sqrt(2 e (x + 1/e))) and as x -> 0^-.

    Examples:
        >>> import jax.numpy as jnp
        >>> from specsim._lambertw import lambertw_m1
        >>> w = lambertw_m1(jnp.float32(-0.1))
        >>> print(f"{float(w):.5f} {float(w * jnp.exp(w)):.5f}")
        -3.57715 -0.10000

    References:
        Corless, Gonnet, Hare, Jeffrey, Knuth (1996), "On the Lambert W function",
        Adv. Comput. Math. 5, 329-359.
    """
    return _lambertw_m1(as_float(x))
