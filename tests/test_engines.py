"""Serving-engine files: pinned output, parsed back and checked against each release's schema.

Every emitted file is read back the way its engine reads it (JSON, YAML, the shell command
line, the LLM-API call) and checked against the schema copied from the engine's source
(``specsim/engines/schemas``). The per-batch lookahead each file encodes is decoded with an
independent re-statement of the engine's own lookup (vLLM's dense table, SGLang's slot
routing, both TensorRT-LLM meanings of ``draft_len_schedule``) and must equal the plan's.
The exact text of every file is pinned in ``tests/data/engines`` (as ``NAME.golden``);
after a deliberate change, rewrite them with
``SPECSIM_UPDATE_GOLDEN=1 python -m pytest tests/test_engines.py``.
"""

from __future__ import annotations

import ast
import bisect
import json
import os
import pathlib
import re
import shlex
import tomllib
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from specsim import engines, models
from specsim.engines import ServingPlan, UnsupportedPlan, check, emit, resolve_version

GOLDEN = Path(__file__).parent / "data" / "engines"

LLAMA3 = "meta-llama/Meta-Llama-3-8B"
LLAMA31I = "meta-llama/Llama-3.1-8B-Instruct"
EAGLE3_HEAD = "yuhuili/EAGLE3-LLaMA3.1-Instruct-8B"

# The plans pinned in tests/data/engines/<case>/<engine>/<release>/<file>.
CASES = {
    "draft-ranges": ServingPlan.create(
        "draft",
        "meta-llama/Llama-3.1-70B",
        [(1, 7, 4), (8, 43, 3), (44, 300, 2), (301, 512, 0)],
        draft_id="meta-llama/Llama-3.2-1B",
        tp=4,
        draft_tp=1,
        target_vocab=128256,
        draft_vocab=128256,
    ),
    "eagle3-ranges": ServingPlan.create(
        "eagle3", LLAMA31I, [(1, 8, 5), (9, 32, 3), (33, 512, 0)], draft_id=EAGLE3_HEAD
    ),
    "eagle-tree": ServingPlan.create(
        "eagle3",
        LLAMA31I,
        [(1, 4, 6), (5, 64, 4)],
        draft_id=EAGLE3_HEAD,
        tree_topk=4,
        tree_tokens=24,
    ),
    "mtp-ranges": ServingPlan.create(
        "mtp", "deepseek-ai/DeepSeek-V3", [(1, 16, 2), (17, 128, 1)], tp=8
    ),
    "ngram-constant": ServingPlan.create("ngram", LLAMA3, [(1, 256, 3)], ngram_min=2, ngram_max=4),
    "never-pays": ServingPlan.create("draft", LLAMA3, [(1, 512, 0)], draft_id="JackFram/llama-68m"),
}


def _outputs():
    for case, plan in CASES.items():
        for engine in engines.ENGINES:
            for version in engines.versions(engine):
                try:
                    out = emit(plan, engine, version)
                except UnsupportedPlan:
                    continue
                yield case, plan, out


OUTPUTS = list(_outputs())
IDS = [f"{case}-{out.engine}-{out.version.name}" for case, _, out in OUTPUTS]


def _cli_flags(script: str, program_words: int) -> dict:
    """``{flag: value}`` of the exec line of an emitted script (bare flags -> True)."""
    command = script[script.index("exec ") :].replace('"$(dirname "$0")/', '"')
    words = shlex.split(command.replace("\\\n", " "))[1 + program_words :]
    flags: dict = {}
    i = 0
    while i < len(words):
        flag = words[i]
        assert flag.startswith("--"), words
        if i + 1 < len(words) and not words[i + 1].startswith("--"):
            value = words[i + 1]
            flags[flag] = int(value) if re.fullmatch(r"\d+", value) else value
            i += 2
        else:
            flags[flag] = True
            i += 1
    return flags


def _parsed(out) -> dict:
    """The settings of ``out`` as its engine reads them from the files alone."""
    files = out.files
    if out.engine == "vllm":
        cli = _cli_flags(files["serve.sh"], 3)
        config = {"cli": cli}
        if "--speculative-config" in cli:
            config["speculative_config"] = json.loads(cli["--speculative-config"])
            assert json.loads(files["speculative_config.json"]) == config["speculative_config"]
        return config
    if out.engine == "sglang":
        cli = _cli_flags(files["launch.sh"], 3)
        config = {"cli": cli}
        if "adaptive_config.json" in files:
            config["adaptive_config"] = json.loads(files["adaptive_config.json"])
        return config
    cli = _cli_flags(files["serve.sh"], 2)
    config = {"cli": cli}
    tree = ast.parse(files["llm_api.py"])
    calls = {
        node.func.id: {
            k.arg: ast.literal_eval(k.value)
            for k in node.keywords
            if not isinstance(k.value, ast.Name)  # speculative_config=speculative_config
        }
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    }
    config["llm_args"] = {"tensor_parallel_size": calls["LLM"]["tensor_parallel_size"]}
    if "extra_llm_api_options.yaml" in files:
        spec = yaml.safe_load(files["extra_llm_api_options.yaml"])["speculative_config"]
        (name,) = [n for n in calls if n.endswith("DecodingConfig")]
        assert calls[name] == {k: v for k, v in spec.items() if k != "decoding_type"}
        assert name.startswith(spec["decoding_type"].replace("_", "")[:5])
        config["speculative_config"] = spec
    return config


@pytest.mark.parametrize(("case", "plan", "out"), OUTPUTS, ids=IDS)
def test_files_match_golden(case, plan, out):
    folder = GOLDEN / case / out.engine / out.version.name
    if os.environ.get("SPECSIM_UPDATE_GOLDEN"):
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.iterdir():
            old.unlink()
        for name, text in out.files.items():
            (folder / f"{name}.golden").write_text(text)
    # Stored as NAME.golden so that linters and doctest collection leave them alone.
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{n}.golden" for n in out.files)
    for name, text in out.files.items():
        assert (folder / f"{name}.golden").read_text() == text, f"{folder / name} changed"


@pytest.mark.parametrize(("case", "plan", "out"), OUTPUTS, ids=IDS)
def test_files_parse_back_and_pass_their_release_schema(case, plan, out):
    parsed = _parsed(out)
    assert parsed == {k: dict(v) for k, v in out.config.items()}
    check(out.version, parsed)
    text = "".join(out.files.values())
    assert out.version.name in text and out.version.artifact in text
    for source in out.version.sources:
        assert source in out.files[next(iter(out.files))]
    assert "disable_by_batch_size" not in text


def _vllm_lookahead(config, batch, max_num_seqs=4096):
    """vLLM's K at ``batch``: build_dynamic_sd_schedule_lookup re-stated (0.24.0-0.34.0)."""
    spec = config.get("speculative_config")
    if spec is None:
        return 0
    most, table = spec["num_speculative_tokens"], spec.get("num_speculative_tokens_per_batch_size")
    if table is None:
        return most
    dense, next_bs, last = [0] * (max_num_seqs + 1), 1, None
    for start, end, k in sorted(table):
        if start > next_bs and last is not None:
            for b in range(next_bs, start):
                dense[b] = min(most, last)
        for b in range(max(start, next_bs), min(end, max_num_seqs) + 1):
            dense[b] = min(most, k)
        next_bs, last = max(next_bs, end + 1), k
    for b in range(next_bs, max_num_seqs + 1):
        dense[b] = min(most, last)
    return dense[batch]


def _trtllm_lookahead(config, batch, semantics):
    """TensorRT-LLM's draft length at ``batch`` under either meaning of the schedule."""
    spec = config.get("speculative_config")
    if spec is None:
        return 0
    most = spec.get("max_draft_len", spec.get("num_nextn_predict_layers"))
    schedule = spec.get("draft_len_schedule")
    if schedule is None:
        return most
    keys = sorted(schedule)
    if semantics == "lower_bounds":  # drafter.py: largest key <= batch (bisect_right)
        return schedule[keys[bisect.bisect_right(keys, batch) - 1]]
    i = bisect.bisect_left(keys, batch)  # utils.py: smallest key >= batch, else 0
    return schedule[keys[i]] if i < len(keys) else 0


def _sglang_steps(config, batch):
    """SGLang's draft steps at ``batch``: the slot with the largest key <= batch."""
    slots = {int(k): v for k, v in config.get("adaptive_config", {}).items() if k.isdigit()}
    if not slots:
        return config["cli"].get("--speculative-num-steps", 0)
    keys = sorted(slots)
    key = keys[max(0, bisect.bisect_right(keys, batch) - 1)]
    (steps,) = slots[key]["candidate_steps"]
    return steps


def _expected(plan, out, batch):
    """What the files should run at ``batch``, given what the release can express."""
    k = plan.lookahead_at(batch)
    if out.version.schedule == "static" or len({r[2] for r in plan.ranges}) == 1:
        return plan.lookahead_at(plan.batch)
    return k


@pytest.mark.parametrize(("case", "plan", "out"), OUTPUTS, ids=IDS)
def test_files_encode_the_plans_lookahead(case, plan, out):
    parsed = _parsed(out)
    for batch in range(1, plan.last_batch + 1):
        if out.engine == "vllm":
            assert _vllm_lookahead(parsed, batch) == _expected(plan, out, batch), batch
        elif out.engine == "tensorrt-llm":
            got = _trtllm_lookahead(parsed, batch, out.version.schedule)
            if plan.method == "mtp" or plan.is_tree:
                assert got == plan.lookahead_at(plan.batch)
            else:
                assert got == min(_expected(plan, out, batch), plan.ranges[0][2]), batch
        elif "adaptive_config" in parsed:
            low = out.version.extra["adaptive_min_steps"]
            assert _sglang_steps(parsed, batch) == max(plan.lookahead_at(batch), low), batch


RANGES = st.lists(st.tuples(st.integers(1, 40), st.integers(0, 8)), min_size=1, max_size=6).map(
    lambda runs: _consecutive(runs)
)


def _consecutive(runs):
    out, first = [], 1
    for length, k in runs:
        out.append((first, first + length - 1, k))
        first += length
    return out


@pytest.mark.slow
@settings(max_examples=60, deadline=None)
@given(ranges=RANGES, method=st.sampled_from(["draft", "eagle3", "ngram"]))
def test_any_schedule_round_trips_through_every_engine(ranges, method):
    draft = None if method == "ngram" else EAGLE3_HEAD
    plan = ServingPlan.create(method, LLAMA3, ranges, draft_id=draft)
    for engine in engines.ENGINES:
        for version in engines.versions(engine):
            out = emit(plan, engine, version)
            parsed = _parsed(out)
            check(out.version, parsed)
            varies = len({k for _, _, k in ranges}) > 1
            for batch in range(1, plan.last_batch + 1):
                k = plan.lookahead_at(batch)
                if engine == "vllm" and version.schedule == "ranges":
                    assert _vllm_lookahead(parsed, batch) == k
                elif engine == "tensorrt-llm" and varies:
                    want = min(k, ranges[0][2])
                    assert _trtllm_lookahead(parsed, batch, version.schedule) == want
                elif engine == "sglang" and "adaptive_config" in parsed:
                    low = version.extra["adaptive_min_steps"]
                    assert _sglang_steps(parsed, batch) == max(k, low)


def test_release_ranges_and_refusals():
    assert [v.name for v in engines.versions("sglang")] == ["0.5.23", "0.5.13", "0.5.12"]
    assert [v.name for v in engines.versions("tensorrt-llm")] == ["1.3.0rc27", "1.2.0"]
    for engine, release, name in [
        ("vllm", "0.34.0", "0.34.0"),
        ("vllm", "0.33.1", "0.34.0"),
        ("vllm", "0.24.0", "0.32.0"),
        ("vllm", "0.23.9", "0.23.0"),
        ("vllm", "v0.15.0", "0.23.0"),
        ("sglang", "0.5.13.post1", "0.5.13"),
        ("sglang", "0.5.14", "0.5.23"),
        ("sglang", "0.5.10", "0.5.12"),
        ("trtllm", "1.2.1", "1.2.0"),
        ("TensorRT-LLM", "1.3.0rc29", "1.3.0rc27"),
    ]:
        assert resolve_version(engine, release).name == name
    for engine, release in [
        ("vllm", "0.14.0"),
        ("vllm", "0.35.0"),
        ("sglang", "0.5.24"),
        ("tensorrt-llm", "1.3.0rc12"),
        ("tensorrt-llm", "1.1.0"),
    ]:
        with pytest.raises(ValueError, match=r"no schema for this release.*valid: "):
            resolve_version(engine, release)
    with pytest.raises(ValueError, match=r"expected MAJOR\.MINOR"):
        resolve_version("vllm", "latest")
    with pytest.raises(ValueError, match="unknown serving engine 'tgi'; valid: vllm"):
        resolve_version("tgi")


def test_schema_files_name_their_sources():
    for engine in engines.ENGINES:
        for v in engines.versions(engine):
            assert v.sources and v.artifact and v.checked
            assert all(engines.resolve_version(engine, c).name == v.name for c in v.checked), v.name
            for section in v.sections.values():
                for spec in section.values():
                    assert spec["type"] in (
                        "int", "bool", "str", "path", "flag", "json", "model_id", "ranges",
                        "int_map",
                    )  # fmt: skip


BAD = [
    ("vllm", "0.34.0", {"speculative_config": {"num_speculative_tokens": 3,
     "disable_by_batch_size": 8}}, "'disable_by_batch_size' is unknown"),
    ("vllm", "0.34.0", {"speculative_config": {"num_speculative_tokens": 3,
     "tensor_parallel_size": 2}}, "'tensor_parallel_size' is unknown"),
    ("vllm", "0.23.0", {"speculative_config": {"num_speculative_tokens": 3,
     "num_speculative_tokens_per_batch_size": [[1, 4, 3]]}}, "per_batch_size' is unknown"),
    ("vllm", "0.34.0", {"speculative_config": {"num_speculative_tokens": 3,
     "num_speculative_tokens_per_batch_size": [[2, 4, 3]]}}, "must start at batch 1"),
    ("vllm", "0.34.0", {"speculative_config": {"num_speculative_tokens": 3,
     "num_speculative_tokens_per_batch_size": [[1, 4, 3], [4, 9, 1]]}}, "overlap"),
    ("vllm", "0.34.0", {"speculative_config": {"num_speculative_tokens": 2,
     "num_speculative_tokens_per_batch_size": [[1, 4, 3]]}}, "above num_speculative_tokens"),
    ("vllm", "0.34.0", {"speculative_config": {"num_speculative_tokens": 0}}, "must be > 0"),
    ("vllm", "0.34.0", {"speculative_config": {"method": "medusa", "num_speculative_tokens": 2}},
     "'medusa' is not one of"),
    ("vllm", "0.34.0", {"speculative_config": {"model": "llama-68m",
     "num_speculative_tokens": 2}}, "neither a Hub id"),
    ("vllm", "0.34.0", {"cli": {"--tensor-parallel-size": 4}, "speculative_config": {
     "num_speculative_tokens": 2, "draft_tensor_parallel_size": 2}}, "must be 1 or the target"),
    ("vllm", "0.34.0", {"speculative_config": {"method": "eagle"}}, "needs 'num_speculative_tok"),
    ("tensorrt-llm", "1.2.0", {"speculative_config": {"decoding_type": "NGram",
     "max_draft_len": 4, "draft_len_schedule": {4: 4, 8: 2}}}, "must include batch size 1"),
    ("tensorrt-llm", "1.3.0rc27", {"speculative_config": {"decoding_type": "NGram",
     "max_draft_len": 4, "draft_len_schedule": {4: 3, 8: 2}}}, "smallest batch-size key"),
    ("tensorrt-llm", "1.3.0rc27", {"speculative_config": {"decoding_type": "NGram",
     "max_draft_len": 4, "draft_len_schedule": {4: 4, 8: 5}}}, "0 .. max_draft_len"),
    ("tensorrt-llm", "1.3.0rc27", {"speculative_config": {"decoding_type": "Eagle",
     "max_draft_len": 4}}, "'Eagle' is not one of"),
    ("tensorrt-llm", "1.3.0rc27", {"speculative_config": {"max_draft_len": 4}},
     "needs 'decoding_type'"),
    ("sglang", "0.5.23", {"cli": {"--speculative-algorithm": "STANDALONE",
     "--speculative-adaptive": True, "--speculative-adaptive-config": "a.json"}},
     "only with EAGLE or EAGLE3"),
    ("sglang", "0.5.23", {"cli": {"--speculative-algorithm": "EAGLE",
     "--speculative-eagle-topk": 4, "--speculative-adaptive": True}}, "needs --speculative-eagle"),
    ("sglang", "0.5.13", {"adaptive_config": {"1": {"candidate_steps": [3]},
     "9": {"candidate_steps": [0]}}}, "ints >= 1"),
    ("sglang", "0.5.23", {"adaptive_config": {"2": {"candidate_steps": [3]}}}, "must be '1'"),
    ("sglang", "0.5.23", {"cli": {"--speculative-num-steps": 4}, "adaptive_config": {
     "1": {"candidate_steps": [3]}}}, "one of the candidate steps"),
    ("sglang", "0.5.12", {"cli": {"--speculative-adaptive": True}}, "unknown"),
    ("sglang", "0.5.23", {"cli": {"--speculative-algorithm": "EAGLE",
     "--speculative-num-steps": 3, "--speculative-num-draft-tokens": 8}}, "steps \\+ 1"),
]  # fmt: skip


@pytest.mark.parametrize(("engine", "release", "config", "message"), BAD)
def test_schema_refuses_what_the_engine_refuses(engine, release, config, message):
    with pytest.raises(ValueError, match=message):
        check(resolve_version(engine, release), config)


def test_unsupported_methods_say_why():
    medusa = ServingPlan.create("medusa", LLAMA3, [(1, 8, 3)], draft_id="org/medusa-heads")
    assert emit(medusa, "vllm", "0.32.0").config["speculative_config"]["method"] == "medusa"
    with pytest.raises(
        UnsupportedPlan, match=r"vLLM 0\.34\.0 has no speculation method for 'medusa'"
    ):
        emit(medusa, "vllm", "0.34.0")
    with pytest.raises(UnsupportedPlan, match=r"SGLang 0\.5\.23 has no speculative algorithm"):
        emit(medusa, "sglang")
    selfspec = ServingPlan.create("self", LLAMA3, [(1, 8, 3)])
    for engine in engines.ENGINES:
        with pytest.raises(UnsupportedPlan, match="'self'"):
            emit(selfspec, engine)
    eagle1 = ServingPlan.create("eagle", LLAMA3, [(1, 8, 3)], draft_id="yuhuili/EAGLE-x")
    with pytest.raises(UnsupportedPlan, match="PyTorch backend"):
        emit(eagle1, "tensorrt-llm")
    mismatch = ServingPlan.create(
        "draft", LLAMA3, [(1, 8, 3)], draft_id="JackFram/llama-68m", target_vocab=128256,
        draft_vocab=32000,
    )  # fmt: skip
    with pytest.raises(UnsupportedPlan, match=r"vocabulary size differs.*32000 vs 128256"):
        emit(mismatch, "vllm")
    assert "differs from the target's" in emit(mismatch, "sglang").main
    odd_tp = ServingPlan.create("draft", LLAMA3, [(1, 8, 3)], draft_id="o/d", tp=8, draft_tp=2)
    with pytest.raises(UnsupportedPlan, match="TP 1 or the target's TP"):
        emit(odd_tp, "vllm")


def test_placeholders_are_written_but_not_loadable():
    plan = ServingPlan.create(
        "draft", LLAMA3, [(1, 8, 3)], draft_id=engines.model_id("2x512", "draft")
    )
    out = emit(plan, "vllm")
    assert not out.loadable
    assert "<set --draft-id: 2x512 is a draft shape still to be trained>" in out.main
    assert "NOT LOADABLE YET" in out.main
    with pytest.raises(ValueError, match="is a placeholder, not a model id"):
        check(out.version, _parsed(out))


def test_model_ids(tmp_path, monkeypatch):
    assert engines.model_id("llama-3.1-8b") == "meta-llama/Llama-3.1-8B"
    assert engines.model_id("JackFram/llama-68m", "draft") == "JackFram/llama-68m"
    assert engines.model_id("chinchilla").startswith("<set --target-id: Chinchilla-70B")
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "config.json").write_text(json.dumps(_LLAMA_CONFIG))
    assert "config file without weights" in engines.model_id(str(bare / "config.json"))
    (bare / "model.safetensors").write_text("")
    assert engines.model_id(str(bare)) == str(bare)
    cache = tmp_path / "hub"
    snapshot = cache / "models--org--tiny" / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text(json.dumps(_LLAMA_CONFIG))
    (cache / "models--org--tiny" / "refs").mkdir()
    (cache / "models--org--tiny" / "refs" / "main").write_text("abc")
    for variable in ("HUGGINGFACE_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    assert engines.model_id("org/tiny@abc") == "org/tiny"
    assert "not a catalogue model" in engines.model_id("org/absent")


_LLAMA_CONFIG = {
    "model_type": "llama",
    "num_hidden_layers": 2,
    "hidden_size": 64,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "intermediate_size": 128,
    "vocab_size": 1000,
}


def test_hub_ids_name_catalogue_models():
    table = tomllib.loads((Path(models.__file__).parent / "hub_ids.toml").read_text())["hub_id"]
    for name, repo in table.items():
        models.canonical_name(name)  # raises for a name the catalogue does not know
        assert re.fullmatch(r"[\w.-]+/[\w.-]+", repo), repo


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ranges": [(2, 8, 3)]}, "starts at 2, expected 1"),
        ({"ranges": [(1, 8, 3), (10, 12, 1)]}, "starts at 10, expected 9"),
        ({"ranges": [(1, 8, -1)]}, "lookahead must be a whole number >= 0"),
        ({"ranges": [(1, 8.5, 3)]}, "last batch must be a whole number"),
        ({"ranges": []}, "at least one"),
        ({"method": "spec"}, "unknown speculation method 'spec'"),
        ({"draft_id": None}, "give draft_id"),
        ({"method": "ngram"}, "drop draft_id"),
        ({"tree_topk": 2}, "needs tree_tokens"),
        ({"tree_tokens": 8}, "only applies to a tree"),
        ({"tp": 0}, "tp must be a whole number >= 1"),
        ({"ngram_min": 3, "ngram_max": 2}, "ngram_max must be a whole number >= 3"),
        # a TypeError and int()'s own message before
        ({"ranges": 5}, r"ranges 5: not a sequence of \(first_batch, last_batch, lookahead\)"),
        ({"ranges": [("a", 2, 3)]}, "first batch must be a whole number >= 1, got 'a'"),
        ({"ranges": [(1, float("nan"), 3)]}, "last batch must be a whole number >= 1, got nan"),
        ({"tp": "2"}, "tp must be a whole number >= 1, got '2'"),
    ],
)
def test_plan_refuses_bad_input(kwargs, message):
    args = {"method": "draft", "ranges": [(1, 8, 3)], "draft_id": "o/d", **kwargs}
    method, ranges = args.pop("method"), args.pop("ranges")
    with pytest.raises(ValueError, match=message):
        ServingPlan.create(method, LLAMA3, ranges, **args)


def test_write_puts_each_engine_in_its_folder(tmp_path):
    plan = CASES["eagle3-ranges"]
    outs = [emit(plan, e) for e in engines.ENGINES]
    written = engines.write(outs, tmp_path / "out")
    assert sorted(os.path.relpath(p, tmp_path / "out") for p in written) == sorted(
        [
            "vllm/serve.sh",
            "vllm/speculative_config.json",
            "sglang/launch.sh",
            "sglang/adaptive_config.json",
            "tensorrt-llm/llm_api.py",
            "tensorrt-llm/extra_llm_api_options.yaml",
            "tensorrt-llm/serve.sh",
        ]
    )
    assert os.access(tmp_path / "out" / "sglang" / "launch.sh", os.X_OK)
    assert not list((tmp_path / "out").rglob(".*"))  # no temporary left behind


def test_a_failed_write_leaves_complete_files_and_no_temporary(tmp_path, monkeypatch):
    outs = [emit(CASES["eagle3-ranges"], "vllm")]
    calls = []
    real = pathlib.Path.write_text

    def fail_second(self, text, *args, **kwargs):
        calls.append(self)
        if len(calls) == 2:  # the disk fills up half-way through the second file
            real(self, text[: len(text) // 2])
            raise OSError(28, "No space left on device")
        return real(self, text, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "write_text", fail_second)
    with pytest.raises(OSError, match="No space"):
        engines.write(outs, tmp_path / "out")
    folder = tmp_path / "out" / "vllm"
    assert [p.name for p in folder.iterdir()] == ["serve.sh"]  # the first, whole; no temporary
    assert (folder / "serve.sh").read_text() == outs[0].files["serve.sh"]
