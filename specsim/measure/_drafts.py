"""Drafts with meaningful, adjustable acceptance: layer-skipping (early-exit) drafts.

Choice: the draft is the target's own first ``k`` blocks followed by the target's
final norm and LM head (an early exit, as in self-speculative decoding / LayerSkip;
Zhang et al. 2023, Elhoushi et al. 2024). It needs no training, shares the
target's weights (no extra memory), and is priced by the cost model exactly as
what it is: the target's `TransformerSpec` with ``n_layers = k``.

With random weights the acceptance rate is set by two knobs of the target:

* ``logit_scale`` makes next-token distributions peaked (a trained LM is far from
  uniform; a random one with unit-variance logits is almost uniform, and two
  almost-uniform distributions overlap so much that any draft is "accepted");
* ``residual_scale`` sets how much each block changes the residual stream, hence
  how much the skipped blocks change the target's prediction.

More draft layers, a smaller ``residual_scale`` or a smaller ``logit_scale`` give a
higher acceptance rate; ``ACCEPTANCE_PRESETS`` lists knob settings that span alpha
from about 0.3 to 0.9 for the validation configurations (alpha is measured, never
assumed). Sampling temperature is a further knob (greedy acceptance differs from
sampled acceptance, as in Leviathan et al.'s Table 3).
"""

from __future__ import annotations

from ..models import TransformerSpec
from ._model import Model

__all__ = ["layer_skip_draft", "tiny_spec"]


def layer_skip_draft(target: Model, n_layers: int) -> Model:
    """The target's first ``n_layers`` blocks with its final norm and LM head.

    Args:
        target: the target network.
        n_layers: blocks kept, ``1 <= n_layers <= target.config.n_layers``.

    Returns:
        `Model` sharing the target's parameter arrays (no copy).

    Raises:
        ValueError: ``n_layers`` out of range.

    Examples:
        >>> from specsim.measure import build_model, tiny_spec
        >>> target = build_model(tiny_spec(n_layers=4))
        >>> draft = layer_skip_draft(target, 1)
        >>> float(draft.spec.n_layers), sorted(draft.params)[:2]
        (1.0, ['block_0', 'embedding'])
    """
    n_target = target.config.n_layers
    if not 1 <= int(n_layers) <= n_target:
        raise ValueError(f"draft n_layers must be in [1, {n_target}], got {n_layers}")
    keep = {f"block_{i}" for i in range(int(n_layers))}
    params = {
        name: value
        for name, value in target.params.items()
        if not name.startswith("block_") or name in keep
    }
    return Model(params=params, config=target.config.with_layers(n_layers))


def tiny_spec(
    n_layers: int = 2,
    d_model: int = 32,
    n_heads: int = 4,
    n_kv_heads: int = 2,
    d_ff: int = 64,
    vocab: int = 64,
    *,
    gated_mlp: bool = True,
    dtype: str = "fp32",
) -> TransformerSpec:
    """A small `TransformerSpec` for tests and CPU measurements (fp32 by default).

    Examples:
        >>> float(tiny_spec().parameter_count)
        22528.0
    """
    return TransformerSpec.create(
        n_layers=n_layers,
        d_model=d_model,
        n_heads=n_heads,
        n_kv_heads=n_kv_heads,
        d_ff=d_ff,
        vocab=vocab,
        gated_mlp=gated_mlp,
        weight_dtype=dtype,
        kv_dtype=dtype,
        activation_dtype=dtype,
        compute_dtype=dtype,
    )
