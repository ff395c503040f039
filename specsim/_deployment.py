"""`Deployment`: the fixed inputs of one prediction, as one pytree.

Everything a throughput prediction holds fixed while a draft and a lookahead are chosen:
the target model, the chip, the workload, the acceptance model, the tensor-parallel
degrees and the fixed cost of one speculative iteration. It is the ``args`` of
optimistix's ``fn(y, args)`` and gymnax's ``EnvParams``: what is optimised (the draft and
``gamma``) is passed beside it, so the jitted core is ``(deployment, draft, gamma)``.

Every leaf is traced, so deployments of different chips, workloads or acceptance rates
stack into one vmapped grid without recompiling.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
from flax import struct

from . import hardware as _hardware
from . import models as _models
from . import runtime as _runtime
from ._acceptance import as_acceptance, validate_acceptance
from ._feasibility import (
    check_domain,
    check_draft_placement,
    check_draft_split,
    check_target_split,
)
from ._limits import MAX_GAMMA
from ._numerics import FLOAT32_MAX, check_numeric, concrete_values, host_float
from ._workload import Workload
from .hardware import HardwareSpec
from .models import TransformerSpec
from .runtime import RuntimeProfile

__all__ = ["DEPLOYMENT_FIELDS", "Deployment", "check_draft", "check_gamma"]


@struct.dataclass
class Deployment:
    """What is served, where, and how: the fixed inputs of a throughput prediction.

    Attributes:
        target: the model being served.
        hardware: one chip (the target runs on ``tp`` of them, the draft on ``draft_tp``).
        workload: batch, prompt and generation lengths.
        acceptance: ``ConstantAcceptance``, ``PositionalAcceptance`` or ``SDSLAcceptance``.
        tp: tensor-parallel degree of the target, >= 1.
        draft_tp: tensor-parallel degree of the draft, >= 1.
        speculation_overhead_s: fixed cost of one speculative iteration (sampling,
            bookkeeping), s, on top of the runtime's.
        runtime: the software stack (`specsim.runtime.RuntimeProfile`): kernel, step,
            sequence and speculation overheads, fusion and the all-reduce's latency floor.
            ``None`` (the default) stands for ``specsim.runtime.default_for(hardware)``,
            the chip's catalogue overheads, resolved inside every prediction so that it
            follows the hardware's leaves.

    Examples:
        >>> import specsim
        >>> d = specsim.Deployment.create("llama-3-8b", "h100", acceptance=0.8, tp=2)
        >>> float(d.tp), float(d.draft_tp), float(d.acceptance.alpha)
        (2.0, 2.0, 0.8)
    """

    target: TransformerSpec
    hardware: HardwareSpec
    workload: Workload
    acceptance: Any
    tp: Any = 1.0
    draft_tp: Any = 1.0
    speculation_overhead_s: Any = 0.0
    runtime: Any = None

    @classmethod
    def create(
        cls,
        target: TransformerSpec | str | os.PathLike,
        hardware: HardwareSpec | str | os.PathLike,
        workload: Workload | None = None,
        acceptance: Any = None,
        *,
        tp: float = 1.0,
        draft_tp: float | None = None,
        speculation_overhead_s: float = 0.0,
        runtime: RuntimeProfile | str | None = None,
    ) -> Deployment:
        """A validated deployment.

        Args:
            target: a ``TransformerSpec``, a model catalogue name (``"llama-3-8b"``), a
                ``config.json`` path or folder, or a Hub id in the local Hugging Face cache
                (see ``specsim.models.load``).
            hardware: a ``HardwareSpec``, a hardware catalogue name (``"h100"``) or the
                path of a hardware TOML file.
            workload: defaults to ``Workload.create()`` (batch 1, 128 + 128 tokens).
            acceptance: an acceptance model, or a number in (0, 1) for a constant rate,
                or a sequence of per-position rates (required).
            tp: tensor-parallel degree of the target.
            draft_tp: tensor-parallel degree of the draft (defaults to ``tp``).
            speculation_overhead_s: fixed cost per speculative iteration, s (added to the
                runtime's).
            runtime: a `RuntimeProfile` or a runtime catalogue name (``"cuda-graphs"``,
                ``"trtllm"``, ...); ``None`` or ``"default"``: the chip's catalogue
                overheads (stored as ``None``, see ``runtime`` above).

        Raises:
            ValueError: unknown names, invalid sizes, acceptance outside (0, 1), tp < 1,
                a tp the heads or the interconnect cannot take (`specsim.feasibility`), or a
                negative overhead.
        """
        if isinstance(target, str | os.PathLike):
            target = _models.load(target)
        if isinstance(hardware, str | os.PathLike):
            hardware = _hardware.get(hardware)
        if acceptance is None:
            raise ValueError(
                "acceptance is required: a number in (0, 1), per-position rates, or an "
                "acceptance model (ConstantAcceptance, PositionalAcceptance, SDSLAcceptance)"
            )
        # The default profile stays None: it reads the chip's own overhead leaves inside
        # the trace, so replacing the hardware (or differentiating by it) reaches them.
        if isinstance(runtime, str):
            name = _runtime.canonical_name(runtime)
            runtime = None if name == _runtime.DEFAULT else _runtime.get(name, hardware)
        deployment = cls(
            target=target,
            hardware=hardware,
            workload=Workload.create() if workload is None else workload,
            acceptance=as_acceptance(acceptance),
            tp=_f32(tp, "tp"),
            draft_tp=_f32(tp if draft_tp is None else draft_tp, "draft_tp"),
            speculation_overhead_s=_f32(speculation_overhead_s, "speculation_overhead_s"),
            runtime=runtime,
        )
        return deployment.validate()

    def validate(self) -> Deployment:
        """Checks every concrete leaf (``ValueError``); traced leaves are skipped."""
        if not isinstance(self.target, TransformerSpec):
            raise ValueError(f"target must be a TransformerSpec, got {type(self.target).__name__}")
        self.target.validate()
        if not isinstance(self.hardware, HardwareSpec):
            raise ValueError(f"hardware must be a HardwareSpec, got {type(self.hardware).__name__}")
        self.hardware.validate()
        if not isinstance(self.workload, Workload):
            raise ValueError(f"workload must be a Workload, got {type(self.workload).__name__}")
        self.workload.validate()
        validate_acceptance(self.acceptance)
        _check("tp", self.tp, lambda v: v >= 1, "finite numbers >= 1")
        _check("draft_tp", self.draft_tp, lambda v: v >= 1, "finite numbers >= 1")
        _check(
            "speculation_overhead_s",
            self.speculation_overhead_s,
            lambda v: v >= 0,
            "finite numbers >= 0",
        )
        # What engines refuse: tp that cannot split the heads, a draft on other chips.
        check_target_split(self.target, self.tp)
        check_draft_placement(self.tp, self.draft_tp)
        check_domain(self.hardware, self.tp)
        if self.runtime is not None:
            if not isinstance(self.runtime, RuntimeProfile):
                raise ValueError(
                    f"runtime must be a RuntimeProfile, got {type(self.runtime).__name__}"
                )
            self.runtime.validate()
        return self

    def resolved_runtime(self) -> RuntimeProfile:
        """The runtime profile, with ``None`` resolved to the chip's default profile."""
        if self.runtime is None:
            return _runtime.default_for(self.hardware)
        return self.runtime


# Field names of `Deployment`, for containers that forward them (`Scenario.replace`).
DEPLOYMENT_FIELDS = tuple(Deployment.__dataclass_fields__)


def check_draft(draft, deployment: Deployment | None = None) -> TransformerSpec:
    """Validates a draft model, and its split over the deployment's ``draft_tp`` chips."""
    if not isinstance(draft, TransformerSpec):
        raise ValueError(f"draft must be a TransformerSpec, got {type(draft).__name__}")
    draft.validate()
    if deployment is not None:
        check_draft_split(draft, deployment.draft_tp, tp=deployment.tp)
    return draft


def check_gamma(gamma):
    """Validates a concrete lookahead: a finite real number in [0, MAX_GAMMA]."""
    _check(
        "gamma", gamma, lambda v: (v >= 0) & (v <= MAX_GAMMA), f"real numbers in [0, {MAX_GAMMA}]"
    )
    return gamma


def _check(name: str, value, ok, text: str) -> None:
    for v in concrete_values(value):
        if not (math.isfinite(v) and ok(v)):
            raise ValueError(f"{name} {v:g}: out of range; valid: {text}")


def _f32(value, name: str = "value"):
    # Checked at full precision first: a number beyond float32 is refused, not cast to
    # infinity with an overflow RuntimeWarning.
    check_numeric(name, value)
    for v in concrete_values(value):
        if math.isfinite(v) and abs(v) > FLOAT32_MAX:
            raise ValueError(f"{name} {v:g}: out of range; valid: finite numbers below 3.4e38")
    return host_float(value, np.float32)
