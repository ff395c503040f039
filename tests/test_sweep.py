"""Cartesian sweeps: point-for-point agreement with `throughput`, chunking, reductions,
multi-process slicing, files, and errors raised before anything is compiled."""

import argparse
import itertools
import json

import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from conftest import assert_close, compilations

import specsim
from specsim import ConstantAcceptance, PositionalAcceptance, SDSLAcceptance, Workload, models
from specsim import hardware as hw
from specsim._sweep import (
    AXES,
    REPORT_COLUMNS,
    _process_slice,
    sweep,
)
from specsim._sweep_kernel import outer_digits as _outer_digits
from specsim.cli.sweep import add_sweep_arguments, axis_length, parse_axis, run_sweep

# One small grid reused by several tests, so each kernel compiles once per module.
GRID = dict(
    hardware=["h100", "tpu-v5p"],
    target=["llama-2-7b", "llama-3-8b"],
    draft="llama-68m",
    tp=[1, 2],
    batch=[1, 32],
    prompt_tokens=[128],
    generate_tokens=[64],
    alpha=[0.6, 0.9],
    gamma=[0, 3],
)
FEW = ["tokens_per_s", "speedup", "verify_bound"]


@pytest.fixture(scope="module")
def full_frame():
    return sweep(**GRID)


def _throughput_row(row, acceptance=None):
    return specsim.throughput(
        models.get(row.target),
        models.get(row.draft),
        hw.get(row.hardware),
        Workload.create(row.batch, row.prompt_tokens, row.generate_tokens),
        row.gamma,
        acceptance or ConstantAcceptance.create(row.alpha),
        tp=row.tp,
    )


@pytest.mark.slow
def test_every_point_matches_throughput(full_frame):
    assert len(full_frame) == 2**6
    assert list(full_frame.columns) == list(AXES) + list(REPORT_COLUMNS)
    for row in full_frame.itertuples():
        expected = _throughput_row(row).to_dict()
        # Llama-3's 128,256-token vocabulary is not llama-68m's 32,000 (Llama 2's): marked.
        expected["feasibility"] = "vocab" if row.target == "Llama-3-8B" else "ok"
        for name in REPORT_COLUMNS:
            got = getattr(row, name)
            if name.endswith("_bound") or name in ("fits", "feasibility"):
                assert got == expected[name], name
            else:
                assert_close(got, expected[name], rtol=2e-6)


def test_rows_are_in_cartesian_order_with_gamma_fastest(full_frame):
    labels = {
        "hardware": ["H100 SXM", "TPU v5p"],
        "target": ["Llama-2-7B", "Llama-3-8B"],
        "draft": ["llama-68m"],
    }
    axes = [labels.get(a) or [float(v) for v in np.atleast_1d(GRID[a])] for a in AXES]
    expected = pd.DataFrame(list(itertools.product(*axes)), columns=list(AXES))
    for name in AXES:
        assert full_frame[name].astype(object).tolist() == expected[name].tolist(), name
    assert isinstance(full_frame.hardware.dtype, pd.CategoricalDtype)
    assert full_frame.batch.dtype == np.int64 and full_frame.tokens_per_s.dtype == np.float32


@pytest.mark.slow
@pytest.mark.parametrize("chunk_size", [1, 24])
def test_chunking_and_padding_do_not_change_results(full_frame, chunk_size):
    frame = sweep(**GRID, columns=FEW, chunk_size=chunk_size, progress=chunk_size == 24)
    pd.testing.assert_frame_equal(frame, full_frame[list(AXES) + FEW])


@pytest.mark.slow  # three process slices' kernels: 4.3 s (2-core EPYC)
def test_process_slices_concatenate_to_the_whole(full_frame):
    assert [_process_slice(10, i, 4) for i in range(4)] == [(0, 2), (2, 5), (5, 7), (7, 10)]
    parts = [
        sweep(**GRID, columns=FEW, chunk_size=24, process_index=i, process_count=3)
        for i in range(3)
    ]
    assert all(len(p) > 0 for p in parts)
    joined = pd.concat(parts, ignore_index=True)
    pd.testing.assert_frame_equal(joined, full_frame[list(AXES) + FEW])


@pytest.mark.slow  # two of 65 one-point slices (chunk_size=1): 3.8 s (2-core EPYC)
def test_more_processes_than_points_gives_empty_frames(full_frame):
    # chunk_size=1 leaves no inner axes: 64 outer points over 65 processes.
    first, last = (
        sweep(**GRID, columns=FEW, chunk_size=1, process_index=i, process_count=65) for i in (0, 64)
    )
    assert len(first) == 0 and list(first.columns) == list(AXES) + FEW
    expected = full_frame[list(AXES) + FEW].iloc[-1:].reset_index(drop=True)
    pd.testing.assert_frame_equal(last, expected)


@pytest.mark.slow
def test_best_over_gamma_equals_groupby_argmax(full_frame):
    best = sweep(**GRID, columns=FEW, best_over="gamma")
    keys = [a for a in AXES if a != "gamma"]
    index = full_frame.groupby(keys, observed=True, sort=False).tokens_per_s.idxmax()
    expected = full_frame.loc[index.to_numpy(), list(AXES) + FEW].reset_index(drop=True)
    pd.testing.assert_frame_equal(best, expected)


@pytest.mark.slow
def test_best_over_two_axes_minimising_latency(full_frame):
    best = sweep(
        **GRID,
        columns=["request_latency_s"],
        best_over=["alpha", "gamma"],
        objective="request_latency_s",
        maximize=False,
    )
    keys = [a for a in AXES if a not in ("alpha", "gamma")]
    index = full_frame.groupby(keys, observed=True, sort=False).request_latency_s.idxmin()
    expected = full_frame.loc[index.to_numpy(), [*AXES, "request_latency_s"]]
    pd.testing.assert_frame_equal(best, expected.reset_index(drop=True))


@pytest.mark.slow
def test_only_changing_axis_values_does_not_recompile():
    grid = dict(GRID, batch=[2, 8], gamma=[1, 5], alpha=[0.5, 0.7])
    sweep(**grid, columns=FEW)
    other = dict(grid, hardware=["a100-80gb", "tpu-v5e"], batch=[4, 64], gamma=jnp.array([2, 7]))
    with compilations() as compiled:
        frame = sweep(**other, columns=FEW)
    assert compiled == []
    assert set(frame.hardware) == {"A100 SXM 80GB", "TPU v5e"}


def test_mixed_radix_index_addition_does_not_overflow():
    sizes = (60_000, 50_000, 7)  # 2.1e10 outer points: flat indices overflow int32
    start = np.array([59_999, 49_998, 5], np.int32)
    offsets = jnp.arange(20, dtype=jnp.int32)
    digits = np.stack([np.asarray(d) for d in _outer_digits(offsets, start, sizes)], axis=1)
    flat_start = np.ravel_multi_index(tuple(start), sizes)
    total = int(np.prod(sizes, dtype=np.int64))
    expected = np.stack(np.unravel_index((flat_start + np.arange(20)) % total, sizes), axis=1)
    np.testing.assert_array_equal(digits, expected)


@pytest.mark.slow
def test_sdsl_alpha_depends_on_draft_and_target_sizes():
    frame = sweep(
        target=["opt-13b", "opt-30b"],
        draft=["opt-125m", "opt-1.3b"],
        alpha="sdsl",
        gamma=[2, 6],
        columns=["tokens_per_s", "acceptance_rate"],
    )
    assert "alpha" not in frame.columns
    for row in frame.itertuples():
        tokens = models.train_tokens(row.target)
        acceptance = SDSLAcceptance.create(tokens, tokens)
        expected = _throughput_row(row, acceptance)
        assert_close(row.acceptance_rate, expected.acceptance_rate, rtol=2e-6)
        assert_close(row.tokens_per_s, expected.tokens_per_s, rtol=2e-6)
    assert frame.acceptance_rate.nunique() == 4


@pytest.mark.slow
def test_fixed_acceptance_model_and_spec_inputs():
    spec = models.get("llama-68m")
    positional = PositionalAcceptance.create([0.9, 0.8, 0.5])
    frame = sweep(
        hardware={"my-chip": hw.get("h100").replace(memory_efficiency=0.5)},
        draft={"tiny": spec},
        alpha=positional,
        gamma=[1, 3],
        columns=["tokens_per_s"],
    )
    assert frame.hardware.tolist() == ["my-chip"] * 2 and frame.draft.tolist() == ["tiny"] * 2
    row = next(frame.itertuples())
    expected = specsim.throughput(
        models.get("llama-3-8b"),
        spec,
        hw.get("h100").replace(memory_efficiency=0.5),
        Workload.create(1, 512, 256),
        1.0,
        positional,
    )
    assert_close(row.tokens_per_s, expected.tokens_per_s, rtol=2e-6)


@pytest.mark.slow  # its own sweep kernel: 9.5 s (2-core EPYC)
def test_a_fitted_spec_sweeps_beside_catalogue_chips():
    # A calibrated spec carries attention_compute_efficiency (and a sharpness) that the
    # catalogue's chips leave to follow attention_efficiency: they stack all the same.
    fitted = hw.get("h100").replace(
        attention_efficiency=0.8, attention_compute_efficiency=0.05, roofline_sharpness=0.7
    )
    frame = sweep(
        hardware={"h100": "h100", "fitted": fitted},
        prompt_tokens=[512, 8192],
        gamma=3,
        alpha=0.7,
        columns=["tokens_per_s"],
    )
    for row in frame.itertuples():
        chip = fitted if row.hardware == "fitted" else hw.get("h100")
        expected = specsim.throughput(
            models.get("llama-3-8b"),
            models.get("llama-68m"),
            chip,
            Workload.create(1, row.prompt_tokens, 256),
            3.0,
            ConstantAcceptance.create(0.7),
        )
        assert_close(row.tokens_per_s, expected.tokens_per_s, rtol=2e-6)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_streaming_to_a_file_equals_the_frame(tmp_path, full_frame, suffix):
    path = tmp_path / f"sweep{suffix}"
    assert sweep(**GRID, columns=FEW, chunk_size=24, out=path) is None
    read = pd.read_csv(path) if suffix == ".csv" else pd.read_parquet(path)
    expected = full_frame[list(AXES) + FEW]
    assert len(read) == len(expected)
    for name in expected.columns:
        got, want = read[name], expected[name]
        if isinstance(want.dtype, pd.CategoricalDtype):
            assert got.astype(str).tolist() == want.astype(str).tolist(), name
        else:
            assert_close(got, want)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (dict(gamma=[]), r"gamma \[\]: empty axis"),
        (dict(batch=()), r"batch \[\]: empty axis"),
        (dict(hardware=[]), r"hardware \[\]: empty axis"),
        (dict(hardware=["h100", "nonsense-chip"]), "hardware 'nonsense-chip': unknown hardware"),
        (dict(target="llama-9000"), "target 'llama-9000': unknown model"),
        (dict(draft=["llama-68m", 3]), "draft 3: not a model"),
        (dict(gamma=[1, -2]), r"gamma -2: out of range; valid: finite numbers in \[0, 1024\]"),
        (dict(batch=[0]), r"batch 0: out of range; valid: finite numbers in \(0, 1073741824\]"),
        # beyond specsim.limits, as predict and Workload refuse them (were priced as inf)
        (dict(batch=[2**31]), r"batch 2147483648: out of range; valid: finite numbers in \(0,"),
        (dict(prompt_tokens=[2**40]), "prompt_tokens 1099511627776: out of range"),
        (dict(gamma=[5000]), r"gamma 5000: out of range; valid: finite numbers in \[0, 1024\]"),
        (dict(prompt_tokens=-1), "prompt_tokens -1: out of range"),
        (dict(generate_tokens=[float("nan")]), "generate_tokens nan: out of range"),
        (dict(tp=[0.5]), "tp 0.5: out of range"),
        (dict(alpha=[0.5, 1.2]), r"alpha 1.2: out of range; valid: finite numbers in \(0, 1\)"),
        (dict(alpha=0.0), r"alpha 0.0: out of range"),
        (dict(alpha="nope"), "alpha 'nope': unknown model"),
        (dict(gamma="0:8"), "parse_axis"),
        (dict(gamma=[1, 1]), "appears twice"),
        (dict(hardware=["h100", "H100 SXM"]), "appears twice"),
        (dict(columns=["tokens_per_second"]), "columns 'tokens_per_second': unknown column"),
        (dict(best_over="beta"), "best_over 'beta': unknown axis"),
        (dict(best_over="gamma", objective="fits"), "objective 'fits': not a numeric"),
        (dict(objective="tokens_per_second"), "objective 'tokens_per_second': not a numeric"),
        (dict(out="sweep.xlsx"), "out sweep.xlsx: unknown file type"),
        (dict(out="/nonexistent/folder/s.csv"), "folder '/nonexistent/folder' does not exist"),
        (dict(out="s.csv", process_count=2, process_index=0), "per-process name"),
        (dict(target_train_tokens=1e12), "only applies to SDSL acceptance"),
        (dict(alpha="sdsl", target="llama-68m"), "no pre-training tokens"),
        (dict(draft_tp=0), "draft_tp 0: below 1"),
        (dict(speculation_overhead_s=-1e-3), "speculation_overhead_s -0.001: negative"),
        (dict(chunk_size=0), "chunk_size 0: not a whole number"),
        (dict(quadrature_nodes=0), "quadrature_nodes must be a whole number in 1..64"),
        (dict(quadrature_nodes=10_000), "quadrature_nodes must be a whole number in 1..64"),
        (dict(smooth=-1.0), "smooth -1.0: out of range; valid: None or a number in"),
        (dict(process_index=3, process_count=2), "process_index 3: out of range"),
        (dict(batch=np.arange(1.0, 10_001.0), gamma=np.arange(100_000.0)), "GiB"),
        # Refused from the lengths alone, before a billion-value axis is built.
        (dict(batch=range(1, 10**9), gamma=range(1000)), "GiB"),
    ],
)
def test_bad_inputs_raise_before_compiling(overrides, message):
    with compilations() as compiled, pytest.raises(ValueError, match=message):
        sweep(**{"columns": FEW, **overrides})
    assert compiled == []  # not even an eager operation


def test_models_of_different_compute_dtypes_cannot_share_an_axis():
    fp8 = models.get("llama-2-7b", activation_dtype="fp8")
    with pytest.raises(ValueError, match="share a compute dtype"):
        sweep(target={"bf16": models.get("llama-2-7b"), "fp8": fp8})


# --------------------------------------------------------------------------- parse_axis


@pytest.mark.parametrize(
    ("text", "values"),
    [
        ("4", [4.0]),
        ("1,2,8", [1.0, 2.0, 8.0]),
        ("0:8", [float(v) for v in range(9)]),
        ("0:1:0.25", [0.0, 0.25, 0.5, 0.75, 1.0]),
        ("0.5:0.9:0.1", [0.5, 0.6, 0.7, 0.8, 0.9]),
        ("8:2:-3", [8.0, 5.0, 2.0]),
        ("1,2,4,...,256", [float(2**k) for k in range(9)]),
        ("0,2,4,...,10", [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]),
        ("1,2,3,...,4", [1.0, 2.0, 3.0, 4.0]),
        ("0:2,16,32,48,...,64", [0.0, 1.0, 2.0, 16.0, 32.0, 48.0, 64.0]),
        ("lin:0:1:0.25", [0.0, 0.25, 0.5, 0.75, 1.0]),
        ("geom:1:256", [float(2**k) for k in range(9)]),
        ("geom:1:1000:10", [1.0, 10.0, 100.0, 1000.0]),
        ("256,128,64,...,32", [256.0, 128.0, 64.0, 32.0]),
        ("1, 10, 100, ..., 1e4", [1.0, 10.0, 100.0, 1000.0, 10000.0]),
    ],
)
def test_parse_axis(text, values):
    assert parse_axis(text) == values
    assert axis_length(text) == len(values)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty axis"),
        ("1,,2", "empty item"),
        ("a,b", "gamma a: not a number"),
        ("0:8:0", "zero step"),
        ("8:0", "steps away from its stop"),
        ("1,2,4,...,100", "does not reach 100"),
        ("1,2,5,...,100", "neither arithmetic nor geometric"),
        ("1,...,8", "needs three terms before"),
        ("1,2,...", "needs three numbers before it and one after"),
        # Issue 12: two seed terms are ambiguous (1,2,...,256 could be 1..256 or 1,2,4,..).
        ("128,256,...,16384", r"three terms.*lin:128:16384:128 or geom:128:16384:2"),
        ("geom:0:8", "start or stop is zero"),
        ("geom:1:8:1", "ratio 1"),
        ("1:inf", "not a finite number"),
    ],
)
def test_parse_axis_errors(text, message):
    with pytest.raises(ValueError, match=message):
        parse_axis(text, "gamma")


# --------------------------------------------------------------------------- CLI

CLI_GRID = [
    "--hardware", "h100,tpu-v5p", "--target", "llama-2-7b,llama-3-8b", "--tp", "1:2",
    "--batch", "1,32", "--prompt", "128", "--generate", "64", "--alpha", "0.6,0.9",
    "--gamma", "0,3", "--columns", ",".join(FEW), "--no-progress",
]  # fmt: skip


def _cli(argv):
    parser = argparse.ArgumentParser(prog="specsim sweep")
    add_sweep_arguments(parser)
    return run_sweep(parser.parse_args(argv))


@pytest.mark.slow  # the command's sweep kernel: 5.1 s for both (2-core EPYC)
@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_cli_writes_the_grid(tmp_path, capsys, full_frame, suffix):
    path = tmp_path / f"grid{suffix}"
    assert _cli([*CLI_GRID, "--out", str(path)]) == 0
    read = pd.read_parquet(path) if suffix == ".parquet" else pd.read_csv(path)
    assert len(read) == len(full_frame)
    assert_close(read.tokens_per_s, full_frame.tokens_per_s)
    assert "64 points in" in capsys.readouterr().out


@pytest.mark.slow
def test_cli_best_over_with_plot_and_json(tmp_path, capsys):
    plot_path = tmp_path / "best_gamma.png"
    columns = "tokens_per_s,baseline_tokens_per_s,speedup"  # the grid of test_plot.py
    argv = ["--hardware", "h200,tpu-v5p", "--batch", "1,4,16,...,256", "--gamma", "0:8"]
    argv += ["--columns", columns, "--no-progress"]
    assert _cli([*argv, "--plot", str(plot_path), "--json", "--top", "2"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["points"] == summary["rows"] == 2 * 5 * 9
    assert plot_path.stat().st_size > 10_000
    assert [set(row) for row in summary["best"]] == [
        {"hardware", "batch", "gamma", "tokens_per_s", "speedup"}
    ] * 2
    out = tmp_path / "best.csv"
    assert _cli([*argv, "--best-over", "gamma", "--out", str(out)]) == 0
    assert pd.read_csv(out).batch.tolist() == [1, 4, 16, 64, 256] * 2


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--gamma", "1,2,..."], "needs three numbers before it and one after"),
        (["--batch", "0:4"], r"batch 0.0: out of range; valid: finite numbers in \(0, 1073"),
        (["--hardware", "h100,,h200"], "--hardware h100,,h200: empty item"),
        (["--hardware", "h100,b9000"], "hardware 'b9000': unknown hardware"),
        (["--alpha", "0.5,1.5"], r"alpha 1.5: out of range; valid: finite numbers in \(0, 1\)"),
        (["--out", "grid.xlsx"], "--out grid.xlsx: unknown file type; valid: a name ending in"),
        (["--plot", "grid.gif"], "--plot grid.gif: unknown file type"),
        (["--plot", "g.png", "--tp", "1,2"], "no automatic chart for a grid varying tp"),
    ],
)
def test_cli_rejects_bad_input_with_value_errors(argv, message):
    with pytest.raises(ValueError, match=message):
        _cli(argv)
