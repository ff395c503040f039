"""The serving engine: continuous-batching limits and the speculative-decoding policy.

`EngineConfig` holds what vLLM and SGLang expose as scheduler limits: the most sequences
resident at once (``max_num_seqs``), the most tokens one forward pass processes
(``max_num_batched_tokens``, decodes and prefill chunks together), the chunked-prefill
budget, and the KV cache as ``kv_blocks`` paged blocks of ``block_size`` tokens. Requests
are admitted first come, first served; when a running sequence needs a block and none is
free, the most recently admitted sequence is preempted and later recomputed (vLLM's
default, ``PreemptionMode.RECOMPUTE``).

`SpecPolicy` says how much to speculate at each step: a speculator (any of
``specsim.speculators`` or a draft `TransformerSpec`, or ``None``) and a lookahead per
*batch bucket* (the bucket of the step's decode batch size). ``off``, ``fixed``, ``fixed
up to a batch size`` and per-bucket tables are all this one form.

References:
    vLLM ``vllm/config/scheduler.py`` (``max_num_seqs``, ``max_num_batched_tokens``,
    ``long_prefill_token_threshold``), ``vllm/v1/core/sched/scheduler.py`` (FCFS, recompute
    preemption of the last running request); https://github.com/vllm-project/vllm
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import struct

from .. import _saturation
from .._cost import memory_footprint
from .._deployment import Deployment
from .._numerics import real_number
from ..speculators import _protocol as _speculators

__all__ = ["DEFAULT_BATCH_BUCKETS", "EngineConfig", "SpecPolicy", "kv_bytes_per_token"]

# Upper bounds of the decode-batch buckets (the last bucket is everything above 256).
# Ten buckets: powers of two, as engines tabulate per-batch settings (vLLM's CUDA-graph
# capture sizes are 1, 2, 4, 8, then multiples of 8).
DEFAULT_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


@struct.dataclass
class EngineConfig:
    """Continuous-batching limits of one engine replica.

    Numbers are pytree leaves (the steady-state model may trace them); the discrete-event
    simulator reads them as whole numbers. ``chunked_prefill`` is static.

    Attributes:
        max_num_seqs: most sequences resident (decoding or prefilling) at once.
        max_num_batched_tokens: most tokens in one forward pass (decode tokens, verified
            draft tokens and prefill chunks together).
        prefill_chunk_tokens: most prompt tokens one step prefills, over all sequences (the
            chunked-prefill budget; <= ``max_num_batched_tokens``).
        block_size: tokens per KV-cache block.
        kv_blocks: KV-cache blocks; ``None`` until `EngineConfig.resolve` derives it from
            the deployment's memory.
        memory_fraction: fraction of the HBM left after the weights (target and
            speculator) that holds the KV cache, in (0, 1].
        chunked_prefill: whether a prompt may be split over steps (static). Without it a
            prompt is prefilled whole in one step, so it must fit the budget.

    Examples:
        >>> import specsim
        >>> d = specsim.Deployment.create("llama-3-8b", "h100", acceptance=0.7)
        >>> engine = EngineConfig.create().resolve(d)
        >>> engine.kv_blocks  # (80 GB - 16.1 GB) x 0.9 / (128 KiB x 16 tokens)
        27440
    """

    max_num_seqs: Any = 256
    max_num_batched_tokens: Any = 8192
    prefill_chunk_tokens: Any = 8192
    block_size: Any = 16
    kv_blocks: Any = None
    memory_fraction: Any = 0.9
    chunked_prefill: bool = struct.field(pytree_node=False, default=True)

    @classmethod
    def create(
        cls,
        max_num_seqs: int = 256,
        max_num_batched_tokens: int = 8192,
        prefill_chunk_tokens: int | None = None,
        block_size: int = 16,
        kv_blocks: int | None = None,
        memory_fraction: float = 0.9,
        chunked_prefill: bool = True,
    ) -> EngineConfig:
        """Validated limits (``ValueError`` naming the field and its valid range).

        ``prefill_chunk_tokens`` defaults to ``max_num_batched_tokens``.
        """
        if prefill_chunk_tokens is None:
            prefill_chunk_tokens = max_num_batched_tokens
        for name, value in (
            ("max_num_seqs", max_num_seqs),
            ("max_num_batched_tokens", max_num_batched_tokens),
            ("prefill_chunk_tokens", prefill_chunk_tokens),
            ("block_size", block_size),
        ):
            _check_whole(name, value)
        if kv_blocks is not None:
            _check_whole("kv_blocks", kv_blocks)
        if prefill_chunk_tokens > max_num_batched_tokens:
            raise ValueError(
                f"EngineConfig.prefill_chunk_tokens must be <= max_num_batched_tokens "
                f"({max_num_batched_tokens}), got {prefill_chunk_tokens}"
            )
        fraction = real_number(memory_fraction)
        if fraction is None or not 0 < fraction <= 1:
            raise ValueError(
                f"EngineConfig.memory_fraction must be in (0, 1], got {memory_fraction!r}"
            )
        if not isinstance(chunked_prefill, bool):
            raise ValueError(
                f"EngineConfig.chunked_prefill must be True or False, got {chunked_prefill!r}"
            )
        return cls(
            max_num_seqs=int(max_num_seqs),
            max_num_batched_tokens=int(max_num_batched_tokens),
            prefill_chunk_tokens=int(prefill_chunk_tokens),
            block_size=int(block_size),
            kv_blocks=None if kv_blocks is None else int(kv_blocks),
            memory_fraction=fraction,
            chunked_prefill=chunked_prefill,
        )

    def resolve(self, deployment: Deployment, policy: SpecPolicy | None = None) -> EngineConfig:
        """These limits with ``kv_blocks`` derived from memory where it is ``None``.

        Blocks = ``floor(memory_fraction x (HBM - weights) / (block_size x KV bytes per
        token))`` per chip, where the weights are the target's (split over ``tp``) plus the
        speculator's, and the KV bytes per token are the target's (``tp``-split) plus the
        speculator's cache per token.

        Raises:
            ValueError: the weights leave no room for a single block.
        """
        if self.kv_blocks is not None:
            return self
        blocks = kv_capacity_blocks(deployment, self, None if policy is None else policy.speculator)
        if blocks < 1:
            raise ValueError(
                "the weights leave no HBM for the KV cache: "
                f"{float(deployment.hardware.hbm_capacity_bytes) / 1e9:.1f} GB per chip at "
                f"tp={float(deployment.tp):g}; use more chips (tp) or a bigger chip"
            )
        return self.replace(kv_blocks=blocks)


def kv_bytes_per_token(deployment: Deployment, speculator=None):
    """KV-cache bytes one token occupies per chip: the target's plus the speculator's.

    The target's is ``specsim._saturation.kv_bytes_per_token`` (shared with the saturated
    throughput model): under tensor parallelism each chip holds ``max(n_kv_heads, tp) / tp``
    of the KV heads (engines replicate heads when ``tp`` exceeds their number), and a
    multi-head latent attention cache (one latent per token, no heads) is held whole by
    every chip.

    Examples:
        >>> import specsim
        >>> d = specsim.Deployment.create("llama-3-8b", "gb200", acceptance=0.7, tp=16.0)
        >>> float(kv_bytes_per_token(d))  # 8 KV heads on 16 chips: one head each
        16384.0
    """
    target = _saturation.kv_bytes_per_token(deployment.target, deployment.tp)
    if speculator is None:
        return target
    one = _speculators.memory_bytes(speculator, deployment, 1.0, 1.0)
    none = _speculators.memory_bytes(speculator, deployment, 1.0, 0.0)
    return target + (one - none)


def kv_capacity_blocks(deployment: Deployment, engine: EngineConfig, speculator=None) -> int:
    """Whole KV-cache blocks that fit beside the weights (concrete inputs)."""
    d = deployment
    weights = memory_footprint(d.target, 0.0, 0.0).weight_bytes / d.tp
    if speculator is not None:
        weights = weights + _speculators.memory_bytes(speculator, d, 0.0, 0.0)
    free = float(d.hardware.hbm_capacity_bytes) - float(weights)
    per_block = float(kv_bytes_per_token(d, speculator)) * float(engine.block_size)
    return max(math.floor(free * float(engine.memory_fraction) / per_block), 0)


@struct.dataclass
class SpecPolicy:
    """How much to speculate at each engine step.

    The step's decode batch size ``b`` falls in bucket ``i``, the first with
    ``b <= bucket_max_batch[i]`` (or the last, open, bucket); the step drafts
    ``lookahead[i]`` tokens per decoding sequence (0: plain decoding). The discrete-event
    simulator rounds it to a whole number; the steady-state model may keep it real.

    Attributes:
        speculator: a speculator of ``specsim.speculators``, a draft `TransformerSpec`,
            or ``None`` (no speculation).
        lookahead: draft tokens per bucket, shape ``(len(bucket_max_batch) + 1,)``
            (traced, >= 0).
        bucket_max_batch: upper batch bound of each bucket but the last (static,
            increasing whole numbers).

    Examples:
        >>> from specsim.speculators import Ngram
        >>> policy = SpecPolicy.fixed(Ngram.create(0.6), lookahead=4, max_batch=32)
        >>> [int(policy.lookahead_at(b)) for b in (1, 32, 33, 300)]
        [4, 4, 0, 0]
        >>> SpecPolicy.off().max_lookahead
        0
    """

    speculator: Any
    lookahead: Any
    bucket_max_batch: tuple = struct.field(pytree_node=False, default=DEFAULT_BATCH_BUCKETS)

    @classmethod
    def off(cls, bucket_max_batch: tuple = DEFAULT_BATCH_BUCKETS) -> SpecPolicy:
        """No speculation at any batch size."""
        buckets = _check_buckets(bucket_max_batch)
        return cls(None, jnp.zeros(len(buckets) + 1, jnp.float32), buckets)

    @classmethod
    def fixed(
        cls,
        speculator,
        lookahead: float,
        max_batch: float | None = None,
        bucket_max_batch: tuple = DEFAULT_BATCH_BUCKETS,
    ) -> SpecPolicy:
        """``lookahead`` tokens at every batch size, or only up to ``max_batch`` (which
        must be a bucket bound, or ``None`` for no limit)."""
        buckets = _check_buckets(bucket_max_batch)
        on = np.ones(len(buckets) + 1)
        if max_batch is not None:
            if max_batch not in buckets:
                raise ValueError(
                    f"max_batch must be one of the bucket bounds {list(buckets)}, got {max_batch!r}"
                )
            on[buckets.index(max_batch) + 1 :] = 0.0
        return cls.per_bucket(speculator, np.asarray(lookahead, np.float64) * on, buckets)

    @classmethod
    def per_bucket(
        cls, speculator, lookahead, bucket_max_batch: tuple = DEFAULT_BATCH_BUCKETS
    ) -> SpecPolicy:
        """A lookahead for each bucket (``len(bucket_max_batch) + 1`` values >= 0)."""
        buckets = _check_buckets(bucket_max_batch)
        values = np.asarray(lookahead, np.float64)
        if values.shape != (len(buckets) + 1,):
            raise ValueError(
                f"lookahead needs one value per batch bucket ({len(buckets) + 1} for bounds "
                f"{list(buckets)} and the open last bucket), got shape {values.shape}"
            )
        if not np.all(np.isfinite(values) & (values >= 0)):
            raise ValueError(f"lookahead must be finite and >= 0, got {values.tolist()}")
        if speculator is None and np.any(values > 0):
            raise ValueError("a lookahead > 0 needs a speculator (got None)")
        if speculator is not None:
            _speculators.implementation(speculator)  # ValueError for an unknown type
        return cls(speculator, jnp.asarray(values, jnp.float32), buckets)

    @property
    def max_lookahead(self) -> int:
        """The largest whole lookahead of any bucket (concrete policies)."""
        if self.speculator is None:
            return 0
        return int(np.max(np.rint(np.asarray(self.lookahead))))

    def bucket_of(self, batch):
        """Bucket index of a decode batch size (NumPy or JAX, any shape)."""
        bounds = np.asarray(self.bucket_max_batch, np.float64)
        if isinstance(batch, int | float | np.ndarray | np.number):
            return np.searchsorted(bounds, batch, side="left")
        return jnp.searchsorted(jnp.asarray(bounds, jnp.float32), batch, side="left")

    def lookahead_at(self, batch):
        """The lookahead of the bucket of ``batch`` (0 without a speculator)."""
        if self.speculator is None:
            return jnp.zeros_like(jnp.asarray(batch, jnp.float32))
        return jnp.asarray(self.lookahead)[self.bucket_of(batch)]


def _check_whole(name: str, value) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float | np.integer | np.floating)
        or not math.isfinite(value)
        or value < 1
        or not float(value).is_integer()
    ):
        raise ValueError(f"EngineConfig.{name} must be a whole number >= 1, got {value!r}")


def _check_buckets(bucket_max_batch) -> tuple:
    try:
        buckets = tuple(int(b) for b in bucket_max_batch)
    except (TypeError, ValueError):
        raise ValueError(
            f"bucket_max_batch must be increasing whole numbers >= 1, got {bucket_max_batch!r}"
        ) from None
    if (
        not buckets
        or buckets[0] < 1
        or any(b != float(v) for b, v in zip(buckets, bucket_max_batch, strict=True))
        or any(a >= b for a, b in itertools.pairwise(buckets))
    ):
        raise ValueError(
            f"bucket_max_batch must be increasing whole numbers >= 1, got {bucket_max_batch!r}"
        )
    return buckets
