"""specsim.measure: the flax transformer, its KV cache, the timing harness, the device."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import jaxlib
import numpy as np
import pytest
from conftest import assert_close

from specsim import models
from specsim.hardware import HardwareSpec
from specsim.measure import (
    MeasurementPoint,
    ModelConfig,
    build_model,
    forward,
    init_cache,
    layer_skip_draft,
    local_hardware,
    measure_step_times,
    time_calls,
    tiny_spec,
)
from specsim.measure._clock import clock_function
from specsim.measure._device import check_fits

# Builds, compiles and runs real (tiny) networks: the slow tier.
pytestmark = pytest.mark.slow

# Incremental (cached) and one-shot attention sum in different orders.
RTOL_FORWARD = 2e-4


def _param_count(params) -> int:
    """Weight-matrix elements, without norm scales (the cost model's convention)."""
    leaves = jax.tree_util.tree_leaves_with_path(params)
    return sum(
        int(np.prod(leaf.shape))
        for path, leaf in leaves
        if not any("norm" in str(getattr(key, "key", "")) for key in path)
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(n_heads=4, n_kv_heads=2),  # GQA, gated
        dict(n_heads=4, n_kv_heads=4, gated_mlp=False),  # MHA, GELU
        dict(n_heads=4, n_kv_heads=1, vocab=50),  # MQA, odd vocab
    ],
)
def test_network_has_the_parameters_the_cost_model_prices(kwargs):
    spec = tiny_spec(**kwargs)
    model = build_model(spec)
    assert _param_count(model.params) == int(spec.parameter_count)
    assert model.config.to_spec().parameter_count == spec.parameter_count


def test_tied_embeddings_share_the_table():
    spec = tiny_spec().replace(tied_embeddings=1.0)
    model = build_model(spec)
    assert "lm_head" not in model.params
    assert _param_count(model.params) == int(spec.parameter_count)


def test_bf16_network_runs_in_bf16():
    model = build_model(tiny_spec(dtype="bf16"))
    assert model.params["block_0"]["wq"]["kernel"].dtype == jnp.bfloat16
    cache = init_cache(model.config, 1, 4)
    logits, cache = forward(model, jnp.zeros((1, 2), jnp.int32), cache)
    assert logits.dtype == jnp.float32 and cache.keys[0].dtype == jnp.bfloat16


def test_cached_decoding_matches_one_pass_over_the_sequence():
    model = build_model(tiny_spec(n_layers=2), seed=1)
    tokens = jax.random.randint(jax.random.key(0), (2, 9), 0, model.config.vocab)
    full, _ = forward(model, tokens, init_cache(model.config, 2, 9))
    cache = init_cache(model.config, 2, 9)
    logits, cache = forward(model, tokens[:, :4], cache)
    steps = [logits]
    for t in range(4, 9):
        logits, cache = forward(model, tokens[:, t : t + 1], cache)
        steps.append(logits)
    assert_close(jnp.concatenate(steps, axis=1), full, rtol=RTOL_FORWARD, atol=1e-5)
    np.testing.assert_array_equal(cache.positions, [9, 9])


def test_sequences_of_one_batch_can_hold_different_lengths():
    model = build_model(tiny_spec(), seed=2)
    tokens = jax.random.randint(jax.random.key(1), (2, 6), 0, model.config.vocab)
    cache = init_cache(model.config, 2, 8)
    _, cache = forward(model, tokens[:, :5], cache)
    cache = cache.replace(positions=jnp.array([3, 5], jnp.int32))  # sequence 0 rolled back
    step = jnp.stack([tokens[0, 3:4], tokens[1, 5:6]])
    ragged, _ = forward(model, step, cache)
    alone, _ = forward(model, tokens[:1, :4], init_cache(model.config, 1, 8))
    assert_close(ragged[0, 0], alone[0, -1], rtol=RTOL_FORWARD, atol=1e-5)


def test_layer_skip_draft_is_a_prefix_of_the_target():
    target = build_model(tiny_spec(n_layers=3))
    draft = layer_skip_draft(target, 1)
    assert draft.config.n_layers == 1 and "block_1" not in draft.params
    assert draft.params["lm_head"] is target.params["lm_head"]
    assert float(draft.spec.n_layers) == 1.0
    same = layer_skip_draft(target, 3)
    cache = init_cache(target.config, 1, 3)
    tokens = jnp.array([[1, 2, 3]])
    assert_close(forward(same, tokens, cache)[0], forward(target, tokens, cache)[0])
    with pytest.raises(ValueError, match="n_layers"):
        layer_skip_draft(target, 0)


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        (tiny_spec().replace(d_model=32.5), "integer"),
        (tiny_spec(n_heads=4, n_kv_heads=3), "multiple"),
        (tiny_spec().with_dtypes("int8"), "fp32"),
    ],
)
def test_networks_that_cannot_be_built_are_refused(spec, match):
    with pytest.raises(ValueError, match=match):
        build_model(spec)


def test_a_model_too_large_for_the_device_is_refused_before_allocating():
    huge = models.get("llama-3.1-405b").with_dtypes("fp32", compute_dtype="fp32")
    huge = huge.replace(activation_bytes=4.0, kv_bytes=4.0)
    with pytest.raises(ValueError, match="GB"):
        build_model(huge)
    with pytest.raises(ValueError, match="free"):
        check_fits(1e30, "a galaxy")


def test_time_calls_excludes_compilation_and_reports_spread():
    step = jax.jit(lambda x: x @ x)
    timing, _ = time_calls(step, jnp.eye(64), repeats=7, warmup=1)
    assert timing.repeats == 7
    assert 0 < timing.p10_s <= timing.median_s <= timing.p90_s
    assert timing.q25_s <= timing.median_s <= timing.q75_s
    assert timing.compile_s > 0 and timing.iqr_s >= 0
    with pytest.raises(ValueError, match="repeats"):
        time_calls(step, jnp.eye(2), repeats=0)
    with pytest.raises(ValueError, match="clock"):
        clock_function("sundial")


def _tiny_config(**kwargs):
    return ModelConfig.from_spec(tiny_spec(**kwargs))


@pytest.mark.parametrize("rounds", [1, 2])
def test_measure_step_times_returns_one_row_per_point(rounds):
    config = _tiny_config()
    points = [
        MeasurementPoint(config, 1, 1, 8, "decode"),
        MeasurementPoint(config, 2, 3, 8, "verify"),
        MeasurementPoint(config, 1, 16, 0, "prefill"),
    ]
    swept = []
    frame = measure_step_times(
        points, repeats=2, rounds=rounds, progress=False, after_round=swept.append
    )
    assert swept == (list(range(rounds)) if rounds > 1 else [])  # only between sweeps
    assert list(frame["phase"]) == ["decode", "verify", "prefill"]
    assert (frame["median_s"] > 0).all() and (frame["repeats"] >= 2).all()
    assert set(frame.columns) >= {"n_layers", "d_model", "vocab", "dtype", "p10_s", "p90_s"}


def test_speculative_session_runs_rounds_on_demand():
    from specsim.measure._grids import speculative_configs
    from specsim.measure._runs import SpeculativeSession

    configs = speculative_configs("tiny")
    session = SpeculativeSession(configs)  # compiles and warms up, records nothing
    with pytest.raises(ValueError, match="no rounds"):
        session.results()
    session.run_round()
    session.run_round()
    results = session.results()
    assert session.rounds == 2 and len(results) == len(configs)
    for sd, plain in results:
        assert sd.repeats == plain.repeats == 2
        assert sd.tokens_per_step >= 1.0 and plain.tokens_per_step == 1.0
        assert 0.0 <= sd.alpha <= 1.0


def test_bad_grids_get_clear_errors():
    with pytest.raises(ValueError, match="empty"):
        measure_step_times([], progress=False)
    config = _tiny_config()
    with pytest.raises(ValueError, match="phase"):
        MeasurementPoint(config, 1, 1, 8, "train")
    with pytest.raises(ValueError, match="gamma"):
        MeasurementPoint(config, 1, 1, 8, "verify")
    with pytest.raises(ValueError, match="MeasurementPoint"):
        measure_step_times([(config, 1, 1, 8)], progress=False)
    huge = ModelConfig.from_spec(tiny_spec(d_model=64, n_heads=4, n_kv_heads=4))
    with pytest.raises(ValueError, match="GB"):
        measure_step_times([MeasurementPoint(huge, 10**6, 1, 10**6)], progress=False)


def test_local_hardware_is_a_valid_nominal_spec():
    spec = local_hardware()
    assert isinstance(spec, HardwareSpec)
    assert float(spec.fp32_flops_per_s) > 1e8 and float(spec.hbm_bytes_per_s) > 1e8
    assert float(spec.compute_efficiency) == 1.0 and float(spec.memory_efficiency) == 1.0


# --------------------------------------------------------------------------- session


def _session(xla_flags: str) -> tuple[list[str], bool, str]:
    """XLA_FLAGS after `configure_measurement` in a fresh process (JAX not started),
    whether XLA then compiles a 4-row matmul into a YNNPACK fusion, and what the process
    clock's check says (its clock, or its error)."""
    script = """
import os, jax, jax.numpy as jnp
from specsim.measure import configure_measurement
configure_measurement()
print(os.environ["XLA_FLAGS"])
x, w = jnp.ones((4, 512)), jnp.ones((512, 512))
print("ynn_fusion" in jax.jit(jnp.matmul).lower(x, w).compile().as_text())
try:
    print(configure_measurement("process"))
except ValueError as error:
    print(error)
"""
    env = {**os.environ, "XLA_FLAGS": xla_flags, "JAX_PLATFORMS": "cpu"}
    child = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert child.returncode == 0, child.stderr
    flags, ynn, clock = child.stdout.splitlines()
    return flags.split(), ynn == "True", clock


@pytest.mark.slow  # fresh processes with their flag probes (about 20 s)
def test_a_measurement_session_runs_xla_on_one_thread():
    from specsim.measure._session import (
        NO_YNN_FUSIONS_FLAG,
        SINGLE_THREAD_FLAG,
        _jaxlib_version,
        _xla_accepts,
        single_thread_flags,
    )

    # The installed jaxlib's own release, as integers (tuples compare as releases do).
    assert jaxlib.__version__.startswith(".".join(map(str, _jaxlib_version())))
    # XLA refuses a fusion type it does not know: the probe says so instead of aborting.
    assert not _xla_accepts("--xla_cpu_experimental_ynn_fusion_type=no_such_type")
    expected = single_thread_flags()
    assert expected[0] == SINGLE_THREAD_FLAG
    if _jaxlib_version() >= (0, 8, 1):
        assert _xla_accepts(NO_YNN_FUSIONS_FLAG)
        assert NO_YNN_FUSIONS_FLAG in expected  # this jaxlib hands multi-row matmuls to YNNPACK
    flags, ynn, clock = _session("--xla_backend_optimization_level=0")
    assert flags == ["--xla_backend_optimization_level=0", *expected]
    assert not ynn  # the session's multi-row matmul is XLA's own, single-threaded
    assert clock == "process"
    # A flag the user set, with a value or bare, is kept as set; the process clock is then
    # refused (other threads' time would count).
    flags, _, clock = _session("--xla_cpu_multi_thread_eigen")
    assert flags[0] == "--xla_cpu_multi_thread_eigen" and SINGLE_THREAD_FLAG not in flags
    assert clock.startswith("clock 'process' needs a CPU device running XLA single-threaded")
    user_ynn = "--xla_cpu_experimental_ynn_fusion_type=individual_dot"
    if NO_YNN_FUSIONS_FLAG in expected and _xla_accepts(user_ynn):
        flags, ynn, clock = _session(user_ynn)
        assert NO_YNN_FUSIONS_FLAG not in flags and ynn  # the user's choice stands
        assert clock.startswith("clock 'process' needs")
