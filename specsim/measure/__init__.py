"""Real networks on the local device: flax transformers, speculative decoding, timings.

* ``build_model(spec)``: a random-weight decoder-only transformer for a `TransformerSpec`
  (GQA, gated or plain MLP, any vocabulary, fp32/bf16) with a KV cache;
* ``generate`` / ``speculative_generate``: plain and speculative decoding (modified
  rejection sampling, or greedy) with tokens/s, tokens per step and acceptance;
  ``layer_skip_draft`` makes a draft with meaningful, adjustable acceptance;
* ``time_calls`` / ``measure_step_times``: the timing harness (compile and warm-up
  excluded, repeats, medians with spread, per phase);
* ``local_hardware()``: a nominal `HardwareSpec` of this device from micro-benchmarks,
  the starting point of ``specsim.calibrate``;
* ``configure_measurement`` / ``machine_description``: a measurement session's settings
  (single-threaded XLA on a CPU, the clock) and the facts recorded with its results.
"""

from ._clock import CLOCKS as CLOCKS
from ._device import device_kind as device_kind
from ._device import local_hardware as local_hardware
from ._drafts import layer_skip_draft as layer_skip_draft
from ._drafts import tiny_spec as tiny_spec
from ._grids import SpeculativeConfig as SpeculativeConfig
from ._grids import calibration_points as calibration_points
from ._grids import model_presets as model_presets
from ._grids import moe_calibration_points as moe_calibration_points
from ._grids import moe_presets as moe_presets
from ._grids import speculative_configs as speculative_configs
from ._model import KVCache as KVCache
from ._model import Model as Model
from ._model import ModelConfig as ModelConfig
from ._model import build_model as build_model
from ._model import forward as forward
from ._model import init_cache as init_cache
from ._runs import SpeculativeMeasurement as SpeculativeMeasurement
from ._runs import measure_decoding as measure_decoding
from ._runs import measure_speculative as measure_speculative
from ._runs import speculative_models as speculative_models
from ._session import configure_measurement as configure_measurement
from ._session import machine_description as machine_description
from ._speculative import DecodeResult as DecodeResult
from ._speculative import SpeculativeResult as SpeculativeResult
from ._speculative import generate as generate
from ._speculative import speculative_generate as speculative_generate
from ._timing import MeasurementPoint as MeasurementPoint
from ._timing import Timing as Timing
from ._timing import measure_step_times as measure_step_times
from ._timing import time_calls as time_calls

__all__ = [
    "CLOCKS",
    "DecodeResult",
    "KVCache",
    "MeasurementPoint",
    "Model",
    "ModelConfig",
    "SpeculativeConfig",
    "SpeculativeMeasurement",
    "SpeculativeResult",
    "Timing",
    "build_model",
    "calibration_points",
    "configure_measurement",
    "device_kind",
    "forward",
    "generate",
    "init_cache",
    "layer_skip_draft",
    "local_hardware",
    "machine_description",
    "measure_decoding",
    "measure_speculative",
    "measure_step_times",
    "model_presets",
    "moe_calibration_points",
    "moe_presets",
    "speculative_configs",
    "speculative_generate",
    "speculative_models",
    "time_calls",
    "tiny_spec",
]
