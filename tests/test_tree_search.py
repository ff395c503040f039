"""Tree search: gradient over level widths against the exact certificate."""

import numpy as np
import pytest

import specsim
from specsim import Deployment, TreeAcceptance, Workload
from specsim._tree_search import (
    count_tree_profiles,
    exact_tree_search,
    optimize_chain,
    optimize_tree,
    random_tree_search,
    tree_profiles,
)
from specsim.speculators import Eagle, Medusa, Ngram

ACC = TreeAcceptance.from_top1([0.8, 0.75, 0.72, 0.7, 0.68], ranks=4, decay=0.55)


def _deployment(chip="h100", batch=1, acceptance=ACC):
    return Deployment.create("llama-3-8b", chip, Workload.create(batch, 512, 256), acceptance)


def test_profiles_are_every_buildable_tree_once():
    table = tree_profiles(5, 3, 5, 2)
    assert len(table) == count_tree_profiles(5, 3, 5, 2)
    assert not table[0].any()  # the empty tree: plain decoding
    rows = {tuple(r) for r in table.astype(int).tolist()}
    assert len(rows) == len(table)
    for row in rows:
        widths = [w for w in row if w]
        assert sum(widths) <= 5 and list(row[: len(widths)]) == widths
        previous = 1
        for w in widths:
            assert 1 <= w <= 2 * previous
            previous = w
    # Slow reference count: every tuple of widths in range, filtered.
    brute = sum(
        1
        for w in np.ndindex(6, 6, 6)
        if sum(w) <= 5
        and all((w[i] == 0) <= (w[i + 1] == 0) for i in range(2))
        and all(w[i] <= 2 * ([1, *w][i]) for i in range(3))
    )
    assert len(table) == brute


@pytest.mark.slow
@pytest.mark.parametrize("chip, batch", [("h100", 1), ("a100", 16), ("l4", 4)])
def test_gradient_search_matches_the_exact_certificate(chip, batch):
    d = _deployment(chip, batch)
    exact = exact_tree_search(d, Eagle.create(), max_nodes=10, max_depth=5)
    found = optimize_tree(d, Eagle.create(), max_nodes=10, max_depth=5, steps=80, restarts=4)
    # The bar: within 0.5% of the exact optimum.
    assert found.tokens_per_s >= 0.995 * exact.tokens_per_s
    assert found.tokens_per_s <= exact.tokens_per_s * (1 + 1e-6)
    assert sum(found.widths) <= 10 and len(found.widths) <= 5
    assert exact.evaluations == count_tree_profiles(10, 5, 10, 4)


@pytest.mark.slow
def test_search_declines_to_speculate_where_it_cannot_pay():
    # 1024 short sequences on an H100: each step is compute-bound (33 TFLOP of matmuls
    # against 20 GB of weights and cache), so verified drafts cost what they save.
    d = Deployment.create("llama-3-8b", "h100", Workload.create(1024, 64, 64), ACC)
    exact = exact_tree_search(d, Eagle.create(), max_nodes=6, max_depth=3)
    assert exact.widths == [] and float(exact.report.speedup) == pytest.approx(1.0)
    assert exact.token_tree(ACC) is None


def test_searches_refuse_a_target_that_does_not_fit():
    # Llama-3-8B at batch 256 on a 24 GB L4 needs 41.8 GB: the searches returned "plain
    # decoding" with its tokens/s (this test's predecessor relied on that), where
    # optimize_draft and speculation_schedule refuse.
    d = _deployment("l4", 256)
    message = r"the target does not fit: .* 41.8 GB per chip .* the chip has 24.0 GB"
    with pytest.raises(ValueError, match=message):
        exact_tree_search(d, Eagle.create(), max_nodes=6, max_depth=3)
    with pytest.raises(ValueError, match=message):
        optimize_tree(d, Eagle.create(), max_nodes=6, max_depth=3)
    with pytest.raises(ValueError, match=message):
        optimize_chain(_deployment("l4", 256, 0.7), Eagle.create(), max_gamma=4)


@pytest.mark.slow
def test_gradient_search_never_returns_a_tree_that_does_not_fit():
    # Llama-3-8B with five Medusa heads (each its own LM head, ~1 GB) at batch 32 on a
    # 24 GB L4: no tree fits, plain decoding does. The certificate says so; the gradient
    # search once returned a tree over the memory with its (unreachable) tokens/s.
    medusa = TreeAcceptance.from_top1([0.60, 0.45, 0.35, 0.28, 0.22], ranks=8, decay=0.75)
    d = _deployment("l4", 32, medusa)
    exact = exact_tree_search(d, Medusa.create(), max_nodes=12, max_depth=5)
    found = optimize_tree(d, Medusa.create(), max_nodes=12, max_depth=5, steps=20, restarts=2)
    assert exact.widths == [] and bool(exact.report.fits)
    assert found.widths == [] and bool(found.report.fits)
    assert found.tokens_per_s == pytest.approx(exact.tokens_per_s, rel=1e-6)


@pytest.mark.slow
def test_result_builds_the_tree_it_reports():
    d = _deployment()
    r = exact_tree_search(d, Eagle.create(), max_nodes=8, max_depth=4)
    tree = r.token_tree(ACC)
    report = specsim.predict(d, Eagle.create(), tree)
    assert float(report.tokens_per_s) == pytest.approx(r.tokens_per_s, rel=1e-6)
    out = r.to_dict(ACC)
    assert out["nodes"] == tree.size and len(out["paths"]) == tree.size


@pytest.mark.slow
def test_random_search_never_beats_the_certificate():
    d = _deployment()
    exact = exact_tree_search(d, Eagle.create(), max_nodes=8, max_depth=4)
    rand = random_tree_search(d, Eagle.create(), evaluations=200, max_nodes=8, max_depth=4)
    assert rand.tokens_per_s <= exact.tokens_per_s * (1 + 1e-6)
    assert rand.evaluations == 200 and sum(rand.widths) <= 8


@pytest.mark.parametrize(
    "speculator, kwargs, acceptance, message",
    [
        (Eagle.create(), {}, 0.7, "needs TreeAcceptance"),
        (Ngram.create(), {}, ACC, "not a token tree"),
        (Medusa.create(n_heads=3), {}, ACC, "at most that many positions"),
        (Eagle.create(), {"max_nodes": 0}, ACC, "max_nodes"),
        (Eagle.create(), {"max_nodes": 40, "max_depth": 8}, ACC, "exceed max_profiles"),
    ],
)
def test_bad_searches_are_rejected(speculator, kwargs, acceptance, message):
    args = {"max_nodes": 6, "max_depth": 4, **kwargs}
    with pytest.raises(ValueError, match=message):
        exact_tree_search(_deployment(acceptance=acceptance), speculator, **args)
