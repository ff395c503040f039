"""Serving under load: traffic, a continuously batching engine, and its latency and goodput.

* `Traffic` (Poisson rate, prompt and output `LengthDistribution`) or a `Trace` of requests
  (`load_trace` reads CSV / JSON lines); `SLO` targets for TTFT and TPOT at a percentile.
* `EngineConfig` (max sequences, max batched tokens, chunked-prefill budget, paged KV cache)
  and `SpecPolicy` (a speculator and a lookahead per decode-batch bucket).
* `engine_step_time` (traced) and `StepTimeModel` (its table): one engine step's time from
  specsim's cost model, shared by both evaluators.
* `simulate`: the discrete-event reference, replaying requests step by step; `replay`
  (replicas, time shards) and `sweep_rates` (many loads) run many replays on Dask.
"""

from ._des import SimulationResult as SimulationResult
from ._des import simulate as simulate
from ._distributed import replay as replay
from ._distributed import sweep_rates as sweep_rates
from ._engine import DEFAULT_BATCH_BUCKETS as DEFAULT_BATCH_BUCKETS
from ._engine import EngineConfig as EngineConfig
from ._engine import SpecPolicy as SpecPolicy
from ._engine import kv_bytes_per_token as kv_bytes_per_token
from ._slo import SLO as SLO
from ._step_time import StepTimeModel as StepTimeModel
from ._step_time import emitted_tokens as emitted_tokens
from ._step_time import engine_step_time as engine_step_time
from ._traffic import TRACE_COLUMNS as TRACE_COLUMNS
from ._traffic import LengthDistribution as LengthDistribution
from ._traffic import Trace as Trace
from ._traffic import Traffic as Traffic
from ._traffic import load_trace as load_trace

__all__ = [
    "DEFAULT_BATCH_BUCKETS",
    "SLO",
    "TRACE_COLUMNS",
    "EngineConfig",
    "LengthDistribution",
    "SimulationResult",
    "SpecPolicy",
    "StepTimeModel",
    "Trace",
    "Traffic",
    "emitted_tokens",
    "engine_step_time",
    "kv_bytes_per_token",
    "load_trace",
    "replay",
    "simulate",
    "sweep_rates",
]
