"""Serving under load: traffic, a continuously batching engine, and its latency and goodput.

* `Traffic` (Poisson rate, prompt and output `LengthDistribution`) or a `Trace` of requests
  (`load_trace` reads CSV / JSON lines); `SLO` targets for TTFT and TPOT at a percentile.
* `EngineConfig` (max sequences, max batched tokens, chunked-prefill budget, paged KV cache)
  and `SpecPolicy` (a speculator and a lookahead per decode-batch bucket).
* `engine_step_time` (traced) and `StepTimeModel` (its table): one engine step's time from
  specsim's cost model, shared by both evaluators.
* `simulate`: the discrete-event reference, replaying requests step by step; `replay`
  (replicas, time shards) and `sweep_rates` (many loads) run many replays on Dask.
* `steady_state`: the fast, differentiable steady-state model (throughput, goodput, latency
  percentiles, saturation); `max_slo_rate`, `load_curve`; `serving_cost` (dollars and
  joules per token, `chip_price` from a sourced price table); `optimize_serving` (draft,
  lookahead per bucket, TP and replicas for goodput per dollar) and its random baseline.
"""

from ._cost_per_token import ChipPrice as ChipPrice
from ._cost_per_token import ServingCost as ServingCost
from ._cost_per_token import chip_price as chip_price
from ._cost_per_token import load_prices as load_prices
from ._cost_per_token import serving_cost as serving_cost
from ._des import SimulationResult as SimulationResult
from ._des import simulate as simulate
from ._distributed import replay as replay
from ._distributed import sweep_rates as sweep_rates
from ._engine import DEFAULT_BATCH_BUCKETS as DEFAULT_BATCH_BUCKETS
from ._engine import EngineConfig as EngineConfig
from ._engine import SpecPolicy as SpecPolicy
from ._engine import kv_bytes_per_token as kv_bytes_per_token
from ._policy_search import ServingSearchResult as ServingSearchResult
from ._policy_search import optimize_serving as optimize_serving
from ._policy_search import random_serving_search as random_serving_search
from ._slo import SLO as SLO
from ._steady_state import SteadyStateReport as SteadyStateReport
from ._steady_state import load_curve as load_curve
from ._steady_state import max_slo_rate as max_slo_rate
from ._steady_state import steady_state as steady_state
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
    "ChipPrice",
    "EngineConfig",
    "LengthDistribution",
    "ServingCost",
    "ServingSearchResult",
    "SimulationResult",
    "SpecPolicy",
    "SteadyStateReport",
    "StepTimeModel",
    "Trace",
    "Traffic",
    "chip_price",
    "emitted_tokens",
    "engine_step_time",
    "kv_bytes_per_token",
    "load_curve",
    "load_prices",
    "load_trace",
    "max_slo_rate",
    "optimize_serving",
    "random_serving_search",
    "replay",
    "serving_cost",
    "simulate",
    "steady_state",
    "sweep_rates",
]
