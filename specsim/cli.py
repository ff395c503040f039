"""The ``specsim`` command line: thin shells over the public API.

Every subcommand prints a readable answer, or JSON with ``--json``. Bad input
(unknown names, invalid sizes, malformed files) exits with code 2 and a
one-line message on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit code 2
        self.exit(EXIT_USAGE, f"specsim: error: {message}\n")


def _positive(kind: Callable[[str], float]):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def hardware_label(name: str) -> str:
    """Display name of a hardware argument (catalogue name, or the TOML path as given)."""
    from . import hardware

    return name if str(name).endswith(".toml") else hardware.canonical_name(name)


def _print_json(payload: Any) -> None:
    print(json.dumps(payload, indent=2, sort_keys=False, default=_json_default))


def _json_default(value: Any):
    if isinstance(value, np.generic | np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _table(rows: list[dict[str, Any]], float_format: str = "{:.4g}") -> str:
    import pandas as pd

    frame = pd.DataFrame(rows)
    return frame.to_string(index=False, float_format=lambda v: float_format.format(v))


# --------------------------------------------------------------------------- catalogues


def _cmd_hardware(args) -> int:
    from . import hardware

    rows = []
    for name in hardware.names():
        e = hardware.entry(name)
        spec = hardware.get(name)
        rows.append(
            {
                "name": name,
                "kind": e["kind"],
                "bf16_tflops": e["bf16_tflops"],
                "hbm_gb": float(spec.hbm_capacity_bytes) / 1e9,
                "hbm_tb_per_s": e["hbm_tb_per_s"],
                "link_gb_per_s": e["interconnect_gb_per_s"],
                "compute_eff": e["compute_efficiency"],
                "memory_eff": e["memory_efficiency"],
                "launch_us": e["kernel_launch_us"],
                "aliases": ", ".join(e.get("aliases", [])),
            }
        )
    if args.json:
        _print_json([{**r, "sources": hardware.entry(r["name"])["sources"]} for r in rows])
    else:
        print(_table(rows))
        print("\nDense peak rates; HBM in 1e9 bytes; link = scale-up bandwidth per direction.")
        print("Sources for every number: specsim hardware --json")
    return 0


def _cmd_models(args) -> int:
    from . import models

    rows = []
    for name in models.names():
        info = models.info(name)
        spec = models.get(name)
        rows.append(
            {
                "name": name,
                "params_b": float(spec.parameter_count) / 1e9,
                "layers": info["n_layers"],
                "d_model": info["d_model"],
                "heads": info["n_heads"],
                "kv_heads": info["n_kv_heads"],
                "d_ff": info["d_ff"],
                "vocab": info["vocab"],
                "mlp": "gated" if info["gated_mlp"] else "plain",
                "train_tokens": info.get("train_tokens"),
            }
        )
    if args.json:
        _print_json([{**r, **models.info(r["name"])} for r in rows])
    else:
        print(_table(rows))
    return 0


# --------------------------------------------------------------------------- one pass


def _add_model_dtype(parser, flag: str = "--weight-dtype", dest: str = "weight_dtype") -> None:
    parser.add_argument(
        flag,
        dest=dest,
        default="bf16",
        help="weight storage dtype: bf16, fp16, fp32, fp8, int8, int4 (default bf16)",
    )


def _cmd_cost(args) -> int:
    from . import (
        STEP_BOUND_NAMES,
        fits,
        forward_cost,
        hardware,
        memory_footprint,
        models,
        step_time,
    )

    model = models.get(args.model).with_dtypes(args.weight_dtype)
    chip = hardware.get(args.hardware)
    cost = forward_cost(model, args.batch, args.new_tokens, args.context)
    t = step_time(model, chip, args.batch, args.new_tokens, args.context, args.tp)
    mem = memory_footprint(model, args.batch, args.context + args.new_tokens)
    report = {
        "model": models.info(args.model)["name"],
        "hardware": hardware_label(args.hardware),
        "batch": args.batch,
        "new_tokens": args.new_tokens,
        "context": args.context,
        "tp": args.tp,
        "matmul_flops": float(cost.matmul_flops),
        "attention_flops": float(cost.attention_flops),
        "weight_bytes": float(cost.weight_bytes),
        "kv_read_bytes": float(cost.kv_read_bytes),
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
        _print_json(report)
        return 0
    print(
        f"{report['model']} on {args.tp} x {report['hardware']}: batch {args.batch}, "
        f"{args.new_tokens} new token(s), context {args.context:g}"
    )
    print(
        f"  FLOPs   matmul {report['matmul_flops']:.3e}   attention {report['attention_flops']:.3e}"
    )
    print(
        f"  bytes   weights {report['weight_bytes']:.3e}   KV read {report['kv_read_bytes']:.3e}"
        f"   KV write {report['kv_write_bytes']:.3e}   activations {report['activation_bytes']:.3e}"
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


# --------------------------------------------------------------------------- evaluate


def add_scenario_arguments(parser, *, draft: bool = True) -> None:
    """Flags shared by ``evaluate``, ``optimize`` and ``schedule``."""
    parser.add_argument("--target", default="llama-3-8b", help="target model (default llama-3-8b)")
    if draft:
        parser.add_argument("--draft", default="llama-68m", help="draft model (default llama-68m)")
    parser.add_argument("--hardware", default="h100", help="accelerator or .toml (default h100)")
    parser.add_argument("--batch", type=_positive(int), default=1, help="sequences (default 1)")
    parser.add_argument("--prompt", type=_non_negative, default=512, help="prompt tokens")
    parser.add_argument("--generate", type=_positive(float), default=256, help="generated tokens")
    parser.add_argument("--tp", type=_positive(int), default=1, help="target tensor parallelism")
    parser.add_argument("--draft-tp", type=_positive(int), default=None, help="draft tp")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--alpha", type=float, default=None, help="constant acceptance in (0, 1)")
    group.add_argument(
        "--alpha-model",
        choices=("sdsl",),
        default=None,
        help="acceptance from the SDSL perplexity law (needs training tokens)",
    )
    parser.add_argument(
        "--draft-train-tokens", type=_positive(float), default=None, help="for --alpha-model sdsl"
    )
    parser.add_argument(
        "--target-train-tokens", type=_positive(float), default=None, help="for --alpha-model sdsl"
    )


def build_acceptance(args, default_alpha: float | None = 0.8):
    """The acceptance model named by ``--alpha`` / ``--alpha-model`` flags."""
    from . import ConstantAcceptance, SDSLAcceptance, models

    if args.alpha_model == "sdsl":
        target_tokens = args.target_train_tokens or models.train_tokens(args.target)
        if target_tokens is None:
            raise ValueError(
                f"the catalogue has no training-token count for {args.target!r}; "
                "pass --target-train-tokens"
            )
        draft_tokens = args.draft_train_tokens or target_tokens
        return SDSLAcceptance.create(
            draft_train_tokens=draft_tokens, target_train_tokens=target_tokens
        )
    alpha = default_alpha if args.alpha is None else args.alpha
    return ConstantAcceptance.create(alpha)


def _cmd_evaluate(args) -> int:
    from . import Workload, hardware, models, throughput
    from ._throughput import crossover_batch

    target = models.get(args.target)
    draft = models.get(args.draft)
    chip = hardware.get(args.hardware)
    workload = Workload.create(args.batch, args.prompt, args.generate)
    acceptance = build_acceptance(args)
    report = throughput(
        target, draft, chip, workload, args.gamma, acceptance, args.tp, args.draft_tp
    )
    crossover = crossover_batch(
        target, draft, chip, workload, args.gamma, acceptance, args.tp, args.draft_tp
    )
    out = report.to_dict()
    out["crossover_batch"] = None if not np.isfinite(crossover) else float(crossover)
    if args.plot:
        from ._sweep_cli import save_roofline

        save_roofline(args)
    if args.json:
        _print_json(out)
        return 0
    print(
        f"{models.info(args.target)['name']} + draft {models.info(args.draft)['name']} on "
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
    if out["crossover_batch"] is None:
        print("  speculation pays at every batch size up to 4096")
    else:
        print(f"  speculation stops paying above batch ~{out['crossover_batch']:.0f}")
    memory = out["memory_per_chip_bytes"] / 1e9
    print(f"  memory per chip {memory:.2f} GB: {'fits' if out['fits'] else 'DOES NOT FIT'}")
    return 0


# --------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    """The full ``specsim`` argument parser."""
    parser = _Parser(
        prog="specsim",
        description="Differentiable simulator of speculative-decoding throughput on GPUs and TPUs.",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("hardware", help="list the accelerator catalogue")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_hardware)

    p = sub.add_parser("models", help="list the model catalogue")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_models)

    p = sub.add_parser("cost", help="FLOPs, bytes and time of one forward pass")
    p.add_argument("--model", default="llama-2-7b")
    p.add_argument("--hardware", default="a100-80gb")
    p.add_argument("--batch", type=_positive(int), default=1)
    p.add_argument("--new-tokens", type=_positive(int), default=1)
    p.add_argument("--context", type=_non_negative, default=0)
    p.add_argument("--tp", type=_positive(int), default=1)
    _add_model_dtype(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_cost)

    p = sub.add_parser("evaluate", help="throughput of one speculative-decoding setup")
    add_scenario_arguments(p)
    p.add_argument("--gamma", type=_non_negative, default=4, help="draft tokens per step")
    p.add_argument("--json", action="store_true")
    from ._sweep_cli import add_plot_argument

    add_plot_argument(p)
    p.set_defaults(func=_cmd_evaluate)

    for name, module in _EXTENSIONS:
        _register_extension(sub, name, module)
    return parser


# Subcommands implemented next to their feature: (name, module with add_*/run_*).
_EXTENSIONS: list[tuple[str, str]] = [
    ("optimize", "._optimize_cli"),
    ("schedule", "._optimize_cli"),
    ("sweep", "._sweep_cli"),
    ("calibrate", "._calibrate"),
    ("validate", "._validate"),
]


def _register_extension(sub, name: str, module: str) -> None:
    import importlib

    mod = importlib.import_module(module, __package__)
    run = getattr(mod, f"run_{name}")
    summary = (run.__doc__ or name).strip().splitlines()[0]
    summary = summary.removeprefix(f"Runs ``specsim {name}``: ").replace("``", "")
    p = sub.add_parser(name, help=summary.rstrip("."), description=summary)
    getattr(mod, f"add_{name}_arguments")(p)
    p.set_defaults(func=run)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``specsim`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:  # output piped into `head` and closed: not an error
        sys.stdout = open(os.devnull, "w")  # silence the flush at exit
        return 0
    except ValueError as e:
        message = str(e).splitlines()[0] if str(e) else type(e).__name__
        print(f"specsim: error: {message}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
