"""``specsim hardware`` and ``specsim models``: the two catalogues as tables or JSON."""

from __future__ import annotations

import argparse

from ._args import add_json_argument, format_table, print_json

__all__ = [
    "add_hardware_arguments",
    "add_models_arguments",
    "run_hardware",
    "run_models",
]


def add_hardware_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``specsim hardware``."""
    parser.description = (
        "List the accelerator catalogue: dense peak FLOP/s, memory, bandwidths, the default "
        "efficiencies and overheads, and aliases accepted by --hardware. Every number has a "
        "source, printed with --json."
    )
    add_json_argument(parser)


def run_hardware(args: argparse.Namespace) -> int:
    """Runs ``specsim hardware`` (reads the catalogue file only; JAX is not started)."""
    from specsim import hardware

    rows = []
    for name in hardware.names():
        e = hardware.entry(name)
        d = hardware.datasheet(name)  # the numbers a HardwareSpec holds, in datasheet units
        rows.append(
            {
                "name": name,
                "kind": e["kind"],
                "bf16_tflops": d["bf16_tflops"],
                "hbm_gb": d["hbm_gb"],
                "hbm_tb_per_s": d["hbm_tb_per_s"],
                "link_gb_per_s": d["interconnect_gb_per_s"],
                "compute_eff": d["compute_efficiency"],
                "memory_eff": d["memory_efficiency"],
                "launch_us": d["kernel_launch_us"],
                "aliases": ", ".join(e.get("aliases", [])),
            }
        )
    if args.json:
        print_json([{**r, "sources": hardware.entry(r["name"])["sources"]} for r in rows])
    else:
        print(format_table(rows))
        print("\nDense peak rates; HBM in 1e9 bytes; link = scale-up bandwidth per direction.")
        print("Sources for every number: specsim hardware --json")
    return 0


def add_models_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``specsim models``."""
    parser.description = (
        "List the model catalogue: architecture (layers, width, heads, KV heads, FFN width, "
        "vocabulary, MLP kind), parameter count and training tokens. Names and aliases are "
        "accepted by --target and --draft; --json adds each entry's source."
    )
    add_json_argument(parser)


def run_models(args: argparse.Namespace) -> int:
    """Runs ``specsim models``."""
    from specsim import models

    rows = []
    for name in models.names():
        info = models.info(name)
        spec = models.get(name)
        rows.append(
            {
                "name": name,
                "params_b": float(spec.parameter_count) / 1e9,
                "active_b": float(models.active_parameter_count(spec)) / 1e9,
                "experts": f"{info['n_experts']} top-{info['experts_per_token']}"
                if info.get("n_moe_layers")
                else "",
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
        print_json([{**r, **models.info(r["name"])} for r in rows])
    else:
        print(format_table(rows))
    return 0
