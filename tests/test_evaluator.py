"""The single-call fast paths: packed `throughput`/`predict` and the compiled `Evaluator`."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import specsim
from specsim import Deployment, Evaluator, SDSLAcceptance, Workload, hardware, models
from specsim._throughput import _throughput, _throughput_packed

TARGET = models.get("llama-2-7b")
DRAFT = models.get("llama-68m")
A100 = hardware.get("a100-80gb")
WORKLOAD = Workload.create(batch=4, prompt_tokens=256, generate_tokens=128)


def assert_same_report(a, b):
    for name in specsim.ThroughputReport.__dataclass_fields__:
        x, y = np.asarray(getattr(a, name)), np.asarray(getattr(b, name))
        assert x.dtype == y.dtype, name
        if x.dtype.kind == "f":
            # The packed program slices its arguments from one vector; XLA may fuse (and
            # contract multiply-adds) differently there: a last-bit difference in float32.
            np.testing.assert_allclose(x, y, rtol=2e-7, err_msg=name)
        else:
            np.testing.assert_array_equal(x, y, err_msg=name)


@pytest.mark.slow
@pytest.mark.parametrize("acceptance", [0.7, [0.9, 0.7, 0.5], SDSLAcceptance.create(1e11, 2e12)])
def test_packed_call_equals_the_jitted_core_bit_for_bit(acceptance):
    d = Deployment.create(TARGET, A100, WORKLOAD, acceptance, tp=2, draft_tp=1)
    for gamma in (0.0, 3.0, 4.5):
        direct = _throughput(d, DRAFT, gamma, None, 8)
        assert_same_report(specsim.predict(d, DRAFT, gamma), direct)
        assert_same_report(Evaluator(d, DRAFT)(gamma), direct)


@pytest.mark.slow
def test_evaluator_takes_new_values_without_recompiling():
    d = Deployment.create(TARGET, A100, WORKLOAD, 0.8)
    evaluate = Evaluator(d, DRAFT, 4.0, smooth=16.0)
    before = _throughput_packed._cache_size()
    other = Deployment.create(
        models.get("llama-2-13b"), "h100", Workload.create(64, 1024, 512), 0.6, tp=4
    )
    bigger = models.get("tinyllama-1.1b")
    assert_same_report(evaluate(), _throughput(d, DRAFT, 4.0, 16.0, 8))
    assert_same_report(evaluate(7.0, speculator=bigger), _throughput(d, bigger, 7.0, 16.0, 8))
    assert_same_report(evaluate(deployment=other), _throughput(other, DRAFT, 4.0, 16.0, 8))
    assert _throughput_packed._cache_size() == before


def test_evaluator_rejects_bad_values_and_other_structures():
    d = Deployment.create(TARGET, A100, WORKLOAD, 0.8)
    evaluate = Evaluator(d, DRAFT)
    for bad in (-1.0, float("nan"), float("inf"), "4"):
        with pytest.raises(ValueError, match="gamma"):
            evaluate(bad)
    with pytest.raises(ValueError):
        evaluate(speculator="llama-68m")
    with pytest.raises(ValueError, match="structure"):
        evaluate(deployment=Deployment.create(TARGET, A100, WORKLOAD, [0.9, 0.8]))
    with pytest.raises(ValueError, match="positive"):
        evaluate(speculator=DRAFT.replace(d_model=-1.0))
    with pytest.raises(ValueError, match="deployment must be a Deployment"):
        Evaluator(TARGET, DRAFT)


def test_a_new_lookahead_is_held_to_predicts_limits():
    # The fast path checked only gamma >= 0: a 3-head Medusa was priced at gamma 10 and a
    # draft at gamma 5000, both of which predict refuses.
    d = Deployment.create(TARGET, A100, WORKLOAD, 0.8)
    medusa = Evaluator(d, specsim.speculators.Medusa.create(n_heads=3.0), 2.0)
    assert float(medusa(3.0).gamma) == 3.0  # up to the head count, and then below it
    assert float(medusa(1.5).gamma) == 1.5
    with pytest.raises(ValueError, match="Medusa with 3 heads drafts at most"):
        medusa(10.0)
    with pytest.raises(
        ValueError, match=r"gamma 5000: out of range; valid: real numbers in \[0, 1024\]"
    ):
        Evaluator(d, DRAFT, 4.0)(5000.0)


@pytest.mark.slow
def test_traced_inputs_take_the_general_path():
    d = Deployment.create(TARGET, A100, WORKLOAD, 0.8)
    gammas = jnp.asarray([1.0, 2.0, 5.0])
    batched = jax.vmap(lambda g: specsim.predict(d, DRAFT, g).tokens_per_s)(gammas)
    loop = [float(specsim.predict(d, DRAFT, float(g)).tokens_per_s) for g in gammas]
    np.testing.assert_allclose(batched, loop, rtol=1e-6)
    grad = jax.grad(lambda g: specsim.predict(d, DRAFT, g, smooth=16.0).tokens_per_s)(3.0)
    assert np.isfinite(grad)
    with pytest.raises(ValueError, match="concrete"):
        jax.jit(lambda g: Evaluator(d, DRAFT, g)().tokens_per_s)(3.0)


@pytest.mark.slow
def test_concrete_batched_inputs_keep_their_shapes():
    d = Deployment.create(TARGET, A100, Workload.create(batch=np.asarray([1.0, 8.0, 64.0])), 0.8)
    report = specsim.predict(d, DRAFT, 4.0)
    assert report.tokens_per_s.shape == (3,) and report.fits.dtype == bool
    direct = _throughput(d, DRAFT, 4.0, None, 8)
    np.testing.assert_array_equal(report.tokens_per_s, direct.tokens_per_s)


@pytest.mark.slow
def test_trees_and_speculators_take_the_packed_path_with_integer_leaves():
    tree_acceptance = specsim.TreeAcceptance.from_top1([0.8, 0.75, 0.7, 0.7], ranks=4)
    d = Deployment.create(TARGET, A100, WORKLOAD, tree_acceptance)
    eagle = specsim.speculators.Eagle.create()
    tree = specsim.TokenTree.from_branching([2, 2, 1])
    assert np.asarray(tree.parent).dtype.kind == "i"  # integer leaves travel as integers
    direct = _throughput(d, eagle, tree, None, 8)
    assert_same_report(specsim.predict(d, eagle, tree), direct)
    evaluate = Evaluator(d, eagle, tree)
    assert_same_report(evaluate(), direct)
    other = specsim.TokenTree.from_branching([1, 3, 2])  # 10 nodes, depth 3, other shape
    assert_same_report(evaluate(other), _throughput(d, eagle, other, None, 8))
    dynamic = specsim.DynamicTree.create([3, 4, 4, 2])
    assert_same_report(specsim.predict(d, eagle, dynamic), _throughput(d, eagle, dynamic, None, 8))


def test_a_report_that_is_not_finite_is_refused_as_throughput_refuses_it():
    # Every input is range-checked, so no valid deployment overflows today; the program's
    # output is replaced to check that the fast path still names the field, as
    # `specsim.throughput` does, instead of returning NaN.
    evaluate = Evaluator(Deployment.create(TARGET, A100, WORKLOAD, 0.8), DRAFT)
    good = np.asarray(evaluate._executable(evaluate._floats, evaluate._integers))
    assert np.isfinite(good).all()
    field = list(specsim.ThroughputReport.__dataclass_fields__).index("tokens_per_s")
    assert field == 0  # (the packed vector starts with the report's first field)
    bad = good.copy()
    bad[field] = np.inf
    evaluate._executable = lambda floats, integers: bad
    with pytest.raises(ValueError, match="tokens_per_s inf: not finite in float32"):
        evaluate(3.0)


@pytest.mark.parametrize("poll_s", [0.0, 1e-3])
def test_host_result_is_the_array_polled_or_not(monkeypatch, poll_s):
    # Polling only changes when the caller looks; the values are the device's.
    from specsim import _throughput

    monkeypatch.setattr(_throughput, "_POLL_S", poll_s)
    values = jnp.arange(5.0) * 1.5
    np.testing.assert_array_equal(_throughput.host_result(values), np.arange(5.0) * 1.5)
