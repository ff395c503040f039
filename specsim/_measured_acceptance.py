"""Acceptance from measurements: what a serving engine or a benchmark reports.

Three kinds of statistics, each a file format (examples in ``specsim/data/acceptance/``):

* **histogram**: how many iterations accepted 0, 1, ..., K draft tokens (counts, or
  probabilities summing to 1). CSV with columns ``accepted,count``, or JSON
  ``{"format": "histogram", "counts": [c_0, ..., c_K]}`` (``"probabilities"`` instead of
  ``"counts"`` for fractions).
* **per_position**: how often draft position k (0-based) was accepted, over how many
  iterations (vLLM's ``vllm:spec_decode_num_accepted_tokens_per_pos`` and
  ``vllm:spec_decode_num_drafts`` counters). JSON ``{"format": "per_position",
  "num_drafts": N, "accepted_per_position": [a_0, ..., a_{K-1}]}`` (optional
  ``"num_accepted_tokens"``, checked against the sum); CSV with columns
  ``position,accepted,drafts``; or the Prometheus text of vLLM's ``/metrics`` endpoint
  (``*.prom``, lines ``vllm:spec_decode_num_drafts_total ...`` and
  ``vllm:spec_decode_num_accepted_tokens_per_pos_total{position="k"} ...``).
* **mean_accepted_length**: tau, the mean tokens per iteration *including* the target's
  bonus token (Spec-Bench's and EAGLE's "accepted length", vLLM's "mean acceptance
  length"), with the lookahead it was measured at: JSON ``{"format":
  "mean_accepted_length", "tau": 3.2, "lookahead": 5}``.

All three reduce to `AcceptanceStats`: the survival ``S_k`` (probability that at least
``k`` drafts are accepted) where known, and tau. From them:

* a chain: `AcceptanceStats.positional` (``a_k = S_k / S_{k-1}``, exact) or
  `AcceptanceStats.constant` (the alpha whose ``E(alpha, K)`` is tau);
* a tree: `AcceptanceStats.tree` fits the top-1 rate of every depth of
  ``TreeAcceptance.from_top1(alphas, ranks, decay)`` so that the measured tree's
  survival (or tau) is reproduced, depth by depth.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from . import _schema, theory
from ._acceptance import ConstantAcceptance, PositionalAcceptance, TreeAcceptance
from ._numerics import real_number
from ._tree import DynamicTree, TokenTree, tree_expected_tokens

__all__ = [
    "DEFAULT_RANK_DECAY",
    "AcceptanceStats",
    "acceptance_from_counts",
    "acceptance_from_histogram",
    "acceptance_from_tau",
    "load_acceptance",
]

# Rank decay of `TreeAcceptance.from_top1` when only top-1 rates are known. EAGLE (Li et
# al. 2024, arXiv 2401.15077) publishes, for six targets on MT-bench at T=0, the chain's
# per-position rates (Table 2) and the accepted length of its 25-node static tree (Table
# 5; tree from SafeAILab/EAGLE eagle/model/choices.py). The decay that reproduces each
# tree's tau from its chain rates is 0.47 to 0.66; 0.55 is the median.
DEFAULT_RANK_DECAY = 0.55
DEFAULT_RANKS = 8
_SUM_SLACK = 1e-6
_BISECTION_STEPS = 60


@dataclasses.dataclass(frozen=True)
class AcceptanceStats:
    """Measured acceptance, reduced to survival probabilities and the mean length.

    Attributes:
        kind: ``"histogram"``, ``"per_position"`` or ``"mean_accepted_length"``.
        survival: ``S_k``, probability that at least ``k`` drafts were accepted,
            ``k = 1..K`` (``None`` when only tau is known).
        tau: mean tokens per iteration, bonus token included.
        lookahead: drafts (or tree depth) per iteration when measured, ``K``.
        iterations: how many iterations the statistics cover (``None`` if unknown).
        source: where they came from (a path, or the constructor's name).

    Examples:
        >>> from specsim import acceptance_from_histogram
        >>> stats = acceptance_from_histogram([20, 30, 50])
        >>> round(stats.tau, 2), [round(float(a), 3) for a in stats.positional().alphas]
        (2.3, [0.8, 0.625])
    """

    kind: str
    survival: np.ndarray | None
    tau: float
    lookahead: int
    iterations: float | None = None
    source: str = ""

    def positional(self) -> PositionalAcceptance:
        """Per-position rates ``a_k = S_k / S_{k-1}`` (exact for a chain).

        Raises:
            ValueError: only tau is known (use `constant` or `tree`).
        """
        if self.survival is None:
            raise ValueError(
                "a mean accepted length alone does not give per-position rates; use "
                "constant() or tree(), or measure a histogram or per-position counts"
            )
        previous = np.concatenate([[1.0], self.survival[:-1]])
        rates = np.divide(
            self.survival, previous, out=np.zeros_like(self.survival), where=previous > 0
        )
        return PositionalAcceptance.create(np.clip(rates, 0.0, 1.0).astype(np.float32))

    def constant(self) -> ConstantAcceptance:
        """The constant alpha whose chain of ``lookahead`` tokens emits tau on average."""
        return ConstantAcceptance.create(_alpha_for_tau(self.tau, self.lookahead))

    def tree(
        self,
        tree: TokenTree,
        *,
        ranks: int = DEFAULT_RANKS,
        decay: float = DEFAULT_RANK_DECAY,
    ) -> TreeAcceptance:
        """Rank probabilities reproducing what ``tree`` was measured to accept.

        ``TreeAcceptance.from_top1(alphas, ranks, decay)``: with survival known, the
        top-1 rate of each depth is solved in turn (bisection) so that the tree accepts
        at least ``d`` tokens with the measured ``S_d``; with tau only, one rate for
        every depth reproduces tau. Depths the tree never reaches keep the last rate.

        Args:
            tree: the `TokenTree` the statistics were measured with (a chain for a
                chain measurement: ``TokenTree.chain(lookahead)``), or a `DynamicTree`
                when only tau is known.
            ranks: candidates per depth of the fitted acceptance.
            decay: rank decay (``DEFAULT_RANK_DECAY`` from EAGLE's chain/tree results).

        Raises:
            ValueError: a tree shallower than the measured survival, or a survival the
                tree cannot reach even with every top-1 rate at 1.
        """
        if isinstance(tree, DynamicTree) and self.survival is None:
            depth = int(np.count_nonzero(np.asarray(tree.widths) > 0))

            def tau_of(alpha: float) -> float:
                acc = TreeAcceptance.from_top1([alpha] * depth, ranks=ranks, decay=decay)
                return float(tree_expected_tokens(acc, tree))

            alpha = _bisect(tau_of, self.tau)
            return TreeAcceptance.from_top1([alpha] * depth, ranks=ranks, decay=decay)
        if not isinstance(tree, TokenTree):
            raise ValueError(
                "tree must be a TokenTree (or a DynamicTree when only tau is known), got "
                f"{type(tree).__name__}"
            )
        depth = tree.max_depth
        paths = tree.paths()
        if self.survival is None:
            alpha = _bisect(lambda a: _tree_tau(paths, [a] * depth, ranks, decay), self.tau)
            return TreeAcceptance.from_top1([alpha] * depth, ranks=ranks, decay=decay)
        if self.survival.size > depth:
            raise ValueError(
                f"the statistics reach {self.survival.size} accepted tokens but the tree "
                f"is only {depth} deep"
            )
        alphas: list[float] = []
        for d, target in enumerate(self.survival, start=1):
            alphas.append(
                _bisect(
                    lambda a, d=d: _tree_survival(paths, [*alphas, a], ranks, decay, d),
                    float(target),
                    what=f"accepting >= {d} tokens with probability {float(target):.4g}",
                )
            )
        alphas += [alphas[-1]] * (depth - len(alphas))
        return TreeAcceptance.from_top1(alphas, ranks=ranks, decay=decay)

    def to_dict(self) -> dict[str, Any]:
        """Plain Python values for JSON."""
        return {
            "kind": self.kind,
            "tau": self.tau,
            "lookahead": self.lookahead,
            "iterations": self.iterations,
            "survival": None if self.survival is None else self.survival.tolist(),
            "source": self.source,
        }


# --------------------------------------------------------------------------- constructors


def acceptance_from_histogram(counts, *, source: str = "histogram") -> AcceptanceStats:
    """Statistics from a histogram of accepted drafts per iteration.

    Args:
        counts: ``counts[k]`` = iterations that accepted exactly ``k`` drafts, ``k = 0..K``
            (counts, or probabilities summing to 1).

    Raises:
        ValueError: fewer than two bins, negative or non-finite entries, all zero, or
            fractions (all entries < 1) that do not sum to 1.
    """
    values = _vector("histogram counts", counts)
    if values.size < 2:
        raise ValueError("a histogram needs bins for 0..K accepted drafts, K >= 1")
    if np.any(values < 0):
        raise ValueError(f"histogram counts must be >= 0, got {values.tolist()}")
    total = float(values.sum())
    if total <= 0:
        raise ValueError("histogram counts are all zero")
    if (
        np.all(values <= 1.0)
        and abs(total - 1.0) > _SUM_SLACK
        and not np.all(values == np.round(values))
    ):
        raise ValueError(
            f"histogram probabilities must sum to 1, got {total:.6g}; give counts or fractions"
        )
    p = values / total
    survival = np.cumsum(p[::-1])[::-1][1:]
    tau = 1.0 + float(survival.sum())
    return AcceptanceStats(
        "histogram", survival, tau, values.size - 1, total if total > 1 else None, source
    )


def acceptance_from_counts(
    num_drafts, accepted_per_position, *, num_accepted_tokens=None, source: str = "counts"
) -> AcceptanceStats:
    """Statistics from per-position accept counts (vLLM's speculative-decoding counters).

    Args:
        num_drafts: iterations that proposed drafts (``vllm:spec_decode_num_drafts``).
        accepted_per_position: how often draft position ``k`` was accepted, ``k = 0..K-1``
            (``vllm:spec_decode_num_accepted_tokens_per_pos``).
        num_accepted_tokens: optional total (``vllm:spec_decode_num_accepted_tokens``),
            checked against the sum of the positions.

    Raises:
        ValueError: counts that are negative, increase with position (a draft is
            accepted only after every earlier one), exceed ``num_drafts``, or do not sum
            to ``num_accepted_tokens``.
    """
    drafts = real_number(num_drafts)
    if drafts is None or not (math.isfinite(drafts) and drafts > 0):
        raise ValueError(f"num_drafts must be a number > 0, got {num_drafts!r}")
    accepted = _vector("accepted_per_position", accepted_per_position)
    if accepted.size == 0 or np.any(accepted < 0):
        raise ValueError(
            f"accepted_per_position must be non-empty counts >= 0, got {accepted.tolist()}"
        )
    if accepted[0] > drafts * (1 + _SUM_SLACK):
        raise ValueError(
            f"position 0 was accepted {accepted[0]:g} times in only {drafts:g} drafts: the "
            "counts do not add up"
        )
    rising = np.flatnonzero(np.diff(accepted) > _SUM_SLACK * max(drafts, 1.0))
    if rising.size:
        k = rising[0]
        raise ValueError(
            f"position {k + 1} was accepted more often ({accepted[k + 1]:g}) than position "
            f"{k} ({accepted[k]:g}); a draft is accepted only after every earlier one"
        )
    if num_accepted_tokens is not None:
        total = real_number(num_accepted_tokens)
        if total is None or not math.isfinite(total):
            raise ValueError(
                f"num_accepted_tokens must be a finite number, got {num_accepted_tokens!r}"
            )
        if abs(total - accepted.sum()) > _SUM_SLACK * max(total, 1.0) + 0.5:
            raise ValueError(
                f"num_accepted_tokens is {total:g} but the positions sum to {accepted.sum():g}"
            )
    survival = accepted / drafts
    return AcceptanceStats(
        "per_position", survival, 1.0 + float(survival.sum()), accepted.size, drafts, source
    )


def acceptance_from_tau(tau, lookahead, *, source: str = "tau") -> AcceptanceStats:
    """Statistics from a mean accepted length (bonus token included).

    Args:
        tau: mean tokens per iteration, in ``[1, lookahead + 1]``.
        lookahead: drafts (or tree depth) per iteration when measured, >= 1.

    Raises:
        ValueError: tau outside ``[1, lookahead + 1]`` or a lookahead that is not a whole
            number >= 1.
    """
    steps = real_number(lookahead)
    if steps is None or not (steps.is_integer() and steps >= 1):
        raise ValueError(f"lookahead must be a whole number >= 1, got {lookahead!r}")
    lookahead = int(steps)
    if real_number(tau) is None:
        raise ValueError(f"tau must be a number in [1, {lookahead + 1}], got {tau!r}")
    tau = real_number(tau)
    if not (math.isfinite(tau) and 1.0 <= tau <= lookahead + 1.0):
        raise ValueError(
            f"tau (tokens per iteration, bonus included) must be in [1, {int(lookahead) + 1}] "
            f"for lookahead {int(lookahead)}, got {tau:g}"
        )
    return AcceptanceStats("mean_accepted_length", None, tau, int(lookahead), None, source)


def load_acceptance(path: str | os.PathLike) -> AcceptanceStats:
    """Reads acceptance statistics from a CSV, JSON or Prometheus-text file.

    See the module docstring for the formats.

    Examples:
        >>> from importlib import resources
        >>> from specsim import load_acceptance
        >>> folder = resources.files("specsim") / "data" / "acceptance"
        >>> round(load_acceptance(folder / "vllm_metrics.prom").tau, 3)
        2.98

    Raises:
        ValueError: a missing or unreadable file, an unknown format, or statistics that
            do not add up.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"acceptance file not found: {path}")
    text = path.read_text()
    source = str(path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".json":
            return _from_json(json.loads(text), source)
        if suffix == ".csv":
            return _from_csv(text, source)
        if "vllm:spec_decode" in text:
            return _from_prometheus(text, source)
    except KeyError as e:
        raise ValueError(f"{path}: missing key {e}; see specsim/data/acceptance/") from None
    except (json.JSONDecodeError, csv.Error, TypeError) as e:
        raise ValueError(f"{path}: cannot read acceptance statistics ({e})") from None
    except ValueError as e:  # a reader's own check: say which file it is about
        if str(path) in str(e):
            raise
        raise ValueError(f"{path}: {e}") from None
    raise ValueError(
        f"{path}: unknown acceptance format; use .json, .csv or vLLM's Prometheus /metrics text"
    )


# --------------------------------------------------------------------------- readers

_FORMATS = ("histogram", "per_position", "mean_accepted_length")
# The keys each JSON format may hold (a typo is an error naming the closest valid key).
_JSON_KEYS = {
    "histogram": ("format", "comment", "counts", "probabilities"),
    "per_position": (
        "format",
        "comment",
        "num_drafts",
        "accepted_per_position",
        "num_accepted_tokens",
    ),
    "mean_accepted_length": ("format", "comment", "tau", "lookahead"),
}
_CSV_COLUMNS = (("accepted", "count"), ("position", "accepted", "drafts"))


def _from_json(payload, source: str) -> AcceptanceStats:
    if not isinstance(payload, dict) or payload.get("format") not in _FORMATS:
        raise ValueError(f"{source}: JSON needs a 'format' key, one of {', '.join(_FORMATS)}")
    kind = payload["format"]
    _schema.check_keys(payload, _JSON_KEYS[kind], f"{source}: {kind}")
    if kind == "histogram":
        if ("counts" in payload) == ("probabilities" in payload):
            raise ValueError(f"{source}: a histogram needs 'counts' or 'probabilities'")
        values = payload.get("counts", payload.get("probabilities"))
        if "probabilities" in payload:
            total = float(np.sum(_vector("probabilities", values)))
            if abs(total - 1.0) > _SUM_SLACK:
                raise ValueError(f"{source}: probabilities sum to {total:.6g}, not 1")
        return acceptance_from_histogram(values, source=source)
    if kind == "per_position":
        return acceptance_from_counts(
            payload["num_drafts"],
            payload["accepted_per_position"],
            num_accepted_tokens=payload.get("num_accepted_tokens"),
            source=source,
        )
    return acceptance_from_tau(payload["tau"], payload["lookahead"], source=source)


def _from_csv(text: str, source: str) -> AcceptanceStats:
    rows = list(csv.DictReader(line for line in text.splitlines() if not line.startswith("#")))
    columns = set(rows[0]) if rows else set()
    wider = [known for known in _CSV_COLUMNS if set(known) < columns]
    if wider and not any(columns == set(known) for known in _CSV_COLUMNS):
        known = max(wider, key=len)
        extra = sorted(columns - set(known))
        raise ValueError(
            f"{source}: column {extra[0]!r}: unknown; valid: {','.join(known)} "
            "(histogram: accepted,count; per-position counts: position,accepted,drafts)"
        )
    if {"accepted", "count"} <= columns:
        table = sorted((int(r["accepted"]), float(r["count"])) for r in rows)
        if [k for k, _ in table] != list(range(len(table))):
            raise ValueError(f"{source}: 'accepted' must list 0, 1, ..., K once each")
        return acceptance_from_histogram([c for _, c in table], source=source)
    if {"position", "accepted", "drafts"} <= columns:
        table = sorted((int(r["position"]), float(r["accepted"])) for r in rows)
        if [k for k, _ in table] != list(range(len(table))):
            raise ValueError(f"{source}: 'position' must list 0, 1, ..., K-1 once each")
        drafts = {float(r["drafts"]) for r in rows}
        if len(drafts) != 1:
            raise ValueError(f"{source}: 'drafts' must be the same on every row")
        return acceptance_from_counts(drafts.pop(), [a for _, a in table], source=source)
    raise ValueError(
        f"{source}: CSV columns must be 'accepted,count' (histogram) or "
        f"'position,accepted,drafts' (per-position counts), got {sorted(columns)}"
    )


_PROM_LINE = re.compile(r"^(vllm:spec_decode_[a-z_]+?)(?:_total)?(\{[^}]*\})?\s+(\S+)$")


def _from_prometheus(text: str, source: str) -> AcceptanceStats:
    drafts = 0.0
    accepted_tokens = None
    per_position: dict[int, float] = {}
    for line in text.splitlines():
        match = _PROM_LINE.match(line.strip())
        if not match:
            continue
        name, labels, value = match.group(1), match.group(2) or "", float(match.group(3))
        if name == "vllm:spec_decode_num_drafts":
            drafts += value
        elif name == "vllm:spec_decode_num_accepted_tokens":
            accepted_tokens = (accepted_tokens or 0.0) + value
        elif name == "vllm:spec_decode_num_accepted_tokens_per_pos":
            position = re.search(r'position="(\d+)"', labels)
            if position:
                k = int(position.group(1))
                per_position[k] = per_position.get(k, 0.0) + value
    if not per_position:
        raise ValueError(
            f"{source}: no vllm:spec_decode_num_accepted_tokens_per_pos counters found"
        )
    if sorted(per_position) != list(range(len(per_position))):
        raise ValueError(f"{source}: positions must be 0..K-1, got {sorted(per_position)}")
    return acceptance_from_counts(
        drafts,
        [per_position[k] for k in range(len(per_position))],
        num_accepted_tokens=accepted_tokens,
        source=source,
    )


# --------------------------------------------------------------------------- fitting


def _vector(name: str, values) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be numbers, got {values!r}") from None
    if array.ndim != 1 or not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be a 1-D list of finite numbers, got {values!r}")
    return array


def _bisect(fn, target: float, what: str = "") -> float:
    """``a`` in [0, 1] with ``fn(a) = target`` for ``fn`` non-decreasing."""
    lo, hi = 0.0, 1.0
    if fn(hi) < target - 1e-9:
        raise ValueError(
            f"the tree cannot reproduce the measurement{' (' + what + ')' if what else ''} "
            "even if every top-1 draft is accepted; check the tree and the statistics"
        )
    for _ in range(_BISECTION_STEPS):
        mid = (lo + hi) / 2
        if fn(mid) < target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def _path_probabilities(paths, alphas, ranks: int, decay: float) -> np.ndarray:
    probs = np.asarray(
        TreeAcceptance.from_top1(np.clip(alphas, 0.0, 1.0), ranks=ranks, decay=decay).rank_probs,
        np.float64,
    )
    out = []
    prefix: dict[tuple[int, ...], float] = {(): 1.0}
    for path in paths:
        d, k = len(path) - 1, path[-1]
        node = probs[d, k] if d < probs.shape[0] and k < probs.shape[1] else 0.0
        prefix[path] = prefix[path[:-1]] * node
        out.append((len(path), prefix[path]))
    return np.asarray(out)


def _tree_tau(paths, alphas, ranks, decay) -> float:
    return 1.0 + float(_path_probabilities(paths, alphas, ranks, decay)[:, 1].sum())


def _tree_survival(paths, alphas, ranks, decay, depth: int) -> float:
    """P(at least ``depth`` tokens accepted): the depth-``depth`` nodes' path mass
    (disjoint events: one node per depth matches the target's tokens)."""
    nodes = [p for p in paths if len(p) <= depth]
    table = _path_probabilities(nodes, alphas, ranks, decay)
    return float(table[table[:, 0] == depth, 1].sum())


def _alpha_for_tau(tau: float, lookahead: int) -> float:
    if tau >= lookahead + 1.0 - 1e-9:
        return 1.0 - 1e-6  # every draft accepted: as close to 1 as a constant rate allows
    if tau <= 1.0 + 1e-9:
        return 1e-6

    def tokens(alpha: float) -> float:
        return float(theory.expected_tokens(np.float64(alpha), np.float64(lookahead)))

    return float(np.clip(_bisect(tokens, tau), 1e-6, 1.0 - 1e-6))
