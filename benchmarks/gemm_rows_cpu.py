"""What a weight matmul of 1, 2, 4, ... rows costs on this device (XLA's GEMV against its GEMM).

`HardwareSpec.gemm_weight_passes` prices a matmul of two or more rows as reading its
weights that many extra times: on a CPU, XLA emits its own matrix-vector kernel for one
row but calls Eigen's GEMM for more, which copies ("packs") panels of the weights on every
call. `specsim calibrate` fits the count on the measured grid. This script checks it
independently: it times ``x @ w`` for the weight shapes of the CPU grid's networks (their
LM heads and MLP matrices) and one larger matrix, at 1 to 64 rows, with the single-threaded
XLA that `specsim validate` measures with.

    python benchmarks/gemm_rows_cpu.py

Prints, per shape, the lower-decile time of each row count in microseconds, and
``(t(2 rows) - t(1 row) - c) / t(1 row)``, with ``c`` the second row's FLOPs at the large
matmul's rate: the extra passes over the weights that two rows cost if the rest of their
extra time is weight traffic (one GEMV streams the weights once in ``t(1 row)``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from attention_cpu import _p10_s  # (this folder is on sys.path when run as a script)

from specsim.measure import configure_measurement

# As `specsim validate` times its passes: single-threaded XLA (before JAX starts).
configure_measurement()

ROWS = (1, 2, 4, 5, 8, 16, 64)
# (d_in, d_out): the grid's LM heads and MLP matrices (specsim.measure's CPU networks),
# and one matrix of 16.8 MB in float32.
SHAPES = ((192, 2048), (256, 4096), (384, 1536), (384, 4096), (512, 8192), (2048, 2048))


def main() -> None:
    matmul = jax.jit(jnp.matmul)
    n = 1024
    a = jnp.ones((n, n), jnp.float32)
    rate_flops_per_s = 2 * n**3 / _p10_s(matmul, a, a, repeats=50)
    print(
        f"device: {jax.devices()[0].device_kind}; fp32 matmul {rate_flops_per_s / 1e9:.0f} GFLOP/s"
    )
    print("d_in x d_out   MB  " + "".join(f"{m:>9d}" for m in ROWS) + "  extra passes")
    for d_in, d_out in SHAPES:
        w = jnp.full((d_in, d_out), 0.01, jnp.float32)
        times_s = [_p10_s(matmul, jnp.ones((m, d_in), jnp.float32), w, repeats=200) for m in ROWS]
        second_row_s = 2 * d_in * d_out / rate_flops_per_s
        extra_passes = (times_s[1] - times_s[0] - second_row_s) / times_s[0]
        print(
            f"{d_in:4d} x {d_out:<5d} {4 * d_in * d_out / 1e6:5.1f}  "
            + "".join(f"{t * 1e6:9.1f}" for t in times_s)
            + f"  {extra_passes:5.2f}"
        )
    print("(microseconds per call, p10 of 200)")


if __name__ == "__main__":
    main()
