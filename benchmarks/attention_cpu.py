"""How fast XLA runs decode attention on this device, next to its matmul rate.

`specsim calibrate` fits attention's FLOPs and its KV-cache reads at separate fractions
of the matmul roofline (``attention_compute_efficiency`` and ``attention_efficiency``).
On a CPU the fit puts the FLOPs at a few percent of the matmul rate. This script checks
that independently: it times the attention of one decode layer as `specsim.measure`'s
networks compute it (scores einsum, softmax, weighted-values einsum, one per sequence and
KV head) for the CPU grid's two shapes of head, and a large matmul for the peak.

    python benchmarks/attention_cpu.py

Prints, per batch and cached length, microseconds per layer, GFLOP/s, GB/s of KV read,
and the FLOP rate as a fraction of the large matmul's.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from specsim.measure import configure_measurement

# As `specsim validate` times its passes: single-threaded XLA (before JAX starts).
configure_measurement()


def _p10_s(f, *args, repeats: int = 300) -> float:
    jax.block_until_ready(f(*args))
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(f(*args))
        samples.append(time.perf_counter() - start)
    return float(np.percentile(samples, 10))


@jax.jit
def _attention(q, keys, values):
    scores = jnp.einsum("bkqd,bksd->bkqs", q, keys) / jnp.sqrt(jnp.float32(q.shape[-1]))
    return jnp.einsum("bkqs,bksd->bkqd", jax.nn.softmax(scores, axis=-1), values)


@jax.jit
def _touch(q, keys, values):  # the dispatch and synchronisation a call costs on its own
    return q + 1.0


def main() -> None:
    n = 1024
    a = jnp.ones((n, n), jnp.float32)
    matmul_flops_per_s = 2 * n**3 / _p10_s(jax.jit(jnp.matmul), a, a, repeats=50)
    print(
        f"device: {jax.devices()[0].device_kind}; "
        f"fp32 matmul {matmul_flops_per_s / 1e9:.0f} GFLOP/s"
    )
    head_dim = 64
    for label, kv_heads, groups in (("MHA, 6 heads", 6, 1), ("GQA, 1 KV head x 3", 1, 3)):
        for batch in (1, 4, 16):
            for cached in (32, 128, 512):
                q = jnp.ones((batch, kv_heads, groups, head_dim), jnp.float32)
                kv = jnp.ones((batch, kv_heads, cached, head_dim), jnp.float32)
                seconds = _p10_s(_attention, q, kv, kv) - _p10_s(_touch, q, kv, kv)
                flops = 4 * batch * kv_heads * groups * cached * head_dim
                kv_bytes = 2 * batch * kv_heads * cached * head_dim * 4
                print(
                    f"{label:18s} batch {batch:2d} cached {cached:3d}: "
                    f"{seconds * 1e6:7.1f} us/layer "
                    f"{flops / seconds / 1e9:6.1f} GFLOP/s {kv_bytes / seconds / 1e9:6.1f} GB/s "
                    f"({100 * flops / seconds / matmul_flops_per_s:4.1f}% of the matmul rate)"
                )


if __name__ == "__main__":
    main()
