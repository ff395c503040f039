"""A speculator from a method name and that method's options (the CLI's front door)."""

from __future__ import annotations

from typing import Any

from .. import models as _models
from ..models import TransformerSpec
from ._eagle import Eagle
from ._medusa import Medusa
from ._mtp import MTP
from ._ngram import DEFAULT_LOOKUP_S, Ngram
from ._self import SelfSpeculation

__all__ = ["METHODS", "METHOD_OPTIONS", "TREE_METHODS", "create"]

METHODS = ("draft", "eagle", "eagle3", "medusa", "mtp", "ngram", "self")
# The options each method takes; anything else is an error naming the method's own.
METHOD_OPTIONS: dict[str, tuple[str, ...]] = {
    "draft": ("draft",),
    "eagle": ("vocab",),
    "eagle3": ("vocab",),
    "medusa": ("n_heads",),
    "mtp": ("n_modules",),
    "ngram": ("match_probability", "lookup_s"),
    "self": ("draft_layers", "kv_budget_tokens"),
}
# Methods that can draft a token tree (n-gram lookup proposes one continuation).
TREE_METHODS = ("draft", "eagle", "eagle3", "medusa", "mtp", "self")


def create(method: str, target: TransformerSpec | None = None, **options: Any):
    """The speculator of ``method`` with ``options`` (``None`` values are left out).

    Args:
        method: one of `METHODS`.
        target: the served model (defaults of ``"mtp"`` and ``"self"`` follow it).
        **options: the method's options (`METHOD_OPTIONS`): ``draft`` (a
            `TransformerSpec` or catalogue name), ``vocab`` (EAGLE's own LM-head
            vocabulary), ``n_heads``, ``n_modules`` (default: the target's MTP modules,
            else 1), ``match_probability`` and ``lookup_s``, ``draft_layers`` (default:
            half the target's) and ``kv_budget_tokens``.

    Raises:
        ValueError: an unknown method, an option that does not belong to it, or a
            missing draft model.

    Examples:
        >>> from specsim import speculators
        >>> speculators.create("medusa", n_heads=4).n_heads
        Array(4., dtype=float32)
        >>> speculators.create("self", n_heads=4)
        Traceback (most recent call last):
        ...
        ValueError: n_heads does not apply to method 'self'; its options: draft_layers, ...
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; valid: {', '.join(METHODS)}")
    given = {k: v for k, v in options.items() if v is not None}
    for name in given:
        if name not in METHOD_OPTIONS[method]:
            own = ", ".join(METHOD_OPTIONS[method])
            raise ValueError(f"{name} does not apply to method {method!r}; its options: {own}")
    if method == "draft":
        draft = given.get("draft")
        if draft is None:
            raise ValueError("method 'draft' needs a draft model (catalogue name or spec)")
        return _models.get(draft) if isinstance(draft, str) else draft.validate()
    if method in ("eagle", "eagle3"):
        return Eagle.create(version=3 if method == "eagle3" else 2, vocab=given.get("vocab"))
    if method == "medusa":
        return Medusa.create(n_heads=given.get("n_heads", 5.0))
    if method == "mtp":
        default = 1.0
        if target is not None and float(target.n_mtp_layers) > 0:
            default = float(target.n_mtp_layers)
        return MTP.create(n_modules=given.get("n_modules", default))
    if method == "ngram":
        return Ngram.create(
            match_probability=given.get("match_probability", 1.0),
            lookup_s=given.get("lookup_s", DEFAULT_LOOKUP_S),
        )
    layers = given.get("draft_layers")
    if layers is None:
        if target is None:
            raise ValueError("method 'self' needs draft_layers (or a target to take half of)")
        layers = float(target.n_layers) / 2
    return SelfSpeculation.create(
        draft_layers=layers, kv_budget_tokens=given.get("kv_budget_tokens", float("inf"))
    )
