"""SGLang: ``python -m sglang.launch_server`` and its adaptive-speculation JSON.

From 0.5.13, an EAGLE or EAGLE3 chain (``--speculative-eagle-topk 1``) can pin its draft
steps per batch-size range: ``--speculative-adaptive --speculative-adaptive-config FILE``
with one slot per range, keyed by the range's first batch size, whose only candidate is
the range's lookahead (a slot with one candidate never moves). Other methods, trees and
older releases get one static setting. Keys and rules: ``schemas/sglang.toml``.
"""

from __future__ import annotations

from ._files import EngineFiles, UnsupportedPlan, comment, header_lines, json_text, shell_command
from ._plan import ServingPlan
from ._schema import EngineVersion, check

__all__ = ["emit_sglang"]

_ALGORITHM = {
    "draft": "STANDALONE",
    "eagle": "EAGLE",
    "eagle3": "EAGLE3",
    "mtp": "NEXTN",
    "ngram": "NGRAM",
}
_ADAPTIVE_FILE = "adaptive_config.json"


def _static_args(plan: ServingPlan, steps: int) -> list[tuple[str, object]]:
    """Flags for ``steps`` draft steps (a chain, an EAGLE tree or n-gram lookup)."""
    if plan.method == "ngram":
        # One matched continuation (BFS breadth 1): the verified window is the lookahead
        # plus the last accepted token, as for an EAGLE chain.
        return [
            ("--speculative-num-draft-tokens", steps + 1),
            ("--speculative-ngram-max-bfs-breadth", 1),
        ]
    if plan.is_tree:
        return [
            ("--speculative-num-steps", steps),
            ("--speculative-eagle-topk", plan.tree_topk),
            ("--speculative-num-draft-tokens", plan.tree_tokens + 1),
        ]
    return [
        ("--speculative-num-steps", steps),
        ("--speculative-eagle-topk", 1),
        ("--speculative-num-draft-tokens", steps + 1),
    ]


def emit_sglang(plan: ServingPlan, version: EngineVersion) -> EngineFiles:
    """The SGLang launch script (and adaptive JSON where the release and method allow).

    Raises:
        UnsupportedPlan: Medusa or self-speculation (no SGLang algorithm).
    """
    algorithm = _ALGORITHM.get(plan.method)
    choices = version.sections["cli"]["--speculative-algorithm"]["choices"]
    if algorithm is None or algorithm not in choices:
        raise UnsupportedPlan(
            f"{version.label} has no speculative algorithm for {plan.method!r} (its "
            f"algorithms: {', '.join(choices)})"
        )
    notes: list[str] = []
    if plan.vocab_mismatch:
        notes.append(
            f"the draft's vocabulary ({plan.draft_vocab}) differs from the target's "
            f"({plan.target_vocab}): SGLang verifies draft token ids against the target's, "
            "so use a draft with the target's tokenizer"
        )
    if plan.draft_id is not None and plan.draft_tp != plan.tp:
        notes.append(
            f"SGLang runs the draft at the target's TP ({plan.tp}); the schedule assumed "
            f"draft TP {plan.draft_tp}"
        )
    varies = len({k for _, _, k in plan.ranges}) > 1
    adaptive = (
        version.schedule == "slots"
        and plan.method in ("eagle", "eagle3")
        and not plan.is_tree
        and varies
        and plan.max_lookahead > 0
    )
    args: list[tuple[str, object]] = [("--tp-size", plan.tp)]
    slots: dict[str, object] = {}
    if adaptive:
        low = int(version.extra["adaptive_min_steps"])
        if low > 0 and any(k < low for _, _, k in plan.ranges):
            notes.append(
                f"{version.label} cannot switch drafting off per range (candidate_steps >= "
                f"{low}): ranges with lookahead 0 draft {low} step"
            )
        slots = {
            "_specsim": (
                f"draft steps per batch-size range for {version.label}; keys: first batch "
                "size of each range; one candidate per slot pins its steps"
            )
        }
        for first, _, k in plan.ranges:
            slots[str(first)] = {"candidate_steps": [max(k, low)]}
        steps = max(plan.ranges[0][2], low)
        notes.append(
            "SGLang pads a batch to the next CUDA-graph batch size before choosing the slot "
            f"(adaptive_spec_params.py); batch sizes above {plan.last_batch} use the last slot"
        )
        args += [
            ("--speculative-algorithm", algorithm),
            ("--speculative-draft-model-path", plan.draft_id),
            ("--speculative-num-steps", steps),
            ("--speculative-eagle-topk", 1),
            ("--speculative-adaptive", True),
            ("--speculative-adaptive-config", f'"$(dirname "$0")/{_ADAPTIVE_FILE}"'),
        ]
    else:
        steps = plan.lookahead_at(plan.batch)
        if varies:
            why = (
                "adaptive slots need an EAGLE or EAGLE3 chain"
                if version.schedule == "slots"
                else "per-batch slots need SGLang 0.5.13 or later"
            )
            notes.append(
                f"one setting for every batch size: the lookahead at batch {plan.batch} "
                f"(--batch); {why}"
            )
        if steps == 0:
            notes.append(f"speculation does not pay at batch {plan.batch}: serve without a draft")
        else:
            args.append(("--speculative-algorithm", algorithm))
            if plan.draft_id is not None:
                args.append(("--speculative-draft-model-path", plan.draft_id))
            args += _static_args(plan, steps)
    cli = {
        flag: value if flag != "--speculative-adaptive-config" else _ADAPTIVE_FILE
        for flag, value in args
    }
    cli["--model-path"] = plan.target_id
    head = comment(header_lines(version, plan, notes))
    program = ["python", "-m", "sglang.launch_server", "--model-path", plan.target_id]
    files = {"launch.sh": "#!/bin/sh\n" + head + shell_command(program, args) + "\n"}
    config: dict = {"cli": cli}
    if adaptive:
        files[_ADAPTIVE_FILE] = json_text(slots) + "\n"
        config["adaptive_config"] = slots
    result = EngineFiles("sglang", version, files, config, tuple(notes))
    if result.loadable:
        check(version, config)
    return result
