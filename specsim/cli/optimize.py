"""``specsim optimize``: the throughput-optimal draft and lookahead for one scenario.

For a target on a chip and a workload it searches draft depth, width (and optionally
training tokens) and lookahead gamma by gradient descent through the differentiable
throughput model, rounds to a buildable draft, and prints the recommended draft, gamma,
predicted tokens/s, speedup, the binding bottleneck and the hardware sensitivities.
"""

from __future__ import annotations

import argparse
import math
import time
from typing import Any

from specsim import hardware

from ._args import (
    add_json_argument,
    add_scenario_arguments,
    add_speculation_overhead_argument,
    build_acceptance,
    hardware_label,
    load_hardware,
    load_target,
    model_label,
    model_reference,
    non_negative,
    positive,
    print_json,
)
from ._methods import add_method_arguments, method_requested
from ._progress import StageProgress

__all__ = ["OPTIMIZE_JSON_KEYS", "add_optimize_arguments", "run_optimize"]

# Top-level keys of `specsim optimize --json`, in order (stable; new keys are only appended).
OPTIMIZE_JSON_KEYS = {
    "schema": "format version, 'specsim.optimize/1'",
    "scenario": "target, hardware, tp, draft_tp, target_reference (as typed for --target, "
    "or the catalogue name), weight_dtype, draft_weight_dtype, kv_dtype (null: the "
    "checkpoint's), batch, prompt_tokens, generate_tokens, speculation_overhead_s",
    "acceptance": "model ('sdsl' or 'constant'), alpha (constant) or train tokens (sdsl; "
    "the draft's as searched, with draft_train_tokens_searched true, when the search chose "
    "them), size_sensitive (whether draft size changes acceptance)",
    "bounds": "the search region (DraftBounds: min/max layers, d_model, aspect, gamma, tokens)",
    "draft": "recommended buildable draft: n_layers, d_model, n_heads, n_kv_heads, head_dim, "
    "d_ff, vocab, gated_mlp, tied_embeddings, parameters, aspect_ratio, train_tokens",
    "gamma": "recommended whole lookahead (0 = do not speculate)",
    "tokens_per_s": "predicted decode throughput with speculation, tokens/s",
    "baseline_tokens_per_s": "plain decoding of the target, tokens/s",
    "speedup": "tokens_per_s / baseline_tokens_per_s",
    "acceptance_rate": "per-token acceptance alpha at the recommended draft",
    "expected_tokens_per_step": "tokens emitted per sequence per iteration",
    "bottleneck": "phase (draft, verify, or target when not speculating) taking most of an "
    "iteration, draft_share, verify_share, each phase's bound, and binding_resource: the "
    "hardware parameter with the largest |elasticity| (binding_elasticity)",
    "elasticities": "d log tokens_per_s / d log x for every hardware parameter x",
    "continuous_optimum": "real-valued optimum before rounding: n_layers, d_model, gamma, "
    "train_tokens, tokens_per_s (exact roofline)",
    "report": "the full ThroughputReport at the recommended point",
    "search": "optimizer, steps, restarts, seed, evaluations, wall_s (from start to the "
    "optimum, compilation included)",
    "certificate": "null, or with --certify: grid_tokens_per_s, gap, grid_evaluations, "
    "evaluation_ratio, grid_draft, grid_gamma",
    "notes": "list of plain-language remarks (active bounds, constant-alpha caveat, ...)",
}

# Display labels of the hardware fields: rates (more is faster) and times (less is faster).
_RATE_FIELDS = {f.name: f.label for f in hardware.FIELDS if not f.is_time}
_TIME_FIELDS = {f.name: f.label for f in hardware.FIELDS if f.is_time}


def add_optimize_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``specsim optimize`` (scenario, bounds, search, output)."""
    parser.description = (
        "Find the throughput-optimal draft (layers, width, optionally training tokens) and "
        "lookahead gamma for a target on a chip and a workload, by gradient descent through "
        "the differentiable throughput model, rounded to a buildable draft. Prints the "
        "recommendation, predicted tokens/s and speedup, the binding bottleneck and the "
        "hardware sensitivities. With no flags: Llama-3-8B on one H100 SXM, batch 1, SDSL "
        "acceptance with the catalogue's training tokens."
    )
    add_scenario_arguments(parser, draft=False, sdsl_by_default=True)
    add_speculation_overhead_argument(parser)
    bounds = parser.add_argument_group("draft bounds (defaults follow the target)")
    bounds.add_argument(
        "--min-layers", type=positive(float), default=None, help="fewest draft layers (default 2)"
    )
    bounds.add_argument(
        "--max-layers",
        type=positive(float),
        default=None,
        help="most draft layers (default: min(32, the target's))",
    )
    bounds.add_argument(
        "--min-width",
        type=positive(float),
        default=None,
        help="smallest draft d_model (default: two of the target's heads)",
    )
    bounds.add_argument(
        "--max-width",
        type=positive(float),
        default=None,
        help="largest draft d_model (default: the target's)",
    )
    bounds.add_argument(
        "--min-aspect",
        type=positive(float),
        default=None,
        help="smallest aspect ratio d_model/layers (default 32)",
    )
    bounds.add_argument(
        "--max-aspect",
        type=positive(float),
        default=None,
        help="largest aspect ratio d_model/layers (default 512)",
    )
    bounds.add_argument(
        "--max-gamma", type=non_negative, default=None, help="largest lookahead (default 16)"
    )
    bounds.add_argument(
        "--width-step",
        type=positive(float),
        default=None,
        help="d_model granularity (default: the target's head dim)",
    )
    bounds.add_argument(
        "--draft-ffn-ratio",
        type=positive(float),
        default=None,
        help="draft d_ff/d_model (default: the target's)",
    )
    bounds.add_argument(
        "--draft-max-train-tokens",
        type=positive(float),
        default=None,
        help="search draft training tokens up to this cap, SDSL only (default: not searched)",
    )
    bounds.add_argument(
        "--draft-train-flops",
        type=positive(float),
        default=None,
        help="draft training budget in FLOPs (6 N D); searches training tokens, SDSL only "
        "(default: no budget)",
    )
    search = parser.add_argument_group("search")
    search.add_argument(
        "--steps", type=positive(int), default=None, help="Adam steps per restart (default 100)"
    )
    search.add_argument(
        "--restarts",
        type=positive(int),
        default=None,
        help="random starting points searched together (default 4)",
    )
    search.add_argument(
        "--learning-rate", type=positive(float), default=None, help="Adam step (default 0.08)"
    )
    search.add_argument("--seed", type=int, default=0, help="PRNG seed of the restarts")
    search.add_argument(
        "--certify",
        action="store_true",
        help="also run the exhaustive grid over the same bounds and report the gap",
    )
    add_method_arguments(parser, command="optimize")
    add_json_argument(parser)


def _acceptance_for_optimize(args):
    if args.alpha is None and args.alpha_model is None:
        args.alpha_model = "sdsl"
    return build_acceptance(args)


def _acceptance_summary(acceptance) -> dict[str, Any]:
    from specsim import SDSLAcceptance

    if isinstance(acceptance, SDSLAcceptance):
        return {
            "model": "sdsl",
            "draft_train_tokens": _shown(acceptance.draft_train_tokens),
            "target_train_tokens": _shown(acceptance.target_train_tokens),
            "size_sensitive": True,
        }
    return {"model": "constant", "alpha": _shown(acceptance.alpha), "size_sensitive": False}


def _shown(value) -> float:
    """A float32 leaf as the number the user typed (15e12, not 15000000266240.0)."""
    return float(f"{float(value):.7g}")


def _by_preference(elasticities: dict[str, float]) -> list[str]:
    """Hardware fields with datasheet numbers first, efficiencies after, then the rest."""
    order = [name for name in {**_RATE_FIELDS, **_TIME_FIELDS} if "efficiency" not in name]
    order += [name for name in _RATE_FIELDS if "efficiency" in name]
    return [n for n in order if n in elasticities] + [n for n in elasticities if n not in order]


def _bottleneck(report: dict[str, Any], elasticities: dict[str, float]) -> dict[str, Any]:
    """Which phase dominates an iteration, and which hardware resource binds tokens/s."""
    iteration = report["iteration_s"]
    draft_share = report["proposal_s"] / iteration  # every proposal pass, refeed included
    verify_share = report["verify_step_s"] / iteration
    if report["gamma"] == 0:
        phase = "target"
    else:
        phase = "draft" if draft_share > verify_share else "verify"
    # The binding resource is the hardware number tokens/s is most elastic to (on a tie, a
    # datasheet number before the efficiency that multiplies it).
    resource = max(_by_preference(elasticities), key=lambda name: round(abs(elasticities[name]), 6))
    return {
        "phase": phase,
        "draft_share": draft_share,
        "verify_share": verify_share,
        "draft_bound": report["draft_bound"],
        "verify_bound": report["verify_bound"],
        "target_bound": report["target_bound"],
        "binding_resource": resource,
        "binding_elasticity": elasticities[resource],
    }


def _notes(result, bounds, acceptance_info, gamma: int) -> list[str]:
    d = result.to_dict()["draft"]
    b = bounds.describe()
    notes = []
    if not acceptance_info["size_sensitive"]:
        notes.append(
            "with a constant acceptance rate the draft's size does not change acceptance, so the "
            "smallest, fastest draft within the bounds wins; what is optimised is gamma and the "
            "draft's shape under the latency model (use --alpha-model sdsl to let size buy "
            "acceptance)"
        )
    if gamma == 0:
        notes.append("speculation does not pay here: serve the target alone")
        return notes
    if d["n_layers"] <= math.ceil(b["min_layers"] - 1e-9):
        notes.append(
            f"at the minimum layer count ({b['min_layers']:g}): fewer layers mean fewer kernel "
            "launches, and Kaplan et al. (2020) find drafts below 2 layers lose accuracy"
        )
    if d["aspect_ratio"] >= b["max_aspect"] - 1e-6:
        notes.append(
            f"on the aspect-ratio bound d_model/layers = {b['max_aspect']:g}: wider and "
            "shallower is faster, but beyond it loss is no longer shape-independent "
            "(Kaplan et al. 2020); change it with --max-aspect"
        )
    if d["d_model"] >= b["max_d_model"] - 1e-6:
        notes.append("at the maximum width; raise --max-width")
    if d["n_layers"] >= math.floor(b["max_layers"] + 1e-9):
        notes.append("at the maximum layer count; raise --max-layers")
    if gamma >= math.floor(b["max_gamma"] + 1e-9):
        notes.append("gamma is at its upper bound; raise --max-gamma")
    return notes


def _split_notes(draft: dict[str, Any], gamma: int, draft_tp: int) -> list[str]:
    """A note when the recommended draft cannot be split over ``draft_tp`` chips."""
    from specsim.feasibility import tp_problem

    if gamma == 0 or draft_tp == 1:
        return []
    problem = tp_problem(draft["n_heads"], draft["n_kv_heads"], draft_tp)
    if problem is None:
        return []
    return [
        f"INFEASIBLE as priced: draft tensor parallelism {draft_tp} {problem} of the "
        "recommended draft (engines refuse it); rerun with --draft-tp 1 to search drafts "
        "served on one chip"
    ]


def _optimize_payload(args, result, bounds, acceptance, wall_s, steps, restarts, lr, certificate):
    target, chip = model_label(args.target), hardware_label(args.hardware)
    reference = model_reference(args.target)
    out = result.to_dict()
    report = out["report"]
    acceptance_info = _acceptance_summary(acceptance)
    searched = out["draft"].get("train_tokens")
    if acceptance_info["model"] == "sdsl" and searched is not None:
        # The search chose the draft's training tokens: the acceptance is the law's at that
        # count, not at the starting one (header, JSON and the schedule command agree).
        acceptance_info["draft_train_tokens"] = _shown(searched)
        acceptance_info["draft_train_tokens_searched"] = True
    draft_tp = args.draft_tp or args.tp
    return {
        "schema": "specsim.optimize/1",
        "scenario": {
            "target": target,
            "hardware": chip,
            "tp": args.tp,
            "draft_tp": draft_tp,
            "target_reference": reference,
            "weight_dtype": args.weight_dtype,
            "draft_weight_dtype": args.draft_weight_dtype,
            "kv_dtype": args.kv_dtype,
            "batch": args.batch,
            "prompt_tokens": args.prompt,
            "generate_tokens": args.generate,
            "speculation_overhead_s": args.speculation_overhead_us * 1e-6,
        },
        "acceptance": acceptance_info,
        "bounds": bounds.describe(),
        "draft": out["draft"],
        "gamma": out["gamma"],
        "tokens_per_s": out["tokens_per_s"],
        "baseline_tokens_per_s": out["baseline_tokens_per_s"],
        "speedup": out["speedup"],
        "acceptance_rate": report["acceptance_rate"],
        "expected_tokens_per_step": report["expected_tokens_per_step"],
        "bottleneck": _bottleneck(report, out["elasticities"]),
        "elasticities": out["elasticities"],
        "continuous_optimum": out["continuous_optimum"],
        "report": report,
        "search": {
            "optimizer": f"adam({lr:g})",
            "steps": steps,
            "restarts": restarts,
            "seed": args.seed,
            "evaluations": out["evaluations"],
            "wall_s": wall_s,
        },
        "certificate": certificate,
        "notes": _notes(result, bounds, acceptance_info, out["gamma"])
        + _split_notes(out["draft"], out["gamma"], draft_tp),
    }


def _format_count(n: float) -> str:
    for scale, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{suffix}"
    return f"{n:.3g}"


def _sensitivity_lines(elasticities: dict[str, float]) -> list[str]:
    lines = []
    items = [(k, elasticities[k]) for k in _by_preference(elasticities)]
    items = [(k, v) for k, v in items if abs(v) >= 5e-4]
    items.sort(key=lambda kv: -round(abs(kv[1]), 6))  # stable: ties keep the preference
    for name, e in items:
        if name in _RATE_FIELDS:
            lines.append(f"+10% {_RATE_FIELDS[name]:<24s} -> {10 * e:+.1f}% tokens/s")
        elif name in _TIME_FIELDS:
            lines.append(f"-10% {_TIME_FIELDS[name]:<24s} -> {-10 * e:+.1f}% tokens/s")
        else:
            lines.append(f"{name}: elasticity {e:+.3f}")
    return lines or ["none above 0.005% per 10%"]


def _print_optimize(payload: dict[str, Any]) -> None:
    s, d, r = payload["scenario"], payload["draft"], payload["report"]
    acc = payload["acceptance"]
    print(
        f"specsim optimize: {s['target']} on {s['tp']} x {s['hardware']}, batch {s['batch']}, "
        f"prompt {s['prompt_tokens']:g}, generate {s['generate_tokens']:g} tokens"
    )
    if acc["model"] == "sdsl":
        print(
            f"acceptance: SDSL law (draft trained on {_format_count(acc['draft_train_tokens'])}"
            f" tokens{', as searched' if acc.get('draft_train_tokens_searched') else ''}, "
            f"target on {_format_count(acc['target_train_tokens'])})"
        )
    else:
        print(f"acceptance: constant alpha {acc['alpha']:.3g}")
    print()
    label = "{:<20s}".format
    mlp = "gated" if d["gated_mlp"] else "plain"
    kv = "KV head" if d["n_kv_heads"] == 1 else "KV heads"
    print(
        label("Recommended draft")
        + f"{d['n_layers']} layers x d_model {d['d_model']}  ({d['n_heads']} heads of "
        f"{d['head_dim']}, {d['n_kv_heads']} {kv}, d_ff {d['d_ff']} {mlp})"
    )
    embedding = d["vocab"] * d["d_model"] * (1 if d["tied_embeddings"] else 2)
    tokens = "" if d["train_tokens"] is None else f", trained on {_format_count(d['train_tokens'])}"
    print(
        label("") + f"{_format_count(d['parameters'])} parameters ({_format_count(embedding)} in "
        f"embeddings), aspect ratio {d['aspect_ratio']:.0f}{tokens}"
    )
    print(label("Lookahead gamma") + f"{payload['gamma']}")
    print(
        label("Predicted")
        + f"{payload['tokens_per_s']:,.1f} tokens/s vs {payload['baseline_tokens_per_s']:,.1f}"
        f" plain: speedup {payload['speedup']:.2f}x"
    )
    print(
        label("")
        + f"alpha {payload['acceptance_rate']:.3f}, {payload['expected_tokens_per_step']:.2f} "
        f"tokens per iteration, iteration {r['iteration_s'] * 1e3:.3f} ms"
    )
    b = payload["bottleneck"]
    resource = {**_RATE_FIELDS, **_TIME_FIELDS}.get(b["binding_resource"], b["binding_resource"])
    if payload["gamma"] > 0:
        print(
            label("Bottleneck")
            + f"{resource} (elasticity {b['binding_elasticity']:+.2f}); verification takes "
            f"{100 * b['verify_share']:.0f}% of each iteration ({b['verify_bound']}-bound), "
            f"drafting {100 * b['draft_share']:.0f}% ({b['draft_bound']}-bound)"
        )
    else:
        print(
            label("Bottleneck")
            + f"{resource} (elasticity {b['binding_elasticity']:+.2f}); plain decoding, "
            f"{b['target_bound']}-bound"
        )
    for i, line in enumerate(_sensitivity_lines(payload["elasticities"])):
        print(label("Sensitivities" if i == 0 else "") + line)
    c = payload["continuous_optimum"]
    print(
        label("Continuous optimum")
        + f"{c['n_layers']:.2f} layers x {c['d_model']:.0f}, gamma {c['gamma']:.2f} -> "
        f"{c['tokens_per_s']:,.1f} tokens/s (before rounding)"
    )
    search = payload["search"]
    print(
        label("Search")
        + f"{search['optimizer']}, {search['restarts']} restarts x {search['steps']} steps, "
        f"{search['evaluations']} evaluations, {search['wall_s']:.1f} s incl. compilation"
    )
    cert = payload["certificate"]
    if cert is not None:
        print(
            label("Certificate") + f"grid best {cert['grid_tokens_per_s']:,.1f} tokens/s over "
            f"{cert['grid_evaluations']} points ({cert['evaluation_ratio']:.0f}x the search's "
            f"evaluations): gap {100 * cert['gap']:.3f}%"
        )
    for note in payload["notes"]:
        print(f"note: {note}")
    if payload["gamma"] > 0:
        flags = f"--target {s['target_reference']} --hardware '{s['hardware']}' --tp {s['tp']}"
        for flag in ("weight_dtype", "draft_weight_dtype", "kv_dtype"):
            if s[flag] is not None:
                flags += f" --{flag.replace('_', '-')} {s[flag]}"
        print(
            f"per-batch gamma for serving: specsim schedule {flags} "
            f"--draft {d['n_layers']}x{d['d_model']} {_alpha_flags(acc)}".rstrip()
        )


def _alpha_flags(acceptance_info: dict[str, Any]) -> str:
    if acceptance_info["model"] == "sdsl":
        return (
            f"--alpha-model sdsl --draft-train-tokens {acceptance_info['draft_train_tokens']:g}"
            f" --target-train-tokens {acceptance_info['target_train_tokens']:g}"
        )
    return f"--alpha {acceptance_info['alpha']:g}"


def run_optimize(args: argparse.Namespace) -> int:
    """Runs ``specsim optimize``: the best draft and gamma for one scenario.

    With no flags: Llama-3-8B on one H100 SXM, batch 1, 512-token prompts, 256 generated
    tokens, SDSL acceptance with the catalogue's training tokens (15T for draft and target),
    default bounds (2-32 layers, width from two heads to the target's, aspect ratio 32-512,
    gamma 0-16), Adam(0.08), 4 restarts x 100 steps.

    Text output: the recommended draft (layers, width, heads, parameters), gamma, predicted
    tokens/s and speedup, the binding bottleneck, hardware sensitivities, the continuous
    optimum and notes. ``--json`` prints one object whose top-level keys are, in order,
    those of ``OPTIMIZE_JSON_KEYS``: ``schema``, ``scenario``, ``acceptance``, ``bounds``,
    ``draft``, ``gamma``, ``tokens_per_s``, ``baseline_tokens_per_s``, ``speedup``,
    ``acceptance_rate``, ``expected_tokens_per_step``, ``bottleneck``, ``elasticities``,
    ``continuous_optimum``, ``report``, ``search``, ``certificate``, ``notes``.

    Returns:
        0 on success.

    Raises:
        ValueError: bad input or an infeasible request (nothing fits in memory, bounds that
            exclude every buildable draft); the CLI prints it as one line and exits 2.
    """
    if args.method != "draft":
        from ._method_commands import run_method_optimize

        return run_method_optimize(args)
    if method_requested(args):
        raise ValueError(
            "--method draft searches the draft's architecture; --alphas, --acceptance-file, "
            "--max-nodes, --max-depth and the other method flags apply to the other methods"
        )
    import optax

    from specsim import (
        DEFAULT_LEARNING_RATE,
        DEFAULT_OPTIMIZER,
        DEFAULT_RESTARTS,
        DEFAULT_STEPS,
        DraftBounds,
        DraftTemplate,
        Scenario,
        Workload,
        grid_search_scenarios,
        models,
        optimize_scenarios,
    )

    started = time.perf_counter()
    target = load_target(args)
    chip = load_hardware(args.hardware)
    workload = Workload.create(args.batch, args.prompt, args.generate)
    acceptance = _acceptance_for_optimize(args)
    if args.alpha_model != "sdsl":
        for flag in ("--draft-max-train-tokens", "--draft-train-flops"):
            value = getattr(args, flag[2:].replace("-", "_"))
            if value is not None:
                raise ValueError(
                    f"{flag} {value:g}: only applies to the SDSL acceptance law (a constant "
                    "alpha does not depend on training); valid: --alpha-model sdsl, or no "
                    f"{flag} with --alpha"
                )
    overrides = {}
    if args.width_step is not None:
        overrides["width_step"] = args.width_step
    if args.draft_ffn_ratio is not None:
        overrides["ffn_ratio"] = args.draft_ffn_ratio
    if args.draft_weight_dtype is not None:
        overrides["weight_bytes"] = models.load(
            target, weight_dtype=args.draft_weight_dtype
        ).weight_bytes
    template = DraftTemplate.from_target(target, **overrides)
    given = {
        "min_layers": args.min_layers,
        "max_layers": args.max_layers,
        "min_d_model": args.min_width,
        "max_d_model": args.max_width,
        "min_aspect": args.min_aspect,
        "max_aspect": args.max_aspect,
        "max_gamma": args.max_gamma,
        "max_train_tokens": args.draft_max_train_tokens,
        "train_flops_budget": args.draft_train_flops,
    }
    bounds = DraftBounds.create(
        target, template=template, **{k: v for k, v in given.items() if v is not None}
    )
    scenario = Scenario.create(
        target,
        chip,
        workload,
        acceptance,
        bounds=bounds,
        template=template,
        tp=args.tp,
        draft_tp=args.draft_tp,
        speculation_overhead_s=args.speculation_overhead_us * 1e-6,
        runtime=args.runtime,
    )
    steps = args.steps or DEFAULT_STEPS
    restarts = args.restarts or DEFAULT_RESTARTS
    lr = args.learning_rate or DEFAULT_LEARNING_RATE
    optimizer = DEFAULT_OPTIMIZER if args.learning_rate is None else optax.adam(lr)
    stages = ["optimising (compiles on first use)"] + (
        ["certifying against the exhaustive grid"] if args.certify else []
    )
    progress = StageProgress(stages, enabled=not args.json)
    try:
        (result,) = optimize_scenarios(
            [scenario], optimizer=optimizer, steps=steps, restarts=restarts, seed=args.seed
        )
        if not result.feasible:
            raise ValueError(result.message)
        progress.advance()
        search_s = time.perf_counter() - started
        certificate = None
        if args.certify:
            (grid,) = grid_search_scenarios([scenario])
            best = float(grid.tokens_per_s)
            certificate = {
                "grid_tokens_per_s": best,
                "gap": 1.0 - float(result.tokens_per_s) / best,
                "grid_evaluations": grid.evaluations,
                "evaluation_ratio": grid.evaluations / result.evaluations,
                "grid_draft": {
                    "n_layers": round(float(grid.draft.n_layers)),
                    "d_model": round(float(grid.draft.d_model)),
                },
                "grid_gamma": round(float(grid.draft.gamma)),
            }
            progress.advance()
    finally:
        progress.close()
    payload = _optimize_payload(
        args,
        result,
        bounds,
        acceptance,
        search_s,
        steps,
        restarts,
        lr,
        certificate,
    )
    if args.json:
        print_json(payload)
    else:
        _print_optimize(payload)
    return 0
