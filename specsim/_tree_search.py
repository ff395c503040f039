"""Which token tree: gradient search over level widths, with an exact certificate.

The question: for this deployment and speculator, which draft tree (how many nodes at
each depth, how deep) gives the most tokens per second? A tree is searched as its level
widths ``w_1..w_D`` (`DynamicTree`: the most likely nodes at each depth; for fixed
widths no tree of another shape does better, see `specsim._tree`), in three steps, all
inside one ``jax.jit``:

1. **Search.** Unconstrained ``z`` maps onto feasible widths depth by depth:
   ``w_d = sigmoid(z_d) * min(max_width, K w_{d-1}, max_nodes - sum_{i<d} w_i)`` with
   ``w_0 = 1`` and ``K`` the acceptance's ranks (a node has at most ``K`` useful
   children), so every ``z`` is a tree within the node budget and any optax optimizer
   works unmodified. The objective is ``log tokens/s`` on the smooth roofline minus a
   smooth memory penalty; ``restarts`` starts are ``vmap``-ed, steps run in ``lax.scan``.
2. **Rounding.** Each restart's real widths are rounded (nearest, floor, ceil, and the
   nearest moved by one node at each depth), made buildable (no nodes below an empty
   depth, at most ``K`` children per parent), scored on the exact roofline, and the best
   is improved by a few rounds of +-1 node moves.
3. The winner is returned as a `DynamicTree` of whole widths and as the buildable
   `TokenTree`, with its exact `ThroughputReport`.

`exact_tree_search` is the certificate: it scores *every* width profile within the
budget (each by its greedy tree, which is optimal for its profile, so the best profile
is the best tree of any shape), exhaustively, ``vmap``-ed in chunks; feasible for small
budgets (about 2^n profiles for n nodes). `random_tree_search` samples profiles at
random with a given number of evaluations: the baseline where the certificate is out
of reach.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from ._acceptance import TreeAcceptance
from ._cost import target_fit
from ._deployment import Deployment
from ._fast_jit import _backend_jit
from ._throughput import ThroughputReport, _throughput, check_speculation
from ._tree import DynamicTree, TokenTree

__all__ = [
    "ChainSearchResult",
    "TreeSearchResult",
    "count_tree_profiles",
    "exact_tree_search",
    "optimize_chain",
    "optimize_tree",
    "random_tree_search",
    "tree_profiles",
]

DEFAULT_STEPS = 150
DEFAULT_RESTARTS = 8
DEFAULT_LEARNING_RATE = 0.1
DEFAULT_SMOOTH = 16.0
_LOCAL_SEARCH_ROUNDS = 4
_INIT_SPREAD = 2.5
_MEMORY_PENALTY_WEIGHT = 20.0
_MEMORY_PENALTY_SHARPNESS = 50.0
_CHUNK = 4096


@struct.dataclass
class TreeSearchResult:
    """The best tree found, what it delivers, and how much searching it took.

    Attributes:
        tree: the answer as whole level widths (a `DynamicTree`).
        report: its exact-roofline `ThroughputReport`.
        continuous: the best real-valued widths before rounding (gradient search only).
        objective_history: best smooth ``log tokens/s`` after each step (gradient only).
        evaluations: throughput evaluations used (a value-and-gradient counts as one).
        method: ``"gradient"``, ``"exact"`` or ``"random"``.
    """

    tree: DynamicTree
    report: ThroughputReport
    continuous: Any = None
    objective_history: Any = None
    evaluations: int = struct.field(pytree_node=False, default=0)
    method: str = struct.field(pytree_node=False, default="gradient")

    @property
    def tokens_per_s(self) -> float:
        """Predicted tokens/s of the answer."""
        return float(self.report.tokens_per_s)

    @property
    def widths(self) -> list[int]:
        """Nodes per depth, trailing empty depths dropped."""
        widths = [round(float(w)) for w in np.asarray(self.tree.widths)]
        while widths and widths[-1] == 0:
            widths.pop()
        return widths

    def token_tree(self, acceptance: TreeAcceptance) -> TokenTree | None:
        """The buildable tree (``None`` if the best is not to speculate)."""
        if not self.widths:
            return None
        return DynamicTree.create(self.widths).to_token_tree(acceptance)

    def to_dict(self, acceptance: TreeAcceptance | None = None) -> dict[str, Any]:
        """Plain Python values (with the tree's paths when ``acceptance`` is given)."""
        out = {
            "method": self.method,
            "widths": self.widths,
            "depth": len(self.widths),
            "nodes": int(sum(self.widths)),
            "tokens_per_s": self.tokens_per_s,
            "speedup": float(self.report.speedup),
            "expected_tokens_per_step": float(self.report.expected_tokens_per_step),
            "evaluations": self.evaluations,
        }
        if acceptance is not None:
            tree = self.token_tree(acceptance)
            out["paths"] = [] if tree is None else [list(p) for p in tree.paths()]
        return out


# --------------------------------------------------------------------------- pieces


def _decode(z, max_nodes, max_width: int, ranks: int):
    """Unconstrained ``z`` -> real widths inside the budget (see the module docstring)."""
    widths, previous, used = [], jnp.asarray(1.0, jnp.float32), jnp.asarray(0.0, jnp.float32)
    for d in range(z.shape[-1]):
        cap = jnp.minimum(jnp.minimum(float(max_width), ranks * previous), max_nodes - used)
        width = jax.nn.sigmoid(z[d]) * jnp.maximum(cap, 0.0)
        widths.append(width)
        used, previous = used + width, width
    return jnp.stack(widths)


def _buildable(widths, max_nodes, max_width: int, ranks: int):
    """Whole widths made buildable, and whether they fit the node budget."""
    out, previous = [], jnp.asarray(1.0, jnp.float32)
    for d in range(widths.shape[-1]):
        width = jnp.clip(widths[d], 0.0, jnp.minimum(float(max_width), ranks * previous))
        out.append(width)
        previous = width
    out = jnp.stack(out)
    return out, jnp.sum(out) <= max_nodes + 1e-3


def _evaluate(deployment, speculator, widths, max_width: int, smooth):
    return _throughput(deployment, speculator, DynamicTree(widths, max_width), smooth)


def _score(deployment, speculator, widths, max_nodes, max_width: int, ranks: int):
    """Exact tokens/s of whole widths (``-inf`` out of budget or out of memory)."""
    widths, within = _buildable(widths, max_nodes, max_width, ranks)
    report = _evaluate(deployment, speculator, widths, max_width, None)
    ok = within & report.fits
    return jnp.where(ok, report.tokens_per_s, -jnp.inf), widths


def _objective(z, deployment, speculator, max_nodes, max_width, ranks, smooth):
    widths = _decode(z, max_nodes, max_width, ranks)
    report = _evaluate(deployment, speculator, widths, max_width, smooth)
    excess = report.memory_per_chip_bytes / deployment.hardware.hbm_capacity_bytes - 1.0
    penalty = (
        _MEMORY_PENALTY_WEIGHT
        * jax.nn.softplus(_MEMORY_PENALTY_SHARPNESS * excess)
        / _MEMORY_PENALTY_SHARPNESS
    )
    return jnp.log(report.tokens_per_s) - penalty


def _roundings(widths):
    """Whole-width candidates around real widths: nearest, floor, ceil, nearest +- 1."""
    depth = widths.shape[-1]
    nearest = jnp.round(widths)[None, :]
    eye = jnp.eye(depth, dtype=widths.dtype)
    return jnp.concatenate(
        [
            nearest,
            jnp.floor(widths)[None, :],
            jnp.ceil(widths)[None, :],
            nearest + eye,
            jnp.maximum(nearest - eye, 0.0),
        ]
    )


@functools.partial(
    _backend_jit,
    static_argnames=("optimizer", "steps", "restarts", "smooth", "max_width", "depth"),
)
def _gradient_search(
    deployment, speculator, key, max_nodes, optimizer, steps, restarts, smooth, max_width, depth
):
    ranks = deployment.acceptance.rank_probs.shape[-1]
    objective = functools.partial(
        _objective,
        deployment=deployment,
        speculator=speculator,
        max_nodes=max_nodes,
        max_width=max_width,
        ranks=ranks,
        smooth=smooth,
    )
    z0 = jax.random.uniform(key, (restarts, depth), minval=-_INIT_SPREAD, maxval=_INIT_SPREAD)
    value_and_grad = jax.vmap(jax.value_and_grad(lambda z: -objective(z)))
    state = jax.vmap(optimizer.init)(z0)

    def step(carry, _):
        z, state = carry
        loss, grad = value_and_grad(z)
        updates, state = jax.vmap(optimizer.update)(grad, state, z)
        return (optax.apply_updates(z, updates), state), -jnp.min(loss)

    (z, _), history = jax.lax.scan(step, (z0, state), None, length=steps)
    final = jax.vmap(objective)(z)
    continuous = jax.vmap(lambda zi: _decode(zi, max_nodes, max_width, ranks))(z)
    best_continuous = continuous[jnp.argmax(final)]

    score = jax.vmap(lambda w: _score(deployment, speculator, w, max_nodes, max_width, ranks))
    # Plain decoding (the empty tree) is always a candidate: when no rounding fits in
    # memory, the answer is not to speculate rather than a tree that does not fit.
    candidates = jnp.concatenate(
        [
            jnp.zeros((1, depth), continuous.dtype),
            jax.vmap(_roundings)(continuous).reshape(-1, depth),
        ]
    )
    scores, built = score(candidates)
    best = jnp.argmax(scores)
    widths, value = built[best], scores[best]

    def improve(carry, _):
        widths, value = carry
        eye = jnp.eye(depth, dtype=widths.dtype)
        moves = jnp.concatenate([widths[None, :] + eye, jnp.maximum(widths[None, :] - eye, 0.0)])
        s, b = score(moves)
        i = jnp.argmax(s)
        better = s[i] > value
        return (jnp.where(better, b[i], widths), jnp.where(better, s[i], value)), None

    (widths, _), _ = jax.lax.scan(improve, (widths, value), None, length=_LOCAL_SEARCH_ROUNDS)
    report = _evaluate(deployment, speculator, widths, max_width, None)
    return widths, report, best_continuous, history


@functools.partial(_backend_jit, static_argnames=("max_width",))
def _score_chunk(deployment, speculator, profiles, max_nodes, max_width):
    ranks = deployment.acceptance.rank_probs.shape[-1]
    scores, _ = jax.vmap(lambda w: _score(deployment, speculator, w, max_nodes, max_width, ranks))(
        profiles
    )
    return scores


@functools.partial(_backend_jit, static_argnames=("max_width",))
def _report(deployment, speculator, widths, max_width):
    return _evaluate(deployment, speculator, widths, max_width, None)


# --------------------------------------------------------------------------- checks


def _check(deployment, speculator, max_nodes, max_depth, max_width):
    if not isinstance(deployment, Deployment):
        raise ValueError(f"deployment must be a Deployment, got {type(deployment).__name__}")
    deployment.validate()
    if not isinstance(deployment.acceptance, TreeAcceptance):
        raise ValueError(
            "tree search needs TreeAcceptance (per-depth, per-rank acceptance), got "
            f"{type(deployment.acceptance).__name__}"
        )
    for name, value in (("max_nodes", max_nodes), ("max_depth", max_depth)):
        if isinstance(value, bool) or not float(value).is_integer() or value < 1:
            raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
    max_width = int(max_nodes if max_width is None else max_width)
    if max_width < 1:
        raise ValueError(f"max_width must be a whole number >= 1, got {max_width!r}")
    check_speculation(deployment, speculator, DynamicTree.create([1.0] * int(max_depth)))
    check_target_fits(deployment)
    return int(max_nodes), int(max_depth), max_width


def check_target_fits(deployment: Deployment) -> None:
    """``ValueError`` unless the target's weights and KV cache fit on its chips, speculation
    aside: where they do not, no tree or lookahead makes the deployment servable (as
    `specsim.optimize_draft` and `specsim.speculation_schedule` refuse it)."""
    d, workload = deployment, deployment.workload
    _, problem = target_fit(
        d.target,
        d.hardware.replace(hbm_capacity_bytes=np.min(d.hardware.hbm_capacity_bytes)),
        np.max(workload.batch),
        np.max(workload.final_context),
        np.min(d.tp),
    )
    if problem is not None:
        raise ValueError(problem)


# --------------------------------------------------------------------------- front doors


def optimize_tree(
    deployment: Deployment,
    speculator,
    *,
    max_nodes: int = 64,
    max_depth: int = 8,
    max_width: int | None = None,
    optimizer: optax.GradientTransformation | None = None,
    steps: int = DEFAULT_STEPS,
    restarts: int = DEFAULT_RESTARTS,
    seed: int = 0,
    smooth: float = DEFAULT_SMOOTH,
) -> TreeSearchResult:
    """The throughput-optimal token tree within a node and depth budget, by gradient.

    Args:
        deployment: a `Deployment` whose acceptance is a `TreeAcceptance`.
        speculator: a tree-drafting speculator (draft model, EAGLE, Medusa, MTP, self).
        max_nodes: the most draft tokens verified per iteration (e.g. SGLang's
            ``speculative_num_draft_tokens - 1``).
        max_depth: the deepest draft position (the lookahead).
        max_width: the most nodes at one depth (default ``max_nodes``).
        optimizer: any optax transformation (default ``optax.adam(0.1)``).
        steps, restarts, seed: gradient steps, vmapped random starts, their PRNG seed.
        smooth: roofline sharpness during the search.

    Returns:
        `TreeSearchResult` (``method="gradient"``).

    Raises:
        ValueError: invalid deployment or budgets, acceptance without ranks, a
            speculator that does not draft trees this deep, or a target whose weights and
            KV cache do not fit on its chips.

    Examples:
        >>> import specsim
        >>> from specsim import optimize_tree
        >>> acc = specsim.TreeAcceptance.from_top1([0.8, 0.75, 0.7, 0.65], ranks=4, decay=0.55)
        >>> d = specsim.Deployment.create("llama-3-8b", "h100", acceptance=acc)
        >>> r = optimize_tree(d, specsim.speculators.Eagle.create(), max_nodes=12, max_depth=4,
        ...                   steps=40, restarts=2)
        >>> sum(r.widths) <= 12 and len(r.widths) <= 4 and bool(r.report.speedup > 1.5)
        True
    """
    max_nodes, max_depth, max_width = _check(
        deployment, speculator, max_nodes, max_depth, max_width
    )
    if steps < 1 or restarts < 1:
        raise ValueError(f"steps and restarts must be >= 1, got {steps} and {restarts}")
    optimizer = optimizer or _DEFAULT_OPTIMIZER
    widths, report, continuous, history = _gradient_search(
        deployment,
        speculator,
        jax.random.PRNGKey(seed),
        jnp.float32(max_nodes),
        optimizer,
        steps,
        restarts,
        float(smooth),
        max_width,
        max_depth,
    )
    candidates = 1 + restarts * (2 * max_depth + 3)
    evaluations = steps * restarts + restarts + candidates + _LOCAL_SEARCH_ROUNDS * 2 * max_depth
    return TreeSearchResult(
        tree=DynamicTree(np.asarray(widths), max_width),
        report=jax.device_get(report),
        continuous=DynamicTree(np.asarray(continuous), max_width),
        objective_history=np.asarray(history),
        evaluations=evaluations,
        method="gradient",
    )


_DEFAULT_OPTIMIZER = optax.adam(DEFAULT_LEARNING_RATE)


def tree_profiles(max_nodes: int, max_depth: int, max_width: int, ranks: int) -> np.ndarray:
    """Every buildable width profile within the budgets, shape ``(P, max_depth)``.

    Row 0 is the empty tree (plain decoding); a profile has ``1 <= w_d <= min(max_width,
    ranks * w_{d-1})`` on its depths and zeros after them, and at most ``max_nodes``
    nodes in all.
    """
    rows: list[tuple[int, ...]] = [()]

    def extend(prefix: tuple[int, ...], previous: int, left: int) -> None:
        if len(prefix) == max_depth:
            return
        for width in range(1, min(max_width, ranks * previous, left) + 1):
            row = (*prefix, width)
            rows.append(row)
            extend(row, width, left - width)

    extend((), 1, max_nodes)
    table = np.zeros((len(rows), max_depth), np.float32)
    for i, row in enumerate(rows):
        table[i, : len(row)] = row
    return table


def _best_of(deployment, speculator, profiles: np.ndarray, max_nodes, max_width):
    best_score, best_row = -np.inf, 0
    for start in range(0, len(profiles), _CHUNK):
        chunk = profiles[start : start + _CHUNK]
        padded = np.zeros((_CHUNK, profiles.shape[1]), np.float32)
        padded[: len(chunk)] = chunk
        scores = np.asarray(
            _score_chunk(
                deployment, speculator, jnp.asarray(padded), jnp.float32(max_nodes), max_width
            )
        )[: len(chunk)]
        i = int(np.argmax(scores))
        if scores[i] > best_score:
            best_score, best_row = float(scores[i]), start + i
    return profiles[best_row]


def exact_tree_search(
    deployment: Deployment,
    speculator,
    *,
    max_nodes: int,
    max_depth: int,
    max_width: int | None = None,
    max_profiles: int = 2_000_000,
) -> TreeSearchResult:
    """The best tree within the budgets, exactly: every width profile scored.

    Every tree of at most ``max_nodes`` nodes and depth ``max_depth`` is matched or beaten
    by the greedy tree of its level widths at the same cost, so scoring every profile
    (`tree_profiles`) on the exact roofline finds the best tree of any shape. The
    number of profiles grows about as ``2^max_nodes``.

    Raises:
        ValueError: invalid inputs, a target that does not fit on its chips, or more than
            ``max_profiles`` profiles (use `optimize_tree`, or `random_tree_search` as a
            baseline).

    Examples:
        >>> import specsim
        >>> from specsim import exact_tree_search
        >>> acc = specsim.TreeAcceptance.from_top1([0.8, 0.75, 0.7], ranks=3, decay=0.55)
        >>> d = specsim.Deployment.create("llama-3-8b", "h100", acceptance=acc)
        >>> r = exact_tree_search(d, specsim.speculators.Eagle.create(), max_nodes=6,
        ...                       max_depth=3)
        >>> r.evaluations, sum(r.widths) <= 6
        (31, True)
    """
    max_nodes, max_depth, max_width = _check(
        deployment, speculator, max_nodes, max_depth, max_width
    )
    ranks = int(np.shape(deployment.acceptance.rank_probs)[-1])
    count = count_tree_profiles(max_nodes, max_depth, max_width, ranks)
    if count > max_profiles:
        raise ValueError(
            f"{count:.3g} tree profiles within {max_nodes} nodes and depth {max_depth} exceed "
            f"max_profiles={max_profiles}; use optimize_tree (or random_tree_search)"
        )
    profiles = tree_profiles(max_nodes, max_depth, max_width, ranks)
    widths = _best_of(deployment, speculator, profiles, max_nodes, max_width)
    report = _report(deployment, speculator, jnp.asarray(widths), max_width)
    return TreeSearchResult(
        tree=DynamicTree(widths, max_width),
        report=jax.device_get(report),
        evaluations=len(profiles),
        method="exact",
    )


def random_tree_search(
    deployment: Deployment,
    speculator,
    *,
    evaluations: int,
    max_nodes: int,
    max_depth: int,
    max_width: int | None = None,
    seed: int = 0,
) -> TreeSearchResult:
    """The best of ``evaluations`` random buildable trees (a baseline for the search).

    Profiles are drawn like the gradient search's starting points (``z`` uniform in
    [-2.5, 2.5] per depth, mapped into the budget) and rounded to the nearest whole
    widths, so both searches see the same distribution of trees.
    """
    max_nodes, max_depth, max_width = _check(
        deployment, speculator, max_nodes, max_depth, max_width
    )
    ranks = int(np.shape(deployment.acceptance.rank_probs)[-1])
    z = jax.random.uniform(
        jax.random.PRNGKey(seed),
        (int(evaluations), max_depth),
        minval=-_INIT_SPREAD,
        maxval=_INIT_SPREAD,
    )
    real = jax.vmap(lambda zi: _decode(zi, jnp.float32(max_nodes), max_width, ranks))(z)
    profiles = np.round(np.asarray(real)).astype(np.float32)
    widths = _best_of(deployment, speculator, profiles, max_nodes, max_width)
    report = _report(deployment, speculator, jnp.asarray(widths), max_width)
    return TreeSearchResult(
        tree=DynamicTree(widths, max_width),
        report=jax.device_get(report),
        evaluations=int(evaluations),
        method="random",
    )


def count_tree_profiles(max_nodes: int, max_depth: int, max_width: int, ranks: int) -> int:
    """Number of profiles `tree_profiles` would list (memoised count, no listing).

    What `exact_tree_search` would score: use it to decide whether the certificate is
    affordable.

    Examples:
        >>> count_tree_profiles(4, 2, 4, 8)  # the empty tree, 4 one-level and 6 two-level
        11
    """

    @functools.cache
    def count(depth_left: int, previous: int, left: int) -> int:
        if depth_left == 0:
            return 0
        total = 0
        for width in range(1, min(max_width, ranks * previous, left) + 1):
            total += 1 + count(depth_left - 1, width, left - width)
        return total

    return 1 + count(max_depth, 1, max_nodes)


@struct.dataclass
class ChainSearchResult:
    """The best whole lookahead of a chain, and what it delivers.

    Attributes:
        gamma: best whole gamma (0 = plain decoding pays best).
        report: its exact-roofline `ThroughputReport`.
        evaluations: gammas scored.
    """

    gamma: int = struct.field(pytree_node=False, default=0)
    report: Any = None
    evaluations: int = struct.field(pytree_node=False, default=0)

    @property
    def tokens_per_s(self) -> float:
        """Predicted tokens/s at the best gamma."""
        return float(self.report.tokens_per_s)

    def to_dict(self) -> dict[str, Any]:
        """Plain Python values."""
        return {
            "method": "chain",
            "gamma": self.gamma,
            "tokens_per_s": self.tokens_per_s,
            "speedup": float(self.report.speedup),
            "expected_tokens_per_step": float(self.report.expected_tokens_per_step),
            "evaluations": self.evaluations,
        }


@_backend_jit
def _chain_scores(deployment, speculator, gammas):
    def one(gamma):
        report = _throughput(deployment, speculator, gamma)
        return jnp.where(report.fits, report.tokens_per_s, -jnp.inf)

    return jax.vmap(one)(gammas)


def optimize_chain(deployment: Deployment, speculator, *, max_gamma: int = 16) -> ChainSearchResult:
    """The best whole lookahead ``0..max_gamma`` of a chain, by scoring every one.

    Exact and cheap (a chain has one integer to choose); the answer for methods that
    draft chains (n-gram lookup, or any method whose acceptance has no ranks).

    Raises:
        ValueError: an invalid deployment or speculator, ``max_gamma`` that the
            speculator cannot draft (Medusa: at most its heads), or a target whose weights
            and KV cache do not fit on its chips.

    Examples:
        >>> import specsim
        >>> from specsim import optimize_chain
        >>> d = specsim.Deployment.create("llama-3-8b", "h100", acceptance=0.7)
        >>> r = optimize_chain(d, specsim.speculators.Ngram.create(0.5), max_gamma=8)
        >>> 1 <= r.gamma <= 8, r.evaluations
        (True, 9)
    """
    if not isinstance(deployment, Deployment):
        raise ValueError(f"deployment must be a Deployment, got {type(deployment).__name__}")
    deployment.validate()
    if isinstance(max_gamma, bool) or not float(max_gamma).is_integer() or max_gamma < 0:
        raise ValueError(f"max_gamma must be a whole number >= 0, got {max_gamma!r}")
    check_speculation(deployment, speculator, float(max_gamma))
    check_target_fits(deployment)
    gammas = jnp.arange(0.0, float(max_gamma) + 1.0)
    scores = np.asarray(_chain_scores(deployment, speculator, gammas))
    best = int(np.argmax(scores))
    report = jax.device_get(_throughput(deployment, speculator, float(best)))
    return ChainSearchResult(gamma=best, report=report, evaluations=len(gammas))
