"""Timing harness: compile and warm up first, then repeat, and report medians with spread.

A *step* is one jitted call that threads a state (a KV cache donated in place, as
in a serving loop). ``time_calls`` times ``repeats`` samples of
``calls_per_sample`` consecutive calls each, blocking on the result at the end
of every sample, after one compiling call and ``warmup`` more. ``measure_step_times``
runs that for a grid of forward passes (phase, model, batch, new tokens,
context) and returns a tidy DataFrame, the input of `specsim.calibrate`.

Phases:

* ``prefill``: forward over ``new_tokens`` prompt tokens after ``context`` cached ones,
  sampling the next token;
* ``decode``: the same with one new token (a plain decode step, or a draft step);
* ``verify``: forward over ``new_tokens = gamma + 1`` tokens and the rejection
  sampling of speculative decoding.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from ._clock import CLOCKS, clock_function
from ._device import check_fits
from ._model import Model, ModelConfig, build_model, init_cache
from ._speculative import sample_step, verify_tokens

PHASES = ("prefill", "decode", "verify")

__all__ = [
    "CLOCKS",
    "PHASES",
    "MeasurementPoint",
    "Timing",
    "measure_step_times",
    "time_calls",
]


@struct.dataclass
class Timing:
    """Distribution of a step's wall time over repeated samples (all in s).

    Attributes:
        median_s: median.
        p10_s, p90_s: 10th and 90th percentiles.
        q25_s, q75_s: quartiles (``q75_s - q25_s`` is the interquartile range).
        compile_s: the first call (tracing, compilation and one run), excluded above.
        repeats: samples behind the statistics.
    """

    median_s: float
    p10_s: float
    p90_s: float
    q25_s: float
    q75_s: float
    compile_s: float
    repeats: int = struct.field(pytree_node=False)

    @property
    def iqr_s(self) -> float:
        """Interquartile range, s."""
        return self.q75_s - self.q25_s

    @property
    def relative_spread(self) -> float:
        """``(p90 - p10) / median``: how noisy the measurement is."""
        return (self.p90_s - self.p10_s) / self.median_s

    def to_dict(self) -> dict[str, float]:
        """Plain numbers keyed by field name."""
        return {f.name: float(getattr(self, f.name)) for f in dataclasses.fields(self)}


def wait(state):
    """Blocks until ``state`` is computed; returns it.

    Waits on its smallest array only: all outputs of one jitted call become ready
    together, and checking every leaf of a large pytree (a KV cache has two per layer)
    would add host overhead to each timed step that a decoding loop does not pay.
    """
    leaves = [leaf for leaf in jax.tree.leaves(state) if hasattr(leaf, "block_until_ready")]
    if leaves:
        min(leaves, key=lambda leaf: leaf.size).block_until_ready()
    return state


def time_calls(
    step: Callable[[Any], Any],
    state: Any,
    *,
    repeats: int = 20,
    warmup: int = 3,
    calls_per_sample: int = 1,
    clock: str = "wall",
) -> tuple[Timing, Any]:
    """Times ``state = step(state)``, excluding compilation and warm-up.

    A sample ends when the step's result is ready (see `wait`).

    Args:
        step: a (jitted) function from state to state.
        state: its initial state (may be donated by ``step``).
        repeats: timed samples, >= 1.
        warmup: untimed calls after the compiling one.
        calls_per_sample: consecutive calls per sample (time is per call).
        clock: ``"wall"`` (``time.perf_counter``) or ``"process"`` (CPU time of this
            process, see ``CLOCKS``).

    Returns:
        ``(Timing, final_state)``.

    Raises:
        ValueError: ``repeats`` or ``calls_per_sample`` below 1, or ``warmup`` below 0.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> timing, _ = time_calls(jax.jit(lambda x: x + 1), jnp.zeros(3), repeats=5)
        >>> timing.median_s > 0
        True
    """
    if repeats < 1 or calls_per_sample < 1 or warmup < 0:
        raise ValueError(
            f"need repeats >= 1, calls_per_sample >= 1, warmup >= 0; got {repeats}, "
            f"{calls_per_sample}, {warmup}"
        )
    now = clock_function(clock)
    start = time.perf_counter()
    state = wait(step(state))
    compile_s = time.perf_counter() - start
    for _ in range(warmup):
        state = step(state)
    wait(state)
    samples = np.empty(repeats)
    for r in range(repeats):
        start = now()
        for _ in range(calls_per_sample):
            state = step(state)
        wait(state)
        samples[r] = (now() - start) / calls_per_sample
    p10, q25, median, q75, p90 = np.percentile(samples, [10, 25, 50, 75, 90])
    timing = Timing(
        median_s=float(median),
        p10_s=float(p10),
        p90_s=float(p90),
        q25_s=float(q25),
        q75_s=float(q75),
        compile_s=compile_s,
        repeats=repeats,
    )
    return timing, state


@dataclasses.dataclass(frozen=True)
class MeasurementPoint:
    """One forward pass to time.

    Attributes:
        config: the network.
        batch: sequences.
        new_tokens: tokens per sequence in the pass (``gamma + 1`` for ``verify``).
        context: tokens already in each sequence's KV cache.
        phase: ``"prefill"``, ``"decode"`` or ``"verify"``.
    """

    config: ModelConfig
    batch: int
    new_tokens: int
    context: int
    phase: str = "decode"

    def __post_init__(self):
        if self.phase not in PHASES:
            raise ValueError(f"phase must be one of {PHASES}, got {self.phase!r}")
        if self.batch < 1 or self.new_tokens < 1 or self.context < 0:
            raise ValueError(
                f"need batch >= 1, new_tokens >= 1, context >= 0; got {self.batch}, "
                f"{self.new_tokens}, {self.context}"
            )
        if self.phase == "verify" and self.new_tokens < 2:
            raise ValueError("a verify pass needs new_tokens = gamma + 1 >= 2")
        if self.phase == "decode" and self.new_tokens != 1:
            raise ValueError("a decode pass has new_tokens = 1")

    @property
    def cache_len(self) -> int:
        """KV-cache capacity of the measurement: exactly context + new tokens."""
        return self.context + self.new_tokens

    def required_bytes(self) -> int:
        """Weights and KV cache this point allocates."""
        return self.config.parameter_bytes + self.config.cache_bytes(self.batch, self.cache_len)


@functools.partial(jax.jit, static_argnames=("temperature",), donate_argnames=("state",))
def _forward_step(model, state, temperature):
    cache, tokens, key = state
    context = cache.positions
    key, sub = jax.random.split(key)
    cache, token, _ = sample_step(model, cache, tokens, sub, temperature)
    # Next call: the same pass again (same context), fed with the sampled token.
    tokens = jnp.broadcast_to(token[:, None], tokens.shape)
    return cache.replace(positions=context), tokens, key


@functools.partial(jax.jit, static_argnames=("temperature",), donate_argnames=("state",))
def _verify_step(model, state, temperature):
    cache, tokens, draft_probs, key = state
    context = cache.positions
    key, sub = jax.random.split(key)
    cache, _, emitted = verify_tokens(model, cache, tokens, draft_probs, sub, temperature)
    return cache.replace(positions=context), emitted, draft_probs, key


def _initial_state(model: Model, point: MeasurementPoint, seed: int):
    cfg = model.config
    key = jax.random.key(seed)
    cache = init_cache(cfg, point.batch, point.cache_len)
    cache = cache.replace(positions=jnp.full((point.batch,), point.context, jnp.int32))
    tokens = jax.random.randint(key, (point.batch, point.new_tokens), 0, cfg.vocab, jnp.int32)
    if point.phase != "verify":
        return cache, tokens, key
    gamma = point.new_tokens - 1
    logits = jax.random.normal(key, (point.batch, gamma, cfg.vocab))
    return cache, tokens, jax.nn.softmax(logits, axis=-1), key


def _step_function(model: Model, point: MeasurementPoint, temperature: float):
    kernel = _verify_step if point.phase == "verify" else _forward_step
    return functools.partial(kernel, model, temperature=temperature)


def time_point(
    model: Model,
    point: MeasurementPoint,
    *,
    repeats: int = 20,
    warmup: int = 3,
    seed: int = 0,
    temperature: float = 1.0,
    clock: str = "wall",
    calls_per_sample: int = 1,
) -> Timing:
    """Times one forward pass of ``model`` as described by ``point`` (see `time_calls`).

    Raises:
        ValueError: the weights and cache do not fit in the device's free memory.
    """
    check_fits(point.required_bytes(), what=f"measurement point {point}")
    step = _step_function(model, point, temperature)
    state = _initial_state(model, point, seed)
    timing, _ = time_calls(
        step,
        state,
        repeats=repeats,
        warmup=warmup,
        clock=clock,
        calls_per_sample=calls_per_sample,
    )
    return timing


def _timing_from_samples(samples, compile_s: float) -> Timing:
    p10, q25, median, q75, p90 = np.percentile(np.asarray(samples), [10, 25, 50, 75, 90])
    return Timing(
        median_s=float(median),
        p10_s=float(p10),
        p90_s=float(p90),
        q25_s=float(q25),
        q75_s=float(q75),
        compile_s=float(compile_s),
        repeats=len(samples),
    )


def measure_step_times(
    points: Iterable[MeasurementPoint],
    *,
    repeats: int = 20,
    warmup: int = 3,
    seed: int = 0,
    temperature: float = 1.0,
    progress: bool = True,
    clock: str = "wall",
    rounds: int = 1,
    calls_per_sample: int = 4,
    after_round=None,
):
    """Times every point of a grid on the default device.

    With ``rounds > 1`` every point is compiled and warmed up first, then the grid is
    swept ``rounds`` times in a shuffled order, each sweep taking one untimed call (to
    bring the point's weights back into the caches) and ``ceil(repeats / rounds)``
    samples of every point. Slow drifts of the machine (other
    processes, clocks, thermals) then touch every point alike instead of biasing the
    points measured while they lasted, at the cost of keeping every point's state (KV
    cache) in memory at once.

    Args:
        points: the forward passes to time (models are built once per distinct config,
            with weights from ``seed``).
        repeats: timed samples per point (one call each), >= 1.
        warmup: untimed calls per point after the compiling one.
        seed: PRNG seed of weights, inputs and the sweep order.
        temperature: sampling temperature of the sampling epilogue (0 = argmax).
        progress: show a tqdm progress bar (on a terminal only).
        clock: ``"wall"`` or ``"process"`` (see ``CLOCKS``).
        rounds: interleaved sweeps (1 = each point timed once, start to finish).
        calls_per_sample: consecutive calls per sample, the host dispatching each while
            the previous one runs, as in a decoding loop; the time is per call.
        after_round: called with the round's index after every interleaved sweep (with
            ``rounds > 1``), e.g. to measure something else in the same time window.

    Returns:
        pandas DataFrame, one row per point: ``phase``, the architecture columns of
        ``ModelConfig`` (``n_layers`` ... ``vocab``, ``gated_mlp``, ``tied_embeddings``,
        ``dtype``), ``batch``, ``new_tokens``, ``context``, and the `Timing` fields.

    Raises:
        ValueError: an empty grid, bad counts, or a point that does not fit in memory
            (checked for every point, and for all of them together when interleaving,
            before anything is allocated).

    Examples:
        >>> from specsim.measure import ModelConfig, MeasurementPoint, measure_step_times
        >>> cfg = ModelConfig(n_layers=1, d_model=32, n_heads=4, n_kv_heads=4, head_dim=8,
        ...                   d_ff=64, vocab=64)
        >>> frame = measure_step_times([MeasurementPoint(cfg, 1, 1, 8)], repeats=3,
        ...                            progress=False)
        >>> frame[["phase", "batch", "new_tokens", "context"]].to_dict("records")
        [{'phase': 'decode', 'batch': 1, 'new_tokens': 1, 'context': 8}]
    """
    import pandas as pd
    from tqdm import tqdm

    points = list(points)
    if not points:
        raise ValueError("the measurement grid is empty")
    if repeats < 1 or rounds < 1 or warmup < 0 or calls_per_sample < 1:
        raise ValueError(
            "need repeats, rounds, calls_per_sample >= 1 and warmup >= 0; got "
            f"{repeats}, {rounds}, {calls_per_sample}, {warmup}"
        )
    clock_function(clock)
    for point in points:
        if not isinstance(point, MeasurementPoint):
            raise ValueError(f"grid entries must be MeasurementPoint, got {type(point).__name__}")
        check_fits(point.required_bytes(), what=f"measurement point {point}")
    models: dict[ModelConfig, Model] = {}

    def model_of(config):
        if config not in models:
            models[config] = build_model(config, seed)
        return models[config]

    rows = []
    if rounds == 1:
        for point in tqdm(
            points, desc="measuring", disable=None if progress else True, leave=False
        ):
            timing = time_point(
                model_of(point.config),
                point,
                repeats=repeats,
                warmup=warmup,
                seed=seed,
                temperature=temperature,
                clock=clock,
                calls_per_sample=calls_per_sample,
            )
            rows.append(
                {**config_columns(point.config), **_point_columns(point), **timing.to_dict()}
            )
        return pd.DataFrame(rows)

    caches = sum(p.config.cache_bytes(p.batch, p.cache_len) for p in points)
    weights = sum(c.parameter_bytes for c in {p.config for p in points})
    check_fits(caches + weights, what=f"all {len(points)} points of the grid at once")
    now = clock_function(clock)
    steps, states, compile_s = [], [], []
    for point in tqdm(points, desc="compiling", disable=None if progress else True, leave=False):
        step = _step_function(model_of(point.config), point, temperature)
        start = time.perf_counter()
        state = jax.block_until_ready(step(_initial_state(models[point.config], point, seed)))
        compile_s.append(time.perf_counter() - start)
        for _ in range(warmup):
            state = step(state)
        steps.append(step)
        states.append(jax.block_until_ready(state))
    samples: list[list[float]] = [[] for _ in points]
    per_round = -(-repeats // rounds)
    order_rng = np.random.default_rng(seed)
    bar = tqdm(
        total=rounds * len(points),
        desc="measuring",
        disable=None if progress else True,
        leave=False,
    )
    for round_index in range(rounds):
        for i in order_rng.permutation(len(points)):
            # One untimed call first: the previous point evicted this one's weights from
            # the caches, and a decoding loop runs with them hot.
            states[i] = wait(steps[i](states[i]))
            for _ in range(per_round):
                start = now()
                for _ in range(calls_per_sample):
                    states[i] = steps[i](states[i])
                wait(states[i])
                samples[i].append((now() - start) / calls_per_sample)
            bar.update()
        if after_round is not None:
            after_round(round_index)
    bar.close()
    for point, times, first in zip(points, samples, compile_s, strict=True):
        timing = _timing_from_samples(times, first)
        rows.append({**config_columns(point.config), **_point_columns(point), **timing.to_dict()})
    return pd.DataFrame(rows)


ARCHITECTURE_COLUMNS = (
    "n_layers",
    "d_model",
    "n_heads",
    "n_kv_heads",
    "head_dim",
    "d_ff",
    "vocab",
    "gated_mlp",
    "tied_embeddings",
    "dtype",
)
# Mixture-of-experts columns: written for every network, 0 (absent in older tables) = dense.
MOE_COLUMNS = ("n_moe_layers", "n_experts", "experts_per_token", "d_ff_expert")


def config_columns(config: ModelConfig) -> dict[str, Any]:
    """The architecture of ``config`` as table columns (``ARCHITECTURE_COLUMNS`` and
    ``MOE_COLUMNS``)."""
    columns = {name: getattr(config, name) for name in ARCHITECTURE_COLUMNS[:-1]}
    columns["dtype"] = "bf16" if jnp.dtype(config.param_dtype) == jnp.bfloat16 else "fp32"
    columns.update({name: getattr(config, name) for name in MOE_COLUMNS})
    return columns


def config_from_columns(row) -> ModelConfig:
    """Inverse of `config_columns` (for a DataFrame row or mapping)."""
    dtype = jnp.bfloat16 if row["dtype"] == "bf16" else jnp.float32
    moe = {name: int(row[name]) for name in MOE_COLUMNS if name in row and row[name] == row[name]}
    return ModelConfig(
        **{name: int(row[name]) for name in ARCHITECTURE_COLUMNS[:7]},
        gated_mlp=bool(row["gated_mlp"]),
        tied_embeddings=bool(row["tied_embeddings"]),
        param_dtype=dtype,
        kv_dtype=dtype,
        activation_dtype=dtype,
        **moe,
    )


def _point_columns(point: MeasurementPoint) -> dict[str, Any]:
    return {
        "phase": point.phase,
        "batch": point.batch,
        "new_tokens": point.new_tokens,
        "context": point.context,
    }


def grid(
    configs: Sequence[ModelConfig],
    batches: Sequence[int],
    contexts: Sequence[int],
    gammas: Sequence[int] = (4,),
    prompt_tokens: Sequence[int] = (),
) -> list[MeasurementPoint]:
    """The full product grid: decode and verify at every context, prefill of each prompt.

    Examples:
        >>> from specsim.measure import ModelConfig
        >>> cfg = ModelConfig(n_layers=1, d_model=32, n_heads=4, n_kv_heads=4, head_dim=8,
        ...                   d_ff=64, vocab=64)
        >>> len(grid([cfg], batches=[1, 2], contexts=[16], gammas=[3], prompt_tokens=[32]))
        6
    """
    points = []
    for config in configs:
        for batch in batches:
            for context in contexts:
                points.append(MeasurementPoint(config, batch, 1, context, "decode"))
                for gamma in gammas:
                    points.append(MeasurementPoint(config, batch, gamma + 1, context, "verify"))
            for prompt in prompt_tokens:
                points.append(MeasurementPoint(config, batch, prompt, 0, "prefill"))
    return points
