"""`Deployment`, `predict` and the one call path into the jitted throughput core."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import assert_close

import specsim
from specsim import ConstantAcceptance, Deployment, PositionalAcceptance, Workload, hardware, models

TARGET = models.get("llama-2-7b")
DRAFT = models.get("llama-68m")
A100 = hardware.get("a100-80gb")
WORKLOAD = Workload.create(batch=4, prompt_tokens=256, generate_tokens=128)


def test_float_acceptance_means_a_constant_rate():
    by_float = specsim.throughput(TARGET, DRAFT, A100, WORKLOAD, 4.0, 0.7)
    by_model = specsim.throughput(
        TARGET, DRAFT, A100, WORKLOAD, 4.0, ConstantAcceptance.create(0.7)
    )
    assert_close(float(by_float.tokens_per_s), float(by_model.tokens_per_s), rtol=0)
    assert_close(float(by_float.acceptance_rate), 0.7, rtol=1e-7)


@pytest.mark.slow
def test_sequence_acceptance_means_per_position_rates():
    rates = [0.9, 0.8, 0.6]
    by_list = specsim.throughput(TARGET, DRAFT, A100, WORKLOAD, 3.0, rates)
    by_model = specsim.throughput(
        TARGET, DRAFT, A100, WORKLOAD, 3.0, PositionalAcceptance.create(rates)
    )
    assert float(by_list.tokens_per_s) == float(by_model.tokens_per_s)
    # Exact closed form: E = 1 + a1 + a1 a2 + a1 a2 a3.
    assert_close(float(by_list.expected_tokens_per_step), 1 + 0.9 + 0.72 + 0.432, rtol=1e-6)


@pytest.mark.parametrize("bad", [1.0, 0.0, -0.1, 1.5, float("nan"), "0.7", True, [[0.5]]])
def test_bad_acceptance_values_raise_value_error(bad):
    with pytest.raises(ValueError, match=r"alpha|acceptance"):
        specsim.throughput(TARGET, DRAFT, A100, WORKLOAD, 4.0, bad)


def test_predict_equals_throughput():
    deployment = Deployment.create(TARGET, A100, WORKLOAD, 0.8, tp=2, draft_tp=1)
    a = specsim.predict(deployment, DRAFT, 5.0)
    b = specsim.throughput(TARGET, DRAFT, A100, WORKLOAD, 5.0, 0.8, tp=2, draft_tp=1)
    for name in a.__dataclass_fields__:
        np.testing.assert_array_equal(np.asarray(getattr(a, name)), np.asarray(getattr(b, name)))


def test_create_takes_catalogue_names_and_defaults():
    d = Deployment.create("llama-2-7b", "a100", acceptance=0.8)
    assert float(d.target.n_layers) == float(TARGET.n_layers)
    assert float(d.hardware.hbm_bytes_per_s) == float(A100.hbm_bytes_per_s)
    assert float(d.workload.batch) == 1.0
    assert float(d.draft_tp) == float(d.tp) == 1.0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(acceptance=None), "acceptance is required"),
        (dict(acceptance=0.8, tp=0.5), "tp 0.5: out of range; valid: finite numbers >= 1"),
        (dict(acceptance=0.8, draft_tp=0), "draft_tp 0: out of range"),
        (dict(acceptance=0.8, speculation_overhead_s=-1.0), "speculation_overhead_s"),
        # NumPy converts these to numbers: tp "2" was 2 chips, tp True one, tp None "nan"
        (dict(acceptance=0.8, tp="2"), "tp '2': not a number; valid: finite numbers"),
        (dict(acceptance=0.8, tp=True), "tp True: not a number"),
        (dict(acceptance=0.8, tp=None), "tp None: not a number"),
    ],
)
def test_create_rejects_bad_inputs(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Deployment.create(TARGET, A100, WORKLOAD, **kwargs)


@pytest.mark.parametrize(
    "kwargs", [dict(batch="4"), dict(batch=True), dict(prompt_tokens=["512"]), dict(batch=None)]
)
def test_workload_sizes_must_be_numbers(kwargs):
    # A string or a bool became a size through NumPy's conversion (batch "4" was 4).
    name = next(iter(kwargs))
    with pytest.raises(ValueError, match=f"{name} .*: not a number; valid: finite numbers"):
        Workload.create(**kwargs)
    assert float(Workload.create(batch=np.int64(4)).batch) == 4.0


def test_unknown_names_raise_with_suggestions():
    with pytest.raises(ValueError, match="unknown hardware"):
        Deployment.create(TARGET, "h1000x", acceptance=0.8)
    with pytest.raises(ValueError, match="unknown model"):
        Deployment.create("llama-9-7b", A100, acceptance=0.8)


def test_predict_rejects_bad_draft_gamma_and_static_options():
    d = Deployment.create(TARGET, A100, WORKLOAD, 0.8)
    with pytest.raises(ValueError, match="deployment must be a Deployment"):
        specsim.predict(TARGET, DRAFT, 4.0)
    with pytest.raises(ValueError, match="draft must be a TransformerSpec"):
        specsim.predict(d, "llama-68m", 4.0)
    with pytest.raises(ValueError, match="gamma"):
        specsim.predict(d, DRAFT, -1.0)
    for smooth in (0, -1.0, float("inf"), "16"):
        with pytest.raises(ValueError, match="smooth"):
            specsim.predict(d, DRAFT, 4.0, smooth=smooth)
    for nodes in (0, 10_000, 2.5):
        with pytest.raises(ValueError, match="quadrature_nodes"):
            specsim.predict(d, DRAFT, 4.0, quadrature_nodes=nodes)


@pytest.mark.slow
def test_deployments_stack_and_vmap_like_a_loop():
    chips = [hardware.get(n) for n in ("a100-80gb", "h100", "v5e")]
    deployments = [
        Deployment.create(TARGET, c, WORKLOAD, a)
        for c, a in zip(chips, (0.6, 0.7, 0.8), strict=True)
    ]
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *deployments)
    batched = jax.vmap(lambda d: specsim.predict(d, DRAFT, 4.0).tokens_per_s)(stacked)
    loop = [float(specsim.predict(d, DRAFT, 4.0).tokens_per_s) for d in deployments]
    assert_close(np.asarray(batched), loop, rtol=1e-6)


@pytest.mark.slow
def test_gradient_with_respect_to_the_whole_deployment_is_finite():
    d = Deployment.create(TARGET, A100, WORKLOAD, 0.8)
    grad = jax.grad(lambda dep: specsim.predict(dep, DRAFT, 4.0, smooth=16.0).tokens_per_s)(d)
    leaves = jax.tree.leaves(grad)
    assert leaves and all(np.all(np.isfinite(np.asarray(x))) for x in leaves)
    assert float(grad.acceptance.alpha) > 0  # higher acceptance, more tokens/s


def test_scenario_is_a_deployment_plus_bounds():
    s = specsim.Scenario.create(TARGET, A100, WORKLOAD, 0.8, tp=2)
    assert isinstance(s.deployment, Deployment)
    assert float(s.tp) == 2.0 and s.target is s.deployment.target
    faster = s.replace(hardware=hardware.get("h100"))
    assert float(faster.hardware.hbm_bytes_per_s) == float(hardware.get("h100").hbm_bytes_per_s)
    assert float(faster.deployment.tp) == 2.0
    same = specsim.Scenario.from_deployment(s.deployment)
    assert float(same.bounds.max_d_model) == float(s.bounds.max_d_model)


def test_one_call_path_into_the_jitted_core():
    """Every user of the core calls ``_throughput(deployment, speculator, shape, ...)``."""
    import ast
    import pathlib

    root = pathlib.Path(specsim.__file__).parent
    callers = set()
    for path in root.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "_throughput":
                callers.add(path.relative_to(root).as_posix())
                assert len(node.args) + len(node.keywords) <= 5, (path, node.lineno)
    assert callers <= {
        "_throughput.py",
        "_optimize.py",
        "_schedule.py",
        "_sweep_kernel.py",
        "_tree_search.py",
    }, callers
