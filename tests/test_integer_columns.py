"""Counts (tp, batch, tokens, gamma) come out of sweeps as integers, in frames and files.

Issue 12: tables and CSVs showed ``batch 1.0`` and ``gamma 10.0``.
"""

import numpy as np
import pandas as pd
import pytest

import specsim
from specsim.cli import main

COUNTS = ["tp", "batch", "prompt_tokens", "generate_tokens", "gamma"]


@pytest.fixture(scope="module")
def frame():
    return specsim.sweep(
        target="llama-3.2-1b",
        draft="llama-68m",
        hardware="h100",
        batch=[1, 8.0],  # a whole float is a count too
        generate_tokens=[128, 256.5],  # not whole: stays float
        gamma=range(3),
        columns=["speedup"],
    )


@pytest.mark.slow
def test_whole_counts_are_int64_and_fractional_ones_float64(frame):
    for name in ("tp", "batch", "prompt_tokens", "gamma"):
        assert frame[name].dtype == np.int64, name
    assert frame["generate_tokens"].dtype == np.float64
    assert frame["alpha"].dtype == np.float64
    assert sorted(frame["batch"].unique()) == [1, 8]
    assert sorted(frame["generate_tokens"].unique()) == [128.0, 256.5]


@pytest.mark.slow
def test_reduced_axis_is_integer(frame):
    best = specsim.sweep(
        target="llama-3.2-1b",
        draft="llama-68m",
        hardware="h100",
        batch=[1, 8],
        gamma=range(3),
        columns=["speedup"],
        best_over="gamma",
    )
    assert best["gamma"].dtype == np.int64
    # The reduction's pick is the frame's row with the highest speedup per batch.
    whole = frame[frame["generate_tokens"] == 128]
    expected = whole.loc[whole.groupby("batch")["speedup"].idxmax(), ["batch", "gamma"]]
    assert best[["batch", "gamma"]].to_numpy().tolist() == expected.to_numpy().tolist()


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_streamed_files_keep_integers(tmp_path, suffix):
    path = tmp_path / f"grid{suffix}"
    specsim.sweep(
        target="llama-3.2-1b",
        draft="llama-68m",
        hardware="h100",
        batch=[1, 8],
        gamma=range(3),
        columns=["speedup"],
        out=str(path),
        chunk_size=2,  # several chunks: one schema across them
    )
    if suffix == ".csv":
        lines = path.read_text().splitlines()
        header = lines[0].split(",")
        first = dict(zip(header, lines[1].split(","), strict=True))
        assert [first[c] for c in COUNTS] == ["1", "1", "512", "256", "0"]
        read = pd.read_csv(path)
    else:
        read = pd.read_parquet(path)
    assert all(read[c].dtype == np.int64 for c in COUNTS)
    assert len(read) == 6


@pytest.mark.slow
def test_method_sweep_counts_are_integers():
    frame = specsim.sweep_methods(
        ["draft"], target="llama-3.2-1b", hardware="h100", batch=[1, 4.0], gamma=[2, 3]
    )
    for name in ("tp", "batch", "prompt_tokens", "generate_tokens", "shape"):
        assert frame[name].dtype == np.int64, name


@pytest.mark.slow  # a whole command, compiling its own sweep
def test_cli_table_prints_integers(capsys):
    code = main(
        [
            "sweep",
            "--target",
            "llama-2-7b",  # llama-68m's tokenizer: the points are feasible
            "--draft",
            "llama-68m",
            "--hardware",
            "h100",
            "--batch",
            "1,16",
            "--gamma",
            "1,3",
            "--top",
            "4",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    rows = out.split("highest tokens_per_s", 1)[1].splitlines()[1:]  # after the title line
    assert rows[0].split()[:2] == ["batch", "gamma"]
    for row in rows[1:]:
        batch, gamma = row.split()[:2]
        assert batch in {"1", "16"} and gamma in {"1", "3"}, row
