"""A serving plan: what a speculation schedule asks a serving engine to do.

The plan is plain host data (no JAX): the speculation method, the models to load by the
names an engine loads them by, the lookahead for each range of batch sizes, the tensor
parallelism, and the method's own settings (EAGLE tree width, n-gram match lengths). The
engine emitters (`specsim.engines.emit`) turn one plan into the files of one engine at one
release, so the draft-model schedules of `specsim schedule` and the speculation methods of
`specsim.speculators` feed the same emitters.
"""

from __future__ import annotations

import dataclasses
import numbers
import os
import re
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = [
    "METHODS",
    "PLACEHOLDER_PREFIX",
    "ServingPlan",
    "is_placeholder",
    "model_id",
    "placeholder",
]

# Speculation methods a plan may name (the names of `specsim.speculators.METHODS`).
METHODS = ("draft", "eagle", "eagle3", "medusa", "mtp", "ngram", "self")
# Methods that load a separate checkpoint (a draft model or trained heads).
_NEEDS_DRAFT_ID = ("draft", "eagle", "eagle3", "medusa")

# A model id specsim could not resolve: written into the files so they show what is
# missing, and refused by every schema check (`specsim.engines.check`).
PLACEHOLDER_PREFIX = "<set "
_WEIGHT_FILE = re.compile(r"\.(safetensors|bin|pt|pth|gguf)$")


def placeholder(role: str, reference: str, why: str) -> str:
    """A marked stand-in for a model id that could not be resolved.

    Examples:
        >>> placeholder("target", "my/config.json", "a config file without weights")
        '<set --target-id: my/config.json is a config file without weights>'
    """
    return f"{PLACEHOLDER_PREFIX}--{role}-id: {reference} is {why}>"


def is_placeholder(value: Any) -> bool:
    """Whether ``value`` is a placeholder made by `placeholder`."""
    return isinstance(value, str) and value.startswith(PLACEHOLDER_PREFIX)


def model_id(reference: str, role: str = "target") -> str:
    """The name a serving engine loads ``reference`` by.

    * a catalogue name or alias: its Hugging Face Hub id (`specsim.models.hub_id`);
    * a Hub id found in the local cache: the id (a ``@revision`` suffix is dropped, as the
      engines take the revision separately);
    * a model folder that holds weights: the folder, as given;
    * anything else (a bare ``config.json``, a catalogue model without public weights, a
      ``LAYERSxWIDTH`` draft still to be trained): a `placeholder` naming the
      ``--target-id`` / ``--draft-id`` flag to set.

    Args:
        reference: what was passed to ``--target`` / ``--draft``.
        role: ``"target"`` or ``"draft"`` (names the flag in a placeholder).

    Examples:
        >>> model_id("llama-68m", "draft")
        'JackFram/llama-68m'
        >>> model_id("Chinchilla-70B")
        '<set --target-id: Chinchilla-70B is a catalogue model without a public checkpoint>'
    """
    from ..models import hub_id, locate

    if re.fullmatch(r"\s*\d+\s*[xX]\s*\d+\s*", str(reference)):
        return placeholder(role, str(reference), "a draft shape still to be trained")
    try:
        source = locate(reference)
    except ValueError:
        return placeholder(role, str(reference), "not a catalogue model, file or cached Hub id")
    if source.kind == "catalogue":
        repo = hub_id(str(reference))
        if repo is None:
            return placeholder(role, source.label, "a catalogue model without a public checkpoint")
        return repo
    if source.kind == "hub":
        return str(reference).split("@")[0]
    folder = os.path.dirname(source.config_path or "") or "."
    if any(_WEIGHT_FILE.search(name) for name in os.listdir(folder)):
        return str(reference) if os.path.isdir(str(reference)) else folder
    return placeholder(role, str(reference), "a config file without weights beside it")


def _whole(name: str, value: Any, low: int) -> int:
    # numbers.Real: Python and NumPy numbers (not bools, strings or None); no JAX here.
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a whole number >= {low}, got {value!r}")
    number = float(value)
    if not number.is_integer() or number < low:
        raise ValueError(f"{name} must be a whole number >= {low}, got {value!r}")
    return int(number)


@dataclasses.dataclass(frozen=True)
class ServingPlan:
    """What to serve and how to speculate, per range of batch sizes.

    Attributes:
        method: one of `METHODS` (``"draft"``: an independent draft model; ``"eagle"``,
            ``"eagle3"``: EAGLE heads; ``"medusa"``; ``"mtp"``: the target's own MTP
            modules; ``"ngram"``: prompt lookup; ``"self"``: layer-skipping
            self-speculation).
        target_id: the target as the engine loads it (Hub id or path; `model_id`).
        draft_id: the draft model or heads as the engine loads them (``None`` for
            ``mtp``, ``ngram`` and ``self``).
        ranges: ``(first_batch, last_batch, lookahead)`` for consecutive batch sizes from
            1; lookahead 0 is plain decoding. Batch sizes above the last range are not
            covered by the plan (each engine's file says what it does there).
        batch: the batch size whose lookahead a static configuration uses (engines or
            releases that cannot change the lookahead with the batch size).
        tp: tensor-parallel degree of the target.
        draft_tp: tensor-parallel degree of the draft.
        tree_topk: EAGLE tree width (tokens kept per drafted token and step); 1 is a chain.
        tree_tokens: draft tokens verified per step when ``tree_topk > 1`` (the tree's
            nodes, root excluded); ``None`` for a chain (the lookahead).
        ngram_min: shortest suffix matched by n-gram lookup, tokens.
        ngram_max: longest suffix matched by n-gram lookup, tokens.
        target_vocab: the target's vocabulary size, if known (engines that need a draft
            model with the target's vocabulary check it).
        draft_vocab: the draft model's vocabulary size, if known.

    Examples:
        >>> from specsim.engines import ServingPlan
        >>> plan = ServingPlan.create("draft", "meta-llama/Meta-Llama-3-8B",
        ...                           [(1, 16, 4), (17, 64, 2), (65, 512, 0)],
        ...                           draft_id="JackFram/llama-68m")
        >>> plan.max_lookahead, plan.lookahead_at(20), plan.switch_off_batch
        (4, 2, 65)
    """

    method: str
    target_id: str
    ranges: tuple[tuple[int, int, int], ...]
    draft_id: str | None = None
    batch: int = 1
    tp: int = 1
    draft_tp: int = 1
    tree_topk: int = 1
    tree_tokens: int | None = None
    ngram_min: int = 1
    ngram_max: int = 4
    target_vocab: int | None = None
    draft_vocab: int | None = None

    @classmethod
    def create(
        cls,
        method: str,
        target_id: str,
        ranges: Iterable[Sequence[int]],
        *,
        draft_id: str | None = None,
        batch: int = 1,
        tp: int = 1,
        draft_tp: int | None = None,
        tree_topk: int = 1,
        tree_tokens: int | None = None,
        ngram_min: int = 1,
        ngram_max: int = 4,
        target_vocab: int | None = None,
        draft_vocab: int | None = None,
    ) -> ServingPlan:
        """A checked plan (``draft_tp`` defaults to ``tp``).

        Raises:
            ValueError: an unknown method; ranges that do not start at batch 1, overlap,
                leave gaps or are not whole numbers; a lookahead below 0; a missing draft
                id for a method that loads one (or one given to a method that does not);
                ``tp``, ``draft_tp``, ``batch``, tree or n-gram settings out of range.
        """
        if method not in METHODS:
            raise ValueError(f"unknown speculation method {method!r}; valid: {', '.join(METHODS)}")
        if not isinstance(target_id, str) or not target_id.strip():
            raise ValueError(f"target_id must be a model id or path, got {target_id!r}")
        if method in _NEEDS_DRAFT_ID and not draft_id:
            raise ValueError(f"method {method!r} loads a separate checkpoint: give draft_id")
        if method not in _NEEDS_DRAFT_ID and method != "mtp" and draft_id is not None:
            raise ValueError(f"method {method!r} loads no draft checkpoint; drop draft_id")
        checked: list[tuple[int, int, int]] = []
        try:
            ranges = [tuple(entry) for entry in ranges]
        except TypeError:
            raise ValueError(
                f"ranges {ranges!r}: not a sequence of (first_batch, last_batch, lookahead)"
            ) from None
        for entry in ranges:
            if len(entry) != 3:
                raise ValueError(
                    f"each range is (first_batch, last_batch, lookahead), got {entry!r}"
                )
            first = _whole("first batch", entry[0], 1)
            last = _whole("last batch", entry[1], first)
            lookahead = _whole("lookahead", entry[2], 0)
            expected = checked[-1][1] + 1 if checked else 1
            if first != expected:
                raise ValueError(
                    f"ranges must cover consecutive batch sizes from 1: range {entry!r} "
                    f"starts at {first}, expected {expected}"
                )
            checked.append((first, last, lookahead))
        if not checked:
            raise ValueError("ranges must hold at least one (first_batch, last_batch, lookahead)")
        topk = _whole("tree_topk", tree_topk, 1)
        if topk > 1:
            if tree_tokens is None:
                raise ValueError("a tree (tree_topk > 1) needs tree_tokens, its node count")
            _whole("tree_tokens", tree_tokens, 1)
        elif tree_tokens is not None:
            raise ValueError("tree_tokens only applies to a tree (tree_topk > 1)")
        low = _whole("ngram_min", ngram_min, 1)
        _whole("ngram_max", ngram_max, low)
        tp = _whole("tp", tp, 1)
        return cls(
            method=method,
            target_id=target_id,
            ranges=tuple(checked),
            draft_id=draft_id,
            batch=_whole("batch", batch, 1),
            tp=tp,
            draft_tp=_whole("draft_tp", tp if draft_tp is None else draft_tp, 1),
            tree_topk=topk,
            tree_tokens=None if tree_tokens is None else int(tree_tokens),
            ngram_min=low,
            ngram_max=int(ngram_max),
            target_vocab=None if target_vocab is None else _whole("target_vocab", target_vocab, 1),
            draft_vocab=None if draft_vocab is None else _whole("draft_vocab", draft_vocab, 1),
        )

    @classmethod
    def from_schedule(
        cls,
        schedule,
        target_id: str,
        *,
        method: str = "draft",
        draft_id: str | None = None,
        **settings: Any,
    ) -> ServingPlan:
        """The plan of a `specsim.Schedule` (its runs of equal best gamma, fitting rows).

        Args:
            schedule: a `specsim.Schedule` (``Schedule.runs()`` gives the ranges).
            target_id: see `ServingPlan`.
            method: see `ServingPlan` (``"draft"`` for today's draft-model schedules).
            draft_id: see `ServingPlan`.
            **settings: the other fields of `ServingPlan.create` (``batch``, ``tp``, ...).
        """
        return cls.create(method, target_id, schedule.runs(), draft_id=draft_id, **settings)

    @property
    def max_lookahead(self) -> int:
        """The largest lookahead of any range (0: speculation never pays)."""
        return max(k for _, _, k in self.ranges)

    @property
    def last_batch(self) -> int:
        """The largest batch size the plan covers."""
        return self.ranges[-1][1]

    @property
    def switch_off_batch(self) -> int | None:
        """The smallest batch size from which every range has lookahead 0, or ``None``."""
        off = None
        for first, _, k in self.ranges:
            if k > 0:
                off = None
            elif off is None:
                off = first
        return off

    def lookahead_at(self, batch: int) -> int:
        """The lookahead at ``batch`` (the last range's above the plan)."""
        for first, last, k in self.ranges:
            if first <= batch <= last:
                return k
        return self.ranges[-1][2]

    @property
    def vocab_mismatch(self) -> bool:
        """Whether a draft model's vocabulary is known to differ from the target's."""
        return (
            self.method == "draft"
            and None not in (self.target_vocab, self.draft_vocab)
            and self.target_vocab != self.draft_vocab
        )

    @property
    def is_tree(self) -> bool:
        """Whether the method drafts a token tree (EAGLE with ``tree_topk > 1``)."""
        return self.tree_topk > 1
