"""Acceptance models: how many drafted tokens the target accepts.

Three models, each a frozen pytree with float leaves, so it can be traced, stacked for
`vmap` and differentiated:

* `ConstantAcceptance`: i.i.d. per-token acceptance alpha (Leviathan et al. 2023).
* `PositionalAcceptance`: a per-position acceptance vector a_1..a_K, a_k being the
  probability that draft token k is accepted given tokens 1..k-1 were.
* `SDSLAcceptance`: alpha from the draft's and target's perplexities, predicted by a
  pre-training scaling law from parameter count and training tokens (SDSL, 2026); the
  only model in which the draft's size changes alpha.
* `TreeAcceptance`: per-depth, per-rank probabilities r[d, k] that the target's token at
  depth d + 1 is the draft's (k + 1)-th most likely candidate: what a token tree needs.
  In a chain only the top-ranked candidate is drafted, so it acts as the per-position
  vector r[:, 0].

Functions dispatch on the Python type of the model (static under `jit`).
"""

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from . import theory
from ._numerics import FLOAT32_MAX, as_float, concrete, concrete_values, host_float
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
    "TreeAcceptance",
    "acceptance_rate",
    "as_acceptance",
    "expected_tokens_per_step",
    "validate_acceptance",
]


# The largest float32 below 1: a legal alpha that float32 would round up to 1 is stored as it.
_BELOW_ONE_F32 = np.nextafter(np.float32(1), np.float32(0))


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
        """Validated constructor: raises ValueError unless alpha is in (0, 1).

        The range is checked on the value as given; a legal alpha so close to 1 that
        float32 would round it to 1.0 (0.99999999) is stored as the largest float32
        below 1 instead, its nearest value inside the domain.
        """
        if type(alpha) is float and not jax.config.jax_enable_x64:
            # The common case, a Python number, checked without NumPy's general path; the
            # value stored is the one below. (An alpha that float32 rounds to 0 falls
            # through, to be refused there.)
            if 0.0 < alpha < 1.0 and (stored := np.float32(alpha)) > 0:
                return cls(alpha=np.asarray(min(stored, _BELOW_ONE_F32)))
        value = concrete(alpha)
        if value is not None:
            bad = np.flatnonzero(~((value > 0.0) & (value < 1.0)))
            if bad.size:
                raise ValueError(f"alpha must be in (0, 1), got {_show(value.ravel()[bad[0]])}")
        stored = host_float(alpha)
        if value is not None and stored.dtype == np.float32:
            stored = np.asarray(np.minimum(stored, _BELOW_ONE_F32))
        return validate_acceptance(cls(alpha=stored))


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
        values = concrete(alphas)
        if values is not None:  # checked at full precision, before a float32 cast
            validate_acceptance(cls(alphas=values))
        return validate_acceptance(cls(alphas=host_float(alphas)))


@struct.dataclass
class SDSLAcceptance:
    """Acceptance from the SDSL law alpha = A ppl(N, D_draft) + B ppl(M, D_target) + C.

    The draft and target sizes are not stored: they come from the models being
    simulated (see `acceptance_rate`), so a draft's size can be optimised.

    Mixture-of-experts targets enter with their *total* parameter count
    (``models.parameter_count``, every expert). The law was fitted on dense models only
    (SDSL lists MoE as future work), so this is an extrapolation, chosen because an MoE's
    quality tracks its total size more closely than its active size: Mixtral 8x7B (46.7B
    total, 12.9B active) "outperforms or matches Llama 2 70B on all evaluated benchmarks"
    (Jiang et al. 2024, arXiv 2401.04088), i.e. even the total under-states it. The target
    enters only through ``B ppl_target`` with ``B = 0.013``: for Qwen3-30B-A3B the choice
    between total (30.5B) and active (3.3B) moves alpha by about 0.01.

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
        # Checked at full precision first: a count beyond float32 is refused, not cast to
        # infinity (with a RuntimeWarning) and blamed afterwards.
        for name, value in (
            ("draft_train_tokens", draft_train_tokens),
            ("target_train_tokens", target_train_tokens),
        ):
            count = concrete(value)
            if count is not None and np.any(np.isfinite(count) & (np.abs(count) >= FLOAT32_MAX)):
                raise ValueError(
                    f"{name} {_show(np.max(np.abs(count)))}: beyond float32; "
                    "valid: 0 < tokens < 3.4e38"
                )
        return validate_acceptance(
            cls(
                draft_train_tokens=host_float(draft_train_tokens),
                target_train_tokens=host_float(target_train_tokens),
                law=law,
                coefficients=coefficients,
            )
        )


@struct.dataclass
class TreeAcceptance:
    """Per-depth, per-rank acceptance probabilities: what a token tree's value depends on.

    ``rank_probs[d, k]`` is the probability that the target's token at depth ``d + 1`` is
    the draft's ``(k + 1)``-th most likely candidate, given that the path to its parent
    was accepted. These are disjoint events (the target's token has one rank), so each
    row sums to at most 1; ranks are ordered, so each row is non-increasing. A node at
    depth ``d`` reached by ranks ``k_1..k_d`` is accepted with probability
    ``prod_i rank_probs[i - 1, k_i]`` (Sequoia's positional acceptance, per depth). Depths
    beyond ``D`` and ranks beyond ``K`` are never accepted. In a chain only rank 0 is
    drafted, so the model acts as `PositionalAcceptance` of ``rank_probs[:, 0]``.

    Attributes:
        rank_probs: shape ``(D, K)``, entries in [0, 1], rows summing to <= 1 and
            non-increasing along ranks.

    Examples:
        >>> from specsim import TreeAcceptance
        >>> acc = TreeAcceptance.from_top1([0.8, 0.7], ranks=3)
        >>> [round(float(x), 3) for x in acc.rank_probs[0]]
        [0.8, 0.16, 0.032]

    References:
        Chen et al. (2024), "Sequoia", arXiv 2402.12374 (positional acceptance vector).
    """

    rank_probs: jax.Array

    @classmethod
    def create(cls, rank_probs):
        """Validated constructor (see the class docstring for the constraints)."""
        return validate_acceptance(cls(rank_probs=as_float(rank_probs)))

    @classmethod
    def from_top1(cls, alphas, ranks: int = 8, decay: float = 1.0):
        """Rank probabilities from top-1 acceptance rates and a rank decay.

        The chance that the target's token is the draft's rank ``k`` candidate, given it
        is none of ranks ``0..k-1``, is ``alpha_d * decay**k``: ``decay = 1`` makes the
        rank geometric (top-k coverage ``1 - (1 - alpha)**k``), smaller values make lower
        ranks less useful. Rows stay non-increasing and sum to at most 1.

        Args:
            alphas: top-1 acceptance per depth, shape ``(D,)`` (a number means one depth),
                in [0, 1].
            ranks: candidates per depth, ``K >= 1``.
            decay: in [0, 1].

        Raises:
            ValueError: alphas outside [0, 1], ``ranks < 1`` or ``decay`` outside [0, 1].
        """
        alphas = np.atleast_1d(np.asarray(alphas, dtype=np.float64))
        if alphas.ndim != 1 or alphas.size == 0 or not np.all((alphas >= 0) & (alphas <= 1)):
            raise ValueError(f"alphas must be a non-empty vector in [0, 1], got {alphas.tolist()}")
        if isinstance(ranks, bool) or int(ranks) != ranks or ranks < 1:
            raise ValueError(f"ranks must be a whole number >= 1, got {ranks!r}")
        if not 0.0 <= float(decay) <= 1.0:
            raise ValueError(f"decay must be in [0, 1], got {decay!r}")
        conditional = alphas[:, None] * float(decay) ** np.arange(int(ranks))[None, :]
        missed = np.cumprod(1.0 - conditional, axis=1)
        before = np.concatenate([np.ones((alphas.size, 1)), missed[:, :-1]], axis=1)
        return cls.create(np.asarray(conditional * before, np.float32))

    @property
    def top1(self):
        """Per-depth acceptance of the top-ranked candidate, ``rank_probs[..., 0]``."""
        return self.rank_probs[..., 0]


_ACCEPTANCE_TYPES = (ConstantAcceptance, PositionalAcceptance, SDSLAcceptance, TreeAcceptance)
# Row sums and rank order are checked to this slack (probabilities read from files or
# computed in float32 may exceed 1 or tie by a rounding error).
_PROBABILITY_SLACK = 1e-5


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
        acceptance: a `ConstantAcceptance`, `PositionalAcceptance`, `SDSLAcceptance` or
            `TreeAcceptance`.

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
        for alpha in concrete_values(acceptance.alpha):
            if not 0.0 < alpha < 1.0:
                raise ValueError(f"alpha must be in (0, 1), got {_show(alpha)}")
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
    elif isinstance(acceptance, TreeAcceptance):
        _check_rank_probs(acceptance.rank_probs)
    else:
        _check_positive_finite("draft_train_tokens", acceptance.draft_train_tokens)
        _check_positive_finite("target_train_tokens", acceptance.target_train_tokens)
        for name in ("param_coef", "data_coef", "param_exponent", "data_exponent"):
            _check_positive_finite(f"law.{name}", getattr(acceptance.law, name))
    return acceptance


def _check_rank_probs(rank_probs) -> None:
    probs = concrete(rank_probs)
    if probs is None:
        return
    if probs.ndim != 2 or probs.size == 0:
        raise ValueError(
            "rank_probs must be a non-empty (depth, rank) matrix of probabilities, got shape "
            f"{probs.shape}"
        )
    bad = np.argwhere(~((probs >= 0.0) & (probs <= 1.0)))
    if bad.size:
        d, k = bad[0]
        raise ValueError(
            f"rank_probs must be in [0, 1], got rank_probs[{d}, {k}] = {_show(probs[d, k])}"
        )
    sums = probs.sum(axis=1)
    over = np.flatnonzero(sums > 1.0 + _PROBABILITY_SLACK)
    if over.size:
        d = over[0]
        raise ValueError(
            f"rank_probs[{d}] sums to {sums[d]:.4g} > 1: the ranks of one depth are disjoint "
            "events (the target's token has one rank), so their probabilities sum to <= 1"
        )
    rising = np.argwhere(np.diff(probs, axis=1) > _PROBABILITY_SLACK)
    if rising.size:
        d, k = rising[0]
        raise ValueError(
            f"rank_probs[{d}] must be non-increasing along ranks (rank k is the draft's "
            f"k-th most likely candidate), got {_show(probs[d, k])} then "
            f"{_show(probs[d, k + 1])}; sort each row in decreasing order"
        )


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
    if type(value) is float:
        return ConstantAcceptance.create(value)
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
    "or a ConstantAcceptance, PositionalAcceptance, SDSLAcceptance or TreeAcceptance; "
    "got {value!r}"
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
    0, with undefined gradient, if any a_k = 0). Tree: the same of its top-1 rates.

    Args:
        acceptance: a `ConstantAcceptance`, `PositionalAcceptance`, `SDSLAcceptance` or
            `TreeAcceptance`.
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
    if isinstance(acceptance, TreeAcceptance):
        return jnp.exp(jnp.mean(jnp.log(acceptance.top1), axis=-1))
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
    nothing (the vector says nothing about them), so E saturates at gamma = K. Tree: the
    same with its top-1 rates (a chain drafts only the top-ranked candidate).

    Args:
        acceptance: a `ConstantAcceptance`, `PositionalAcceptance`, `SDSLAcceptance` or
            `TreeAcceptance`.
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
    if isinstance(acceptance, PositionalAcceptance | TreeAcceptance):
        alphas = (
            acceptance.alphas if isinstance(acceptance, PositionalAcceptance) else (acceptance.top1)
        )
        position = jnp.arange(alphas.shape[-1], dtype=alphas.dtype)  # k - 1
        weights = jnp.clip(gamma - position, 0.0, 1.0)
        return 1.0 + jnp.sum(weights * jnp.cumprod(alphas, axis=-1), axis=-1)
    alpha = acceptance_rate(acceptance, draft_params, target_params)
    return theory.expected_tokens(alpha, gamma)
