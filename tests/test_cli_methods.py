"""``--method`` on the command line: evaluate, optimize, schedule and sweep for every method."""

import json
from importlib import resources

import pytest
from conftest import assert_close
from test_cli import assert_usage_error, run

import specsim
from specsim import Deployment, DynamicTree, TreeAcceptance, Workload
from specsim.speculators import Eagle

FILES = resources.files("specsim") / "data" / "acceptance"
PROM = str(FILES / "vllm_metrics.prom")  # vLLM's counters over 4 draft positions


@pytest.mark.slow
def test_evaluate_a_tree_matches_the_library(capsys):
    code, out, err = run(
        capsys, "evaluate", "--target", "llama-3-8b", "--method", "eagle3", "--tree", "4,8,8,4",
        "--alphas", "0.8,0.75,0.7,0.7", "--json",
    )  # fmt: skip
    assert code == 0, err
    got = json.loads(out)
    assert got["method"] == "eagle3" and got["shape"]["widths"] == [4, 8, 8, 4]
    acc = TreeAcceptance.from_top1([0.8, 0.75, 0.7, 0.7], ranks=8, decay=0.55)
    d = Deployment.create("llama-3-8b", "h100", Workload.create(1, 512, 256), acc)
    want = specsim.predict(d, Eagle.create(version=3), DynamicTree.create([4, 8, 8, 4]))
    assert_close(got["tokens_per_s"], float(want.tokens_per_s), rtol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize(
    "argv",
    [
        ("--method", "ngram", "--match-probability", "0.5", "--gamma", "5"),
        ("--method", "self", "--draft-layers", "8", "--kv-budget", "256"),
        ("--method", "medusa", "--medusa-heads", "4", "--gamma", "3"),
        # (the file measured 4 positions: a tree at most 4 deep; EAGLE's preset is 5)
        ("--method", "eagle", "--tree", "4,4,2,1", "--acceptance-file",
         str(FILES / "vllm_metrics.prom")),
        ("--method", "draft", "--alphas", "0.9,0.8,0.7", "--gamma", "3"),
    ],
)  # fmt: skip
def test_evaluate_every_method(capsys, argv):
    code, out, err = run(capsys, "evaluate", *argv, "--json")
    assert code == 0, err
    got = json.loads(out)
    assert got["method"] == argv[1] and got["speedup"] > 1.0


@pytest.mark.slow
def test_evaluate_a_method_prices_the_runtime_named(capsys):
    # --runtime was dropped on the --method path: an EAGLE chain was priced with the
    # default stack whatever the flag said (the eager profile's 1 ms per iteration unpaid).
    argv = ("evaluate", "--method", "eagle", "--gamma", "5", "--tau", "3", "--json")
    code, out, err = run(capsys, *argv, "--runtime", "eager")
    assert code == 0, err
    got = json.loads(out)
    d = Deployment.create("llama-2-7b", "h100", Workload.create(1, 512, 256), 0.7, runtime="eager")
    want = specsim.predict(d, Eagle.create(version=2), 5.0)
    assert_close(got["baseline_tokens_per_s"], float(want.baseline_tokens_per_s), rtol=1e-6)
    # the eager profile's host work per iteration: 1 ms (runtime/catalog.toml)
    assert got["speculation_overhead_s"] > 1e-3
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    assert json.loads(out)["speculation_overhead_s"] < 1e-4


@pytest.mark.slow
def test_evaluate_a_method_refuses_what_does_not_fit(capsys):
    # Llama-2-70B's 138 GB of bf16 weights on a 24 GB card: refused, as with a draft model,
    # unless --allow-infeasible (was: priced, exit 0, "DOES NOT FIT" in the last line).
    argv = ("evaluate", "--method", "eagle", "--target", "llama-2-70b", "--hardware", "rtx-3090")
    assert_usage_error(*run(capsys, *argv), "--allow-infeasible", "24 GB")
    code, out, err = run(capsys, *argv, "--allow-infeasible", "--json")
    assert code == 0, err
    got = json.loads(out)
    assert got["feasible"] is False and got["infeasible"] == ["memory"]


@pytest.mark.slow
@pytest.mark.parametrize(
    "argv, line",
    [
        # was "speculation pays at every batch size up to 4096" beside a 1.00x speedup
        (("--gamma", "0"), "no speculation (nothing drafted): plain decoding at every batch"),
        # rates for positions that are not drafted are unused, not refused
        (("--gamma", "0", "--alphas", "0.8,0.7"), "no speculation (nothing drafted)"),
        (("--method", "eagle", "--tree", "0,0"), "no speculation (nothing drafted)"),
        # was "stops paying above batch ~1" beside a 0.88x speedup at batch 1
        (("--alpha", "1e-9"), "speculation does not pay at any batch size"),
    ],
)
def test_the_crossover_line_agrees_with_the_speedup(capsys, argv, line):
    code, out, err = run(capsys, "evaluate", *argv)
    assert code == 0, err
    assert line in out


@pytest.mark.parametrize(
    "argv, fragments",
    [
        (("--method", "ngram", "--medusa-heads", "3"), ("--medusa-heads", "medusa")),
        (("--method", "eagle", "--match-probability", "0.5"), ("--match-probability",)),
        (("--method", "ngram", "--tree", "2,2"), ("--tree", "does not apply")),
        (("--method", "eagle", "--tree", "2,0,1"), ("not a tree",)),
        (("--method", "eagle", "--tree", "oak"), ("unknown tree", "eagle, medusa")),
        (("--method", "eagle", "--alpha", "0.7", "--alphas", "0.8"), ("one acceptance",)),
        # positions drafted that the rates do not cover were priced and never accepted;
        # rates beyond them changed only the acceptance printed
        (("--alphas", "0.8"), ("--alphas gives 1 rate, but --gamma 4 drafts 4 positions",)),
        (("--method", "eagle", "--alphas", "0.8,0.7,0.6,0.5,0.4"), ("gives 5 rates", "(4)")),
        (("--method", "eagle", "--tree", "eagle", "--alphas", "0.8"), ("eagle is 5 deep",)),
        (
            ("--method", "eagle", "--tree", "eagle", "--acceptance-file", PROM),
            ("measured 4 positions, but --tree eagle is 5 deep", "at most 4 deep"),
        ),
        (("--method", "eagle", "--tau", "9", "--gamma", "3"), ("tau",)),
        (("--method", "medusa", "--gamma", "7"), ("at most that many positions",)),
        (("--method", "eagle", "--alpha-model", "sdsl"), ("SDSLAcceptance",)),
        (("--method", "ngram", "--match-probability", "1.5"), ("[0, 1]",)),
    ],
)
def test_bad_method_flags_are_one_line_errors(capsys, argv, fragments):
    assert_usage_error(*run(capsys, "evaluate", *argv), *fragments)


def test_optimize_rejects_method_flags_for_the_draft_search(capsys):
    assert_usage_error(*run(capsys, "optimize", "--alphas", "0.8,0.7"), "--method draft")


@pytest.mark.slow
def test_schedule_takes_the_method_flags_of_the_other_commands(capsys):
    # schedule writes engine files through specsim.engines (tests/test_schedule.py checks
    # them against each release's schema); here only the shared flag spelling is checked.
    code, out, err = run(
        capsys, "schedule", "--method", "ngram", "--match-probability", "0.9", "--alpha", "0.7",
        "--max-batch", "32", "--max-gamma", "6", "--json",
    )  # fmt: skip
    assert code == 0, err
    got = json.loads(out)
    assert got["scenario"]["method"] == "ngram" and len(got["gamma"]) == 32
    assert set(got["engines"]) == {"vllm", "sglang", "tensorrt-llm"}
    assert "speculative_config.json" in got["engines"]["vllm"]["files"]


@pytest.mark.slow
def test_optimize_eagle3_returns_the_best_tree(capsys):
    code, out, err = run(
        capsys, "optimize", "--method", "eagle3", "--max-nodes", "10", "--max-depth", "4",
        "--alphas", "0.85,0.8,0.75,0.7", "--steps", "60", "--restarts", "4", "--certify",
        "--json",
    )  # fmt: skip
    assert code == 0, err
    got = json.loads(out)
    assert got["kind"] == "tree" and got["lookahead"] == len(got["widths"]) <= 4
    assert sum(got["widths"]) <= 10 and got["speedup"] > 1.5
    assert got["certificate"]["gap"] <= 0.005


@pytest.mark.slow
def test_optimize_a_method_prices_the_runtime_named(capsys):
    # --runtime was dropped by optimize --method too.
    argv = ("optimize", "--method", "eagle", "--alpha", "0.7", "--max-gamma", "4", "--json")
    code, out, err = run(capsys, *argv, "--runtime", "eager")
    assert code == 0, err
    eager = json.loads(out)["baseline_tokens_per_s"]
    d = Deployment.create("llama-3-8b", "h100", Workload.create(1, 512, 256), 0.7, runtime="eager")
    want = specsim.predict(d, Eagle.create(version=2), 0.0)
    assert_close(eager, float(want.baseline_tokens_per_s), rtol=1e-6)


@pytest.mark.slow
def test_sweep_with_methods_as_an_axis(capsys, tmp_path):
    out_file = tmp_path / "methods.csv"
    code, out, err = run(
        capsys, "sweep", "--method", "draft,ngram", "--batch", "1,8", "--gamma", "1:2",
        "--out", str(out_file), "--json",
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["points"] == 8
    import pandas as pd

    frame = pd.read_csv(out_file)
    assert sorted(frame.method.unique()) == ["draft", "ngram"]
    # the command's default draft shares the default target's vocabulary
    assert set(frame.feasibility) == {"ok"}


@pytest.mark.slow
def test_a_method_sweeps_best_point_is_one_that_fits(capsys):
    # Batch 300 of Llama-2-7B (a 512 KB/token cache) needs ~130 GB: it was "best".
    argv = ("sweep", "--method", "eagle", "--target", "llama-2-7b", "--batch", "1,300")
    code, out, err = run(capsys, *argv, "--json")
    assert code == 0, err
    (best,) = json.loads(out)["best"]
    assert best["batch"] == 1 and best["feasibility"] == "ok"
