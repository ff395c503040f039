"""Can a setup be served at all? Tensor-parallel splits, draft placement, vocabularies, memory.

Serving engines refuse setups specsim could otherwise price: a tensor-parallel degree that
does not split the attention heads, a draft on more chips than the engine allows, a draft
whose tokens the target cannot read. These rules are checked here for concrete single
configurations (a ``ValueError`` naming the rule), and as a per-point code for grids
(`feasibility_code`, traced), where infeasible points are marked rather than refused.

The rules (vLLM, ``vllm/model_executor/layers/linear.py`` ``QKVParallelLinear`` and
``vllm/config/speculative.py``; TensorRT-LLM and SGLang run a draft on the target's
tensor-parallel group, a subset of the same choice):

* tensor parallelism ``tp`` must divide the attention heads;
* key/value heads: ``tp`` must divide them, or, when ``tp`` exceeds them, they must divide
  ``tp`` and each is *replicated* on ``tp / n_kv_heads`` chips (so each chip holds one
  KV head: the KV cache per chip is then ``1 / n_kv_heads`` of the total, not ``1 / tp``);
* the draft's tensor parallelism must be 1 or the target's, and obey the two rules above
  for the draft's heads;
* target and draft must share a vocabulary (the same tokenizer), unless the user says
  they share a tokenizer whose embedding tables are padded to different sizes;
* ``tp`` must not exceed the chips the interconnect joins (the hardware's
  ``interconnect_domain_chips``: an NVLink node or rack, a TPU pod, a PCIe host): beyond
  it the all-reduces would cross a scale-out network, which specsim does not price.
"""

from __future__ import annotations

import math

import jax.numpy as jnp

from ._numerics import concrete

__all__ = [
    "FEASIBILITY_NAMES",
    "check_domain",
    "check_draft_placement",
    "check_draft_split",
    "check_parallelism",
    "check_target_split",
    "check_vocabulary",
    "domain_problem",
    "feasibility_code",
    "reason",
    "tp_problem",
    "valid_tp",
]

# Per-point codes of `feasibility_code` (index into this tuple); new codes are appended, so
# a code's number never changes (the order checked is `feasibility_code`'s).
FEASIBILITY_NAMES = (
    "ok",
    "tp-heads",  # tp does not divide the target's attention heads
    "tp-kv-heads",  # ... nor fit its key/value heads (divide them, or be divided by them)
    "draft-tp",  # the draft's tp is neither 1 nor the target's
    "draft-tp-heads",  # the draft's tp does not divide the draft's heads
    "draft-tp-kv-heads",  # ... nor fit the draft's key/value heads
    "vocab",  # target and draft vocabularies differ
    "memory",  # weights and KV caches exceed one chip's memory
    "tp-domain",  # tp exceeds the chips the interconnect joins (checked after tp-kv-heads)
)

_REASONS = {
    "tp-heads": "tensor parallelism does not divide the attention heads",
    "tp-kv-heads": "tensor parallelism neither divides the key/value heads nor is a multiple "
    "of them (replication)",
    "draft-tp": "the draft's tensor parallelism is neither 1 nor the target's",
    "draft-tp-heads": "the draft's tensor parallelism does not divide its attention heads",
    "draft-tp-kv-heads": "the draft's tensor parallelism neither divides its key/value heads "
    "nor is a multiple of them",
    "vocab": "target and draft vocabularies differ",
    "memory": "weights and KV caches exceed one chip's memory",
    "tp-domain": "tensor parallelism exceeds the chips the interconnect joins (a scale-out "
    "network is not modelled)",
}


def reason(code: str) -> str:
    """A sentence for a code of `FEASIBILITY_NAMES` (an unknown code is returned as is).

    Examples:
        >>> reason("tp-heads")
        'tensor parallelism does not divide the attention heads'
    """
    return _REASONS.get(code, code)


def _whole(value) -> float | None:
    """A concrete scalar's value, or ``None`` when traced or batched."""
    array = concrete(value)
    if array is None or array.size != 1:
        return None
    return float(array.reshape(()))


def tp_problem(n_heads: float, n_kv_heads: float, tp: float) -> str | None:
    """Why ``tp`` cannot split these heads (``None`` if it can).

    Examples:
        >>> tp_problem(32, 8, 3)
        'does not divide the 32 attention heads'
        >>> tp_problem(32, 8, 16) is None  # 8 KV heads, each replicated on 2 chips
        True
        >>> tp_problem(32, 8, 2.5)
        'not a whole number'
    """
    if tp != math.floor(tp):
        return "not a whole number"
    heads, kv, tp = round(n_heads), round(n_kv_heads), round(tp)
    if heads % tp:
        return f"does not divide the {heads} attention heads"
    if tp < kv and kv % tp:
        return f"does not divide the {kv} key/value heads"
    if tp >= kv and tp % kv:
        return (
            f"exceeds the {kv} key/value heads without being a multiple of them "
            "(each would be replicated on tp / n_kv_heads chips)"
        )
    return None


def valid_tp(n_heads: float, n_kv_heads: float, limit: int = 1024) -> list[int]:
    """The tensor-parallel degrees (up to ``limit``) that split these heads.

    Examples:
        >>> valid_tp(32, 8)
        [1, 2, 4, 8, 16, 32]
    """
    return [t for t in range(1, limit + 1) if tp_problem(n_heads, n_kv_heads, t) is None]


def _model_problem(model, tp) -> tuple[str, str] | None:
    """``(problem, valid choices)`` of splitting a concrete ``model`` over ``tp`` chips."""
    values = [_whole(v) for v in (model.n_heads, model.n_kv_heads, tp)]
    if any(v is None for v in values):
        return None  # traced or batched: marked per point instead (feasibility_code)
    heads, kv, tp = values
    if heads != math.floor(heads) or kv != math.floor(kv):
        return None  # a continuous relaxation (the optimiser's drafts): no split to check
    problem = tp_problem(heads, kv, tp)
    if problem is None:
        return None
    choices = ", ".join(map(str, valid_tp(heads, kv)))
    return problem, f"{choices} (the divisors of the heads that fit the key/value heads)"


def check_target_split(target, tp, name: str = "tp") -> None:
    """Refuses a concrete ``tp`` that cannot split the target's heads (traced: skipped)."""
    problem = _model_problem(target, tp)
    if problem is not None:
        raise ValueError(f"{name} {_show(tp)}: {problem[0]} of the target; valid: {problem[1]}")


def check_draft_placement(tp, draft_tp, name: str = "draft_tp") -> None:
    """Refuses a draft on neither 1 chip nor the target's ``tp`` chips (traced: skipped)."""
    t, d = _whole(tp), _whole(draft_tp)
    if t is not None and d is not None and d not in (1.0, t):
        raise ValueError(
            f"{name} {_show(draft_tp)}: a draft runs on 1 chip or on the target's "
            f"{_show(tp)} (vLLM, TensorRT-LLM, SGLang); valid: "
            + ", ".join(_show(v) for v in dict.fromkeys((1.0, t)))
        )


def domain_problem(hardware, tp) -> str | None:
    """Why ``tp`` chips are too many for the hardware's interconnect (``None`` if they are
    not, or either is traced).

    Examples:
        >>> from specsim import hardware
        >>> print(domain_problem(hardware.get("h100-nvl"), 4.0)[:32])
        exceeds the 2 chips the hardware
        >>> domain_problem(hardware.get("h100-nvl"), 2.0) is None
        True
    """
    t, domain = _whole(tp), _whole(hardware.domain_chips())
    if t is None or domain is None or t <= domain:
        return None
    return (
        f"exceeds the {_show(domain)} chips the hardware's interconnect joins "
        "(interconnect_domain_chips: one NVLink node or rack, TPU pod or PCIe host); tensor "
        "parallelism across a scale-out network is not modelled"
    )


def check_domain(hardware, tp, name: str = "tp") -> None:
    """Refuses a concrete ``tp`` beyond the hardware's scale-up domain (traced: skipped).

    Examples:
        >>> from specsim import hardware
        >>> check_domain(hardware.get("h100"), 16.0)
        Traceback (most recent call last):
        ...
        ValueError: tp 16: exceeds the 8 chips the hardware's interconnect joins ...
    """
    problem = domain_problem(hardware, tp)
    if problem is not None:
        domain = _show(hardware.domain_chips())
        raise ValueError(f"{name} {_show(tp)}: {problem}; valid: 1 to {domain}")


def check_draft_split(draft, draft_tp, name: str = "draft_tp", *, tp=None) -> None:
    """Refuses a concrete ``draft_tp`` that cannot split the draft's heads; with the
    target's ``tp``, the valid choices named are those the placement rule allows too (1
    chip or the target's ``tp``)."""
    problem = _model_problem(draft, draft_tp)
    if problem is None:
        return
    valid = problem[1]
    t = None if tp is None else _whole(tp)
    if t is not None:
        splits = valid_tp(_whole(draft.n_heads), _whole(draft.n_kv_heads))
        choices = [_show(v) for v in dict.fromkeys((1.0, t)) if v in splits]
        valid = ", ".join(choices)
        if t != 1:
            valid += f" (1 chip or the target's {_show(t)}, splitting its heads)"
    raise ValueError(f"{name} {_show(draft_tp)}: {problem[0]} of the draft; valid: {valid}")


def check_parallelism(
    target, draft, tp, draft_tp, *, names=("tp", "draft_tp"), hardware=None
) -> None:
    """The placement rules for a concrete setup (``ValueError``; traced leaves are skipped).

    Args:
        target: the target ``TransformerSpec``.
        draft: the draft ``TransformerSpec``, or ``None`` when only the target is placed.
        tp: the target's tensor-parallel degree.
        draft_tp: the draft's tensor-parallel degree.
        names: how ``tp`` and ``draft_tp`` are named in messages (``--tp`` on the CLI).
        hardware: the chip (`HardwareSpec`), or ``None`` to leave its domain unchecked.

    Raises:
        ValueError: ``tp`` does not split the target's heads or exceeds the chips the
            hardware's interconnect joins; ``draft_tp`` is neither 1 nor ``tp``, or does
            not split the draft's heads.
    """
    check_target_split(target, tp, names[0])
    check_draft_placement(tp, draft_tp, names[1])
    if hardware is not None:
        check_domain(hardware, tp, names[0])
    if draft is not None:
        check_draft_split(draft, draft_tp, names[1], tp=tp)


def check_vocabulary(target, draft, *, shared_tokenizer: bool = False, hint: str = "") -> None:
    """Refuses a draft whose vocabulary differs from the target's (concrete specs only).

    Args:
        target, draft: ``TransformerSpec`` s.
        shared_tokenizer: the user says both use one tokenizer (embedding tables padded to
            different sizes, as Qwen2.5's 151,936 and 152,064 rows).
        hint: how to say so, for the message (``"shared_tokenizer=True"``).

    Examples:
        >>> from specsim import models
        >>> check_vocabulary(models.get("llama-3-8b"), models.get("llama-68m"))
        Traceback (most recent call last):
        ...
        ValueError: draft vocabulary 32000: differs from the target's 128256, ...
    """
    if shared_tokenizer:
        return
    t, d = _whole(target.vocab), _whole(draft.vocab)
    if t is None or d is None or t == d:
        return
    raise ValueError(
        f"draft vocabulary {d:.0f}: differs from the target's {t:.0f}, so the target cannot "
        f"verify the draft's tokens; valid: a draft with the target's tokenizer, or "
        f"{hint or 'shared_tokenizer=True'} if both use one tokenizer"
    )


def _show(value) -> str:
    v = _whole(value)
    return f"{v:g}" if v is not None else str(value)


def feasibility_code(
    target, draft, tp, draft_tp, fits, *, shared_vocab=False, domain_chips=math.inf
):
    """The first broken rule of each point, as an index into `FEASIBILITY_NAMES` (traced).

    Works on traced and batched leaves (for sweeps); 0 means feasible. ``shared_vocab``
    (a bool, possibly traced): vocabularies of different sizes share one tokenizer.
    ``domain_chips``: the hardware's ``interconnect_domain_chips`` (possibly traced).
    """
    tp, draft_tp = jnp.asarray(tp), jnp.asarray(draft_tp)

    def splits(heads, kv, t):
        whole = t == jnp.floor(t)
        kv_ok = jnp.where(t < kv, jnp.mod(kv, t) == 0, jnp.mod(t, kv) == 0)
        return whole & (jnp.mod(heads, t) == 0), kv_ok

    heads_ok, kv_ok = splits(target.n_heads, target.n_kv_heads, tp)
    draft_heads_ok, draft_kv_ok = splits(draft.n_heads, draft.n_kv_heads, draft_tp)
    # In the order checked (the target's tp first); a code is its name's index, so codes
    # added later keep the older ones' numbers.
    checks = {
        "tp-heads": heads_ok,
        "tp-kv-heads": kv_ok,
        "tp-domain": tp <= domain_chips,
        "draft-tp": (draft_tp == 1) | (draft_tp == tp),
        "draft-tp-heads": draft_heads_ok,
        "draft-tp-kv-heads": draft_kv_ok,
        "vocab": (target.vocab == draft.vocab) | jnp.asarray(shared_vocab, bool),
        "memory": jnp.asarray(fits, bool),
    }
    shape = jnp.broadcast_shapes(*(jnp.shape(c) for c in checks.values()))
    code = jnp.zeros(shape, jnp.int8)
    for name, ok in reversed(checks.items()):  # the first failing check wins
        code = jnp.where(ok, code, jnp.int8(FEASIBILITY_NAMES.index(name)))
    return code
