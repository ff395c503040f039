"""What-if grids across speculation methods: the method as one more axis.

`specsim.sweep` evaluates huge Cartesian grids of draft models; `sweep_methods` puts
speculation methods side by side: for every method, every point of the (hardware,
target, tp, batch, prompt, generate, acceptance, gamma) product is evaluated by one
``jit(vmap(predict))`` call (one compilation per method and grid shape), and the rows of
all methods are concatenated with a ``method`` column. Chains are swept over ``gamma``;
a method's trees can be listed instead (``trees``, level widths under a ``TreeAcceptance``).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from . import hardware as _hardware
from . import models as _models
from ._deployment import Deployment
from ._feasibility import FEASIBILITY_NAMES, feasibility_code
from ._inline import inline_jits
from ._throughput import ThroughputReport, check_speculation, predict
from ._tree import DynamicTree
from ._workload import Workload
from .models import TransformerSpec
from .speculators import METHODS, create

__all__ = ["sweep_methods"]

_COLUMNS = tuple(f for f in ThroughputReport.__dataclass_fields__ if not f.endswith("_bound"))
_MAX_POINTS = 200_000


def _as_list(value) -> list:
    if isinstance(value, str) or not isinstance(value, Sequence):
        return [value]
    return list(value)


def _counts(value) -> list[float] | list[int]:
    """An axis of counts: Python ints when every value is whole, else floats.

    Examples:
        >>> _counts([1, 8.0]), _counts(2.5)
        ([1, 8], [2.5])
    """
    values = [float(v) for v in _as_list(value)]
    return [int(v) for v in values] if all(v.is_integer() for v in values) else values


def sweep_methods(
    method: str | Sequence[str] = METHODS,
    *,
    hardware: Any = "h100",
    target: Any = "llama-3-8b",
    tp: Any = 1,
    batch: Any = 1,
    prompt_tokens: Any = 512,
    generate_tokens: Any = 256,
    gamma: Any = 4,
    acceptance: Any = 0.8,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    trees: Mapping[str, Sequence[Sequence[float]]] | None = None,
    draft_tp: Any = None,
    shared_tokenizer: bool = False,
) -> pd.DataFrame:
    """Every method at every grid point, one row each (a tidy DataFrame).

    Args:
        method: method names (`specsim.speculators.METHODS`).
        hardware, target: catalogue names (lists for several).
        tp, batch, prompt_tokens, generate_tokens: numbers or lists of numbers.
        gamma: chain lengths (whole or real numbers >= 0).
        acceptance: one acceptance for every method (a rate, per-position rates or an
            acceptance model), or a mapping ``method -> acceptance``.
        options: ``method -> options`` for `specsim.speculators.create` (e.g.
            ``{"draft": {"draft": "llama-68m"}, "ngram": {"match_probability": 0.5}}``;
            the draft model defaults to ``llama-68m``).
        trees: ``method -> list of level widths``: sweep these trees for that method
            instead of ``gamma`` (its acceptance must be a `TreeAcceptance`).
        draft_tp: a draft model's tensor parallelism, one number (default: each point's
            ``tp``).
        shared_tokenizer: a draft model's vocabulary may differ in size from the target's
            (one tokenizer, padded tables): not marked ``vocab``.

    Returns:
        Columns ``method``, ``hardware``, ``target``, ``tp``, ``batch``,
        ``prompt_tokens``, ``generate_tokens``, ``shape`` (gamma, or the tree's widths as
        text), the report fields and ``feasibility`` ("ok", or the first broken rule of
        `specsim.feasibility.FEASIBILITY_NAMES`: a draft model's vocabulary, memory).

    Raises:
        ValueError: unknown methods or names, invalid values, an option that does not
            belong to its method, or more than 200,000 points (use `specsim.sweep`).

    Examples:
        >>> import specsim
        >>> frame = specsim.sweep_methods(["draft", "ngram"], batch=[1, 64], gamma=[2, 4])
        >>> len(frame), sorted(frame.method.unique())
        (8, ['draft', 'ngram'])
    """
    methods = _as_list(method)
    for name in methods:
        if name not in METHODS:
            raise ValueError(f"unknown method {name!r}; valid: {', '.join(METHODS)}")
    if len(set(methods)) != len(methods):
        raise ValueError("method: each method once")
    options = dict(options or {})
    trees = dict(trees or {})
    for name in [*options, *trees]:
        if name not in methods:
            raise ValueError(f"options or trees given for {name!r}, which is not swept")
    axes = {
        "hardware": _as_list(hardware),
        "target": _as_list(target),
        "tp": _counts(tp),
        "batch": _counts(batch),
        "prompt_tokens": _counts(prompt_tokens),
        "generate_tokens": _counts(generate_tokens),
    }
    chips = {name: _hardware.get(name) for name in axes["hardware"]}
    models = {name: _models.get(name) for name in axes["target"]}
    grid = list(itertools.product(*axes.values()))
    frames = []
    for name in methods:
        acc = acceptance.get(name, 0.8) if isinstance(acceptance, Mapping) else acceptance
        method_options = dict(options.get(name, {}))
        if name == "draft":
            method_options.setdefault("draft", "llama-68m")
        deployments = [
            Deployment.create(
                models[t], chips[h], Workload.create(b, p, g), acc, tp=tp_, draft_tp=draft_tp
            )
            for h, t, tp_, b, p, g in grid
        ]
        speculator = create(name, deployments[0].target, **method_options)
        if name in trees:
            max_width = max(1, int(np.ceil(max(max(w) for w in trees[name]))))
            depth = max(len(w) for w in trees[name])
            shapes = [
                DynamicTree.create(list(w) + [0.0] * (depth - len(w)), max_width)
                for w in trees[name]
            ]
            labels = [",".join(f"{v:g}" for v in w) for w in trees[name]]
        else:
            shapes = [float(v) for v in _as_list(gamma)]
            labels = _counts(gamma)
        points = len(deployments) * len(shapes)
        if points > _MAX_POINTS:
            raise ValueError(
                f"{points} points for {name!r} exceed {_MAX_POINTS}; use specsim.sweep"
            )
        for d in deployments:
            for shape in shapes:
                check_speculation(d, speculator, shape)
        stacked = jax.tree.map(lambda *x: jnp.stack(x), *deployments)
        shape_stack = jax.tree.map(lambda *x: jnp.stack([jnp.asarray(v) for v in x]), *shapes)
        reports = _evaluate(stacked, speculator, shape_stack)
        fields = {c: np.asarray(getattr(reports, c)).reshape(-1) for c in _COLUMNS}
        fields["feasibility"] = _feasibility(stacked, speculator, reports.fits, shared_tokenizer)
        rows = pd.DataFrame(
            [(*point, label) for point in grid for label in labels],
            columns=[*axes, "shape"],
        )
        rows.insert(0, "method", name)
        for column, values in fields.items():
            rows[column] = values
        frames.append(rows)
    return pd.concat(frames, ignore_index=True)


def _feasibility(deployments, speculator, fits, shared_tokenizer: bool) -> np.ndarray:
    """Each point's first broken rule by name (`FEASIBILITY_NAMES`; "ok" where it can be
    served): a draft model's vocabulary, the target's split, memory. Methods without a
    separate model are placed as the target is (its own vocabulary and heads)."""

    def column(x):  # one value per deployment, broadcast over the shapes
        return jnp.asarray(x)[:, None]

    target = jax.tree.map(column, deployments.target)
    draft = speculator if isinstance(speculator, TransformerSpec) else target
    domain = deployments.hardware.interconnect_domain_chips
    codes = feasibility_code(
        target,
        draft,
        column(deployments.tp),
        column(deployments.draft_tp),
        fits,
        shared_vocab=bool(shared_tokenizer),
        domain_chips=np.inf if domain is None else column(domain),
    )
    return np.asarray(FEASIBILITY_NAMES, dtype=object)[np.asarray(codes).reshape(-1)]


@jax.jit
def _evaluate(deployments, speculator, shapes):
    @inline_jits  # (batched flat: see `specsim._inline`)
    def one(d, s):
        return predict(d, speculator, s)

    return jax.vmap(lambda d: jax.vmap(lambda s: one(d, s))(shapes))(deployments)
