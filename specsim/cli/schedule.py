"""``specsim schedule``: best gamma per batch size, switch-off batch and serving files.

Turns a (target, draft, chip, acceptance) into the best whole lookahead gamma for every
batch size and the batch size from which speculation stops paying, and writes what vLLM,
SGLang and TensorRT-LLM load to use it (`specsim.engines`): for each engine, the settings
of a named release, every key checked against a schema written from that release's
source.
"""

from __future__ import annotations

import argparse
import os
import re
import sys

from ._args import (
    add_json_argument,
    add_scenario_arguments,
    add_speculation_overhead_argument,
    build_acceptance,
    check_vocabulary,
    hardware_label,
    load_draft,
    load_hardware,
    load_target,
    model_label,
    positive,
    print_json,
    resolve_draft,
    whole,
)
from ._progress import StageProgress

# The limits of specsim.speculation_schedule (kept here so --help starts without JAX).
MAX_SCHEDULE_GAMMA = 64
MAX_SCHEDULE_BATCH = 16384

__all__ = ["SCHEDULE_JSON_KEYS", "add_schedule_arguments", "run_schedule"]

# Top-level keys of `specsim schedule --json`, in order.
SCHEDULE_JSON_KEYS = {
    "schema": "format version, 'specsim.schedule/2'",
    "scenario": "method, target, draft (the draft model or the method's label), hardware, tp, "
    "draft_tp, prompt_tokens, generate_tokens, target_id, draft_id (the ids the engines load)",
    "switch_off_batch": "smallest batch size from which speculation never pays (null: pays "
    "up to max_batch)",
    "max_gamma": "largest gamma considered",
    "runs": "list of {first_batch, last_batch, gamma}",
    "draft_len_schedule": "TensorRT-LLM draft_len_schedule from 1.3.0rc27 (batch upper bound "
    "-> gamma)",
    "batch_sizes": "1 .. max_batch",
    "gamma": "best gamma per batch size",
    "tokens_per_s": "tokens/s at that gamma",
    "speedup": "speedup at that gamma",
    "fits": "memory fit per batch size",
    "snippets": "{engine: the text of its first file}",
    "engines": "{engine: {version, covers, loadable, files: {name: text}, notes} or "
    "{unsupported: why}}",
}
ENGINE_CHOICES = ("vllm", "sglang", "tensorrt-llm")
METHODS = ("draft", "eagle", "eagle3", "medusa", "mtp", "ngram", "self")
# Flags that belong to one method, and the methods that load a checkpoint named by --draft-id.
# Flag names as evaluate, optimize and sweep spell them (the old spellings stay as aliases).
_METHOD_FLAGS = {
    "medusa_heads": ("--medusa-heads", "medusa"),
    "mtp_modules": ("--mtp-modules", "mtp"),
    "ngram_match": ("--match-probability", "ngram"),
    "ngram_min": ("--ngram-min", "ngram"),
    "ngram_max": ("--ngram-max", "ngram"),
    "self_layers": ("--draft-layers", "self"),
}
_LOADS_CHECKPOINT = ("draft", "eagle", "eagle3", "medusa")

_DRAFT_SHAPE = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*$")


def add_schedule_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``specsim schedule``."""
    parser.description = (
        "The best whole lookahead gamma for every batch size from 1 to --max-batch (exact "
        "roofline), the batch size from which speculation stops paying, and the settings "
        "vLLM, SGLang and TensorRT-LLM load to serve it, for a named release of each "
        "(--engine-version), every key checked against that release's source. --draft takes "
        "a model (as --target) or LAYERSxWIDTH, a draft built on the target's template as "
        "specsim optimize recommends."
    )
    add_scenario_arguments(
        parser,
        draft_help="draft model: a model as for --target, or LAYERSxWIDTH on the target's template "
        "(default with --method draft: llama-68m for a 32,000-token vocabulary, else the "
        "smallest catalogue model with the target's vocabulary)",
        allow_infeasible=False,  # batches that do not fit are marked in the schedule
    )
    parser.set_defaults(draft=None)  # resolved per --method (llama-68m for draft models)
    parser.add_argument(
        "--method",
        choices=METHODS,
        default="draft",
        help="what proposes the tokens: a draft model (--draft), EAGLE-2 or EAGLE-3 heads, "
        "Medusa heads, the target's MTP modules, n-gram prompt lookup or self-speculation "
        "(default: draft)",
    )
    parser.add_argument(
        "--medusa-heads",
        type=positive(int),
        default=None,
        help="Medusa heads (--method medusa; default 5); gamma is at most this",
    )
    parser.add_argument(
        "--mtp-modules",
        type=positive(int),
        default=None,
        help="MTP modules shipped with the target (--method mtp; default 1)",
    )
    parser.add_argument(
        "--match-probability",
        "--ngram-match",
        dest="ngram_match",
        type=float,
        default=None,
        help="probability that n-gram lookup finds a match (--method ngram; default 1)",
    )
    parser.add_argument(
        "--ngram-min",
        type=positive(int),
        default=None,
        help="shortest context suffix n-gram lookup matches, tokens (--method ngram; written "
        "to the engines; default 1)",
    )
    parser.add_argument(
        "--ngram-max",
        type=positive(int),
        default=None,
        help="longest context suffix matched, tokens (--method ngram; default 4)",
    )
    parser.add_argument(
        "--draft-layers",
        "--self-layers",
        dest="self_layers",
        type=positive(int),
        default=None,
        help="target layers the self-speculating draft runs (--method self; required there, "
        "no default)",
    )
    add_speculation_overhead_argument(parser)
    parser.add_argument(
        "--max-gamma",
        type=whole(0),
        default=16,
        help=f"largest lookahead considered, at most {MAX_SCHEDULE_GAMMA}",
    )
    parser.add_argument(
        "--max-batch",
        type=whole(1),
        default=512,
        help=f"largest batch size scheduled, at most {MAX_SCHEDULE_BATCH}",
    )
    parser.add_argument(
        "--engine",
        default="all",
        help="serving engines to write for, comma-separated: vllm, sglang, tensorrt-llm or "
        "all (default: all)",
    )
    parser.add_argument(
        "--engine-version",
        action="append",
        default=[],
        metavar="ENGINE=RELEASE",
        help="the engine release whose settings to write, e.g. vllm=0.23.0 or "
        "tensorrt-llm=1.2.1 (repeatable; a bare RELEASE with a single --engine; default: the "
        "newest release specsim read for each engine; `specsim schedule --engine-version "
        "list` shows them)",
    )
    parser.add_argument(
        "--target-id",
        default=None,
        help="the target as the engines load it: a Hugging Face id or a path (default: the "
        "catalogue's Hub id, the cached Hub id or the model folder given to --target)",
    )
    parser.add_argument(
        "--draft-id",
        default=None,
        help="the draft as the engines load it (default: as for --target-id; a LAYERSxWIDTH "
        "draft has none until trained)",
    )
    parser.add_argument(
        "--out-dir",
        default=None,
        help="write each engine's files into OUT_DIR/<engine>/ (default: print the first "
        "file of each)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace files already in --out-dir (default: refuse)",
    )
    add_json_argument(parser)


def _engine_versions(args) -> dict[str, str | None]:
    """``{engine: release or None}`` from ``--engine`` and ``--engine-version``."""
    from specsim.engines import engine_name, resolve_version

    wanted = (
        list(ENGINE_CHOICES)
        if args.engine.strip().lower() == "all"
        else [engine_name(e) for e in args.engine.split(",") if e.strip()]
    )
    if not wanted:
        raise ValueError("--engine: name at least one of vllm, sglang, tensorrt-llm or all")
    releases: dict[str, str | None] = dict.fromkeys(dict.fromkeys(wanted))
    for item in args.engine_version:
        engine, sep, release = item.partition("=")
        if not sep:
            if len(releases) != 1:
                raise ValueError(
                    f"--engine-version {item}: say which engine (ENGINE=RELEASE, e.g. "
                    "vllm=0.34.0) or pick one with --engine"
                )
            engine, release = next(iter(releases)), item
        engine = engine_name(engine)
        if engine not in releases:
            raise ValueError(f"--engine-version {item}: {engine} is not among --engine")
        resolve_version(engine, release.strip())  # refuse an unchecked release up front
        releases[engine] = release.strip()
    return releases


def _list_versions() -> int:
    from specsim.engines import versions

    for engine in ENGINE_CHOICES:
        for entry in versions(engine):
            print(
                f"{engine:<13s} {entry.name:<10s} covers {entry.span:<28s} "
                f"per-batch lookahead: {entry.schedule}"
            )
    return 0


def _schedule_draft(args, target):
    """The draft named by ``--draft``: a catalogue name, or ``LAYERSxWIDTH`` on the template."""
    import jax
    import jax.numpy as jnp

    from specsim import DraftParams, DraftTemplate, buildable_draft, models

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


def _speculator(args, target):
    """``(speculator, label, draft_id, plan settings)`` of ``--method`` and its flags."""
    method = args.method
    for dest, (flag, owner) in _METHOD_FLAGS.items():
        if getattr(args, dest) is not None and owner != method:
            raise ValueError(f"{flag} applies to --method {owner}, not --method {method}")
    if method != "draft" and args.draft is not None:
        raise ValueError(
            f"--draft applies to --method draft; --method {method} "
            + ("names its heads with --draft-id" if method in _LOADS_CHECKPOINT else "has none")
        )
    if method not in _LOADS_CHECKPOINT and args.draft_id is not None:
        raise ValueError(f"--draft-id applies to a method that loads a checkpoint, not {method}")
    if method == "draft":
        resolve_draft(args, target)
        speculator, label = _schedule_draft(args, target)
        from specsim import engines

        draft_id = args.draft_id or engines.model_id(args.draft, "draft")
        return speculator, label, draft_id, {}
    from specsim import speculators
    from specsim.engines import placeholder

    if method in ("eagle", "eagle3"):
        version = 3 if method == "eagle3" else 2
        speculator, label = speculators.Eagle.create(version), f"EAGLE-{version} head"
    elif method == "medusa":
        heads = args.medusa_heads or 5
        speculator, label = speculators.Medusa.create(heads), f"Medusa ({heads} heads)"
    elif method == "mtp":
        modules = args.mtp_modules or 1
        speculator = speculators.MTP.create(modules)
        label = f"MTP ({modules} module{'s' if modules > 1 else ''})"
    elif method == "ngram":
        match = 1.0 if args.ngram_match is None else args.ngram_match
        if not 0 < match <= 1:
            raise ValueError(f"--match-probability must be in (0, 1], got {match:g}")
        speculator, label = speculators.Ngram.create(match), f"n-gram lookup (match {match:g})"
        low = args.ngram_min or 1
        high = args.ngram_max or max(4, low)
        if high < low:
            raise ValueError(f"--ngram-max {high} is below --ngram-min {low}")
        return speculator, label, None, {"ngram_min": low, "ngram_max": high}
    else:
        if args.self_layers is None:
            raise ValueError("--method self needs --draft-layers, the target layers it drafts with")
        speculator = speculators.SelfSpeculation.create(args.self_layers)
        label = f"self-speculation ({args.self_layers} layers)"
    draft_id = None
    if method in _LOADS_CHECKPOINT:
        draft_id = args.draft_id or placeholder(
            "draft", f"the {label} of {model_label(args.target)}", "not known to specsim"
        )
    return speculator, label, draft_id, {}


def _check_out_dir(args, releases) -> None:
    """Refuses an --out-dir that cannot be written, before the schedule is computed."""
    if args.out_dir is None:
        return
    if os.path.exists(args.out_dir) and not os.path.isdir(args.out_dir):
        raise ValueError(f"--out-dir {args.out_dir}: is a file; valid: a folder")
    if args.overwrite:
        return
    for engine in releases:
        folder = os.path.join(args.out_dir, engine)
        if os.path.isdir(folder) and os.listdir(folder):
            raise ValueError(
                f"--out-dir {args.out_dir}: {folder} already holds files; pass --overwrite "
                "to replace them or choose another folder"
            )


def _engine_files(schedule, args, target_id, draft_id, releases, vocab, settings):
    """``{engine: EngineFiles or the reason it cannot serve the plan}``."""
    from specsim.engines import ServingPlan, UnsupportedPlan, emit

    plan = ServingPlan.from_schedule(
        schedule,
        target_id,
        method=args.method,
        draft_id=draft_id,
        **settings,
        batch=args.batch,
        tp=args.tp,
        draft_tp=args.draft_tp,
        target_vocab=vocab[0] if args.method == "draft" else None,
        draft_vocab=vocab[1] if args.method == "draft" else None,
    )
    out: dict = {}
    for engine, release in releases.items():
        try:
            out[engine] = emit(plan, engine, release)
        except UnsupportedPlan as why:
            out[engine] = str(why)
    return out


def run_schedule(args: argparse.Namespace) -> int:
    """Runs ``specsim schedule``: best gamma per batch size and serving files per engine.

    ``--draft`` takes a model (as ``--target``) or ``LAYERSxWIDTH`` (a draft built on the
    target's template, as ``specsim optimize`` recommends). Acceptance: ``--alpha A``
    (default 0.8) or ``--alpha-model sdsl``. Every whole batch size from 1 to
    ``--max-batch`` (512) and every whole gamma from 0 to ``--max-gamma`` (16) is evaluated
    on the exact roofline. For each ``--engine`` the settings of one release
    (``--engine-version``) are emitted by `specsim.engines` and checked against its schema;
    models are named by ``--target-id`` / ``--draft-id``, else resolved with
    `specsim.engines.model_id` (a marked placeholder, reported on stderr, when unknown).
    ``--json`` prints one object with the keys of ``SCHEDULE_JSON_KEYS``.

    Returns:
        0 on success.

    Raises:
        ValueError: bad input (the CLI prints one line and exits 2).
    """
    if args.engine_version == ["list"]:
        return _list_versions()
    releases = _engine_versions(args)
    _check_out_dir(args, releases)
    from specsim import Workload, engines, speculation_schedule

    target = load_target(args)
    draft, draft_name, draft_id, settings = _speculator(args, target)
    if args.method == "draft":
        check_vocabulary(args, target, draft)
    chip = load_hardware(args.hardware)
    acceptance = build_acceptance(args)
    workload = Workload.create(1, args.prompt, args.generate)
    target_id = args.target_id or engines.model_id(args.target, "target")
    max_gamma = int(args.max_gamma)
    if args.method == "medusa":
        max_gamma = min(max_gamma, int(float(draft.n_heads)))
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
            max_gamma=max_gamma,
            max_batch=args.max_batch,
            runtime=args.runtime,
        )
        progress.advance()
    finally:
        progress.close()
    target_name, chip_name = model_label(args.target), hardware_label(args.hardware)
    vocab = (round(float(target.vocab)), round(float(getattr(draft, "vocab", target.vocab))))
    outputs = _engine_files(schedule, args, target_id, draft_id, releases, vocab, settings)
    produced = [o for o in outputs.values() if not isinstance(o, str)]
    written = engines.write(produced, args.out_dir) if args.out_dir is not None else []
    for unresolved in sorted({v for v in (target_id, draft_id) if engines.is_placeholder(v)}):
        print(f"specsim: warning: files not loadable until set: {unresolved}", file=sys.stderr)
    if args.json:
        print_json(
            {
                "schema": "specsim.schedule/2",
                "scenario": {
                    "method": args.method,
                    "target": target_name,
                    "draft": draft_name,
                    "hardware": chip_name,
                    "tp": args.tp,
                    "draft_tp": args.draft_tp or args.tp,
                    "prompt_tokens": args.prompt,
                    "generate_tokens": args.generate,
                    "target_id": target_id,
                    "draft_id": draft_id,
                },
                **schedule.to_dict(),
                "snippets": {e: o.main for e, o in outputs.items() if not isinstance(o, str)},
                "engines": {
                    e: {"unsupported": o}
                    if isinstance(o, str)
                    else {
                        "version": o.version.name,
                        "covers": o.version.span,
                        "loadable": o.loadable,
                        "files": dict(o.files),
                        "notes": list(o.notes),
                    }
                    for e, o in outputs.items()
                },
            }
        )
        return 0
    print(
        f"specsim schedule: {target_name} + {draft_name} on {args.tp} x {chip_name}, prompt "
        f"{args.prompt:g}, generate {args.generate:g} tokens, batch 1-{args.max_batch}"
    )
    if max_gamma < int(args.max_gamma):
        print(f"gamma searched up to {max_gamma}: Medusa drafts one token per head")
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
    if written:
        print("\nwrote " + ", ".join(written))
    for engine, output in outputs.items():
        if isinstance(output, str):
            print(f"\n{engine}: not written: {output}")
        elif not written:
            print()
            others = [name for name in output.files][1:]
            more = f" (also {', '.join(others)}: write them with --out-dir)" if others else ""
            print(f"{engine} {output.version.name}: {next(iter(output.files))}{more}")
            print(output.main, end="")
    return 0
