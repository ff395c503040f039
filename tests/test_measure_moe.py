"""specsim.measure's mixture-of-experts network: what it computes, what it reads, and how
well the calibrated cost model predicts its step times on this device."""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import assert_close

from specsim import forward_cost, models
from specsim.measure import (
    ModelConfig,
    build_model,
    forward,
    generate,
    init_cache,
    layer_skip_draft,
    moe_calibration_points,
    moe_presets,
    speculative_generate,
)
from specsim.measure._model import MixtureOfExperts
from specsim.measure._timing import config_columns, config_from_columns
from specsim.models import TransformerSpec

ROOT = Path(__file__).resolve().parents[1]
# Incremental (cached) and one-shot attention sum in different orders (as in test_measure).
RTOL_FORWARD = 2e-4


def tiny_moe(**overrides):
    sizes = dict(
        n_layers=3,
        d_model=32,
        n_heads=4,
        n_kv_heads=2,
        d_ff=64,
        vocab=64,
        weight_dtype="fp32",
        activation_dtype="fp32",
        n_moe_layers=2,
        n_experts=4,
        experts_per_token=2,
        d_ff_expert=48,
    )
    return TransformerSpec.create(**{**sizes, **overrides})


def _param_count(params) -> int:
    leaves = jax.tree_util.tree_leaves_with_path(params)
    return sum(
        int(np.prod(leaf.shape))
        for path, leaf in leaves
        if not any("norm" in str(getattr(key, "key", "")) for key in path)
    )


@pytest.mark.slow  # builds and runs real networks
@pytest.mark.parametrize("gated", [True, False])
def test_moe_network_has_the_parameters_the_cost_model_prices(gated):
    spec = tiny_moe(gated_mlp=gated)
    model = build_model(spec)
    assert _param_count(model.params) == int(spec.parameter_count)
    assert model.config.to_spec() == spec
    assert "moe" in model.params["block_0"] and "moe" not in model.params["block_2"]
    norms = 2 * 32 * 3 + 32
    assert model.config.parameter_bytes == 4 * (int(spec.parameter_count) + norms)


@pytest.mark.slow  # builds and runs real networks
@pytest.mark.parametrize("gated", [True, False])
def test_moe_layer_equals_a_per_token_reference(gated):
    config = ModelConfig.from_spec(tiny_moe(gated_mlp=gated))
    module = MixtureOfExperts(config)
    h = jax.random.normal(jax.random.key(1), (3, 7, 32))
    params = module.init(jax.random.key(2), h)["params"]
    out = np.asarray(module.apply({"params": params}, h)).reshape(21, 32)
    x = np.asarray(h).reshape(21, 32)
    logits = x @ np.asarray(params["router"]["kernel"])
    expected = np.zeros_like(x)
    for t in range(21):
        top = np.argsort(-logits[t])[:2]
        gates = np.exp(logits[t, top] - logits[t, top].max())
        gates /= gates.sum()
        for gate, e in zip(gates, top, strict=True):
            if gated:
                a = x[t] @ np.asarray(params[f"experts_gate_{e}"])
                inner = a / (1 + np.exp(-a)) * (x[t] @ np.asarray(params[f"experts_up_{e}"]))
            else:
                inner = np.asarray(jax.nn.gelu(x[t] @ np.asarray(params[f"experts_in_{e}"])))
            expected[t] += gate * (inner @ np.asarray(params[f"experts_out_{e}"]))
    assert_close(out, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.slow  # builds and runs real networks
def test_moe_cached_decoding_matches_one_pass():
    model = build_model(tiny_moe(), seed=1)
    tokens = jax.random.randint(jax.random.key(0), (2, 9), 0, model.config.vocab)
    full, _ = forward(model, tokens, init_cache(model.config, 2, 9))
    cache = init_cache(model.config, 2, 9)
    logits, cache = forward(model, tokens[:, :4], cache)
    steps = [logits]
    for t in range(4, 9):
        logits, cache = forward(model, tokens[:, t : t + 1], cache)
        steps.append(logits)
    assert_close(jnp.concatenate(steps, axis=1), full, rtol=RTOL_FORWARD, atol=1e-5)


@pytest.mark.slow  # builds and runs real networks
def test_speculative_decoding_with_an_moe_target_is_exact_at_temperature_zero():
    target = build_model(tiny_moe(n_layers=4, n_moe_layers=4), seed=2)
    draft = layer_skip_draft(target, 2)
    assert draft.config.n_moe_layers == 2 and draft.config.n_layers == 2
    prompt = jax.random.randint(jax.random.key(3), (2, 5), 0, target.config.vocab)
    result = speculative_generate(target, draft, prompt, 12, 3, temperature=0.0)
    plain = generate(target, prompt, 12, temperature=0.0)
    length = 5 + 12  # speculation may run past the requested tokens; compare what both made
    assert np.array_equal(
        np.asarray(result.tokens)[:, :length], np.asarray(plain.tokens)[:, :length]
    )
    assert 0.0 <= result.alpha <= 1.0


def test_moe_config_columns_round_trip():
    config = moe_presets("cpu")["moe"]
    assert config_from_columns(config_columns(config)) == config
    dense = moe_presets("cpu")["moe-dense"]
    assert config_from_columns(config_columns(dense)) == dense
    legacy = {k: v for k, v in config_columns(dense).items() if not k.startswith(("n_", "exp"))}
    legacy.update(n_layers=4, n_heads=4, n_kv_heads=2)
    assert config_from_columns(legacy) == dense  # tables written before the MoE columns


def test_moe_presets_are_the_same_active_size():
    presets = moe_presets("cpu")
    moe, dense = presets["moe"].to_spec(), presets["moe-dense"].to_spec()
    router = 4 * 256 * 8
    assert models.active_parameter_count(moe) == models.parameter_count(dense) + router
    one = forward_cost(moe, 1.0, 1.0, 64.0)
    assert (
        abs(float(one.weight_bytes) / float(forward_cost(dense, 1.0, 1.0, 64.0).weight_bytes) - 1)
        < 0.01
    )
    assert {p.phase for p in moe_calibration_points("cpu")} == {"decode", "verify", "prefill"}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"kv_lora_rank": 16.0}, "kv_lora_rank must be 0"),
        ({"n_local_layers": 1.0, "sliding_window": 8.0}, "n_local_layers must be 0"),
        ({"d_ff_shared": 32.0}, "d_ff_shared must be 0"),
        ({"expert_weight_bytes": 0.53125}, "expert_weight_bytes"),
        ({"n_experts": 4.5}, "n_experts must be a whole number"),
    ],
)
def test_measure_refuses_what_it_does_not_build(override, message):
    with pytest.raises(ValueError, match=message):
        build_model(tiny_moe().replace(**override))


def test_moe_config_validation():
    with pytest.raises(ValueError, match="experts_per_token <= n_experts"):
        ModelConfig(
            n_layers=2,
            d_model=32,
            n_heads=4,
            n_kv_heads=2,
            head_dim=8,
            d_ff=64,
            vocab=64,
            n_moe_layers=2,
            n_experts=2,
            experts_per_token=3,
            d_ff_expert=8,
        )
