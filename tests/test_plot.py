"""Plots render to files, label every axis with its unit, and reject frames they cannot draw."""

import re

import numpy as np
import pytest
from matplotlib.figure import Figure

from specsim import plot
from specsim._sweep import sweep

UNITS = (
    "tokens/s|sequences|×|FLOP/byte|TFLOP/s|parameters|s|tokens|chips|draft tokens per iteration"
)
UNIT = re.compile(rf"\(({UNITS})\)$")


@pytest.fixture(scope="module")
def frame():
    return sweep(
        hardware=["h200", "tpu-v5p"],
        batch=[1, 4, 16, 64, 256],
        gamma=range(9),
        columns=["tokens_per_s", "baseline_tokens_per_s", "speedup"],
    )


def _check(figure, path):
    assert isinstance(figure, Figure)
    assert path.exists() and path.stat().st_size > 10_000  # a real PNG, not an empty canvas
    for ax in figure.axes:
        if ax.get_label() == "<colorbar>":
            assert UNIT.search(ax.get_ylabel()), ax.get_ylabel()
            continue
        assert UNIT.search(ax.get_ylabel()), ax.get_ylabel()
        assert UNIT.search(ax.get_xlabel()) or ax.get_xlabel() == "accelerator", ax.get_xlabel()
        assert ax.lines or ax.images or ax.patches


@pytest.mark.slow
def test_roofline_places_three_phases_per_chip_below_the_roof(tmp_path):
    path = tmp_path / "roofline.png"
    figure = plot.roofline(["h200", "tpu-v5p"], batch=[1, 8, 64], gamma=3, path=path)
    _check(figure, path)
    ax = figure.axes[0]
    assert ax.get_xlabel() == "arithmetic intensity (FLOP/byte)"
    assert ax.get_ylabel() == "attained performance per chip (TFLOP/s)"
    lines = {line.get_label(): line for line in ax.lines}
    assert len(lines) == 2 * 4  # per chip: draft, verification, decode, roof
    for chip in ("H200 SXM", "TPU v5p"):
        roof = lines[next(k for k in lines if k.startswith(f"{chip}: roof"))]
        for phase in ("draft step", "verification (γ+1 tokens)", "plain decode"):
            points = lines[f"{chip}: {phase}"]
            x, y = points.get_data()
            assert len(x) == 3
            ceiling = np.interp(np.log(x), np.log(roof.get_xdata()), roof.get_ydata())
            assert np.all(y <= ceiling * (1 + 1e-6))
        # Verification of gamma + 1 tokens is gamma + 1 times as intense as decoding.
        vx = lines[f"{chip}: verification (γ+1 tokens)"].get_xdata()
        dx = lines[f"{chip}: plain decode"].get_xdata()
        assert np.all(vx > 2 * dx)


@pytest.mark.slow
def test_heatmap_marks_the_best_gamma_of_each_batch(tmp_path, frame):
    path = tmp_path / "heatmap.png"
    h200 = frame[frame.hardware == "H200 SXM"]
    figure = plot.heatmap(h200, path=path)
    _check(figure, path)
    ax = figure.axes[0]
    assert ax.get_xlabel() == "lookahead γ (draft tokens per iteration)"
    assert ax.get_ylabel() == "batch (sequences)"
    assert figure.axes[1].get_ylabel() == "throughput (tokens/s)"
    marked = ax.lines[0].get_xdata()
    best = h200.loc[h200.groupby("batch").tokens_per_s.idxmax()].sort_values("batch").gamma
    np.testing.assert_array_equal(marked, best.to_numpy())


@pytest.mark.slow
def test_best_gamma_and_hardware_comparison_render(tmp_path, frame):
    path = tmp_path / "best.png"
    figure = plot.best_gamma(frame, path=path)
    _check(figure, path)
    assert len(figure.axes) == 2
    assert figure.axes[1].get_ylabel() == "speedup at best γ (×)"
    reduced = sweep(
        hardware=["h200", "tpu-v5p"],
        batch=[1, 4, 16, 64, 256],
        gamma=range(9),
        columns=["tokens_per_s", "baseline_tokens_per_s", "speedup"],
        best_over="gamma",
    )
    again = plot.best_gamma(reduced)
    np.testing.assert_array_equal(
        again.axes[0].lines[0].get_ydata(), figure.axes[0].lines[0].get_ydata()
    )

    path = tmp_path / "hardware.svg"
    figure = plot.hardware_comparison(frame[frame.batch == 4], path=path)
    assert path.stat().st_size > 5_000
    assert figure.axes[0].get_ylabel() == "throughput (tokens/s)"
    assert len(figure.axes[0].patches) == 4  # two chips x (speculative, plain)


@pytest.mark.slow
def test_optimal_draft_size_follows_the_sdsl_law(tmp_path):
    path = tmp_path / "sdsl.png"
    figure = plot.optimal_draft_size(path=path)
    _check(figure, path)
    ax = figure.axes[0]
    assert ax.get_xlabel() == "target size M (parameters)"
    law = next(line for line in ax.lines if line.get_label().startswith("SDSL"))
    curve = next(line for line in ax.lines if "D = 1.8e+11" in line.get_label())
    m = curve.get_xdata()
    inside = (m > 1e10) & (m < 1.2e11)  # the range of the paper's targets
    ratio = curve.get_ydata()[inside] / law.get_ydata()[inside]
    assert np.all(np.abs(ratio - 1) < 0.15)


def test_frames_that_cannot_be_drawn_raise(frame):
    with pytest.raises(ValueError, match="varies hardware"):
        plot.heatmap(frame)
    with pytest.raises(ValueError, match="no column 'alpha_rate'"):
        plot.heatmap(frame[frame.hardware == "TPU v5p"], value="alpha_rate")
    with pytest.raises(ValueError, match="empty"):
        plot.best_gamma(frame.iloc[:0])
    with pytest.raises(ValueError, match="batch must be"):
        plot.roofline(batch=[])
    with pytest.raises(ValueError, match="unknown hardware"):
        plot.roofline("h900")
