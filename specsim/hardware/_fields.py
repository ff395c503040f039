"""The fields of `HardwareSpec`: one row each, driving loading, checks, saving and labels.

A row says how a field is written in a datasheet (the catalogue and hardware TOML files),
the factor that converts that to SI, which values are valid, and how to label it. Reading
a datasheet entry (``to_si``), writing one (``to_datasheet``), checking a spec
(``HardwareSpec.validate``) and the labels of the CLI all come from this table, so a new
field is one row here, one attribute of `HardwareSpec` and a catalogue column.

Plain Python (no JAX): ``specsim hardware`` lists the catalogue without starting JAX.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from .. import _schema
from .._schema import FRACTION, NON_NEGATIVE, POSITIVE, Rule

TERA = 1e12
GIGA = 1e9
GIB = 2.0**30
MICRO = 1e-6


@dataclass(frozen=True)
class Field:
    """One `HardwareSpec` field.

    Attributes:
        name: the `HardwareSpec` attribute (SI units).
        key: its datasheet key (catalogue and TOML files).
        factor: SI value = datasheet value x ``factor``.
        rule: the valid values (the same in both units: every factor is positive).
        label: what it is, for people (``"HBM bandwidth"``).
        unit: the datasheet unit (``"TB/s"``; ``""`` for a fraction).
        default: ``None`` if the key is required; else the SI value taken when the key is
            absent: a number, or a function of the SI values of the required fields.
        alternatives: other accepted keys with their factors, e.g. ``("hbm_gib", 2**30)``;
            a datasheet gives exactly one of ``key`` and these.
        follows: ``None``, or the field whose value this one takes when the key is absent:
            the spec then holds ``None`` (no leaf), so replacing the followed field moves
            both, and datasheets and files leave the key out (see ``FOLLOWS``).
    """

    name: str
    key: str
    factor: float
    rule: Rule
    label: str
    unit: str
    default: float | Callable[[Mapping[str, float]], float] | None = None
    alternatives: tuple[tuple[str, float], ...] = ()
    follows: str | None = None

    @property
    def keys(self) -> tuple[str, ...]:
        """Every datasheet key this field accepts (``key`` first)."""
        return (self.key, *(k for k, _ in self.alternatives))

    @property
    def is_time(self) -> bool:
        """A duration (less is faster), as opposed to a rate or a fraction."""
        return self.name.endswith("_s") and not self.name.endswith("_per_s")


# The smallest roofline sharpness p: the p-norm of two equal times is 2**(1/p) times
# either (1024x at p = 0.1), which no overlap of compute and memory means; float32
# overflows to inf below p ~ 0.01.
MIN_ROOFLINE_SHARPNESS = 0.1
SHARPNESS = Rule(
    lambda v: v >= MIN_ROOFLINE_SHARPNESS,
    f">= {MIN_ROOFLINE_SHARPNESS:g}, or inf for the hard maximum",
)


DOMAIN = Rule(
    lambda v: v >= 1 and (v == math.inf or v == math.floor(v)),
    "a whole number >= 1 chip, or inf for no limit",
)


def _fraction_of_bf16(fraction: float) -> Callable[[Mapping[str, float]], float]:
    return lambda si: si["bf16_flops_per_s"] * fraction


# One row per HardwareSpec field, in its order.
FIELDS: tuple[Field, ...] = (
    # A dtype the chip lacks falls back to a slower one it has (fp32: bf16 / 8, as on TPUs).
    Field("fp32_flops_per_s", "fp32_tflops", TERA, POSITIVE, "fp32 FLOP/s", "TFLOP/s",
          default=_fraction_of_bf16(1 / 8)),
    Field("bf16_flops_per_s", "bf16_tflops", TERA, POSITIVE, "bf16 FLOP/s", "TFLOP/s"),
    Field("fp8_flops_per_s", "fp8_tflops", TERA, POSITIVE, "fp8 FLOP/s", "TFLOP/s",
          default=_fraction_of_bf16(1.0)),
    Field("int8_flops_per_s", "int8_tops", TERA, POSITIVE, "int8 OP/s", "TOP/s",
          default=_fraction_of_bf16(1.0)),
    Field("hbm_bytes_per_s", "hbm_tb_per_s", TERA, POSITIVE, "HBM bandwidth", "TB/s"),
    Field("hbm_capacity_bytes", "hbm_gb", GIGA, POSITIVE, "HBM capacity", "GB",
          alternatives=(("hbm_gib", GIB),)),
    Field("interconnect_bytes_per_s", "interconnect_gb_per_s", GIGA, POSITIVE,
          "interconnect bandwidth", "GB/s"),
    Field("interconnect_latency_s", "interconnect_latency_us", MICRO, NON_NEGATIVE,
          "interconnect latency", "us"),
    Field("compute_efficiency", "compute_efficiency", 1.0, FRACTION, "compute efficiency", ""),
    Field("memory_efficiency", "memory_efficiency", 1.0, FRACTION, "memory efficiency", ""),
    Field("kernel_launch_s", "kernel_launch_us", MICRO, NON_NEGATIVE, "kernel-launch overhead",
          "us"),
    Field("step_overhead_s", "step_overhead_us", MICRO, NON_NEGATIVE, "per-step overhead", "us"),
    Field("attention_efficiency", "attention_efficiency", 1.0, FRACTION, "attention efficiency",
          "", default=1.0),
    # p of the roofline's p-norm max; inf is the hard max (the catalogue's roofline, which
    # `HardwareSpec` holds as None).
    Field("roofline_sharpness", "roofline_sharpness", 1.0, SHARPNESS, "roofline sharpness", "",
          default=math.inf),
    # Per-dtype kernels (see specsim._cost.pass_time). A chip without FP4 units runs FP4 at
    # its fp8 rate; a dtype without a measured efficiency reaches bf16's fraction.
    Field("fp4_flops_per_s", "fp4_tflops", TERA, POSITIVE, "fp4 FLOP/s", "TFLOP/s",
          default=lambda si: si["fp8_flops_per_s"]),
    Field("fp8_compute_efficiency", "fp8_compute_efficiency", 1.0, FRACTION,
          "fp8 compute efficiency", "", default=lambda si: si["compute_efficiency"]),
    Field("int8_compute_efficiency", "int8_compute_efficiency", 1.0, FRACTION,
          "int8 compute efficiency", "", default=lambda si: si["compute_efficiency"]),
    Field("fp4_compute_efficiency", "fp4_compute_efficiency", 1.0, FRACTION,
          "fp4 compute efficiency", "", default=lambda si: si["fp8_compute_efficiency"]),
    # Fraction of memory_efficiency a weight-only matmul reaches while dequantising.
    Field("int8_dequant_efficiency", "int8_dequant_efficiency", 1.0, FRACTION,
          "int8 dequantising efficiency", "", default=1.0),
    Field("int4_dequant_efficiency", "int4_dequant_efficiency", 1.0, FRACTION,
          "int4 dequantising efficiency", "", default=1.0),
    # Rows of the smallest tensor-core / MXU tile: fewer tokens still compute a whole tile.
    Field("matmul_tile_tokens", "matmul_tile_tokens", 1.0, POSITIVE, "matmul tile rows",
          "tokens", default=1.0),
    # Bus bandwidth of a large all-reduce over the link rate.
    Field("interconnect_efficiency", "interconnect_efficiency", 1.0, FRACTION,
          "interconnect efficiency", "", default=1.0),
    # 1: one hop between any two chips (NVSwitch, PCIe switch, full mesh); 0: a torus.
    Field("interconnect_switched", "interconnect_switched", 1.0, NON_NEGATIVE,
          "switched interconnect", "", default=1.0),
    # Attention's FLOPs may run at another fraction of the matmul rate than its KV reads
    # reach of the bandwidth (a CPU's batched small matmuls: a few percent).
    Field("attention_compute_efficiency", "attention_compute_efficiency", 1.0, FRACTION,
          "attention compute efficiency", "", follows="attention_efficiency"),
    # Extra passes over the weights of a matmul of two or more rows, ramped in between one
    # row and two (a CPU GEMM library packing its weight panels on every call; one row
    # runs as a GEMV without them).
    Field("gemm_weight_passes", "gemm_weight_passes", 1.0, NON_NEGATIVE,
          "multi-row GEMM extra weight passes", "passes", default=0.0),
    # Per-step latency of NCCL's low-latency (LL) protocol, whose ring runs at half the bus
    # bandwidth; absent: interconnect_latency_s (the LL ring then never binds).
    Field("interconnect_ll_latency_s", "interconnect_ll_latency_us", MICRO, NON_NEGATIVE,
          "low-latency collective hop", "us", default=lambda si: si["interconnect_latency_s"]),
    # Chips the interconnect joins (an NVLink node or rack, a TPU pod, a PCIe host): the
    # largest tensor-parallel group the interconnect's numbers describe; inf: no limit.
    Field("interconnect_domain_chips", "interconnect_domain_chips", 1.0, DOMAIN,
          "scale-up domain", "chips", default=math.inf),
)  # fmt: skip

FIELD_BY_NAME: dict[str, Field] = {f.name: f for f in FIELDS}

# Fields a spec holds as ``None`` unless its entry gives them, and the field each then
# follows (``Field.follows``).
FOLLOWS: dict[str, str] = {f.name: f.follows for f in FIELDS if f.follows is not None}

# Keys of an entry that are facts about the chip, not numbers of the model.
METADATA_KEYS = {
    "aliases": "other names (a list of strings)",
    "kind": "gpu, tpu, ...",
    "vendor": "who makes it",
    "year": "when it was announced",
    "board_power_w": "board power at full load (TDP / TBP), W",
    "source": "where the numbers come from",
    "sources": "a table of sources by topic",
    "notes": "free text",
    # What `specsim calibrate` records next to a fitted spec (scalars).
    "calibration": "a table of facts about the fit",
}
DATASHEET_KEYS = tuple(k for f in FIELDS for k in f.keys)
# Other spellings that point a typo at the right key: SI names and labels.
_SPELLINGS = {f.name: f.key for f in FIELDS} | {
    f.label.lower().replace(" ", "_").replace("-", "_"): f.key for f in FIELDS
}


def to_si(entry: Mapping[str, Any], where: str = "hardware") -> dict[str, float | None]:
    """The SI value of every field from a datasheet entry, checked strictly.

    Each number is converted once, exactly in decimal (``3.35`` TB/s is exactly
    ``3.35e12`` B/s, rounded to a float at the end), so `to_datasheet` can undo it.

    Args:
        entry: datasheet keys (see ``FIELDS``) and metadata keys (``METADATA_KEYS``);
            numbers as ``int``, ``float`` or ``Decimal``.
        where: names the entry in messages (``"<file>: <entry>"``).

    Returns:
        ``{field name: SI value}`` for every field (defaults filled in; ``None`` for a
        field of ``FOLLOWS`` the entry leaves out).

    Raises:
        ValueError: an unknown key (naming the closest valid ones), a missing required
            key, both of two alternative keys, a non-number or an out-of-range number.

    Examples:
        >>> si = to_si({"bf16_tflops": 989, "hbm_gb": 80, "hbm_tb_per_s": 3.35,
        ...             "interconnect_gb_per_s": 450, "interconnect_latency_us": 2,
        ...             "compute_efficiency": 0.8, "memory_efficiency": 0.89,
        ...             "kernel_launch_us": 4, "step_overhead_us": 50})
        >>> si["hbm_bytes_per_s"], si["fp32_flops_per_s"] / 1e12
        (3350000000000.0, 123.625)
    """
    _schema.check_keys(entry, (*DATASHEET_KEYS, *METADATA_KEYS), where, _SPELLINGS)
    _check_metadata(entry, where)
    si: dict[str, float] = {}
    for field in FIELDS:
        given = [k for k in field.keys if k in entry]
        if len(given) > 1:
            raise ValueError(
                f"{where}: {' and '.join(given)}: both given; valid: exactly one of them"
            )
        if given:
            key = given[0]
            factor = dict(((field.key, field.factor), *field.alternatives))[key]
            _schema.number(where, key, entry[key], field.rule)
            si[field.name] = float(_decimal(entry[key]) * _decimal(factor))
            if not field.rule(si[field.name]):
                raise ValueError(
                    _schema.message(where, key, entry[key], "overflows in SI units", "smaller")
                )
        elif field.default is None and field.follows is None:
            alternatives = " (or " + ", ".join(map(repr, field.keys[1:])) + ")"
            raise ValueError(
                f"{where}: missing required key {field.key!r}"
                + (alternatives if field.alternatives else "")
                + f" ({field.label}, {field.unit or 'a fraction'})"
            )
    for field in FIELDS:
        if field.follows is not None and field.name not in si:
            si[field.name] = None  # follows its field
        elif field.name not in si:
            default = field.default
            si[field.name] = float(default(si) if callable(default) else default)
    return {f.name: si[f.name] for f in FIELDS}


def _decimal(value: int | float | Decimal) -> Decimal:
    """The decimal a number was written as (a float's shortest round-tripping form)."""
    return value if isinstance(value, Decimal) else Decimal(repr(float(value)))


def _check_metadata(entry: Mapping[str, Any], where: str) -> None:
    for key in ("kind", "vendor", "source", "notes"):
        if key in entry:
            _schema.text(where, key, entry[key])
    if "aliases" in entry and not (
        isinstance(entry["aliases"], list) and all(isinstance(a, str) for a in entry["aliases"])
    ):
        raise ValueError(
            _schema.message(where, "aliases", entry["aliases"], "not a list", "a list of strings")
        )
    for key in ("year", "board_power_w"):
        if key in entry:
            _schema.number(where, key, entry[key], POSITIVE)
    for key in ("sources", "calibration"):
        if key in entry and not isinstance(entry[key], Mapping):
            raise ValueError(
                _schema.message(where, key, entry[key], "not a table", f"[... .{key}] table")
            )


def to_datasheet(si: Any) -> dict[str, float]:
    """Datasheet values (the catalogue/TOML keys) of SI values: the inverse of `to_si`.

    Args:
        si: a `HardwareSpec` with concrete leaves, or a mapping of field names to SI values.

    Returns:
        ``{datasheet key: value}`` for every field, in table order (capacity as ``hbm_gb``;
        a field of ``FOLLOWS`` left unset is left out).

    Examples:
        >>> from specsim import hardware
        >>> to_datasheet(hardware.get("h100"))["hbm_tb_per_s"]
        3.35
    """
    return {key: float(value) for key, value in datasheet_decimals(si).items()}


def datasheet_decimals(si: Any) -> dict[str, Decimal]:
    """As `to_datasheet`, but exact: ``to_si`` of these decimals gives back ``si`` bit for bit.

    Dividing by a power of ten shifts the decimal point of the SI value's shortest form,
    so nothing is rounded (TOML files are written from these).
    """
    value = si.__getitem__ if isinstance(si, Mapping) else lambda name: getattr(si, name)
    out, known = {}, {}
    for f in FIELDS:
        v = value(f.name)
        if v is None and f.follows is not None:
            continue  # follows its field: not written (read back the same way)
        if v is None:  # left at its default (the hard roofline's sharpness, a fallback rate)
            v = f.default(known) if callable(f.default) else f.default
        known[f.name] = float(v)
        out[f.key] = _decimal(float(v)) / _decimal(f.factor)
    return out


def check_values(values: Mapping[str, Any], where: str = "hardware") -> None:
    """Checks SI values by field name (each a number or an array of numbers).

    Raises:
        ValueError: a value outside its field's rule, in the one-line style.
    """
    for name, array in values.items():
        rule = FIELD_BY_NAME[name].rule
        for v in array:
            if not rule(v):
                raise ValueError(_schema.message(where, name, v, "out of range", rule.valid))
