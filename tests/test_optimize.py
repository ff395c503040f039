"""Draft search: certified against the exhaustive grid, buildable, finite, sensitive, clear."""

from __future__ import annotations

import argparse
import io
import json
import math
from contextlib import redirect_stdout

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import assert_close, compilations
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.test_util import check_grads

import specsim
from specsim import hardware, models
from specsim._draft import (
    DraftBounds,
    DraftParams,
    DraftTemplate,
    build_draft,
    buildable_draft,
    buildable_points,
)
from specsim._optimize import (
    Scenario,
    _evaluate,
    _objective,
    decode,
    grid_search,
    grid_search_scenarios,
    optimize_draft,
    optimize_scenarios,
)
from specsim.cli.optimize import (
    OPTIMIZE_JSON_KEYS,
    _optimize_payload,
    _print_optimize,
    add_optimize_arguments,
    run_optimize,
)

# The acceptance criterion: the optimiser's buildable answer is within 0.5% of the grid's best.
MAX_GAP = 0.005

# (target, chip, tp, batch): 1B-70B targets, GPUs and TPUs, batch 1-256.
CASES = [
    ("llama-3.2-1b", "h100", 1, 1),
    ("llama-3.2-1b", "l4", 1, 16),
    ("llama-3.2-3b", "tpu-v5e", 1, 4),
    ("llama-3-8b", "h100", 1, 1),
    ("llama-3-8b", "a100-80gb", 1, 8),
    ("llama-3-8b", "tpu-v5p", 1, 32),
    ("llama-3-8b", "mi300x", 1, 64),
    ("llama-3-8b", "h200", 1, 256),
    ("qwen2.5-14b", "h100", 1, 2),
    ("qwen2.5-14b", "tpu-v4", 2, 16),
    ("llama-2-13b", "l40s", 1, 1),
    ("qwen2.5-32b", "b200", 1, 128),
    ("llama-3-70b", "h100", 4, 1),
    ("llama-3-70b", "tpu-v5p", 4, 64),
    ("llama-3-70b", "mi300x", 2, 16),
    ("llama-3-70b", "h200", 8, 256),
]


def _sdsl(target: str):
    tokens = models.train_tokens(target)
    return specsim.SDSLAcceptance.create(tokens, tokens)


def _scenario(target, chip, tp, batch, acceptance, **kwargs):
    return Scenario.create(
        models.get(target),
        hardware.get(chip),
        specsim.Workload.create(batch, 512, 256),
        acceptance,
        tp=tp,
        **kwargs,
    )


def _no_room(scenario: Scenario) -> Scenario:
    """``scenario`` on a chip with just enough HBM for the target alone."""
    context = 512 + 256 + float(scenario.bounds.max_gamma)
    target_bytes = float(specsim.memory_footprint(scenario.target, 1.0, context).total_bytes)
    chip = scenario.hardware.replace(hbm_capacity_bytes=target_bytes * 1.001)
    return scenario.replace(hardware=chip)


@pytest.fixture(scope="module")
def suite():
    """32 scenarios (16 SDSL, 16 constant alpha), optimised and grid-searched in batches.

    It takes about 20 s on a 2-core machine, so every test that uses it is marked slow.

    A 33rd, infeasible scenario (no room for any draft) rides along in the SDSL batch: it
    must not disturb the others. Returns the 32 feasible ones and the infeasible result.
    """
    scenarios = [_scenario(*case, _sdsl(case[0])) for case in CASES] + [
        _scenario(*case, specsim.ConstantAcceptance.create(0.75)) for case in CASES
    ]
    results = optimize_scenarios([*scenarios, _no_room(scenarios[3])])
    return scenarios, results[: len(scenarios)], grid_search_scenarios(scenarios), results[-1]


@pytest.mark.slow
def test_optimiser_matches_exhaustive_grid(suite):
    scenarios, results, grids, _ = suite
    assert len(scenarios) >= 20
    gaps = np.array(
        [
            1.0 - float(r.tokens_per_s) / float(g.tokens_per_s)
            for r, g in zip(results, grids, strict=True)
        ]
    )
    assert all(r.feasible for r in results) and all(g.feasible for g in grids)
    assert gaps.max() <= MAX_GAP, gaps
    # The grid is the exhaustive best over the same buildable set: nothing can beat it.
    assert gaps.min() >= -1e-5


@pytest.mark.slow
def test_search_uses_ten_times_fewer_evaluations_than_grid(suite):
    _, results, grids, _ = suite
    ratios = [g.evaluations / r.evaluations for r, g in zip(results, grids, strict=True)]
    assert min(ratios) >= 10.0


@pytest.mark.slow
def test_answers_are_buildable_and_inside_bounds(suite):
    scenarios, results, _, _ = suite
    for scenario, r in zip(scenarios, results, strict=True):
        b, spec = scenario.bounds, r.draft_spec
        n_layers, d_model, gamma = (
            float(x) for x in (r.draft.n_layers, r.draft.d_model, r.draft.gamma)
        )
        assert n_layers == round(n_layers) and gamma == round(gamma)
        assert d_model % float(scenario.template.head_dim) == 0
        heads, kv_heads = float(spec.n_heads), float(spec.n_kv_heads)
        assert heads == round(heads) and kv_heads == round(kv_heads) and heads % kv_heads == 0
        assert float(b.min_layers) <= n_layers <= float(b.max_layers)
        assert float(b.min_d_model) <= d_model <= float(b.max_d_model)
        assert float(b.min_aspect) <= d_model / n_layers <= float(b.max_aspect)
        assert float(b.min_gamma) <= gamma <= float(b.max_gamma)
        assert bool(r.report.fits)
        assert np.isfinite(float(r.tokens_per_s)) and float(r.speedup) > 1.0


@pytest.mark.slow
def test_reported_numbers_agree_with_public_throughput(suite):
    scenarios, results, _, _ = suite
    scenario, r = scenarios[3], results[3]  # Llama-3-8B on an H100, SDSL
    report = specsim.throughput(
        scenario.target,
        jax.tree.map(float, r.draft_spec),
        scenario.hardware,
        scenario.workload,
        float(r.draft.gamma),
        scenario.acceptance,
    )
    assert_close(r.tokens_per_s, report.tokens_per_s)
    assert_close(r.speedup, report.speedup)


@pytest.mark.slow
def test_constant_alpha_picks_the_smallest_draft(suite):
    scenarios, results, _, _ = suite
    for scenario, r in zip(scenarios[len(CASES) :], results[len(CASES) :], strict=True):
        smallest = buildable_points(scenario.bounds, scenario.template)[0]
        assert float(r.draft.n_layers) == smallest[0]
        assert float(r.draft.d_model) == smallest[1]


@pytest.mark.slow
def test_sdsl_buys_a_bigger_draft_than_constant_alpha(suite):
    _, results, _, _ = suite
    sdsl, constant = results[3], results[3 + len(CASES)]
    assert float(sdsl.draft_spec.parameter_count) > float(constant.draft_spec.parameter_count)


@pytest.mark.slow
def test_elasticities_match_finite_differences(suite):
    scenarios, results, _, _ = suite
    scenario, r = scenarios[6], results[6]  # batch 64: several resources matter

    @jax.jit  # one compiled program for the five evaluations
    def log_tokens_jit(hw):
        report = _evaluate(scenario.replace(hardware=hw), r.draft, r.draft_spec, None)
        return jnp.log(report.tokens_per_s)

    def log_tokens(hw):
        return float(log_tokens_jit(hw))

    base = log_tokens(scenario.hardware)
    for name in ("hbm_bytes_per_s", "bf16_flops_per_s", "kernel_launch_s", "step_overhead_s"):
        value = getattr(scenario.hardware, name)
        bumped = scenario.hardware.replace(**{name: value * 1.001})
        numeric = (log_tokens(bumped) - base) / math.log(1.001)
        # float32 differences of log tokens/s over a 0.1% step: ~1e-3 absolute noise.
        assert_close(getattr(r.elasticities, name), numeric, rtol=0.0, atol=3e-3)


@pytest.mark.slow
def test_elasticities_obey_scaling_identities(suite):
    scenarios, results, _, _ = suite
    for scenario, r in zip(scenarios, results, strict=True):
        e = r.elasticities
        # Bandwidth and its efficiency enter only as a product, likewise peak and efficiency.
        assert_close(e.hbm_bytes_per_s, e.memory_efficiency, rtol=1e-3, atol=1e-5)
        assert_close(e.bf16_flops_per_s, e.compute_efficiency, rtol=1e-3, atol=1e-5)
        # Speeding up every rate by k and shortening every latency by k makes tokens/s k times
        # larger (no speculation overhead in these scenarios): rates - latencies = 1.
        # (fp32: few-row matmuls may run as GEMVs on the vector units)
        rates = sum(
            float(getattr(e, n))
            for n in (
                "hbm_bytes_per_s",
                "bf16_flops_per_s",
                "fp32_flops_per_s",
                "interconnect_bytes_per_s",
            )
        )
        latencies = sum(
            float(getattr(e, n))
            for n in ("kernel_launch_s", "step_overhead_s", "interconnect_latency_s")
        )
        # (with tensor parallelism the runtime's all-reduce floors are latencies too, and
        # they belong to the software stack, not the chip)
        if float(scenario.tp) == 1.0:
            assert_close(rates - latencies, 1.0, rtol=0.0, atol=2e-3)
        assert float(e.hbm_capacity_bytes) == 0.0


# --------------------------------------------------------------------------- the search


@pytest.mark.slow
def test_seed_reproducible_and_no_recompile(suite):
    scenarios, _, _, _ = suite
    first = optimize_scenarios(scenarios[3:4])
    other_chip = scenarios[3].replace(hardware=hardware.get("h200"))
    with compilations() as compiled:
        second = optimize_scenarios([other_chip])
    assert compiled == []
    again = optimize_scenarios(scenarios[3:4])
    assert float(again[0].tokens_per_s) == float(first[0].tokens_per_s)
    assert float(second[0].tokens_per_s) != float(first[0].tokens_per_s)


@pytest.mark.slow
def test_any_optax_optimizer_and_training_tokens_under_a_budget():
    """A chained optax optimizer searching size and (budgeted) training tokens."""
    target = models.get("llama-3-8b")
    budget = 1e20
    bounds = DraftBounds.create(target, max_train_tokens=2e12, train_flops_budget=budget)
    args = (
        target,
        hardware.get("a100-80gb"),
        specsim.Workload.create(4, 512, 256),
        _sdsl("llama-3-8b"),
    )
    optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(0.1))
    r = optimize_draft(*args, bounds=bounds, optimizer=optimizer, steps=80, restarts=3)
    g = grid_search(*args, bounds=bounds)
    assert 1.0 - float(r.tokens_per_s) / float(g.tokens_per_s) <= MAX_GAP
    # More tokens always help in the law, so the answer takes all the budget allows.
    n_params = float(r.draft_spec.parameter_count)
    assert_close(r.draft.train_tokens, min(2e12, budget / (6.0 * n_params)), rtol=1e-4)
    assert r.objective_history.shape == (80,)
    assert r.objective_history[-1] >= r.objective_history[0]
    with pytest.raises(ValueError, match="only change acceptance under the SDSL law"):
        Scenario.create(*args[:3], specsim.ConstantAcceptance.create(0.7), bounds=bounds)


# --------------------------------------------------------------------------- gradients


@jax.jit
def _objective_on_grid(scenario, z):
    return jax.vmap(jax.value_and_grad(lambda zi: _objective(zi, scenario, 16.0)))(z)


_EDGE = [-30.0, -8.0, -2.0, 0.0, 2.0, 8.0, 30.0]


@pytest.mark.slow
@pytest.mark.parametrize(
    "scenario",
    [
        ("llama-3-8b", "h100", 1, 1, "sdsl"),
        ("llama-3-70b", "tpu-v5p", 4, 256, "sdsl"),
        ("llama-3.2-1b", "l4", 1, 64, "constant"),
        ("llama-3-8b", "tpu-v5e", 1, 16, "sdsl+tokens"),
    ],
)
def test_search_gradients_finite_everywhere_in_bounds(scenario):
    target, chip, tp, batch, kind = scenario
    acceptance = specsim.ConstantAcceptance.create(0.9) if kind == "constant" else _sdsl(target)
    bounds = None
    if kind == "sdsl+tokens":  # training tokens under a FLOP budget
        bounds = DraftBounds.create(models.get(target), train_flops_budget=1e20)
    s = _scenario(target, chip, tp, batch, acceptance, bounds=bounds)
    # From deep in one sigmoid tail to deep in the other on every axis: corners of the
    # region (smallest and largest drafts, gamma 0 and gamma max) and its interior.
    z = jnp.asarray(np.stack(np.meshgrid(_EDGE, _EDGE, _EDGE), -1).reshape(-1, 3), jnp.float32)
    values, grads = _objective_on_grid(s, z)
    assert np.all(np.isfinite(np.asarray(values)))
    assert np.all(np.isfinite(np.asarray(grads)))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-40.0, 40.0), min_size=3, max_size=3))
def test_decode_lands_inside_the_bounds(z):
    bounds = DraftBounds.create(models.get("llama-3-70b"), max_aspect=200.0, max_gamma=10.0)
    p = decode(jnp.asarray(z, jnp.float32), bounds)
    slack = 1.0 + 1e-5  # float32 exp(log(x)) round trip
    assert 2.0 / slack <= float(p.n_layers) <= 32.0 * slack
    assert 256.0 / slack <= float(p.d_model) <= 8192.0 * slack
    assert 32.0 / slack <= float(p.aspect_ratio) <= 200.0 * slack
    assert 0.0 <= float(p.gamma) <= 10.0


@pytest.mark.slow
def test_objective_gradient_matches_finite_differences(x64):
    s = _scenario("llama-3-8b", "h100", 1, 8, _sdsl("llama-3-8b"))
    s = jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), s)
    z = jnp.asarray([0.3, -0.4, 0.2], jnp.float64)
    objective = jax.jit(lambda zi: _objective(zi, s, 16.0))
    # The p = 16 smooth roofline max bends sharply near its kink, so central differences
    # with eps = 1e-4 carry ~1e-4 relative error there.
    check_grads(objective, (z,), order=1, modes=["rev"], eps=1e-4, atol=1e-3, rtol=1e-3)


# --------------------------------------------------------------------------- template


def test_template_follows_the_target_and_takes_overrides():
    target = models.get("llama-3-70b")
    t = DraftTemplate.from_target(target)
    assert float(t.head_dim) == 128 and float(t.kv_group) == 8 and float(t.vocab) == 128256
    assert_close(t.ffn_ratio, 28672 / 8192)
    assert float(DraftTemplate.from_target(target, ffn_ratio=4.0).ffn_ratio) == 4.0
    with pytest.raises(ValueError, match="unknown DraftTemplate field"):
        DraftTemplate.from_target(target, depth=3)
    with pytest.raises(ValueError, match="whole multiple of head_dim"):
        DraftTemplate.from_target(target, width_step=100.0)


def test_continuous_and_buildable_drafts_agree_on_whole_kv_groups():
    t = DraftTemplate.from_target(models.get("llama-3-8b"))
    p = DraftParams(n_layers=4.0, d_model=1024.0, gamma=3.0)
    continuous, buildable = build_draft(p, t), buildable_draft(p, t)
    assert_close(continuous.parameter_count, buildable.parameter_count)
    odd = buildable_draft(DraftParams(n_layers=2.0, d_model=640.0, gamma=3.0), t)
    assert float(odd.n_heads) == 5 and float(odd.n_kv_heads) == 5  # gcd(5, 4) = 1: MHA


def test_bounds_validation():
    target = models.get("llama-3-8b")
    with pytest.raises(ValueError, match=r"min_layers .* is above max_layers"):
        DraftBounds.create(target, min_layers=8, max_layers=4)
    with pytest.raises(ValueError, match="min_gamma must be finite and >= 0"):
        DraftBounds.create(target, min_gamma=-1)


# --------------------------------------------------------------------------- infeasible


def test_target_that_does_not_fit_is_a_clear_error():
    with pytest.raises(ValueError, match=r"the target does not fit: .* GB per chip"):
        optimize_draft(
            models.get("llama-3-70b"),
            hardware.get("h100"),
            specsim.Workload.create(1, 512, 256),
            _sdsl("llama-3-70b"),
        )


def test_bounds_without_a_buildable_draft_are_a_clear_error():
    target = models.get("llama-3-8b")
    bounds = DraftBounds.create(target, max_layers=2, max_aspect=40.0)
    with pytest.raises(ValueError, match="exclude every buildable draft"):
        optimize_draft(
            target,
            hardware.get("h100"),
            specsim.Workload.create(),
            specsim.ConstantAcceptance.create(0.8),
            bounds=bounds,
        )


@pytest.mark.slow
def test_no_room_for_a_draft_is_a_clear_error_and_batches_go_on(suite):
    scenarios, results, _, rider = suite
    assert not rider.feasible and "no draft within the bounds fits beside" in rider.message
    assert np.isfinite(float(rider.tokens_per_s))
    assert all(r.feasible and r.message == "" for r in results)
    tight = _no_room(scenarios[3])
    with pytest.raises(ValueError, match="no draft within the bounds fits beside the target"):
        optimize_draft(tight.target, tight.hardware, tight.workload, tight.acceptance)


# --------------------------------------------------------------------------- CLI


def _run_cli(argv):
    parser = argparse.ArgumentParser()
    add_optimize_arguments(parser)
    out = io.StringIO()
    with redirect_stdout(out):
        code = run_optimize(parser.parse_args(argv))
    return code, out.getvalue()


@pytest.mark.slow
def test_cli_default_prints_a_readable_answer():
    code, text = _run_cli([])
    assert code == 0
    for expected in (
        "Llama-3-8B on 1 x H100 SXM",
        "SDSL",
        "Recommended draft",
        "Lookahead gamma",
        "tokens/s",
        "speedup",
        "Bottleneck",
        "Sensitivities",
        "HBM bandwidth",
    ):
        assert expected in text


@pytest.mark.slow
def test_cli_json_has_the_documented_keys_and_certifies():
    code, text = _run_cli(["--json", "--certify", "--batch", "4"])
    assert code == 0
    payload = json.loads(text)
    assert list(payload) == list(OPTIMIZE_JSON_KEYS)
    assert payload["schema"] == "specsim.optimize/1"
    assert payload["certificate"]["gap"] <= MAX_GAP
    assert payload["certificate"]["evaluation_ratio"] >= 10
    assert payload["draft"]["d_model"] % payload["draft"]["head_dim"] == 0


@pytest.mark.slow
def test_cli_text_for_constant_alpha_says_size_does_not_matter(suite):
    scenarios, results, _, _ = suite
    i = len(CASES) + 3  # Llama-3-8B on an H100, constant alpha
    parser = argparse.ArgumentParser()
    add_optimize_arguments(parser)
    args = parser.parse_args(["--alpha", "0.75"])
    payload = _optimize_payload(
        args, results[i], scenarios[i].bounds, scenarios[i].acceptance, 1.0, 100, 4, 0.08, None
    )
    assert list(payload) == list(OPTIMIZE_JSON_KEYS)
    assert payload["acceptance"] == {"model": "constant", "alpha": 0.75, "size_sensitive": False}
    out = io.StringIO()
    with redirect_stdout(out):
        _print_optimize(payload)
    assert "does not change acceptance" in out.getvalue()
    assert "--draft 2x256 --alpha 0.75" in out.getvalue()


@pytest.mark.slow
def test_cli_reports_the_searched_training_tokens_everywhere():
    # With a training-compute budget the search picks the draft's tokens (30.4B here); the
    # header and JSON said the starting 15T, and the suggested schedule command priced that.
    argv = ["--draft-train-flops", "1e20", "--draft-max-train-tokens", "1e12"]
    argv += ["--steps", "5", "--restarts", "1"]
    code, text = _run_cli([*argv, "--json"])
    payload = json.loads(text)
    searched = payload["draft"]["train_tokens"]
    assert code == 0 and searched < 1e12
    assert payload["acceptance"]["draft_train_tokens"] == pytest.approx(searched, rel=1e-6)
    assert payload["acceptance"]["draft_train_tokens_searched"] is True
    out = io.StringIO()
    with redirect_stdout(out):
        _print_optimize(payload)
    assert f"--draft-train-tokens {payload['acceptance']['draft_train_tokens']:g}" in out.getvalue()
    assert ", as searched," in out.getvalue()


@pytest.mark.slow
def test_cli_infeasible_request_raises_value_error():
    with pytest.raises(ValueError, match="does not fit"):
        _run_cli(["--target", "llama-3-70b"])


@pytest.mark.parametrize(
    ("smooth", "message"),
    [
        (0, r"smooth 0: out of range; valid: None or a number in \[0.1, "),  # was a deep error
        (-1, r"smooth -1: out of range"),  # was searched (4x the true sharpness's answer)
        (float("nan"), r"smooth nan: out of range"),  # was searched as if 16
        (True, r"smooth True: not a number"),  # was searched as p = 1
        ("x", r"smooth 'x': not a number"),  # was "could not convert string to float"
    ],
)
def test_optimize_draft_smooth_is_checked_like_throughputs(smooth, message):
    """Issue 11: ``optimize_draft(smooth=)`` follows `hardware.check_smooth`, before any work."""
    target = models.get("llama-3-8b")
    with pytest.raises(ValueError, match=message):
        specsim.optimize_draft(
            target,
            hardware.get("h100"),
            specsim.Workload.create(1, 512, 256),
            specsim.ConstantAcceptance.create(0.8),
            smooth=smooth,
        )


def test_cpu_compile_options_this_jaxlib_does_not_know_are_left_out():
    """The searches' fast-compile options are XLA debug options, which come and go between
    jaxlib versions; XLA refuses to compile a program that names an unknown one."""
    from specsim._fast_jit import _CPU_COMPILER_OPTIONS, _backend_jit, cpu_compiler_options

    wanted = {"xla_backend_optimization_level": 0, "xla_no_such_option_in_any_xla": True}
    assert cpu_compiler_options(wanted) == {"xla_backend_optimization_level": 0}
    # The options in use are all known here, and a search compiled with them runs.
    assert cpu_compiler_options(_CPU_COMPILER_OPTIONS) == _CPU_COMPILER_OPTIONS
    double = _backend_jit(lambda x: 2 * x, cpu_options={"xla_no_such_option_in_any_xla": 1})
    assert float(double(3.0)) == 6.0
    jitted, options = double.jitted()
    on_cpu = jax.default_backend() == "cpu"
    assert options == (_CPU_COMPILER_OPTIONS if on_cpu else None)
    assert float(jitted(1.0)) == 2.0


def test_a_fast_compile_jit_composes_inside_other_transformations():
    """Compiler options belong to a top-level program: called inside a caller's jit, vmap
    or grad, a `_backend_jit` function is an ordinary nested jit (without the fallback,
    the jit case raises "compiler_options can only be passed to top-level jax.jit")."""
    from specsim._fast_jit import _backend_jit, _top_level

    assert _top_level()  # JAX's private test is still there (else the options are lost)
    cube = _backend_jit(lambda x: x**3)
    assert float(cube(2.0)) == 8.0
    assert float(jax.jit(lambda x: cube(x) + 1.0)(2.0)) == 9.0
    np.testing.assert_array_equal(np.asarray(jax.vmap(cube)(jnp.arange(3.0))), [0.0, 1.0, 8.0])
    assert float(jax.grad(cube)(2.0)) == 12.0
