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
