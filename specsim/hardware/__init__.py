"""Accelerators: ``HardwareSpec``, the sourced catalogue and roofline primitives."""

from ._catalog import canonical_name as canonical_name
from ._catalog import entry as entry
from ._catalog import get as get
from ._catalog import names as names
from ._roofline import BOUND_NAMES as BOUND_NAMES
from ._roofline import COMPUTE_BOUND as COMPUTE_BOUND
from ._roofline import MEMORY_BOUND as MEMORY_BOUND
from ._roofline import RooflineTime as RooflineTime
from ._roofline import allreduce_time as allreduce_time
from ._roofline import roofline_time as roofline_time
from ._roofline import smooth_max as smooth_max
from ._spec import HardwareSpec as HardwareSpec

__all__ = [
    "BOUND_NAMES",
    "COMPUTE_BOUND",
    "MEMORY_BOUND",
    "HardwareSpec",
    "RooflineTime",
    "allreduce_time",
    "canonical_name",
    "entry",
    "get",
    "names",
    "roofline_time",
    "smooth_max",
]
