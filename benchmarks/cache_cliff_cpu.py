"""How fast one-row matmuls stream their weights on this CPU, against how much they read.

A decode step of one sequence is a chain of matrix-vector products, each reading its
weights once. specsim prices every byte at one bandwidth (``hbm_bytes_per_s`` x
``memory_efficiency``); on a CPU the weights of a small network can stay in the
last-level cache between steps, and those of a larger one cannot. This script measures
the difference directly: one jitted chain of ``n`` one-row products ``x @ w_i`` over
``n`` distinct matrices of one shape, timed again and again (the matrices are the working
set that a repeated step reads), with the single-threaded XLA that `specsim validate`
measures with.

    python benchmarks/cache_cliff_cpu.py

Prints, per shape and count, the working set in MB, the lower-decile time of the chain in
microseconds, the weight bytes it streams per second and the time per matrix; then the
weight bytes one decode step of each of the CPU grid's networks reads, to place each one
on that curve.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from attention_cpu import _p10_s  # (this folder is on sys.path when run as a script)

from specsim import forward_cost
from specsim.measure import _grids, configure_measurement

# As `specsim validate` times its passes: single-threaded XLA (before JAX starts).
configure_measurement()

# (d_in, d_out) of the chained matrices, float32, and the chain lengths timed for each.
SHAPES = (
    ((384, 384), (1, 4, 8, 16, 24, 32, 64)),  # 0.6 MB: an attention projection of "big"
    ((512, 1024), (1, 2, 4, 6, 8, 12, 16, 24, 32)),  # 2.1 MB
    ((1024, 1024), (1, 4, 8, 16)),  # 4.2 MB
    ((2048, 2048), (1, 2, 4)),  # 16.8 MB
)


def _chain(weights, x):
    # Each product feeds the next (a real dependency, as between layers); its first d_in
    # columns keep the row's width.
    d_in = x.shape[1]
    for w in weights:
        x = x + 1e-3 * (x @ w)[:, :d_in]
    return x


def main() -> None:
    chain = jax.jit(_chain)
    print(f"device: {jax.devices()[0].device_kind}; one-row products x @ w_i, float32")
    print(f"{'shape':>11s} {'n':>4s} {'MB':>7s} {'us':>9s} {'GB/s':>6s} {'us/matrix':>10s}")
    for (d_in, d_out), counts in SHAPES:
        for n in counts:
            keys = jax.random.split(jax.random.key(n), n)
            weights = [jax.random.normal(k, (d_in, d_out), jnp.float32) for k in keys]
            x = jnp.ones((1, d_in), jnp.float32)
            time_s = _p10_s(chain, weights, x, repeats=60)
            n_bytes = n * d_in * d_out * 4
            print(
                f"{d_in:>5d}x{d_out:<5d} {n:4d} {n_bytes / 1e6:7.1f} {time_s * 1e6:9.1f} "
                f"{n_bytes / time_s / 1e9:6.1f} {time_s / n * 1e6:10.1f}"
            )
    print("(microseconds per chain, p10 of 60)")
    print("weights one decode step reads, CPU grid networks (full size):")
    for name, config in _grids.model_presets("full", "cpu").items():
        weight_bytes = float(forward_cost(config.to_spec(), 1, 1, 32).weight_bytes)
        print(f"  {name:<12s} {weight_bytes / 1e6:6.1f} MB")


if __name__ == "__main__":
    main()
