"""Per-batch-size lookahead schedules and their serving-engine snippets."""

from __future__ import annotations

import argparse
import io
import json
from contextlib import redirect_stdout

import numpy as np
import pytest

import specsim
from specsim import hardware, models
from specsim._schedule import Schedule, speculation_schedule
from specsim.cli.schedule import SCHEDULE_JSON_KEYS, add_schedule_arguments, run_schedule

MAX_BATCH = 256


@pytest.fixture(scope="module")
def low_alpha():
    """A pairing whose speculation stops paying inside the batch range."""
    return (
        models.get("llama-3-8b"),
        models.get("llama-160m"),
        hardware.get("a100-80gb"),
        # (0.5: with partial compute/memory overlap and per-token costs priced, alpha 0.6
        # keeps paying up to batch ~360 on an A100)
        specsim.ConstantAcceptance.create(0.5),
    )


@pytest.fixture(scope="module")
def low_alpha_schedule(low_alpha):
    return speculation_schedule(*low_alpha, max_batch=MAX_BATCH, max_gamma=8)


@pytest.mark.slow
def test_best_gamma_matches_brute_force(low_alpha, low_alpha_schedule):
    target, draft, chip, acceptance = low_alpha
    for batch in (1, 7, 64, 200):
        workload = specsim.Workload.create(batch, 512, 256)
        tokens = [
            float(specsim.throughput(target, draft, chip, workload, g, acceptance).tokens_per_s)
            for g in range(9)
        ]
        assert low_alpha_schedule.gamma[batch - 1] == int(np.argmax(tokens))
        assert low_alpha_schedule.tokens_per_s[batch - 1] == pytest.approx(max(tokens), rel=1e-5)


def test_switch_off_batch_is_where_speculation_stops_for_good(low_alpha_schedule):
    s = low_alpha_schedule
    assert s.switch_off_batch is not None and 1 < s.switch_off_batch <= MAX_BATCH
    assert s.gamma[s.switch_off_batch - 2] > 0
    assert np.all(s.gamma[s.switch_off_batch - 1 :] == 0)
    assert np.all(s.speedup[s.switch_off_batch - 1 :] == pytest.approx(1.0))
    # Speculation never makes things worse: gamma 0 is always a candidate.
    assert np.all(s.speedup >= 1.0 - 1e-6)
    # Bigger batches never want a longer lookahead here.
    assert np.all(np.diff(s.gamma) <= 0)


def test_speculation_that_pays_everywhere_has_no_switch_off():
    s = speculation_schedule(
        models.get("llama-3-8b"),
        models.get("llama-68m"),
        hardware.get("h100"),
        specsim.ConstantAcceptance.create(0.9),
        max_batch=MAX_BATCH,
        max_gamma=8,
    )
    assert s.switch_off_batch is None and s.gamma[-1] > 0


def test_schedule_ends_where_the_target_stops_fitting(low_alpha):
    target, draft, _, acceptance = low_alpha
    s = speculation_schedule(
        target, draft, hardware.get("v100"), acceptance, max_batch=MAX_BATCH, max_gamma=8
    )
    last = s.runs()[-1][1]
    assert last < MAX_BATCH and s.fits[last - 1] and not s.fits[last:].any()
    assert s.switch_off_batch is not None and s.switch_off_batch <= last


def _manual(gamma: list[int]) -> Schedule:
    n = len(gamma)
    return Schedule(
        batch_sizes=np.arange(1, n + 1),
        gamma=np.asarray(gamma),
        tokens_per_s=np.ones(n),
        speedup=np.ones(n),
        fits=np.ones(n, dtype=bool),
        switch_off_batch=None,
        max_gamma=8,
    )


def test_draft_len_schedule_follows_tensorrt_llm_semantics():
    # Upper bounds (TensorRT-LLM from 1.3.0rc27): keys are the largest batch of each range;
    # larger batches implicitly get 0.
    assert _manual([4, 4, 2, 2, 1, 0, 0]).draft_len_schedule() == {2: 4, 4: 2, 5: 1}
    # A gap inside the range must be explicit; speculation up to the end keeps the last key.
    assert _manual([2, 0, 1, 1]).draft_len_schedule() == {1: 2, 2: 0, 4: 1}
    assert _manual([0, 0]).draft_len_schedule() == {}


def test_snippets_are_the_engine_files_of_the_schedule(low_alpha_schedule):
    s = low_alpha_schedule
    vllm = s.vllm_snippet("meta-llama/Meta-Llama-3-8B", "JackFram/llama-160m", batch=1, tp=2)
    table = [[a, b, g] for a, b, g in s.runs()]
    assert f'"num_speculative_tokens_per_batch_size": {json.dumps(table)}' in vllm
    assert "--tensor-parallel-size 2" in vllm and "disable_by_batch_size" not in vllm
    old = s.vllm_snippet("meta-llama/Meta-Llama-3-8B", "JackFram/llama-160m", version="0.23.0")
    assert f'"num_speculative_tokens": {s.gamma_at(1)}' in old and "per_batch_size" not in old
    trt = s.tensorrt_llm_snippet("JackFram/llama-160m", "meta-llama/Meta-Llama-3-8B")
    compile(trt, "<trt>", "exec")
    assert f"draft_len_schedule={s.draft_len_schedule()!r}" in trt
    assert f"max_draft_len={max(s.draft_len_schedule().values())}" in trt
    lower = s.tensorrt_llm_snippet("JackFram/llama-160m", version="1.2.1")
    assert "draft_len_schedule={1: " in lower and "<set --target-id" in lower


@pytest.mark.slow
def test_target_that_does_not_fit_is_a_clear_error(low_alpha):
    _, draft, chip, acceptance = low_alpha
    with pytest.raises(ValueError, match="does not fit in memory even at batch 1"):
        speculation_schedule(models.get("llama-3-70b"), draft, chip, acceptance, max_batch=8)
    with pytest.raises(ValueError, match="max_batch"):
        speculation_schedule(*_pair(), max_batch=0)


def _pair():
    return (
        models.get("llama-3-8b"),
        models.get("llama-68m"),
        hardware.get("h100"),
        specsim.ConstantAcceptance.create(0.8),
    )


def _run(argv):
    parser = argparse.ArgumentParser()
    add_schedule_arguments(parser)
    out = io.StringIO()
    with redirect_stdout(out):
        code = run_schedule(parser.parse_args(argv))
    return code, out.getvalue()


def test_cli_json_keys_and_optimised_draft_shape(capsys):
    code, text = _run(
        [
            "--json",
            "--draft",
            "2x512",
            "--max-batch",
            str(MAX_BATCH),
            "--max-gamma",
            "8",
            "--alpha",
            "0.6",
        ]
    )
    assert code == 0
    payload = json.loads(text)
    assert list(payload) == list(SCHEDULE_JSON_KEYS)
    assert payload["scenario"]["draft"] == "draft-2x512"
    assert payload["scenario"]["target_id"] == "meta-llama/Llama-2-7b-hf"  # the default
    assert payload["scenario"]["draft_id"].startswith("<set --draft-id: 2x512")
    assert len(payload["gamma"]) == MAX_BATCH
    assert (
        set(payload["snippets"])
        == set(payload["engines"])
        == {
            "vllm",
            "sglang",
            "tensorrt-llm",
        }
    )
    assert payload["engines"]["vllm"]["version"] == "0.34.0"
    assert payload["engines"]["vllm"]["loadable"] is False
    assert "not loadable until set: <set --draft-id: 2x512" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_text_shows_runs_and_one_file_per_engine():
    code, text = _run(
        [
            "--target",
            "llama-2-7b",
            "--draft",
            "llama-160m",
            "--hardware",
            "a100-80gb",
            "--alpha",
            "0.5",
            "--max-batch",
            str(MAX_BATCH),
            "--max-gamma",
            "8",
        ]
    )
    assert code == 0
    assert "switch speculation off from batch" in text
    assert "vllm 0.34.0: serve.sh (also speculative_config.json" in text
    assert "sglang 0.5.23: launch.sh" in text and "tensorrt-llm 1.3.0rc27: llm_api.py" in text
    assert "num_speculative_tokens_per_batch_size" in text and "draft_len_schedule" in text
    assert "vllm serve meta-llama/Llama-2-7b-hf" in text and "JackFram/llama-160m" in text
    # Another vocabulary: refused up front unless the user vouches for one tokenizer
    # (embedding tables padded to other sizes); vLLM still refuses the sizes' mismatch.
    argv = ["--target", "llama-3-8b", "--max-batch", "16", "--max-gamma", "4", "--engine", "vllm"]
    argv += ["--draft", "llama-68m"]  # (without --draft: Llama-3.2-1B, the target's vocabulary)
    with pytest.raises(ValueError, match="--shared-tokenizer"):
        _run(argv)
    code, text = _run([*argv, "--shared-tokenizer"])
    assert "vllm: not written: vLLM 0.34.0 refuses a draft model whose vocabulary" in text


@pytest.mark.slow
def test_cli_out_dir_engine_versions_and_ids(tmp_path):
    out = tmp_path / "serve"
    argv = [
        "--target",
        "llama-2-7b",
        "--draft",
        "llama-160m",
        "--max-batch",
        "64",
        "--max-gamma",
        "6",
        "--engine",
        "vllm,tensorrt-llm",
        "--engine-version",
        "vllm=0.23.0",
        "--engine-version",
        "trtllm=1.2.1",
        "--target-id",
        "/models/llama3",
        "--draft-id",
        "org/draft",
        "--tp",
        "2",
        "--out-dir",
        str(out),
    ]
    code, text = _run(argv)
    assert code == 0 and "wrote " in text
    assert sorted(p.name for p in (out / "vllm").iterdir()) == [
        "serve.sh",
        "speculative_config.json",
    ]
    serve = (out / "vllm" / "serve.sh").read_text()
    assert "vLLM 0.23.0" in serve and "vllm serve /models/llama3" in serve
    assert "--tensor-parallel-size 2" in serve
    yaml_text = (out / "tensorrt-llm" / "extra_llm_api_options.yaml").read_text()
    assert "TensorRT-LLM 1.2.0" in yaml_text and "org/draft" in yaml_text
    assert not (out / "sglang").exists()
    with pytest.raises(ValueError, match="already holds files; pass --overwrite"):
        _run(argv)
    assert _run([*argv, "--overwrite"])[0] == 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--engine-version", "vllm=0.14.0"], "vLLM 0.14.0: no schema for this release"),
        (["--engine-version", "0.34.0"], "say which engine"),
        (["--engine", "vllm", "--engine-version", "sglang=0.5.23"], "sglang is not among"),
        (["--engine", "tgi"], "unknown serving engine 'tgi'"),
    ],
)
def test_cli_refuses_bad_engine_flags_before_computing(argv, message):
    with pytest.raises(ValueError, match=message):
        _run(argv)


def test_cli_lists_engine_versions():
    code, text = _run(["--engine-version", "list"])
    assert code == 0
    assert "vllm          0.34.0     covers 0.33.0 to before 0.35.0" in text
    assert "tensorrt-llm  1.2.0" in text and "lower_bounds" in text


def test_cli_rejects_a_draft_shape_off_the_head_grid():
    with pytest.raises(ValueError, match="multiple of the head dim"):
        _run(["--draft", "2x100"])


@pytest.mark.slow
def test_cli_method_eagle3_writes_each_engines_per_batch_form(tmp_path):
    out = tmp_path / "serve"
    code, text = _run(
        [
            "--method",
            "eagle3",
            "--target",
            "llama-3.1-8b",
            "--draft-id",
            "yuhuili/EAGLE3-LLaMA3.1-Instruct-8B",
            "--max-batch",
            "128",
            "--max-gamma",
            "8",
            "--out-dir",
            str(out),
        ]
    )
    assert code == 0 and "Llama-3-8B + EAGLE-3 head" in text
    vllm = json.loads((out / "vllm" / "speculative_config.json").read_text())
    assert vllm["method"] == "eagle3"
    assert vllm["model"] == "yuhuili/EAGLE3-LLaMA3.1-Instruct-8B"
    slots = json.loads((out / "sglang" / "adaptive_config.json").read_text())
    table = vllm["num_speculative_tokens_per_batch_size"]
    assert {k: v for k, v in slots.items() if k.isdigit()} == {
        str(a): {"candidate_steps": [k]} for a, _, k in table
    }
    assert "Eagle3DecodingConfig" in (out / "tensorrt-llm" / "llm_api.py").read_text()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--method", "eagle3", "--draft", "llama-68m"], "--draft applies to --method draft"),
        (["--method", "draft", "--medusa-heads", "4"], "applies to --method medusa, not"),
        (["--method", "ngram", "--draft-id", "o/d"], "--draft-id applies to a method"),
        (["--method", "self"], "--method self needs --draft-layers"),
        (["--method", "ngram", "--ngram-match", "1.5"], r"--match-probability must be in \(0, 1\]"),
        (["--method", "ngram", "--ngram-min", "5", "--ngram-max", "3"], "below --ngram-min"),
    ],
)
def test_cli_method_flags_belong_to_their_method(argv, message):
    with pytest.raises(ValueError, match=message):
        _run(argv)


@pytest.mark.slow
def test_cli_method_without_engine_support_says_why():
    code, text = _run(["--method", "self", "--self-layers", "8", "--max-batch", "8"])
    assert code == 0 and "self-speculation (8 layers)" in text
    assert "vllm: not written: vLLM 0.34.0 has no speculation method for 'self'" in text
    code, text = _run(["--method", "medusa", "--max-batch", "8", "--max-gamma", "9"])
    assert "gamma searched up to 5: Medusa drafts one token per head" in text
    assert "vllm: not written" in text  # vLLM dropped Medusa in 0.33.0
    code, text = _run(["--method", "medusa", "--max-batch", "8", "--engine", "vllm",
                       "--engine-version", "0.32.0", "--draft-id", "o/medusa"])  # fmt: skip
    assert '"method": "medusa"' in text


@pytest.mark.slow
def test_schedule_takes_any_speculator():
    from specsim import speculators

    target, chip = models.get("llama-3-8b"), hardware.get("h100")
    acceptance = specsim.ConstantAcceptance.create(0.7)
    head = speculators.Eagle.create(3)
    s = speculation_schedule(target, head, chip, acceptance, max_batch=32, max_gamma=6)
    for batch in (1, 32):
        deployment = specsim.Deployment.create(
            target, chip, specsim.Workload.create(batch, 512, 256), acceptance
        )
        tokens = [float(specsim.predict(deployment, head, g).tokens_per_s) for g in range(7)]
        assert s.gamma[batch - 1] == int(np.argmax(tokens))
    with pytest.raises(ValueError, match="SDSL"):
        speculation_schedule(
            target, head, chip, specsim.SDSLAcceptance.create(1.5e13, 1.5e13), max_batch=4
        )


def test_cli_schedule_limits_match_the_library():
    from specsim import _schedule
    from specsim.cli import schedule

    assert schedule.MAX_SCHEDULE_GAMMA == _schedule.MAX_SCHEDULE_GAMMA
    assert schedule.MAX_SCHEDULE_BATCH == _schedule.MAX_SCHEDULE_BATCH
