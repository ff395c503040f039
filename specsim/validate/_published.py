"""Published validation: measurements from papers and repositories, predicted unfitted."""

from __future__ import annotations

import os
import tomllib
from importlib import resources
from pathlib import Path

import pandas as pd

from .. import hardware, models
from .._acceptance import ConstantAcceptance
from .._throughput import throughput
from .._workload import Workload
from ..models import TransformerSpec

__all__ = ["load_published", "predict_published", "validate_published"]


def load_published(path: str | os.PathLike | None = None) -> tuple[list[dict], dict[str, dict]]:
    """The published measurements and the architectures they refer to.

    Args:
        path: a TOML file in the schema of ``specsim/data/published.toml`` (default: that
            file).

    Returns:
        ``(measurements, architectures)``.

    Raises:
        ValueError: unreadable or malformed file, or entries missing required keys.

    Examples:
        >>> rows, _ = load_published()
        >>> any(r["id"].startswith("gpt-fast") for r in rows)
        True
    """
    try:
        if path is None:
            text = resources.files("specsim").joinpath("data/published.toml").read_text()
            where = "specsim/data/published.toml"
        else:
            where = os.fspath(path)
            text = Path(where).read_text()
        data = tomllib.loads(text)
    except OSError as e:
        raise ValueError(f"cannot read published measurements {path!r}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"malformed TOML in {where!r}: {e}") from None
    rows = data.get("measurement", [])
    if not isinstance(rows, list) or not rows:
        raise ValueError(f"{where}: no [[measurement]] entries")
    required = ("id", "quantity", "value", "hardware", "target", "batch", "source")
    for row in rows:
        missing = [k for k in required if k not in row]
        if missing:
            raise ValueError(f"{where}: entry {row.get('id', '?')!r} lacks {missing}")
        if row["quantity"] not in ("baseline_tokens_per_s", "speedup"):
            raise ValueError(f"{where}: {row['id']!r}: unknown quantity {row['quantity']!r}")
        if row["quantity"] == "speedup" and not {"draft", "gamma", "alpha"} <= set(row):
            raise ValueError(f"{where}: {row['id']!r}: a speedup needs draft, gamma and alpha")
    return rows, dict(data.get("architecture", {}))


def _published_spec(name: str, architectures: dict, weight_dtype: str, weight_bytes=None):
    if name in architectures:
        arch = architectures[name]
        spec = TransformerSpec.create(
            n_layers=arch["n_layers"],
            d_model=arch["d_model"],
            n_heads=arch["n_heads"],
            n_kv_heads=arch.get("n_kv_heads"),
            head_dim=arch.get("head_dim"),
            d_ff=arch["d_ff"],
            vocab=arch["vocab"],
            gated_mlp=arch.get("gated_mlp", True),
            tied_embeddings=arch.get("tied_embeddings", False),
        )
    else:
        spec = models.get(name)
    if weight_dtype != "bf16":
        spec = spec.with_dtypes(weight_dtype)
    if weight_bytes is not None:
        spec = spec.replace(weight_bytes=float(weight_bytes))
    return spec


def predict_published(row: dict, architectures: dict) -> dict[str, float]:
    """specsim's prediction for one published measurement (catalogue defaults).

    Returns:
        ``{"predicted": value, "predicted_cost_ratio": c}`` (c only for speedups).
    """
    dtype = row.get("weight_dtype", "bf16")
    target = _published_spec(row["target"], architectures, dtype, row.get("weight_bytes"))
    chip = hardware.get(row["hardware"])
    workload = Workload.create(
        batch=row["batch"],
        prompt_tokens=row.get("prompt_tokens", 128),
        generate_tokens=row.get("generate_tokens", 128),
    )
    if row["quantity"] == "baseline_tokens_per_s":
        report = throughput(target, target, chip, workload, 0.0, ConstantAcceptance.create(0.5))
        return {"predicted": float(report.baseline_tokens_per_s)}
    draft = _published_spec(row["draft"], architectures, dtype, row.get("weight_bytes"))
    report = throughput(
        target,
        draft,
        chip,
        workload,
        float(row["gamma"]),
        ConstantAcceptance.create(float(row["alpha"])),
    )
    return {"predicted": float(report.speedup), "predicted_cost_ratio": float(report.cost_ratio)}


def validate_published(path: str | os.PathLike | None = None):
    """Predicts every published measurement with default efficiencies.

    Returns:
        DataFrame with ``id``, ``quantity``, ``kind``, ``published``, ``predicted``,
        ``error_pct``, cost ratios where given, ``source`` and ``assumed``.
    """
    rows, architectures = load_published(path)
    out = []
    for row in rows:
        prediction = predict_published(row, architectures)
        out.append(
            {
                "id": row["id"],
                "quantity": row["quantity"],
                "kind": row.get("kind", "measured"),
                "hardware": row["hardware"],
                "published": float(row["value"]),
                "predicted": prediction["predicted"],
                "error_pct": 100.0 * (prediction["predicted"] / float(row["value"]) - 1.0),
                "published_cost_ratio": row.get("published_cost_ratio", float("nan")),
                "predicted_cost_ratio": prediction.get("predicted_cost_ratio", float("nan")),
                "source": row["source"],
                "assumed": row.get("assumed", ""),
            }
        )
    return pd.DataFrame(out)
