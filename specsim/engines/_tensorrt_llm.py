"""TensorRT-LLM (PyTorch backend): an LLM-API snippet and a ``trtllm-serve`` YAML file.

``draft_len_schedule`` maps batch sizes to draft lengths, with two meanings:
release 1.2 reads keys as LOWER bounds (the value of the largest key <= the batch size;
key 1 is required), the 1.3 release candidates from PR #10860 on read them as UPPER bounds
(the value of the smallest key >= the batch size; 0 above the largest key). In both the
smallest key must map to ``max_draft_len``. Keys and rules: ``schemas/tensorrt_llm.toml``.
"""

from __future__ import annotations

import json

from ._files import EngineFiles, UnsupportedPlan, comment, header_lines, shell_command
from ._plan import ServingPlan
from ._schema import EngineVersion, check

__all__ = ["emit_tensorrt_llm", "tensorrt_llm_schedule"]

_DECODING = {
    "draft": ("Draft_Target", "DraftTargetDecodingConfig"),
    "eagle3": ("Eagle3", "Eagle3DecodingConfig"),
    "mtp": ("MTP", "MTPDecodingConfig"),
    "ngram": ("NGram", "NGramDecodingConfig"),
}
_YAML_FILE = "extra_llm_api_options.yaml"


def tensorrt_llm_schedule(
    ranges: list[tuple[int, int, int]] | tuple[tuple[int, int, int], ...], semantics: str
) -> dict[int, int]:
    """``draft_len_schedule`` for consecutive ``(first, last, lookahead)`` ranges from batch 1.

    Args:
        ranges: as in `ServingPlan.ranges`.
        semantics: ``"lower_bounds"`` (release 1.2: each key is the first batch size of a
            range; the last value holds above, so a trailing 0 is written) or
            ``"upper_bounds"`` (1.3.0rc27 on: each key is the last batch size of a range;
            0 above the largest key, so trailing ranges of 0 are left out).

    Examples:
        >>> r = [(1, 2, 4), (3, 4, 2), (5, 5, 1), (6, 7, 0)]
        >>> tensorrt_llm_schedule(r, "upper_bounds")
        {2: 4, 4: 2, 5: 1}
        >>> tensorrt_llm_schedule(r, "lower_bounds")
        {1: 4, 3: 2, 5: 1, 6: 0}
    """
    if semantics == "lower_bounds":
        return {first: k for first, _, k in ranges}
    if semantics != "upper_bounds":
        raise ValueError(f"semantics must be 'lower_bounds' or 'upper_bounds', got {semantics!r}")
    kept = list(ranges)
    while kept and kept[-1][2] == 0:
        kept.pop()
    return {last: k for _, last, k in kept}


def _merged(ranges: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """Adjacent ranges of equal lookahead joined."""
    out: list[tuple[int, int, int]] = []
    for first, last, k in ranges:
        if out and out[-1][2] == k:
            out[-1] = (out[-1][0], last, k)
        else:
            out.append((first, last, k))
    return out


def _python_value(value: object) -> str:
    return json.dumps(value) if isinstance(value, str) else repr(value)


def _yaml(spec: dict) -> str:
    lines = ["speculative_config:"]
    for key, value in spec.items():
        if isinstance(value, dict):
            lines.append(f"  {key}:")
            lines += [f"    {k}: {v}" for k, v in value.items()]
        elif isinstance(value, bool):
            lines.append(f"  {key}: {'true' if value else 'false'}")
        elif isinstance(value, str):
            lines.append(f"  {key}: {json.dumps(value)}")
        else:
            lines.append(f"  {key}: {value}")
    return "\n".join(lines) + "\n"


def emit_tensorrt_llm(plan: ServingPlan, version: EngineVersion) -> EngineFiles:
    """The LLM-API snippet, ``trtllm-serve`` YAML and command of ``plan``.

    Raises:
        UnsupportedPlan: EAGLE-1/2, Medusa and self-speculation (no PyTorch-backend
            decoding config in the releases named).
    """
    if plan.method not in _DECODING:
        raise UnsupportedPlan(
            f"{version.label} (PyTorch backend) has no decoding config for {plan.method!r}; "
            f"its configs: {', '.join(c for _, c in _DECODING.values())}"
        )
    decoding_type, class_name = _DECODING[plan.method]
    notes: list[str] = []
    if plan.vocab_mismatch:
        notes.append(
            f"the draft's vocabulary ({plan.draft_vocab}) differs from the target's "
            f"({plan.target_vocab}): TensorRT-LLM verifies draft token ids against the target's, "
            "so use a draft with the target's tokenizer"
        )
    if plan.draft_id is not None and plan.draft_tp != plan.tp:
        notes.append(
            f"TensorRT-LLM runs the draft at the target's TP ({plan.tp}); the schedule "
            f"assumed draft TP {plan.draft_tp}"
        )
    varies = len({k for _, _, k in plan.ranges}) > 1
    # Which drafters read the schedule: 1.2 only the two-model ones (Drafter subclasses);
    # from PR #10860 one-model EAGLE3 as well. MTP (PR #12262) is not assumed.
    scheduled = varies and plan.method != "mtp" and not plan.is_tree
    if scheduled:
        first_k = plan.ranges[0][2]
        ranges = _merged([(a, b, min(k, first_k)) for a, b, k in plan.ranges])
        if any(k > first_k for _, _, k in plan.ranges):
            notes.append(
                f"draft_len_schedule's smallest batch size must use max_draft_len: larger "
                f"batches are capped at batch 1's lookahead ({first_k})"
            )
        max_draft_len = first_k
        schedule = tensorrt_llm_schedule(ranges, version.schedule) if len(ranges) > 1 else None
        if version.schedule == "upper_bounds":
            beyond = (
                f" (specsim evaluated up to batch {plan.last_batch}: raise --max-batch to "
                "cover more)"
                if ranges[-1][2] > 0
                else ""
            )
            notes.append(
                f"draft_len_schedule keys are upper bounds ({version.name}): batch sizes "
                f"above the largest key run without speculation{beyond}"
            )
        else:
            notes.append(
                f"draft_len_schedule keys are lower bounds ({version.name}): the last "
                f"value holds above batch {plan.last_batch}"
            )
    else:
        max_draft_len = plan.lookahead_at(plan.batch)
        schedule = None
        if varies:
            why = (
                "MTP is not assumed to read draft_len_schedule"
                if plan.method == "mtp"
                else ("a dynamic tree takes no draft_len_schedule")
            )
            notes.append(
                f"one draft length for every batch size: the one at batch {plan.batch} "
                f"(--batch); {why}"
            )
    spec: dict | None = None
    if max_draft_len > 0:
        spec = {"decoding_type": decoding_type}
        if plan.method == "mtp":
            spec["num_nextn_predict_layers"] = max_draft_len
        else:
            spec["max_draft_len"] = max_draft_len
        if plan.draft_id is not None:
            spec["speculative_model"] = plan.draft_id
        if plan.method == "ngram":
            spec["max_matching_ngram_size"] = plan.ngram_max
        if plan.method == "eagle3" and plan.is_tree:
            spec["use_dynamic_tree"] = True
            spec["dynamic_tree_max_topK"] = plan.tree_topk
            spec["max_total_draft_tokens"] = plan.tree_tokens
        if plan.method == "eagle3" and schedule and version.schedule == "lower_bounds":
            spec["eagle3_one_model"] = False
            notes.append(
                "release 1.2 reads draft_len_schedule only in the two-model drafters: "
                "EAGLE3 runs two-model (eagle3_one_model false)"
            )
        if schedule:
            spec["draft_len_schedule"] = schedule
    else:
        at = 1 if scheduled else plan.batch
        notes.append(f"speculation does not pay at batch {at}: serve without a draft")
    head_lines = header_lines(version, plan, notes)
    py = [comment(head_lines), "from tensorrt_llm import LLM\n"]
    if spec is not None:
        py.append(f"from tensorrt_llm.llmapi import {class_name}\n\n")
        py.append(f"speculative_config = {class_name}(\n")
        py += [f"    {k}={_python_value(v)},\n" for k, v in spec.items() if k != "decoding_type"]
        py.append(")\n")
    else:
        py.append("\n")
    py.append(f"llm = LLM(\n    model={json.dumps(plan.target_id)},\n")
    py.append(f"    tensor_parallel_size={plan.tp},\n")
    if spec is not None:
        py.append("    speculative_config=speculative_config,\n")
    py.append(")\n")
    files = {"llm_api.py": "".join(py)}
    args: list[tuple[str, object]] = [("--tp_size", plan.tp)]
    if spec is not None:
        files[_YAML_FILE] = comment(head_lines) + _yaml(spec)
        args.append(("--extra_llm_api_options", f'"$(dirname "$0")/{_YAML_FILE}"'))
    files["serve.sh"] = (
        "#!/bin/sh\n"
        + comment(head_lines)
        + shell_command(["trtllm-serve", plan.target_id], args)
        + "\n"
    )
    cli = {flag: (_YAML_FILE if flag == "--extra_llm_api_options" else v) for flag, v in args}
    config: dict = {"cli": cli, "llm_args": {"tensor_parallel_size": plan.tp}}
    if spec is not None:
        config["speculative_config"] = spec
    result = EngineFiles("tensorrt-llm", version, files, config, tuple(notes))
    if result.loadable:
        check(version, config)
    return result
