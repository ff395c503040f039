"""Token trees: what a tree-drafting speculator proposes in one iteration.

A speculator proposes either a *chain* of ``gamma`` tokens (a real number, as everywhere
in specsim) or a *tree* of draft tokens hanging below the last accepted token (the
root). The target verifies all of them in one pass with a tree attention mask and keeps
the longest accepted path, plus one token of its own. Two kinds of tree:

* `TokenTree`: a static tree, given by a parent list, by Medusa/EAGLE-style paths of
  ranks, or by a branching factor per depth. Each node is the draft's rank-``k``
  candidate below its parent.
* `DynamicTree`: a tree given only by how many nodes it has at each depth (its *level
  widths*), filled with the most likely nodes: what EAGLE-2's dynamic trees approximate
  (expand the most confident nodes, verify the best ``T``). Widths are real numbers, so
  the tree's shape is a smooth function that optax can tune; at whole widths it is a
  real, buildable tree (`DynamicTree.to_token_tree`).

Acceptance (`TreeAcceptance`) gives ``r[d, k]``, the chance that the target's token at
depth ``d + 1`` is the draft's rank-``k`` candidate given the path to its parent was
accepted. A node is accepted with the product of ``r`` along its path, and the expected
tokens per iteration are ``1 + sum over nodes of that product`` (Sequoia).

Why the level-width family loses nothing: for fixed level widths, taking at each depth
the ``w_d`` most likely children of the previous level's nodes maximises the expected
accepted length (by induction over depths: the greedy parents' probabilities dominate
any other choice's, rank by rank, so their children do too). The cost model prices a
tree by its level widths only (draft pass ``d`` processes the ``w_{d-1}`` nodes of the
previous level; verification processes all of them), so the best tree of any shape is
a greedy tree of some width profile: searching widths searches all trees.

`best_tree` is the exact dynamic programme of Sequoia (extended to per-depth
acceptance): the tree of at most ``n`` nodes and depth at most ``D`` with the largest
expected accepted length.
"""

from __future__ import annotations

import functools
import math
import tomllib
from collections.abc import Sequence
from importlib import resources
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import struct

from ._acceptance import TreeAcceptance, validate_acceptance
from ._numerics import concrete

__all__ = [
    "DynamicTree",
    "TokenTree",
    "best_tree",
    "greedy_expected_tokens",
    "is_tree",
    "tree_expected_tokens",
    "tree_level_widths",
    "tree_nodes",
]


@struct.dataclass
class TokenTree:
    """A static token tree: ``N`` draft tokens below the root (the last accepted token).

    Nodes are listed parents first. Integer leaves (stackable for ``vmap`` over trees of
    one size); ``max_depth`` is static because it sets the length of the level arrays.

    Attributes:
        parent: shape ``(N,)``, index of each node's parent, ``-1`` for the root's children.
        depth: shape ``(N,)``, 1 for the root's children.
        rank: shape ``(N,)``, the node is the draft's rank-``k`` candidate below its parent
            (0 = most likely).
        max_depth: the tree's depth (static).

    Examples:
        >>> from specsim import TokenTree
        >>> tree = TokenTree.from_branching([2, 1])
        >>> tree.paths()
        [(0,), (1,), (0, 0), (1, 0)]
        >>> TokenTree.from_parents([-1, -1, 0, 1]).paths() == tree.paths()
        True
    """

    parent: Any
    depth: Any
    rank: Any
    max_depth: int = struct.field(pytree_node=False, default=0)

    @classmethod
    def from_parents(cls, parents: Sequence[int]) -> TokenTree:
        """A tree from a parent list: ``parents[i]`` is node ``i``'s parent (``-1``: root).

        Every parent must come before its children (``-1 <= parents[i] < i``), which is
        what makes the list a tree. Siblings are ranked in the order they appear.

        Raises:
            ValueError: an empty list, a non-integer entry, or a parent that does not
                come before its child (a cycle, a forward reference or a missing node).
        """
        values = _whole_numbers("parents", parents)
        if not values:
            raise ValueError("a token tree needs at least one node (use gamma=0 for no drafts)")
        depth, rank, children = [], [], {}
        for i, p in enumerate(values):
            if not -1 <= p < i:
                raise ValueError(
                    f"parents[{i}] = {p} is not a tree: every node's parent must be -1 (the "
                    f"root) or an earlier node (0..{i - 1})"
                )
            depth.append(1 if p < 0 else depth[p] + 1)
            rank.append(children.get(p, 0))
            children[p] = rank[-1] + 1
        return cls._build(values, depth, rank)

    @classmethod
    def from_paths(cls, paths: Sequence[Sequence[int]]) -> TokenTree:
        """A tree from paths of ranks, the format of Medusa's and EAGLE's tree "choices"
        and of vLLM's ``speculative_token_tree``: ``(0,)`` is the root's top candidate,
        ``(0, 1)`` the second candidate below it. Every prefix of a path must be a path.

        Raises:
            ValueError: an empty list, a repeated path, a negative rank, or a path whose
                prefix is missing.
        """
        if isinstance(paths, str) or not len(paths):
            raise ValueError("a token tree needs at least one path of ranks, e.g. [(0,), (0, 0)]")
        keyed = []
        for path in paths:
            ranks = tuple(_whole_numbers("path", path))
            if not ranks or min(ranks) < 0:
                raise ValueError(f"every path must be a non-empty tuple of ranks >= 0, got {path}")
            keyed.append(ranks)
        if len(set(keyed)) != len(keyed):
            raise ValueError("paths must not repeat")
        ordered = sorted(keyed, key=lambda p: (len(p), p))
        index = {}
        parent, depth, rank = [], [], []
        for ranks in ordered:
            if len(ranks) > 1 and ranks[:-1] not in index:
                raise ValueError(f"path {ranks} has no parent path {ranks[:-1]}: not a tree")
            index[ranks] = len(parent)
            parent.append(-1 if len(ranks) == 1 else index[ranks[:-1]])
            depth.append(len(ranks))
            rank.append(ranks[-1])
        return cls._build(parent, depth, rank)

    @classmethod
    def from_branching(cls, branching: Sequence[int]) -> TokenTree:
        """Every node at depth ``d - 1`` has ``branching[d - 1]`` children (the root is
        depth 0): ``[1] * g`` is a chain of ``g`` tokens.

        Raises:
            ValueError: an empty list or a branching that is not a whole number >= 1.
        """
        values = _whole_numbers("branching", branching)
        if not values or min(values) < 1:
            raise ValueError(f"branching must be whole numbers >= 1, got {list(branching)}")
        paths: list[tuple[int, ...]] = []
        level: list[tuple[int, ...]] = [()]
        for b in values:
            level = [(*p, k) for p in level for k in range(b)]
            paths += level
        return cls.from_paths(paths)

    @classmethod
    def preset(cls, name: str) -> TokenTree:
        """A published tree by name (``specsim/data/trees.toml``, each with its source):
        ``"eagle"`` (EAGLE-1's 25-node default) or ``"medusa"`` (Medusa's 63-node tree).

        Raises:
            ValueError: an unknown name (the message lists the valid ones).
        """
        presets = _presets()
        if name not in presets:
            raise ValueError(f"unknown tree {name!r}; valid: {', '.join(sorted(presets))}")
        return cls.from_paths([tuple(p) for p in presets[name]["paths"]])

    @classmethod
    def chain(cls, length: int) -> TokenTree:
        """A chain of ``length`` draft tokens (a tree of branching 1)."""
        return cls.from_branching([1] * int(length))

    @classmethod
    def _build(cls, parent, depth, rank) -> TokenTree:
        return cls(
            parent=np.asarray(parent, np.int32),
            depth=np.asarray(depth, np.int32),
            rank=np.asarray(rank, np.int32),
            max_depth=int(max(depth)),
        )

    @property
    def size(self) -> int:
        """Number of draft tokens (nodes, root excluded)."""
        return int(np.shape(self.parent)[-1])

    def paths(self) -> list[tuple[int, ...]]:
        """Every node as its path of ranks from the root (parents first)."""
        parent, rank = np.asarray(self.parent), np.asarray(self.rank)
        out: list[tuple[int, ...]] = []
        for i in range(parent.size):
            prefix = () if parent[i] < 0 else out[parent[i]]
            out.append((*prefix, int(rank[i])))
        return out

    def parents(self) -> list[int]:
        """The parent list (``-1`` for the root's children)."""
        return [int(p) for p in np.asarray(self.parent)]

    def validate(self) -> TokenTree:
        """Checks concrete leaves (``ValueError``); traced leaves are skipped."""
        parent, depth, rank = (concrete(x) for x in (self.parent, self.depth, self.rank))
        if parent is None or depth is None or rank is None:
            return self
        if parent.ndim != 1 or parent.size == 0 or depth.shape != parent.shape:
            raise ValueError(
                "a TokenTree needs non-empty parent, depth and rank vectors of one length"
            )
        for i, p in enumerate(parent.astype(int)):
            expected = 1 if p < 0 else depth[p] + 1
            if not -1 <= p < i or depth[i] != expected or rank[i] < 0:
                raise ValueError(
                    f"node {i} is not a tree node (parent {p}, depth {depth[i]:g}); build trees "
                    "with TokenTree.from_parents, from_paths or from_branching"
                )
        if int(depth.max()) != self.max_depth:
            raise ValueError(f"max_depth {self.max_depth} does not match the nodes' depth")
        return self


@struct.dataclass
class DynamicTree:
    """The best tree with ``widths[d]`` nodes at depth ``d + 1`` (real-valued widths).

    At each depth the tree holds the most likely children of the previous depth's nodes;
    with real widths, the last node of a depth counts with its fractional part (its
    probability mass and its cost), so the value and the cost are continuous, piecewise
    smooth functions of the widths, exact at whole widths. A zero width ends the tree.

    Attributes:
        widths: shape ``(D,)``, nodes per depth, >= 0.
        max_width: static upper bound on any width (sizes the frontier arrays).

    Examples:
        >>> import specsim
        >>> from specsim import DynamicTree, TreeAcceptance
        >>> acc = TreeAcceptance.from_top1([0.8, 0.7, 0.6], ranks=4)
        >>> tree = DynamicTree.create([2, 3, 2])
        >>> round(float(specsim.tree_expected_tokens(acc, tree)), 3)
        3.27
        >>> tree.to_token_tree(acc).paths()
        [(0,), (1,), (0, 0), (0, 1), (1, 0), (0, 0, 0), (0, 0, 1)]
    """

    widths: Any
    max_width: int = struct.field(pytree_node=False, default=1)

    @classmethod
    def create(cls, widths: Sequence[float], max_width: int | None = None) -> DynamicTree:
        """A validated dynamic tree (``max_width`` defaults to the largest width, rounded up).

        Raises:
            ValueError: widths that are empty, negative or non-finite, a level with nodes
                below a level without any (not a tree), or a width above ``max_width``.
        """
        array = np.asarray(widths, dtype=np.float64)
        if array.ndim != 1 or array.size == 0:
            raise ValueError(f"widths must be a non-empty 1-D sequence, got {widths!r}")
        if max_width is None:
            max_width = max(1, math.ceil(float(np.max(np.nan_to_num(array))) - 1e-6))
        tree = cls(widths=jnp.asarray(array, jnp.float32), max_width=int(max_width))
        return tree.validate()

    @classmethod
    def best(cls, acceptance: TreeAcceptance, nodes: int, max_depth: int) -> DynamicTree:
        """The level widths of the best tree of at most ``nodes`` nodes and depth
        ``max_depth`` (`best_tree`): EAGLE-2's "verify the ``nodes`` most likely draft
        tokens" under ``acceptance``."""
        _, tree = best_tree(acceptance, nodes, max_depth)
        widths = np.bincount(np.asarray(tree.depth), minlength=max_depth + 1)[1:]
        return cls.create(widths.astype(np.float64))

    def validate(self) -> DynamicTree:
        """Checks concrete widths (``ValueError``); traced leaves are skipped."""
        if isinstance(self.max_width, bool) or int(self.max_width) < 1:
            raise ValueError(f"max_width must be a whole number >= 1, got {self.max_width!r}")
        widths = concrete(self.widths)
        if widths is None:
            return self
        if widths.ndim != 1 or widths.size == 0:
            raise ValueError(f"widths must be a non-empty 1-D vector, got shape {widths.shape}")
        bad = np.flatnonzero(~(np.isfinite(widths) & (widths >= 0)))
        if bad.size:
            raise ValueError(
                f"widths must be finite and >= 0, got widths[{bad[0]}] = {widths[bad[0]]}"
            )
        hanging = np.flatnonzero((widths[1:] > 0) & (widths[:-1] == 0))
        if hanging.size:
            d = hanging[0] + 1
            raise ValueError(
                f"widths[{d}] = {widths[d]:g} but widths[{d - 1}] = 0: nodes at depth {d + 1} "
                f"need parents at depth {d}, so this is not a tree"
            )
        if widths.max() > self.max_width + 1e-6:
            raise ValueError(f"widths exceed max_width {self.max_width}: {widths.tolist()}")
        return self

    def to_token_tree(self, acceptance: TreeAcceptance) -> TokenTree:
        """The buildable tree: at each depth, the ``widths[d]`` most likely children of
        the previous depth's nodes (ties broken by parent, then rank).

        Raises:
            ValueError: widths that are not whole numbers, or nothing to build.
        """
        validate_acceptance(acceptance)
        widths = np.asarray(self.widths, dtype=np.float64)
        if not np.allclose(widths, np.round(widths), atol=1e-4):
            raise ValueError(f"round the widths to whole numbers first, got {widths.tolist()}")
        widths = np.round(widths).astype(int)
        if widths.sum() == 0:
            raise ValueError("the tree has no nodes")
        probs = np.asarray(acceptance.rank_probs, dtype=np.float64)
        n_depths, n_ranks = probs.shape
        paths: list[tuple[int, ...]] = []
        frontier: list[tuple[float, tuple[int, ...]]] = [(1.0, ())]
        for d, width in enumerate(widths):
            if width == 0:
                break
            row = probs[d] if d < n_depths else np.zeros(n_ranks)
            candidates = []
            for order, (p, path) in enumerate(frontier):
                # Beyond the acceptance's ranks a node is never accepted, but it can be built.
                for k in range(max(n_ranks, width)):
                    candidates.append((-(p * (row[k] if k < n_ranks else 0.0)), order, k, path))
            candidates.sort(key=lambda c: c[:3])
            chosen = candidates[:width]
            frontier = [(-c[0], (*c[3], c[2])) for c in chosen]
            frontier.sort(key=lambda f: (-f[0], f[1]))
            paths += [f[1] for f in frontier]
        return TokenTree.from_paths(paths)


# --------------------------------------------------------------------------- functions


def is_tree(shape) -> bool:
    """Whether a speculation shape is a tree (else it is a chain's real-valued gamma)."""
    return isinstance(shape, TokenTree | DynamicTree)


def tree_level_widths(tree):
    """Nodes per depth, shape ``(D,)`` floats (a `DynamicTree`'s widths as they are)."""
    if isinstance(tree, DynamicTree):
        return jnp.asarray(tree.widths, jnp.float32)
    depths = jnp.arange(1, tree.max_depth + 1)
    return jnp.sum(jnp.asarray(tree.depth)[..., None, :] == depths[:, None], axis=-1).astype(
        jnp.float32
    )


def tree_nodes(tree):
    """Draft tokens in the tree (a real number for a `DynamicTree`)."""
    return jnp.sum(tree_level_widths(tree), axis=-1)


def tree_expected_tokens(acceptance: TreeAcceptance, tree):
    """Expected tokens emitted per iteration: 1 + the expected accepted path length.

    Args:
        acceptance: a `TreeAcceptance`.
        tree: a `TokenTree` (exact for its nodes) or a `DynamicTree` (the greedy tree of
            its widths; see `greedy_expected_tokens`).

    Returns:
        ``1 + sum over nodes of prod_{edges on the path} rank_probs[depth - 1, rank]``.

    Examples:
        >>> from specsim import TokenTree, TreeAcceptance, tree_expected_tokens
        >>> acc = TreeAcceptance.create([[0.6, 0.3], [0.5, 0.2]])
        >>> round(float(tree_expected_tokens(acc, TokenTree.from_paths([(0,), (1,), (0, 0)]))), 4)
        2.2
    """
    probs = jnp.asarray(acceptance.rank_probs, jnp.float32)
    if isinstance(tree, DynamicTree):
        return greedy_expected_tokens(probs, tree.widths, tree.max_width)
    n_depths, n_ranks = probs.shape
    depth = jnp.asarray(tree.depth) - 1
    rank = jnp.asarray(tree.rank)
    parent = jnp.asarray(tree.parent)
    known = (depth < n_depths) & (rank < n_ranks)
    node = jnp.where(
        known, probs[jnp.clip(depth, 0, n_depths - 1), jnp.clip(rank, 0, n_ranks - 1)], 0.0
    )
    path = node
    for _ in range(tree.max_depth - 1):  # parents come first: depth-many sweeps settle it
        path = node * jnp.where(parent >= 0, path[jnp.maximum(parent, 0)], 1.0)
    return 1.0 + jnp.sum(path)


def greedy_expected_tokens(rank_probs, widths, max_width: int):
    """Expected tokens of the greedy tree with (real) level widths, differentiable.

    Depth by depth: the candidates are every rank below every frontier node (probability
    = parent's path probability x ``rank_probs[d, k]``), sorted; the first ``widths[d]``
    join the tree, the last with its fractional part; they are the next frontier.

    Args:
        rank_probs: ``(D_acc, K)`` rank probabilities (depths beyond ``D_acc`` accept
            nothing).
        widths: ``(D,)`` nodes per depth, >= 0.
        max_width: static frontier size, >= every width.

    Returns:
        ``1 + expected accepted draft tokens``.
    """
    rank_probs = jnp.asarray(rank_probs, jnp.float32)
    widths = jnp.asarray(widths, jnp.float32)
    n_depths, n_ranks = rank_probs.shape
    frontier = jnp.zeros(max_width, jnp.float32).at[0].set(1.0)
    slots = jnp.arange(max_width * n_ranks, dtype=jnp.float32)
    total = jnp.asarray(1.0, jnp.float32)
    for d in range(widths.shape[-1]):
        row = rank_probs[d] if d < n_depths else jnp.zeros(n_ranks, jnp.float32)
        candidates = jnp.sort((frontier[:, None] * row[None, :]).reshape(-1))[::-1]
        chosen = jnp.clip(widths[d] - slots, 0.0, 1.0) * candidates
        total = total + jnp.sum(chosen)
        frontier = chosen[:max_width]
    return total


def best_tree(acceptance: TreeAcceptance, nodes: int, max_depth: int) -> tuple[float, TokenTree]:
    """The tree of at most ``nodes`` nodes and depth ``max_depth`` with the most
    expected tokens: Sequoia's dynamic programme, with per-depth acceptance.

    ``f(n, d)``: the best expected accepted nodes in ``n`` nodes hanging below an
    accepted node at depth ``d``. Its children take the top ranks in order (rank
    probabilities are non-increasing), child ``k`` with a subtree of ``s`` nodes worth
    ``r[d, k] (1 + f(s - 1, d + 1))``; a knapsack over ranks allocates ``n``. Exact; cost
    ``O(D K n^2)`` (NumPy, float64).

    Args:
        acceptance: a `TreeAcceptance`.
        nodes: the node budget ``n >= 1``.
        max_depth: the depth budget ``D >= 1``.

    Returns:
        ``(expected tokens per iteration, the tree)``.

    Examples:
        >>> from specsim import TreeAcceptance, best_tree
        >>> value, tree = best_tree(TreeAcceptance.create([[0.6, 0.3], [0.5, 0.2]]), 3, 2)
        >>> round(value, 4), tree.paths()
        (2.2, [(0,), (1,), (0, 0)])

    References:
        Chen et al. (2024), "Sequoia: Scalable, Robust, and Hardware-aware Speculative
        Decoding", arXiv 2402.12374, Section 3.1.
    """
    validate_acceptance(acceptance)
    if not isinstance(acceptance, TreeAcceptance):
        raise ValueError("best_tree needs a TreeAcceptance (per-depth, per-rank probabilities)")
    for name, value in (("nodes", nodes), ("max_depth", max_depth)):
        if isinstance(value, bool) or int(value) != value or value < 1:
            raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
    nodes, max_depth = int(nodes), int(max_depth)
    probs = np.asarray(acceptance.rank_probs, dtype=np.float64)
    n_depths, n_ranks = probs.shape
    # f[d][n]; choice[d][k][m] = subtree size given to rank k with m nodes left (0 = stop).
    f = np.zeros((max_depth + 1, nodes + 1))
    choice = np.zeros((max_depth, n_ranks, nodes + 1), dtype=np.int64)
    for d in range(max_depth - 1, -1, -1):
        row = probs[d] if d < n_depths else np.zeros(n_ranks)
        # g[k][m]: best value of ranks k.. with m nodes.
        g = np.zeros((n_ranks + 1, nodes + 1))
        for k in range(n_ranks - 1, -1, -1):
            for m in range(1, nodes + 1):
                sizes = np.arange(1, m + 1)
                values = row[k] * (1.0 + f[d + 1][sizes - 1]) + g[k + 1][m - sizes]
                best = int(np.argmax(values))  # the smallest subtree among equals
                if values[best] > 0.0:  # else stop: ranks k.. add nothing
                    g[k][m] = values[best]
                    choice[d, k, m] = sizes[best]
        f[d] = g[0]

    paths: list[tuple[int, ...]] = []

    def build(prefix: tuple[int, ...], d: int, m: int) -> None:
        for k in range(n_ranks):
            size = int(choice[d, k, m]) if d < max_depth and m > 0 else 0
            if size == 0:
                return
            paths.append((*prefix, k))
            build((*prefix, k), d + 1, size - 1)
            m -= size

    build((), 0, nodes)
    if not paths:  # nothing is ever accepted: one node is as good as none
        paths = [(0,)]
    return 1.0 + float(f[0][nodes]), TokenTree.from_paths(paths)


@functools.cache
def _presets() -> dict:
    text = (resources.files("specsim") / "data" / "trees.toml").read_text()
    return tomllib.loads(text)["tree"]


def _whole_numbers(name: str, values) -> list[int]:
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be whole numbers, got {values!r}") from None
    if array.ndim != 1 or not np.all(np.isfinite(array)) or not np.all(array == np.round(array)):
        raise ValueError(f"{name} must be a list of whole numbers, got {values!r}")
    return [int(v) for v in array]
