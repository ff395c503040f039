"""Discrete-event replays beyond one process: replicas, time shards and load sweeps on Dask.

Three ways to split the work, each a set of independent `simulate` calls that Dask runs
wherever its scheduler puts them:

* **replicas** (exact): ``R`` engine replicas behind a round-robin load balancer; request
  ``i`` goes to replica ``i mod R``, each replica replays its share on its own.
* **time shards** (an approximation, for one engine): the trace is cut into ``S`` runs of
  consecutive requests; each shard replays its run from an empty engine, preceded and
  followed by ``overlap_requests`` requests that are simulated (warming the engine up,
  keeping it loaded at the end) but not recorded. Where the engine drains within the
  overlap, the shard's records equal the serial replay's; under heavy load they are close,
  not equal (tests bound the difference).
* **load sweeps**: one replay per arrival rate (and seed), each sampled from `Traffic`,
  returning a table of summaries.

The scheduler is local by default: ``"processes"`` (a local process pool: the replay loop is
pure Python, so threads would share one core under the GIL), ``"synchronous"`` (in this
process, for debugging and tests) or ``"threads"``; or pass a ``distributed.Client``
(a ``LocalCluster`` on this machine, or a cluster's scheduler address) to run on its
workers. The step-time table is built once, here, and shipped to the workers as NumPy
arrays (no JAX work on the workers).

Why Dask rather than Ray: the work is a flat set of independent, CPU-bound Python tasks
with NumPy inputs; ``dask.delayed`` plus ``dask.compute`` expresses it in a few lines, runs
the same graph synchronously, on a local process pool or on a ``distributed`` cluster
without code changes, and installs as two pure-Python wheels (Ray brings a C++ runtime, an
object store and a dashboard process that buy nothing here).
"""

from __future__ import annotations

import itertools

import numpy as np

from .._deployment import Deployment
from ._des import SimulationResult, simulate
from ._engine import EngineConfig, SpecPolicy
from ._slo import SLO
from ._step_time import StepTimeModel
from ._traffic import Trace, Traffic

__all__ = ["replay", "sweep_rates"]

SCHEDULERS = ("processes", "synchronous", "threads")


def replay(
    trace: Trace,
    deployment: Deployment | StepTimeModel,
    policy: SpecPolicy | None = None,
    engine: EngineConfig | None = None,
    *,
    replicas: int = 1,
    shards: int = 1,
    overlap_requests: int = 2000,
    seed: int = 0,
    scheduler="processes",
) -> SimulationResult:
    """Replays a trace as independent pieces on Dask and merges the records.

    Args:
        trace: the requests.
        deployment: a `Deployment` (the table is built once, here) or a `StepTimeModel`.
        policy, engine: as in `simulate` (one replica's engine).
        replicas: engine replicas behind a round-robin balancer (exact).
        shards: time shards per replica (approximate; see the module's notes).
        overlap_requests: requests simulated before and after each shard, not recorded.
        seed: seeds the accepted-token sampling (piece ``j`` uses a child seed).
        scheduler: ``"processes"``, ``"synchronous"``, ``"threads"`` or a
            ``distributed.Client``. The process pool starts its workers by *spawning*
            Python afresh, which re-runs a calling script's top level: put the call under
            ``if __name__ == "__main__":`` in a script (notebooks need nothing).

    Returns:
        One `SimulationResult` over all requests in trace order: ``steps``, ``busy_s``,
        ``kv_blocks`` and ``free_blocks_at_end`` are summed over replicas (and shards);
        ``mean_in_system`` is Little's ``sum(e2e) / makespan`` from the records.

    Examples:
        >>> import specsim
        >>> from specsim.serving import Traffic, EngineConfig
        >>> d = specsim.Deployment.create("llama-3-8b", "h100", acceptance=0.7)
        >>> trace = Traffic.poisson(20.0, prompt=128, output=32).sample(400, seed=0)
        >>> merged = replay(trace, d, engine=EngineConfig.create(max_num_seqs=16),
        ...                 replicas=2, scheduler="synchronous")
        >>> int(merged.finished_count.sum()), merged.kv_blocks > 0
        (400, True)
    """
    compute = _compute(scheduler)
    for name, value, low in (("replicas", replicas, 1), ("shards", shards, 1)):
        _check_count(name, value, low)
    _check_count("overlap_requests", overlap_requests, 0)
    if not isinstance(trace, Trace):
        raise ValueError(f"trace must be a Trace, got {type(trace).__name__}")
    policy = SpecPolicy.off() if policy is None else policy
    engine = EngineConfig.create() if engine is None else engine
    model, engine = _prepare(trace, deployment, policy, engine)

    import dask

    # The table, policy and engine go into the graph once, shared by every task.
    shared = [dask.delayed(x, pure=True) for x in (model, policy, engine)]
    pieces = []  # (request indices recorded, delayed result, first recorded position)
    seeds = np.random.SeedSequence(seed).spawn(replicas * shards)
    for r in range(replicas):
        mine = np.arange(r, len(trace), replicas)
        if mine.size == 0:
            continue
        bounds = np.linspace(0, mine.size, min(shards, mine.size) + 1).round().astype(int)
        for s, (a, b) in enumerate(itertools.pairwise(bounds)):
            lo, hi = max(0, a - overlap_requests), min(mine.size, b + overlap_requests)
            part = _take(trace, mine[lo:hi])
            child = int(seeds[r * shards + s].generate_state(1)[0])
            task = dask.delayed(simulate, pure=False)(part, *shared, seed=child)
            pieces.append((mine[a:b], task, a - lo))
    results = compute(*(task for _, task, _ in pieces))
    return _merge(
        trace, [(keep, res, first) for (keep, _, first), res in zip(pieces, results, strict=True)]
    )


def sweep_rates(
    traffic: Traffic,
    rates_per_s,
    deployment: Deployment | StepTimeModel,
    policy: SpecPolicy | None = None,
    engine: EngineConfig | None = None,
    *,
    n_requests: int,
    seeds=(0,),
    slo: SLO | None = None,
    warmup_requests: int = 0,
    scheduler="processes",
):
    """One replay per arrival rate and seed, on Dask; a table of their summaries.

    Args:
        traffic: the lengths (its rate is replaced by each of ``rates_per_s``).
        rates_per_s: arrival rates, requests/s (each > 0).
        deployment: a `Deployment` or a `StepTimeModel` (built once, here).
        policy, engine: as in `simulate`.
        n_requests: requests per replay.
        seeds: one replay per seed at each rate (arrivals and accepted tokens).
        slo: for goodput and ``meets_slo``.
        warmup_requests: left out of the latency statistics.
        scheduler: as in `replay`.

    Returns:
        A pandas DataFrame, one row per (rate, seed): ``rate_per_s``, ``seed`` and every
        key of `SimulationResult.summary`.

    Examples:
        >>> import specsim
        >>> from specsim.serving import Traffic, EngineConfig
        >>> d = specsim.Deployment.create("llama-3-8b", "h100", acceptance=0.7)
        >>> table = sweep_rates(Traffic.poisson(1.0, prompt=128, output=32), [5.0, 20.0], d,
        ...                     engine=EngineConfig.create(max_num_seqs=16), n_requests=300,
        ...                     scheduler="synchronous")
        >>> table["rate_per_s"].tolist(), bool(table["requests_per_s"].is_monotonic_increasing)
        ([5.0, 20.0], True)
    """
    compute = _compute(scheduler)
    if not isinstance(traffic, Traffic):
        raise ValueError(f"traffic must be a Traffic, got {type(traffic).__name__}")
    rates = np.atleast_1d(np.asarray(rates_per_s, np.float64))
    if rates.ndim != 1 or rates.size == 0 or not np.all(np.isfinite(rates) & (rates > 0)):
        raise ValueError(f"rates_per_s must be finite rates > 0 (requests/s), got {rates_per_s!r}")
    _check_count("n_requests", n_requests, 1)
    seeds = [int(s) for s in np.atleast_1d(seeds)]
    policy = SpecPolicy.off() if policy is None else policy
    engine = EngineConfig.create() if engine is None else engine
    # The table must cover every replay's longest request: sample the traces here.
    traces = {
        (rate, s): traffic.replace(rate_per_s=np.float32(rate)).sample(n_requests, s)
        for rate in rates.tolist()
        for s in seeds
    }
    longest = max(int((t.prompt_tokens + t.output_tokens).max()) for t in traces.values())
    model, engine = _prepare(None, deployment, policy, engine, longest)

    import dask

    shared = [dask.delayed(x, pure=True) for x in (model, policy, engine)]
    tasks = [
        dask.delayed(_summary, pure=False)(t, *shared, s, slo, warmup_requests)
        for (_, s), t in traces.items()
    ]
    rows = compute(*tasks)
    import pandas as pd

    keys = list(traces)
    return pd.DataFrame(
        [{"rate_per_s": rate, "seed": s, **row} for (rate, s), row in zip(keys, rows, strict=True)]
    )


def _summary(trace, model, policy, engine, seed, slo, warmup_requests) -> dict:
    return simulate(trace, model, policy, engine, seed=seed).summary(slo, warmup_requests)


def _compute(scheduler):
    """``dask.compute`` bound to the chosen scheduler (``ImportError`` without dask)."""
    try:
        import dask
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError(
            "distributed replays need Dask: pip install 'specsim[distributed]' "
            "(or 'dask[distributed]')"
        ) from None
    if isinstance(scheduler, str):
        if scheduler not in SCHEDULERS:
            raise ValueError(
                f"scheduler must be one of {', '.join(SCHEDULERS)} or a distributed.Client, "
                f"got {scheduler!r}"
            )
        return lambda *tasks: dask.compute(*tasks, scheduler=scheduler)
    try:
        from distributed import Client
    except ImportError:  # pragma: no cover - dask without distributed
        Client = ()
    if isinstance(scheduler, Client):
        return lambda *tasks: dask.compute(*tasks, scheduler=scheduler)
    raise ValueError(
        f"scheduler must be one of {', '.join(SCHEDULERS)} or a distributed.Client, "
        f"got {type(scheduler).__name__}"
    )


def _prepare(trace, deployment, policy, engine, longest=None):
    """The step-time table (built once, for the longest request) and the resolved engine."""
    if isinstance(deployment, StepTimeModel):
        if engine.kv_blocks is None:
            raise ValueError("with a ready StepTimeModel, engine.kv_blocks must be set")
        return deployment, engine
    if not isinstance(deployment, Deployment):
        raise ValueError(
            f"deployment must be a Deployment or a StepTimeModel, got {type(deployment).__name__}"
        )
    engine = engine.resolve(deployment, policy)
    if longest is None:
        longest = int((trace.prompt_tokens + trace.output_tokens).max())
    model = StepTimeModel.build(
        deployment, policy, engine, max_context_tokens=longest + policy.max_lookahead + 1
    )
    return model, engine


def _take(trace: Trace, index: np.ndarray) -> Trace:
    return Trace(trace.arrival_s[index], trace.prompt_tokens[index], trace.output_tokens[index])


def _merge(trace: Trace, pieces) -> SimulationResult:
    """The recorded requests of every piece, back in trace order."""
    n = len(trace)
    first_token = np.full(n, np.nan)
    finish = np.full(n, np.nan)
    preemptions = np.zeros(n, np.int64)
    finished = np.zeros(n, np.int64)
    generated = np.zeros(n, np.int64)
    steps = decode_token_steps = kv_blocks = free_blocks = 0
    emitted = 0  # (overlap requests' tokens included: every token the pieces emitted)
    busy_s = wall_s = 0.0
    for keep, result, first in pieces:
        part = slice(first, first + keep.size)
        first_token[keep] = result.first_token_s[part]
        finish[keep] = result.finish_s[part]
        preemptions[keep] = result.preemptions[part]
        finished[keep] += result.finished_count[part]
        generated[keep] = result.generated_tokens[part]
        steps += result.steps
        emitted += result.emitted_tokens
        decode_token_steps += result.decode_token_steps
        kv_blocks += result.kv_blocks
        free_blocks += result.free_blocks_at_end
        busy_s += result.busy_s
        wall_s += result.wall_s
    horizon = float(finish.max() - trace.arrival_s[0])
    return SimulationResult(
        arrival_s=trace.arrival_s,
        first_token_s=first_token,
        finish_s=finish,
        prompt_tokens=trace.prompt_tokens,
        output_tokens=trace.output_tokens,
        preemptions=preemptions,
        finished_count=finished,
        generated_tokens=generated,
        emitted_tokens=emitted,
        steps=steps,
        busy_s=busy_s,
        decode_token_steps=decode_token_steps,
        mean_in_system=float(np.sum(finish - trace.arrival_s)) / horizon if horizon > 0 else 0.0,
        kv_blocks=kv_blocks,
        free_blocks_at_end=free_blocks,
        wall_s=wall_s,
    )


def _check_count(name: str, value, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise ValueError(f"{name} must be a whole number >= {low}, got {value!r}")
