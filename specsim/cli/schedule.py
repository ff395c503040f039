"""``specsim schedule``: best gamma per batch size, switch-off batch and serving snippets.

Turns a (target, draft, chip, acceptance) into the best whole lookahead gamma for every
batch size, the batch size from which speculation stops paying, and vLLM and
TensorRT-LLM configuration snippets.
"""

from __future__ import annotations

import argparse
import re

from ._args import (
    add_json_argument,
    add_scenario_arguments,
    add_speculation_overhead_argument,
    build_acceptance,
    hardware_label,
    load_draft,
    load_target,
    model_label,
    non_negative,
    positive,
    print_json,
)
from ._progress import StageProgress

__all__ = ["SCHEDULE_JSON_KEYS", "add_schedule_arguments", "run_schedule"]

# Top-level keys of `specsim schedule --json`, in order.
SCHEDULE_JSON_KEYS = {
    "schema": "format version, 'specsim.schedule/1'",
    "scenario": "target, draft, hardware, tp, draft_tp, prompt_tokens, generate_tokens",
    "switch_off_batch": "smallest batch size from which speculation never pays (null: pays "
    "up to max_batch)",
    "max_gamma": "largest gamma considered",
    "runs": "list of {first_batch, last_batch, gamma}",
    "draft_len_schedule": "TensorRT-LLM draft_len_schedule (batch upper bound -> gamma)",
    "batch_sizes": "1 .. max_batch",
    "gamma": "best gamma per batch size",
    "tokens_per_s": "tokens/s at that gamma",
    "speedup": "speedup at that gamma",
    "fits": "memory fit per batch size",
    "snippets": "{vllm, tensorrt_llm}: ready-to-paste configuration",
}

_DRAFT_SHAPE = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*$")


def add_schedule_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``specsim schedule``."""
    parser.description = (
        "The best whole lookahead gamma for every batch size from 1 to --max-batch (exact "
        "roofline), the batch size from which speculation stops paying, and vLLM and "
        "TensorRT-LLM configuration snippets. --draft takes a catalogue name or LAYERSxWIDTH, "
        "a draft built on the target's template as specsim optimize recommends."
    )
    add_scenario_arguments(
        parser, draft_help="draft model: catalogue name, or LAYERSxWIDTH on the target's template"
    )
    add_speculation_overhead_argument(parser)
    parser.add_argument(
        "--max-gamma", type=non_negative, default=16, help="largest lookahead considered"
    )
    parser.add_argument(
        "--max-batch", type=positive(int), default=512, help="largest batch size scheduled"
    )
    add_json_argument(parser)


def _schedule_draft(args, target):
    """The draft named by ``--draft``: a catalogue name, or ``LAYERSxWIDTH`` on the template."""
    import jax
    import jax.numpy as jnp

    from specsim import DraftParams, DraftTemplate, models
    from specsim._draft import buildable_draft

    shape = _DRAFT_SHAPE.match(str(args.draft))
    if shape is None:
        return load_draft(args), model_label(args.draft)
    n_layers, d_model = (int(g) for g in shape.groups())
    template = DraftTemplate.from_target(target)
    if n_layers < 1 or d_model % round(float(template.width_step)) or d_model < 1:
        raise ValueError(
            f"--draft {args.draft}: need LAYERSxWIDTH with whole layers and a width that is a "
            f"multiple of the head dim ({float(template.head_dim):g})"
        )
    params = DraftParams(jnp.float32(n_layers), jnp.float32(d_model), jnp.float32(1))
    spec = jax.tree.map(float, buildable_draft(params, template))
    if args.draft_weight_dtype is not None:
        spec = models.load(spec, weight_dtype=args.draft_weight_dtype)
    return spec, f"draft-{n_layers}x{d_model}"


def run_schedule(args: argparse.Namespace) -> int:
    """Runs ``specsim schedule``: best gamma per batch size, switch-off batch and snippets.

    ``--draft`` takes a catalogue name or ``LAYERSxWIDTH`` (a draft built on the target's
    template, as ``specsim optimize`` recommends). Acceptance: ``--alpha A`` (default 0.8)
    or ``--alpha-model sdsl``. Every whole batch size from 1 to ``--max-batch`` (512) and
    every whole gamma from 0 to ``--max-gamma`` (16) is evaluated on the exact roofline.
    ``--json`` prints one object with the keys of ``SCHEDULE_JSON_KEYS``.

    Returns:
        0 on success.

    Raises:
        ValueError: bad input (the CLI prints one line and exits 2).
    """
    from specsim import Workload, hardware, speculation_schedule

    target = load_target(args)
    draft, draft_name = _schedule_draft(args, target)
    chip = hardware.get(args.hardware)
    acceptance = build_acceptance(args)
    workload = Workload.create(1, args.prompt, args.generate)
    if int(args.max_gamma) != args.max_gamma:
        raise ValueError(f"--max-gamma must be a whole number, got {args.max_gamma:g}")
    progress = StageProgress(["evaluating every batch size and gamma"], enabled=not args.json)
    try:
        schedule = speculation_schedule(
            target,
            draft,
            chip,
            acceptance,
            workload=workload,
            tp=args.tp,
            draft_tp=args.draft_tp,
            speculation_overhead_s=args.speculation_overhead_us * 1e-6,
            max_gamma=int(args.max_gamma),
            max_batch=args.max_batch,
        )
        progress.advance()
    finally:
        progress.close()
    target_name, chip_name = model_label(args.target), hardware_label(args.hardware)
    snippets = {
        "vllm": schedule.vllm_snippet(target_name, draft_name, args.batch),
        "tensorrt_llm": schedule.tensorrt_llm_snippet(draft_name),
    }
    if args.json:
        print_json(
            {
                "schema": "specsim.schedule/1",
                "scenario": {
                    "target": target_name,
                    "draft": draft_name,
                    "hardware": chip_name,
                    "tp": args.tp,
                    "draft_tp": args.draft_tp or args.tp,
                    "prompt_tokens": args.prompt,
                    "generate_tokens": args.generate,
                },
                **schedule.to_dict(),
                "snippets": snippets,
            }
        )
        return 0
    print(
        f"specsim schedule: {target_name} + {draft_name} on {args.tp} x {chip_name}, prompt "
        f"{args.prompt:g}, generate {args.generate:g} tokens, batch 1-{args.max_batch}"
    )
    print()
    print(f"{'batch sizes':>14s}  {'gamma':>5s}  {'speedup':>12s}")
    for first, last, gamma in schedule.runs():
        lo, hi = schedule.speedup[first - 1], schedule.speedup[last - 1]
        span = f"{first}-{last}" if last > first else f"{first}"
        print(f"{span:>14s}  {gamma:>5d}  {lo:5.2f}-{hi:5.2f}x")
    fitting = int(schedule.fits.sum())
    if fitting < args.max_batch:
        print(f"{'':>14s}  the target (with its draft) does not fit above batch {fitting}")
    if schedule.switch_off_batch is None:
        print(f"\nspeculation pays at every batch size up to {args.max_batch}")
    else:
        print(f"\nswitch speculation off from batch {schedule.switch_off_batch} on")
    print()
    print(snippets["vllm"])
    print()
    print(snippets["tensorrt_llm"])
    return 0
