"""A sweep sharded over 4 fake CPU devices equals the unsharded one point for point.

``tests/conftest.py`` gives the CPU backend 4 devices (``jax_num_cpu_devices``) before
anything initialises it, so every sweep of the suite runs sharded, and this test compares
that with a single device.
"""

import jax
import pandas as pd
import pytest

import specsim._sweep as sweeps

# 3 x 3 x 5 x 7 = 315 points: neither the grid nor its chunks divide by 4 devices.
GRID = dict(
    hardware=["h100", "tpu-v5p", "mi300x"],
    batch=[1, 8, 64],
    alpha=[0.5, 0.6, 0.7, 0.8, 0.9],
    gamma=range(7),
    columns=["tokens_per_s", "verify_bound", "fits"],
    chunk_size=70,
    progress=False,
)


def _same(a, b):
    # Each device runs a quarter-length program, which XLA may vectorise differently
    # (loop remainders, FMA contraction): float32 results agree to a few ulp; axes,
    # bounds and fits exactly.
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=5e-7)


@pytest.mark.slow
def test_sharded_sweep_equals_unsharded_on_four_fake_devices(monkeypatch):
    assert jax.device_count() == 4, jax.devices()
    shards = []
    kernel = sweeps._evaluate_chunk

    def recording(*args, **kwargs):
        out = kernel(*args, **kwargs)
        shards.append(len(out["tokens_per_s"].sharding.device_set))
        return out

    monkeypatch.setattr(sweeps, "_evaluate_chunk", recording)
    sharded = sweeps.sweep(**GRID)
    assert len(sharded) == 315
    assert set(shards) == {4}, shards
    single = sweeps.sweep(**GRID, devices=jax.devices()[:1])
    _same(sharded, single)

    best = sweeps.sweep(**GRID, best_over="gamma")
    best_single = sweeps.sweep(**GRID, best_over="gamma", devices=jax.devices()[:1])
    _same(best, best_single)

    # Two "hosts" of 4 devices each: their slices concatenate to the whole grid.
    parts = [sweeps.sweep(**GRID, process_index=i, process_count=2) for i in range(2)]
    _same(pd.concat(parts, ignore_index=True), sharded)


@pytest.mark.slow
def test_top_k_on_four_devices_equals_the_host_top_k():
    """The quick tier's share of the next test: one reduction, sharded over 4 devices."""
    from host_reductions import top_k

    from specsim import TopK

    grid = dict(GRID, gamma=range(1, 7), columns=["tokens_per_s", "verify_bound"])
    full = sweeps.sweep(**grid)
    got = sweeps.sweep(**grid, devices=jax.devices()[:4], reduce=TopK("gamma", 2))
    expected = top_k(full, ("gamma",), 2, fields=grid["columns"]).reset_index(drop=True)
    for name in expected.columns:
        if isinstance(got[name].dtype, pd.CategoricalDtype):
            expected[name] = expected[name].astype(object).astype(got[name].dtype)
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)


@pytest.mark.slow  # ~5 s of CPU each: eight compiled reductions
@pytest.mark.parametrize("n_devices", [4, 1])
def test_reductions_equal_host_reductions_on_one_and_four_devices(n_devices):
    """Reduced on the device, sharded or not, equals the full grid reduced on the host."""
    from host_reductions import histogram, quantiles, top_k

    from specsim import Histogram, Quantiles, TopK

    devices = jax.devices()[:n_devices]
    # No gamma = 0 (see test_reduce.py); chunks of 70 points do not divide by 4 devices.
    grid = dict(GRID, gamma=range(1, 7), columns=None, devices=devices)
    full = sweeps.sweep(**grid)
    fields = ["tokens_per_s", "speedup", "verify_bound", "request_latency_s", "fits"]
    numeric = ["tokens_per_s", "speedup", "iteration_s"]
    edges = [0.0, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 8.0]

    def same(got, expected, **kwargs):
        expected = expected.reset_index(drop=True)
        for name in expected.columns:
            if isinstance(got[name].dtype, pd.CategoricalDtype):
                expected[name] = expected[name].astype(object).astype(got[name].dtype)
        pd.testing.assert_frame_equal(got, expected, check_dtype=False, **kwargs)

    for over, k in (("gamma", 1), ("gamma", 3), (("alpha", "gamma"), 2)):
        got = sweeps.sweep(**{**grid, "columns": fields}, reduce=TopK(over, k))
        names = (over,) if isinstance(over, str) else over
        same(got, top_k(full, names, k, fields=fields))
    for over in ("gamma", ("hardware", "gamma")):
        names = (over,) if isinstance(over, str) else over
        got = sweeps.sweep(**{**grid, "columns": numeric}, reduce=Quantiles(over, (0.1, 0.5, 1)))
        # float32 interpolation on the device, NumPy's on the host: a last-bit difference
        same(got, quantiles(full, names, (0.1, 0.5, 1.0), numeric), rtol=1e-6)
        got = sweeps.sweep(**grid, reduce=Histogram(over, edges, "speedup"))
        same(got, histogram(full, names, edges, "speedup"))
