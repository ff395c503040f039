"""Impossible setups (issue 11, point 6; issue 12, point 3): tensor-parallel splits, draft
placement and vocabularies refused for single setups, marked per point in grids; setups
that do not fit priced only with --allow-infeasible, and marked wherever they appear."""

import json

import numpy as np
import pytest

import specsim
from specsim import ConstantAcceptance, Deployment, Workload, hardware, models
from specsim._feasibility import FEASIBILITY_NAMES, feasibility_code, tp_problem, valid_tp
from specsim.cli import EXIT_USAGE, main

LLAMA3 = models.get("llama-3-8b")  # 32 heads, 8 KV heads, vocab 128256
LLAMA2 = models.get("llama-2-7b")  # 32 heads, 32 KV heads, vocab 32000
SMALL = models.get("llama-68m")  # 12 heads, vocab 32000
H100 = hardware.get("h100")


def run(capsys, *argv):
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_refused(code, out, err, *fragments):
    assert code == EXIT_USAGE, (code, out, err)
    assert out == "" and err.count("\n") == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, (fragment, err)


# --------------------------------------------------------------------------- the rules


@pytest.mark.parametrize(
    ("heads", "kv", "tp", "ok"),
    [
        (32, 8, 1, True),
        (32, 8, 8, True),
        (32, 8, 16, True),  # each KV head replicated on 2 chips (vLLM QKVParallelLinear)
        (32, 8, 32, True),
        (32, 8, 3, False),  # issue 11: --tp 3 with 32 heads and 8 KV heads
        (32, 8, 64, False),  # more chips than heads
        (32, 8, 1_000_000, False),  # issue 11: --tp 1000000
        (64, 8, 4, True),
        (40, 40, 8, True),
        (40, 40, 16, False),
        (12, 12, 8, False),
        (32, 6, 4, False),  # 4 chips cannot split 6 KV heads, nor replicate them
        (32, 8, 2.5, False),
    ],
)
def test_tensor_parallel_rule(heads, kv, tp, ok):
    assert (tp_problem(heads, kv, tp) is None) == ok


def test_valid_tp_lists_the_splits():
    assert valid_tp(32, 8) == [1, 2, 4, 8, 16, 32]
    assert valid_tp(12, 12) == [1, 2, 3, 4, 6, 12]
    assert valid_tp(64, 8) == [1, 2, 4, 8, 16, 32, 64]


@pytest.mark.slow
def test_feasibility_code_matches_the_rules_point_by_point():
    tps = np.asarray([1.0, 2.0, 3.0, 16.0, 64.0], np.float32)
    code = feasibility_code(LLAMA3, LLAMA3, tps, 1.0, True)
    names = [FEASIBILITY_NAMES[c] for c in np.asarray(code)]
    assert names == ["ok", "ok", "tp-heads", "ok", "tp-heads"]
    assert FEASIBILITY_NAMES[int(feasibility_code(LLAMA3, SMALL, 1.0, 1.0, True))] == "vocab"
    unchecked = feasibility_code(LLAMA3, SMALL, 1.0, 1.0, True, shared_vocab=True)
    assert int(unchecked) == 0
    assert FEASIBILITY_NAMES[int(feasibility_code(LLAMA2, SMALL, 2.0, 4.0, True))] == "draft-tp"
    assert FEASIBILITY_NAMES[int(feasibility_code(LLAMA2, SMALL, 8.0, 8.0, True))] == (
        "draft-tp-heads"
    )
    assert FEASIBILITY_NAMES[int(feasibility_code(LLAMA2, SMALL, 1.0, 1.0, False))] == "memory"


# --------------------------------------------------------------------------- the API


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(tp=3), r"tp 3: does not divide the 32 attention heads of the target; valid: 1, 2"),
        (dict(tp=1_000_000), "tp 1e\\+06: does not divide the 32 attention heads"),
        (dict(tp=1, draft_tp=2), "draft_tp 2: a draft runs on 1 chip or on the target's 1"),
        (dict(tp=8, draft_tp=4), "valid: 1, 8"),
    ],
)
def test_impossible_splits_are_refused_by_the_api(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Deployment.create(LLAMA3, H100, acceptance=0.8, **kwargs)
    with pytest.raises(ValueError, match=message):
        specsim.throughput(LLAMA3, LLAMA3, H100, Workload.create(), 4, 0.8, **kwargs)


def test_a_draft_its_tp_cannot_split_is_refused():
    with pytest.raises(ValueError, match="draft_tp 8: does not divide the 12 attention heads of"):
        specsim.throughput(LLAMA2, SMALL, H100, Workload.create(), 4, 0.8, tp=8)


@pytest.mark.slow
def test_traced_splits_are_not_checked_so_grids_still_work():
    import jax

    tps = np.asarray([1.0, 3.0], np.float32)
    speed = jax.vmap(
        lambda tp: (
            specsim.predict(
                Deployment(LLAMA2, H100, Workload.create(), ConstantAcceptance(0.8), tp, tp),
                SMALL,
                4.0,
            ).tokens_per_s
        )
    )(tps)
    assert np.all(np.isfinite(np.asarray(speed)))


# --------------------------------------------------------------------------- the CLI


@pytest.mark.parametrize("command", ["evaluate", "schedule"])
@pytest.mark.parametrize(
    ("argv", "fragments"),
    [
        (
            ["--target", "llama-3-8b", "--draft", "llama-3.2-1b", "--tp", "3"],
            ["--tp 3: does not divide the 32 attention heads of the target; valid: 1, 2, 4"],
        ),
        (["--tp", "1000000"], ["--tp 1e+06: does not divide the 32 attention heads"]),
        # (valid was "1, 1" here, and "1, 2, 3, 4, 6, 12" at tp 8: values the placement
        # rule then refused)
        (["--tp", "1", "--draft-tp", "2"], ["--draft-tp 2: a draft runs on 1 chip", "valid: 1\n"]),
        (
            ["--tp", "8"],
            [
                "--draft-tp 8: does not divide the 12 attention heads of the draft",
                "valid: 1 (1 chip or the target's 8, splitting its heads)",
            ],
        ),
        (
            ["--target", "llama-3-8b", "--draft", "llama-68m"],
            ["draft vocabulary 32000: differs from the target's 128256", "--shared-tokenizer"],
        ),
    ],
)
def test_impossible_setups_exit_2(capsys, command, argv, fragments):
    assert_refused(*run(capsys, command, *argv), f"specsim {command}: ", *fragments)


# --------------------------------------------------------------------------- the interconnect


def test_tp_beyond_the_interconnect_is_refused():
    """An HGX H100 node's NVSwitch joins 8 GPUs: 16 would cross InfiniBand, unpriced."""
    assert float(H100.interconnect_domain_chips) == 8.0
    with pytest.raises(ValueError, match=r"tp 16: exceeds the 8 chips .* valid: 1 to 8"):
        Deployment.create(LLAMA3, H100, acceptance=0.8, tp=16)
    Deployment.create(LLAMA3, H100, acceptance=0.8, tp=8)  # the whole node
    with pytest.raises(ValueError, match=r"tp 16: exceeds the 8 chips"):
        specsim.feasibility.check_parallelism(LLAMA3, None, 16.0, 1.0, hardware=H100)
    # The H100 NVL's NVLink bridge joins pairs.
    nvl = hardware.get("h100-nvl")
    with pytest.raises(ValueError, match=r"tp 4: exceeds the 2 chips"):
        Deployment.create(LLAMA3, nvl, acceptance=0.8, tp=4)
    # A chip file without the key sets no limit (as before the key existed).
    entry = {k: v for k, v in hardware.entry("h100").items() if k != "interconnect_domain_chips"}
    unlimited = hardware.HardwareSpec.from_datasheet(entry)
    assert float(unlimited.interconnect_domain_chips) == float("inf")
    Deployment.create(LLAMA3, unlimited, acceptance=0.8, tp=16)


@pytest.mark.parametrize("bad", [0.5, 0.0, -8.0, 2.5, float("nan")])
def test_a_domain_that_is_no_whole_number_of_chips_is_refused(bad):
    entry = {**hardware.entry("h100"), "interconnect_domain_chips": bad}
    with pytest.raises(ValueError, match=r"interconnect_domain_chips .*valid: a whole number"):
        hardware.HardwareSpec.from_datasheet(entry, "chip")


def test_a_spec_built_without_a_domain_has_no_limit():
    """``None`` (a spec built field by field) reads as no limit, never a TypeError."""
    spec = H100.replace(interconnect_domain_chips=None)
    assert spec.domain_chips() == float("inf")
    Deployment.create(LLAMA3, spec, acceptance=0.8, tp=16)
    assert (
        int(feasibility_code(LLAMA3, LLAMA3, 16.0, 1.0, True, domain_chips=spec.domain_chips()))
        == 0
    )


def test_cli_refuses_tp_beyond_the_interconnect(capsys):
    assert_refused(
        *run(capsys, "evaluate", "--target", "llama-3.1-405b", "--hardware", "h100", "--tp", "16"),
        "specsim evaluate: ",
        "--tp 16: exceeds the 8 chips the hardware's interconnect joins",
        "valid: 1 to 8",
    )
    assert_refused(
        *run(capsys, "cost", "--model", "llama-3-8b", "--hardware", "h100-nvl", "--tp", "4"),
        "specsim cost: ",
        "--tp 4: exceeds the 2 chips",
    )


def test_feasibility_code_marks_tp_beyond_the_domain():
    tps = np.asarray([1.0, 8.0, 16.0], np.float32)
    code = feasibility_code(LLAMA3, LLAMA3, tps, 1.0, True, domain_chips=8.0)
    assert [FEASIBILITY_NAMES[c] for c in np.asarray(code)] == ["ok", "ok", "tp-domain"]
    # Unset (inf), nothing is marked; a split the heads refuse is named first, and the
    # domain before memory (the order Deployment refuses them in), whatever the codes' numbers.
    assert int(feasibility_code(LLAMA3, LLAMA3, 16.0, 1.0, True)) == 0
    three = feasibility_code(LLAMA3, LLAMA3, 3.0, 1.0, True, domain_chips=2.0)
    assert FEASIBILITY_NAMES[int(three)] == "tp-heads"
    both = feasibility_code(LLAMA3, LLAMA3, 16.0, 1.0, False, domain_chips=8.0)
    assert FEASIBILITY_NAMES[int(both)] == "tp-domain"


@pytest.mark.slow
def test_a_shared_tokenizer_is_the_users_call(capsys):
    argv = ["evaluate", "--target", "qwen2.5-7b", "--draft", "qwen2.5-0.5b", "--json"]
    assert_refused(*run(capsys, *argv), "draft vocabulary 151936: differs")
    code, out, err = run(capsys, *argv, "--shared-tokenizer")
    assert code == 0, err
    assert json.loads(out)["speedup"] > 0


@pytest.mark.slow  # evaluate commands, one refused: 5.6 s (2-core EPYC)
def test_a_setup_that_does_not_fit_needs_allow_infeasible(capsys):
    """Issue 11: evaluate priced a 405B target on one L4 at 3.36x with "DOES NOT FIT" only
    on its last line, while optimize refused it."""
    argv = ["evaluate", "--target", "llama-3.1-405b", "--draft", "llama-3.2-1b", "--hardware", "l4"]
    assert_refused(
        *run(capsys, *argv),
        "specsim evaluate: --hardware L4: weights and KV caches need",
        "GB per chip, more than its 24 GB; valid: more chips with --tp",
        "--allow-infeasible",
    )
    code, out, err = run(capsys, *argv, "--allow-infeasible")
    assert code == 0, err
    first = out.splitlines()[0]
    assert first.startswith("INFEASIBLE (memory: weights and KV caches exceed one chip's memory)")
    code, out, err = run(capsys, *argv, "--allow-infeasible", "--json")
    report = json.loads(out)
    assert report["feasible"] is False and report["infeasible"] == ["memory"]
    assert report["fits"] is False


def test_a_feasible_evaluation_says_so_in_json(capsys):
    code, out, err = run(capsys, "evaluate", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["feasible"] is True and report["infeasible"] == []


# --------------------------------------------------------------------------- grids


@pytest.mark.slow
def test_sweeps_mark_infeasible_points_instead_of_refusing():
    frame = specsim.sweep(
        target=["llama-3-8b"],
        draft=["llama-3.2-1b", "llama-68m"],
        hardware=["h100", "l4", "gb200"],
        tp=[1, 3, 16],
        batch=[1],
        gamma=[2],
        columns=["tokens_per_s", "fits", "feasibility"],
    )
    by = {(r.hardware, r.draft, int(r.tp)): r.feasibility for r in frame.itertuples(index=False)}
    assert by[("H100 SXM", "Llama-3.2-1B", 1)] == "ok"
    assert by[("H100 SXM", "Llama-3.2-1B", 3)] == "tp-heads"
    # 16 chips split the heads (each KV head on 2), but an H100 node's NVSwitch joins 8;
    # a GB200 NVL72 rack's joins 72.
    assert by[("H100 SXM", "Llama-3.2-1B", 16)] == "tp-domain"
    assert by[("GB200", "Llama-3.2-1B", 16)] == "ok"
    assert by[("H100 SXM", "llama-68m", 1)] == "vocab"
    assert by[("L4", "Llama-3.2-1B", 1)] == "ok"  # 8B + 1B in bf16 fit 24 GB
    assert list(frame.feasibility.cat.categories) == list(FEASIBILITY_NAMES)


@pytest.mark.slow
def test_sweep_shared_tokenizer_skips_the_vocabulary_rule():
    frame = specsim.sweep(
        target="llama-3-8b", draft="llama-68m", columns=["feasibility"], shared_tokenizer=True
    )
    assert frame.feasibility.tolist() == ["ok"]


@pytest.mark.slow
def test_best_over_prefers_feasible_points():
    # Llama-2-70B on one 80 GB chip never fits; at tp 2 and tp 4 it does.
    frame = specsim.sweep(
        target="llama-2-70b",
        draft="llama-68m",
        hardware="h100",
        tp=[1, 2, 4],
        batch=[1],
        gamma=[0, 4],
        best_over="tp",
        columns=["tokens_per_s", "feasibility"],
    )
    assert (frame.feasibility == "ok").all()
    assert set(frame.tp) <= {2.0, 4.0}


@pytest.mark.slow  # a whole sweep command, > 3 s CPU
def test_cli_sweep_table_marks_infeasible_rows(capsys, tmp_path):
    code, out, err = run(
        capsys, "sweep", "--target", "llama-2-70b", "--tp", "1,2", "--batch", "1", "--gamma", "2"
    )
    assert code == 0, err
    assert "feasibility" in out
    assert "memory" in out  # tp 1: 138 GB of weights on an 80 GB chip
    assert "1 of 2 points infeasible" in out


@pytest.mark.slow  # a whole sweep command, > 3 s CPU
def test_best_gamma_on_the_edge_is_reported(capsys):
    code, out, err = run(
        capsys, "sweep", "--batch", "1", "--gamma", "0:2", "--best-over", "gamma", "--json"
    )
    assert code == 0, err
    summary = json.loads(out)
    assert summary["notes"] == [
        "best gamma at the edge of the searched range (2) for 1 of 1 rows: widen --gamma"
    ]


def test_optimize_notes_a_draft_its_tp_cannot_split():
    from specsim.cli.optimize import _split_notes

    draft = {"n_heads": 2, "n_kv_heads": 1}
    (note,) = _split_notes(draft, gamma=4, draft_tp=8)
    assert note.startswith("INFEASIBLE as priced: draft tensor parallelism 8 does not divide")
    assert "--draft-tp 1" in note
    assert _split_notes(draft, gamma=4, draft_tp=1) == []
    assert _split_notes(draft, gamma=0, draft_tp=8) == []  # no draft is served


# --------------------------------------------------------------------------- messages (point 9)


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        # was blamed on the draft's tokens ("--draft-train-tokens ... got inf")
        (
            ["evaluate", "--alpha-model", "sdsl", "--target-train-tokens", "1e40"],
            "specsim evaluate: --target-train-tokens 1e40: out of range; valid: 0 < count",
        ),
        # optimize ignored --draft-train-tokens with --alpha, where sweep rejected it
        (
            ["optimize", "--alpha", "0.8", "--draft-train-tokens", "1e12"],
            "--draft-train-tokens 1e+12: only applies to the SDSL acceptance law",
        ),
        (
            ["evaluate", "--alpha", "0.8", "--target-train-tokens", "1e12"],
            "--target-train-tokens 1e+12: only applies to the SDSL acceptance law",
        ),
        (
            ["optimize", "--alpha", "0.8", "--draft-train-flops", "1e21"],
            "--draft-train-flops 1e+21: only applies to the SDSL acceptance law",
        ),
        (["sweep", "--objective", "bogus"], "--objective 'bogus': not a numeric report field"),
    ],
)
def test_messages_name_the_flag_at_fault(capsys, argv, fragment):
    assert_refused(*run(capsys, *argv), fragment)
