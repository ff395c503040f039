"""Speculation methods on the command line: ``--method`` and its flags, shared by commands.

``evaluate``, ``optimize``, ``schedule`` and ``sweep`` take ``--method {draft, eagle,
eagle3, medusa, mtp, ngram, self}`` with the method's own flags (``--medusa-heads``,
``--mtp-modules``, ``--match-probability``, ``--lookup-us``, ``--draft-layers``,
``--kv-budget``, ``--draft-vocab``), a tree (``--tree eagle`` or ``--tree 4,8,8,4``) and
acceptance for methods (``--alphas``, ``--tau``, ``--acceptance-file``, ``--ranks``,
``--rank-decay``). A flag that does not belong to the chosen method is rejected in one
line before anything is computed. Without any of these flags the commands behave exactly
as before (the draft-model path).
"""

from __future__ import annotations

import argparse
import math
from typing import Any

from ._args import non_negative, positive

__all__ = [
    "add_method_arguments",
    "build_speculation",
    "check_method_flags",
    "method_requested",
]

METHODS = ("draft", "eagle", "eagle3", "medusa", "mtp", "ngram", "self")
_TREE_METHODS = ("draft", "eagle", "eagle3", "medusa", "mtp", "self")
# flag destination -> (flag as typed, methods it belongs to)
_OWNERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "medusa_heads": ("--medusa-heads", ("medusa",)),
    "mtp_modules": ("--mtp-modules", ("mtp",)),
    "match_probability": ("--match-probability", ("ngram",)),
    "lookup_us": ("--lookup-us", ("ngram",)),
    "draft_layers": ("--draft-layers", ("self",)),
    "kv_budget": ("--kv-budget", ("self",)),
    "draft_vocab": ("--draft-vocab", ("eagle", "eagle3")),
    "tree": ("--tree", _TREE_METHODS),
    "max_nodes": ("--max-nodes", _TREE_METHODS),
    "max_depth": ("--max-depth", _TREE_METHODS),
}
_METHOD_FLAGS = ("tree", "alphas", "tau", "acceptance_file", *_OWNERS)


def _numbers(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers, got {text!r}"
        ) from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one number")
    return values


def _probability(text: str) -> float:
    value = non_negative(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text}")
    return value


def add_method_arguments(parser, *, command: str) -> None:
    """``--method`` and its flags; ``command`` picks the ones that apply to it."""
    group = parser.add_argument_group(
        "speculation method (default: the draft model; flags apply to the method named)"
    )
    if command == "sweep":
        group.add_argument(
            "--method",
            default=None,
            help=f"methods to sweep side by side, comma list of {', '.join(METHODS)} "
            "(default: draft models only, the grid of --draft)",
        )
    else:
        group.add_argument(
            "--method", choices=METHODS, default="draft", help="how draft tokens are proposed"
        )
    group.add_argument(
        "--medusa-heads", type=positive(float), default=None, help="Medusa heads (default 5)"
    )
    group.add_argument(
        "--mtp-modules",
        type=positive(float),
        default=None,
        help="MTP modules (default: the target's, else 1)",
    )
    group.add_argument(
        "--match-probability",
        type=_probability,
        default=None,
        help="n-gram: chance an iteration finds a match (default 1)",
    )
    group.add_argument(
        "--lookup-us",
        type=non_negative,
        default=None,
        help="n-gram: host lookup per sequence, microseconds (default 5)",
    )
    group.add_argument(
        "--draft-layers",
        type=positive(float),
        default=None,
        help="self-speculation: layers that draft (default: half the target's)",
    )
    group.add_argument(
        "--kv-budget",
        type=positive(float),
        default=None,
        help="self-speculation: cached tokens a draft step attends to (default: all)",
    )
    group.add_argument(
        "--draft-vocab",
        type=non_negative,
        default=None,
        help="EAGLE: the head's own LM-head vocabulary (default: shared; EAGLE-3 32000)",
    )
    if command in ("evaluate", "schedule"):
        group.add_argument(
            "--tree",
            default=None,
            help="draft a token tree: a published one (eagle, medusa) or nodes per depth, "
            "e.g. 4,8,8,4 (default: a chain of --gamma)",
        )
    else:
        parser.set_defaults(tree=None)
    if command in ("optimize", "schedule"):
        group.add_argument(
            "--max-nodes",
            type=positive(int),
            default=None,
            help="tree search: most draft tokens verified per iteration (default 64)",
        )
        group.add_argument(
            "--max-depth",
            type=positive(int),
            default=None,
            help="tree search: deepest draft position (default 8; Medusa: its heads)",
        )
    else:
        parser.set_defaults(max_nodes=None, max_depth=None)
    if command == "sweep":
        parser.set_defaults(alphas=None, tau=None, acceptance_file=None, ranks=8, rank_decay=None)
        return
    acc = parser.add_argument_group("acceptance for methods (alternatives to --alpha)")
    acc.add_argument(
        "--alphas",
        type=_numbers,
        default=None,
        help="top-1 acceptance per draft position, comma list (e.g. 0.8,0.75,0.7; default: "
        "from --alpha)",
    )
    if command == "evaluate":
        acc.add_argument(
            "--tau",
            type=positive(float),
            default=None,
            help="measured mean accepted length, bonus token included, with this chain or tree "
            "(default: none, acceptance from --alpha or --alphas)",
        )
    else:
        parser.set_defaults(tau=None)
    acc.add_argument(
        "--acceptance-file",
        default=None,
        help="measured acceptance: histogram or per-position counts (CSV, JSON, vLLM /metrics; "
        "default: none)",
    )
    acc.add_argument(
        "--ranks", type=positive(int), default=8, help="candidates per depth of a tree's acceptance"
    )
    acc.add_argument(
        "--rank-decay",
        type=_probability,
        default=None,
        help="how fast lower-ranked candidates lose acceptance (default 0.55, from EAGLE)",
    )


def method_requested(args: argparse.Namespace) -> bool:
    """Whether the command should take the methods path (else the draft-model path)."""
    if getattr(args, "method", None) not in (None, "draft"):
        return True
    return any(getattr(args, name, None) is not None for name in _METHOD_FLAGS)


def check_method_flags(args: argparse.Namespace) -> None:
    """One-line ``ValueError`` for a flag that does not belong to the chosen method."""
    method = args.method or "draft"
    for dest, (flag, owners) in _OWNERS.items():
        if getattr(args, dest, None) is not None and method not in owners:
            raise ValueError(
                f"{flag} does not apply to --method {method} (it belongs to {', '.join(owners)})"
            )
    given = [f for f in ("alpha", "alphas", "tau", "acceptance_file") if getattr(args, f, None)]
    if getattr(args, "alpha_model", None):
        given.append("alpha_model")
    if len(given) > 1:
        flags = ", ".join("--" + g.replace("_", "-") for g in given)
        raise ValueError(f"give one acceptance: {flags} are alternatives")


def build_speculation(args: argparse.Namespace, target) -> tuple[Any, Any, Any]:
    """``(speculator, shape, acceptance)`` from the flags (shape: gamma or a tree)."""
    from specsim import speculators

    from ._args import load_draft, resolve_draft

    check_method_flags(args)
    method = args.method
    if method == "draft":
        resolve_draft(args, target)
    options = {
        "draft": load_draft(args) if method == "draft" else None,
        "vocab": args.draft_vocab,
        "n_heads": args.medusa_heads,
        "n_modules": args.mtp_modules,
        "match_probability": args.match_probability,
        "lookup_s": None if args.lookup_us is None else args.lookup_us * 1e-6,
        "draft_layers": args.draft_layers,
        "kv_budget_tokens": args.kv_budget,
    }
    speculator = speculators.create(method, target, **options)
    shape = tree_shape(args.tree) if args.tree is not None else float(getattr(args, "gamma", 4))
    return speculator, shape, acceptance_for(args, shape)


def tree_shape(text: str):
    """A tree from ``--tree``: a preset name or nodes per depth."""
    from specsim import DynamicTree, TokenTree

    name = text.strip().lower()
    if name.replace(",", "").replace(".", "").replace(" ", "").isdigit():
        return DynamicTree.create([float(v) for v in name.split(",") if v.strip()])
    return TokenTree.preset(name)


def shape_depth(shape) -> int:
    """Depth of a chain or tree (a chain's ``ceil(gamma)``)."""
    import numpy as np

    from specsim import DynamicTree, TokenTree

    if isinstance(shape, TokenTree):
        return shape.max_depth
    if isinstance(shape, DynamicTree):
        return int(np.count_nonzero(np.asarray(shape.widths) > 0))
    return max(1, math.ceil(float(shape)))


def acceptance_for(args: argparse.Namespace, shape, *, tree: bool | None = None):
    """The acceptance model the flags describe, for a chain or a tree."""
    from specsim import (
        DEFAULT_RANK_DECAY,
        ConstantAcceptance,
        DynamicTree,
        PositionalAcceptance,
        TokenTree,
        TreeAcceptance,
        acceptance_from_tau,
        load_acceptance,
    )

    from ._args import build_acceptance

    tree = isinstance(shape, TokenTree | DynamicTree) if tree is None else tree
    decay = DEFAULT_RANK_DECAY if args.rank_decay is None else args.rank_decay
    depth = shape_depth(shape)
    if args.acceptance_file:
        stats = load_acceptance(args.acceptance_file)
        if not tree:
            return stats.positional() if stats.survival is not None else stats.constant()
        if stats.survival is not None:
            return stats.tree(TokenTree.chain(stats.lookahead), ranks=args.ranks, decay=decay)
        return stats.tree(shape, ranks=args.ranks, decay=decay)
    if args.tau is not None:
        stats = acceptance_from_tau(args.tau, depth)
        return stats.tree(shape, ranks=args.ranks, decay=decay) if tree else stats.constant()
    if args.alphas is not None:
        if tree:
            return TreeAcceptance.from_top1(args.alphas, ranks=args.ranks, decay=decay)
        return PositionalAcceptance.create(args.alphas)
    if getattr(args, "alpha_model", None):
        return build_acceptance(args)
    alpha = 0.8 if args.alpha is None else args.alpha
    if tree:
        return TreeAcceptance.from_top1([alpha] * max(depth, 1), ranks=args.ranks, decay=decay)
    return ConstantAcceptance.create(alpha)


def describe_shape(shape) -> dict[str, Any]:
    """JSON-ready description of a chain or tree."""
    import numpy as np

    from specsim import DynamicTree, TokenTree

    if isinstance(shape, TokenTree):
        return {"kind": "tree", "nodes": shape.size, "depth": shape.max_depth,
                "paths": [list(p) for p in shape.paths()]}  # fmt: skip
    if isinstance(shape, DynamicTree):
        widths = [float(w) for w in np.asarray(shape.widths)]
        return {"kind": "tree", "nodes": sum(widths), "depth": shape_depth(shape),
                "widths": widths}  # fmt: skip
    return {"kind": "chain", "gamma": float(shape)}
