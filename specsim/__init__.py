"""specsim: a differentiable JAX simulator of speculative-decoding throughput.

The front doors:

* ``specsim.throughput(target, draft, hardware, workload, gamma, acceptance)``, or
  ``specsim.predict(deployment, draft, gamma)`` with a ``specsim.Deployment``
* ``specsim.optimize_draft(...)`` for the best draft and lookahead, by gradient descent
* ``specsim.hardware.get(name)`` / ``specsim.models.get(name)``
* ``specsim.forward_cost`` / ``specsim.step_time`` for one forward pass
* ``specsim.theory`` for hardware-free closed forms
* ``specsim.calibrate(...)`` to fit a `HardwareSpec` to measured step times
  (``specsim.measure`` runs the real networks)
"""

from . import hardware as hardware
from . import models as models
from . import plot as plot
from . import theory as theory
from ._acceptance import ConstantAcceptance as ConstantAcceptance
from ._acceptance import PositionalAcceptance as PositionalAcceptance
from ._acceptance import SDSLAcceptance as SDSLAcceptance
from ._acceptance import acceptance_rate as acceptance_rate
from ._acceptance import expected_tokens_per_step as expected_tokens_per_step
from ._calibrate import CalibrationResult as CalibrationResult
from ._calibrate import StepTimeData as StepTimeData
from ._calibrate import calibrate as calibrate
from ._calibrate import load_hardware as load_hardware
from ._calibrate import predict_step_times as predict_step_times
from ._calibrate import save_hardware as save_hardware
from ._cost import STEP_BOUND_NAMES as STEP_BOUND_NAMES
from ._cost import ForwardCost as ForwardCost
from ._cost import MemoryFootprint as MemoryFootprint
from ._cost import StepTime as StepTime
from ._cost import fits as fits
from ._cost import forward_cost as forward_cost
from ._cost import memory_footprint as memory_footprint
from ._cost import step_time as step_time
from ._deployment import Deployment as Deployment
from ._draft import DraftBounds as DraftBounds
from ._draft import DraftParams as DraftParams
from ._draft import DraftTemplate as DraftTemplate
from ._optimize import GridResult as GridResult
from ._optimize import OptimizeResult as OptimizeResult
from ._optimize import Scenario as Scenario
from ._optimize import grid_search as grid_search
from ._optimize import grid_search_scenarios as grid_search_scenarios
from ._optimize import optimize_draft as optimize_draft
from ._optimize import optimize_scenarios as optimize_scenarios
from ._schedule import Schedule as Schedule
from ._schedule import speculation_schedule as speculation_schedule
from ._sweep import sweep as sweep
from ._throughput import ThroughputReport as ThroughputReport
from ._throughput import crossover_batch as crossover_batch
from ._throughput import predict as predict
from ._throughput import throughput as throughput
from ._workload import Workload as Workload
from .hardware import HardwareSpec as HardwareSpec
from .models import TransformerSpec as TransformerSpec

__version__ = "0.1.0"

__all__ = [
    "STEP_BOUND_NAMES",
    "CalibrationResult",
    "ConstantAcceptance",
    "Deployment",
    "DraftBounds",
    "DraftParams",
    "DraftTemplate",
    "ForwardCost",
    "GridResult",
    "HardwareSpec",
    "MemoryFootprint",
    "OptimizeResult",
    "PositionalAcceptance",
    "SDSLAcceptance",
    "Scenario",
    "Schedule",
    "StepTime",
    "StepTimeData",
    "ThroughputReport",
    "TransformerSpec",
    "Workload",
    "acceptance_rate",
    "calibrate",
    "crossover_batch",
    "expected_tokens_per_step",
    "fits",
    "forward_cost",
    "grid_search",
    "grid_search_scenarios",
    "hardware",
    "load_hardware",
    "memory_footprint",
    "models",
    "optimize_draft",
    "optimize_scenarios",
    "plot",
    "predict",
    "predict_step_times",
    "save_hardware",
    "speculation_schedule",
    "step_time",
    "sweep",
    "theory",
    "throughput",
]
