"""Acceptance models: how many drafted tokens the target accepts.

Three models, each a frozen pytree with float leaves, so it can be traced, stacked for
`vmap` and differentiated:

* `ConstantAcceptance`: i.i.d. per-token acceptance alpha (Leviathan et al. 2023).
* `PositionalAcceptance`: a per-position acceptance vector a_1..a_K, a_k being the
  probability that draft token k is accepted given tokens 1..k-1 were.
* `SDSLAcceptance`: alpha from the draft's and target's perplexities, predicted by a
  pre-training scaling law from parameter count and training tokens (SDSL, 2026); the
  only model in which the draft's size changes alpha.

Functions dispatch on the Python type of the model (static under `jit`).
"""

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from . import theory
from ._numerics import as_float, concrete
from ._scaling import (
    DEFAULT_SCALING_LAW,
    SDSL_2026,
    ScalingLaw,
    SDSLCoefficients,
    sdsl_alpha,
)

__all__ = [
    "ConstantAcceptance",
    "PositionalAcceptance",
    "SDSLAcceptance",
    "acceptance_rate",
    "as_acceptance",
    "expected_tokens_per_step",
    "validate_acceptance",
]


@struct.dataclass
class ConstantAcceptance:
    """Every drafted token is accepted independently with probability alpha.

    Attributes:
        alpha: per-token acceptance probability, in (0, 1).

    Examples:
        >>> from specsim import ConstantAcceptance
        >>> print(f"{float(ConstantAcceptance.create(0.8).alpha):.2f}")
        0.80
    """

    alpha: float

    @classmethod
    def create(cls, alpha):
        """Validated constructor: raises ValueError unless alpha is in (0, 1)."""
        return validate_acceptance(cls(alpha=as_float(alpha)))


@struct.dataclass
class PositionalAcceptance:
    """Acceptance probability that depends on the position within the draft.

    Attributes:
        alphas: shape (K,), a_k = P(draft token k accepted | tokens 1..k-1 accepted),
            each in [0, 1]. Positions beyond K are never accepted.

    Examples:
        >>> from specsim import PositionalAcceptance
        >>> print(PositionalAcceptance.create([0.9, 0.8, 0.7]).alphas.shape)
        (3,)
    """

    alphas: jax.Array

    @classmethod
    def create(cls, alphas):
        """Validated constructor: a non-empty 1-D vector with entries in [0, 1]."""
        return validate_acceptance(cls(alphas=as_float(alphas)))


@struct.dataclass
class SDSLAcceptance:
    """Acceptance from the SDSL law alpha = A ppl(N, D_draft) + B ppl(M, D_target) + C.

    The draft and target sizes are not stored: they come from the models being
    simulated (see `acceptance_rate`), so a draft's size can be optimised.

    Attributes:
        draft_train_tokens: draft pre-training tokens, > 0.
        target_train_tokens: target pre-training tokens, > 0.
        law: pre-training scaling law giving perplexities.
        coefficients: A, B, C of the affine acceptance law.

    Examples:
        >>> from specsim import SDSLAcceptance
        >>> acc = SDSLAcceptance.create(draft_train_tokens=180e9, target_train_tokens=180e9)
        >>> print(float(acc.law.irreducible_loss))
        1.82

    References:
        Bozorgkhoo, Molybog (2026), arXiv 2603.11053.
    """

    draft_train_tokens: float
    target_train_tokens: float
    law: ScalingLaw = DEFAULT_SCALING_LAW
    coefficients: SDSLCoefficients = SDSL_2026

    @classmethod
    def create(
        cls,
        draft_train_tokens,
        target_train_tokens,
        law=DEFAULT_SCALING_LAW,
        coefficients=SDSL_2026,
    ):
        """Validated constructor: token counts must be positive and finite."""
        return validate_acceptance(
            cls(
                draft_train_tokens=as_float(draft_train_tokens),
                target_train_tokens=as_float(target_train_tokens),
                law=law,
                coefficients=coefficients,
            )
        )


_ACCEPTANCE_TYPES = (ConstantAcceptance, PositionalAcceptance, SDSLAcceptance)


def _show(value):
    """A float the way a user typed it (float32 leaves print as 1.2, not 1.2000000477)."""
    return f"{float(value):.7g}"


def _check_type(acceptance):
    if not isinstance(acceptance, _ACCEPTANCE_TYPES):
        names = ", ".join(t.__name__ for t in _ACCEPTANCE_TYPES)
        raise TypeError(f"acceptance must be one of {names}; got {type(acceptance).__name__}")


def _check_positive_finite(name, value):
    array = concrete(value)
    if array is not None:
        bad = np.flatnonzero(~(np.isfinite(array) & (array > 0.0)))
        if bad.size:
            raise ValueError(
                f"{name} must be positive and finite, got {_show(array.ravel()[bad[0]])}"
            )


def validate_acceptance(acceptance):
    """Check the concrete leaves of an acceptance model; return it unchanged.

    Traced leaves (inside `jit`, `vmap` or `grad`) cannot be inspected and are skipped,
    so this is meant for the public boundary, before tracing.

    Args:
        acceptance: a `ConstantAcceptance`, `PositionalAcceptance` or `SDSLAcceptance`.

    Returns:
        `acceptance`, unchanged.

    Raises:
        ValueError: alpha outside (0, 1) or NaN; a per-position vector that is not 1-D,
            is empty, or has entries outside [0, 1]; non-positive or non-finite token
            counts or scaling-law constants.
        TypeError: an object of another type.

    Examples:
        >>> from specsim import ConstantAcceptance
        >>> from specsim._acceptance import validate_acceptance
        >>> validate_acceptance(ConstantAcceptance(alpha=1.2))
        Traceback (most recent call last):
        ...
        ValueError: alpha must be in (0, 1), got 1.2
    """
    _check_type(acceptance)
    if isinstance(acceptance, ConstantAcceptance):
        alpha = concrete(acceptance.alpha)
        if alpha is not None:
            bad = np.flatnonzero(~((alpha > 0.0) & (alpha < 1.0)))
            if bad.size:
                raise ValueError(f"alpha must be in (0, 1), got {_show(alpha.ravel()[bad[0]])}")
    elif isinstance(acceptance, PositionalAcceptance):
        alphas = concrete(acceptance.alphas)
        if alphas is not None:
            if alphas.ndim != 1 or alphas.size == 0:
                raise ValueError(
                    "alphas must be a non-empty 1-D vector of per-position acceptance "
                    f"probabilities in [0, 1], got shape {alphas.shape}"
                )
            bad = np.flatnonzero(~((alphas >= 0.0) & (alphas <= 1.0)))
            if bad.size:
                raise ValueError(
                    f"alphas must be in [0, 1], got alphas[{bad[0]}] = {_show(alphas[bad[0]])}"
                )
    else:
        _check_positive_finite("draft_train_tokens", acceptance.draft_train_tokens)
        _check_positive_finite("target_train_tokens", acceptance.target_train_tokens)
        for name in ("param_coef", "data_coef", "param_exponent", "data_exponent"):
            _check_positive_finite(f"law.{name}", getattr(acceptance.law, name))
    return acceptance


def as_acceptance(value):
    """An acceptance model from a model, a number or a sequence of per-position rates.

    A number (Python or a 0-d array) is a constant rate alpha in (0, 1), a 1-D sequence
    or array the per-position rates a_1..a_K; an acceptance model is returned unchanged.

    Raises:
        ValueError: a number outside (0, 1), or anything else.

    Examples:
        >>> from specsim._acceptance import as_acceptance
        >>> type(as_acceptance(0.7)).__name__, type(as_acceptance([0.9, 0.8])).__name__
        ('ConstantAcceptance', 'PositionalAcceptance')
    """
    if isinstance(value, _ACCEPTANCE_TYPES):
        return value
    if isinstance(value, bool) or value is None or isinstance(value, str):
        raise ValueError(_AS_ACCEPTANCE_HELP.format(value=value))
    try:
        ndim = jnp.ndim(value) if isinstance(value, jax.Array) else np.asarray(value, float).ndim
    except (TypeError, ValueError):
        raise ValueError(_AS_ACCEPTANCE_HELP.format(value=value)) from None
    if ndim == 0:
        return ConstantAcceptance.create(value)
    if ndim == 1:
        return PositionalAcceptance.create(value)
    raise ValueError(_AS_ACCEPTANCE_HELP.format(value=value))


_AS_ACCEPTANCE_HELP = (
    "acceptance must be a number in (0, 1), a 1-D sequence of per-position rates in [0, 1], "
    "or a ConstantAcceptance, PositionalAcceptance or SDSLAcceptance; got {value!r}"
)


def _require_sizes(draft_params, target_params):
    if draft_params is None or target_params is None:
        raise ValueError("SDSLAcceptance needs draft_params and target_params (parameter counts)")


@jax.jit
def acceptance_rate(acceptance, draft_params=None, target_params=None):
    """Per-token acceptance rate alpha of a model, for reporting.

    Constant: its alpha. SDSL: `sdsl_alpha` of the given sizes and the stored token
    counts. Positional: the geometric mean of a_1..a_K, the constant alpha whose
    K-token acceptance probability prod a_k is the same; a display number only (it is
    0, with undefined gradient, if any a_k = 0).

    Args:
        acceptance: a `ConstantAcceptance`, `PositionalAcceptance` or `SDSLAcceptance`.
        draft_params: N, draft parameter count (needed by SDSL only).
        target_params: M, target parameter count (needed by SDSL only).

    Returns:
        alpha in [0, 1] (scalar for a single model).

    Examples:
        >>> from specsim import PositionalAcceptance, acceptance_rate
        >>> print(f"{float(acceptance_rate(PositionalAcceptance.create([0.9, 0.4]))):.2f}")
        0.60
    """
    _check_type(acceptance)
    if isinstance(acceptance, ConstantAcceptance):
        return as_float(acceptance.alpha)
    if isinstance(acceptance, PositionalAcceptance):
        return jnp.exp(jnp.mean(jnp.log(acceptance.alphas), axis=-1))
    _require_sizes(draft_params, target_params)
    return sdsl_alpha(
        draft_params,
        acceptance.draft_train_tokens,
        target_params,
        acceptance.target_train_tokens,
        acceptance.law,
        acceptance.coefficients,
    )


@jax.jit
def expected_tokens_per_step(acceptance, gamma, draft_params=None, target_params=None):
    """Expected tokens emitted per speculative iteration (accepted drafts + 1).

    Constant and SDSL: `specsim.theory.expected_tokens(alpha, gamma)`. Positional:
    1 + sum_k w_k prod_{i<=k} a_i with w_k = clip(gamma - (k - 1), 0, 1), i.e. the exact
    1 + sum_{k<=gamma} prod_{i<=k} a_i at integer gamma, interpolated linearly between
    integers so gamma stays a differentiable real. Draft positions beyond K contribute
    nothing (the vector says nothing about them), so E saturates at gamma = K.

    Args:
        acceptance: a `ConstantAcceptance`, `PositionalAcceptance` or `SDSLAcceptance`.
        gamma: lookahead, real >= 0 (scalar for the positional model; vmap for several).
        draft_params: N, draft parameter count (needed by SDSL only).
        target_params: M, target parameter count (needed by SDSL only).

    Returns:
        Expected tokens per iteration, >= 1.

    Examples:
        >>> from specsim import PositionalAcceptance, expected_tokens_per_step
        >>> acc = PositionalAcceptance.create([0.9, 0.5])
        >>> print(f"{float(expected_tokens_per_step(acc, 2.0)):.2f}")
        2.35

    References:
        Leviathan et al. (2023), arXiv 2211.17192, Eq. 1.
    """
    _check_type(acceptance)
    gamma = as_float(gamma)
    if isinstance(acceptance, PositionalAcceptance):
        alphas = acceptance.alphas
        position = jnp.arange(alphas.shape[-1], dtype=alphas.dtype)  # k - 1
        weights = jnp.clip(gamma - position, 0.0, 1.0)
        return 1.0 + jnp.sum(weights * jnp.cumprod(alphas, axis=-1), axis=-1)
    alpha = acceptance_rate(acceptance, draft_params, target_params)
    return theory.expected_tokens(alpha, gamma)
