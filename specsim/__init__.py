"""specsim: a differentiable JAX simulator of speculative-decoding throughput.

The front doors:

* ``specsim.throughput(target, draft, hardware, workload, gamma, acceptance)``
* ``specsim.hardware.get(name)`` / ``specsim.models.get(name)``
* ``specsim.forward_cost`` / ``specsim.step_time`` for one forward pass
* ``specsim.theory`` for hardware-free closed forms
"""

from . import hardware as hardware
from . import models as models
from . import theory as theory
from ._acceptance import ConstantAcceptance as ConstantAcceptance
from ._acceptance import PositionalAcceptance as PositionalAcceptance
from ._acceptance import SDSLAcceptance as SDSLAcceptance
from ._acceptance import acceptance_rate as acceptance_rate
from ._acceptance import expected_tokens_per_step as expected_tokens_per_step
from ._cost import STEP_BOUND_NAMES as STEP_BOUND_NAMES
from ._cost import ForwardCost as ForwardCost
from ._cost import MemoryFootprint as MemoryFootprint
from ._cost import StepTime as StepTime
from ._cost import fits as fits
from ._cost import forward_cost as forward_cost
from ._cost import memory_footprint as memory_footprint
from ._cost import step_time as step_time
from ._throughput import ThroughputReport as ThroughputReport
from ._throughput import throughput as throughput
from ._workload import Workload as Workload
from .hardware import HardwareSpec as HardwareSpec
from .models import TransformerSpec as TransformerSpec

__version__ = "0.1.0"

__all__ = [
    "STEP_BOUND_NAMES",
    "ConstantAcceptance",
    "ForwardCost",
    "HardwareSpec",
    "MemoryFootprint",
    "PositionalAcceptance",
    "SDSLAcceptance",
    "StepTime",
    "ThroughputReport",
    "TransformerSpec",
    "Workload",
    "acceptance_rate",
    "expected_tokens_per_step",
    "fits",
    "forward_cost",
    "hardware",
    "memory_footprint",
    "models",
    "step_time",
    "theory",
    "throughput",
]
