"""specsim validate: published data, predictions against it, the local pipeline, the CLI."""

import argparse
import json
import math

import numpy as np
import pandas as pd
import pytest
from conftest import RTOL_F32

from specsim import (
    Deployment,
    TokenTree,
    Workload,
    acceptance_from_tau,
    hardware,
    models,
    predict,
    runtime,
    step_time,
    theory,
)
from specsim.cli.validate import add_validate_arguments, run_validate
from specsim.speculators import Eagle, Ngram
from specsim.validate import (
    load_published,
    mape,
    markdown_table,
    predict_published,
    published_mape_by_group,
    report_local,
    split_train_test,
    validate_local,
    validate_published,
)

# Leviathan et al.'s Table 4 ("Exp") comes from their Theorem 3.8 with profiled cost
# ratios; specsim predicts the ratio from the architectures instead, and lands within this.
RTOL_LEVIATHAN = 0.1
PUBLISHED_GROUPS = {
    "gpt-fast bf16",
    "gpt-fast quantised",
    "TensorRT-LLM max throughput",
    "TensorRT-LLM max throughput H200",
    "Leviathan expected speedup",
    "TensorRT-LLM 0.6.1 static batch",
    "TensorRT-LLM 0.5 H200 static batch",
    "TensorRT-LLM 0.5 L40S static batch",
    "TensorRT-LLM 0.5 first-token latency",
    "TensorRT-LLM 0.9 static batch",
    "TensorRT-LLM 0.9 first-token latency",
    "Spec-Bench speedup",
}
LEVIATHAN = "Leviathan expected speedup"
# Issue 13's bar: every group of published rows within this MAPE, one catalogue for all.
GROUP_MAPE_BAR_PCT = 12.0
# Groups over that bar, kept in the data rather than dropped, each with the MAPE it had
# when added (a guard against it growing, not a tolerance: the bar above is unmet there).
# (TensorRT-LLM 0.6.1's static batches were 28.6% when added and 7.4% once their runtime
# profile read the KV cache once per query head, trtllm-mmha: no longer listed.)
# (TensorRT-LLM 0.5's H200 static batches were 12.6% when added and 9.3% once decode
# attention read the KV cache at 0.90 of the streaming rate on NVIDIA GPUs, a value from
# vidur's measured A100 kernels: no longer listed.)
# TensorRT-LLM 0.5's first-token latencies: 22.1% when added on 2026-12-07 (21.9% since
# decode attention's 0.90), every row predicted fast
# (attributed to a per-request cost outside the prefill pass, and to prefill matmuls slower
# than the catalogue's efficiencies); 0.9's: 25.3% (24.7% since decode attention's 0.90
# and PCIe all-reduces at 0.35), most 128-token rows fast too, and Mixtral's 2048-token
# prefill 26-65% fast on the A100, H100 and H200 (see specsim/data/published.toml).
KNOWN_GAP_MAPE_PCT = {
    "TensorRT-LLM 0.5 first-token latency": 22.2,
    "TensorRT-LLM 0.9 first-token latency": 25.4,
}


def test_mape():
    assert mape([110.0, 90.0], [100.0, 100.0]) == pytest.approx(10.0)
    assert np.isnan(mape([], []))


def test_every_published_row_has_a_source_and_complete_conditions():
    rows, architectures = load_published()
    assert len(rows) >= 259
    # Every gpt-fast README row (32971d3) but the speculative one (no published acceptance),
    # its Mixtral row, and EAGLE's two plain gpt-fast rows (Table 4).
    assert sum(r["id"].startswith("gpt-fast") for r in rows) == 29
    assert sum(r["quantity"] == "saturated_output_tokens_per_s" for r in rows) == 60
    # TensorRT-LLM 0.6.1's two static-batch tables (H100 FP8: 12 rows, A100 FP16: 11; all
    # but Falcon 180B, which the catalogue lacks), the same document's v0.5 L40S table (8),
    # its v0.9 tables' GPT-J, LLaMA 7B and LLaMA 70B rows (48, on four GPUs; not Mistral or
    # Mixtral, whose attention kernel is not stated) and 0.5's H200 blog table (7).
    assert sum(r["quantity"] == "static_batch_output_tokens_per_s" for r in rows) == 86
    # The same document's v0.5 first-token latencies (H100: 6 rows, L40S: 4, A100: 6) and
    # v0.9's (five models on four GPUs, 128 and 2048 prompt tokens: 40).
    assert sum(r["quantity"] == "first_token_latency_s" for r in rows) == 56
    # Spec-Bench's leaderboard (fd2c1cd): EAGLE, Medusa, PLD and SpS, the methods with a
    # static tree or a chain, in its four tables (RTX 3090 7B; A100 7B, 13B, 33B).
    assert sum(r["group"] == "Spec-Bench speedup" for r in rows) == 16
    assert len({r["id"] for r in rows}) == len(rows)
    for row in rows:
        assert row["source"] and row["value"] > 0 and row["batch"] >= 1
        assert row["group"] in PUBLISHED_GROUPS
        if row["group"] == LEVIATHAN:
            assert row["draft"] in architectures and 0 < row["alpha"] < 1
        if row["group"] == "Spec-Bench speedup":  # measured tau, eager Hugging Face runs
            assert row["runtime"] == "eager" and row["tau"] > 1 and "alpha" not in row
        if row["quantity"] == "saturated_output_tokens_per_s":
            assert row["engine"] == "trtllm-bench" and 0 < row["kv_memory_fraction"] <= 1


def test_leviathan_expected_speedups_follow_from_their_own_cost_ratios():
    # The data file reproduces the paper's numbers: Thm 3.8 with the tabulated c.
    rows, _ = load_published()
    for row in (r for r in rows if r["group"] == LEVIATHAN):
        alpha, gamma, c = row["alpha"], row["gamma"], row["published_cost_ratio"]
        improvement = float(theory.expected_tokens(alpha, gamma)) / (gamma * c + 1)
        assert improvement == pytest.approx(row["value"], abs=0.07)  # as stated in the paper


@pytest.mark.slow
def test_published_predictions():
    table = validate_published()
    by_group = published_mape_by_group(table)
    assert set(by_group) == PUBLISHED_GROUPS
    for group, value in by_group.items():
        assert value <= KNOWN_GAP_MAPE_PCT.get(group, GROUP_MAPE_BAR_PCT), (group, value)
        if group in KNOWN_GAP_MAPE_PCT:  # closed: drop the exemption, the bar then holds
            assert value > GROUP_MAPE_BAR_PCT, (group, value)
    speedups = table[table["group"] == LEVIATHAN]
    np.testing.assert_allclose(speedups["predicted"], speedups["published"], rtol=RTOL_LEVIATHAN)
    gpt_fast = table[table["id"].str.startswith("gpt-fast")]
    assert (gpt_fast["predicted"] > 0).all()
    # Memory-bound batch-1 decoding: more bytes per weight is never faster.
    by_id = dict(zip(table["id"], table["predicted"], strict=True))
    assert by_id["gpt-fast Llama-2-7B bf16"] < by_id["gpt-fast Llama-2-7B int8"]
    assert by_id["gpt-fast Llama-2-7B int8"] < by_id["gpt-fast Llama-2-7B int4 G=32"]


@pytest.mark.slow  # a published row's prediction: 2.2 s (2-core EPYC)
def test_a_single_published_row_can_be_predicted():
    rows, architectures = load_published()
    prediction = predict_published(rows[-1], architectures)
    assert prediction["predicted"] > 1 and 0 < prediction["predicted_cost_ratio"] < 1


@pytest.mark.slow  # four predictions of one shape: 2.5 s (2-core EPYC)
def test_a_static_batch_row_is_its_output_over_prefill_and_decode():
    row = {
        "id": "static",
        "quantity": "static_batch_output_tokens_per_s",
        "value": 1.0,
        "hardware": "h100",
        "target": "llama-2-7b",
        "batch": 64,
        "prompt_tokens": 2048,
        "generate_tokens": 128,
        "tp": 2,
        "source": "a test",
    }
    total = predict_published(row, {})["predicted"]
    per_chip = predict_published({**row, "per_chip": True}, {})["predicted"]
    assert per_chip == pytest.approx(total / 2, rel=RTOL_F32)
    # From the plain-decoding report's own parts: every prompt prefilled, then 128 steps.
    workload = Workload.create(batch=64, prompt_tokens=2048, generate_tokens=128)
    target = models.get("llama-2-7b")
    deployment = Deployment.create(target, hardware.get("h100"), workload, 0.5, tp=2.0)
    report = predict(deployment, target, 0.0)
    seconds = float(report.prefill_s) + 128 * float(report.target_step_s)
    assert total == pytest.approx(64 * 128 / seconds, rel=1e-4)
    # The prefill of 64 x 2048 tokens is a large share of the time: well below decoding alone.
    assert total < 0.8 * float(report.baseline_tokens_per_s)
    # per_chip divides plain decoding's tokens/s by tp too.
    plain = {**row, "quantity": "baseline_tokens_per_s", "per_chip": True}
    plain_per_chip = predict_published(plain, {})["predicted"]
    assert plain_per_chip == pytest.approx(float(report.baseline_tokens_per_s) / 2, rel=1e-4)


@pytest.mark.slow  # a prediction and a step time: 2.5 s (2-core EPYC)
def test_a_first_token_latency_row_is_the_prompts_prefill_pass():
    row = {
        "id": "first token",
        "quantity": "first_token_latency_s",
        "value": 0.03,
        "hardware": "h100",
        "target": "llama-2-7b",
        "batch": 1,
        "prompt_tokens": 2048,
        "generate_tokens": 1,
        "tp": 2,
        "runtime": "trtllm-mmha",
        "source": "a test",
    }
    predicted = predict_published(row, {})["predicted"]
    # One forward pass over the 2048 prompt tokens (no cache yet) on two chips, logits for
    # the last position only, with the row's runtime profile: the pass's own step time.
    h100 = hardware.get("h100")
    prefill = step_time(
        models.get("llama-2-7b"),
        h100,
        1,
        2048,
        0.0,
        tp=2.0,
        runtime=runtime.get("trtllm-mmha", h100),
        logit_positions=1.0,
    )
    assert predicted == pytest.approx(float(prefill.time_s), rel=RTOL_F32)
    # Compute-bound: at least the prompt's matmul FLOPs at the chips' bf16 peak.
    assert predicted > 2 * 6.7e9 * 2048 / (2 * float(h100.peak_flops_per_s("bf16")))


def test_per_chip_is_refused_on_a_speedup(tmp_path):
    path = _published(tmp_path, GOOD_ROW)
    path.write_text(path.read_text() + "per_chip = true\n")
    with pytest.raises(ValueError, match=r"row: per_chip True: a speedup is a ratio; valid: per_"):
        load_published(path)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("[[measurement]\n", "malformed"),
        ('[[measurement]]\nid = "x"\n', "x: missing required key 'quantity'"),
        ("schema_version = 1\n", "no \\[\\[measurement\\]\\]"),
    ],
)
def test_bad_published_files_get_clear_errors(tmp_path, text, match):
    path = tmp_path / "published.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=match):
        load_published(path)
    with pytest.raises(ValueError, match="cannot read"):
        load_published(tmp_path / "missing.toml")


GOOD_ROW = {
    "id": "row",
    "quantity": "speedup",
    "value": 2.0,
    "hardware": "a100",
    "target": "llama-2-7b",
    "draft": "llama-68m",
    "batch": 1,
    "gamma": 4,
    "alpha": 0.8,
    "source": "a paper",
}


def _published(tmp_path, row, extra=""):
    lines = [f"{k} = {v!r}" if not isinstance(v, str) else f'{k} = "{v}"' for k, v in row.items()]
    path = tmp_path / "published.toml"
    path.write_text(extra + "[[measurement]]\n" + "\n".join(lines) + "\n")
    return path


def test_a_well_formed_published_file_loads(tmp_path):
    rows, _ = load_published(_published(tmp_path, GOOD_ROW))
    assert rows[0]["id"] == "row"


LATENCY_ROW = {
    **{k: v for k, v in GOOD_ROW.items() if k not in ("draft", "gamma", "alpha")},
    "quantity": "first_token_latency_s",
    "value": 0.01,
    "prompt_tokens": 128,
}


def test_a_latency_row_times_one_tokens_prefill(tmp_path):
    rows, _ = load_published(_published(tmp_path, {**LATENCY_ROW, "generate_tokens": 1}))
    assert rows[0]["quantity"] == "first_token_latency_s"


@pytest.mark.parametrize(
    ("change", "extra", "match"),
    [
        ({}, "per_chip = true\n", r"per_chip True: a latency is one request's; valid: per_"),
        ({"generate_tokens": 2}, "", r"generate_tokens 2: a first-token latency generates one"),
        ({"prompt_tokens": None}, "", r"missing required key 'prompt_tokens' \(of a first-token"),
    ],
)
def test_malformed_latency_rows_are_refused(tmp_path, change, extra, match):
    row = {k: v for k, v in {**LATENCY_ROW, **change}.items() if v is not None}
    path = _published(tmp_path, row)
    path.write_text(path.read_text() + extra)
    with pytest.raises(ValueError, match=match):
        load_published(path)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        # issue 11: a published value of 0 raised ZeroDivisionError in the error column
        ({"value": 0.0}, r"published.toml: row: value 0.0: out of range; valid: > 0 and finite"),
        ({"value": "fast"}, r"row: value 'fast': not a number"),
        ({"hardwre": "a100"}, r"row: hardwre 'a100': unknown key \(did you mean hardware\?\)"),
        ({"alpha": 1.5}, r"row: alpha 1.5: out of range; valid: in \(0, 1\)"),
        ({"batch": 0}, r"row: batch 0: out of range; valid: >= 1"),
        ({"quantity": "latency"}, r"row: quantity 'latency': unknown; valid: baseline_tokens_"),
        ({"kind": "guessed"}, r"row: kind 'guessed': unknown; valid: measured, expected"),
        ({"weight_dtype": "int3"}, r"row: weight_dtype 'int3': unknown; valid: bf16"),
        (
            {"hardware": "h1000"},
            r"row: hardware 'h1000': unknown hardware, did you mean 'H100 SXM'",
        ),
        ({"draft": "llama-68"}, r"row: model 'llama-68': unknown model"),
        ({"gamma": None}, r"row: missing required key 'gamma' \(of a speedup\)"),
        ({"quantity": "baseline_tokens_per_s"}, r"row: draft 'llama-68m': not used by plain"),
    ],
)
def test_published_files_are_read_strictly(tmp_path, change, match):
    row = {k: v for k, v in {**GOOD_ROW, **change}.items() if v is not None}
    with pytest.raises(ValueError, match=match) as info:
        load_published(_published(tmp_path, row))
    assert "\n" not in str(info.value)


METHOD_ROW = {
    **{k: v for k, v in GOOD_ROW.items() if k not in ("draft", "gamma", "alpha")},
    "method": "eagle",
    "tree": "eagle",
    "tau": 3.5,
    "runtime": "eager",
}


def test_a_method_row_with_a_measured_tau_loads(tmp_path):
    rows, _ = load_published(_published(tmp_path, METHOD_ROW))
    assert rows[0]["method"] == "eagle" and rows[0]["tau"] == 3.5
    chain = {**METHOD_ROW, "method": "ngram", "gamma": 10, "tree": None}
    rows, _ = load_published(_published(tmp_path, {k: v for k, v in chain.items() if v}))
    assert rows[0]["gamma"] == 10


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"tree": None}, r"row: missing required key 'gamma' \(of a speedup\), or 'tree' for"),
        ({"tau": None}, r"row: missing required key 'alpha' \(of a speedup\), or 'tau' for"),
        ({"gamma": 4}, r"row: gamma 4 and tree 'eagle': both given; valid: one of them"),
        ({"alpha": 0.8}, r"row: alpha 0.8 and tau 3.5: both given; valid: one of them"),
        ({"method": "ngram"}, r"row: tree 'eagle': method 'ngram' drafts a chain; valid: gamma"),
        ({"tree": "oak"}, r"row: tree: unknown tree 'oak'; valid: eagle, medusa"),
        # EAGLE's tree is 5 deep: at most 6 tokens per iteration
        ({"tau": 6.5}, r"row: tau .* must be in \[1, 6\] for lookahead 5, got 6.5"),
        ({"tau": 0.5}, r"row: tau 0.5: out of range; valid: >= 1"),
        ({"method": "lookahead"}, r"row: method 'lookahead': unknown; valid: draft, eagle"),
        ({"draft": "llama-68m"}, r"row: draft 'llama-68m': method 'eagle' has no draft model"),
        ({"method": "draft"}, r"row: missing required key 'draft' \(of a speedup\) for method"),
        ({"quantity": "baseline_tokens_per_s"}, r"row: method 'eagle': not used by plain"),
        ({"medusa_heads": 4}, r"row: medusa_heads 4: method 'eagle' has no heads; valid: met"),
    ],
)
def test_malformed_method_rows_are_refused(tmp_path, change, match):
    row = {k: v for k, v in {**METHOD_ROW, **change}.items() if v is not None}
    with pytest.raises(ValueError, match=match) as info:
        load_published(_published(tmp_path, row))
    assert "\n" not in str(info.value)


@pytest.mark.slow  # a prediction and a refusal: ~10 s (2-core EPYC)
def test_a_tree_row_with_a_constant_alpha_is_predicted_and_errors_name_the_row(tmp_path):
    # A tree with alpha loaded but failed in predict ("a token tree needs TreeAcceptance"),
    # and that error named neither the row nor the file.
    row = {k: v for k, v in METHOD_ROW.items() if k != "tau"} | {"alpha": 0.7}
    rows, architectures = load_published(_published(tmp_path, row))
    assert predict_published(rows[0], architectures)["predicted"] > 1
    medusa = {**row, "method": "medusa", "medusa_heads": 3, "tree": None, "gamma": 4}
    path = _published(tmp_path, {k: v for k, v in medusa.items() if v is not None})
    with pytest.raises(ValueError, match=r"published.toml: row: Medusa with 3 heads drafts"):
        validate_published(path)


@pytest.mark.slow  # two predictions: ~10 s (2-core EPYC)
@pytest.mark.parametrize("shape", ["tree", "chain"])
def test_a_method_row_predicts_from_its_measured_tau(shape):
    # The row's acceptance reproduces the measured tau on its tree or chain, and the row is
    # priced as the library prices that speculator by hand, on the row's runtime.
    rows, architectures = load_published()
    method = "eagle" if shape == "tree" else "ngram"
    row = next(r for r in rows if r["group"] == "Spec-Bench speedup" and r.get("method") == method)
    target = models.get(row["target"]).with_dtypes("fp16")
    if shape == "tree":
        tree = TokenTree.preset(row["tree"])
        acceptance = acceptance_from_tau(row["tau"], tree.max_depth).tree(tree)
        speculator, drafted = Eagle.create(version=2), tree
    else:
        acceptance = acceptance_from_tau(row["tau"], row["gamma"]).constant()
        speculator, drafted = Ngram.create(), float(row["gamma"])
    workload = Workload.create(1, row["prompt_tokens"], row["generate_tokens"])
    d = Deployment.create(target, row["hardware"], workload, acceptance, runtime="eager")
    want = predict(d, speculator, drafted)
    assert float(want.expected_tokens_per_step) == pytest.approx(row["tau"], rel=1e-4)
    got = predict_published(row, architectures)
    assert got["predicted"] == pytest.approx(float(want.speedup), rel=RTOL_F32)


def test_published_architectures_and_ids_are_checked(tmp_path):
    arch = '[architecture."tiny"]\nn_layer = 2\n\n'
    with pytest.raises(ValueError, match=r'architecture."tiny": n_layer 2: unknown key \(did'):
        load_published(_published(tmp_path, GOOD_ROW, arch))
    path = _published(tmp_path, GOOD_ROW)
    path.write_text(path.read_text() * 2)
    with pytest.raises(ValueError, match="row: id 'row': repeated"):
        load_published(path)
    path.write_text("measurements = 1\n" + path.read_text())
    with pytest.raises(ValueError, match=r"measurements 1: unknown key \(did you mean measurement"):
        load_published(path)


def test_split_is_balanced_within_every_model_and_phase():
    frame = pd.DataFrame(
        {"model": ["a"] * 6 + ["b"] * 4, "phase": ["decode", "verify"] * 5, "x": range(10)}
    )
    train = split_train_test(frame, seed=3)
    assert train.sum() == 5
    for _, group in frame.assign(train=train).groupby(["model", "phase"]):
        assert abs(group["train"].sum() - (~group["train"]).sum()) <= 1
    np.testing.assert_array_equal(train, split_train_test(frame, seed=3))


def test_markdown_table():
    text = markdown_table(pd.DataFrame({"a": [1.5], "b": ["x"]}), ["a", "b"])
    assert text.splitlines() == ["| a | b |", "|---|---|", "| 1.5 | x |"]
    # a missing number is an empty cell, as in the CSV ("nan" filled 247 published rows)
    text = markdown_table(pd.DataFrame({"a": [np.nan], "b": ["x"]}), ["a", "b"])
    assert text.splitlines()[-1] == "|  | x |"


@pytest.mark.slow
def test_local_validation_runs_end_to_end(monkeypatch):
    import specsim.measure
    import specsim.measure._grids as grids
    from specsim import hardware

    # Nominal peaks of a fast machine instead of micro-benchmarks: the fit rescales them.
    # No interconnect domain (inf), as a measured CPU has none.
    unlimited = hardware.get("h100").replace(interconnect_domain_chips=math.inf)
    monkeypatch.setattr(specsim.measure, "local_hardware", lambda **_: unlimited)
    points = grids.calibration_points("tiny")[:6]
    monkeypatch.setattr(grids, "calibration_points", lambda size: points)
    configs = grids.speculative_configs("tiny")[:1]
    monkeypatch.setattr(grids, "speculative_configs", lambda size: configs)
    local = validate_local("tiny", repeats=2, rounds=2, sd_repeats=1, progress=False, log=None)
    steps = local.steps
    assert len(steps) == 6 and set(steps["split"]) == {"train", "test"}
    assert (steps["predicted_ms"] > 0).all() and np.isfinite(local.step_mape)
    assert len(local.speculative) == 1
    row = local.speculative.iloc[0]
    assert row["measured_tokens_per_s"] > 0 and row["predicted_tokens_per_s"] > 0
    assert 0 <= row["alpha"] <= 1 and np.isfinite(local.speculative_mape)
    # The report's JSON summary is strict JSON (no inf): the unlimited domain is null.
    _, summary = report_local(local)
    text = json.dumps(summary, allow_nan=False)
    assert json.loads(text)["fitted"]["interconnect_domain_chips"] is None


def test_validate_command_writes_tables(tmp_path, capsys):
    parser = add_validate_arguments(argparse.ArgumentParser())
    args = parser.parse_args(["--part", "published", "--output-dir", str(tmp_path)])
    assert run_validate(args) == 0
    out = capsys.readouterr().out
    assert "Published MAPE" in out and "specsim validate --part published" in out
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["validate_cpu.json", "validate_cpu.md", "validate_cpu.published.csv"]
    summary = json.loads((tmp_path / "validate_cpu.json").read_text())
    assert summary["published_rows"] == len(pd.read_csv(tmp_path / "validate_cpu.published.csv"))
    assert "jax" in summary["machine"] and summary["command"].startswith("specsim validate")


def test_validate_command_rejects_bad_options(tmp_path):
    parser = add_validate_arguments(argparse.ArgumentParser())
    # argparse refuses it (exit 2 with "--repeats 0: below 1"), before anything runs.
    with pytest.raises(SystemExit):
        parser.parse_args(["--repeats", "0"])
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    with pytest.raises(ValueError, match="not a folder"):
        run_validate(parser.parse_args(["--output-dir", str(not_a_folder)]))
    with pytest.raises(ValueError, match="cannot read"):
        run_validate(
            parser.parse_args(["--part", "published", "--published-file", "/nonexistent.toml"])
        )


def test_measurement_settings_come_before_anything_runs_jax(monkeypatch):
    # XLA_FLAGS only reach a backend that has not started, and predicting the published
    # rows starts one: `validate --part all` must configure the measurement first.
    import specsim.measure
    import specsim.validate

    calls = []

    class Stop(Exception):
        pass

    def published(path=None):
        calls.append("published")
        raise Stop

    monkeypatch.setattr(specsim.measure, "configure_measurement", lambda clock: calls.append(clock))
    monkeypatch.setattr(specsim.validate, "validate_published", published)
    parser = add_validate_arguments(argparse.ArgumentParser())
    with pytest.raises(Stop):
        run_validate(parser.parse_args(["--part", "all"]))
    assert calls == ["auto", "published"]


def test_the_command_offers_the_library_statistics():
    import specsim.cli.validate
    import specsim.validate

    assert specsim.cli.validate.STATISTICS == specsim.validate.STATISTICS


@pytest.mark.slow  # builds and runs a network, compiles two throughput reports (~5 s)
def test_measured_loops_are_priced_at_their_static_buffers(monkeypatch):
    """`specsim.measure`'s loops attend over their whole KV buffer at every pass (gpt-fast's
    static cache), so the validation prices every pass at the buffer's length: the buffers
    are what `generate` and `speculative_generate` allocate, and the reports' steps are
    the step times of one-token passes over those buffers (context = buffer - 1)."""
    import jax.numpy as jnp

    import specsim
    from specsim.measure import _speculative, build_model, layer_skip_draft, tiny_spec
    from specsim.validate._local import loop_predictions

    allocated = []
    init_cache = _speculative.init_cache

    def recording(config, batch, max_len):
        allocated.append(max_len)
        return init_cache(config, batch, max_len)

    monkeypatch.setattr(_speculative, "init_cache", recording)
    target = build_model(tiny_spec(n_layers=2))
    prompt = jnp.zeros((2, 5), jnp.int32)
    _speculative.generate(target, prompt, 7, temperature=0.0)
    _speculative.speculative_generate(
        target, layer_skip_draft(target, 1), prompt, 7, gamma=3, temperature=0.0
    )
    assert allocated == [
        _speculative.plain_buffer_tokens(5, 7),
        *[_speculative.speculative_buffer_tokens(5, 7, 3)] * 2,  # target and draft
    ]

    llama = specsim.models.get("llama-2-7b")
    draft = specsim.models.get("llama-68m")
    h100 = specsim.hardware.get("h100")
    loop = argparse.Namespace(batch=4, prompt_tokens=32, new_tokens=96, gamma=4)
    report, baseline = loop_predictions(llama, draft, h100, loop, 0.7, None)
    buffer = _speculative.speculative_buffer_tokens(32, 96, 4)
    at = specsim.step_time(llama, h100, 4.0, 1.0, buffer - 1.0).time_s
    assert abs(float(report.target_step_s) / float(at) - 1) < 1e-5
    plain = specsim.step_time(llama, h100, 4.0, 1.0, 32 + 96 - 1.0).time_s
    assert abs(baseline / (4.0 / float(plain)) - 1) < 1e-5
