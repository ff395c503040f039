"""``specsim evaluate``: throughput of one speculative-decoding setup."""

from __future__ import annotations

import argparse
import math

from ._args import (
    add_json_argument,
    add_overwrite_argument,
    add_plot_argument,
    add_scenario_arguments,
    build_acceptance,
    check_plot_path,
    check_vocabulary,
    hardware_label,
    load_draft,
    load_hardware,
    load_target,
    memory_refusal,
    model_label,
    non_negative,
    print_json,
    resolve_draft,
)
from ._methods import add_method_arguments, build_speculation, describe_shape, method_requested

__all__ = ["add_evaluate_arguments", "run_evaluate", "save_roofline"]


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``specsim evaluate``."""
    parser.description = (
        "Predict the throughput of one speculative-decoding setup (target, draft, hardware, "
        "batch, prompt and generated tokens, lookahead gamma, acceptance): tokens/s with and "
        "without speculation, speedup, the bound of each step, request latency, memory fit and "
        "the batch size above which speculation stops paying."
    )
    add_scenario_arguments(parser)
    parser.add_argument(
        "--gamma", type=non_negative, default=4, help="lookahead: draft tokens per iteration"
    )
    add_method_arguments(parser, command="evaluate")
    add_json_argument(parser)
    add_plot_argument(parser)
    add_overwrite_argument(parser)


def save_roofline(args: argparse.Namespace, target=None, draft=None) -> str:
    """Draws ``specsim.plot.roofline`` for an ``evaluate``-style namespace into ``args.plot``.

    Reads ``hardware``, ``target``, ``draft``, ``batch``, ``gamma``, ``prompt``,
    ``generate``, ``tp`` and ``draft_tp`` (the flags of ``add_scenario_arguments``)
    and returns the path written. ``target`` and ``draft`` (specs) replace the flags'
    models when given (e.g. with their dtype flags applied). The chart is written
    atomically; an existing file is replaced only with ``args.overwrite``.
    """
    from specsim.outputs import atomic_output
    from specsim.plot import roofline

    overwrite = getattr(args, "overwrite", False)
    check_plot_path(args.plot, overwrite=overwrite)
    with atomic_output(
        args.plot, overwrite=overwrite, what="--plot", overwrite_hint="--overwrite"
    ) as temp:
        _roofline(roofline, args, temp, target, draft)
    return args.plot


def _roofline(roofline, args: argparse.Namespace, path: str, target, draft) -> None:
    roofline(
        args.hardware,
        args.target if target is None else target,
        args.draft if draft is None else draft,
        batch=args.batch,
        gamma=args.gamma,
        prompt_tokens=args.prompt,
        generate_tokens=args.generate,
        tp=args.tp,
        draft_tp=args.draft_tp,
        path=path,
    )


def run_evaluate(args: argparse.Namespace) -> int:
    """Runs ``specsim evaluate``."""
    if args.plot:
        check_plot_path(args.plot, overwrite=args.overwrite)
    if method_requested(args):
        return _run_method(args)
    from specsim import Workload, crossover_batch, throughput
    from specsim.feasibility import reason

    target = load_target(args)
    resolve_draft(args, target)
    draft = load_draft(args)
    chip = load_hardware(args.hardware)
    check_vocabulary(args, target, draft)
    workload = Workload.create(args.batch, args.prompt, args.generate)
    acceptance = build_acceptance(args)
    setup = (target, draft, chip, workload, args.gamma, acceptance, args.tp, args.draft_tp)
    report = throughput(*setup, runtime=args.runtime)
    out = report.to_dict()
    if not out["fits"] and not args.allow_infeasible:
        raise memory_refusal(args, out["memory_per_chip_bytes"], float(chip.hbm_capacity_bytes))
    crossover = crossover_batch(*setup, runtime=args.runtime)
    out["crossover_batch"] = None if not math.isfinite(crossover) else float(crossover)
    out["infeasible"] = [] if out["fits"] else ["memory"]
    out["feasible"] = not out["infeasible"]
    if args.plot:
        dtyped = args.weight_dtype or args.draft_weight_dtype or args.kv_dtype
        save_roofline(args, *((target, draft) if dtyped else ()))
    if args.json:
        print_json(out)
        return 0
    if not out["feasible"]:
        print(f"INFEASIBLE (memory: {reason('memory')}): priced anyway with --allow-infeasible")
    print(
        f"{model_label(args.target)} + draft {model_label(args.draft)} on "
        f"{args.tp} x {hardware_label(args.hardware)}, batch {args.batch}, prompt {args.prompt:g}, "
        f"generate {args.generate:g}, gamma {args.gamma:g}"
    )
    print(
        f"  acceptance alpha {out['acceptance_rate']:.3f} -> "
        f"{out['expected_tokens_per_step']:.2f} tokens per iteration"
    )
    print(
        f"  speculative {out['tokens_per_s']:.1f} tokens/s vs plain "
        f"{out['baseline_tokens_per_s']:.1f} tokens/s: speedup {out['speedup']:.2f}x"
    )
    print(
        f"  draft step {out['draft_step_s'] * 1e3:.3f} ms ({out['draft_bound']}-bound), "
        f"verify {out['verify_step_s'] * 1e3:.3f} ms ({out['verify_bound']}-bound), "
        f"plain step {out['target_step_s'] * 1e3:.3f} ms ({out['target_bound']}-bound)"
    )
    print(
        f"  request latency {out['request_latency_s']:.3f} s "
        f"(plain {out['baseline_request_latency_s']:.3f} s), "
        f"prefill {out['prefill_s'] * 1e3:.2f} ms"
    )
    print(f"  {_crossover_line(out)}")
    memory = out["memory_per_chip_bytes"] / 1e9
    print(f"  memory per chip {memory:.2f} GB: {'fits' if out['fits'] else 'DOES NOT FIT'}")
    return 0


def _run_method(args: argparse.Namespace) -> int:
    """``evaluate`` for any speculation method (``--method`` and its flags)."""
    from specsim import Workload, crossover_batch, speculators, throughput
    from specsim.feasibility import reason

    if args.plot:
        raise ValueError("--plot draws a draft model's roofline; drop --method and its flags")
    target = load_target(args)
    speculator, shape, acceptance = build_speculation(args, target)
    _check_positions(args, shape, acceptance)
    chip = load_hardware(args.hardware)
    workload = Workload.create(args.batch, args.prompt, args.generate)
    setup = (target, speculator, chip, workload, shape, acceptance, args.tp, args.draft_tp)
    report = throughput(*setup, runtime=args.runtime)
    fits = bool(report.fits)
    if not fits and not args.allow_infeasible:
        raise memory_refusal(
            args, float(report.memory_per_chip_bytes), float(chip.hbm_capacity_bytes)
        )
    crossover = crossover_batch(*setup, runtime=args.runtime)
    out = {
        "method": speculators.method_name(speculator),
        "shape": describe_shape(shape),
        **report.to_dict(),
        "crossover_batch": None if not math.isfinite(crossover) else float(crossover),
        "infeasible": [] if fits else ["memory"],
        "feasible": fits,
    }
    if args.json:
        print_json(out)
        return 0
    if not fits:
        print(f"INFEASIBLE (memory: {reason('memory')}): priced anyway with --allow-infeasible")
    s = out["shape"]
    drafted = (
        f"gamma {s['gamma']:g}"
        if s["kind"] == "chain"
        else f"a {s['nodes']:g}-node tree of depth {s['depth']}"
    )
    print(
        f"{model_label(args.target)} with {out['method']} drafting {drafted} on {args.tp} x "
        f"{hardware_label(args.hardware)}, batch {args.batch}, prompt {args.prompt:g}, "
        f"generate {args.generate:g}"
    )
    print(
        f"  acceptance (top-1) {out['acceptance_rate']:.3f} -> "
        f"{out['expected_tokens_per_step']:.2f} tokens per iteration, "
        f"{out['verified_tokens']:g} verified"
    )
    print(
        f"  speculative {out['tokens_per_s']:.1f} tokens/s vs plain "
        f"{out['baseline_tokens_per_s']:.1f} tokens/s: speedup {out['speedup']:.2f}x"
    )
    print(
        f"  drafting {out['proposal_s'] * 1e3:.3f} ms per iteration (one pass "
        f"{out['draft_step_s'] * 1e3:.3f} ms, {out['draft_bound']}-bound), verify "
        f"{out['verify_step_s'] * 1e3:.3f} ms ({out['verify_bound']}-bound), plain step "
        f"{out['target_step_s'] * 1e3:.3f} ms"
    )
    print(f"  {_crossover_line(out)}")
    memory = out["memory_per_chip_bytes"] / 1e9
    print(f"  memory per chip {memory:.2f} GB: {'fits' if out['fits'] else 'DOES NOT FIT'}")
    return 0


def _check_positions(args: argparse.Namespace, shape, acceptance) -> None:
    """Per-position acceptance must cover the positions drafted, a chain of ``gamma`` or a
    tree's depth (positions beyond the rates given were priced, never accepted), and rates
    typed with ``--alphas`` must match them exactly (extra ones changed the acceptance
    printed, not the tokens)."""
    import numpy as np

    from specsim import DynamicTree, PositionalAcceptance, TokenTree, TreeAcceptance

    from ._methods import shape_depth

    if isinstance(shape, TokenTree):
        drafted_tokens = float(shape.size)
    elif isinstance(shape, DynamicTree):
        drafted_tokens = float(np.sum(np.asarray(shape.widths)))
    else:
        drafted_tokens = float(shape)
    if drafted_tokens == 0:  # plain decoding: no position is drafted, the rates unused
        return
    depth = shape_depth(shape)
    if isinstance(acceptance, PositionalAcceptance):
        known = int(acceptance.alphas.shape[-1])
    elif isinstance(acceptance, TreeAcceptance):
        known = int(acceptance.rank_probs.shape[0])
    else:
        return
    if args.tree:
        drafted = f"--tree {args.tree} is {depth} deep"
    else:
        drafted = f"--gamma {args.gamma:g} drafts {depth} position{'s' if depth != 1 else ''}"
    given = None if args.alphas is None else len(args.alphas)
    if given is not None and given != depth:
        raise ValueError(
            f"--alphas gives {given} rate{'s' if given != 1 else ''}, but {drafted}; valid: "
            f"one rate per position drafted ({depth})"
        )
    if args.acceptance_file and known < depth:
        raise ValueError(
            f"--acceptance-file {args.acceptance_file} measured {known} positions, but "
            f"{drafted}; valid: drafting at most {known} deep"
        )


def _crossover_line(out: dict) -> str:
    """Where speculation stops paying, in words (`crossover_batch`: ``None`` for never
    below 1 on its grid, 1.0 for below 1 from batch 1)."""
    if out["gamma"] == 0:
        return "no speculation (nothing drafted): plain decoding at every batch size"
    if out["crossover_batch"] is None:
        return "speculation pays at every batch size up to 4096"
    if out["crossover_batch"] <= 1.0:
        return "speculation does not pay at any batch size"
    return f"speculation stops paying above batch ~{out['crossover_batch']:.0f}"
