"""``specsim cost``: FLOPs, bytes, time and memory of one forward pass."""

from __future__ import annotations

import argparse

from ._args import (
    MODEL_HELP,
    add_json_argument,
    add_runtime_argument,
    add_weight_dtype_argument,
    hardware_label,
    load_hardware,
    load_model,
    model_label,
    non_negative,
    positive,
    print_json,
)

__all__ = ["add_cost_arguments", "run_cost"]


def add_cost_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``specsim cost``."""
    parser.description = (
        "FLOPs and bytes of one forward pass by category, its time on the roofline with the "
        "binding bound, and whether weights and KV cache fit in memory."
    )
    parser.add_argument("--model", default="llama-2-7b", help="model: " + MODEL_HELP)
    parser.add_argument(
        "--hardware", default="a100-80gb", help="accelerator: catalogue name or a .toml file"
    )
    parser.add_argument("--batch", type=positive(int), default=1, help="sequences in the pass")
    parser.add_argument(
        "--new-tokens",
        type=positive(int),
        default=1,
        help="new tokens per sequence (1: a decode step, gamma+1: verification, the prompt "
        "length: prefill)",
    )
    parser.add_argument(
        "--context", type=non_negative, default=0, help="tokens already in the KV cache"
    )
    parser.add_argument("--tp", type=positive(int), default=1, help="tensor parallelism")
    add_runtime_argument(parser)
    add_weight_dtype_argument(parser)
    add_json_argument(parser)


def run_cost(args: argparse.Namespace) -> int:
    """Runs ``specsim cost``."""
    from specsim import (
        STEP_BOUND_NAMES,
        fits,
        forward_cost,
        memory_footprint,
        runtime,
        step_time,
    )
    from specsim.feasibility import check_parallelism
    from specsim.limits import MAX_BATCH, MAX_TOKENS

    for flag, value, limit in (
        ("--batch", args.batch, MAX_BATCH),
        ("--new-tokens", args.new_tokens, MAX_TOKENS),
        ("--context", args.context, MAX_TOKENS),
    ):
        if value > limit:
            raise ValueError(f"{flag} {value:g}: out of range; valid: at most {limit}")
    model = load_model(args.model, "--model", weight_dtype=args.weight_dtype)
    chip = load_hardware(args.hardware)
    # The placement rules of every other command: --tp splits the heads, within the
    # chips the interconnect joins.
    check_parallelism(model, None, args.tp, 1, names=("--tp", "draft_tp"), hardware=chip)
    stack = runtime.get(args.runtime, chip)
    cost = forward_cost(model, args.batch, args.new_tokens, args.context)
    t = step_time(model, chip, args.batch, args.new_tokens, args.context, args.tp, runtime=stack)
    mem = memory_footprint(model, args.batch, args.context + args.new_tokens)
    report = {
        "model": model_label(args.model),
        "hardware": hardware_label(args.hardware),
        "batch": args.batch,
        "new_tokens": args.new_tokens,
        "context": args.context,
        "tp": args.tp,
        "runtime": args.runtime,
        "matmul_flops": float(cost.matmul_flops),
        "attention_flops": float(cost.attention_flops),
        "weight_bytes": float(cost.weight_bytes),
        "kv_read_bytes": float(cost.kv_read_bytes),
        "kv_read_multiplier": float(stack.kv_read_multiplier(model)),
        "kv_write_bytes": float(cost.kv_write_bytes),
        "activation_bytes": float(cost.activation_bytes),
        "time_s": float(t.time_s),
        "linear_s": float(t.linear_s),
        "attention_s": float(t.attention_s),
        "compute_s": float(t.compute_s),
        "memory_s": float(t.memory_s),
        "communication_s": float(t.communication_s),
        "launch_s": float(t.launch_s),
        "overhead_s": float(t.overhead_s),
        "bound": STEP_BOUND_NAMES[int(t.bound)],
        "tokens_per_s": float(args.batch * args.new_tokens / t.time_s),
        "weights_memory_bytes": float(mem.weight_bytes),
        "kv_cache_bytes": float(mem.kv_cache_bytes),
        "fits": bool(fits(model, chip, args.batch, args.context + args.new_tokens, args.tp)),
    }
    if args.json:
        print_json(report)
        return 0
    print(
        f"{report['model']} on {args.tp} x {report['hardware']}: batch {args.batch}, "
        f"{args.new_tokens} new token(s), context {args.context:g}"
    )
    print(
        f"  FLOPs   matmul {report['matmul_flops']:.3e}   attention {report['attention_flops']:.3e}"
    )
    reads = report["kv_read_multiplier"]
    print(
        f"  bytes   weights {report['weight_bytes']:.3e}   KV read {report['kv_read_bytes']:.3e}"
        + (
            f" (read {reads:g}x by the runtime's attention kernel)"
            if reads != 1 and report["kv_read_bytes"] > 0
            else ""
        )
        + f"   KV write {report['kv_write_bytes']:.3e}"
        + f"   activations {report['activation_bytes']:.3e}"
    )
    print(
        f"  time    {report['time_s'] * 1e3:.3f} ms  (matmuls {report['linear_s'] * 1e3:.3f}, "
        f"attention {report['attention_s'] * 1e3:.3f}, comms {report['communication_s'] * 1e3:.3f},"
        f" launches {report['launch_s'] * 1e3:.3f}, fixed {report['overhead_s'] * 1e3:.3f} ms)"
    )
    print(f"  bound   {report['bound']}   ->  {report['tokens_per_s']:.1f} tokens/s")
    gb = (report["weights_memory_bytes"] + report["kv_cache_bytes"]) / 1e9
    capacity = float(chip.hbm_capacity_bytes) * args.tp / 1e9
    verdict = "fits" if report["fits"] else "DOES NOT FIT"
    print(f"  memory  {gb:.2f} GB of {capacity:.1f} GB: {verdict}")
    return 0
