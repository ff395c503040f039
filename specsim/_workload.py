"""`Workload`: what is being served (batch, prompt and generation lengths)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from flax import struct

from ._numerics import concrete_values, host_float


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
        """Checks concrete leaves: batch > 0, prompt >= 0, generate > 0 (``ValueError``)."""
        rules = {
            "batch": (lambda v: v > 0, "> 0"),
            "prompt_tokens": (lambda v: v >= 0, ">= 0"),
            "generate_tokens": (lambda v: v > 0, "> 0"),
        }
        for name, (ok, text) in rules.items():
            for v in concrete_values(getattr(self, name)):
                if not (math.isfinite(v) and ok(v)):
                    raise ValueError(f"Workload.{name} must be finite and {text}, got {v}")
        return self

    @property
    def final_context(self):
        """Tokens in the KV cache at the end of generation."""
        return self.prompt_tokens + self.generate_tokens
