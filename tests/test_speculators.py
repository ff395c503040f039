"""Speculation methods through the one throughput core: EAGLE, Medusa, MTP, n-gram, self."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import assert_close, compilations

import specsim
from specsim import (
    Deployment,
    DynamicTree,
    PositionalAcceptance,
    TokenTree,
    TreeAcceptance,
    Workload,
    hardware,
    models,
)
from specsim.speculators import MTP, Eagle, Medusa, Ngram, SelfSpeculation, method_name

TARGET = models.get("llama-3-8b")
H100 = hardware.get("h100")
WORKLOAD = Workload.create(batch=4, prompt_tokens=512, generate_tokens=256)
TREE_ACC = TreeAcceptance.from_top1([0.8, 0.75, 0.72, 0.7, 0.68, 0.65], ranks=6, decay=0.8)
CHAIN_ACC = PositionalAcceptance.create(TREE_ACC.top1)

SPECULATORS = {
    "draft": models.get("llama-3.2-1b"),
    "eagle": Eagle.create(version=2),
    "eagle3": Eagle.create(version=3),
    "medusa": Medusa.create(n_heads=5),
    "mtp": MTP.create(),
    "ngram": Ngram.create(match_probability=0.7),
    "self": SelfSpeculation.create(draft_layers=12, kv_budget_tokens=256),
}


def _deployment(acceptance=TREE_ACC, workload=WORKLOAD, **kwargs):
    return Deployment.create(TARGET, H100, workload, acceptance, **kwargs)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SPECULATORS))
def test_every_method_predicts_a_chain_with_finite_values_and_gradients(name):
    spec = SPECULATORS[name]
    assert method_name(spec) == name
    d = _deployment()
    report = specsim.predict(d, spec, 4.0)
    assert float(report.speedup) > 1.0, name
    for field in report.__dataclass_fields__:
        assert np.all(np.isfinite(np.asarray(getattr(report, field)))), (name, field)
    grads = jax.grad(
        lambda dep, s: specsim.predict(dep, s, 4.0, smooth=16.0).tokens_per_s, argnums=(0, 1)
    )(d, spec)
    for leaf in jax.tree.leaves(grads):
        assert np.all(np.isfinite(np.asarray(leaf))), name


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in SPECULATORS if n != "ngram"])
def test_every_tree_method_predicts_trees(name):
    spec = SPECULATORS[name]
    d = _deployment()
    tree = DynamicTree.create([4, 6, 4, 2])
    report = specsim.predict(d, spec, tree)
    assert float(report.gamma) == 16.0 and float(report.verified_tokens) == 17.0
    chain = specsim.predict(d, spec, 4.0)
    assert float(report.expected_tokens_per_step) > float(chain.expected_tokens_per_step)
    built = specsim.predict(d, spec, tree.to_token_tree(TREE_ACC))
    assert_close(float(built.tokens_per_s), float(report.tokens_per_s), rtol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["draft", "eagle", "mtp", "self", "medusa"])
def test_a_tree_of_branching_one_equals_the_chain(name):
    spec = SPECULATORS[name]
    chain = specsim.predict(_deployment(CHAIN_ACC), spec, 4.0)
    for tree in (TokenTree.chain(4), DynamicTree.create([1, 1, 1, 1])):
        as_tree = specsim.predict(_deployment(), spec, tree)
        # Four passes summed instead of one multiplied by four: float32 rounding only.
        for field in ("tokens_per_s", "iteration_s", "verify_step_s", "expected_tokens_per_step"):
            assert_close(float(getattr(as_tree, field)), float(getattr(chain, field)), rtol=1e-6)


@pytest.mark.slow
def test_ngram_that_always_matches_is_a_free_draft():
    d = _deployment(CHAIN_ACC, speculation_overhead_s=2e-4)
    ngram = specsim.predict(d, Ngram.create(match_probability=1.0, lookup_s=0.0), 5.0)
    draft = specsim.predict(d, SPECULATORS["draft"], 5.0)
    # Same verification and acceptance as the draft model, no drafting time at all.
    free = float(WORKLOAD.batch) * float(draft.expected_tokens_per_step)
    free /= float(draft.verify_step_s) + 2e-4
    assert_close(float(ngram.tokens_per_s), free, rtol=1e-6)
    assert float(ngram.proposal_s) == 0.0


@pytest.mark.slow
def test_ngram_without_matches_is_plain_decoding():
    d = _deployment(CHAIN_ACC)
    report = specsim.predict(d, Ngram.create(match_probability=0.0, lookup_s=0.0), 5.0)
    assert_close(float(report.speedup), 1.0, rtol=1e-6)


def test_ngram_mixes_matched_and_plain_iterations():
    d = _deployment(0.7)
    p = 0.4
    report = specsim.predict(d, Ngram.create(match_probability=p), 3.0)
    matched = 1 + 0.7 + 0.7**2 + 0.7**3
    assert_close(float(report.expected_tokens_per_step), p * matched + (1 - p), rtol=1e-6)
    assert_close(float(report.verified_tokens), 1 + p * 3.0, rtol=1e-6)
    host = float(WORKLOAD.batch) * 5e-6  # DEFAULT_LOOKUP_S per sequence
    assert_close(float(report.proposal_s), host, rtol=1e-6)


@pytest.mark.slow
def test_eagle_pass_is_one_target_layer_plus_the_fusion_matmul():
    d = _deployment(CHAIN_ACC, workload=Workload.create(1, 512, 256))
    report = specsim.predict(d, Eagle.create(version=1), 3.0)
    layer = TARGET.replace(n_layers=1.0)
    contexts = 512 + 256 * (np.polynomial.legendre.leggauss(8)[0] + 1) / 2
    weights = np.polynomial.legendre.leggauss(8)[1] / 2
    layer_s = sum(
        w * float(specsim.step_time(layer, H100, 1.0, 1.0, c).time_s)
        for c, w in zip(contexts, weights, strict=True)
    )
    # Fusion FC, 2d x d bf16 weights, memory-bound at batch 1, plus one kernel launch.
    d_model = float(TARGET.d_model)
    fc_bytes = 2 * d_model**2 * 2.0 + 3 * d_model * 2.0
    fc_s = fc_bytes / (float(H100.hbm_bytes_per_s) * float(H100.memory_efficiency))
    fc_s += float(H100.kernel_launch_s)
    assert_close(float(report.draft_step_s), layer_s + fc_s, rtol=1e-5)
    assert_close(float(report.proposal_s), 3 * (layer_s + fc_s), rtol=1e-5)


@pytest.mark.slow
def test_eagle3_reads_a_smaller_lm_head_than_eagle1_on_a_large_vocabulary():
    d = _deployment(CHAIN_ACC, workload=Workload.create(1, 512, 256))
    e1 = specsim.predict(d, Eagle.create(version=1), 3.0)
    e3 = specsim.predict(d, Eagle.create(version=3), 3.0)
    assert float(e3.draft_step_s) < float(e1.draft_step_s)
    # EAGLE-1 shares the target's head (no extra memory); EAGLE-3 holds its own.
    assert float(e3.memory_per_chip_bytes) > float(e1.memory_per_chip_bytes)


@pytest.mark.slow
def test_mtp_pass_equals_an_eagle1_pass():
    d = _deployment(CHAIN_ACC)
    mtp = specsim.predict(d, MTP.create(), 3.0)
    eagle = specsim.predict(d, Eagle.create(version=1), 3.0)
    assert_close(float(mtp.draft_step_s), float(eagle.draft_step_s))
    more = specsim.predict(d, MTP.create(n_modules=3), 3.0)
    assert float(more.memory_per_chip_bytes) > float(mtp.memory_per_chip_bytes)
    assert_close(float(more.draft_step_s), float(mtp.draft_step_s))


@pytest.mark.slow
def test_medusa_drafts_in_one_pass_whatever_the_depth():
    d = _deployment(CHAIN_ACC)
    heads = Medusa.create(n_heads=5)
    two, five = (specsim.predict(d, heads, g) for g in (2.0, 5.0))
    assert float(two.proposal_s) == float(five.proposal_s) == float(two.draft_step_s)
    with pytest.raises(ValueError, match="at most that many positions"):
        specsim.predict(d, heads, 6.0)
    with pytest.raises(ValueError, match="tree of depth 6"):
        specsim.predict(_deployment(), heads, DynamicTree.create([1, 1, 1, 1, 1, 1]))


@pytest.mark.slow
def test_self_speculation_with_every_layer_costs_a_target_step():
    d = _deployment(CHAIN_ACC)
    full = specsim.predict(d, SelfSpeculation.create(draft_layers=float(TARGET.n_layers)), 2.0)
    assert_close(float(full.draft_step_s), float(full.target_step_s), rtol=1e-6)
    assert float(full.speedup) < 1.0  # drafting with the whole target cannot pay
    long = Workload.create(batch=32, prompt_tokens=16384, generate_tokens=256)
    bounded = SelfSpeculation.create(draft_layers=float(TARGET.n_layers), kv_budget_tokens=512)
    fast = specsim.predict(_deployment(CHAIN_ACC, workload=long), bounded, 2.0)
    slow = specsim.predict(
        _deployment(CHAIN_ACC, workload=long), SelfSpeculation.create(TARGET.n_layers), 2.0
    )
    assert float(fast.draft_step_s) < 0.5 * float(slow.draft_step_s)  # KV-bound at 16k


@pytest.mark.slow
def test_tree_verification_costs_more_at_large_batch():
    tree = DynamicTree.create([8, 16, 16, 8])
    small, large = (
        specsim.predict(_deployment(workload=Workload.create(b, 512, 256)), Eagle.create(), tree)
        for b in (1, 256)
    )
    assert float(small.speedup) > 1.5 > 1.0 > float(large.speedup)
    assert float(large.verify_step_s) > 3 * float(large.target_step_s)


@pytest.mark.slow
def test_jit_does_not_recompile_when_values_change():
    d = _deployment()
    specsim.predict(d, Eagle.create(), DynamicTree.create([3, 4, 2]))
    with compilations() as compiled:
        for chip, layers in (("a100", 2.0), ("v5e", 1.5)):
            specsim.predict(
                d.replace(hardware=hardware.get(chip)),
                Eagle.create(n_layers=layers),
                DynamicTree.create([2.0, 3.5, 1.0], max_width=4),
            )
    assert "_throughput" not in compiled, compiled


@pytest.mark.slow
def test_speculators_stack_and_vmap_like_a_loop():
    heads = [Medusa.create(n_heads=n) for n in (3, 4, 5)]
    stacked = jax.tree.map(lambda *x: jnp.stack(x), *heads)
    d = _deployment(CHAIN_ACC)
    batched = jax.vmap(lambda h: specsim._throughput._throughput(d, h, 3.0).tokens_per_s)(stacked)
    loop = [float(specsim.predict(d, h, 3.0).tokens_per_s) for h in heads]
    assert_close(np.asarray(batched), loop, rtol=1e-6)


@pytest.mark.parametrize(
    "speculator, shape, acceptance, message",
    [
        (Eagle.create(), DynamicTree.create([2, 2]), 0.7, "needs TreeAcceptance"),
        (Ngram.create(), DynamicTree.create([2, 2]), TREE_ACC, "not a token tree"),
        (
            Eagle.create(),
            3.0,
            specsim.SDSLAcceptance.create(1e12, 1e12),
            "SDSLAcceptance predicts a draft model",
        ),
        ("eagle", 3.0, 0.7, "draft must be a TransformerSpec"),
        (Eagle.create(), "3", 0.7, "speculation shape"),
        (Eagle.create(), -1.0, 0.7, "gamma"),
        (SelfSpeculation(draft_layers=40.0), 3.0, 0.7, "must not exceed the target's 32"),
        (Ngram(match_probability=1.5), 3.0, 0.7, r"in \[0, 1\]"),
    ],
)
def test_bad_speculation_inputs_raise_one_line_errors(speculator, shape, acceptance, message):
    with pytest.raises(ValueError, match=message) as info:
        specsim.predict(_deployment(acceptance), speculator, shape)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: Eagle.create(version=4), "version"),
        (lambda: Medusa.create(n_heads=0), "n_heads"),
        (lambda: MTP.create(n_modules=0), "n_modules"),
        (lambda: Ngram.create(lookup_s=-1.0), "lookup_s"),
        (lambda: SelfSpeculation.create(draft_layers=8, kv_budget_tokens=0), "kv_budget"),
    ],
)
def test_constructors_reject_bad_values(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize(
    "target, published",
    # EAGLE (arXiv 2401.15077) Section 4: trainable parameters of the head (FC + one
    # decoder layer). Vicuna-33B's head (0.56B) is smaller than a full layer of its
    # shape and is left out.
    [("llama-2-7b", 0.24e9), ("llama-2-13b", 0.37e9), ("llama-2-70b", 0.99e9)],
)
def test_eagle_head_size_matches_the_paper(target, published):
    from specsim.speculators._protocol import memory_bytes

    d = Deployment.create(target, "a100-80gb", Workload.create(1, 0, 1), 0.7)
    head_bytes = float(memory_bytes(Eagle.create(version=1), d, 1.0, 0.0))
    assert_close(head_bytes / 2.0, published, rtol=0.02)  # bf16: 2 bytes per weight


@pytest.mark.slow
def test_mtp_module_on_an_moe_target_is_an_moe_block():
    from specsim.speculators._protocol import memory_bytes

    target = models.get("deepseek-v3")
    d = Deployment.create(target, "h200", Workload.create(1, 0, 1), 0.8, tp=8)
    module_bytes = float(memory_bytes(MTP.create(), d, 1.0, 0.0)) * 8
    # The checkpoint's module minus the embedding and head copies engines share.
    checkpoint = float(models.mtp_parameter_count(target.replace(n_mtp_layers=1.0)))
    shared = 2.0 * float(target.vocab) * float(target.d_model)
    assert_close(module_bytes, (checkpoint - shared) * float(target.weight_bytes), rtol=1e-5)
    report = specsim.predict(d, MTP.create(), 1.0)
    assert float(report.speedup) > 1.0
