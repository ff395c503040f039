"""``optimize``, ``schedule`` and ``sweep`` for speculation methods other than a draft model.

Called by those commands when ``--method`` names another method (the draft-model paths
are unchanged). ``optimize`` searches the best tree (or chain) and lookahead and
predicts tokens/s; ``sweep`` puts several methods side by side. ``schedule`` handles
``--method`` itself (`specsim.cli.schedule`), writing engine files through
`specsim.engines`.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from ._args import hardware_label, load_target, model_label, print_json
from ._methods import acceptance_for, check_method_flags

__all__ = ["run_method_optimize", "run_method_sweep"]

_TREE_NATIVE = ("eagle", "eagle3", "medusa")
_DEFAULT_MAX_NODES = 64
_DEFAULT_MAX_DEPTH = 8


def _speculator(args, target):
    from specsim import speculators

    from ._args import load_draft

    check_method_flags(args)
    return speculators.create(
        args.method,
        target,
        draft=load_draft(args) if args.method == "draft" else None,
        vocab=args.draft_vocab,
        n_heads=args.medusa_heads,
        n_modules=args.mtp_modules,
        match_probability=args.match_probability,
        lookup_s=None if args.lookup_us is None else args.lookup_us * 1e-6,
        draft_layers=args.draft_layers,
        kv_budget_tokens=args.kv_budget,
    )


def _budget(args, speculator) -> tuple[int, int]:
    from specsim.speculators import Medusa

    depth = args.max_depth or _DEFAULT_MAX_DEPTH
    if isinstance(speculator, Medusa) and args.max_depth is None:
        depth = int(float(speculator.n_heads))
    return args.max_nodes or _DEFAULT_MAX_NODES, depth


def _search(args, deployment_for, speculator, *, steps=None, restarts=None, seed=0):
    """Best tree (tree methods) or chain: ``(kind, result, acceptance)``."""
    from specsim import TokenTree, optimize_chain, optimize_tree, speculators

    if args.method in speculators.TREE_METHODS:
        max_nodes, max_depth = _budget(args, speculator)
        acceptance = acceptance_for(args, TokenTree.chain(max_depth), tree=True)
        kwargs = {"max_nodes": max_nodes, "max_depth": max_depth, "seed": seed}
        if steps:
            kwargs["steps"] = steps
        if restarts:
            kwargs["restarts"] = restarts
        return "tree", optimize_tree(deployment_for(acceptance), speculator, **kwargs), acceptance
    max_gamma = int(args.max_gamma) if getattr(args, "max_gamma", None) is not None else 16
    acceptance = acceptance_for(args, float(max_gamma), tree=False)
    return (
        "chain",
        optimize_chain(deployment_for(acceptance), speculator, max_gamma=max_gamma),
        (acceptance),
    )


def _names(args, method: str) -> tuple[str, str | None]:
    target = model_label(args.target)
    draft = {
        "draft": getattr(args, "draft", None),
        "eagle": f"<EAGLE head for {target}>",
        "eagle3": f"<EAGLE-3 head for {target}>",
        "medusa": f"<Medusa heads for {target}>",
    }.get(method)
    return target, draft


def run_method_optimize(args: argparse.Namespace) -> int:
    """``specsim optimize --method M``: best tree (or chain) and lookahead, tokens/s."""
    from specsim import Deployment, Workload, count_tree_profiles, exact_tree_search, hardware

    started = time.perf_counter()
    target = load_target(args)
    chip = hardware.get(args.hardware)
    workload = Workload.create(args.batch, args.prompt, args.generate)
    speculator = _speculator(args, target)

    def deployment_for(acceptance):
        return Deployment.create(
            target, chip, workload, acceptance, tp=args.tp, draft_tp=args.draft_tp,
            speculation_overhead_s=args.speculation_overhead_us * 1e-6, runtime=args.runtime,
        )  # fmt: skip

    kind, result, acceptance = _search(
        args, deployment_for, speculator, steps=args.steps, restarts=args.restarts, seed=args.seed
    )
    wall_s = time.perf_counter() - started
    certificate = None
    if kind == "tree" and args.certify:
        max_nodes, max_depth = _budget(args, speculator)
        ranks = int(acceptance.rank_probs.shape[-1])
        if count_tree_profiles(max_nodes, max_depth, max_nodes, ranks) > 2_000_000:
            certificate = {"feasible": False, "reason": "too many trees for the exact search"}
        else:
            exact = exact_tree_search(
                deployment_for(acceptance), speculator, max_nodes=max_nodes, max_depth=max_depth
            )
            certificate = {
                "feasible": True,
                "exact_tokens_per_s": exact.tokens_per_s,
                "gap": 1.0 - result.tokens_per_s / exact.tokens_per_s,
                "exact_evaluations": exact.evaluations,
                "exact_widths": exact.widths,
            }
    out = result.to_dict(acceptance) if kind == "tree" else result.to_dict()
    report = result.report
    target_name, _ = _names(args, args.method)
    lookahead = len(result.widths) if kind == "tree" else result.gamma
    payload: dict[str, Any] = {
        "schema": "specsim.optimize-method/1",
        "method": args.method,
        "scenario": {
            "target": target_name,
            "hardware": hardware_label(args.hardware),
            "tp": args.tp,
            "batch": args.batch,
            "prompt_tokens": args.prompt,
            "generate_tokens": args.generate,
        },
        "kind": kind,
        "lookahead": lookahead,
        **{k: v for k, v in out.items() if k not in ("method",)},
        "baseline_tokens_per_s": float(report.baseline_tokens_per_s),
        "search": {"wall_s": wall_s, "evaluations": out["evaluations"]},
        "certificate": certificate,
    }
    if args.json:
        print_json(payload)
        return 0
    s = payload["scenario"]
    print(
        f"specsim optimize --method {args.method}: {s['target']} on {s['tp']} x "
        f"{s['hardware']}, batch {s['batch']}, prompt {s['prompt_tokens']:g}, generate "
        f"{s['generate_tokens']:g}"
    )
    if kind == "tree":
        if payload["widths"]:
            print(
                f"best tree: {payload['nodes']} draft tokens, depth (lookahead) {lookahead}, "
                f"nodes per depth {payload['widths']}"
            )
        else:
            print("best: do not speculate (plain decoding is fastest)")
    else:
        print(f"best lookahead: gamma {result.gamma}")
    print(
        f"predicted {payload['tokens_per_s']:.1f} tokens/s vs plain "
        f"{payload['baseline_tokens_per_s']:.1f}: speedup {payload['speedup']:.2f}x, "
        f"{payload['expected_tokens_per_step']:.2f} tokens per iteration"
    )
    print(f"search: {payload['search']['evaluations']} evaluations in {wall_s:.1f} s")
    if certificate is not None:
        if certificate["feasible"]:
            print(
                f"certificate: exact optimum {certificate['exact_tokens_per_s']:.1f} tokens/s "
                f"({certificate['exact_evaluations']} trees), gap {100 * certificate['gap']:.3f}%"
            )
        else:
            print(f"certificate: not run ({certificate['reason']})")
    print(
        f"engine files (vLLM, SGLang, TensorRT-LLM): specsim schedule --method {args.method} "
        "with the same target, chip and acceptance"
    )
    return 0


def run_method_sweep(args: argparse.Namespace, kwargs: dict[str, Any]) -> int:
    """``specsim sweep --method a,b``: the methods side by side over the grid's axes."""
    from specsim import sweep_methods

    from ._methods import _OWNERS

    methods = [m.strip() for m in args.method.split(",") if m.strip()]
    options: dict[str, dict[str, Any]] = {m: {} for m in methods}
    flags = {
        "medusa_heads": "n_heads", "mtp_modules": "n_modules",
        "match_probability": "match_probability", "lookup_us": "lookup_s",
        "draft_layers": "draft_layers", "kv_budget": "kv_budget_tokens", "draft_vocab": "vocab",
    }  # fmt: skip
    for dest, option in flags.items():
        value = getattr(args, dest, None)
        if value is None:
            continue
        flag, owners = _OWNERS[dest]
        targets = [m for m in methods if m in owners]
        if not targets:
            raise ValueError(
                f"{flag} applies to {', '.join(owners)}, which --method does not sweep"
            )
        for m in targets:
            options[m][option] = value * 1e-6 if dest == "lookup_us" else value
    alpha = kwargs.get("alpha", 0.8)
    if isinstance(alpha, list | tuple):
        if len(alpha) != 1:
            raise ValueError("--method sweeps take one --alpha (acceptance is per method)")
        alpha = alpha[0]
    if alpha == "sdsl":
        raise ValueError("--alpha-model sdsl applies to draft models only; give --alpha")
    drafts = kwargs.get("draft")
    if "draft" in methods:
        if isinstance(drafts, list | tuple):
            if len(drafts) != 1:
                raise ValueError("--method sweeps take one --draft")
            drafts = drafts[0]
        options["draft"]["draft"] = drafts
    start = time.perf_counter()
    frame = sweep_methods(
        methods,
        hardware=kwargs.get("hardware", "h100"),
        target=kwargs.get("target", "llama-3-8b"),
        tp=kwargs.get("tp", 1),
        batch=kwargs.get("batch", 1),
        prompt_tokens=kwargs.get("prompt_tokens", 512),
        generate_tokens=kwargs.get("generate_tokens", 256),
        gamma=kwargs.get("gamma", 4),
        acceptance=float(alpha),
        options={m: o for m, o in options.items() if o},
        draft_tp=kwargs.get("draft_tp"),
        shared_tokenizer=bool(kwargs.get("shared_tokenizer", False)),
    )
    elapsed = time.perf_counter() - start
    if args.out is not None:
        from specsim.outputs import atomic_output

        with atomic_output(
            args.out, overwrite=args.overwrite, what="--out", overwrite_hint="--overwrite"
        ) as temp:
            if args.out.lower().endswith(".parquet"):
                frame.to_parquet(temp, index=False)
            else:
                frame.to_csv(temp, index=False)
    # Each method's best point that can be served; its best overall where none can.
    ranked = frame.assign(_ok=frame.feasibility == "ok").sort_values(
        ["_ok", "tokens_per_s"], ascending=False, kind="stable"
    )
    best = ranked.groupby("method").head(1).drop(columns="_ok").sort_values("method")
    columns = ["method", "hardware", "target", "batch", "shape", "tokens_per_s", "speedup"]
    columns.append("feasibility")
    if args.json:
        print_json(
            {
                "points": len(frame),
                "seconds": elapsed,
                "out": args.out,
                "best": best[columns].to_dict(orient="records"),
            }
        )
        return 0
    print(f"{len(frame):,} points over {len(methods)} methods in {elapsed:.2f} s")
    if args.out is not None:
        print(f"wrote {args.out}")
    print("\nbest point per method:")
    print(best[columns].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    return 0
