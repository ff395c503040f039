"""Pre-training scaling law and the SDSL perplexity-to-acceptance law.

The SDSL acceptance model predicts the per-token acceptance rate alpha of a draft/target
pair from the two models' perplexities, and the perplexities from parameter count and
training tokens with a Chinchilla-style loss L(N, D) = E + A_L / N**a + B_L / D**b
(nats/token). Together they make the draft's size an input that `jax.grad` can see.

References:
    Hoffmann et al. (2022), "Training Compute-Optimal Large Language Models",
    arXiv 2203.15556 (approach 3 fit, Eq. 10).
    Besiroglu, Erdil, Barnett, You (2024), "Chinchilla Scaling: A replication attempt",
    arXiv 2404.10102.
    Bozorgkhoo, Molybog (2026), "Speculative Decoding Scaling Laws (SDSL)",
    arXiv 2603.11053 (alpha = A x + B y + C, Fig. 1).
"""

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class ScalingLaw:
    """Chinchilla-form pre-training loss L(N, D) = E + A_L / N**a + B_L / D**b.

    All fields are traced float leaves, so a law can be fitted, differentiated or
    stacked for `vmap`.

    Attributes:
        irreducible_loss: E, nats/token.
        param_coef: A_L, nats/token times parameters**a.
        data_coef: B_L, nats/token times tokens**b.
        param_exponent: a, dimensionless.
        data_exponent: b, dimensionless.

    Examples:
        >>> from specsim._scaling import HOFFMANN_2022
        >>> print(HOFFMANN_2022.replace(irreducible_loss=1.8).irreducible_loss)
        1.8
    """

    irreducible_loss: float
    param_coef: float
    data_coef: float
    param_exponent: float
    data_exponent: float


# Hoffmann et al. 2022 (arXiv 2203.15556), approach 3, Eq. 10.
HOFFMANN_2022 = ScalingLaw(
    irreducible_loss=1.69,
    param_coef=406.4,
    data_coef=410.7,
    param_exponent=0.34,
    data_exponent=0.28,
)

# Besiroglu et al. 2024 (arXiv 2404.10102), refit of Hoffmann et al.'s approach 3 data.
BESIROGLU_2024 = ScalingLaw(
    irreducible_loss=1.82,
    param_coef=482.01,
    data_coef=2085.43,
    param_exponent=0.3478,
    data_exponent=0.3658,
)

# The SDSL paper does not say which constants it used (sdsl.md §2.5). With these, the
# reconstructed pipeline (`specsim.theory.optimal_draft_size`) gives N*(OPT-13B,
# D = 180e9) = 117.5M, the value implied by the paper's Appendix F (117M), and a pooled
# fit N* = 2.79e-3 M + 8.87e7 over its 13 targets (Table 9: 2.71e-3 M + 8.71e7); see
# sdsl.md §3.4 and §7. Hoffmann's constants give 112M and 2.57e-3 M + 8.18e7.
DEFAULT_SCALING_LAW = BESIROGLU_2024


@struct.dataclass
class SDSLCoefficients:
    """Affine acceptance law alpha = A * ppl_draft + B * ppl_target + C.

    Attributes:
        draft_ppl_coef: A, acceptance per unit of draft perplexity.
        target_ppl_coef: B, acceptance per unit of target perplexity.
        intercept: C, dimensionless.

    Examples:
        >>> from specsim._scaling import SDSL_2026
        >>> print(SDSL_2026.intercept)
        0.642
    """

    draft_ppl_coef: float
    target_ppl_coef: float
    intercept: float


# Bozorgkhoo & Molybog 2026 (arXiv 2603.11053), Fig. 1 least-squares plane over HellaSwag
# perplexities, R^2 = 0.602 (values as recovered in sdsl.md §2.4).
SDSL_2026 = SDSLCoefficients(draft_ppl_coef=-0.0067, target_ppl_coef=0.01297, intercept=0.642)

# Algebraic smooth-clamp width 1 / sharpness: the clamp differs from the identity by about
# (1 / sharpness)**2 / (4 d) at distance d from an edge, 3e-7 at d = 0.05.
_DEFAULT_CLAMP_SHARPNESS = 4000.0


@jax.jit
def pretraining_loss(n_params, train_tokens, law=DEFAULT_SCALING_LAW):
    """Pre-training cross-entropy L(N, D) = E + A_L / N**a + B_L / D**b.

    The power terms are evaluated as exp(log A_L - a log N), so N and D anywhere in the
    float32 range (1 to 3e38) give a finite loss without overflow.

    Args:
        n_params: N, parameter count, any shape, > 0.
        train_tokens: D, pre-training tokens, broadcastable with `n_params`, > 0.
        law: the constants of the law.

    Returns:
        Loss in nats/token, broadcast shape of the inputs.

    Examples:
        >>> from specsim._scaling import HOFFMANN_2022, pretraining_loss
        >>> print(f"{float(pretraining_loss(70e9, 1.4e12, HOFFMANN_2022)):.3f}")
        1.937

    References:
        Hoffmann et al. (2022), arXiv 2203.15556, Eq. 2 and Eq. 10.
    """
    log_n = jnp.log(n_params)
    log_d = jnp.log(train_tokens)
    param_term = jnp.exp(jnp.log(law.param_coef) - law.param_exponent * log_n)
    data_term = jnp.exp(jnp.log(law.data_coef) - law.data_exponent * log_d)
    return law.irreducible_loss + param_term + data_term


@jax.jit
def perplexity(n_params, train_tokens, law=DEFAULT_SCALING_LAW):
    """Perplexity exp(L(N, D)) predicted by the pre-training scaling law.

    Args:
        n_params: N, parameter count, any shape, > 0.
        train_tokens: D, pre-training tokens, broadcastable with `n_params`, > 0.
        law: the constants of the law.

    Returns:
        Perplexity (dimensionless, >= exp(E)), broadcast shape of the inputs.

    Examples:
        >>> from specsim._scaling import perplexity
        >>> print(f"{float(perplexity(125e6, 180e9)):.2f}")
        15.11

    References:
        Hoffmann et al. (2022), arXiv 2203.15556; Bozorgkhoo, Molybog (2026),
        arXiv 2603.11053 (perplexity = exp(loss)).
    """
    return jnp.exp(pretraining_loss(n_params, train_tokens, law))


def _smooth_relu_nonpositive(z, width):
    """s(z) = (z + sqrt(z**2 + width**2)) / 2 for z <= 0, as width**2 / (2 (sqrt(.) - z)).

    That form has no cancellation for z <= 0, where s decays algebraically
    (~ width**2 / (4 |z|), slope ~ width**2 / (4 z**2)) instead of exponentially like a
    softplus, so gradients stay representable in float32 far outside the corner.
    """
    return 0.5 * width**2 / (jnp.sqrt(z * z + width**2) - z)


@jax.jit
def clamp_unit(x, lo=1e-4, hi=1.0 - 1e-4, sharpness=_DEFAULT_CLAMP_SHARPNESS):
    """Smoothly clamp a probability into (lo, hi), a subset of (0, 1).

    lo + s(x - lo) - s(x - hi) with the algebraic smooth ReLU
    s(z) = (z + sqrt(z**2 + w**2)) / 2 and width w = 1 / sharpness. It is C-infinity and
    strictly increasing, equals x to within w**2 / (4 d) at distance d inside an edge
    (< 1e-6 for x in [0.05, 0.95] with the default sharpness). Far outside, its slope
    decays only algebraically, ~ w**2 (hi - lo) / (2 |x|**3) (3e-26 at |x| = 1e6 in
    float32, where a softplus clamp's would have underflowed to 0 at |x| ~ 1), so an
    optimiser pushed outside (0, 1) still feels a gradient back.

    Args:
        x: unclamped value, any shape.
        lo: lower limit, in (0, hi).
        hi: upper limit, in (lo, 1).
        sharpness: 1 / width of the rounded corners, in 1 / (unit of x).

    Returns:
        Clamped value in (lo, hi), same shape as `x`.

    Examples:
        >>> from specsim._scaling import clamp_unit
        >>> print([round(float(clamp_unit(v)), 6) for v in (-2.0, 0.3, 1.5)])
        [0.0001, 0.3, 0.9999]
    """
    width = 1.0 / sharpness
    # Three algebraically equal forms, by s(z) - s(-z) = z:
    #   lo + s(x - lo) - s(x - hi) = x + s(lo - x) - s(x - hi) = hi + s(lo - x) - s(hi - x).
    # Each region uses the one whose s-arguments are both <= 0, so the corrections are
    # small and nothing cancels in float32, even for |x| ~ 1e30.
    below, above = x < lo, x > hi
    base = jnp.where(below, lo, jnp.where(above, hi, x))
    lower_arg = jnp.where(below, x - lo, lo - x)
    upper_arg = jnp.where(above, hi - x, x - hi)
    return (
        base
        + _smooth_relu_nonpositive(lower_arg, width)
        - _smooth_relu_nonpositive(upper_arg, width)
    )


# Losses are capped smoothly at this many nats before the affine law: a perplexity of
# 1.1e13, beyond uniform guessing over any vocabulary (ln 256k = 12.5 nats). The law
# reaches it only for absurd sizes (a 100-parameter draft, 1e3 training tokens), where
# exp(L) overflowed float32 and A * inf + B * inf made alpha NaN; below 20 nats the cap
# moves a loss by under 5e-5 of a nat.
_MAX_LOSS_NATS = 30.0


def _bounded_perplexity(n_params, train_tokens, law):
    """``perplexity`` with the loss smoothly capped at ``_MAX_LOSS_NATS`` (finite, and
    differentiable with finite gradients, for every positive N and D in float32)."""
    loss = pretraining_loss(n_params, train_tokens, law)
    return jnp.exp(_MAX_LOSS_NATS - jax.nn.softplus(_MAX_LOSS_NATS - loss))


@jax.jit
def sdsl_alpha(
    draft_params,
    draft_train_tokens,
    target_params,
    target_train_tokens,
    law=DEFAULT_SCALING_LAW,
    coefficients=SDSL_2026,
):
    """Per-token acceptance rate predicted by the SDSL perplexity law.

    alpha = clamp_unit(A * ppl(N, D_draft) + B * ppl(M, D_target) + C), with perplexities
    from the pre-training scaling law (losses smoothly capped at 30 nats, so absurdly
    small sizes give a finite alpha). The affine law itself leaves (0, 1) for very
    small drafts (ppl_draft > ~100); the smooth clamp keeps alpha a probability and its
    gradient nonzero there.

    Args:
        draft_params: N, draft parameter count, any shape, > 0.
        draft_train_tokens: draft pre-training tokens, broadcastable, > 0.
        target_params: M, target parameter count, broadcastable, > 0.
        target_train_tokens: target pre-training tokens, broadcastable, > 0.
        law: pre-training scaling law giving both perplexities.
        coefficients: A, B, C of the acceptance law.

    Returns:
        alpha in (0, 1), broadcast shape of the inputs.

    Examples:
        >>> from specsim._scaling import sdsl_alpha
        >>> print(f"{float(sdsl_alpha(125e6, 180e9, 12.85e9, 180e9)):.4f}")
        0.6495

    References:
        Bozorgkhoo, Molybog (2026), arXiv 2603.11053, Fig. 1 (affine fit in x = draft
        and y = target perplexity).
    """
    draft_ppl = _bounded_perplexity(draft_params, draft_train_tokens, law)
    target_ppl = _bounded_perplexity(target_params, target_train_tokens, law)
    raw_alpha = (
        coefficients.draft_ppl_coef * draft_ppl
        + coefficients.target_ppl_coef * target_ppl
        + coefficients.intercept
    )
    return clamp_unit(raw_alpha)
