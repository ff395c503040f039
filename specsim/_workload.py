"""`Workload`: what is being served (batch, prompt and generation lengths)."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from flax import struct

from ._limits import MAX_BATCH, MAX_TOKENS
from ._numerics import check_numeric, check_range, host_float


@struct.dataclass
class Workload:
    """A batch of requests, each a prompt followed by a generation (traced floats).

    The KV cache grows from ``prompt_tokens`` to ``prompt_tokens + generate_tokens``
    during decoding; throughput integrates step times over that range.

    Attributes:
        batch: concurrent sequences.
        prompt_tokens: prompt length per sequence, tokens.
        generate_tokens: generated tokens per sequence.

    Examples:
        >>> w = Workload.create(batch=8, prompt_tokens=512, generate_tokens=256)
        >>> float(w.final_context)
        768.0
    """

    batch: Any
    prompt_tokens: Any
    generate_tokens: Any

    @classmethod
    def create(
        cls, batch: float = 1, prompt_tokens: float = 128, generate_tokens: float = 128
    ) -> Workload:
        """A validated workload (``ValueError`` on non-positive or non-finite sizes)."""
        # Checked at full precision first: a size too large for float32 is refused, not
        # cast to infinity (with a RuntimeWarning) and refused after.
        sizes = {"batch": batch, "prompt_tokens": prompt_tokens, "generate_tokens": generate_tokens}
        for name, value in sizes.items():
            check_numeric(name, value)
        cls(**{name: _host(value) for name, value in sizes.items()}).validate()
        workload = cls(
            batch=host_float(batch, np.float32),
            prompt_tokens=host_float(prompt_tokens, np.float32),
            generate_tokens=host_float(generate_tokens, np.float32),
        )
        return workload.validate()

    @classmethod
    def fixed_context(cls, batch: float, context_tokens: float) -> Workload:
        """Decoding at a (nearly) fixed context: one token generated after ``context_tokens``."""
        return cls.create(batch=batch, prompt_tokens=context_tokens, generate_tokens=1)

    def validate(self) -> Workload:
        """Checks concrete leaves: batch > 0, prompt >= 0, generate > 0 (``ValueError``).

        Sizes above ``2**30`` (batch or tokens; beyond any deployment) are refused too:
        float32 costs of larger ones overflow.
        """
        rules = {
            "batch": (lambda v: 0 < v <= MAX_BATCH, f"in (0, {MAX_BATCH}]"),
            "prompt_tokens": (lambda v: 0 <= v <= MAX_TOKENS, f"in [0, {MAX_TOKENS}]"),
            "generate_tokens": (lambda v: 0 < v <= MAX_TOKENS, f"in (0, {MAX_TOKENS}]"),
        }
        for name, (ok, text) in rules.items():
            check_range(name, getattr(self, name), ok, text)
        return self

    @property
    def final_context(self):
        """Tokens in the KV cache at the end of generation."""
        return self.prompt_tokens + self.generate_tokens


def _host(value):
    """A concrete value as float64 (traced values pass through, unchecked)."""
    if isinstance(value, jax.core.Tracer):
        return value
    try:
        return np.asarray(value, np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"workload size {value!r}: not a number; valid: finite numbers") from None
