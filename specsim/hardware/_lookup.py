"""A `HardwareSpec` by name: the catalogue, a calibrated spec, or a TOML file."""

from __future__ import annotations

import os

from . import _catalog
from ._spec import HardwareSpec
from ._toml import calibration_dir


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


def load_hardware(name_or_path: str | os.PathLike) -> HardwareSpec:
    """A spec from a TOML path, a calibrated name, or the catalogue (in that order).

    ``"local"`` finds ``calibration_dir() / "local.toml"`` written by ``specsim calibrate``.

    Raises:
        ValueError: unreadable or malformed file, or an unknown name.

    Examples:
        >>> float(load_hardware("h100").hbm_bytes_per_s) / 1e12
        3.35
    """
    text = os.fspath(name_or_path)
    if isinstance(name_or_path, os.PathLike) or text.endswith(".toml") or os.sep in text:
        return HardwareSpec.from_toml(text)
    candidate = calibration_dir() / f"{text}.toml"
    if candidate.is_file():
        return HardwareSpec.from_toml(candidate)
    return get(text)
