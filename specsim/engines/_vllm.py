"""vLLM: ``vllm serve`` with ``--speculative-config`` and ``--tensor-parallel-size``.

Releases 0.24.0 and later take a per-batch-size table,
``num_speculative_tokens_per_batch_size``: inclusive ``[first, last, k]`` ranges starting
at batch 1; batch sizes above the last range keep its ``k`` and ``num_speculative_tokens``
is the largest ``k`` (it sizes the buffers). Earlier releases take one
``num_speculative_tokens`` for every batch size. Keys and rules: ``schemas/vllm.toml``.
"""

from __future__ import annotations

import json

from ._files import EngineFiles, UnsupportedPlan, comment, header_lines, json_text, shell_command
from ._plan import ServingPlan
from ._schema import EngineVersion, check

__all__ = ["emit_vllm"]

_METHOD = {
    "draft": "draft_model",
    "eagle": "eagle",
    "eagle3": "eagle3",
    "medusa": "medusa",
    "mtp": "mtp",
    "ngram": "ngram",
}
# Methods whose draft weights run under draft_tensor_parallel_size
# (SpeculativeConfig._verify_and_get_draft_tp runs for every model-based method).
_DRAFT_TP = ("draft", "eagle", "eagle3", "medusa", "mtp")


def _speculative_config(plan: ServingPlan, version: EngineVersion, notes: list[str]):
    choices = version.sections["speculative_config"]["method"]["choices"]
    method = _METHOD.get(plan.method)
    if method is None or method not in choices:
        raise UnsupportedPlan(
            f"{version.label} has no speculation method for {plan.method!r} (its methods: "
            f"{', '.join(choices)})"
        )
    if plan.is_tree:
        notes.append(
            f"vLLM drafts a chain: the EAGLE tree (top-{plan.tree_topk}, {plan.tree_tokens} "
            "tokens) becomes a chain of the same depth"
        )
    varies = len({k for _, _, k in plan.ranges}) > 1
    if version.schedule == "ranges" and varies:
        k_max = plan.max_lookahead
        if k_max == 0:
            return None
        config: dict = {"method": method}
        table = [[a, b, k] for a, b, k in plan.ranges]
        notes.append(
            f"batch sizes above {plan.last_batch} keep the last range's lookahead "
            f"({plan.ranges[-1][2]}); vLLM ignores the table under --data-parallel-size > 1 "
            "(vllm/config/vllm.py) and, per its docs, captures only piecewise CUDA graphs "
            "with it in the V1 model runner"
        )
    else:
        k_max = plan.lookahead_at(plan.batch)
        if varies:
            notes.append(
                f"{version.label} takes one lookahead for every batch size: the one at "
                f"batch {plan.batch} (--batch); a per-batch table needs vLLM 0.24.0 or later"
            )
        if k_max == 0:
            return None
        config = {"method": method}
        table = None
    if plan.draft_id is not None:
        config["model"] = plan.draft_id
    config["num_speculative_tokens"] = k_max
    if table is not None:
        config["num_speculative_tokens_per_batch_size"] = table
    if plan.method in _DRAFT_TP:
        config["draft_tensor_parallel_size"] = plan.draft_tp
    if plan.method == "ngram":
        config["prompt_lookup_min"] = plan.ngram_min
        config["prompt_lookup_max"] = plan.ngram_max
    return config


def emit_vllm(plan: ServingPlan, version: EngineVersion) -> EngineFiles:
    """The ``vllm serve`` script and ``--speculative-config`` JSON of ``plan``.

    Raises:
        UnsupportedPlan: a method the release does not have (self-speculation; Medusa
            from 0.33.0), or a draft model whose vocabulary size differs from the target's.
    """
    if plan.vocab_mismatch:
        raise UnsupportedPlan(
            f"{version.label} refuses a draft model whose vocabulary size differs from the "
            f"target's ({plan.draft_vocab} vs {plan.target_vocab}; "
            "SpeculativeConfig.verify_equal_vocab_size_if_draft_model): choose a draft with "
            "the target's tokenizer"
        )
    notes: list[str] = []
    spec = _speculative_config(plan, version, notes)
    if spec is None:
        notes.append("speculation does not pay at any batch size: serve without a draft")
    if plan.draft_id is not None and plan.draft_tp not in (1, plan.tp):
        raise UnsupportedPlan(
            f"{version.label} runs the draft at TP 1 or the target's TP ({plan.tp}), not "
            f"{plan.draft_tp}"
        )
    cli: dict = {"--tensor-parallel-size": plan.tp}
    args = [("--tensor-parallel-size", plan.tp)]
    files: dict[str, str] = {}
    if spec is not None:
        text = json.dumps(spec, separators=(", ", ": "))
        cli["--speculative-config"] = text
        args.append(("--speculative-config", text))
    head = comment(header_lines(version, plan, notes))
    command = shell_command(["vllm", "serve", plan.target_id], args)
    files["serve.sh"] = "#!/bin/sh\n" + head + command + "\n"
    if spec is not None:
        files["speculative_config.json"] = json_text(spec) + "\n"
    config = {"cli": cli}
    if spec is not None:
        config["speculative_config"] = spec
    result = EngineFiles("vllm", version, files, config, tuple(notes))
    if result.loadable:
        check(version, config)
    return result
