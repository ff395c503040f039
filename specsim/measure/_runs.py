"""End-to-end runs with warm-up and repeats: plain decoding and speculative decoding.

``measure_speculative`` compiles every jitted pass with one untimed run, then repeats
the generation. It reports two throughputs: ``tokens_per_s``, the median over
repeats of generated tokens over elapsed time, and ``steady_tokens_per_s``, the
tokens per iteration (pooled over repeats) over the median iteration time, which
is insensitive to bursts of other load on a shared machine and equals the former
on an idle one. Acceptance is pooled over all repeats.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from ._drafts import layer_skip_draft
from ._model import Model, build_model
from ._speculative import generate, speculative_generate

__all__ = [
    "SpeculativeMeasurement",
    "SpeculativeSession",
    "measure_decoding",
    "measure_speculative",
    "measure_speculative_configs",
    "speculative_models",
    "summarize_decoding",
    "summarize_speculative",
]


@dataclasses.dataclass(frozen=True)
class SpeculativeMeasurement:
    """Tokens/s and acceptance of repeated speculative (or plain) decoding runs.

    Attributes:
        tokens_per_s: median over repeats of tokens / elapsed time, tokens/s (all sequences).
        tokens_per_s_p10, tokens_per_s_p90: its spread over repeats.
        steady_tokens_per_s: batch x tokens per iteration / median iteration time.
        iteration_s: median time of one iteration (one decode step when plain), s.
        iteration_s_p10, iteration_s_p90: its spread over all iterations.
        tokens_per_step: tokens emitted per sequence per iteration (1 for plain decoding).
        alpha: accepted / judged draft tokens over all repeats (nan for plain decoding).
        positional_alpha: per-position acceptance over all repeats.
        generated_tokens: tokens generated per repeat (all sequences), mean.
        repeats: timed repeats.
    """

    tokens_per_s: float
    tokens_per_s_p10: float
    tokens_per_s_p90: float
    steady_tokens_per_s: float
    iteration_s: float
    iteration_s_p10: float
    iteration_s_p90: float
    tokens_per_step: float
    alpha: float
    positional_alpha: tuple
    generated_tokens: float
    repeats: int


def _prompt(batch: int, prompt_tokens: int, vocab: int, seed: int):
    key = jax.random.key(seed + 7919)
    return jax.random.randint(key, (batch, prompt_tokens), 0, vocab)


def _percentiles(values) -> tuple[float, float, float]:
    p10, median, p90 = np.percentile(np.asarray(values, dtype=np.float64), [10, 50, 90])
    return float(median), float(p10), float(p90)


def _check_repeats(repeats: int) -> None:
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")


def summarize_decoding(runs, batch: int) -> SpeculativeMeasurement:
    """Pools repeated `generate` results of one configuration (see `measure_decoding`)."""
    median, p10, p90 = _percentiles([r.tokens_per_s for r in runs])
    step, step_p10, step_p90 = _percentiles(np.concatenate([r.step_s for r in runs]))
    return SpeculativeMeasurement(
        tokens_per_s=median,
        tokens_per_s_p10=p10,
        tokens_per_s_p90=p90,
        steady_tokens_per_s=batch / step,
        iteration_s=step,
        iteration_s_p10=step_p10,
        iteration_s_p90=step_p90,
        tokens_per_step=1.0,
        alpha=float("nan"),
        positional_alpha=(),
        generated_tokens=float(np.mean([r.generated_tokens for r in runs])),
        repeats=len(runs),
    )


def summarize_speculative(runs, batch: int) -> SpeculativeMeasurement:
    """Pools repeated `speculative_generate` results of one configuration."""
    median, p10, p90 = _percentiles([r.tokens_per_s for r in runs])
    iteration, iteration_p10, iteration_p90 = _percentiles(
        np.concatenate([r.iteration_s for r in runs])
    )
    accepted = np.sum([r.accepted_counts for r in runs], axis=0, dtype=np.float64)
    judged = np.sum([r.judged_counts for r in runs], axis=0, dtype=np.float64)
    tokens = float(sum(r.generated_tokens for r in runs))
    tokens_per_step = tokens / float(sum(r.iterations * batch for r in runs))
    return SpeculativeMeasurement(
        tokens_per_s=median,
        tokens_per_s_p10=p10,
        tokens_per_s_p90=p90,
        steady_tokens_per_s=batch * tokens_per_step / iteration,
        iteration_s=iteration,
        iteration_s_p10=iteration_p10,
        iteration_s_p90=iteration_p90,
        tokens_per_step=tokens_per_step,
        alpha=float(accepted.sum() / judged.sum()) if judged.sum() else float("nan"),
        positional_alpha=tuple(
            float(a / j) if j else float("nan") for a, j in zip(accepted, judged, strict=True)
        ),
        generated_tokens=tokens / len(runs),
        repeats=len(runs),
    )


def measure_decoding(
    model: Model,
    batch: int,
    prompt_tokens: int,
    new_tokens: int,
    *,
    repeats: int = 5,
    seed: int = 0,
    temperature: float = 1.0,
    clock: str = "wall",
) -> SpeculativeMeasurement:
    """Plain autoregressive decoding tokens/s (prefill excluded), after one warm-up run.

    Examples:
        >>> from specsim.measure import build_model, tiny_spec
        >>> m = measure_decoding(build_model(tiny_spec()), 1, 4, 8, repeats=2)
        >>> m.tokens_per_step
        1.0
    """
    _check_repeats(repeats)
    prompt = _prompt(batch, prompt_tokens, model.config.vocab, seed)
    kwargs = dict(temperature=temperature, clock=clock)
    generate(model, prompt, new_tokens, seed=seed, **kwargs)
    runs = [generate(model, prompt, new_tokens, seed=seed + r, **kwargs) for r in range(repeats)]
    return summarize_decoding(runs, batch)


def measure_speculative(
    target: Model,
    draft: Model,
    batch: int,
    prompt_tokens: int,
    new_tokens: int,
    gamma: int,
    *,
    repeats: int = 5,
    seed: int = 0,
    temperature: float = 1.0,
    clock: str = "wall",
) -> SpeculativeMeasurement:
    """Speculative decoding tokens/s and acceptance, after one warm-up run.

    Examples:
        >>> from specsim.measure import build_model, layer_skip_draft, tiny_spec
        >>> target = build_model(tiny_spec(n_layers=2))
        >>> m = measure_speculative(target, layer_skip_draft(target, 1), 1, 4, 16, 3, repeats=2)
        >>> 0.0 <= m.alpha <= 1.0
        True
    """
    _check_repeats(repeats)
    prompt = _prompt(batch, prompt_tokens, target.config.vocab, seed)
    kwargs = dict(temperature=temperature, clock=clock)
    speculative_generate(target, draft, prompt, new_tokens, gamma, seed=seed, **kwargs)
    runs = [
        speculative_generate(target, draft, prompt, new_tokens, gamma, seed=seed + r, **kwargs)
        for r in range(repeats)
    ]
    return summarize_speculative(runs, batch)


class SpeculativeSession:
    """Speculative and plain decoding of several ``SpeculativeConfig``, one round at a time.

    The models are built, compiled and warmed up on construction; every `run_round` then
    runs each configuration's speculative and plain decoding once, in a shuffled order,
    so that changes of the machine's load touch every configuration alike. Rounds can be
    spread over a longer measurement (``specsim validate`` runs them between the sweeps
    of the step-time grid, so both see the same states of a shared machine).
    """

    def __init__(self, configs, *, seed: int = 0, clock: str = "wall"):
        self.seed, self.clock = seed, clock
        self.configs = list(configs)
        self._prepared = []
        for config in self.configs:
            target, draft = speculative_models(config, seed)
            prompt = _prompt(config.batch, config.prompt_tokens, target.config.vocab, seed)
            self._prepared.append((config, target, draft, prompt))
        self._runs = [([], []) for _ in self.configs]
        self._order = np.random.default_rng(seed)
        self.rounds = 0
        for index in range(len(self.configs)):  # compile and warm up
            self._run(index, 0)

    def _run(self, index, repeat):
        config, target, draft, prompt = self._prepared[index]
        kwargs = dict(seed=self.seed + repeat, temperature=config.temperature, clock=self.clock)
        sd = speculative_generate(target, draft, prompt, config.new_tokens, config.gamma, **kwargs)
        plain = generate(target, prompt, config.new_tokens, **kwargs)
        return sd, plain

    def run_round(self, _=None) -> None:
        """Runs every configuration once (speculative, then plain), in a shuffled order."""
        for index in self._order.permutation(len(self.configs)):
            sd, plain = self._run(index, self.rounds)
            self._runs[index][0].append(sd)
            self._runs[index][1].append(plain)
        self.rounds += 1

    def results(self) -> list[tuple[SpeculativeMeasurement, SpeculativeMeasurement]]:
        """``[(speculative, plain), ...]`` over the rounds run, in the order of ``configs``."""
        if not self.rounds:
            raise ValueError("no rounds were run")
        return [
            (summarize_speculative(sd, config.batch), summarize_decoding(plain, config.batch))
            for (sd, plain), config in zip(self._runs, self.configs, strict=True)
        ]


def measure_speculative_configs(
    configs, *, repeats: int = 5, seed: int = 0, clock: str = "wall", progress: bool = False
) -> list[tuple[SpeculativeMeasurement, SpeculativeMeasurement]]:
    """Speculative and plain decoding of several ``SpeculativeConfig``, interleaved.

    Every configuration is compiled and warmed up first; then ``repeats`` rounds run
    each configuration's speculative and plain decoding once, in a shuffled order (see
    `SpeculativeSession`).

    Returns:
        ``[(speculative, plain), ...]`` in the order of ``configs``.
    """
    from tqdm import tqdm

    _check_repeats(repeats)
    session = SpeculativeSession(configs, seed=seed, clock=clock)
    for _ in tqdm(range(repeats), desc="decoding", disable=not progress, leave=False):
        session.run_round()
    return session.results()


def speculative_models(config, seed: int = 0) -> tuple[Model, Model]:
    """Target (with the config's acceptance knobs) and layer-skipping draft of a
    ``SpeculativeConfig``."""
    target = build_model(
        dataclasses.replace(
            config.target, logit_scale=config.logit_scale, residual_scale=config.residual_scale
        ),
        seed,
    )
    return target, layer_skip_draft(target, config.draft_layers)
