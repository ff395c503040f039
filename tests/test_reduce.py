"""Reductions on the device equal the full grid reduced on the host, point for point;
`SweepResult` holds the same numbers as the frame."""

import functools

import numpy as np
import pandas as pd
import pytest
from host_reductions import histogram, quantiles, top_k

import specsim
from specsim import Histogram, Quantiles, TopK
from specsim._sweep import AXES, REPORT_COLUMNS, sweep

# 2 x 2 x 3 x 2 x 4 x 4 = 384 points; chunk_size=40 makes several chunks with padding.
# No gamma = 0: there the speedup is 1 and the tokens per step are 1 for every alpha and
# tp, values that two differently vectorised float32 programs may round to either side of
# 1 - ties whose order a reduction cannot reproduce point for point.
GRID = dict(
    hardware=["h100", "tpu-v5e"],
    target=["llama-2-7b", "llama-2-13b"],
    tp=[1, 2, 4],
    batch=[1, 48],
    alpha=[0.55, 0.7, 0.8, 0.9],
    gamma=[1, 2, 4, 7],
)
FIELDS = ["tokens_per_s", "speedup", "verify_bound", "request_latency_s", "fits"]  # report order


@functools.cache
def full_grid(chunk_size=None):
    """The full grid, evaluated in the same chunks as the reduction it is compared with:
    float32 results of differently vectorised programs may differ in the last bit, which
    moves a value on a bin edge or swaps near-ties."""
    return sweep(**GRID, chunk_size=chunk_size, progress=False)


@pytest.fixture(scope="module")
def full():
    return full_grid()


def _same(got, expected, exact=True):
    expected = expected.reset_index(drop=True)
    for name in expected.columns:
        if isinstance(got[name].dtype, pd.CategoricalDtype):
            expected[name] = expected[name].astype(object).astype(got[name].dtype)
    if exact:
        pd.testing.assert_frame_equal(got, expected, check_dtype=False)
    else:
        # Quantiles interpolate in float32 on the device, in NumPy's arithmetic on the host.
        pd.testing.assert_frame_equal(got, expected, check_dtype=False, rtol=1e-6)


# Every reduction over several chunks with padding (chunk_size=40, where top-k lists of
# chunks are merged); the single-chunk path (None), which merges nothing, once with ties
# and once without. Each case compiles its own sweep (14-22 s on a 2-core CPU).
_TOP_K_CASES = [
    ("gamma", 1, "tokens_per_s", True, 40),
    ("gamma", 1, "tokens_per_s", True, None),
    ("gamma", 3, "tokens_per_s", True, 40),
    (("batch", "gamma"), 2, "request_latency_s", False, 40),
    (("tp", "alpha"), 4, "speedup", True, 40),
    ("alpha", 2, "verify_step_s", True, 40),  # objective constant over the group: ties
    ("alpha", 2, "verify_step_s", True, None),
]


@pytest.mark.slow
@pytest.mark.parametrize("over, k, objective, maximize, chunk_size", _TOP_K_CASES)
def test_top_k_equals_a_stable_sort_per_group(over, k, objective, maximize, chunk_size):
    full = full_grid(chunk_size)
    reduction = TopK(over, k, objective, maximize)
    got = sweep(**GRID, columns=FIELDS, reduce=reduction, chunk_size=chunk_size, progress=False)
    names = (over,) if isinstance(over, str) else over
    _same(got, top_k(full, names, k, objective, maximize, FIELDS))


@pytest.mark.slow
def test_best_over_is_top_1(full):
    a = sweep(**GRID, columns=FIELDS, best_over=["alpha", "gamma"], objective="speedup")
    b = sweep(**GRID, columns=FIELDS, reduce=TopK(["gamma", "alpha"], 1, "speedup"))
    pd.testing.assert_frame_equal(a, b)


@pytest.mark.slow
@pytest.mark.parametrize("chunk_size", [None, 40])
@pytest.mark.parametrize("over", ["gamma", ("tp", "gamma"), ("hardware", "batch", "alpha")])
def test_quantiles_equal_numpy_per_group(over, chunk_size):
    full = full_grid(chunk_size)
    q = (0.0, 0.1, 0.5, 0.75, 1.0)
    fields = ["tokens_per_s", "speedup", "acceptance_rate", "draft_step_s"]
    got = sweep(
        **GRID, columns=fields, reduce=Quantiles(over, q), chunk_size=chunk_size, progress=False
    )
    names = (over,) if isinstance(over, str) else over
    _same(got, quantiles(full, names, q, fields), exact=False)


@pytest.mark.slow
@pytest.mark.parametrize("chunk_size", [None, 40])
@pytest.mark.parametrize("over", ["gamma", ("batch", "alpha", "gamma")])
def test_histograms_equal_numpy_per_group(over, chunk_size):
    full = full_grid(chunk_size)
    edges = [0.5, 0.9, 1.0, 1.1, 1.5, 2.0, 3.0, float(full.speedup.max())]
    got = sweep(
        **GRID, reduce=Histogram(over, edges, "speedup"), chunk_size=chunk_size, progress=False
    )
    names = (over,) if isinstance(over, str) else over
    _same(got, histogram(full, names, edges, "speedup"))
    assert got["count"].sum() <= len(full)


def test_sweep_result_holds_the_frame_lazily(full):
    result = sweep(**GRID, as_frame=False, progress=False)
    assert len(result) == len(full) and result.columns == list(full.columns)
    pd.testing.assert_frame_equal(result.to_frame(), full)
    assert result.dims == tuple(a for a in AXES if a != "draft" or True)
    shape = dict(zip(result.dims, result.shape, strict=True))
    assert shape["gamma"] == 4 and shape["draft"] == 1
    # Fields keep their own shape: the draft step does not vary with the target, alpha, gamma.
    draft_step = result.array("draft_step_s")
    assert draft_step.shape == (2, 1, 1, 3, 2, 1, 1, 1, 1)
    grid = np.broadcast_to(draft_step, result.shape).reshape(-1)
    np.testing.assert_array_equal(grid, full.draft_step_s.to_numpy())
    for name in ("tokens_per_s", "verify_bound", "hardware", "gamma"):
        column = result[name]
        np.testing.assert_array_equal(np.asarray(column), np.asarray(full[name].array))
    assert result.array("hardware")[1, 0, 0, 0, 0, 0, 0, 0, 0] == "TPU v5e"


@pytest.mark.slow
def test_sweep_result_of_a_reduction(full):
    result = sweep(**GRID, columns=FIELDS, reduce=TopK("gamma", 2), as_frame=False)
    assert result.dims[-1] == "rank" and result.shape[-1] == 2
    expected = top_k(full, ("gamma",), 2, fields=FIELDS)
    _same(result.to_frame(), expected)
    best_gamma = result.array("gamma")
    assert best_gamma.shape[-1] == 2


@pytest.mark.parametrize(
    "reduce, message",
    [
        (TopK("beta"), "reduce 'beta': unknown axis; valid: hardware"),
        (TopK("gamma", k=5), "k = 5 exceeds the 4 points"),
        (TopK("gamma", objective="fits"), "objective 'fits': not a numeric report field"),
        (Histogram("gamma", [0, 1], field="verify_bound"), "field 'verify_bound': not a numeric"),
        ("gamma", "reduce: expected specsim.TopK"),
    ],
)
def test_bad_reductions_raise(reduce, message):
    with pytest.raises(ValueError, match=message):
        sweep(**GRID, reduce=reduce)


def test_reduction_specs_are_validated():
    for make, message in (
        (lambda: TopK("gamma", k=0), "k must be"),
        (lambda: TopK(()), "over"),
        (lambda: Quantiles("gamma", [0.5, 1.5]), "q"),
        (lambda: Histogram("gamma", [1.0]), "edges"),
        (lambda: Histogram("gamma", [2.0, 1.0]), "edges"),
    ):
        with pytest.raises(ValueError, match=message):
            make()
    with pytest.raises(ValueError, match="not both"):
        sweep(**GRID, best_over="gamma", reduce=TopK("gamma"))
    with pytest.raises(ValueError, match="quantiles need numeric"):
        sweep(**GRID, columns=["fits"], reduce=Quantiles("gamma"))
    assert REPORT_COLUMNS[0] == "tokens_per_s" and specsim.TopK is TopK
