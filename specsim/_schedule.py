"""Deployable lookahead schedules: the best whole gamma for every batch size.

Speculation pays at small batch (decoding is memory-bound, verifying ``gamma + 1`` tokens
costs about as much as one) and stops paying as the batch grows and verification turns
compute-bound. `speculation_schedule` evaluates every whole batch size from 1 to
``max_batch`` and every whole gamma from 0 to ``max_gamma`` on the exact roofline (512 x
17 points by default: milliseconds once compiled) and returns the best gamma per batch
size and the batch size from which speculation should be off. `specsim.engines` turns a
schedule into serving files that load: vLLM's per-batch-size table
(``num_speculative_tokens_per_batch_size``), SGLang's adaptive slots and TensorRT-LLM's
``draft_len_schedule``, each in the semantics of a named release.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from ._deployment import Deployment, check_draft
from ._fast_jit import _backend_jit
from ._inline import inline_jits
from ._throughput import _throughput
from ._workload import Workload
from .hardware import HardwareSpec
from .models import TransformerSpec
from .speculators._protocol import validate_speculation

__all__ = ["DEFAULT_MAX_BATCH", "Schedule", "speculation_schedule"]

DEFAULT_MAX_BATCH = 512
DEFAULT_MAX_GAMMA = 16


@struct.dataclass
class Schedule:
    """Best whole lookahead per batch size (host NumPy arrays; one row per batch size).

    Attributes:
        batch_sizes: ``1 .. max_batch``, shape ``(B,)``.
        gamma: best whole gamma at each batch size (0 = plain decoding), shape ``(B,)``.
        tokens_per_s: tokens/s at that gamma, shape ``(B,)``.
        speedup: over plain decoding at that batch size, shape ``(B,)``.
        fits: whether the target (and the draft, when speculating) fit in memory, ``(B,)``.
        switch_off_batch: the smallest batch size from which speculation never pays within
            ``1 .. max_batch`` (``None`` if it still pays at ``max_batch``).
        max_gamma: the largest gamma considered.

    Examples:
        >>> import specsim
        >>> from specsim import hardware, models
        >>> from specsim import speculation_schedule
        >>> s = speculation_schedule(models.get("llama-3-8b"), models.get("llama-68m"),
        ...                          hardware.get("h100"), specsim.ConstantAcceptance.create(0.8))
        >>> int(s.gamma[0]) > 0, s.switch_off_batch is None or s.switch_off_batch > 1
        (True, True)
    """

    batch_sizes: Any
    gamma: Any
    tokens_per_s: Any
    speedup: Any
    fits: Any
    switch_off_batch: int | None = struct.field(pytree_node=False, default=None)
    max_gamma: int = struct.field(pytree_node=False, default=DEFAULT_MAX_GAMMA)

    def runs(self) -> list[tuple[int, int, int]]:
        """``(first_batch, last_batch, gamma)`` for each run of equal best gamma (fitting)."""
        out: list[tuple[int, int, int]] = []
        for b, g, ok in zip(
            self.batch_sizes.tolist(), self.gamma.tolist(), self.fits.tolist(), strict=True
        ):
            if not ok:
                break
            if out and out[-1][2] == g:
                out[-1] = (out[-1][0], b, g)
            else:
                out.append((b, b, g))
        return out

    def gamma_at(self, batch: int) -> int:
        """Best gamma at ``batch`` (clamped into ``1 .. max_batch``)."""
        i = int(np.clip(batch, 1, len(self.batch_sizes))) - 1
        return int(self.gamma[i])

    def draft_len_schedule(self) -> dict[int, int]:
        """TensorRT-LLM's ``draft_len_schedule`` as releases from 1.3.0rc27 read it.

        Keys are the largest batch size of each run (upper bounds) and batch sizes above
        the largest key run without speculation, so a final run of gamma 0 is left
        implicit. Release 1.2 reads keys as lower bounds instead: use
        ``specsim.engines.tensorrt_llm_schedule(schedule.runs(), "lower_bounds")`` or
        ``specsim.engines.emit(..., "tensorrt-llm", "1.2.1")``.
        """
        from .engines import tensorrt_llm_schedule

        return tensorrt_llm_schedule(self.runs(), "upper_bounds")

    def _plan(self, target: str, draft: str, batch: int, tp: int, draft_tp: int | None):
        from .engines import ServingPlan

        return ServingPlan.from_schedule(
            self, target, draft_id=draft, batch=batch, tp=tp, draft_tp=draft_tp
        )

    def vllm_snippet(
        self,
        target: str,
        draft: str,
        batch: int = 1,
        *,
        tp: int = 1,
        draft_tp: int | None = None,
        version: str | None = None,
    ) -> str:
        """A ``vllm serve`` script with this schedule (``specsim.engines.emit`` for all files).

        Args:
            target: the target as vLLM loads it (Hub id or path; see
                ``specsim.engines.model_id``).
            draft: the draft model, likewise.
            batch: the batch size whose gamma releases before 0.24.0 use for every batch.
            tp: tensor parallelism of the target (``--tensor-parallel-size``).
            draft_tp: of the draft (``draft_tensor_parallel_size``; default ``tp``).
            version: the vLLM release (default: the newest whose source specsim read);
                from 0.24.0 on the whole per-batch-size table is written.
        """
        from .engines import emit

        return emit(self._plan(target, draft, batch, tp, draft_tp), "vllm", version).main

    def tensorrt_llm_snippet(
        self,
        draft: str,
        target: str | None = None,
        batch: int = 1,
        *,
        tp: int = 1,
        version: str | None = None,
    ) -> str:
        """A TensorRT-LLM LLM-API snippet with this schedule as ``draft_len_schedule``.

        Args:
            draft: the draft model as TensorRT-LLM loads it (Hub id or path).
            target: the target, likewise (a placeholder to fill in if ``None``).
            batch: the batch size whose gamma is used where no schedule applies.
            tp: tensor parallelism (``tensor_parallel_size``).
            version: the TensorRT-LLM release (default: the newest whose source specsim
                read): the keys of ``draft_len_schedule`` are lower bounds in 1.2 and
                upper bounds from 1.3.0rc27.
        """
        from .engines import emit
        from .engines._plan import placeholder

        if target is None:
            target = placeholder("target", "the target", "not given to tensorrt_llm_snippet")
        plan = self._plan(target, draft, batch, tp, None)
        return emit(plan, "tensorrt-llm", version).files["llm_api.py"]

    def to_dict(self) -> dict[str, Any]:
        """Plain Python values for JSON."""
        return {
            "switch_off_batch": self.switch_off_batch,
            "max_gamma": self.max_gamma,
            "runs": [{"first_batch": a, "last_batch": b, "gamma": g} for a, b, g in self.runs()],
            "draft_len_schedule": {str(k): v for k, v in self.draft_len_schedule().items()},
            "batch_sizes": self.batch_sizes.tolist(),
            "gamma": self.gamma.tolist(),
            "tokens_per_s": self.tokens_per_s.tolist(),
            "speedup": self.speedup.tolist(),
            "fits": self.fits.tolist(),
        }


@_backend_jit
def _schedule_grid(deployment: Deployment, draft, batches, gammas):
    """Exact tokens/s, speedup and memory fit on a ``(batch, gamma)`` grid."""

    @inline_jits  # (batched flat: see `specsim._inline`)
    def at(batch, gamma):
        at_batch = deployment.replace(workload=deployment.workload.replace(batch=batch))
        report = _throughput(at_batch, draft, gamma)
        return report.tokens_per_s, report.speedup, report.fits

    return jax.vmap(lambda b: jax.vmap(lambda g: at(b, g))(gammas))(batches)


# Largest lookahead and batch a schedule evaluates (a grid of up to ~1M points).
MAX_SCHEDULE_GAMMA = 64
MAX_SCHEDULE_BATCH = 16384


def _whole_in(value, low: int, high: int) -> bool:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return False
    return not isinstance(value, bool) and number == int(number) and low <= number <= high


def speculation_schedule(
    target: TransformerSpec,
    draft,
    hardware: HardwareSpec,
    acceptance,
    *,
    workload: Workload | None = None,
    tp: float = 1.0,
    draft_tp: float | None = None,
    speculation_overhead_s: float = 0.0,
    max_gamma: int = DEFAULT_MAX_GAMMA,
    max_batch: int = DEFAULT_MAX_BATCH,
    runtime=None,
) -> Schedule:
    """Best whole gamma for every batch size from 1 to ``max_batch``.

    Every whole batch size and every whole gamma in ``0 .. max_gamma`` is evaluated on the
    exact roofline (no interpolation); gamma 0 is plain decoding, so the best gamma is 0
    where speculation does not pay. Batch sizes where the target does not fit are marked
    in ``fits`` and end the schedule.

    Args:
        target: the model being served.
        draft: what proposes the tokens: a draft model (`TransformerSpec`) or a speculator
            of `specsim.speculators` (EAGLE heads, Medusa, MTP, n-gram lookup,
            self-speculation), drafting a chain of gamma tokens.
        hardware: one chip.
        acceptance: ``ConstantAcceptance``, ``PositionalAcceptance`` or ``SDSLAcceptance``.
        workload: prompt and generation lengths (its batch is ignored; default 512 / 256).
        tp: tensor-parallel degree of the target.
        draft_tp: tensor-parallel degree of the draft (default ``tp``).
        speculation_overhead_s: fixed cost per speculative iteration, s.
        max_gamma: largest lookahead considered (default 16).
        max_batch: largest batch size (default 512).
        runtime: the software stack (a `RuntimeProfile` or catalogue name; default the
            chip's own overheads).

    Returns:
        `Schedule`.

    Raises:
        ValueError: invalid inputs, or ``max_gamma < 0`` / ``max_batch < 1``.

    Examples:
        >>> import specsim
        >>> from specsim import hardware, models
        >>> from specsim import speculation_schedule
        >>> s = speculation_schedule(models.get("llama-3-8b"), models.get("llama-68m"),
        ...                          hardware.get("h100"), specsim.ConstantAcceptance.create(0.8),
        ...                          max_batch=64)
        >>> len(s.batch_sizes), int(s.gamma[0]) >= int(s.gamma[-1])
        (64, True)
    """
    # One vmapped grid of max_batch x (max_gamma + 1) points: bounded so it fits memory.
    if not _whole_in(max_gamma, 0, MAX_SCHEDULE_GAMMA):
        raise ValueError(
            f"max_gamma {max_gamma!r}: not a whole number in range; "
            f"valid: 0 .. {MAX_SCHEDULE_GAMMA}"
        )
    if not _whole_in(max_batch, 1, MAX_SCHEDULE_BATCH):
        raise ValueError(
            f"max_batch {max_batch!r}: not a whole number in range; "
            f"valid: 1 .. {MAX_SCHEDULE_BATCH}"
        )
    deployment = Deployment.create(
        target,
        hardware,
        workload or Workload.create(1, 512, 256),
        acceptance,
        tp=tp,
        draft_tp=draft_tp,
        speculation_overhead_s=speculation_overhead_s,
        runtime=runtime,
    )
    if isinstance(draft, TransformerSpec):
        check_draft(draft, deployment)
    else:
        validate_speculation(draft, deployment.validate(), float(max_gamma))
    batches = np.arange(1, int(max_batch) + 1, dtype=np.float32)
    gammas = np.arange(0, int(max_gamma) + 1, dtype=np.float32)
    tokens, speedup, fits = (
        np.asarray(x)
        for x in _schedule_grid(deployment, draft, jnp.asarray(batches), jnp.asarray(gammas))
    )
    score = np.where(fits, tokens, -np.inf)
    best = np.argmax(score, axis=1)
    rows = np.arange(len(batches))
    target_fits = fits[:, 0]
    if not target_fits[0]:
        raise ValueError(
            "the target does not fit in memory even at batch 1: raise tp or shorten the context"
        )
    gamma = np.where(target_fits, gammas[best], 0).astype(np.int64)
    off = np.flatnonzero((gamma > 0) & target_fits)
    last_on = int(off[-1]) + 1 if off.size else 0  # batch size of the last speculating row
    fitting = int(target_fits.sum()) if target_fits.all() else int(np.argmin(target_fits))
    switch_off = None if last_on >= fitting else last_on + 1
    return Schedule(
        batch_sizes=batches.astype(np.int64),
        gamma=gamma,
        tokens_per_s=tokens[rows, best],
        speedup=speedup[rows, best],
        fits=target_fits & fits[rows, best],
        switch_off_batch=switch_off,
        max_gamma=int(max_gamma),
    )
