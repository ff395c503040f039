"""Accelerators: ``HardwareSpec``, the sourced catalogue and roofline primitives.

The catalogue look-ups (``names``, ``canonical_name``, ``entry``), the field table
(``FIELDS``) and the TOML files are plain data; the spec and the roofline functions,
which need JAX, are imported on first use.
"""

import importlib as _importlib

from ._catalog import board_power_w as board_power_w
from ._catalog import canonical_name as canonical_name
from ._catalog import entry as entry
from ._catalog import names as names
from ._fields import FIELDS as FIELDS
from ._fields import Field as Field
from ._toml import calibration_dir as calibration_dir
from ._toml import datasheet as datasheet
from ._toml import save_hardware as save_hardware

# Public name -> the module that defines it, imported on first use (PEP 562).
_LAZY = {
    "BOUND_NAMES": "._roofline",
    "COMPUTE_BOUND": "._roofline",
    "DEFAULT_SMOOTH": "._roofline",
    "MEMORY_BOUND": "._roofline",
    "RooflineTime": "._roofline",
    "all_to_all_time": "._roofline",
    "allreduce_time": "._roofline",
    "effective_flops_per_s": "._roofline",
    "effective_hbm_bytes_per_s": "._roofline",
    "roofline_sharpness": "._roofline",
    "roofline_time": "._roofline",
    "smooth_max": "._roofline",
    "HardwareSpec": "._spec",
    "get": "._lookup",
    "load_hardware": "._lookup",
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'specsim.hardware' has no attribute {name!r}")
    value = getattr(_importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


__all__ = [
    "BOUND_NAMES",
    "COMPUTE_BOUND",
    "DEFAULT_SMOOTH",
    "FIELDS",
    "MEMORY_BOUND",
    "Field",
    "HardwareSpec",
    "RooflineTime",
    "all_to_all_time",
    "allreduce_time",
    "board_power_w",
    "calibration_dir",
    "canonical_name",
    "datasheet",
    "effective_flops_per_s",
    "effective_hbm_bytes_per_s",
    "entry",
    "get",
    "load_hardware",
    "names",
    "roofline_sharpness",
    "roofline_time",
    "save_hardware",
    "smooth_max",
]
