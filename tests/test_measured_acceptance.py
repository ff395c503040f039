"""Acceptance from measurements: histograms, per-position counters, tau; file formats."""

import json
from importlib import resources

import numpy as np
import pytest
from conftest import assert_close

import specsim
from specsim import (
    TokenTree,
    acceptance_from_counts,
    acceptance_from_histogram,
    acceptance_from_tau,
    load_acceptance,
    tree_expected_tokens,
)

EXAMPLES = resources.files("specsim") / "data" / "acceptance"


@pytest.mark.parametrize(
    "name", ["histogram.csv", "per_position.csv", "per_position.json", "vllm_metrics.prom"]
)
def test_example_files_describe_the_same_chain(name):
    stats = load_acceptance(EXAMPLES / name)
    # 780, 600, 420, 180 acceptances of positions 0..3 in 1000 iterations.
    assert_close(stats.survival, [0.78, 0.60, 0.42, 0.18], rtol=1e-12)
    assert_close(stats.tau, 1 + 1.98, rtol=1e-12)
    rates = stats.positional()
    assert_close(np.asarray(rates.alphas), [0.78, 0.60 / 0.78, 0.42 / 0.60, 0.18 / 0.42], 1e-6)
    # The per-position rates reproduce tau exactly.
    e = specsim.expected_tokens_per_step(rates, float(stats.lookahead))
    assert_close(float(e), stats.tau, rtol=1e-6)


def test_histogram_survival_is_the_tail_sum():
    stats = acceptance_from_histogram([1, 2, 3, 4])  # k accepted: 0, 1, 2, 3
    assert_close(stats.survival, [9 / 10, 7 / 10, 4 / 10], rtol=1e-12)
    assert stats.iterations == 10 and stats.lookahead == 3


def test_tau_gives_the_constant_rate_of_leviathans_formula():
    stats = acceptance_from_tau(3.6893, 5)  # E(0.8, 5) = 3.6893 (theory docstring)
    assert_close(float(stats.constant().alpha), 0.8, rtol=1e-4)
    with pytest.raises(ValueError, match="per-position rates"):
        stats.positional()


def test_tree_fit_reproduces_the_measured_tree():
    eagle = TokenTree.from_branching([3, 2, 1, 1])
    stats = acceptance_from_tau(3.4, 4)
    acc = stats.tree(eagle)
    assert_close(float(tree_expected_tokens(acc, eagle)), 3.4, rtol=1e-5)
    counts = acceptance_from_counts(100, [85, 70, 50, 30])
    acc = counts.tree(eagle, ranks=4, decay=0.5)
    # At least d tokens accepted = the tree's depth-d path mass; checked by enumeration.
    probs = np.asarray(acc.rank_probs, np.float64)
    for d, want in enumerate([0.85, 0.70, 0.50, 0.30], start=1):
        mass = sum(
            np.prod([probs[i, k] for i, k in enumerate(path)])
            for path in eagle.paths()
            if len(path) == d
        )
        assert_close(mass, want, rtol=1e-5)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: acceptance_from_histogram([0.2, 0.3, 0.4]), "sum to 1"),
        (lambda: acceptance_from_histogram([5]), "K >= 1"),
        (lambda: acceptance_from_histogram([3, -1]), ">= 0"),
        (lambda: acceptance_from_counts(100, [50, 60]), "more often"),
        (lambda: acceptance_from_counts(100, [150, 60]), "do not add up"),
        (lambda: acceptance_from_counts(100, [50, 20], num_accepted_tokens=90), "sum to 70"),
        (lambda: acceptance_from_counts(0, [1]), "num_drafts"),
        (lambda: acceptance_from_tau(7.0, 5), r"in \[1, 6\]"),
        (lambda: acceptance_from_tau(2.0, 0), "lookahead"),
        # TypeError from float() or a comparison before (issue: wrong exception type)
        (lambda: acceptance_from_tau(None, 3), r"tau must be a number in \[1, 4\], got None"),
        (lambda: acceptance_from_tau(2.0, "3"), "lookahead must be a whole number >= 1, got '3'"),
        (lambda: acceptance_from_counts(None, [3]), "num_drafts must be a number > 0, got None"),
        (lambda: acceptance_from_tau(5.0, 4).tree(TokenTree.chain(2)), "cannot reproduce"),
        (lambda: acceptance_from_counts(10, [9, 8, 7]).tree(TokenTree.chain(2)), "only 2 deep"),
    ],
)
def test_statistics_that_do_not_add_up_are_rejected(make, message):
    with pytest.raises(ValueError, match=message) as info:
        make()
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "content, suffix, message",
    [
        ({"format": "histogram"}, ".json", "'counts' or 'probabilities'"),
        ({"format": "histogram", "probabilities": [0.5, 0.4]}, ".json", "sum to 0.9"),
        ({"format": "tau"}, ".json", "'format' key"),
        ("a,b\n1,2\n", ".csv", "CSV columns"),
        ("accepted,count\n0,1\n2,1\n", ".csv", "0, 1, ..., K"),
        ("position,accepted,drafts\n0,5,10\n1,4,11\n", ".csv", "same on every row"),
        ("hello", ".txt", "unknown acceptance format"),
        ("vllm:spec_decode_num_drafts_total 10\n", ".prom", "per_pos counters"),
        # Issue 11, point 1: a misspelt key or column was ignored (its default applied).
        (
            {
                "format": "per_position",
                "num_drafts": 10,
                "accepted_per_position": [5, 3],
                "num_accepted_token": 8,
            },
            ".json",
            r"per_position: num_accepted_token 8: unknown key \(did you mean num_accepted_tok",
        ),
        (
            {"format": "mean_accepted_length", "tau": 2.5, "lookahed": 4},
            ".json",
            r"lookahed 4: unknown key \(did you mean lookahead\?\)",
        ),
        ("position,accepted,drafts,draft\n0,5,10,1\n", ".csv", "column 'draft': unknown"),
        # the file is named in a reader's own message, and a missing key says so
        ({"format": "histogram", "counts": ["x", 1]}, ".json", r"stats.json: histogram counts"),
        ({"format": "mean_accepted_length", "tau": 3.2}, ".json", "missing key 'lookahead'"),
    ],
)
def test_bad_files_are_rejected(tmp_path, content, suffix, message):
    path = tmp_path / f"stats{suffix}"
    path.write_text(json.dumps(content) if isinstance(content, dict) else content)
    with pytest.raises(ValueError, match=message):
        load_acceptance(path)
    with pytest.raises(ValueError, match="not found"):
        load_acceptance(tmp_path / "missing.json")


def test_default_rank_decay_reproduces_eagle_trees():
    """EAGLE (arXiv 2401.15077) Table 2 chain rates + 25-node tree -> Table 5 tree tau."""
    tree = TokenTree.preset("eagle")
    assert tree.size == 25 and tree.max_depth == 5
    rows = {  # T=0, MT-bench: 0-alpha..4-alpha (Table 2) and tree tau (Table 5)
        "Vicuna 7B": ([0.79, 0.74, 0.72, 0.73, 0.67], 3.94),
        "Vicuna 33B": ([0.74, 0.69, 0.67, 0.67, 0.66], 3.68),
        "LLaMA2-Chat 70B": ([0.75, 0.69, 0.65, 0.64, 0.64], 3.81),
    }
    for alphas, tau in rows.values():
        acc = specsim.TreeAcceptance.from_top1(alphas, ranks=4, decay=0.55)
        # The decay is the median over six rows (0.47-0.66); at the median each row is
        # within 4.1% of its published tau.
        assert_close(float(tree_expected_tokens(acc, tree)), tau, rtol=0.045)
