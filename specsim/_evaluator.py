"""`Evaluator`: `predict` compiled once for a deployment and a speculator, called many times.

A notebook loop, a discrete-event simulator or a line search asks for one configuration
at a time, changing a few numbers between calls. `predict` validates every leaf,
flattens the pytrees and dispatches a jitted call each time; an `Evaluator` does that
once. Its arguments live in packed vectors, compiled ahead of time
(``jax.jit(...).lower(...).compile()``); a call writes the new lookahead (or a new
speculator or deployment of the same structure) into a copy and runs the executable:
one transfer in, one out.
"""

from __future__ import annotations

import math

import jax
import numpy as np

from ._deployment import Deployment, check_gamma
from ._throughput import (
    QUADRATURE_NODES,
    ThroughputReport,
    _checked_nodes,
    _checked_packed_report,
    _checked_smooth,
    _kind,
    _pack,
    _report_structure,
    _throughput_packed,
    check_speculation,
    host_result,
)
from .speculators import _protocol as _speculators

__all__ = ["Evaluator"]


class Evaluator:
    """`predict` for one deployment and speculator structure, compiled ahead of time.

    Calls with a new ``gamma``, ``speculator`` or ``deployment`` skip the validation of
    what did not change, pytree flattening and JIT dispatch: about 50 µs per call on a
    2-core CPU, against about 100 µs for `throughput` and a few hundred for a plain
    jitted call. The report holds NumPy values (the same numbers `predict` gives).
    Nothing here is traced: for ``jit``, ``vmap`` and ``grad`` use `predict`.

    Args:
        deployment: a `Deployment`.
        speculator: a draft model (`TransformerSpec`) or a speculator of
            `specsim.speculators`.
        gamma: the default lookahead, or a token tree (its structure is fixed).
        smooth: ``None`` for the spec's roofline, or a roofline sharpness (static).
        quadrature_nodes: Gauss-Legendre nodes over the growing context (static).

    Raises:
        ValueError: an invalid deployment, speculator or gamma, or traced inputs.

    Examples:
        >>> import specsim
        >>> d = specsim.Deployment.create("llama-2-7b", "a100-80gb", acceptance=0.8)
        >>> evaluate = specsim.Evaluator(d, specsim.models.get("llama-68m"))
        >>> best = max(range(1, 9), key=lambda g: evaluate(g).tokens_per_s)
        >>> float(evaluate(best).speedup) > 1
        True
    """

    def __init__(
        self,
        deployment: Deployment,
        speculator,
        gamma=0.0,
        *,
        smooth: float | None = None,
        quadrature_nodes: int = QUADRATURE_NODES,
    ):
        if not isinstance(deployment, Deployment):
            raise ValueError(f"deployment must be a Deployment, got {type(deployment).__name__}")
        deployment.validate()
        check_speculation(deployment, speculator, gamma)
        smooth, quadrature_nodes = _checked_smooth(smooth), _checked_nodes(quadrature_nodes)
        packed = _pack((deployment, speculator, gamma))
        if packed is None:
            raise ValueError(
                "Evaluator needs concrete numbers (not traced, x64 off); inside jit, vmap "
                "or grad use specsim.predict"
            )
        self._floats, self._integers, layout = packed
        self._structure = _report_structure(layout, smooth, quadrature_nodes)
        self._executable = _throughput_packed.lower(
            self._floats, self._integers, layout, smooth, quadrature_nodes
        ).compile()
        self._bound = {"deployment": deployment, "speculator": speculator, "gamma": gamma}
        # Leaves are packed in flattening order: deployment, speculator, then gamma; floats
        # and integers each in their own vector.
        counts = (len(jax.tree.leaves(deployment)), len(jax.tree.leaves(speculator)))
        bounds = (0, counts[0], counts[0] + counts[1], len(layout.shapes))
        self._parts = {}
        f = i = 0
        names = ("deployment", "speculator", "gamma")
        for name, lo, hi in zip(names, bounds[:-1], bounds[1:], strict=True):
            shapes, kinds = layout.shapes[lo:hi], layout.kinds[lo:hi]
            n_f = sum(_size(s) for s, k in zip(shapes, kinds, strict=True) if k == "f")
            n_i = sum(_size(s) for s, k in zip(shapes, kinds, strict=True) if k != "f")
            self._parts[name] = (slice(f, f + n_f), slice(i, i + n_i), shapes, kinds)
            f, i = f + n_f, i + n_i
        self._trees = {
            "deployment": _structure(deployment),
            "speculator": _structure(speculator),
            "gamma": _structure(gamma),
        }
        self._scalar_gamma = layout.shapes[-1:] == ((),) and layout.kinds[-1:] == "f"
        self._scalar_gamma = self._scalar_gamma and bounds[3] - bounds[2] == 1
        self._valid_gamma = float(np.max(gamma)) if self._scalar_gamma else 0.0

    def __call__(self, gamma=None, *, speculator=None, deployment=None) -> ThroughputReport:
        """The report for a new lookahead, speculator or deployment (``None``: the bound one).

        Args:
            gamma: draft tokens per iteration (real >= 0), or a token tree, of the bound
                structure.
            speculator: a speculator of the bound one's structure (validated).
            deployment: a deployment of the bound one's structure (validated).

        Returns:
            ``ThroughputReport`` of NumPy values.

        Raises:
            ValueError: a negative or non-finite gamma, one above ``specsim.limits`` or
                the speculator's own limit (a Medusa's heads), an invalid or differently
                structured speculator, tree or deployment, or a report field that is not
                finite in float32 (as `specsim.throughput` refuses it).
        """
        floats, integers = self._floats.copy(), self._integers
        if deployment is not None:
            if not isinstance(deployment, Deployment):
                raise ValueError(
                    f"deployment must be a Deployment, got {type(deployment).__name__}"
                )
            deployment.validate()
        fast = self._scalar_gamma and speculator is None and deployment is None
        if fast and gamma is not None:
            # The common call, on a Python float. A lookahead's limits are upper bounds
            # (MAX_GAMMA, a Medusa's head count), so one at most the largest already
            # validated is valid; a larger one is checked as `predict` checks it.
            number = _lookahead(gamma)
            if number > self._valid_gamma:
                _speculators.validate_speculation(
                    self._bound["speculator"], self._bound["deployment"], number
                )
                check_gamma(number)
                self._valid_gamma = number
            floats[self._parts["gamma"][0]] = number
        elif speculator is not None or deployment is not None or gamma is not None:
            check_speculation(
                self._bound["deployment"] if deployment is None else deployment,
                self._bound["speculator"] if speculator is None else speculator,
                self._bound["gamma"] if gamma is None else gamma,
            )
            for what, tree in (
                ("gamma", gamma),
                ("speculator", speculator),
                ("deployment", deployment),
            ):
                if tree is not None:
                    integers = self._write(floats, integers, what, tree)
        return _checked_packed_report(
            host_result(self._executable(floats, integers)), self._structure
        )

    def _write(self, floats: np.ndarray, integers: np.ndarray, what: str, tree) -> np.ndarray:
        """Writes ``tree``'s leaves into the vectors; returns the (copied) integer vector."""
        if _structure(tree) != self._trees[what]:
            raise ValueError(
                f"{what} has another structure than the one this Evaluator was compiled for "
                "(e.g. another acceptance model, speculator or tree size); build a new Evaluator"
            )
        float_slots, integer_slots, shapes, kinds = self._parts[what]
        leaves = jax.tree.leaves(tree)
        got = "".join(_kind(leaf) or "?" for leaf in leaves)
        arrays = [np.asarray(leaf) for leaf in leaves] if "?" not in got else []
        if got != kinds or tuple(a.shape for a in arrays) != shapes:
            raise ValueError(
                f"{what} has other leaf shapes or types than the structure this Evaluator "
                "was compiled for; build a new Evaluator"
            )
        pairs = list(zip(arrays, kinds, strict=True))
        if float_slots.stop > float_slots.start:
            floats[float_slots] = np.concatenate([a.ravel() for a, k in pairs if k == "f"])
        if integer_slots.stop > integer_slots.start:
            integers = integers.copy()
            integers[integer_slots] = np.concatenate([a.ravel() for a, k in pairs if k != "f"])
        return integers


def _lookahead(gamma) -> float:
    """A chain's lookahead, checked without NumPy: a finite real number >= 0."""
    try:
        if isinstance(gamma, str | bytes):
            raise TypeError
        number = float(gamma)
    except (TypeError, ValueError):
        raise ValueError(f"gamma must be a real number >= 0, got {gamma!r}") from None
    if not (math.isfinite(number) and number >= 0):
        raise ValueError(f"gamma must be a real number >= 0, got {gamma!r}")
    return number


def _size(shape) -> int:
    return int(np.prod(shape))


def _structure(tree) -> tuple:
    # Tree definitions of two dataclasses with the same fields compare equal; hashes differ.
    treedef = jax.tree.structure(tree)
    return treedef, hash(treedef)
