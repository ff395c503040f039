"""Method tooling: speculators.create, optimize_chain and sweep_methods."""

import numpy as np
import pytest
from conftest import assert_close

import specsim
from specsim import Deployment, Workload, optimize_chain, speculators


@pytest.mark.parametrize("method", speculators.METHODS)
def test_create_builds_every_method(method):
    options = {"draft": "llama-68m"} if method == "draft" else {}
    spec = speculators.create(method, specsim.models.get("llama-3-8b"), **options)
    assert speculators.method_name(spec) == method


def test_create_rejects_options_of_other_methods():
    with pytest.raises(ValueError, match="n_heads does not apply to method 'ngram'"):
        speculators.create("ngram", n_heads=3)
    with pytest.raises(ValueError, match="unknown method"):
        speculators.create("lookahead")
    with pytest.raises(ValueError, match="needs a draft model"):
        speculators.create("draft")
    mtp = speculators.create("mtp", specsim.models.get("deepseek-v3"))
    assert float(mtp.n_modules) == 1.0  # DeepSeek-V3 ships one module


@pytest.mark.slow
def test_optimize_chain_is_the_argmax_over_every_gamma():
    d = Deployment.create("llama-3-8b", "h100", Workload.create(16, 512, 256), 0.7)
    spec = speculators.Ngram.create(match_probability=0.6)
    result = optimize_chain(d, spec, max_gamma=10)
    loop = [float(specsim.predict(d, spec, float(g)).tokens_per_s) for g in range(11)]
    assert result.gamma == int(np.argmax(loop)) and result.evaluations == 11
    assert_close(result.tokens_per_s, max(loop), rtol=1e-6)


@pytest.mark.slow
def test_sweep_methods_matches_predict_point_by_point():
    frame = specsim.sweep_methods(
        ["eagle", "medusa"], batch=[1, 32], gamma=[2.0, 3.0], acceptance=0.75
    )
    assert len(frame) == 8
    row = frame[(frame.method == "medusa") & (frame.batch == 32) & (frame["shape"] == 3.0)]
    d = Deployment.create("llama-3-8b", "h100", Workload.create(32, 512, 256), 0.75)
    want = specsim.predict(d, speculators.Medusa.create(), 3.0)
    assert_close(float(row.tokens_per_s.iloc[0]), float(want.tokens_per_s), rtol=1e-6)
    with pytest.raises(ValueError, match="not swept"):
        specsim.sweep_methods(["eagle"], options={"ngram": {"match_probability": 0.5}})


@pytest.mark.slow
def test_sweep_methods_marks_points_that_cannot_be_served():
    # Priced without a mark before: Llama-2-70B's 138 GB on one H100, and a llama-68m draft
    # (32,000 tokens) for Llama-3-8B (128,256), which evaluate refuses.
    frame = specsim.sweep_methods(
        ["eagle", "draft"], target=["llama-3-8b", "llama-2-70b"], gamma=[3]
    ).set_index(["method", "target"])
    assert frame.loc[("eagle", "llama-3-8b"), "feasibility"] == "ok"
    assert frame.loc[("eagle", "llama-2-70b"), "feasibility"] == "memory"
    assert frame.loc[("draft", "llama-3-8b"), "feasibility"] == "vocab"
    assert not frame.loc[("eagle", "llama-2-70b"), "fits"]
    # One tokenizer with padded tables: vouched for, not marked (sweep's shared_tokenizer);
    # a draft on 1 chip beside a target on 8 (the draft's 12 heads do not split over 8).
    shared = specsim.sweep_methods(["draft"], target="llama-3-8b", gamma=[3], shared_tokenizer=True)
    assert set(shared.feasibility) == {"ok"}
    split = specsim.sweep_methods(["draft"], target="llama-2-70b", tp=8, gamma=[3], draft_tp=1)
    assert set(split.feasibility) == {"ok"} and float(split.speedup.iloc[0]) > 1
