"""Calibration sanity: fitted rates far above the device's micro-benchmarks are refused or
flagged (the report, the JSON summary and the hardware file say so)."""

from __future__ import annotations

import argparse
import tomllib

import numpy as np
import pandas as pd
import pytest

import specsim
from specsim import hardware, models
from specsim._calibrate import StepTimeData, _fold_into_peaks, calibrate
from specsim._local_calibration import LocalCalibration
from specsim._plausibility import MAX_RATIO, implausible_rates
from specsim.cli.calibrate import add_calibrate_arguments, run_calibrate

# What a 2-core CPU's micro-benchmarks give (issue 12: the CPU whose tiny-grid fit was
# saved at 9.7 EFLOP/s and 12.4 TB/s): ~100 GFLOP/s fp32 matmul, ~20 GB/s copy.
CPU = hardware.get("h100").replace(
    fp32_flops_per_s=1e11,
    bf16_flops_per_s=1e11,
    fp8_flops_per_s=1e11,
    int8_flops_per_s=1e11,
    hbm_bytes_per_s=2e10,
    compute_efficiency=1.0,
    memory_efficiency=1.0,
)


def test_rates_within_the_bound_pass_and_beyond_it_are_named():
    assert implausible_rates(CPU, CPU, compute_dtype="fp32") == []
    # An efficiency fitted at 2.9 is folded into the peak: still plausible.
    assert implausible_rates(_fold_into_peaks(CPU.replace(compute_efficiency=2.9)), CPU) == []
    # The file: 9.7e18 FLOP/s and 1.24e13 B/s against these benchmarks.
    wild = _fold_into_peaks(CPU.replace(compute_efficiency=9.7e7, memory_efficiency=620.0))
    assert float(wild.compute_efficiency) == 1.0  # what the file showed: pinned at 1
    messages = implausible_rates(wild, CPU, compute_dtype="fp32")
    assert len(messages) == 2
    assert messages[0].startswith("fitted fp32 matmul rate 9.7e+18 FLOP/s is 9.7e+07x")
    assert messages[1].startswith("fitted memory bandwidth 1.24e+13 B/s is 620x")
    # Slower than the benchmark is plausible (small kernels do not reach the peak).
    assert implausible_rates(CPU.replace(compute_efficiency=0.01), CPU) == []
    assert MAX_RATIO == 3.0


def test_extra_gemm_weight_passes_beyond_a_packing_copy_are_named():
    # A packing GEMM writes a copy of its weights and reads it back: ~2 extra passes.
    assert implausible_rates(CPU.replace(gemm_weight_passes=1.9), CPU) == []
    (message,) = implausible_rates(CPU.replace(gemm_weight_passes=12.0), CPU)
    assert message.startswith("fitted gemm_weight_passes 12 is above the plausible 4")


def _local(fitted) -> LocalCalibration:
    spec = models.get("llama-68m")
    data = StepTimeData.from_points([(spec, 1, 1, 0, 1e-3), (spec, 4, 1, 64, 2e-3)])
    result = calibrate(data, CPU, fit=["step_overhead_s"], steps=5, polish_steps=0, restarts=1)
    steps = pd.DataFrame({"model": ["a", "b"], "median_s": [1e-3, 2e-3]})
    return LocalCalibration(
        steps=steps,
        calibration=result.replace(hardware=fitted),
        nominal=CPU,
        clock="wall",
        statistic="median",
        repeats=1,
        rounds=1,
    )


@pytest.fixture
def fake_measurement(monkeypatch):
    def use(fitted):
        monkeypatch.setattr(specsim, "measure_and_calibrate", lambda *a, **k: _local(fitted))

    return use


@pytest.mark.slow
def test_calibrate_refuses_an_implausible_fit(tmp_path, fake_measurement, capsys):
    fake_measurement(_fold_into_peaks(CPU.replace(compute_efficiency=1e6)))
    parser = add_calibrate_arguments(argparse.ArgumentParser())
    output = tmp_path / "local.toml"
    assert run_calibrate(parser.parse_args(["--output", str(output), "--size", "tiny"])) == 1
    err = capsys.readouterr().err
    assert "warning: fitted fp32 matmul rate" in err and "nothing written" in err
    assert not output.exists()
    # Kept on request, and flagged in the file, which still loads.
    args = parser.parse_args(["--output", str(output), "--size", "tiny", "--accept-implausible"])
    assert run_calibrate(args) == 0
    table = tomllib.loads(output.read_text())["hardware"]["local"]["calibration"]
    assert table["plausible"] is False and "fp32 matmul rate" in table["implausible"]
    assert float(hardware.get(str(output)).bf16_flops_per_s) == pytest.approx(1e17, rel=1e-6)


@pytest.mark.slow  # a calibrate command: 4.0 s (2-core EPYC)
def test_calibrate_marks_a_plausible_fit(tmp_path, fake_measurement):
    fake_measurement(CPU.replace(compute_efficiency=0.5))
    parser = add_calibrate_arguments(argparse.ArgumentParser())
    output = tmp_path / "local.toml"
    assert run_calibrate(parser.parse_args(["--output", str(output), "--size", "tiny"])) == 0
    table = tomllib.loads(output.read_text())["hardware"]["local"]["calibration"]
    assert table["plausible"] is True and "implausible" not in table


def test_validate_report_flags_an_implausible_fit():
    from specsim.validate import report_local
    from specsim.validate._local import LocalValidation

    local = _local(_fold_into_peaks(CPU.replace(memory_efficiency=50.0, roofline_sharpness=4.0)))
    steps = pd.DataFrame(
        {
            "split": ["train", "test"],
            "model": ["a", "a"],
            "phase": ["decode", "decode"],
            "batch": [1, 1],
            "new_tokens": [1, 1],
            "context": [0, 8],
            "measured_ms": [1.0, 1.0],
            "median_ms": [1.0, 1.0],
            "p90_ms": [1.0, 1.0],
            "predicted_ms": [1.0, 1.1],
            "error_pct": [0.0, 10.0],
            "error_vs_median_pct": [0.0, 10.0],
        }
    )
    validation = LocalValidation(
        steps=steps,
        speculative=pd.DataFrame(),
        calibration=local.calibration,
        nominal=CPU,
        clock="wall",
        statistic="median",
        elapsed_s=1.0,
    )
    text, summary = report_local(validation)
    assert "**Implausible calibration**" in text and "memory bandwidth 1e+12 B/s is 50x" in text
    assert summary["plausible"] is False and len(summary["implausible"]) == 1
    assert np.isfinite(summary["step_time_mape_pct"])


@pytest.mark.parametrize("spread, noisy", [(1.12, False), (1.31, True)])
def test_validate_report_says_when_the_timings_are_too_noisy(spread, noisy):
    # Runs 10 and 12 of benchmarks/results/validate_cpu_runs.md (a quiet host): a grid
    # point's median was 1.12x its p10 (median over the grid); runs 13-14, on a host that
    # failed the bars with implausible fits, 1.30-1.32.
    from specsim.validate import report_local
    from specsim.validate._local import LocalValidation

    p10 = np.array([1.0, 2.0, 4.0])
    steps = pd.DataFrame(
        {
            "split": ["train", "test", "test"],
            "model": ["a"] * 3,
            "phase": ["decode"] * 3,
            "batch": [1, 4, 16],
            "new_tokens": [1] * 3,
            "context": [8] * 3,
            "measured_ms": p10,
            "p10_ms": p10,
            "median_ms": p10 * np.array([1.0, spread, 2.0]),  # the middle one is the median
            "p90_ms": p10 * 2.5,
            "predicted_ms": p10,
            "error_pct": [0.0] * 3,
            "error_vs_median_pct": [0.0] * 3,
        }
    )
    validation = LocalValidation(
        steps=steps,
        speculative=pd.DataFrame(),
        calibration=_local(CPU).calibration,
        nominal=CPU,
        clock="wall",
        statistic="p10",
        elapsed_s=1.0,
    )
    assert validation.median_over_p10 == pytest.approx(spread)
    text, summary = report_local(validation)
    assert f"median step time is {spread:.2f} times its p10" in text
    assert ("**Noisy timings**" in text) is noisy and summary["noisy_timings"] is noisy
    assert summary["step_median_over_p10"] == pytest.approx(spread)


@pytest.mark.parametrize("command", ["calibrate", "validate"])
def test_size_help_states_measured_durations(command):
    # Issue 12: "tiny (seconds)" took over 2 minutes. Every size names its duration, and
    # the file the durations were measured in exists.
    import re
    from pathlib import Path

    from specsim.cli import build_parser

    parser = build_parser()
    (sub,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    command_parser = sub.choices[command]
    command_parser.format_help()  # loads the command's flags
    (size,) = (a for a in command_parser._actions if "--size" in a.option_strings)
    for name in ("tiny", "quick", "full"):
        assert re.search(rf"{name} \([^)]*\d+(\.\d+)? (s|min)\)", size.help), (name, size.help)
    (cited,) = re.findall(r"benchmarks/results/\S+\.md", size.help)
    assert (Path(__file__).resolve().parents[1] / cited).is_file()
