"""Dollars and joules per token of a served fleet.

A fleet of ``replicas`` engines, each on ``tp`` chips, rents ``replicas x tp`` chips at
``usd_per_chip_hour`` whether or not they are busy, and draws at most ``power_w`` each. So

* cost per million output tokens = ``replicas x tp x usd_per_chip_hour / 3600 /
  throughput x 1e6`` (the throughput the traffic asks for, not the capacity);
* goodput per dollar = SLO-meeting output tokens per dollar of fleet time;
* tokens per joule = ``throughput / (replicas x tp x power_w)``: at full board power, a
  lower bound (a chip below full load draws less).

Prices come from ``prices.toml`` (sourced and dated; a user file with the same layout
overrides it), looked up by hardware catalogue name; board powers from the hardware
catalogue (``specsim.hardware.board_power_w``, sourced there), unless a user price file
gives a chip's ``power_w``.
"""

from __future__ import annotations

import math
import os
import tomllib
from pathlib import Path
from typing import Any

import jax.numpy as jnp
from flax import struct

from .._numerics import real_number
from ..hardware import board_power_w, canonical_name, names
from ._steady_state import SteadyStateReport

__all__ = ["ChipPrice", "ServingCost", "chip_price", "load_prices", "serving_cost"]

_PRICES = Path(__file__).with_name("prices.toml")
_KEYS = {"usd_per_hour", "price_date", "price_source", "power_w", "power_source"}
SECONDS_PER_HOUR = 3600.0


@struct.dataclass
class ChipPrice:
    """What one chip costs to run (traced leaves; ``nan`` where unknown).

    Attributes:
        usd_per_hour: rental price of one chip, USD/hour.
        power_w: board power at full load, W.

    Examples:
        >>> p = chip_price("h100")
        >>> round(float(p.usd_per_hour), 2), float(p.power_w)
        (3.99, 700.0)
    """

    usd_per_hour: Any
    power_w: Any

    @classmethod
    def create(cls, usd_per_hour: float = math.nan, power_w: float = math.nan) -> ChipPrice:
        """Validated numbers: each > 0 and finite, or ``nan`` for unknown."""
        numbers = []
        for name, value in (("usd_per_hour", usd_per_hour), ("power_w", power_w)):
            number = real_number(value)
            if number is None:
                raise ValueError(f"{name} must be a number, got {value!r}")
            if not math.isnan(number) and not (math.isfinite(number) and number > 0):
                raise ValueError(f"{name} must be finite and > 0, got {value!r}")
            numbers.append(number)
        return cls(*(jnp.asarray(v) for v in numbers))


@struct.dataclass
class ServingCost:
    """Economics of a fleet at one traffic.

    Attributes:
        chips: chips rented (``replicas x tp``).
        usd_per_hour: fleet cost, USD/hour (``nan`` without a price).
        usd_per_million_tokens: per million output tokens served (``nan`` without a price,
            ``inf`` when nothing is served).
        goodput_tokens_per_usd: SLO-meeting output tokens per dollar.
        tokens_per_joule: output tokens per joule at full board power (``nan`` without a
            power).
    """

    chips: Any
    usd_per_hour: Any
    usd_per_million_tokens: Any
    goodput_tokens_per_usd: Any
    tokens_per_joule: Any

    def to_dict(self) -> dict[str, float]:
        """Plain Python floats."""
        return {name: float(getattr(self, name)) for name in self.__dataclass_fields__}


def serving_cost(report: SteadyStateReport, price: ChipPrice, tp, replicas=1.0) -> ServingCost:
    """Cost per million output tokens, goodput per dollar and tokens per joule.

    Traced and differentiable (the optimiser maximises ``goodput_tokens_per_usd``).

    Args:
        report: a `SteadyStateReport` of the fleet (its throughput is fleet-wide).
        price: the `ChipPrice` of one chip.
        tp: chips per replica.
        replicas: replicas in the fleet.

    Examples:
        >>> import specsim
        >>> from specsim.serving import SpecPolicy, Traffic, steady_state
        >>> d = specsim.Deployment.create("llama-3-8b", "h100", acceptance=0.7)
        >>> r = steady_state(d, SpecPolicy.off(), Traffic.poisson(2.0, 512, 128))
        >>> cost = serving_cost(r, chip_price("h100"), tp=1.0)
        >>> round(float(cost.usd_per_million_tokens), 2)  # 3.99 $/h / 3600 / 256 tok/s
        4.33
    """
    chips = jnp.asarray(tp, jnp.float32) * jnp.asarray(replicas, jnp.float32)
    usd_per_s = chips * price.usd_per_hour / SECONDS_PER_HOUR
    throughput = report.throughput_tokens_per_s
    served = throughput > 0
    per_token = jnp.where(served, usd_per_s / jnp.where(served, throughput, 1.0), jnp.inf)
    return ServingCost(
        chips=chips,
        usd_per_hour=usd_per_s * SECONDS_PER_HOUR,
        usd_per_million_tokens=per_token * 1e6,
        goodput_tokens_per_usd=report.goodput_tokens_per_s / usd_per_s,
        tokens_per_joule=throughput / (chips * price.power_w),
    )


def load_prices(path: str | os.PathLike | None = None) -> dict[str, dict[str, Any]]:
    """The price table: the packaged one with the catalogue's board powers, a user file's
    chips merged over it.

    Args:
        path: a TOML file laid out as ``prices.toml`` (``[chip."NAME"]`` tables with
            ``usd_per_hour`` and/or ``power_w`` and their sources), or ``None``.

    Returns:
        ``{catalogue name: entry}``; a chip whose board power the hardware catalogue knows
        has it as ``power_w`` (``power_source`` naming the catalogue) unless the user file
        gives one.

    Raises:
        ValueError: an unreadable file, an unknown chip or key, or a non-positive number.
    """
    table = _read(_PRICES)
    for name in names():
        power = board_power_w(name)
        if not math.isnan(power):
            table[name] = {
                **table.get(name, {}),
                "power_w": power,
                "power_source": f"hardware catalogue: specsim.hardware.entry({name!r})",
            }
    if path is not None:
        for name, entry in _read(Path(path)).items():
            table[name] = {**table.get(name, {}), **entry}
    return table


def chip_price(hardware: str, prices: str | os.PathLike | None = None) -> ChipPrice:
    """The `ChipPrice` of a hardware catalogue name or alias (``nan`` where unknown).

    Raises:
        ValueError: an unknown hardware name, or a bad price file.
    """
    name = canonical_name(hardware)
    entry = load_prices(prices).get(name, {})
    return ChipPrice.create(
        float(entry.get("usd_per_hour", math.nan)), float(entry.get("power_w", math.nan))
    )


def _read(path: Path) -> dict[str, dict[str, Any]]:
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"{path}: no such price file") from None
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"{path}: not valid TOML ({error})") from None
    chips = data.get("chip", {})
    unknown_top = sorted(set(data) - {"chip", "schema_version"})
    if unknown_top or not isinstance(chips, dict):
        raise ValueError(f'{path}: expected [chip."NAME"] tables, got keys {unknown_top}')
    table: dict[str, dict[str, Any]] = {}
    for raw, entry in chips.items():
        name = canonical_name(raw)
        unknown = sorted(set(entry) - _KEYS)
        if unknown:
            raise ValueError(
                f"{path}: chip {raw!r} has unknown keys {unknown}; valid: {sorted(_KEYS)}"
            )
        for key in ("usd_per_hour", "power_w"):
            value = entry.get(key)
            if value is not None and (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not (math.isfinite(value) and value > 0)
            ):
                raise ValueError(f"{path}: chip {raw!r}: {key} must be a number > 0, got {value!r}")
        table[name] = dict(entry)
    return table
