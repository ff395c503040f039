"""TransformerSpec, the model catalogue, parameter counts and Hugging Face configs."""

import csv
import io
import json
from decimal import Decimal

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import RTOL_F64, assert_close
from jax.test_util import check_grads

from specsim import models
from specsim.models import SUPPORTED_MODEL_TYPES, TransformerSpec, from_hf_config

# The presets of the reference table below (dense, grouped-query attention); the newer
# architectures (MoE, MLA, sliding windows) carry the publisher's counts and are checked in
# tests/test_architectures.py.
NAMES = [name for name in models.names() if "params_source" not in models.info(name)]

# Verbatim from shared/reference/published-measurements.md section 4. n_params counts the
# attention and FFN matrices, the input embedding and the LM head (once if tied), without
# biases, norms or position embeddings.
REFERENCE_TABLE = """\
name,n_params,n_layers,d_model,n_heads,n_kv_heads,d_ff,vocab
"Llama-2-7B",6.738e9,32,4096,32,32,11008,32000
"Llama-2-13B",13.02e9,40,5120,40,40,13824,32000
"Llama-2-70B",68.98e9,80,8192,64,8,28672,32000
"LLaMA-1-7B / Vicuna-7B-v1.3",6.738e9,32,4096,32,32,11008,32000
"LLaMA-1-13B / Vicuna-13B-v1.3",13.02e9,40,5120,40,40,13824,32000
"LLaMA-1-33B / Vicuna-33B-v1.3",32.53e9,60,6656,52,52,17920,32000
"LLaMA-1-65B",65.28e9,80,8192,64,64,22016,32000
"CodeLlama-34B",33.74e9,48,8192,64,8,22016,32000
"Mistral-7B-v0.1",7.241e9,32,4096,32,8,14336,32000
"Llama-3-8B / Llama-3.1-8B",8.03e9,32,4096,32,8,14336,128256
"Llama-3-70B / Llama-3.1-70B / Llama-3.3-70B",70.55e9,80,8192,64,8,28672,128256
"Llama-3.1-405B",405.8e9,126,16384,128,8,53248,128256
"Llama-3.2-1B",1.236e9,16,2048,32,8,8192,128256
"Llama-3.2-3B",3.213e9,28,3072,24,8,8192,128256
"TinyLlama-1.1B",1.1e9,22,2048,32,4,5632,32000
"JackFram/llama-68m (= double7/vicuna-68m arch)",0.06803e9,2,768,12,12,3072,32000
"JackFram/llama-160m",0.1624e9,12,768,12,12,3072,32000
"Sheared-LLaMA-1.3B",1.345e9,24,2048,16,16,5504,32000
"Qwen2.5-0.5B",0.494e9,24,896,14,2,4864,151936
"Qwen2.5-1.5B",1.544e9,28,1536,12,2,8960,151936
"Qwen2.5-3B",3.086e9,36,2048,16,2,11008,151936
"Qwen2.5-7B",7.615e9,28,3584,28,4,18944,152064
"Qwen2.5-14B",14.77e9,48,5120,40,8,13824,152064
"Qwen2.5-32B",32.76e9,64,5120,40,8,27648,152064
"Qwen2.5-72B",72.7e9,80,8192,64,8,29568,152064
"Qwen3-8B",8.19e9,36,4096,32,8,12288,151936
"Qwen3-0.6B",0.596e9,28,1024,16,8,3072,151936
"OPT-125M",0.1235e9,12,768,12,12,3072,50272
"OPT-350M",0.3535e9,24,1024,16,16,4096,50272
"OPT-1.3B",1.311e9,24,2048,32,32,8192,50272
"OPT-2.7B",2.645e9,32,2560,32,32,10240,50272
"OPT-6.7B",6.648e9,32,4096,32,32,16384,50272
"OPT-13B",12.84e9,40,5120,40,40,20480,50272
"OPT-30B",29.96e9,48,7168,56,56,28672,50272
"OPT-66B",65.69e9,64,9216,72,72,36864,50272
"Pythia-70M",0.07039e9,6,512,8,8,2048,50304
"Pythia-160M",0.1622e9,12,768,12,12,3072,50304
"Pythia-410M",0.405e9,24,1024,16,16,4096,50304
"Pythia-1B",1.011e9,16,2048,8,8,8192,50304
"Pythia-1.4B",1.414e9,24,2048,16,16,8192,50304
"Pythia-2.8B",2.774e9,32,2560,32,32,10240,50304
"Pythia-6.9B",6.856e9,32,4096,32,32,16384,50432
"Pythia-12B",11.84e9,36,5120,40,40,20480,50688
"T5-v1.1-small (77M)",0.07694e9,8,512,6,6,1024,32128
"T5-v1.1-base (250M)",0.2475e9,12,768,12,12,2048,32128
"T5-v1.1-large (800M)",0.783e9,24,1024,16,16,2816,32128
"T5-v1.1-XXL (11B)",11.13e9,24,4096,64,64,10240,32128
"Chinchilla-70B (Chen2023 target)",64.95e9,80,8192,64,64,32768,32000
"Chen2023 4B draft",4.017e9,8,6144,48,48,24576,32000
"GPT-like 97M (Leviathan2023 target)",0.09722e9,12,768,12,12,3072,8000
"GPT-like 6M (Leviathan2023 draft)",0.005669e9,2,256,4,4,1024,8000
"LaMDA-137B",138e9,64,8192,128,128,65536,32000
"""
REFERENCE_ROWS = list(csv.DictReader(io.StringIO(REFERENCE_TABLE)))
# Table rows whose display name differs from the catalogue's; T5 is an encoder-decoder
# (the table lists each stack separately), which specsim's decoder-only spec does not model.
TABLE_TO_CATALOGUE = {
    "LLaMA-1-7B / Vicuna-7B-v1.3": "LLaMA-1-7B",
    "LLaMA-1-13B / Vicuna-13B-v1.3": "LLaMA-1-13B",
    "LLaMA-1-33B / Vicuna-33B-v1.3": "LLaMA-1-33B",
    "Llama-3-8B / Llama-3.1-8B": "Llama-3-8B",
    "Llama-3-70B / Llama-3.1-70B / Llama-3.3-70B": "Llama-3-70B",
    "JackFram/llama-68m (= double7/vicuna-68m arch)": "llama-68m",
    "JackFram/llama-160m": "llama-160m",
    "Chinchilla-70B (Chen2023 target)": "Chinchilla-70B",
    "Chen2023 4B draft": "Chinchilla-4B-draft",
    "GPT-like 97M (Leviathan2023 target)": "GPT-like-97M",
    "GPT-like 6M (Leviathan2023 draft)": "GPT-like-6M",
    "T5-v1.1-small (77M)": None,
    "T5-v1.1-base (250M)": None,
    "T5-v1.1-large (800M)": None,
    "T5-v1.1-XXL (11B)": None,
}
# Models whose head_dim is not d_model / n_heads: Qwen3 (the table's column notes) and
# LaMDA (d_k = 128 with 128 heads, Thoppilan et al. 2022 Table 27; 64 would give 121B, not 138B).
EXPLICIT_HEAD_DIM = {"Qwen3-8B": 128, "Qwen3-0.6B": 128, "LaMDA-137B": 128}


def half_unit_of_last_digit(printed) -> float:
    """Half a unit in the last printed digit: ``6.738e9`` -> 5e5, ``138e9`` -> 5e8.

    A count "matches" a reference printed to 3-4 significant digits when it rounds to it.
    """
    exponent = Decimal(str(printed)).normalize().as_tuple().exponent
    return 0.5 * 10.0**exponent


def slow_parameter_count(arch) -> int:
    """From scratch, in Python integers: one (name, in, out) entry per weight matrix."""
    d, heads, kv_heads = arch["d_model"], arch["n_heads"], arch["n_kv_heads"]
    head_dim = arch.get("head_dim") or d // heads
    matrices = [
        ("q_proj", d, heads * head_dim),
        ("k_proj", d, kv_heads * head_dim),
        ("v_proj", d, kv_heads * head_dim),
        ("o_proj", heads * head_dim, d),
        ("up_proj", d, arch["d_ff"]),
        ("down_proj", arch["d_ff"], d),
    ]
    if arch["gated_mlp"]:
        matrices.append(("gate_proj", d, arch["d_ff"]))
    total = 0
    for _ in range(arch["n_layers"]):
        for _name, fan_in, fan_out in matrices:
            total += fan_in * fan_out
    total += arch["vocab"] * d  # input embedding
    if not arch["tied_embeddings"]:
        total += d * arch["vocab"]  # LM head
    return total


def stack(specs):
    return jax.tree_util.tree_map(lambda *xs: jnp.stack([jnp.asarray(x) for x in xs]), *specs)


# --------------------------------------------------------------------------- reference table


@pytest.mark.parametrize("row", REFERENCE_ROWS, ids=[r["name"] for r in REFERENCE_ROWS])
def test_parameter_count_matches_reference_table(row):
    catalogue_name = TABLE_TO_CATALOGUE.get(row["name"], row["name"])
    if catalogue_name is None:  # T5: encoder-decoder, outside the decoder-only model
        assert row["name"].startswith("T5-") and not any("T5" in n for n in NAMES)
        return
    info = models.info(catalogue_name)
    for key in ("n_layers", "d_model", "n_heads", "n_kv_heads", "d_ff", "vocab"):
        assert info[key] == int(row[key]), key
    assert info["reference_params"] == float(row["n_params"])
    count = float(models.get(catalogue_name).parameter_count)
    # The table prints 3-4 significant digits: the count must round to the printed value.
    assert_close(
        count, float(row["n_params"]), rtol=0, atol=half_unit_of_last_digit(row["n_params"])
    )


def test_every_catalogue_entry_is_in_the_reference_table():
    table_names = {TABLE_TO_CATALOGUE.get(r["name"], r["name"]) for r in REFERENCE_ROWS}
    assert set(NAMES) <= table_names


def test_nominal_sizes_quoted_by_the_reference():
    # "it reproduces the nominal sizes (e.g. Llama-2-7B 6.738e9, Mistral-7B 7.241e9, ...)".
    for name, nominal in [
        ("llama-2-7b", 6.738e9),
        ("mistral-7b-v0.1", 7.241e9),
        ("qwen2.5-7b", 7.615e9),
        ("lamda-137b", 1.38e11),
    ]:
        count = float(models.get(name).parameter_count)
        assert_close(count, nominal, rtol=0, atol=half_unit_of_last_digit(nominal))
    # Exact count of Llama-2-7B: the HF total 6,738,415,616 minus 65 RMSNorm vectors of 4096.
    assert models.parameter_count(models.get("llama-2-7b")) == 6_738_415_616 - 65 * 4096


def test_half_unit_helper():
    assert half_unit_of_last_digit("6.738e9") == 5e5
    assert half_unit_of_last_digit("138e9") == 5e8
    assert half_unit_of_last_digit(6.803e7) == 5e3


# --------------------------------------------------------------------------- every entry


@pytest.mark.parametrize("name", NAMES)
def test_catalogue_entry(name):
    info = models.info(name)
    spec = models.get(name)
    assert info["name"] == name
    assert spec.validate() is spec
    # Shapes: positive integers, heads divide into kv groups, head_dim as documented.
    for key in ("n_layers", "d_model", "n_heads", "n_kv_heads", "d_ff", "vocab"):
        assert isinstance(info[key], int) and info[key] > 0, key
        assert float(getattr(spec, key)) == info[key], key
    assert info["n_heads"] % info["n_kv_heads"] == 0
    head_dim = EXPLICIT_HEAD_DIM.get(name, info["d_model"] / info["n_heads"])
    assert float(spec.head_dim) == head_dim
    assert info.get("head_dim", head_dim) == head_dim
    assert float(spec.mlp_matrices) == (3.0 if info["gated_mlp"] else 2.0)
    assert float(spec.tied_embeddings) == float(info["tied_embeddings"])
    assert (spec.weight_bytes, spec.kv_bytes, spec.activation_bytes) == (2.0, 2.0, 2.0)
    assert spec.compute_dtype == "bf16"
    # Parameter count: exact against the per-matrix count, rounds to the reference figure.
    slow = slow_parameter_count(info)
    assert models.parameter_count(spec) == slow
    assert spec.parameter_count == slow
    assert_close(
        spec.parameter_count,
        info["reference_params"],
        rtol=0,
        atol=half_unit_of_last_digit(info["reference_params"]),
    )
    assert (
        models.layer_weight_count(spec) * info["n_layers"]
        + info["vocab"] * info["d_model"] * (2 - info["tied_embeddings"])
        == slow
    )
    # Provenance.
    assert "source" in info and len(info["source"]) > 10
    tokens = models.train_tokens(name)
    assert tokens is None or (tokens > 1e9 and "train_tokens_source" in info)
    for alias in info.get("aliases", []):
        assert models.info(alias)["name"] == name


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("alias", "canonical"),
    [
        ("llama-2-7b", "Llama-2-7B"),
        ("Llama2-7B", "Llama-2-7B"),
        ("LLAMA_2_70B", "Llama-2-70B"),
        ("vicuna-7b-v1.3", "LLaMA-1-7B"),
        ("JackFram/llama-68m", "llama-68m"),
        ("llama-3.1-8b", "Llama-3-8B"),
        ("qwen2.5-0.5b", "Qwen2.5-0.5B"),
        ("chinchilla", "Chinchilla-70B"),
        ("leviathan-6m", "GPT-like-6M"),
    ],
)
def test_aliases(alias, canonical):
    assert models.info(alias)["name"] == canonical
    assert models.get(alias) == models.get(canonical)


@pytest.mark.parametrize(
    ("name", "closest"),
    [("llama-2-7", "Llama-2-7B"), ("mistral-7b", "Mistral-7B-v0.1"), ("qwen3-0.5b", "Qwen3-0.6B")],
)
def test_unknown_model_names_the_closest(name, closest):
    for lookup in (models.get, models.info, models.train_tokens):
        with pytest.raises(ValueError, match="unknown model") as info:
            lookup(name)
        message = str(info.value)
        assert message.startswith(f"model {name!r}: unknown model, did you mean")
        assert f"'{closest}'" in message.split("valid:")[0]
        assert "; valid: Llama-2-7B" in message


def test_train_tokens():
    assert models.train_tokens("llama-2-7b") == 2e12  # Llama 2 paper, Table 1: 2.0T tokens
    assert models.train_tokens("Qwen3-0.6B") == 36e12  # Qwen3 technical report: 36T tokens


# --------------------------------------------------------------------------- create / dtypes


SMALL = dict(n_layers=2, d_model=256, n_heads=4, d_ff=1024, vocab=8000)


def test_create_defaults_and_docstring_example():
    spec = TransformerSpec.create(**SMALL, gated_mlp=False)
    assert float(spec.n_kv_heads) == 4 and float(spec.head_dim) == 64
    arch = {**SMALL, "n_kv_heads": 4, "gated_mlp": False, "tied_embeddings": False}
    assert spec.parameter_count == slow_parameter_count(arch) == 5_668_864


@pytest.mark.parametrize(
    ("weight_dtype", "kv_dtype", "activation_dtype", "expected", "compute"),
    [
        ("bf16", None, "bf16", (2.0, 2.0, 2.0), "bf16"),
        ("fp32", None, "fp32", (4.0, 4.0, 4.0), "fp32"),
        ("int8", None, "bf16", (1.0, 2.0, 2.0), "bf16"),  # weight-only int8: bf16 KV cache
        ("int4", None, "bf16", (0.5, 2.0, 2.0), "bf16"),
        ("fp8", None, "fp8", (1.0, 1.0, 1.0), "fp8"),
        ("bf16", "fp8", "bf16", (2.0, 1.0, 2.0), "bf16"),
        ("int8", "int8", "int8", (1.0, 1.0, 1.0), "int8"),
    ],
)
def test_dtypes(weight_dtype, kv_dtype, activation_dtype, expected, compute):
    spec = TransformerSpec.create(
        **SMALL, weight_dtype=weight_dtype, kv_dtype=kv_dtype, activation_dtype=activation_dtype
    )
    assert (spec.weight_bytes, spec.kv_bytes, spec.activation_bytes) == expected
    assert spec.compute_dtype == compute


def test_with_dtypes_keeps_the_architecture():
    base = models.get("llama-2-7b")
    int4 = base.with_dtypes("int4")
    assert int4.weight_bytes == 0.5 and int4.kv_bytes == 2.0 and int4.compute_dtype == "bf16"
    assert int4.replace(weight_bytes=2.0) == base
    assert base.with_dtypes("bf16", kv_dtype="fp8").kv_bytes == 1.0
    assert base.with_dtypes("fp8", compute_dtype="fp8").compute_dtype == "fp8"
    assert models.get("llama-2-7b", weight_dtype="int8") == base.with_dtypes("int8")
    with pytest.raises(ValueError, match=r"unknown weight_dtype 'int3'; valid: .*int4"):
        base.with_dtypes("int3")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"n_layers": 0}, "n_layers must be a positive finite number, got 0"),
        ({"d_model": -256}, "d_model must be a positive finite number"),
        ({"d_ff": float("nan")}, "d_ff must be a positive finite number"),
        ({"vocab": float("inf")}, "vocab must be a positive finite number"),
        ({"n_kv_heads": 0}, "n_kv_heads must be a positive finite number"),
        ({"head_dim": -64}, "head_dim must be a positive finite number"),
        ({"n_heads": 0}, "n_heads must be a positive finite number"),
        ({"n_heads": -4}, "n_heads must be a positive finite number"),
        ({"weight_dtype": "int3"}, "unknown weight_dtype 'int3'"),
        ({"kv_dtype": "fp4"}, "unknown kv_dtype 'fp4'"),
        ({"activation_dtype": 16}, "unknown activation_dtype 16"),
        ({"compute_dtype": "fp64"}, "compute_dtype must be one of"),
    ],
)
def test_create_rejects_bad_inputs(override, message):
    with pytest.raises(ValueError, match=message):
        TransformerSpec.create(**{**SMALL, **override})


def test_validate_rejects_bad_arrays_and_skips_tracers():
    grid = stack([models.get("llama-2-7b"), models.get("llama-68m")])
    assert grid.validate() is grid
    with pytest.raises(ValueError, match="tied_embeddings must be 0 or 1"):
        grid.replace(tied_embeddings=jnp.array([0.0, 2.0])).validate()
    with pytest.raises(ValueError, match="n_layers must be a positive finite number, got -1"):
        grid.replace(n_layers=jnp.array([32.0, -1.0])).validate()

    @jax.jit
    def negated(spec):  # traced leaves cannot be checked and must not raise
        return spec.replace(n_layers=-spec.n_layers).validate().n_layers

    np.testing.assert_array_equal(negated(grid), [-32.0, -2.0])


# --------------------------------------------------------------------------- JAX semantics


def test_parameter_count_jit_vmap_grad(x64):
    specs = [models.get(name) for name in NAMES]
    eager = [float(models.parameter_count(spec)) for spec in specs]
    batched = jax.jit(jax.vmap(models.parameter_count))(stack(specs))
    assert_close(batched, eager, rtol=RTOL_F64)
    assert_close(jax.jit(models.parameter_count)(specs[0]), eager[0], rtol=RTOL_F64)
    # d(params)/d(n_layers) is the weight count of one block; d/d(vocab) = d_model x (2 - tied).
    grads = jax.jit(jax.grad(models.parameter_count))(models.get("qwen2.5-0.5b"))
    assert_close(
        grads.n_layers, models.layer_weight_count(models.get("qwen2.5-0.5b")), rtol=RTOL_F64
    )
    assert_close(grads.vocab, 896.0, rtol=RTOL_F64)
    assert all(np.isfinite(float(g)) for g in jax.tree_util.tree_leaves(grads))


@pytest.mark.slow
def test_parameter_count_check_grads(x64):
    base = models.get("mistral-7b-v0.1")

    def billions(n_layers, d_model, d_ff, n_kv_heads):
        spec = base.replace(
            n_layers=32.0 * n_layers,
            d_model=4096.0 * d_model,
            d_ff=14336.0 * d_ff,
            n_kv_heads=8.0 * n_kv_heads,
            head_dim=128.0 * d_model,
        )
        return models.parameter_count(spec) / 1e9

    check_grads(billions, (1.0, 1.0, 1.0, 1.0), order=2, modes=("rev",))
    check_grads(billions, (0.5, 1.3, 0.7, 2.0), order=1)


# --------------------------------------------------------------------------- Hugging Face

# Fields as published in each model's config.json on the Hugging Face hub.
LLAMA_2_7B = {
    "architectures": ["LlamaForCausalLM"],
    "bos_token_id": 1,
    "eos_token_id": 2,
    "hidden_act": "silu",
    "hidden_size": 4096,
    "initializer_range": 0.02,
    "intermediate_size": 11008,
    "max_position_embeddings": 4096,
    "model_type": "llama",
    "num_attention_heads": 32,
    "num_hidden_layers": 32,
    "num_key_value_heads": 32,
    "pretraining_tp": 1,
    "rms_norm_eps": 1e-05,
    "rope_scaling": None,
    "tie_word_embeddings": False,
    "torch_dtype": "float16",
    "transformers_version": "4.31.0.dev0",
    "use_cache": True,
    "vocab_size": 32000,
}
MISTRAL_7B = {
    "architectures": ["MistralForCausalLM"],
    "bos_token_id": 1,
    "eos_token_id": 2,
    "hidden_act": "silu",
    "hidden_size": 4096,
    "initializer_range": 0.02,
    "intermediate_size": 14336,
    "max_position_embeddings": 32768,
    "model_type": "mistral",
    "num_attention_heads": 32,
    "num_hidden_layers": 32,
    "num_key_value_heads": 8,
    "rms_norm_eps": 1e-05,
    "rope_theta": 10000.0,
    "sliding_window": 4096,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "transformers_version": "4.34.0.dev0",
    "use_cache": True,
    "vocab_size": 32000,
}
QWEN2_5_0_5B = {
    "architectures": ["Qwen2ForCausalLM"],
    "attention_dropout": 0.0,
    "bos_token_id": 151643,
    "eos_token_id": 151643,
    "hidden_act": "silu",
    "hidden_size": 896,
    "initializer_range": 0.02,
    "intermediate_size": 4864,
    "max_position_embeddings": 32768,
    "max_window_layers": 24,
    "model_type": "qwen2",
    "num_attention_heads": 14,
    "num_hidden_layers": 24,
    "num_key_value_heads": 2,
    "rms_norm_eps": 1e-06,
    "rope_theta": 1000000.0,
    "sliding_window": 32768,
    "tie_word_embeddings": True,
    "torch_dtype": "bfloat16",
    "transformers_version": "4.40.1",
    "use_cache": True,
    "use_sliding_window": False,
    "vocab_size": 151936,
}
QWEN3_0_6B = {
    "architectures": ["Qwen3ForCausalLM"],
    "attention_bias": False,
    "attention_dropout": 0.0,
    "bos_token_id": 151643,
    "eos_token_id": 151645,
    "head_dim": 128,
    "hidden_act": "silu",
    "hidden_size": 1024,
    "initializer_range": 0.02,
    "intermediate_size": 3072,
    "max_position_embeddings": 40960,
    "max_window_layers": 28,
    "model_type": "qwen3",
    "num_attention_heads": 16,
    "num_hidden_layers": 28,
    "num_key_value_heads": 8,
    "rms_norm_eps": 1e-06,
    "rope_scaling": None,
    "rope_theta": 1000000,
    "sliding_window": None,
    "tie_word_embeddings": True,
    "torch_dtype": "bfloat16",
    "transformers_version": "4.51.0",
    "use_cache": True,
    "use_sliding_window": False,
    "vocab_size": 151936,
}
OPT_125M = {
    "_name_or_path": "facebook/opt-125m",
    "activation_dropout": 0.0,
    "activation_function": "relu",
    "architectures": ["OPTForCausalLM"],
    "attention_dropout": 0.0,
    "bos_token_id": 2,
    "do_layer_norm_before": True,
    "dropout": 0.1,
    "eos_token_id": 2,
    "ffn_dim": 3072,
    "hidden_size": 768,
    "init_std": 0.02,
    "layerdrop": 0.0,
    "max_position_embeddings": 2048,
    "model_type": "opt",
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "pad_token_id": 1,
    "prefix": "</s>",
    "torch_dtype": "float16",
    "transformers_version": "4.21.0.dev0",
    "use_cache": True,
    "vocab_size": 50272,
    "word_embed_proj_dim": 768,
}
PYTHIA_160M = {
    "architectures": ["GPTNeoXForCausalLM"],
    "bos_token_id": 0,
    "eos_token_id": 0,
    "hidden_act": "gelu",
    "hidden_size": 768,
    "initializer_range": 0.02,
    "intermediate_size": 3072,
    "layer_norm_eps": 1e-05,
    "max_position_embeddings": 2048,
    "model_type": "gpt_neox",
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "rotary_emb_base": 10000,
    "rotary_pct": 0.25,
    "tie_word_embeddings": False,
    "torch_dtype": "float16",
    "transformers_version": "4.24.0",
    "use_cache": True,
    "use_parallel_residual": True,
    "vocab_size": 50304,
}
GEMMA_2B = {
    "architectures": ["GemmaForCausalLM"],
    "attention_bias": False,
    "attention_dropout": 0.0,
    "bos_token_id": 2,
    "eos_token_id": 1,
    "head_dim": 256,
    "hidden_act": "gelu",
    "hidden_size": 2048,
    "initializer_range": 0.02,
    "intermediate_size": 16384,
    "max_position_embeddings": 8192,
    "model_type": "gemma",
    "num_attention_heads": 8,
    "num_hidden_layers": 18,
    "num_key_value_heads": 1,
    "pad_token_id": 0,
    "rms_norm_eps": 1e-06,
    "rope_scaling": None,
    "rope_theta": 10000.0,
    "torch_dtype": "bfloat16",
    "transformers_version": "4.38.0.dev0",
    "use_cache": True,
    "vocab_size": 256000,
}

# (config, catalogue entry or None, weight bytes from torch_dtype, the model's total
# parameter count as reported by transformers, and the parameters that total has and
# specsim's convention leaves out: norms, biases, learned position embeddings).
HF_CASES = {
    # 65 RMSNorm vectors of 4096.
    "llama-2-7b": (LLAMA_2_7B, "Llama-2-7B", 2.0, 6_738_415_616, 65 * 4096),
    "mistral-7b": (MISTRAL_7B, "Mistral-7B-v0.1", 2.0, 7_241_732_096, 65 * 4096),
    # 49 RMSNorm vectors of 896 plus q/k/v biases (896 + 2 x 128) in each of 24 layers.
    "qwen2.5-0.5b": (QWEN2_5_0_5B, "Qwen2.5-0.5B", 2.0, 494_032_768, 49 * 896 + 24 * 1152),
    # 57 RMSNorm vectors of 1024 plus per-layer q_norm and k_norm of head_dim 128.
    "qwen3-0.6b": (QWEN3_0_6B, "Qwen3-0.6B", 2.0, 596_049_920, 57 * 1024 + 28 * 256),
    # Learned positions (2048 + 2 offset) x 768, 6912 biases and 2 LayerNorms per layer, final LN.
    "opt-125m": (OPT_125M, "OPT-125M", 2.0, 125_239_296, 2050 * 768 + 12 * (6912 + 3072) + 1536),
    # 6912 biases and 2 LayerNorms (weight + bias) per layer, final LayerNorm.
    "pythia-160m": (PYTHIA_160M, "Pythia-160M", 2.0, 162_322_944, 12 * (6912 + 3072) + 1536),
    # Gemma report Table 1: 1,981,884,416 non-embedding parameters (incl. 37 RMSNorms of
    # 2048); the tied 256000 x 2048 embedding is counted once (the report's 256128 rows
    # include padding).
    "gemma-2b": (GEMMA_2B, None, 2.0, 1_981_884_416 + 256_000 * 2048, 37 * 2048),
}


@pytest.mark.parametrize("case", list(HF_CASES))
def test_from_hf_config_realistic(case, tmp_path):
    config, catalogue_name, weight_bytes, hf_total, not_counted = HF_CASES[case]
    spec = from_hf_config(config)
    assert spec.weight_bytes == weight_bytes and spec.compute_dtype == "bf16"
    assert spec.parameter_count == hf_total - not_counted
    if catalogue_name is not None:
        assert spec == models.get(catalogue_name).replace(weight_bytes=weight_bytes)
    # The same file read from a path, from its folder, and through the classmethod.
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert from_hf_config(tmp_path / "config.json") == spec
    assert from_hf_config(str(tmp_path)) == spec
    assert TransformerSpec.from_hf_config(tmp_path) == spec


def test_from_hf_config_architecture_details():
    gemma = from_hf_config(GEMMA_2B)
    assert float(gemma.head_dim) == 256 and float(gemma.n_kv_heads) == 1  # multi-query
    assert float(gemma.tied_embeddings) == 1.0  # Gemma ties by default (no key in config)
    opt = from_hf_config(OPT_125M)
    assert float(opt.mlp_matrices) == 2.0 and float(opt.tied_embeddings) == 1.0
    pythia = from_hf_config(PYTHIA_160M)
    assert float(pythia.mlp_matrices) == 2.0 and float(pythia.tied_embeddings) == 0.0
    assert float(pythia.n_kv_heads) == 12  # no num_key_value_heads: multi-head attention
    qwen3 = from_hf_config(QWEN3_0_6B)
    assert float(qwen3.head_dim) == 128 != 1024 / 16
    fp32 = from_hf_config({**MISTRAL_7B, "torch_dtype": "float32"})
    assert fp32.weight_bytes == 4.0
    assert from_hf_config({**MISTRAL_7B, "torch_dtype": "float16"}).weight_bytes == 2.0
    no_dtype = {k: v for k, v in MISTRAL_7B.items() if k != "torch_dtype"}
    assert from_hf_config(no_dtype).weight_bytes == 2.0


def test_from_hf_config_dtype_overrides():
    int4 = from_hf_config(LLAMA_2_7B, weight_dtype="int4")
    assert (int4.weight_bytes, int4.kv_bytes, int4.activation_bytes) == (0.5, 2.0, 2.0)
    fp8 = from_hf_config(MISTRAL_7B, kv_dtype="fp8")
    assert fp8.kv_bytes == 1.0 and fp8.weight_bytes == 2.0


def test_gemma3_wrapper_reads_text_config():
    text = {**GEMMA_2B, "model_type": "gemma3_text"}
    wrapper = {"model_type": "gemma3", "text_config": text, "vision_config": {"hidden_size": 1152}}
    assert from_hf_config(wrapper) == from_hf_config(text) == from_hf_config(GEMMA_2B)


@pytest.mark.parametrize("model_type", ["t5", "bert", "mamba", None])
def test_unsupported_model_type_lists_supported_ones(model_type):
    config = {**LLAMA_2_7B, "model_type": model_type}
    with pytest.raises(ValueError, match=f"unsupported model_type {model_type!r}") as info:
        from_hf_config(config)
    for supported in SUPPORTED_MODEL_TYPES:
        assert supported in str(info.value)
    assert {"llama", "mistral", "qwen2", "qwen3", "gemma", "opt", "gpt_neox"} <= set(
        SUPPORTED_MODEL_TYPES
    )


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({k: v for k, v in LLAMA_2_7B.items() if k != "hidden_size"}, "missing field.*hidden_size"),
        ({k: v for k, v in OPT_125M.items() if k != "ffn_dim"}, "opt config is missing.*ffn_dim"),
        ({**LLAMA_2_7B, "num_hidden_layers": "32"}, "'num_hidden_layers' '32': not a number"),
        ({**LLAMA_2_7B, "vocab_size": True}, "'vocab_size' True: not a number"),
        ({**LLAMA_2_7B, "num_hidden_layers": 0}, "n_layers must be a positive finite number"),
        ({**LLAMA_2_7B, "intermediate_size": -1}, "'intermediate_size' -1: not a whole count"),
        # Issue 11, points 1 and 6: fractional layers, KV heads that do not divide the
        # heads, a misspelt key whose default would silently apply, a string boolean.
        ({**LLAMA_2_7B, "num_hidden_layers": 31.5}, "'num_hidden_layers' 31.5: not a whole"),
        ({**LLAMA_2_7B, "num_key_value_heads": 6}, "'num_key_value_heads' 6: does not divide"),
        (
            {
                **{k: v for k, v in LLAMA_2_7B.items() if k != "num_key_value_heads"},
                "num_key_value_head": 8,  # a typo: 32 KV heads (MHA) would be assumed
            },
            "key 'num_key_value_head': unknown, did you mean 'num_key_value_heads'",
        ),
        ({**LLAMA_2_7B, "tie_word_embeddings": "false"}, "'tie_word_embeddings' 'false': not a"),
        ({**LLAMA_2_7B, "head_dim": 127.5}, "'head_dim' 127.5: not a whole count"),
        ({**LLAMA_2_7B, "num_attention_heads": 0}, "n_heads must be a positive finite number"),
    ],
)
def test_from_hf_config_bad_fields(config, message):
    with pytest.raises(ValueError, match=message):
        from_hf_config(config)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"model_type": "llama", ', "malformed JSON"),
        ("model_type: llama\n", "malformed JSON"),
        ("", "malformed JSON"),
        ('["llama"]', "does not hold a JSON object"),
    ],
)
def test_from_hf_config_malformed_file(tmp_path, text, message):
    path = tmp_path / "config.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        from_hf_config(path)


def test_from_hf_config_unreadable_path(tmp_path):
    with pytest.raises(ValueError, match="cannot read Hugging Face config"):
        from_hf_config(tmp_path / "nope" / "config.json")
    with pytest.raises(ValueError, match="cannot read Hugging Face config"):
        from_hf_config(tmp_path)  # a folder without config.json


def test_catalogue_typo_keys_are_errors_not_silently_dense(monkeypatch):
    from specsim._registry import Registry
    from specsim.models import _catalog

    entry = {**models.info("mixtral-8x7b"), "n_expert": 8}
    entry.pop("name")
    monkeypatch.setattr(_catalog, "_REGISTRY", Registry("model", lambda: {"Toy": entry}))
    with pytest.raises(ValueError, match=r"catalog.toml: Toy: n_expert 8: unknown key \(did you"):
        models.get("toy")
