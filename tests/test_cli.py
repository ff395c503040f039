"""The ``specsim`` command line: hardware, models and cost, called in-process; start-up."""

import argparse
import json
import os
import pathlib
import subprocess
import sys

import pytest
from conftest import assert_close

from specsim import forward_cost, hardware, models, step_time
from specsim.cli import COMMANDS, EXIT_USAGE, build_parser, main

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


def run(capsys, *argv):
    """(exit code, stdout, stderr) of ``specsim argv...``; argparse errors exit via SystemExit."""
    try:
        code = main(list(argv))
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_usage_error(code, out, err, *fragments):
    assert code == EXIT_USAGE == 2
    assert out == ""
    assert err.startswith("specsim") and ": " in err and err.endswith("\n")
    assert "Traceback" not in err
    assert err.count("\n") == 1, err  # exactly one line
    for fragment in fragments:
        assert fragment in err, (fragment, err)


# --------------------------------------------------------------------------- catalogues


def test_hardware_table(capsys):
    code, out, err = run(capsys, "hardware")
    assert code == 0 and err == ""
    for name in hardware.names():
        assert name in out
    assert "bf16_tflops" in out and "hbm_tb_per_s" in out
    assert "specsim hardware --json" in out


def test_hardware_json(capsys):
    code, out, err = run(capsys, "hardware", "--json")
    assert code == 0 and err == ""
    rows = json.loads(out)
    assert [row["name"] for row in rows] == hardware.names()
    for row in rows:
        entry = hardware.entry(row["name"])
        assert row["bf16_tflops"] == entry["bf16_tflops"]
        assert row["hbm_tb_per_s"] == entry["hbm_tb_per_s"]
        assert row["memory_eff"] == entry["memory_efficiency"]
        for key in ("compute", "memory", "interconnect", "efficiency", "overheads"):
            assert row["sources"][key] == entry["sources"][key]
    h100 = next(row for row in rows if row["name"] == "H100 SXM")
    assert h100["hbm_gb"] == 80.0 and "h100" in h100["aliases"]


def test_models_table(capsys):
    code, out, err = run(capsys, "models")
    assert code == 0 and err == ""
    for name in models.names():
        assert name in out


def test_models_json(capsys):
    code, out, err = run(capsys, "models", "--json")
    assert code == 0 and err == ""
    rows = json.loads(out)
    assert [row["name"] for row in rows] == models.names()
    for row in rows:
        assert row["source"]
        if "params_source" in row:  # publisher's rounded totals, see test_architectures.py
            continue
        assert_close(row["params_b"] * 1e9, row["reference_params"], rtol=5e-3)
    llama = next(row for row in rows if row["name"] == "Llama-2-7B")
    assert llama["n_layers"] == 32 and llama["mlp"] == "gated" and llama["train_tokens"] == 2e12


# --------------------------------------------------------------------------- cost


def test_cost_text(capsys):
    code, out, err = run(capsys, "cost")
    assert code == 0 and err == ""
    assert out.startswith("Llama-2-7B on 1 x A100 SXM 80GB: batch 1, 1 new token(s), context 0")
    assert "bound   memory" in out and "tokens/s" in out and ": fits" in out


def test_cost_json_matches_the_library(capsys):
    argv = ["cost", "--model", "mistral-7b-v0.1", "--hardware", "h100", "--batch", "8"]
    argv += ["--new-tokens", "5", "--context", "1000", "--tp", "2", "--json"]
    code, out, err = run(capsys, *argv)
    assert code == 0 and err == ""
    report = json.loads(out)
    spec, chip = models.get("mistral-7b-v0.1"), hardware.get("h100")
    expected = step_time(spec, chip, 8, 5, 1000.0, 2)
    cost = forward_cost(spec, 8, 5, 1000.0)
    assert report["model"] == "Mistral-7B-v0.1" and report["hardware"] == "H100 SXM"
    assert (report["batch"], report["new_tokens"], report["context"], report["tp"]) == (
        8,
        5,
        1000,
        2,
    )
    assert_close(report["time_s"], expected.time_s)
    assert_close(report["communication_s"], expected.communication_s)
    assert_close(report["matmul_flops"], cost.matmul_flops)
    assert_close(report["kv_read_bytes"], cost.kv_read_bytes)
    assert_close(report["tokens_per_s"], 8 * 5 / float(expected.time_s))
    assert report["bound"] in ("memory", "compute", "communication", "overhead")
    assert report["fits"] is True
    assert report["kv_read_multiplier"] == 1.0  # the default runtime shares GQA reads


def test_cost_says_when_the_runtime_rereads_the_cache(capsys):
    # Mistral-7B: 32 query heads per 8 KV heads, each re-read under trtllm-mmha.
    argv = ["cost", "--model", "mistral-7b-v0.1", "--hardware", "h100", "--context", "1000"]
    code, out, err = run(capsys, *argv, "--runtime", "trtllm-mmha")
    assert code == 0 and err == ""
    assert "(read 4x by the runtime's attention kernel)" in out
    code, out, _ = run(capsys, *argv, "--runtime", "trtllm")
    assert code == 0 and "read 4x" not in out


def test_cost_weight_dtype_and_fit(capsys):
    _, out, _ = run(capsys, "cost", "--model", "llama-2-70b", "--json")
    bf16 = json.loads(out)
    assert bf16["fits"] is False  # 138 GB of bf16 weights on one A100-80GB
    _, out, _ = run(capsys, "cost", "--model", "llama-2-70b", "--tp", "2", "--json")
    assert json.loads(out)["fits"] is True
    _, out, _ = run(capsys, "cost", "--model", "llama-2-70b", "--weight-dtype", "int8", "--json")
    int8 = json.loads(out)
    assert int8["fits"] is True
    assert_close(int8["weights_memory_bytes"], bf16["weights_memory_bytes"] / 2)
    assert int8["tokens_per_s"] > bf16["tokens_per_s"]
    code, out, err = run(capsys, "cost", "--model", "llama-2-70b")
    assert code == 0 and err == "" and "DOES NOT FIT" in out


def test_cost_with_a_hardware_toml(capsys, tmp_path):
    path = tmp_path / "slow-h100.toml"
    path.write_text('base = "h100"\nmemory_efficiency = 0.445\n')
    _, out, _ = run(capsys, "cost", "--hardware", "h100", "--json")
    _, slow_out, err = run(capsys, "cost", "--hardware", str(path), "--json")
    assert err == ""
    fast, slow = json.loads(out), json.loads(slow_out)
    assert slow["hardware"] == str(path)
    assert_close(slow["memory_s"], 2 * fast["memory_s"])


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("argv", "fragments"),
    [
        (["cost", "--model", "gpt-7"], ["specsim cost: --model 'gpt-7': unknown model", "valid:"]),
        (["cost", "--model", "llama-2-7"], ["unknown model", "did you mean 'Llama-2-7B'"]),
        (["cost", "--hardware", "h1000"], ["--hardware 'h1000': unknown", "'H100 SXM'"]),
        (["cost", "--weight-dtype", "int3"], ["unknown weight_dtype 'int3'"]),
        (["evaluate", "--draft", "gpt-7"], ["specsim evaluate: --draft 'gpt-7': unknown model"]),
    ],
)
def test_unknown_names_exit_2_with_one_line(capsys, argv, fragments):
    assert_usage_error(*run(capsys, *argv), *fragments)


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["cost", "--batch", "-1"], "specsim cost: --batch -1: below 1; valid: whole numbers >= 1"),
        (["cost", "--batch", "0"], "--batch 0: below 1"),
        (["cost", "--batch", "1.5"], "--batch 1.5: not a whole number; valid: whole numbers"),
        (["cost", "--new-tokens", "0"], "--new-tokens 0: below 1"),
        (["cost", "--context", "-5"], "--context -5: negative; valid: numbers >= 0"),
        (["cost", "--context", "nan"], "--context nan: not a finite number"),
        (["cost", "--tp", "0"], "--tp 0: below 1"),
        # Llama-2-7B's 32 heads do not split over 3 chips (cost priced it until 2026-12-08).
        (["cost", "--tp", "3"], "specsim cost: --tp 3: does not divide the 32 attention heads"),
        (["cost", "--batch", "many"], "--batch many: not a number"),
        (["cost", "--frobnicate"], "specsim cost: unrecognized arguments: --frobnicate"),
        (["cost", "--hardwar", "h100", "--bach", "2"], "did you mean --batch?"),
        (["evaluate", "--alpha", "1"], "--alpha 1: outside (0, 1); valid: numbers in (0, 1)"),
        (["validate", "--size", "huge"], "--size huge: unknown choice; valid: tiny, quick, full"),
        (["teleport"], "specsim: unknown command 'teleport'; valid: hardware"),
        ([], "the following arguments are required"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(capsys, argv, fragment):
    assert_usage_error(*run(capsys, *argv), fragment)


def test_whole_numbers_written_as_floats_or_exponents_are_accepted(capsys):
    """Issue 11, point 9: ``--batch 1e6`` and ``--tp 2.0`` were refused as "expected a number"."""
    code, out, err = run(capsys, "cost", "--batch", "1e6", "--tp", "2.0", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert (report["batch"], report["tp"]) == (1_000_000, 2)


def test_bad_hardware_files_exit_2(capsys, tmp_path):
    malformed = tmp_path / "broken.toml"
    malformed.write_text("bf16_tflops = = 3\n")
    assert_usage_error(*run(capsys, "cost", "--hardware", str(malformed)), "malformed TOML")
    bad = tmp_path / "bad.toml"
    bad.write_text('base = "h100"\ncompute_efficiency = 1.5\n')
    assert_usage_error(*run(capsys, "cost", "--hardware", str(bad)), "compute_efficiency")
    missing = str(tmp_path / "missing.toml")
    assert_usage_error(*run(capsys, "cost", "--hardware", missing), "cannot read hardware file")


# --------------------------------------------------------------------------- as a program


@pytest.mark.slow
def test_python_m_specsim_cli_subprocess():
    """One smoke test of the real program (the rest run in-process): ``python -m specsim.cli``
    from the source tree, so it needs no installed console script."""
    pythonpath = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-m", "specsim.cli", "cost", "--model", "qwen3-0.6b", "--json"],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": pythonpath},
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["model"] == "Qwen3-0.6B" and report["hardware"] == "A100 SXM 80GB"
    assert report["tokens_per_s"] > 0


# --------------------------------------------------------------------------- start-up and help


def _python(code: str) -> subprocess.CompletedProcess:
    pythonpath = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": pythonpath},
        timeout=120,
        check=False,
    )


HEAVY_MODULES = ("jax", "flax", "numpy", "pandas", "matplotlib", "optax")


_START_UP_ARGVS = [
    ["--help"],
    *([name, "--help"] for name in COMMANDS),
    ["hardware"],
    ["hardware", "--json"],
]


@pytest.fixture(scope="module")
def start_up_imports():
    """``{argv: heavy modules imported}`` after each of `_START_UP_ARGVS`, run in turn by
    one fresh interpreter (one process instead of one each: what a run imports stays
    imported, so the first command that imports a heavy module is the one named)."""
    code = (
        "import json, sys\n"
        "from specsim.cli import main\n"
        f"for argv in {_START_UP_ARGVS!r}:\n"
        "    try:\n"
        "        code = main(argv)\n"
        "    except SystemExit as e:\n"
        "        code = e.code\n"
        "    assert code in (0, None), (argv, code)\n"
        f"    heavy = [m for m in {HEAVY_MODULES!r} if m in sys.modules]\n"
        "    print('HEAVY', json.dumps([argv, heavy]))\n"
    )
    result = _python(code)
    assert result.returncode == 0, result.stderr
    marked = [line[len("HEAVY ") :] for line in result.stdout.splitlines() if line[:6] == "HEAVY "]
    found = {tuple(argv): heavy for argv, heavy in map(json.loads, marked)}
    return found, result.stdout


@pytest.mark.parametrize("argv", _START_UP_ARGVS, ids=lambda argv: " ".join(argv))
def test_help_and_the_hardware_table_start_without_jax(argv, start_up_imports):
    """``specsim --help``, every ``specsim COMMAND --help`` and ``specsim hardware`` import no
    array library: start-up stays well under a second (benchmarks/startup.py)."""
    found, stdout = start_up_imports
    assert found.get(tuple(argv)) == [], stdout[-2000:]


def test_the_cli_spells_the_float32_maximum_as_the_library_does():
    """``specsim.cli._args`` spells out float32's maximum (it must not import JAX or NumPy);
    it is the library's ``FLOAT32_MAX``, NumPy's ``finfo(float32).max``."""
    import numpy as np

    from specsim._numerics import FLOAT32_MAX
    from specsim.cli._args import _FLOAT32_MAX

    assert _FLOAT32_MAX == FLOAT32_MAX == float(np.finfo(np.float32).max)


@pytest.mark.slow
def test_import_specsim_is_lazy_and_complete():
    result = _python(
        "import sys, specsim\n"
        "assert 'jax' not in sys.modules\n"
        "assert set(specsim.__all__) == set(specsim._EXPORTS)\n"
        "assert set(specsim.__all__) <= set(dir(specsim))\n"
        "from specsim import throughput, ThroughputReport, hardware, plot\n"
        "assert specsim.throughput is throughput and specsim.plot is plot\n"
        "assert all(getattr(specsim, name) is not None for name in specsim.__all__)\n"
        "print('ok')\n"
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def test_unknown_attribute_of_specsim_is_an_attribute_error():
    import specsim

    with pytest.raises(AttributeError, match="no attribute 'throughputs'"):
        specsim.throughputs  # noqa: B018
    assert not hasattr(specsim.hardware, "gett")


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_command_has_a_description_and_help_on_every_flag(command, capsys):
    code, out, err = run(capsys, command, "--help")
    assert code == 0 and err == ""
    assert out.startswith(f"usage: specsim {command}")
    parser = build_parser()
    (sub,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    command_parser = sub.choices[command]
    command_parser.format_help()  # loads the command's flags
    assert command_parser.description and len(command_parser.description) > 20
    for action in command_parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        flag = action.option_strings[0]
        assert action.help, f"{command} {flag}: no help text"
        if isinstance(action, argparse._StoreTrueAction):
            continue
        # A default is either a value (shown by the formatter) or explained in the text.
        assert action.default is not None or "default" in action.help, (command, flag)


def test_stated_search_defaults_match_the_library(capsys):
    from specsim._optimize import DEFAULT_RESTARTS, DEFAULT_STEPS

    _, out, _ = run(capsys, "optimize", "--help")
    text = " ".join(out.split())
    assert f"(default {DEFAULT_STEPS})" in text and f"(default {DEFAULT_RESTARTS})" in text


def test_summaries_come_from_the_registry(capsys):
    code, out, _ = run(capsys, "--help")
    assert code == 0
    for name, (_, summary) in COMMANDS.items():
        assert name in out and " ".join(summary.split()[:3]) in " ".join(out.split())


@pytest.mark.slow
def test_a_legal_alpha_just_below_one_is_accepted(capsys):
    """Issue 11, point 9: --alpha 0.99999999 was refused as "got 1" (float32 rounding)."""
    code, out, err = run(capsys, "evaluate", "--alpha", "0.99999999", "--json")
    assert code == 0, err
    assert 0.9999 < json.loads(out)["acceptance_rate"] < 1.0


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["evaluate", "--prompt", "3e38"], "--prompt 3e+38: out of range; valid: finite numbers"),
        (["evaluate", "--prompt", "1e18", "--json"], "--prompt 1e+18: out of range"),
        (["evaluate", "--batch", "1e12", "--json"], "--batch 1e+12: out of range"),
        (["evaluate", "--gamma", "1e30", "--json"], "--gamma 1e+30: out of range; valid: real"),
        (["cost", "--context", "1e30", "--json"], "--context 1e+30: out of range; valid: at most"),
    ],
)
def test_overflowing_inputs_are_refused_not_printed_as_nan(capsys, argv, fragment):
    """Issue 11, point 7: --prompt 3e38 printed "speedup nanx", --prompt 1e18 --json emitted
    Infinity (invalid JSON), and overflow RuntimeWarnings leaked (warnings are errors here)."""
    assert_usage_error(*run(capsys, *argv), fragment)


def test_json_output_is_strict():
    from specsim.cli._args import print_json

    with pytest.raises(ValueError, match="Out of range float values are not JSON compliant"):
        print_json({"speedup": float("nan")})
