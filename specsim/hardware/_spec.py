"""`HardwareSpec`: an accelerator's physical numbers in SI units, as a pytree."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

from flax import struct

from .._numerics import concrete_values, remember_valid, validated_before
from . import _fields
from ._fields import GIB as GIB
from ._fields import GIGA as GIGA
from ._fields import MICRO as MICRO
from ._fields import TERA as TERA
from ._toml import read_toml_entry


@struct.dataclass
class HardwareSpec:
    """One accelerator chip (SI units; every field is a traced leaf).

    Peak rates are dense (no structured sparsity). A dtype the chip lacks falls
    back to the next slower one it has (fp8/int8 -> bf16; fp32 -> bf16 / 8 where
    no fp32 peak is published, as on TPUs), so every peak is a finite number and
    specs of different chips can be stacked into one vmapped grid. Display names
    live in the catalogue key, not here.

    Attributes:
        fp32_flops_per_s, bf16_flops_per_s, fp8_flops_per_s, int8_flops_per_s:
            dense peak rate per compute dtype, FLOP/s (int8: op/s).
        hbm_bytes_per_s: peak HBM bandwidth, bytes/s.
        hbm_capacity_bytes: HBM capacity, bytes.
        interconnect_bytes_per_s: scale-up chip-to-chip bandwidth per direction, bytes/s.
        interconnect_latency_s: latency of one collective hop, s.
        compute_efficiency: achievable fraction of peak FLOP/s (large GEMM).
        memory_efficiency: achievable fraction of peak HBM bandwidth.
        kernel_launch_s: overhead per kernel launch, s.
        step_overhead_s: fixed overhead per forward pass (host, scheduler), s.
        attention_efficiency: the fraction of the matmul roofline (peak x
            ``compute_efficiency``, bandwidth x ``memory_efficiency``) that attention
            kernels reach, in (0, 1]: of its bandwidth for the KV cache's bytes, and of its
            FLOP rate too unless ``attention_compute_efficiency`` says otherwise. 1 (the
            catalogue's value) treats attention like a weight GEMM/GEMV.
        fp4_flops_per_s: dense FP4 (NVFP4 / MXFP4) peak, FLOP/s (the fp8 peak where the chip
            has no FP4 units).
        fp8_compute_efficiency, int8_compute_efficiency, fp4_compute_efficiency: achievable
            fraction of that dtype's peak (large GEMM); ``compute_efficiency`` is bf16's.
        int8_dequant_efficiency, int4_dequant_efficiency: fraction of ``memory_efficiency``
            that a weight-only quantised matmul reaches while it dequantises 8-bit or 4-bit
            weights to its compute dtype (1 = streams as fast as a bf16 GEMV).
        matmul_tile_tokens: rows of the smallest matmul tile (tensor-core / MXU tile): a
            matmul over fewer tokens computes a full tile.
        interconnect_efficiency: achievable fraction of ``interconnect_bytes_per_s`` in a
            large all-reduce (NCCL bus bandwidth over the link rate).
        interconnect_switched: 1 if every chip reaches every other in one hop (NVSwitch,
            a PCIe switch, Infinity Fabric's full mesh), so one-shot and two-shot
            all-reduces exist; 0 for a torus of neighbour links (TPU ICI), where an
            all-reduce walks the ring.
        attention_compute_efficiency: the fraction of the matmul FLOP rate (peak x
            ``compute_efficiency``) that attention's FLOPs (scores and weighted values)
            reach, in (0, 1]; ``None`` (the default, and what an entry without the key
            loads as): ``attention_efficiency``, whatever it is replaced by. Measured
            CPUs, whose XLA attention is a chain of small batched matmuls (one per sequence
            and KV head) and a softmax, reach a few percent while streaming the KV cache at
            most of their bandwidth (``specsim calibrate`` fits both).
        gemm_weight_passes: extra passes over the weights, >= 0, that a matmul of two or
            more rows makes beyond the one pass of a matrix-vector product (GEMV), ramped
            in linearly between one row and two; 0 (the default) on GPUs and TPUs. On a
            CPU, XLA emits its own GEMV for one row but calls Eigen's GEMM for more, which
            copies ("packs") the weight panels on every call: a decode pass at batch 1
            streams the weights once, a verification pass of a few tokens reads them again
            for the copy. ``specsim calibrate`` fits it: 0.4-1.2 passes on a 2-core AMD
            EPYC host (32 MiB of cache), none on a Xeon with 480 MiB.
        interconnect_ll_latency_s: per-step latency, s, of NCCL's low-latency (LL)
            protocol: each 8-byte store carries 4 bytes of data and a flag, so no
            handshake per chunk but a ring at half the bus bandwidth. NCCL picks it for
            small messages; the one- and two-shot kernels take the same step. ``None``
            (what a spec built without it holds) follows ``interconnect_latency_s``; a
            datasheet entry without the key copies it when loaded, and from then on the
            two are independent (replacing one leaves the other).
        interconnect_domain_chips: chips the interconnect joins (an NVLink/NVSwitch node
            or rack, a TPU pod over ICI, one PCIe host): the largest tensor-parallel group
            its numbers describe. A larger ``tp`` would cross a scale-out network that
            specsim does not model, and is refused (``specsim.feasibility``). ``inf`` (the
            default): no limit.
        roofline_sharpness: how far a kernel's compute and memory traffic overlap: p of
            the roofline's p-norm max ``(compute**p + memory**p)**(1/p)``
            (``specsim.hardware.smooth_max``); p = 1 is their sum, p < 1 mutual
            interference. ``None`` (the catalogue's value, ``inf`` in a file) is the hard
            max, perfect overlap: no leaf, so the exact roofline costs no powers, and
            specs with and without a sharpness have different pytree structures (give
            ``inf`` to stack them). ``specsim calibrate`` fits it; ``smooth=`` of the
            predictions smooths further.

    ``specsim.hardware.FIELDS`` has one row per field: datasheet key, unit, valid range
    and label.

    Examples:
        >>> from specsim import hardware
        >>> h100 = hardware.get("h100")
        >>> float(h100.hbm_bytes_per_s) / 1e12
        3.35
    """

    fp32_flops_per_s: Any
    bf16_flops_per_s: Any
    fp8_flops_per_s: Any
    int8_flops_per_s: Any
    hbm_bytes_per_s: Any
    hbm_capacity_bytes: Any
    interconnect_bytes_per_s: Any
    interconnect_latency_s: Any
    compute_efficiency: Any
    memory_efficiency: Any
    kernel_launch_s: Any
    step_overhead_s: Any
    attention_efficiency: Any = 1.0
    roofline_sharpness: Any = None
    fp4_flops_per_s: Any = None
    fp8_compute_efficiency: Any = None
    int8_compute_efficiency: Any = None
    fp4_compute_efficiency: Any = None
    int8_dequant_efficiency: Any = 1.0
    int4_dequant_efficiency: Any = 1.0
    matmul_tile_tokens: Any = 1.0
    interconnect_efficiency: Any = 1.0
    interconnect_switched: Any = 1.0
    attention_compute_efficiency: Any = None
    gemm_weight_passes: Any = 0.0
    interconnect_ll_latency_s: Any = None
    interconnect_domain_chips: Any = math.inf

    @classmethod
    def from_datasheet(cls, entry: Mapping[str, Any], name: str = "hardware") -> HardwareSpec:
        """Builds a spec from datasheet units (the catalogue/TOML schema).

        Keys (``specsim.hardware.FIELDS``): ``bf16_tflops``, ``hbm_gb`` or ``hbm_gib``,
        ``hbm_tb_per_s``, ``interconnect_gb_per_s``, ``interconnect_latency_us``,
        ``compute_efficiency``, ``memory_efficiency``, ``kernel_launch_us``,
        ``step_overhead_us`` (required); ``fp32_tflops``, ``fp8_tflops``, ``int8_tops``,
        ``attention_efficiency`` (default 1), ``roofline_sharpness`` (default inf, the hard
        roofline, held as ``None``), the per-dtype kernel fields ``fp4_tflops`` (default the
        fp8 rate), ``fp8/int8/fp4_compute_efficiency`` (default ``compute_efficiency``;
        fp4's: fp8's), ``int8/int4_dequant_efficiency`` (default 1),
        ``matmul_tile_tokens`` (default 1), ``interconnect_efficiency`` (default 1),
        ``interconnect_switched`` (default 1), ``attention_compute_efficiency`` (default
        ``attention_efficiency``), ``gemm_weight_passes`` (default 0),
        ``interconnect_ll_latency_us`` (default ``interconnect_latency_us``) and
        ``interconnect_domain_chips`` (default inf, no limit); and facts that are
        not numbers of the model (``aliases``, ``kind``, ``vendor``, ``year``, ``source``,
        ``sources``, ``notes``, ``calibration``).

        Args:
            entry: the datasheet entry.
            name: names the entry in messages (e.g. ``"<file>: <entry>"``).

        Raises:
            ValueError: an unknown key (the message names the closest valid ones), a
                missing required key, or a value that is not a valid number.

        Examples:
            >>> from specsim import hardware
            >>> spec = HardwareSpec.from_datasheet({**hardware.entry("h100"), "hbm_gb": 96})
            >>> float(spec.hbm_capacity_bytes) / 1e9
            96.0
        """
        values = _fields.to_si(entry, name)
        if values["roofline_sharpness"] == math.inf:
            values["roofline_sharpness"] = None  # the hard max: no leaf
        return cls(**values).validate(name)

    def to_datasheet(self) -> dict[str, float]:
        """The spec in datasheet units (the inverse of `from_datasheet`; concrete leaves).

        Examples:
            >>> from specsim import hardware
            >>> hardware.get("v5e").to_datasheet()["hbm_gb"]
            16.0
        """
        return _fields.to_datasheet(self)

    @classmethod
    def from_toml(cls, path: str | os.PathLike) -> HardwareSpec:
        """Loads a user-defined spec from a TOML file in datasheet units.

        The file holds the keys of ``from_datasheet`` at top level, or one
        ``[hardware."Name"]`` table (the format ``specsim calibrate`` writes).
        A top-level ``base = "h100"`` starts from a catalogue entry and overrides
        only the keys given.

        Raises:
            ValueError: unreadable file, malformed TOML, unknown, missing or invalid keys
                (the message names the file and the entry).
        """
        entry, name = read_toml_entry(path)
        return cls.from_datasheet(entry, f"{os.fspath(path)}: {name}")

    def validate(self, name: str = "hardware") -> HardwareSpec:
        """Checks concrete leaves against ``FIELDS`` (positive, finite, fractions in (0, 1]).

        Traced leaves are skipped. Returns ``self``.

        Raises:
            ValueError: ``<name>: <field> <value>: out of range; valid: <range>``.
        """
        if validated_before(self):  # plain floats, found valid before: cannot have changed
            return self
        values, leaves = {}, []
        for field in _fields.FIELDS:
            value = getattr(self, field.name)
            if value is not None:
                values[field.name] = concrete_values(value)  # nothing for a tracer
                leaves.append(value)
        _fields.check_values(values, name)
        remember_valid(self, leaves)
        return self

    def peak_flops_per_s(self, compute_dtype: str):
        """Dense peak FLOP/s of ``compute_dtype``: fp32, bf16, fp8, int8 or fp4."""
        if compute_dtype == "fp4" and self.fp4_flops_per_s is None:
            return self.fp8_flops_per_s
        try:
            return getattr(self, f"{compute_dtype}_flops_per_s")
        except AttributeError:
            raise ValueError(
                f"unknown compute dtype {compute_dtype!r}; valid: fp32, bf16, fp8, int8, fp4"
            ) from None

    def attention_compute_fraction(self):
        """``attention_compute_efficiency``, or ``attention_efficiency`` where it is ``None``."""
        value = self.attention_compute_efficiency
        return self.attention_efficiency if value is None else value

    def ll_latency_s(self):
        """``interconnect_ll_latency_s``, or ``interconnect_latency_s`` where it is ``None``."""
        value = self.interconnect_ll_latency_s
        return self.interconnect_latency_s if value is None else value

    def domain_chips(self):
        """``interconnect_domain_chips``, or ``inf`` (no limit) where it is ``None``."""
        value = self.interconnect_domain_chips
        return math.inf if value is None else value

    def compute_efficiency_for(self, compute_dtype: str):
        """Achievable fraction of ``compute_dtype``'s peak (fp32 and bf16 share one)."""
        if compute_dtype in ("fp8", "int8", "fp4"):
            value = getattr(self, f"{compute_dtype}_compute_efficiency")
            if value is None and compute_dtype == "fp4":
                value = self.fp8_compute_efficiency
            return self.compute_efficiency if value is None else value
        self.peak_flops_per_s(compute_dtype)  # unknown dtypes raise here
        return self.compute_efficiency
