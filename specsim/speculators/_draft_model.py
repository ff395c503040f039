"""The draft-model speculator: an independent small transformer (a `TransformerSpec`).

Speculative decoding as Leviathan et al. and Chen et al. describe it: the draft runs
its own decode steps with its own KV cache, one per chain token (or one per tree depth,
over that depth's frontier, as in SpecInfer and Sequoia), on ``draft_tp`` chips. A plain
`TransformerSpec` passed wherever a speculator is expected is this method, with exactly
the results specsim gave before speculators existed.
"""

from __future__ import annotations

from .._acceptance import acceptance_rate
from .._cost import memory_footprint, step_time
from .._quadrature import mean_step
from ..models import TransformerSpec, parameter_count
from ._protocol import Method, chain_or_tree_tokens, register, sequential_proposal

__all__: list[str] = []


def _proposal(draft: TransformerSpec, deployment, shape, contexts, weights, smooth):
    hardware, batch, tp = deployment.hardware, deployment.workload.batch, deployment.draft_tp
    runtime = deployment.resolved_runtime()

    def pass_step(new_tokens):
        return mean_step(draft, hardware, batch, new_tokens, contexts, weights, tp, smooth, runtime)

    # The draft's cache misses its last proposal after a fully accepted iteration: the
    # first pass refeeds it beside the target's token (as static-shape loops do, and
    # specsim.measure's), two tokens per sequence.
    return sequential_proposal(pass_step, shape, first_pass_tokens=2.0)


def _emitted_tokens(draft: TransformerSpec, deployment, shape):
    return chain_or_tree_tokens(
        deployment.acceptance, shape, parameter_count(draft), parameter_count(deployment.target)
    )


def _memory_bytes(draft: TransformerSpec, deployment, batch, context):
    return memory_footprint(draft, batch, context).total_bytes / deployment.draft_tp


def _prefill_s(draft: TransformerSpec, deployment, smooth):
    workload = deployment.workload
    return step_time(
        draft,
        deployment.hardware,
        workload.batch,
        workload.prompt_tokens,
        0.0,
        deployment.draft_tp,
        smooth,
        deployment.resolved_runtime(),
        1.0,  # one logit per sequence: the prompt's last position
    ).time_s


def _acceptance_rate(draft: TransformerSpec, deployment):
    return acceptance_rate(
        deployment.acceptance, parameter_count(draft), parameter_count(deployment.target)
    )


def _validate(draft: TransformerSpec, deployment, shape) -> None:
    draft.validate()


register(
    TransformerSpec,
    Method(
        name="draft",
        proposal=_proposal,
        emitted_tokens=_emitted_tokens,
        memory_bytes=_memory_bytes,
        prefill_s=_prefill_s,
        validate=_validate,
        acceptance_rate=_acceptance_rate,
    ),
)
