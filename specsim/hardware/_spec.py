"""`HardwareSpec`: an accelerator's physical numbers in SI units, as a pytree."""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Mapping
from typing import Any

from flax import struct

from .._numerics import concrete
from . import _catalog
from ._units import GIGA, MICRO, TERA, hbm_capacity_bytes

# Leaves whose concrete values must be positive (efficiencies additionally <= 1).
_POSITIVE = (
    "fp32_flops_per_s",
    "bf16_flops_per_s",
    "fp8_flops_per_s",
    "int8_flops_per_s",
    "hbm_bytes_per_s",
    "hbm_capacity_bytes",
    "interconnect_bytes_per_s",
    "compute_efficiency",
    "memory_efficiency",
    "attention_efficiency",
)
_NON_NEGATIVE = ("interconnect_latency_s", "kernel_launch_s", "step_overhead_s")
_EFFICIENCIES = ("compute_efficiency", "memory_efficiency", "attention_efficiency")


@struct.dataclass
class HardwareSpec:
    """One accelerator chip (SI units; every field is a traced leaf).

    Peak rates are dense (no structured sparsity). A dtype the chip lacks falls
    back to the next slower one it has (fp8/int8 -> bf16; fp32 -> bf16 / 8 where
    no fp32 peak is published, as on TPUs), so every leaf is a finite number and
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
            kernels reach, in (0, 1]. 1 (the catalogue's value) treats attention like a
            weight GEMM/GEMV; measured CPUs, whose XLA attention is a chain of small batched
            matmuls and a softmax, reach a fraction of that (``specsim calibrate`` fits it).

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

    @classmethod
    def from_datasheet(cls, entry: Mapping[str, Any], name: str = "hardware") -> HardwareSpec:
        """Builds a spec from datasheet units (the catalogue/TOML schema).

        Keys: ``bf16_tflops`` (required), ``fp32_tflops``, ``fp8_tflops``, ``int8_tops``
        (optional), ``hbm_gb`` or ``hbm_gib``, ``hbm_tb_per_s``, ``interconnect_gb_per_s``,
        ``interconnect_latency_us``, ``compute_efficiency``, ``memory_efficiency``,
        ``kernel_launch_us``, ``step_overhead_us``, ``attention_efficiency`` (optional,
        default 1).

        Raises:
            ValueError: a required key is missing, or a value is not a valid number.
        """
        get = _Reader(entry, name)
        bf16 = get.number("bf16_tflops") * TERA
        capacity = hbm_capacity_bytes(entry, name)
        spec = cls(
            fp32_flops_per_s=get.number("fp32_tflops", bf16 / 8 / TERA) * TERA,
            bf16_flops_per_s=bf16,
            fp8_flops_per_s=get.number("fp8_tflops", bf16 / TERA) * TERA,
            int8_flops_per_s=get.number("int8_tops", bf16 / TERA) * TERA,
            hbm_bytes_per_s=get.number("hbm_tb_per_s") * TERA,
            hbm_capacity_bytes=capacity,
            interconnect_bytes_per_s=get.number("interconnect_gb_per_s") * GIGA,
            interconnect_latency_s=get.number("interconnect_latency_us") * MICRO,
            compute_efficiency=get.number("compute_efficiency"),
            memory_efficiency=get.number("memory_efficiency"),
            kernel_launch_s=get.number("kernel_launch_us") * MICRO,
            step_overhead_s=get.number("step_overhead_us") * MICRO,
            attention_efficiency=get.number("attention_efficiency", 1.0),
        )
        return spec.validate(name)

    @classmethod
    def from_toml(cls, path: str | os.PathLike) -> HardwareSpec:
        """Loads a user-defined spec from a TOML file in datasheet units.

        The file holds the keys of ``from_datasheet`` at top level, or one
        ``[hardware."Name"]`` table (the format ``specsim calibrate`` writes).
        A top-level ``base = "h100"`` starts from a catalogue entry and overrides
        only the keys given.

        Raises:
            ValueError: unreadable file, malformed TOML, missing or invalid keys.
        """
        entry, name = read_toml_entry(path)
        return cls.from_datasheet(entry, name)

    def validate(self, name: str = "hardware") -> HardwareSpec:
        """Checks concrete leaves (positive, finite, efficiencies in (0, 1])."""
        for field in _POSITIVE + _NON_NEGATIVE:
            for v in _concrete_values(getattr(self, field)):
                ok = math.isfinite(v) and (v >= 0 if field in _NON_NEGATIVE else v > 0)
                if field in _EFFICIENCIES:
                    ok = ok and v <= 1
                if not ok:
                    valid = "in (0, 1]" if field in _EFFICIENCIES else "positive and finite"
                    raise ValueError(f"{name}: {field} must be {valid}, got {v}")
        return self

    def peak_flops_per_s(self, compute_dtype: str):
        """Dense peak FLOP/s for ``compute_dtype`` (``fp32``, ``bf16``, ``fp8``, ``int8``)."""
        try:
            return getattr(self, f"{compute_dtype}_flops_per_s")
        except AttributeError:
            raise ValueError(
                f"unknown compute dtype {compute_dtype!r}; valid: fp32, bf16, fp8, int8"
            ) from None


def read_toml_entry(path: str | os.PathLike) -> tuple[dict[str, Any], str]:
    """Reads a hardware TOML file: ``(datasheet_entry, display_name)``."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise ValueError(f"cannot read hardware file {path!r}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"malformed TOML in {path!r}: {e}") from None
    name = os.path.splitext(os.path.basename(path))[0]
    if "hardware" in data:
        tables = data["hardware"]
        if not isinstance(tables, dict) or len(tables) != 1:
            raise ValueError(f'{path!r}: expected exactly one [hardware."Name"] table')
        ((name, data),) = tables.items()
    entry = dict(data)
    base = entry.pop("base", None)
    if base is not None:
        merged = {k: v for k, v in _catalog.entry(base).items() if k != "aliases"}
        merged.update(entry)
        entry = merged
    return entry, name


def get(name: str | os.PathLike) -> HardwareSpec:
    """Returns the ``HardwareSpec`` for a catalogue name/alias or a TOML file path.

    Args:
        name: e.g. ``"h100"``, ``"H100 SXM"``, ``"tpu-v5e"``, ``"v5e"``, or a path
            ending in ``.toml`` (a user-defined or calibrated spec).

    Raises:
        ValueError: unknown name (the message names the closest valid ones) or a
            bad TOML file.

    Examples:
        >>> from specsim import hardware
        >>> float(hardware.get("v5e").bf16_flops_per_s) / 1e12
        197.0
    """
    if isinstance(name, os.PathLike) or str(name).endswith(".toml"):
        return HardwareSpec.from_toml(name)
    canonical = _catalog.canonical_name(name)
    return HardwareSpec.from_datasheet(_catalog.entry(canonical), canonical)


class _Reader:
    def __init__(self, entry: Mapping[str, Any], name: str):
        self.entry, self.name = entry, name

    def number(self, key: str, default: float | None = None) -> float:
        if key not in self.entry:
            if default is None:
                raise ValueError(f"{self.name}: missing required key {key!r}")
            return float(default)
        value = self.entry[key]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{self.name}: {key} must be a number, got {value!r}")
        return float(value)


def _concrete_values(value) -> list[float]:
    array = concrete(value)
    return [] if array is None else array.ravel().tolist()
