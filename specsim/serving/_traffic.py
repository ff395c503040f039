"""Traffic: when requests arrive and how long their prompts and outputs are.

Two views of the same traffic:

* `Traffic` (a pytree, traced leaves): a Poisson arrival rate and the prompt and output
  length distributions (`LengthDistribution`). The steady-state model reads its moments;
  `Traffic.sample` draws a `Trace` from it for the discrete-event simulator.
* `Trace` (NumPy arrays, one entry per request, arrival-sorted): what the discrete-event
  simulator replays. `load_trace` reads one from a CSV or JSON-lines file with the columns
  ``arrival_s, prompt_tokens, output_tokens``; `Traffic.from_trace` summarises one (rate =
  requests over the arrival span, empirical lengths).

Lengths are whole tokens >= 1. A lognormal length is parametrised by its *mean* in tokens
and the standard deviation ``sigma`` of its logarithm (``mu = log(mean) - sigma**2 / 2``),
then rounded to the nearest whole token (at least 1).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import warnings
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import struct

from .._limits import MAX_TOKENS
from .._numerics import concrete

__all__ = ["TRACE_COLUMNS", "LengthDistribution", "Trace", "Traffic", "load_trace"]

TRACE_COLUMNS = ("arrival_s", "prompt_tokens", "output_tokens")
LENGTH_KINDS = ("fixed", "lognormal", "empirical")


@struct.dataclass
class LengthDistribution:
    """Distribution of a token count (prompt or output length) per request.

    Attributes:
        kind: ``"fixed"``, ``"lognormal"`` or ``"empirical"`` (static).
        mean_tokens: mean length, tokens (traced; for ``"empirical"`` the sample mean).
        sigma: standard deviation of ``log(length)`` for ``"lognormal"`` (0 otherwise).
        tokens: the sample of an ``"empirical"`` distribution (whole tokens), else empty.

    Examples:
        >>> import numpy as np
        >>> d = LengthDistribution.lognormal(mean_tokens=512, sigma=0.5)
        >>> lengths = d.sample(np.random.default_rng(0), 100_000)
        >>> round(float(lengths.mean()) / 512, 2)
        1.0
        >>> LengthDistribution.fixed(128).sample(np.random.default_rng(0), 3).tolist()
        [128, 128, 128]
    """

    mean_tokens: Any
    sigma: Any
    tokens: Any
    kind: str = struct.field(pytree_node=False, default="fixed")

    @classmethod
    def fixed(cls, tokens: float) -> LengthDistribution:
        """Every request has ``tokens`` tokens (a whole number >= 1)."""
        _check_length("tokens", tokens)
        return cls(
            mean_tokens=jnp.asarray(float(tokens), jnp.float32),
            sigma=jnp.zeros((), jnp.float32),
            tokens=np.zeros(0, np.int64),
            kind="fixed",
        )

    @classmethod
    def lognormal(cls, mean_tokens: float, sigma: float) -> LengthDistribution:
        """Lognormal with mean ``mean_tokens`` (>= 1) and log-space spread ``sigma`` >= 0."""
        _check_number("mean_tokens", mean_tokens, lambda v: v >= 1, ">= 1")
        _check_number("sigma", sigma, lambda v: 0 <= v <= 4, "in [0, 4]")
        return cls(
            mean_tokens=jnp.asarray(float(mean_tokens), jnp.float32),
            sigma=jnp.asarray(float(sigma), jnp.float32),
            tokens=np.zeros(0, np.int64),
            kind="lognormal",
        )

    @classmethod
    def empirical(cls, tokens) -> LengthDistribution:
        """Resampling of observed lengths (whole numbers >= 1, at least one)."""
        values = _whole_tokens("tokens", np.asarray(tokens))
        if values.size == 0:
            raise ValueError("an empirical length distribution needs at least one length")
        return cls(
            mean_tokens=jnp.asarray(values.mean(), jnp.float32),
            sigma=jnp.zeros((), jnp.float32),
            tokens=values,
            kind="empirical",
        )

    @property
    def second_moment_tokens2(self):
        """E[length^2], tokens^2 (lognormal: ``mean^2 exp(sigma^2)``; rounding ignored)."""
        if self.kind == "empirical":
            return jnp.asarray(np.mean(np.asarray(self.tokens, np.float64) ** 2), jnp.float32)
        return self.mean_tokens**2 * jnp.exp(self.sigma**2)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` lengths (int64, >= 1) drawn with ``rng``."""
        if self.kind == "fixed":
            return np.full(n, round(float(self.mean_tokens)), np.int64)
        if self.kind == "empirical":
            return rng.choice(np.asarray(self.tokens, np.int64), size=n, replace=True)
        sigma = float(self.sigma)
        mu = math.log(float(self.mean_tokens)) - sigma**2 / 2.0
        return np.maximum(np.rint(rng.lognormal(mu, sigma, n)), 1).astype(np.int64)


@dataclasses.dataclass(frozen=True)
class Trace:
    """Requests to replay, sorted by arrival (NumPy arrays of equal length).

    Attributes:
        arrival_s: arrival times, s (finite, >= 0, non-decreasing).
        prompt_tokens: prompt length of each request (int64, >= 1).
        output_tokens: output length of each request (int64, >= 1).

    Examples:
        >>> trace = Trace.create([0.0, 0.5, 0.5], [10, 20, 30], [5, 5, 1])
        >>> len(trace), trace.duration_s
        (3, 0.5)
    """

    arrival_s: np.ndarray
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray

    @classmethod
    def create(cls, arrival_s, prompt_tokens, output_tokens, *, where: str = "trace") -> Trace:
        """A validated trace (``ValueError`` naming the first problem, prefixed by ``where``)."""
        arrival = np.asarray(arrival_s)
        columns = {"arrival_s": arrival, "prompt_tokens": prompt_tokens}
        columns["output_tokens"] = output_tokens
        lengths = {name: np.shape(value) for name, value in columns.items()}
        if any(len(shape) != 1 for shape in lengths.values()) or len(set(lengths.values())) != 1:
            raise ValueError(f"{where}: columns must be 1-D of one length, got {lengths}")
        if arrival.size == 0:
            raise ValueError(f"{where}: no requests (an empty trace)")
        try:
            arrival = arrival.astype(np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"{where}: arrival_s must be numbers (seconds)") from None
        bad = np.flatnonzero(~np.isfinite(arrival) | (arrival < 0))
        if bad.size:
            raise ValueError(
                f"{where}: arrival_s must be finite and >= 0; "
                f"request {bad[0]} has {arrival[bad[0]]}"
            )
        unsorted = np.flatnonzero(np.diff(arrival) < 0)
        if unsorted.size:
            i = unsorted[0] + 1
            raise ValueError(
                f"{where}: arrival_s must be sorted (non-decreasing); request {i} arrives at "
                f"{arrival[i]} s, before request {i - 1} at {arrival[i - 1]} s"
            )
        return cls(
            arrival_s=arrival,
            prompt_tokens=_whole_tokens("prompt_tokens", np.asarray(prompt_tokens), where),
            output_tokens=_whole_tokens("output_tokens", np.asarray(output_tokens), where),
        )

    def __len__(self) -> int:
        return int(self.arrival_s.size)

    @property
    def duration_s(self) -> float:
        """Time from the first arrival to the last, s."""
        return float(self.arrival_s[-1] - self.arrival_s[0])

    def shard(self, start: int, stop: int) -> Trace:
        """Requests ``start:stop`` (arrival times kept as they are)."""
        return Trace(
            self.arrival_s[start:stop],
            self.prompt_tokens[start:stop],
            self.output_tokens[start:stop],
        )

    def save(self, path: str | os.PathLike) -> None:
        """Writes a ``.csv`` or ``.jsonl`` file that `load_trace` reads back."""
        import pandas as pd

        frame = pd.DataFrame({name: getattr(self, name) for name in TRACE_COLUMNS})
        path = Path(path)
        if path.suffix == ".csv":
            frame.to_csv(path, index=False, float_format="%.17g")
        elif path.suffix in (".jsonl", ".json"):
            frame.to_json(path, orient="records", lines=True, double_precision=15)
        else:
            raise ValueError(f"{path}: a trace is a .csv or .jsonl file")


def load_trace(path: str | os.PathLike) -> Trace:
    """Reads a request trace from CSV (with a header) or JSON lines.

    Columns (exactly these): ``arrival_s`` (seconds, non-decreasing, >= 0),
    ``prompt_tokens`` and ``output_tokens`` (whole numbers >= 1).

    Raises:
        ValueError: a missing file, an unknown suffix, unknown or missing columns, no rows,
            unsorted or negative arrivals, or token counts that are not whole numbers >= 1,
            each as one line naming the file and the problem.

    Examples:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "trace.csv"
        >>> _ = path.write_text("arrival_s,prompt_tokens,output_tokens\\n0.0,12,3\\n0.25,7,9\\n")
        >>> load_trace(path).output_tokens.tolist()
        [3, 9]
    """
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such trace file")
    try:
        if path.suffix == ".csv":
            # index_col=False: a row with more fields than the header is an error, not a
            # first column silently taken as the index (which shifts every value by one).
            with warnings.catch_warnings():
                warnings.simplefilter("error", pd.errors.ParserWarning)
                frame = pd.read_csv(path, index_col=False)
        elif path.suffix in (".jsonl", ".json"):
            frame = _read_jsonl(path)
        else:
            raise ValueError(f"{path}: a trace is a .csv or .jsonl file, got {path.suffix!r}")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, pd.errors.ParserWarning) as error:
        if isinstance(error, pd.errors.EmptyDataError):
            raise ValueError(f"{path}: empty trace (no header, no requests)") from None
        if isinstance(error, pd.errors.ParserWarning):
            raise ValueError(
                f"{path}: rows have more fields than the header; valid: one value per "
                f"column, {', '.join(TRACE_COLUMNS)}"
            ) from None
        raise ValueError(f"{path}: unreadable: {str(error).splitlines()[0]}") from None
    unknown = sorted(set(frame.columns) - set(TRACE_COLUMNS))
    missing = [c for c in TRACE_COLUMNS if c not in frame.columns]
    if unknown or missing:
        raise ValueError(
            f"{path}: columns must be exactly {', '.join(TRACE_COLUMNS)}; "
            + "; ".join(
                part
                for part in (
                    f"unknown: {', '.join(map(str, unknown))}" if unknown else "",
                    f"missing: {', '.join(missing)}" if missing else "",
                )
                if part
            )
        )
    return Trace.create(*(frame[c].to_numpy() for c in TRACE_COLUMNS), where=str(path))


def _read_jsonl(path: Path):
    """One JSON object per line (blank lines skipped), as a DataFrame."""
    import pandas as pd

    rows = []
    with path.open() as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}: line {number}: not JSON ({error.msg})") from None
            if not isinstance(row, dict):
                raise ValueError(f"{path}: line {number}: not a JSON object")
            rows.append(row)
    if not rows:
        raise ValueError(f"{path}: empty trace (no requests)")
    return pd.DataFrame.from_records(rows)


@struct.dataclass
class Traffic:
    """A Poisson stream of requests with random prompt and output lengths.

    Attributes:
        rate_per_s: mean arrival rate, requests/s (traced, > 0).
        prompt: `LengthDistribution` of prompt tokens.
        output: `LengthDistribution` of output tokens.

    Examples:
        >>> traffic = Traffic.poisson(4.0, prompt=LengthDistribution.fixed(256),
        ...                           output=LengthDistribution.lognormal(128, 0.6))
        >>> trace = traffic.sample(1000, seed=0)
        >>> len(trace), round(1000 / trace.duration_s)
        (1000, 4)
    """

    rate_per_s: Any
    prompt: LengthDistribution
    output: LengthDistribution

    @classmethod
    def poisson(
        cls,
        rate_per_s: float,
        prompt: LengthDistribution | float = 512,
        output: LengthDistribution | float = 128,
    ) -> Traffic:
        """Validated Poisson traffic; a number as a length means a fixed length."""
        _check_number("rate_per_s", rate_per_s, lambda v: v > 0, "> 0 (requests/s)")
        return cls(
            rate_per_s=jnp.asarray(float(rate_per_s), jnp.float32),
            prompt=_as_distribution(prompt),
            output=_as_distribution(output),
        )

    @classmethod
    def from_trace(cls, trace: Trace) -> Traffic:
        """The trace's mean rate (requests over the arrival span) and empirical lengths."""
        if len(trace) < 2 or trace.duration_s <= 0:
            raise ValueError("a rate needs at least two requests arriving at different times")
        return cls(
            rate_per_s=jnp.asarray((len(trace) - 1) / trace.duration_s, jnp.float32),
            prompt=LengthDistribution.empirical(trace.prompt_tokens),
            output=LengthDistribution.empirical(trace.output_tokens),
        )

    def sample(self, n_requests: int, seed: int | np.random.Generator = 0) -> Trace:
        """``n_requests`` requests: exponential inter-arrival times from time 0, lengths
        from the distributions (one NumPy ``Generator`` seeded by ``seed``)."""
        if isinstance(n_requests, bool) or not isinstance(n_requests, int | np.integer):
            raise ValueError(f"n_requests must be a whole number >= 1, got {n_requests!r}")
        if n_requests < 1:
            raise ValueError(f"n_requests must be >= 1, got {n_requests}")
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        rate = float(self.rate_per_s)
        arrival = np.cumsum(rng.exponential(1.0 / rate, n_requests))
        return Trace(
            arrival_s=arrival,
            prompt_tokens=self.prompt.sample(rng, n_requests),
            output_tokens=self.output.sample(rng, n_requests),
        )


def _as_distribution(value) -> LengthDistribution:
    if isinstance(value, LengthDistribution):
        return value
    return LengthDistribution.fixed(value)


def _check_number(name: str, value, ok, text: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        array = concrete(value) if isinstance(value, jnp.ndarray) else None
        if array is None or array.shape != ():
            raise ValueError(f"{name} must be a number {text}, got {value!r}")
        value = float(array)
    if not (math.isfinite(value) and ok(value)):
        raise ValueError(f"{name} must be finite and {text}, got {value!r}")


def _check_length(name: str, value) -> None:
    _check_number(name, value, lambda v: v >= 1 and float(v).is_integer(), "a whole number >= 1")


def _whole_tokens(name: str, values: np.ndarray, where: str = "lengths") -> np.ndarray:
    """``values`` as int64 whole numbers >= 1 (``ValueError`` naming the first bad one)."""
    if values.dtype == bool or not (
        np.issubdtype(values.dtype, np.integer) or np.issubdtype(values.dtype, np.floating)
    ):
        raise ValueError(f"{where}: {name} must be whole numbers >= 1, got {values.dtype} values")
    as_float = values.astype(np.float64)
    bad = np.flatnonzero(
        ~np.isfinite(as_float)
        | (as_float < 1)
        | (as_float > MAX_TOKENS)
        | (as_float != np.rint(as_float))
    )
    if bad.size:
        raise ValueError(
            f"{where}: {name} must be whole numbers in [1, {MAX_TOKENS}] (specsim.limits); "
            f"request {bad[0]} has {values[bad[0]]}"
        )
    return as_float.astype(np.int64)
