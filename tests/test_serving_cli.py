"""``specsim serve``: bad traffic is a one-line error (exit 2), and the default run answers."""

import json

import pytest

from specsim.cli import main


def run(capsys, *argv):
    try:
        code = main(["serve", *argv])
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(code, out, err, *fragments):
    assert code == 2 and out == "", (code, out)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("specsim"), err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def test_negative_rate_and_bad_flags_are_usage_errors(capsys):
    one_line_error(*run(capsys, "--rate", "-3"), "--rate", "> 0")
    one_line_error(*run(capsys, "--alpha", "1.5"), "--alpha")
    one_line_error(*run(capsys, "--lookahead-per-bucket", "1,x"), "comma-separated")
    one_line_error(*run(capsys, "--rate", "1", "--trace", "t.csv"), "not allowed with")


def test_bad_traces_are_one_line_errors(capsys, tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("arrival_s,prompt_tokens,output_tokens\n")
    one_line_error(*run(capsys, "--trace", str(empty)), "empty.csv")
    unsorted = tmp_path / "unsorted.csv"
    unsorted.write_text("arrival_s,prompt_tokens,output_tokens\n0.5,10,5\n0.2,10,5\n")
    one_line_error(*run(capsys, "--trace", str(unsorted)), "sorted")
    one_line_error(*run(capsys, "--trace", str(tmp_path / "missing.csv")), "no such")


def test_bad_lookahead_table_is_a_one_line_error(capsys):
    one_line_error(*run(capsys, "--lookahead-per-bucket", "1,2,3"), "one value per batch bucket")


@pytest.mark.slow  # compiles the steady-state model for both policies (> 3 s)
def test_default_run_prints_goodput_with_and_without_speculation(capsys):
    code, out, err = run(capsys, "--target", "llama-3-8b")
    assert code == 0, err
    assert "goodput (tokens/s)" in out and "plain" in out and "speculative" in out
    assert "goodput with speculation / without" in out
    # The default draft shares Llama 3's 128,256-token vocabulary (llama-68m's is 32,000:
    # the default run was a pairing evaluate refuses).
    assert "draft Llama-3.2-1B" in out


def test_an_existing_plot_names_a_flag_that_exists(capsys, tmp_path):
    # The refusal suggested --overwrite, which serve did not accept.
    plot = tmp_path / "curve.png"
    plot.write_bytes(b"")
    one_line_error(*run(capsys, "--plot", str(plot)), "file exists", "--overwrite")
    # --overwrite is accepted: the run goes on to the next problem, a missing trace
    missing = str(tmp_path / "missing.csv")
    one_line_error(*run(capsys, "--plot", str(plot), "--overwrite", "--trace", missing), "no such")


def test_a_draft_of_another_vocabulary_is_refused(capsys):
    one_line_error(*run(capsys, "--draft", "llama-68m"), "--draft vocabulary 32000", "128256")
    one_line_error(*run(capsys, "--ngram", "0.5", "--draft", "llama-68m"), "not both")
    # no smaller catalogue model shares GPT-J's vocabulary: serve's way out is --ngram
    one_line_error(*run(capsys, "--target", "gpt-j-6b"), "50400-token", "--ngram MATCH")


@pytest.mark.slow  # compiles the steady-state model and the SLO-rate bisection (> 3 s)
def test_json_reports_an_infeasible_load_and_an_infeasible_slo(capsys):
    code, out, err = run(capsys, "--rate", "100000", "--ttft-slo", "0.001", "--json")
    assert code == 0, err
    payload = json.loads(out)
    for name in ("plain", "speculative"):
        result = payload[name]
        assert result["feasible"] is False and result["slo_met"] is False
        assert result["max_slo_rate_per_s"] == 0.0  # no load meets a 1 ms TTFT
        assert result["goodput_tokens_per_s"] == 0.0
    assert payload["usd_per_chip_hour"] == pytest.approx(3.99)
