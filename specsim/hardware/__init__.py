"""Accelerators: ``HardwareSpec``, the sourced catalogue and roofline primitives.

The catalogue look-ups (``names``, ``canonical_name``, ``entry``) are plain data; the
spec and the roofline functions, which need JAX, are imported on first use.
"""

import importlib as _importlib

from ._catalog import canonical_name as canonical_name
from ._catalog import entry as entry
from ._catalog import names as names

# Public name -> the module that defines it, imported on first use (PEP 562).
_LAZY = {
    "BOUND_NAMES": "._roofline",
    "COMPUTE_BOUND": "._roofline",
    "MEMORY_BOUND": "._roofline",
    "RooflineTime": "._roofline",
    "all_to_all_time": "._roofline",
    "allreduce_time": "._roofline",
    "roofline_time": "._roofline",
    "smooth_max": "._roofline",
    "HardwareSpec": "._spec",
    "get": "._spec",
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
    "MEMORY_BOUND",
    "HardwareSpec",
    "RooflineTime",
    "all_to_all_time",
    "allreduce_time",
    "canonical_name",
    "entry",
    "get",
    "names",
    "roofline_time",
    "smooth_max",
]
