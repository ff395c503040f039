"""A sweep sharded over 4 fake CPU devices equals the unsharded one point for point.

XLA reads ``--xla_force_host_platform_device_count`` once, when JAX initialises its
CPU backend, so the check runs in a fresh interpreter with the flag set before
``import jax``.
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent(
    """
    import jax
    import pandas as pd

    import specsim._sweep as sweeps

    assert jax.device_count() == 4, jax.devices()
    shards = []
    kernel = sweeps._evaluate_chunk

    def recording(*args, **kwargs):
        out = kernel(*args, **kwargs)
        shards.append(len(out["tokens_per_s"].sharding.device_set))
        return out

    sweeps._evaluate_chunk = recording
    # 3 x 3 x 5 x 7 = 315 points: neither the grid nor its chunks divide by 4 devices.
    grid = dict(
        hardware=["h100", "tpu-v5p", "mi300x"],
        batch=[1, 8, 64],
        alpha=[0.5, 0.6, 0.7, 0.8, 0.9],
        gamma=range(7),
        columns=["tokens_per_s", "verify_bound", "fits"],
        chunk_size=70,
        progress=False,
    )
    # Each device runs a quarter-length program, which XLA may vectorise differently
    # (loop remainders, FMA contraction): float32 results agree to a few ulp; axes,
    # bounds and fits exactly.
    same = lambda a, b: pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=5e-7)

    sharded = sweeps.sweep(**grid)
    used = set(shards)
    assert used == {4}, shards
    single = sweeps.sweep(**grid, devices=jax.devices()[:1])
    same(sharded, single)

    best = sweeps.sweep(**grid, best_over="gamma")
    best_single = sweeps.sweep(**grid, best_over="gamma", devices=jax.devices()[:1])
    same(best, best_single)

    # Two "hosts" of 4 devices each: their slices concatenate to the whole grid.
    parts = [sweeps.sweep(**grid, process_index=i, process_count=2) for i in range(2)]
    same(pd.concat(parts, ignore_index=True), sharded)
    print("sharded", len(sharded), "points on", used, "devices")
    """
)


def test_sharded_sweep_equals_unsharded_on_four_fake_devices():
    env = dict(os.environ)
    env["XLA_FLAGS"] = (
        env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
    ).strip()
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "sharded 315 points on {4} devices" in result.stdout
