"""Token trees: construction, validation, expected accepted length and the Sequoia DP."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import assert_close

import specsim
from specsim import DynamicTree, TokenTree, TreeAcceptance, best_tree, tree_expected_tokens
from specsim._tree import greedy_expected_tokens

ACC = TreeAcceptance.from_top1([0.8, 0.72, 0.65, 0.6], ranks=3, decay=0.7)


def _brute_force_tokens(acceptance: TreeAcceptance, tree: TokenTree) -> float:
    """1 + accepted length, averaged over every outcome of the target's token ranks.

    At depth d the target's token is the draft's rank k with probability r[d, k], or none
    of the drafted ranks (-1) with the rest; the accepted length is the longest path of
    the tree that these ranks spell.
    """
    probs = np.asarray(acceptance.rank_probs, np.float64)
    depth = tree.max_depth
    paths = set(tree.paths())
    outcomes = [[*range(probs.shape[1]), -1]] * depth
    total = 0.0
    for ranks in itertools.product(*outcomes):
        p = 1.0
        for d, k in enumerate(ranks):
            row = probs[d] if d < probs.shape[0] else np.zeros(probs.shape[1])
            p *= (1.0 - row.sum()) if k < 0 else row[k]
        accepted = 0
        while accepted < depth and tuple(ranks[: accepted + 1]) in paths:
            accepted += 1
        total += p * (1 + accepted)
    return total


def _all_trees(max_nodes: int, max_depth: int, ranks: int):
    """Every rank-closed tree (children take ranks 0, 1, ... in order) up to the budgets."""
    seen = set()

    def grow(paths: frozenset):
        if paths in seen:
            return
        seen.add(paths)
        if len(paths) == max_nodes:
            return
        for parent in [(), *paths]:
            if len(parent) == max_depth:
                continue
            k = sum(1 for p in paths if len(p) == len(parent) + 1 and p[:-1] == parent)
            if k < ranks:
                grow(paths | {(*parent, k)})

    grow(frozenset())
    return [sorted(p, key=lambda x: (len(x), x)) for p in seen if p]


# --------------------------------------------------------------------------- construction


def test_three_constructors_agree():
    a = TokenTree.from_branching([2, 2])
    b = TokenTree.from_parents([-1, -1, 0, 0, 1, 1])
    c = TokenTree.from_paths([(0,), (1,), (0, 0), (0, 1), (1, 0), (1, 1)])
    assert a.paths() == b.paths() == c.paths()
    assert a.size == 6 and a.max_depth == 2
    assert b.parents() == [-1, -1, 0, 0, 1, 1]
    assert TokenTree.chain(3).paths() == [(0,), (0, 0), (0, 0, 0)]


@pytest.mark.parametrize(
    "parents, message",
    [
        ([], "at least one node"),
        ([-1, 2, 0], r"parents\[1\] = 2 is not a tree"),
        ([0], r"parents\[0\] = 0 is not a tree"),
        ([-1, -2], "is not a tree"),
        ([-1, 0.5], "whole numbers"),
    ],
)
def test_parent_lists_that_are_not_trees_are_rejected(parents, message):
    with pytest.raises(ValueError, match=message):
        TokenTree.from_parents(parents)


@pytest.mark.parametrize(
    "paths, message",
    [
        ([], "at least one path"),
        ([(0,), (1, 0)], r"no parent path \(1,\)"),
        ([(0,), (0,)], "must not repeat"),
        ([(0,), (-1,)], "ranks >= 0"),
        ([()], "non-empty"),
    ],
)
def test_paths_that_are_not_trees_are_rejected(paths, message):
    with pytest.raises(ValueError, match=message):
        TokenTree.from_paths(paths)


@pytest.mark.parametrize(
    "widths, message",
    [
        ([], "non-empty"),
        ([1, -1], "finite and >= 0"),
        ([1, float("nan")], "finite and >= 0"),
        ([2, 0, 1], "not a tree"),
        ([[1, 2]], "1-D"),
    ],
)
def test_dynamic_trees_that_are_not_trees_are_rejected(widths, message):
    with pytest.raises(ValueError, match=message):
        DynamicTree.create(widths)
    with pytest.raises(ValueError, match="exceed max_width"):
        DynamicTree.create([1, 5], max_width=4)


@pytest.mark.parametrize(
    "rank_probs, message",
    [
        ([[0.7, 0.4]], "sums to 1.1 > 1"),
        ([[0.3, 0.5]], "non-increasing"),
        ([[1.2]], r"in \[0, 1\]"),
        ([0.5, 0.2], "matrix"),
    ],
)
def test_rank_probabilities_that_do_not_add_up_are_rejected(rank_probs, message):
    with pytest.raises(ValueError, match=message):
        TreeAcceptance.create(rank_probs)


def test_from_top1_makes_geometric_ranks_at_decay_one():
    acc = TreeAcceptance.from_top1([0.6], ranks=4)
    # P(rank k) = alpha (1 - alpha)**k: the target's token is the k-th draft guess.
    assert_close(np.asarray(acc.rank_probs[0]), [0.6 * 0.4**k for k in range(4)], rtol=1e-6)


# --------------------------------------------------------------------------- values


@pytest.mark.slow
@pytest.mark.parametrize(
    "tree",
    [
        TokenTree.chain(3),
        TokenTree.from_branching([3, 1, 2]),
        TokenTree.from_paths([(0,), (1,), (2,), (0, 0), (0, 1), (1, 0), (0, 0, 0), (0, 1, 0)]),
        TokenTree.from_parents([-1, 0, 1, 2, 3]),  # deeper than the acceptance's 4 depths
        TokenTree.from_paths([(0,), (3,)]),  # rank 3 is beyond the acceptance's 3 ranks
    ],
)
def test_expected_tokens_equal_brute_force_enumeration(tree):
    assert_close(float(tree_expected_tokens(ACC, tree)), _brute_force_tokens(ACC, tree), rtol=1e-6)


@pytest.mark.slow
def test_a_tree_of_branching_one_is_the_chain():
    chain = specsim.expected_tokens_per_step(specsim.PositionalAcceptance.create(ACC.top1), 4.0)
    for tree in (TokenTree.chain(4), DynamicTree.create([1, 1, 1, 1])):
        assert_close(float(tree_expected_tokens(ACC, tree)), float(chain), rtol=1e-6)


@pytest.mark.slow
def test_greedy_tree_equals_its_buildable_tree_and_interpolates_between_widths():
    tree = DynamicTree.create([3, 5, 4, 2])
    built = tree.to_token_tree(ACC)
    assert built.size == 14
    assert_close(float(tree_expected_tokens(ACC, tree)), float(tree_expected_tokens(ACC, built)))
    # A fractional width adds that fraction of the next node's probability.
    lo = float(tree_expected_tokens(ACC, DynamicTree.create([3, 5, 4, 2], max_width=5)))
    hi = float(tree_expected_tokens(ACC, DynamicTree.create([3, 5, 4, 3], max_width=5)))
    mid = float(tree_expected_tokens(ACC, DynamicTree.create([3, 5, 4, 2.25], max_width=5)))
    assert_close(mid, lo + 0.25 * (hi - lo), rtol=1e-6)


@pytest.mark.slow
def test_greedy_gradient_is_finite_and_positive(x64):
    probs = jnp.asarray(ACC.rank_probs, jnp.float64)
    grad = jax.grad(lambda w: greedy_expected_tokens(probs, w, 6))(
        jnp.asarray([2.3, 3.6, 2.2, 1.1], jnp.float64)
    )
    assert np.all(np.isfinite(np.asarray(grad))) and np.all(np.asarray(grad) > 0)


@pytest.mark.parametrize("nodes, depth", [(1, 1), (3, 2), (5, 3), (6, 4)])
def test_dp_best_tree_is_the_best_of_all_trees(nodes, depth):
    value, tree = best_tree(ACC, nodes, depth)
    assert tree.size <= nodes and tree.max_depth <= depth
    assert_close(value, float(tree_expected_tokens(ACC, tree)), rtol=1e-6)
    every = [
        _brute_force_tokens(ACC, TokenTree.from_paths(paths))
        for paths in _all_trees(nodes, depth, ranks=3)
    ]
    assert_close(value, max(every), rtol=1e-6)


@pytest.mark.slow
def test_best_widths_reproduce_the_dp_optimum():
    for nodes in (4, 9, 16, 25):
        value, _ = best_tree(ACC, nodes, 6)
        widths = DynamicTree.best(ACC, nodes, 6)
        assert_close(float(tree_expected_tokens(ACC, widths)), value, rtol=1e-6)


def test_best_tree_rejects_bad_budgets():
    with pytest.raises(ValueError, match="nodes"):
        best_tree(ACC, 0, 3)
    with pytest.raises(ValueError, match="TreeAcceptance"):
        best_tree(specsim.ConstantAcceptance.create(0.5), 3, 3)


def test_token_trees_stack_and_vmap():
    trees = [TokenTree.from_branching(b) for b in ([2, 2], [1, 5], [6])]
    stacked = jax.tree.map(lambda *x: jnp.stack(x), *trees[:2])
    batched = jax.vmap(lambda t: tree_expected_tokens(ACC, t))(stacked)
    assert_close(np.asarray(batched), [float(tree_expected_tokens(ACC, t)) for t in trees[:2]])
