"""Helpers shared by the commands: number parsers, common flags, hardware labels, output.

Nothing here imports JAX, NumPy or pandas at module level: every command's ``--help``
builds its parser from these without starting them.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable
from typing import Any

PLOT_SUFFIXES = (".png", ".svg", ".pdf")


# --------------------------------------------------------------------------- numbers
#
# argparse ``type`` functions. Their messages read ``<value>: <why>; valid: <choices>``;
# the parser prefixes the flag, so a bad value prints as
# ``specsim cost: --batch 1.5: not a whole number; valid: whole numbers >= 1``.


# Above this a number is infinite in float32 (the precision of every traced leaf). Spelled
# out: `specsim --help` parses without JAX, so this module does not import
# `specsim._numerics.FLOAT32_MAX` (tests/test_cli.py checks that the two agree).
_FLOAT32_MAX = 3.4028234663852886e38


def _number(text: str, *, float32: bool = True) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(
            f"{text}: not a number; valid: numbers such as 8, 0.5 or 1e6"
        ) from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text}: not a finite number; valid: finite numbers")
    # Every traced leaf is float32: a larger number would become inf there (with a warning).
    # (float32=False: the caller checks the range itself, with its own message.)
    if float32 and abs(value) > _FLOAT32_MAX:
        raise argparse.ArgumentTypeError(
            f"{text}: beyond float32's range; valid: numbers of magnitude at most 3.4e38"
        )
    return value


def whole(minimum: int | None = None):
    """An argparse ``type``: a whole number (``8``, ``8.0`` or ``1e6``), at least ``minimum``."""

    def parse(text: str) -> int:
        value = _number(text)
        valid = "whole numbers" + ("" if minimum is None else f" >= {minimum}")
        if value != int(value):
            raise argparse.ArgumentTypeError(f"{text}: not a whole number; valid: {valid}")
        if minimum is not None and value < minimum:
            raise argparse.ArgumentTypeError(f"{text}: below {minimum}; valid: {valid}")
        return int(value)

    parse.__name__ = "int"
    return parse


def positive(kind: Callable[[str], float]):
    """An argparse ``type`` reading ``kind`` (``int`` or ``float``) and requiring > 0."""
    if kind is int:
        return whole(1)

    def parse(text: str) -> float:
        value = _number(text)
        if not value > 0:
            raise argparse.ArgumentTypeError(f"{text}: not > 0; valid: numbers > 0")
        return value

    parse.__name__ = kind.__name__
    return parse


def non_negative(text: str) -> float:
    """An argparse ``type``: a finite float >= 0."""
    value = _number(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text}: negative; valid: numbers >= 0")
    return value


def token_count(text: str) -> float:
    """An argparse ``type``: a count (training tokens) > 0 that float32 can hold."""
    value = _number(text, float32=False)
    if not 0 < value < _FLOAT32_MAX:
        raise argparse.ArgumentTypeError(
            f"{text}: out of range; valid: 0 < count < 3.4e38 (float32)"
        )
    return value


def open_unit(text: str) -> float:
    """An argparse ``type``: a probability strictly between 0 and 1 (an acceptance rate)."""
    value = _number(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{text}: outside (0, 1); valid: numbers in (0, 1)")
    return value


def add_overwrite_argument(parser) -> None:
    """``--overwrite``: replace existing output files (refused otherwise)."""
    parser.add_argument(
        "--overwrite", action="store_true", help="replace output files that already exist"
    )


# --------------------------------------------------------------------------- common flags


def add_json_argument(parser) -> None:
    """``--json``: print one JSON document instead of text."""
    parser.add_argument("--json", action="store_true", help="machine-readable output (JSON)")


WEIGHT_FORMATS = "bf16, fp16, fp32, fp8, int8, int4, mxfp4, nvfp4 or fp8_block"
KV_FORMATS = "bf16, fp16, fp32, fp8 or int8"
MODEL_HELP = (
    "a catalogue name (specsim models), a config.json path, a model folder holding one, or a "
    "Hugging Face Hub id already in the local cache (org/name[@revision]; no download)"
)


def add_weight_dtype_argument(parser) -> None:
    """``--weight-dtype``: the storage dtype of the model's weights."""
    parser.add_argument(
        "--weight-dtype",
        default=None,
        help=f"weight storage format: {WEIGHT_FORMATS} (default: the checkpoint's, from the "
        "catalogue or the config's dtype and quantization_config)",
    )


def add_dtype_arguments(parser, *, draft_default: str = "the draft's own") -> None:
    """``--weight-dtype``, ``--draft-weight-dtype`` and ``--kv-dtype``."""
    parser.add_argument(
        "--weight-dtype",
        default=None,
        help=f"target weight storage format: {WEIGHT_FORMATS} (default: the checkpoint's, "
        "from the catalogue or the config's dtype and quantization_config)",
    )
    parser.add_argument(
        "--draft-weight-dtype",
        default=None,
        help=f"draft weight storage format, as --weight-dtype (default: {draft_default})",
    )
    parser.add_argument(
        "--kv-dtype",
        default=None,
        help=f"KV-cache format of target and draft (one engine setting, like vLLM's "
        f"--kv-cache-dtype): {KV_FORMATS} (default: each checkpoint's)",
    )


def add_scenario_arguments(
    parser,
    *,
    draft: bool = True,
    draft_help: str = "draft model: " + MODEL_HELP,
    sdsl_by_default: bool = False,
    allow_infeasible: bool = True,
) -> None:
    """Flags shared by ``evaluate``, ``optimize`` and ``schedule``.

    Args:
        parser: the command's parser.
        draft: add ``--draft`` (``optimize`` searches the draft instead).
        draft_help: the help text of ``--draft``.
        sdsl_by_default: without ``--alpha``, the command uses the SDSL law (``optimize``)
            rather than a constant 0.8; only the help texts say so.
        allow_infeasible: add ``--allow-infeasible`` (with a draft).
    """
    # With a draft, the default pair shares a tokenizer (llama-68m drafts for Llama 2).
    target = "llama-2-7b" if draft else "llama-3-8b"
    parser.add_argument("--target", default=target, help="target model: " + MODEL_HELP)
    if draft:
        parser.add_argument(
            "--draft",
            default=None,
            help=draft_help
            if "(default" in draft_help
            else draft_help + " (default: llama-68m for a 32,000-token vocabulary, else the "
            "smallest catalogue model with the target's vocabulary)",
        )
        add_feasibility_arguments(parser, memory=allow_infeasible)
    add_dtype_arguments(parser, draft_default="the draft's own" if draft else "the target's")
    parser.add_argument(
        "--hardware", default="h100", help="accelerator: catalogue name or a .toml file"
    )
    parser.add_argument("--batch", type=positive(int), default=1, help="sequences decoded at once")
    parser.add_argument("--prompt", type=non_negative, default=512, help="prompt tokens")
    parser.add_argument(
        "--generate", type=positive(float), default=256, help="tokens generated per sequence"
    )
    parser.add_argument("--tp", type=positive(int), default=1, help="target tensor parallelism")
    add_runtime_argument(parser)
    parser.add_argument(
        "--draft-tp",
        type=positive(int),
        default=None,
        help="draft tensor parallelism (default: the target's --tp)",
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--alpha",
        type=open_unit,
        default=None,
        help="constant acceptance rate in (0, 1) "
        + ("(default: --alpha-model sdsl)" if sdsl_by_default else "(default: 0.8)"),
    )
    group.add_argument(
        "--alpha-model",
        choices=("sdsl",),
        default=None,
        help="acceptance from the SDSL perplexity law of the draft's and target's training "
        "tokens " + ("(default)" if sdsl_by_default else "(default: off, a constant --alpha)"),
    )
    parser.add_argument(
        "--draft-train-tokens",
        type=token_count,
        default=None,
        help="draft training tokens for --alpha-model sdsl (default: the target's)",
    )
    parser.add_argument(
        "--target-train-tokens",
        type=token_count,
        default=None,
        help="target training tokens for --alpha-model sdsl (default: the catalogue's)",
    )


def add_feasibility_arguments(parser, *, memory: bool = True) -> None:
    """``--shared-tokenizer`` and ``--allow-infeasible``: what a user may vouch for."""
    parser.add_argument(
        "--shared-tokenizer",
        action="store_true",
        help="target and draft vocabularies differ in size but belong to one tokenizer "
        "(padded embedding tables); without it a draft must have the target's vocabulary",
    )
    if memory:
        parser.add_argument(
            "--allow-infeasible",
            action="store_true",
            help="price a setup whose weights and KV caches do not fit in memory (refused "
            "otherwise); the output is marked INFEASIBLE",
        )


def check_vocabulary(args: argparse.Namespace, target, draft) -> None:
    """Refuses a draft of another vocabulary unless ``--shared-tokenizer`` (``ValueError``)."""
    from specsim.feasibility import check_vocabulary as check

    check(target, draft, shared_tokenizer=args.shared_tokenizer, hint="--shared-tokenizer")


def memory_refusal(args: argparse.Namespace, memory_bytes: float, capacity_bytes: float):
    """The ``ValueError`` for a setup that does not fit, naming the ways out."""
    return ValueError(
        f"--hardware {hardware_label(args.hardware)}: weights and KV caches need "
        f"{memory_bytes / 1e9:.1f} GB per chip, more than its {capacity_bytes / 1e9:.0f} GB; "
        "valid: more chips with --tp, a smaller --batch, --prompt or --generate, or "
        "--allow-infeasible to price it anyway"
    )


def add_runtime_argument(parser) -> None:
    """``--runtime``: the software stack whose overheads apply (a runtime profile)."""
    parser.add_argument(
        "--runtime",
        default="default",
        help="software stack: default (the chip's catalogue overheads), eager, cuda-graphs, "
        "hip-graphs, trtllm, trtllm-mmha, xla-tpu (see specsim/runtime/catalog.toml)",
    )


def add_speculation_overhead_argument(parser) -> None:
    """``--speculation-overhead-us``: fixed cost of each speculative iteration."""
    parser.add_argument(
        "--speculation-overhead-us",
        type=non_negative,
        default=0.0,
        help="fixed cost per speculative iteration, microseconds",
    )


def add_plot_argument(parser) -> None:
    """``--plot FILE``: also draw a chart (``.png``, ``.svg`` or ``.pdf``)."""
    parser.add_argument(
        "--plot",
        metavar="FILE",
        default=None,
        help="also draw a chart into FILE, .png, .svg or .pdf (default: no chart)",
    )


def check_plot_path(path: str, overwrite: bool = False) -> None:
    """Raises ``ValueError`` unless ``--plot path`` can be written: a chart suffix, an
    existing writable folder, and no file there unless ``overwrite`` (``--overwrite``)."""
    from specsim.outputs import check_output_path

    check_output_path(
        path,
        what="--plot",
        suffixes=PLOT_SUFFIXES,
        overwrite=overwrite,
        overwrite_hint="--overwrite",
    )


# --------------------------------------------------------------------------- values


def build_acceptance(args: argparse.Namespace, default_alpha: float | None = 0.8):
    """The acceptance model named by ``--alpha`` / ``--alpha-model`` flags."""
    from specsim import ConstantAcceptance, SDSLAcceptance

    if args.alpha_model != "sdsl":
        for flag in ("--draft-train-tokens", "--target-train-tokens"):
            value = getattr(args, flag[2:].replace("-", "_"), None)
            if value is not None:
                raise ValueError(
                    f"{flag} {value:g}: only applies to the SDSL acceptance law; valid: "
                    f"--alpha-model sdsl, or no {flag} with --alpha"
                )
    if args.alpha_model == "sdsl":
        target_tokens = args.target_train_tokens or catalogue_train_tokens(args.target)
        if target_tokens is None:
            raise ValueError(
                f"--target {args.target}: the catalogue has no training-token count; "
                "valid: --target-train-tokens N"
            )
        draft_tokens = args.draft_train_tokens or target_tokens
        return SDSLAcceptance.create(
            draft_train_tokens=draft_tokens, target_train_tokens=target_tokens
        )
    alpha = default_alpha if args.alpha is None else args.alpha
    return ConstantAcceptance.create(alpha)


def catalogue_train_tokens(reference: str) -> float | None:
    """Pre-training tokens the catalogue gives for a model reference (``None`` for a
    config file or Hub id, or where unpublished)."""
    from specsim import models

    name = models.locate(reference).catalogue_name
    return None if name is None else models.train_tokens(name)


def load_model(reference, flag: str, **dtypes):
    """``specsim.models.load(reference, **dtypes)``, its errors naming ``flag``
    (``--target``, ``--draft``, ``--model``)."""
    from specsim import models
    from specsim.messages import relabel

    try:
        return models.load(reference, **dtypes)
    except ValueError as e:
        raise ValueError(relabel(str(e), {"model": flag})) from None


def load_target(args: argparse.Namespace):
    """The target's ``TransformerSpec`` with ``--weight-dtype`` and ``--kv-dtype`` applied."""
    return load_model(
        args.target, "--target", weight_dtype=args.weight_dtype, kv_dtype=args.kv_dtype
    )


def default_draft(
    target,
    target_name: str | None = None,
    *,
    draft_free: str = "--method with a draft-free speculator",
) -> str:
    """The catalogue draft used when ``--draft`` is not given: one that shares ``target``'s
    vocabulary, so its tokens can be verified.

    ``llama-68m`` for a 32,000-token vocabulary (Llama 2 and its kin), otherwise the dense
    catalogue model with the target's vocabulary and the fewest parameters below the
    target's, of the target's family (the name before its first ``-``) where one is
    (``Llama-3.2-1B`` for Llama 3 targets, ``Qwen3-0.6B`` for Qwen3).

    Raises:
        ValueError: no catalogue model shares the target's vocabulary and is smaller (the
            message names ``draft_free``, the command's way to speculate without a draft).

    Examples:
        >>> from specsim import models
        >>> default_draft(models.get("llama-2-7b")), default_draft(models.get("llama-3-8b"))
        ('llama-68m', 'Llama-3.2-1B')
        >>> default_draft(models.get("qwen3-8b"), "qwen3-8b")
        'Qwen3-0.6B'
    """
    from specsim import models

    family = None
    if target_name is not None:
        try:
            family = models.canonical_name(target_name).lower().split("-")[0]
        except ValueError:  # a file or Hub id: no catalogue family
            family = None
    vocab = int(target.vocab)
    if vocab == 32000:
        return "llama-68m"
    size = float(target.parameter_count)
    candidates = []
    for name in models.names():
        spec = models.get(name)
        if int(spec.vocab) == vocab and int(spec.n_experts) <= 1:
            count = float(spec.parameter_count)
            if count < size:
                other_family = family is not None and name.lower().split("-")[0] != family
                candidates.append((other_family, count, name))
    if not candidates:
        raise ValueError(
            f"--draft: no catalogue model shares the target's {vocab}-token vocabulary and is "
            f"smaller than it; valid: --draft NAME (see `specsim models`), or {draft_free}"
        )
    return min(candidates)[2]


def resolve_draft(args: argparse.Namespace, target, **options) -> None:
    """Sets ``args.draft`` to `default_draft` of ``target`` (``options`` passed on) when
    ``--draft`` was not given."""
    if getattr(args, "draft", None) is None:
        args.draft = default_draft(target, getattr(args, "target", None), **options)


def load_draft(args: argparse.Namespace, draft=None):
    """The draft (``--draft``, or a given spec) with ``--draft-weight-dtype`` and
    ``--kv-dtype`` applied."""
    return load_model(
        args.draft if draft is None else draft,
        "--draft",
        weight_dtype=args.draft_weight_dtype,
        kv_dtype=args.kv_dtype,
    )


def load_hardware(name: str, flag: str = "--hardware"):
    """``specsim.hardware.get(name)``, its errors naming ``flag``."""
    from specsim import hardware
    from specsim.messages import relabel

    try:
        return hardware.get(name)
    except ValueError as e:
        message = str(e)
        relabelled = relabel(message, {"hardware": flag})
        raise ValueError(
            relabelled if relabelled != message else f"{flag} {name}: {message}"
        ) from None


def hardware_label(name: str) -> str:
    """Display name of a hardware argument (catalogue name, or the TOML path as given)."""
    from specsim import hardware

    return name if str(name).endswith(".toml") else hardware.canonical_name(name)


def model_label(name: str) -> str:
    """Display name of a model reference: the catalogue's canonical name
    (``"llama-3-8b"`` -> ``"Llama-3-8B"``), the Hub id, or the folder of a config file."""
    from specsim import models

    return models.locate(name).label


def model_reference(name: str) -> str:
    """A reference to type back into a flag: the canonical catalogue name, else as given."""
    from specsim import models

    source = models.locate(name)
    return source.label if source.kind == "catalogue" else source.reference


# --------------------------------------------------------------------------- output


def print_json(payload: Any) -> None:
    """Prints ``payload`` as strict, indented JSON (NumPy scalars and arrays as lists).

    NaN and infinities are refused (``ValueError``): they are not JSON, and no result
    of specsim should hold one.
    """
    print(json.dumps(payload, indent=2, sort_keys=False, default=_json_default, allow_nan=False))


def _json_default(value: Any):
    if hasattr(value, "tolist"):  # NumPy scalars and arrays, without importing NumPy
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def format_table(rows: list[dict[str, Any]], float_format: str = "{:.4g}") -> str:
    """``rows`` as a right-aligned text table, one line per row (``None`` shows as ``-``).

    Examples:
        >>> print(format_table([{"name": "a", "x": 1.23456}, {"name": "bb", "x": None}]))
        name     x
           a 1.235
          bb     -
    """
    if not rows:
        return ""
    columns = list(rows[0])

    def cell(value) -> str:
        if value is None:
            return "-"
        if isinstance(value, float):
            return float_format.format(value)
        return str(value)

    cells = [[cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = [" ".join(c.rjust(w) for c, w in zip(columns, widths, strict=True))]
    lines += [" ".join(v.rjust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines)
