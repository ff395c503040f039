"""Discrete-event reference: replay requests through a continuously batching engine.

The engine is step-synchronous, as vLLM's and SGLang's schedulers are: at each step it
decides which sequences run and how many tokens each processes, runs one forward pass,
and only then do tokens appear. So the simulation is a plain loop over steps, not a
general event heap: the next event is always "the current step ends" (or, when the engine
is idle, "the next request arrives"), and a step's state update is a handful of NumPy
operations over the resident sequences. A process framework (simpy) would add a
coroutine switch per request per step and buy nothing here.

One step (vLLM V1's scheduler, simplified):

1. Arrivals up to the step's start join the waiting queue (FCFS).
2. Decoding sequences run first: the policy's lookahead ``k`` for their number ``b`` (capped
   so ``b (k + 1)`` fits the token budget); each needs KV blocks for ``k + 1`` more tokens.
   When the cache cannot hold them, the most recently admitted sequence is preempted
   (blocks freed, back to the head of the queue, recomputed later: prompt plus the
   tokens it had generated).
3. Sequences still prefilling get their next chunk, then waiting requests are admitted in
   order while a slot (``max_num_seqs``), token budget, chunked-prefill budget and KV
   blocks for their first chunk are free (head-of-line: the first that does not fit stops
   admission).
4. The step takes ``StepTimeModel.step_s(b, mean context, prefill tokens, k)``. Each
   decoding sequence emits ``1 + accepted`` tokens, the accepted count sampled from the
   speculator's survival function (one uniform per sequence); a sequence whose prefill
   completes emits its first token. Sequences with all their output finish and free
   their blocks.

Times: a request's first token is stamped at the end of the step that completes its
prefill; TTFT = first token - arrival; TPOT = (finish - first token) / (output - 1).
"""

from __future__ import annotations

import collections
import dataclasses
import math
import time

import numpy as np

from .._deployment import Deployment
from ._engine import EngineConfig, SpecPolicy
from ._slo import SLO
from ._step_time import StepTimeModel
from ._traffic import Trace, Traffic

__all__ = ["SimulationResult", "simulate"]

PERCENTILES = (50, 90, 99)
UNIFORM_POOL = 1 << 16  # uniforms drawn per call to the generator


@dataclasses.dataclass(frozen=True)
class SimulationResult:
    """What a discrete-event replay produced.

    Attributes:
        arrival_s, first_token_s, finish_s: per request, s.
        prompt_tokens, output_tokens: per request.
        preemptions: times each request was preempted.
        finished_count: times each request finished (1 in a correct replay).
        generated_tokens: output tokens each request had emitted when it finished.
        emitted_tokens: tokens emitted by all steps together (counted per step).
        steps: engine steps run.
        busy_s: time spent in steps (the engine is idle otherwise), s.
        decode_token_steps: sum over steps of the decode batch size.
        mean_in_system: time-averaged number of requests in the system (waiting or
            resident), from the engine's own state at every step (Little's L).
        kv_blocks: the cache's size, blocks; ``free_blocks_at_end`` what was free at the end.
        wall_s: wall-clock time of the replay, s.
    """

    arrival_s: np.ndarray
    first_token_s: np.ndarray
    finish_s: np.ndarray
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray
    preemptions: np.ndarray
    finished_count: np.ndarray
    generated_tokens: np.ndarray
    emitted_tokens: int
    steps: int
    busy_s: float
    decode_token_steps: int
    mean_in_system: float
    kv_blocks: int
    free_blocks_at_end: int
    wall_s: float

    @property
    def ttft_s(self) -> np.ndarray:
        """Time to first token per request, s."""
        return self.first_token_s - self.arrival_s

    @property
    def tpot_s(self) -> np.ndarray:
        """Time per output token after the first, per request, s (NaN for one token)."""
        later = self.output_tokens - 1
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(later > 0, (self.finish_s - self.first_token_s) / later, np.nan)

    @property
    def e2e_s(self) -> np.ndarray:
        """End-to-end latency per request (arrival to last token), s."""
        return self.finish_s - self.arrival_s

    @property
    def makespan_s(self) -> float:
        """First arrival to last finish, s."""
        return float(self.finish_s.max() - self.arrival_s.min())

    def requests(self):
        """One row per request (a pandas DataFrame)."""
        import pandas as pd

        return pd.DataFrame(
            {
                "arrival_s": self.arrival_s,
                "prompt_tokens": self.prompt_tokens,
                "output_tokens": self.output_tokens,
                "first_token_s": self.first_token_s,
                "finish_s": self.finish_s,
                "ttft_s": self.ttft_s,
                "tpot_s": self.tpot_s,
                "e2e_s": self.e2e_s,
                "preemptions": self.preemptions,
            }
        )

    def summary(self, slo: SLO | None = None, warmup_requests: int = 0) -> dict:
        """Throughput, latency percentiles and goodput, as plain numbers.

        Args:
            slo: the `SLO` for goodput (default: none, every request counts).
            warmup_requests: leave the first requests out of the latency statistics
                (the engine starts empty).

        Returns:
            ``requests``, ``duration_s`` (makespan), ``requests_per_s`` and
            ``output_tokens_per_s`` (over the makespan), ``ttft_s_p50``/``p90``/``p99``,
            the same for ``tpot_s`` and ``e2e_s`` (and their means), ``mean_decode_batch``
            (decode sequences per step), ``preemptions``, ``slo_attainment`` (share of
            requests meeting both targets), ``goodput_requests_per_s`` and
            ``goodput_tokens_per_s`` (requests meeting the SLO, their output tokens, per
            second), and ``meets_slo`` (both targets met at the SLO's percentile).
        """
        n = self.arrival_s.size
        if not 0 <= warmup_requests < n:
            raise ValueError(f"warmup_requests must be in [0, {n}), got {warmup_requests}")
        duration = self.makespan_s
        out = {
            "requests": n,
            "duration_s": duration,
            "requests_per_s": n / duration,
            "output_tokens_per_s": float(self.output_tokens.sum()) / duration,
        }
        keep = slice(warmup_requests, None)
        for name, values in (
            ("ttft_s", self.ttft_s),
            ("tpot_s", self.tpot_s),
            ("e2e_s", self.e2e_s),
        ):
            values = values[keep]
            values = values[~np.isnan(values)]
            for q in PERCENTILES:
                out[f"{name}_p{q}"] = float(np.percentile(values, q)) if values.size else math.nan
            out[f"{name}_mean"] = float(values.mean()) if values.size else math.nan
        out["mean_decode_batch"] = self.decode_token_steps / max(self.steps, 1)
        out["preemptions"] = int(self.preemptions.sum())
        slo = SLO.create() if slo is None else slo
        met = slo.met_by(self.ttft_s, self.tpot_s)
        out["slo_attainment"] = float(met[keep].mean())
        out["goodput_requests_per_s"] = float(met.sum()) / duration
        out["goodput_tokens_per_s"] = float(self.output_tokens[met].sum()) / duration
        q = float(slo.percentile)
        tpot = self.tpot_s[keep]
        tpot = tpot[~np.isnan(tpot)]
        out["meets_slo"] = bool(
            np.percentile(self.ttft_s[keep], q) <= float(slo.ttft_s)
            and (tpot.size == 0 or np.percentile(tpot, q) <= float(slo.tpot_s))
        )
        return out


def simulate(
    traffic: Trace | Traffic,
    deployment: Deployment | StepTimeModel,
    policy: SpecPolicy | None = None,
    engine: EngineConfig | None = None,
    *,
    n_requests: int | None = None,
    seed: int = 0,
    progress: bool = False,
    check_invariants: bool = False,
) -> SimulationResult:
    """Replays requests through a continuously batching engine, step by step.

    Args:
        traffic: a `Trace`, or `Traffic` to sample ``n_requests`` from (with ``seed``).
        deployment: a `Deployment` (the step-time table is built for it, the policy and
            the engine), or a ready `StepTimeModel` (then ``engine.kv_blocks`` must be set).
        policy: the `SpecPolicy` (default: no speculation).
        engine: the `EngineConfig` (default ``EngineConfig.create()``; ``kv_blocks`` derived
            from the deployment's memory where unset).
        n_requests: requests to sample when ``traffic`` is a `Traffic`.
        seed: seeds the sampling of arrivals (for `Traffic`) and of accepted tokens.
        progress: show a tqdm progress bar (requests finished).
        check_invariants: check block accounting after every step (slow; for tests).

    Returns:
        `SimulationResult` (per-request times; ``.summary(slo)`` for the figures).

    Raises:
        ValueError: invalid inputs, a request whose prompt, output and lookahead cannot fit
            in the whole KV cache, a prompt longer than the token budget without chunked
            prefill, or ``max_num_seqs > max_num_batched_tokens``.

    Examples:
        >>> import specsim
        >>> from specsim.serving import Traffic, EngineConfig
        >>> d = specsim.Deployment.create("llama-3-8b", "h100", acceptance=0.7)
        >>> result = simulate(Traffic.poisson(5.0, prompt=256, output=64), d,
        ...                   engine=EngineConfig.create(max_num_seqs=32), n_requests=200)
        >>> s = result.summary()
        >>> s["requests"], 0.005 < s["ttft_s_p50"] < 0.05, 0.005 < s["tpot_s_p50"] < 0.02
        (200, True, True)
    """
    policy = SpecPolicy.off() if policy is None else policy
    if not isinstance(policy, SpecPolicy):
        raise ValueError(f"policy must be a SpecPolicy, got {type(policy).__name__}")
    engine = EngineConfig.create() if engine is None else engine
    if not isinstance(engine, EngineConfig):
        raise ValueError(f"engine must be an EngineConfig, got {type(engine).__name__}")
    trace = _as_trace(traffic, n_requests, seed)
    k_max = policy.max_lookahead
    if isinstance(deployment, Deployment):
        engine = engine.resolve(deployment, policy)
        longest = int((trace.prompt_tokens + trace.output_tokens).max()) + k_max + 1
        model = StepTimeModel.build(deployment, policy, engine, max_context_tokens=longest)
    elif isinstance(deployment, StepTimeModel):
        model = deployment
        if engine.kv_blocks is None:
            raise ValueError("with a ready StepTimeModel, engine.kv_blocks must be set")
        if model.max_lookahead < k_max:
            raise ValueError(
                f"the StepTimeModel tabulates lookahead up to {model.max_lookahead}, the "
                f"policy needs {k_max}"
            )
    else:
        raise ValueError(
            f"deployment must be a Deployment or a StepTimeModel, got {type(deployment).__name__}"
        )
    return _run(trace, model, policy, engine, seed, progress, check_invariants)


def _as_trace(traffic, n_requests, seed) -> Trace:
    if isinstance(traffic, Trace):
        if n_requests is not None:
            raise ValueError("n_requests is for sampling Traffic; a Trace replays all its requests")
        return traffic
    if isinstance(traffic, Traffic):
        if n_requests is None:
            raise ValueError("simulating Traffic needs n_requests (how many to sample)")
        return traffic.sample(n_requests, seed)
    raise ValueError(f"traffic must be a Trace or Traffic, got {type(traffic).__name__}")


def _run(
    trace: Trace,
    model: StepTimeModel,
    policy: SpecPolicy,
    engine: EngineConfig,
    seed: int,
    progress: bool,
    check: bool,
) -> SimulationResult:
    started = time.perf_counter()
    max_seqs = int(engine.max_num_seqs)
    budget_tokens = int(engine.max_num_batched_tokens)
    chunk_tokens = int(engine.prefill_chunk_tokens)
    block = int(engine.block_size)
    total_blocks = int(engine.kv_blocks)
    chunked = bool(engine.chunked_prefill)
    if max_seqs > budget_tokens:
        raise ValueError(
            f"max_num_seqs ({max_seqs}) must be <= max_num_batched_tokens ({budget_tokens}): "
            "every resident sequence needs a token per step"
        )
    arrival = trace.arrival_s
    prompt = trace.prompt_tokens
    output = trace.output_tokens
    n = arrival.size
    # Whole lookahead per decode batch size 0..max_seqs, from the policy's buckets.
    k_of_batch = [0] * (max_seqs + 1)
    if policy.speculator is not None:
        values = np.rint(np.asarray(policy.lookahead, np.float64)).astype(int)
        buckets = policy.bucket_of(np.arange(max_seqs + 1, dtype=np.float64))
        k_of_batch = values[buckets].tolist()
    k_max = max(k_of_batch)
    need = -(-(prompt + output + k_max) // block)
    if need.max() > total_blocks:
        i = int(np.argmax(need))
        raise ValueError(
            f"request {i} ({prompt[i]} prompt + {output[i]} output tokens) needs {need[i]} KV "
            f"blocks of {block} tokens; the whole cache holds {total_blocks}"
        )
    whole = min(chunk_tokens, budget_tokens)
    if not chunked and (prompt + output).max() > whole:
        i = int(np.argmax(prompt + output))
        raise ValueError(
            f"without chunked prefill a prompt (recomputed with its output after a "
            f"preemption) must fit the prefill budget ({whole} tokens); request {i} has "
            f"{prompt[i]} + {output[i]} tokens"
        )
    step_s = model._step_whole
    if max_seqs > model.batch_grid[-1] or budget_tokens > model.prefill_grid[-1]:
        raise ValueError(
            f"the StepTimeModel's grid (batch up to {model.batch_grid[-1]:g}, prefill up to "
            f"{model.prefill_grid[-1]:g} tokens) does not cover the engine's limits "
            f"(max_num_seqs {max_seqs}, max_num_batched_tokens {budget_tokens})"
        )
    # -survival[:k] is increasing: searchsorted(-survival[:k], -u) counts the s_j > u.
    survival_by_k = [-model.survival[:k] for k in range(model.max_lookahead + 1)]
    rng = np.random.default_rng(seed)
    # (ufunc reductions called directly: `ndarray.sum` adds a Python wrapper per call)
    add, smallest = np.add.reduce, np.minimum.reduce
    uniform_pool, uniform_at = np.zeros(0), 0  # negated uniforms, drawn in blocks

    first_token = np.full(n, np.nan)
    finish = np.full(n, np.nan)
    generated_of = np.zeros(n, np.int64)
    preempted_of = np.zeros(n, np.int64)
    finished_count = np.zeros(n, np.int64)
    arrivals = arrival.tolist()  # (Python floats: fast scalar access in the loop)

    # Decoding sequences are the first `b` entries of these arrays (kept contiguous, so a
    # step works on slices): request, tokens in the KV cache, output tokens still to emit,
    # blocks held, admission counter (preemption order). A decoding sequence has its
    # prompt (and, after a preemption, its earlier output) in the cache.
    d_req = np.zeros(max_seqs, np.int64)
    d_ctx = np.zeros(max_seqs, np.int64)
    d_rem = np.zeros(max_seqs, np.int64)
    d_blk = np.zeros(max_seqs, np.int64)
    d_adm = np.zeros(max_seqs, np.int64)
    b = 0
    # Sequences still prefilling, in admission order: [request, cached, left to prefill,
    # blocks, admission counter, output tokens still to emit].
    prefilling: list[list[int]] = []
    free_blocks = total_blocks
    admissions = 0
    waiting: collections.deque[int] = collections.deque()
    next_arrival = 0
    now = arrivals[0]
    steps = 0
    busy_s = 0.0
    decode_token_steps = 0
    in_system = 0  # waiting + resident
    in_system_area = 0.0
    done = 0
    emitted_total = 0

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n, unit="req", desc="serving replay")
    last_done = 0

    def drop_decoder(j: int) -> None:
        """Removes decoder ``j`` (the last one takes its place)."""
        nonlocal b
        b -= 1
        if j != b:
            d_req[j], d_ctx[j], d_rem[j] = d_req[b], d_ctx[b], d_rem[b]
            d_blk[j], d_adm[j] = d_blk[b], d_adm[b]

    def requeue(i: int, blocks: int, remaining: int) -> None:
        """A preempted request: blocks back, to the head of the queue, recomputed later."""
        nonlocal free_blocks
        free_blocks += blocks
        preempted_of[i] += 1
        generated_of[i] = output[i] - remaining
        waiting.appendleft(i)

    def preempt_latest() -> None:
        """Preempts the most recently admitted resident sequence (decoding or not)."""
        j = int(d_adm[:b].argmax()) if b else -1
        if prefilling and (j < 0 or prefilling[-1][4] > d_adm[j]):
            i, _, _, blocks, _, remaining = prefilling.pop()
            requeue(i, blocks, remaining)
            return
        i, blocks, remaining = int(d_req[j]), int(d_blk[j]), int(d_rem[j])
        drop_decoder(j)
        requeue(i, blocks, remaining)

    while done < n:
        # Arrivals up to now join the queue.
        while next_arrival < n and arrivals[next_arrival] <= now:
            waiting.append(next_arrival)
            next_arrival += 1
            in_system += 1
        if not waiting and not b and not prefilling:
            now = arrivals[next_arrival]  # idle until the next arrival
            continue

        budget = budget_tokens
        # 1. Decoding sequences (lookahead by their number), preempting when blocks run out.
        k = 0
        while b:
            k = k_of_batch[b]
            if k:
                k = max(min(k, budget // b - 1), 0)
            # Blocks to hold the cache plus this step's 1 + k tokens: ceil((ctx + 1 + k) / B).
            grow = np.maximum((d_ctx[:b] + (k + block)) // block - d_blk[:b], 0)
            short = int(add(grow))
            if short <= free_blocks:
                if short:
                    d_blk[:b] += grow
                    free_blocks -= short
                budget -= b * (1 + k)
                break
            preempt_latest()
        if not b:
            k = 0
        decoders = b  # this step's decode batch (prefills finishing join after it)
        # 2. Prefill chunks: running prefills first (in admission order), then admissions.
        chunk_budget = min(chunk_tokens, budget)
        scheduled = 0  # the first `scheduled` of `prefilling` run this step
        takes = []
        while scheduled < len(prefilling) and chunk_budget > 0:
            entry = prefilling[scheduled]
            take = min(entry[2], chunk_budget)
            extra = -(-(entry[1] + take) // block) - entry[3]
            # Short of blocks: preempt the latest admitted (this one or one after it; the
            # decodes and earlier chunks of this step are already scheduled).
            while extra > free_blocks and prefilling and prefilling[-1] is not entry:
                preempt_latest_prefill = prefilling.pop()
                i, _, _, blocks, _, remaining = preempt_latest_prefill
                requeue(i, blocks, remaining)
            if extra > free_blocks:  # this one is the latest: it goes back
                prefilling.pop()
                requeue(entry[0], entry[3], entry[5])
                break
            entry[3] += extra
            free_blocks -= extra
            chunk_budget -= take
            takes.append(take)
            scheduled += 1
        while waiting and b + len(prefilling) < max_seqs and chunk_budget > 0:
            i = waiting[0]
            total = int(prompt[i] + generated_of[i])  # recompute what was generated
            take = min(total, chunk_budget)
            if not chunked and take < total:
                break
            extra = -(-take // block)
            if extra > free_blocks:
                break
            waiting.popleft()
            free_blocks -= extra
            prefilling.append([i, 0, total, extra, admissions, int(output[i] - generated_of[i])])
            admissions += 1
            chunk_budget -= take
            takes.append(take)
            scheduled += 1
        prefill_tokens = sum(takes)
        if decoders == 0 and prefill_tokens == 0:
            raise RuntimeError(
                "the engine scheduled nothing with requests waiting (a scheduler bug); "
                f"free blocks {free_blocks}, resident {b + len(prefilling)}"
            )

        # 3. The step.
        mean_context = int(add(d_ctx[:b])) / b if b else 0.0
        dt = step_s(b, mean_context, prefill_tokens, k)
        end = now + dt
        # Requests arriving during the step are in the system from their arrival.
        in_system_area += in_system * dt
        j = next_arrival
        while j < n and arrivals[j] <= end:
            in_system_area += end - arrivals[j]
            j += 1
        steps += 1
        busy_s += dt
        decode_token_steps += b

        # 4. Tokens: decodes emit 1 + accepted (sampled), completed prefills their first.
        ended = []
        if b:
            remaining = d_rem[:b]
            if k:
                if uniform_at + b > uniform_pool.size:
                    uniform_pool, uniform_at = -rng.random(UNIFORM_POOL), 0
                # accepted = #{j <= k: u < survival_j}, one uniform u per sequence
                emitted = survival_by_k[k].searchsorted(uniform_pool[uniform_at : uniform_at + b])
                uniform_at += b
                emitted += 1
                np.minimum(emitted, remaining, out=emitted)
                emitted_total += int(add(emitted))
                d_ctx[:b] += emitted
                remaining -= emitted
            else:
                emitted_total += b  # (a decoding sequence has at least one token to go)
                d_ctx[:b] += 1
                remaining -= 1
            if smallest(remaining) == 0:
                # Highest index first: each removal moves the last decoder into its place.
                for j in (remaining == 0).nonzero()[0][::-1].tolist():
                    i = int(d_req[j])
                    ended.append((i, int(d_blk[j])))
                    drop_decoder(j)
        for position in range(scheduled):
            entry = prefilling[position]
            entry[1] += takes[position]
            entry[2] -= takes[position]
            if entry[2]:
                continue
            i = entry[0]
            if entry[5] == output[i]:
                first_token[i] = end
            emitted_total += 1
            entry[5] -= 1
            if entry[5] == 0:
                ended.append((i, entry[3]))
            else:
                d_req[b], d_ctx[b], d_rem[b], d_blk[b], d_adm[b] = (
                    i,
                    entry[1],
                    entry[5],
                    entry[3],
                    entry[4],
                )
                b += 1
        if scheduled:
            prefilling = [entry for entry in prefilling if entry[2]]
        for i, blocks in ended:
            finish[i] = end
            finished_count[i] += 1
            generated_of[i] = output[i]
            free_blocks += blocks
            done += 1
            in_system -= 1
        now = end
        if check:
            held = int(d_blk[:b].sum()) + sum(entry[3] for entry in prefilling)
            assert held + free_blocks == total_blocks, (held, free_blocks, total_blocks)
            assert np.all(d_blk[:b] * block >= d_ctx[:b])
            assert all(entry[3] * block >= entry[1] for entry in prefilling)
            assert b + len(prefilling) <= max_seqs
        if bar is not None and done - last_done >= 1000:
            bar.update(done - last_done)
            last_done = done
    if bar is not None:
        bar.update(done - last_done)
        bar.close()
    horizon = float(finish.max() - arrival[0])
    return SimulationResult(
        arrival_s=arrival,
        first_token_s=first_token,
        finish_s=finish,
        prompt_tokens=prompt,
        output_tokens=output,
        preemptions=preempted_of,
        finished_count=finished_count,
        generated_tokens=generated_of,
        emitted_tokens=emitted_total,
        steps=steps,
        busy_s=busy_s,
        decode_token_steps=decode_token_steps,
        mean_in_system=in_system_area / horizon if horizon > 0 else 0.0,
        kv_blocks=total_blocks,
        free_blocks_at_end=free_blocks,
        wall_s=time.perf_counter() - started,
    )
