"""`RuntimeProfile`: the software overheads of an inference stack, as a pytree.

The same chip runs the same model at different speeds under different software: eager
PyTorch launches every operator from Python, CUDA graphs replay a captured step, a
serving engine fuses kernels, uses its own all-reduce and does host work for every
sequence it schedules. A profile bundles those costs, so a prediction names the stack
it is about (``--runtime``) instead of folding them into the chip's efficiencies.

Every number is a traced leaf (SI units), so profiles stack into vmapped grids and
``specsim calibrate`` can fit them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp
from flax import struct

from .._numerics import concrete, where

MICRO = 1e-6

# Datasheet key -> (field, SI factor); "hardware" as a value takes the chip's own number.
DATASHEET_KEYS = {
    "kernel_launch_us": ("kernel_launch_s", MICRO),
    "kernels_per_layer": ("kernels_per_layer", 1.0),
    "kernels_per_forward": ("kernels_per_forward", 1.0),
    "step_overhead_us": ("step_overhead_s", MICRO),
    "sequence_overhead_us": ("sequence_overhead_s", MICRO),
    "speculation_overhead_us": ("speculation_overhead_s", MICRO),
    "elementwise_passes": ("elementwise_passes", 1.0),
    "sampling_bytes_per_logit": ("sampling_bytes_per_logit", 1.0),
    "allreduce_latency_us": ("allreduce_latency_s", MICRO),
    "allreduce_bandwidth_fraction": ("allreduce_bandwidth_fraction", 1.0),
    "ring_allreduce_latency_us": ("ring_allreduce_latency_s", MICRO),
    "lm_head_sharding": ("lm_head_sharding", 1.0),
    "gqa_kv_read_sharing": ("gqa_kv_read_sharing", 1.0),
}
# Fields that may say "hardware": the chip's catalogue value stands for the stack.
FROM_HARDWARE = {"kernel_launch_s": "kernel_launch_s", "step_overhead_s": "step_overhead_s"}
METADATA_KEYS = ("aliases", "description", "sources", "notes")


@struct.dataclass
class RuntimeProfile:
    """Overheads of one inference software stack (SI units; every field a traced leaf).

    Attributes:
        kernel_launch_s: fixed cost of each kernel beyond its roofline time (launch gap,
            ramp-up and tail of a small kernel), s.
        kernels_per_layer: kernels one transformer block launches.
        kernels_per_forward: kernels outside the blocks (embedding, final norm, LM head,
            sampling).
        step_overhead_s: fixed host and framework time per forward pass, s.
        sequence_overhead_s: host time per sequence per forward pass (scheduling, sampling
            bookkeeping, detokenisation), s: grows with the batch.
        speculation_overhead_s: host time per speculative iteration (acceptance, cache
            rollback, bookkeeping), s.
        elementwise_passes: how many more times the non-matmul kernels (norms, rotary
            embedding, activation, residual adds) read and write the activations that the
            matmuls read and write: 0 if they are all fused into matmul epilogues.
        sampling_bytes_per_logit: HBM bytes moved per logit by the logits and sampling
            kernels (an fp32 logit written and read back is 8).
        allreduce_latency_s: fixed cost of the runtime's latency-optimised all-reduce
            (one-shot / two-shot kernels, or the collective library's small-message path:
            launch, synchronisation, handshake), s.
        allreduce_bandwidth_fraction: the fraction of the interconnect's achievable
            bandwidth that kernel reaches (in (0, 1]).
        ring_allreduce_latency_s: fixed cost of the bandwidth-optimal ring all-reduce
            (NCCL), used for large messages, s.
        lm_head_sharding: 1 if tensor parallelism splits the LM head's vocabulary over the
            chips, 0 if every chip holds and reads the whole head.
        gqa_kv_read_sharing: 1 if the query heads of a grouped-query group share one read
            of their KV head's cache (FlashDecoding-style and XQA kernels), 0 if each
            query head reads it again (one thread block per query head, as in
            TensorRT-LLM's masked multi-head attention kernel): a decode step reads the
            cache ``1 + (1 - sharing) * (n_heads / n_kv_heads - 1)`` times. Moot for
            multi-head attention and latent (MLA) caches. It applies to every pass that
            reads a cache (decode, verification, prefill after a cached prefix), though a
            stack may run multi-token passes through another kernel.

    Examples:
        >>> from specsim import runtime
        >>> profile = runtime.get("trtllm", "h100")
        >>> round(float(profile.allreduce_latency_s) * 1e6, 1)
        5.0
    """

    kernel_launch_s: Any
    kernels_per_layer: Any
    kernels_per_forward: Any
    step_overhead_s: Any
    sequence_overhead_s: Any
    speculation_overhead_s: Any
    elementwise_passes: Any
    sampling_bytes_per_logit: Any
    allreduce_latency_s: Any
    allreduce_bandwidth_fraction: Any
    ring_allreduce_latency_s: Any
    lm_head_sharding: Any
    gqa_kv_read_sharing: Any

    @classmethod
    def from_datasheet(
        cls, entry: Mapping[str, Any], hardware=None, name: str = "runtime"
    ) -> RuntimeProfile:
        """Builds a profile from datasheet units (the ``runtime/catalog.toml`` schema).

        Args:
            entry: keys of ``DATASHEET_KEYS`` (``kernel_launch_us``, ...), all required;
                ``kernel_launch_us`` and ``step_overhead_us`` may be ``"hardware"``.
            hardware: the `HardwareSpec` whose overheads ``"hardware"`` stands for.
            name: names the entry in messages.

        Raises:
            ValueError: a missing or unknown key, a value that is not a non-negative
                number, or ``"hardware"`` without a hardware spec.
        """
        unknown = sorted(set(entry) - set(DATASHEET_KEYS) - set(METADATA_KEYS))
        if unknown:
            raise ValueError(
                f"{name}: unknown runtime keys {unknown}; valid: {', '.join(DATASHEET_KEYS)}"
            )
        values = {}
        for key, (field, factor) in DATASHEET_KEYS.items():
            if key not in entry:
                raise ValueError(f"{name}: missing runtime key {key!r}")
            value = entry[key]
            if value == "hardware" and field in FROM_HARDWARE:
                if hardware is None:
                    raise ValueError(f"{name}: {key} = 'hardware' needs a hardware spec")
                values[field] = getattr(hardware, FROM_HARDWARE[field])
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{name}: {key} must be a number, got {value!r}")
            values[field] = float(value) * factor
        return cls(**values).validate(name)

    def kv_read_multiplier(self, model):
        """How many times a pass of ``model`` (a `TransformerSpec`) reads the KV cache it
        attends to: ``1 + (1 - gqa_kv_read_sharing) * (n_heads / n_kv_heads - 1)``.

        1 for multi-head attention, for latent (MLA) caches and wherever the profile
        shares a grouped-query head's reads.

        Examples:
            >>> from specsim import models, runtime
            >>> mmha = runtime.get("trtllm-mmha", "h100")
            >>> float(mmha.kv_read_multiplier(models.get("llama-2-70b")))
            8.0
            >>> float(mmha.kv_read_multiplier(models.get("llama-2-7b")))
            1.0
        """
        extra_group_reads = jnp.maximum(model.n_heads / model.n_kv_heads - 1.0, 0.0)
        extra_group_reads = where(model.kv_lora_rank > 0, 0.0, extra_group_reads)
        return 1.0 + (1.0 - self.gqa_kv_read_sharing) * extra_group_reads

    def validate(self, name: str = "runtime") -> RuntimeProfile:
        """Checks concrete leaves: finite and >= 0 (``ValueError``)."""
        for field in self.__dataclass_fields__:
            array = concrete(getattr(self, field))
            for v in [] if array is None else array.ravel().tolist():
                if not (math.isfinite(v) and v >= 0):
                    raise ValueError(f"{name}: {field} must be finite and >= 0, got {v}")
                if field in ("lm_head_sharding", "gqa_kv_read_sharing") and v > 1:
                    raise ValueError(f"{name}: {field} must be in [0, 1], got {v}")
                if field == "allreduce_bandwidth_fraction" and not 0 < v <= 1:
                    raise ValueError(
                        f"{name}: allreduce_bandwidth_fraction must be in (0, 1], got {v}"
                    )
        return self
