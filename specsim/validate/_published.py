"""Published validation: measurements from papers and repositories, predicted unfitted."""

from __future__ import annotations

import math
import os
import tomllib
from importlib import resources
from pathlib import Path

import pandas as pd

from .. import _schema, hardware, models, runtime, speculators
from .._acceptance import TreeAcceptance
from .._deployment import Deployment
from .._measured_acceptance import acceptance_from_tau
from .._saturation import saturated_throughput, trtllm_bench_limits
from .._throughput import predict
from .._tree import TokenTree
from .._workload import Workload
from ..models import TransformerSpec
from ..models._spec import BYTES_PER_ELEMENT, COMPUTE_DTYPES
from ._metrics import mape

__all__ = [
    "ENGINES",
    "PUBLISHED_QUANTITIES",
    "load_published",
    "predict_published",
    "published_mape_by_group",
    "validate_published",
]

PUBLISHED_QUANTITIES = (
    "baseline_tokens_per_s",
    "speedup",
    "saturated_output_tokens_per_s",
    "static_batch_output_tokens_per_s",
    "first_token_latency_s",
)
# Engines whose batching limits specsim can derive for saturated-throughput rows.
ENGINES = ("trtllm-bench",)


def load_published(path: str | os.PathLike | None = None) -> tuple[list[dict], dict[str, dict]]:
    """The published measurements and the architectures they refer to.

    Args:
        path: a TOML file in the schema of ``specsim/data/published.toml`` (default: that
            file).

    Returns:
        ``(measurements, architectures)``.

    Every key is checked (unknown keys name the closest valid one; types; ranges: a
    published value is > 0, alpha in (0, 1), batch >= 1; names of chips and models).

    Raises:
        ValueError: unreadable or malformed file, or an entry that breaks the schema, in
            one line: ``<file>: <id>: <key> <value>: <why>; valid: <choices>``.

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
    except UnicodeDecodeError:
        raise ValueError(f"{where}: not a text file; valid: a UTF-8 TOML file") from None
    _schema.check_keys(data, ("schema_version", "architecture", "measurement"), where)
    if data.get("schema_version", 1) != 1:
        version = data["schema_version"]
        raise ValueError(_schema.message(where, "schema_version", version, "unsupported", "1"))
    architectures = data.get("architecture", {})
    if not isinstance(architectures, dict):
        raise ValueError(f'{where}: architecture: not a table; valid: [architecture."Name"]')
    for name, arch in architectures.items():
        _schema.check_entry(arch, _ARCHITECTURE_KEYS, f'{where}: architecture."{name}"')
    rows = data.get("measurement", [])
    if not isinstance(rows, list) or not rows:
        raise ValueError(f"{where}: no [[measurement]] entries")
    seen: set[str] = set()
    for i, row in enumerate(rows):
        entry = f"{where}: measurement {i + 1}"
        if isinstance(row, dict) and isinstance(row.get("id"), str):
            entry = f"{where}: {row['id']}"
        _schema.check_entry(row, _MEASUREMENT_KEYS, entry)
        if row["id"] in seen:
            raise ValueError(_schema.message(entry, "id", row["id"], "repeated", "unique ids"))
        seen.add(row["id"])
        speculative = ("method", "medusa_heads", "draft", "gamma", "tree", "alpha", "tau")
        if row["quantity"] == "speedup":
            _check_speedup_row(entry, row)
            _refuse_extra(
                entry, row, ("per_chip",), "a speedup is a ratio", "per_chip only with tokens/s"
            )
        else:
            if row["quantity"] == "first_token_latency_s":
                _check_latency_row(entry, row)
            _refuse_extra(
                entry,
                row,
                (*speculative, "published_cost_ratio"),
                "not used by plain decoding",
                "method, medusa_heads, draft, gamma, tree, alpha, tau and published_cost_ratio "
                "only with a speedup",
            )
        if row["quantity"] != "saturated_output_tokens_per_s":
            _refuse_extra(
                entry,
                row,
                ("engine", "kv_memory_fraction"),
                "only for a saturated engine",
                "engine and kv_memory_fraction only with saturated_output_tokens_per_s",
            )
        try:
            hardware.canonical_name(row["hardware"])
            if "runtime" in row:
                runtime.canonical_name(row["runtime"])
            for role in ("target", "draft"):
                if role in row and row[role] not in architectures:
                    models.info(row[role])
        except ValueError as e:
            raise ValueError(f"{entry}: {e}") from None
    return rows, dict(architectures)


# The schema of a [[measurement]] and of an [architecture."Name"] (see published.toml).
_MEASUREMENT_KEYS = {
    "id": _schema.Key("string", required=True),
    "quantity": _schema.Key("string", choices=PUBLISHED_QUANTITIES, required=True),
    "group": _schema.Key("string"),
    "value": _schema.Key("number", _schema.POSITIVE, required=True),
    "kind": _schema.Key("string", choices=("measured", "expected")),
    "hardware": _schema.Key("string", required=True),
    "target": _schema.Key("string", required=True),
    "draft": _schema.Key("string"),
    "batch": _schema.Key("number", _schema.Rule(lambda v: v >= 1, ">= 1"), required=True),
    "prompt_tokens": _schema.Key("number", _schema.NON_NEGATIVE),
    "generate_tokens": _schema.Key("number", _schema.Rule(lambda v: v >= 1, ">= 1")),
    "weight_dtype": _schema.Key("string", choices=tuple(sorted(BYTES_PER_ELEMENT))),
    "weight_bytes": _schema.Key("number", _schema.POSITIVE),
    "kv_dtype": _schema.Key("string", choices=tuple(sorted(BYTES_PER_ELEMENT))),
    "compute_dtype": _schema.Key("string", choices=COMPUTE_DTYPES),
    "tp": _schema.Key("number", _schema.Rule(lambda v: v >= 1, ">= 1")),
    "runtime": _schema.Key("string"),
    "engine": _schema.Key("string", choices=ENGINES),
    "kv_memory_fraction": _schema.Key("number", _schema.FRACTION),
    "per_chip": _schema.Key("bool"),
    "method": _schema.Key("string", choices=speculators.METHODS),
    "medusa_heads": _schema.Key("number", _schema.Rule(lambda v: v >= 1, ">= 1")),
    "gamma": _schema.Key("number", _schema.NON_NEGATIVE),
    "tree": _schema.Key("string"),
    "alpha": _schema.Key("number", _schema.Rule(lambda v: 0 < v < 1, "in (0, 1)")),
    "tau": _schema.Key("number", _schema.Rule(lambda v: v >= 1, ">= 1")),
    "published_cost_ratio": _schema.Key("number", _schema.POSITIVE),
    "source": _schema.Key("string", required=True),
    "assumed": _schema.Key("string"),
    "note": _schema.Key("string"),
}
_ARCHITECTURE_KEYS = {
    "n_layers": _schema.Key("number", _schema.POSITIVE, required=True),
    "d_model": _schema.Key("number", _schema.POSITIVE, required=True),
    "n_heads": _schema.Key("number", _schema.POSITIVE, required=True),
    "n_kv_heads": _schema.Key("number", _schema.POSITIVE),
    "head_dim": _schema.Key("number", _schema.POSITIVE),
    "d_ff": _schema.Key("number", _schema.POSITIVE, required=True),
    "vocab": _schema.Key("number", _schema.POSITIVE, required=True),
    "gated_mlp": _schema.Key("bool"),
    "tied_embeddings": _schema.Key("bool"),
}


def _published_spec(name: str, architectures: dict, row: dict):
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
    weight_dtype = row.get("weight_dtype", "bf16")
    if weight_dtype != "bf16" or "kv_dtype" in row or "compute_dtype" in row:
        spec = spec.with_dtypes(weight_dtype, row.get("kv_dtype"), row.get("compute_dtype"))
    if row.get("weight_bytes") is not None:
        spec = spec.replace(weight_bytes=float(row["weight_bytes"]))
    return spec


def predict_published(row: dict, architectures: dict) -> dict[str, float]:
    """specsim's prediction for one published measurement (catalogue defaults).

    The row's conditions become a `Deployment` (target in the row's dtypes, chip, tensor
    parallelism, runtime profile, workload); nothing is fitted to the row. A tokens/s row
    with ``per_chip = true`` is predicted per chip (the total divided by ``tp``); a
    ``first_token_latency_s`` row is the prompt's prefill pass, s.

    Returns:
        ``{"predicted": value, "predicted_cost_ratio": c}`` (c only for speedups).
    """
    target = _published_spec(row["target"], architectures, row)
    workload = Workload.create(
        batch=row["batch"],
        prompt_tokens=row.get("prompt_tokens", 128),
        generate_tokens=row.get("generate_tokens", 128),
    )
    acceptance = 0.5
    if row["quantity"] == "speedup":
        speculator, shape, acceptance = _speculation(row, architectures, target)
    deployment = Deployment.create(
        target,
        hardware.get(row["hardware"]),
        workload,
        acceptance,
        tp=float(row.get("tp", 1)),
        runtime=row.get("runtime", "default"),
    )
    if row["quantity"] == "speedup":
        report = predict(deployment, speculator, shape)
        cost_ratio = float(report.cost_ratio)
        return {"predicted": float(report.speedup), "predicted_cost_ratio": cost_ratio}
    if row["quantity"] == "saturated_output_tokens_per_s":
        limits = trtllm_bench_limits(deployment, float(row.get("kv_memory_fraction", 0.9)))
        tokens_per_s = saturated_throughput(deployment, limits).output_tokens_per_s
    else:
        report = predict(deployment, target, 0.0)
        if row["quantity"] == "first_token_latency_s":
            # The first token is sampled from the prompts' prefill pass (the target's alone).
            return {"predicted": float(report.prefill_s)}
        if row["quantity"] == "baseline_tokens_per_s":
            tokens_per_s = report.baseline_tokens_per_s
        else:  # static batch: every prompt prefilled, then generate_tokens decode steps
            output_tokens = workload.batch * workload.generate_tokens
            tokens_per_s = output_tokens / report.baseline_request_latency_s
    chips = float(row.get("tp", 1)) if row.get("per_chip", False) else 1.0
    return {"predicted": float(tokens_per_s) / chips}


def published_mape_by_group(published) -> dict[str, float]:
    """MAPE of each group of published rows, %, in the order the groups first appear.

    Examples:
        >>> import pandas as pd
        >>> frame = pd.DataFrame({"group": ["a", "a", "b"], "predicted": [1.1, 0.9, 2.0],
        ...                       "published": [1.0, 1.0, 2.0]})
        >>> {k: round(v, 6) for k, v in published_mape_by_group(frame).items()}
        {'a': 10.0, 'b': 0.0}
    """
    return {
        group: mape(rows["predicted"], rows["published"])
        for group, rows in published.groupby("group", sort=False)
    }


def validate_published(path: str | os.PathLike | None = None):
    """Predicts every published measurement with default efficiencies.

    Returns:
        DataFrame with ``id``, ``group``, ``quantity``, ``kind``, ``published``, ``predicted``,
        ``error_pct``, cost ratios where given, ``source`` and ``assumed``.
    """
    rows, architectures = load_published(path)
    out = []
    for row in rows:
        try:
            prediction = predict_published(row, architectures)
        except ValueError as e:  # a condition the schema cannot see (a Medusa's heads)
            raise ValueError(f"{path or 'specsim/data/published.toml'}: {row['id']}: {e}") from None
        out.append(
            {
                "id": row["id"],
                "group": row.get("group", row["quantity"]),
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


def _check_speedup_row(entry, row) -> None:
    """A speedup names its method (default a draft model), its chain or tree, and its
    acceptance: ``draft`` exactly with ``method = "draft"``, one of ``gamma`` and ``tree``
    (a preset, for methods that draft trees), one of ``alpha`` and ``tau``."""
    method = row.get("method", "draft")
    if method == "draft" and "draft" not in row:
        raise ValueError(
            f"{entry}: missing required key 'draft' (of a speedup) for method 'draft', the default"
        )
    if method != "draft":
        _refuse_extra(
            entry, row, ("draft",), f"method {method!r} has no draft model", "method = 'draft'"
        )
    if method != "medusa":
        _refuse_extra(
            entry, row, ("medusa_heads",), f"method {method!r} has no heads", "method = 'medusa'"
        )
    pairs = (
        ("gamma", "tree", "a token tree"),
        ("alpha", "tau", "a measured mean accepted length"),
    )
    for key, other, what in pairs:
        if key not in row and other not in row:
            raise ValueError(
                f"{entry}: missing required key {key!r} (of a speedup), or {other!r} for {what}"
            )
        if key in row and other in row:
            raise ValueError(
                f"{entry}: {key} {row[key]!r} and {other} {row[other]!r}: both given; valid: "
                "one of them"
            )
    if "tree" in row:
        if method not in speculators.TREE_METHODS:
            raise ValueError(
                _schema.message(
                    entry, "tree", row["tree"], f"method {method!r} drafts a chain", "gamma"
                )
            )
        try:
            TokenTree.preset(row["tree"])
        except ValueError as e:
            raise ValueError(f"{entry}: tree: {e}") from None
    if "tau" in row:
        depth = _depth(_shape(row))
        try:
            acceptance_from_tau(row["tau"], depth)
        except ValueError as e:
            raise ValueError(f"{entry}: {e}") from None


def _shape(row):
    """A speedup row's chain length (a float) or its preset `TokenTree`."""
    return TokenTree.preset(row["tree"]) if "tree" in row else float(row["gamma"])


def _depth(shape) -> int:
    """Draft positions of a chain (``ceil(gamma)``, at least 1) or a tree's depth."""
    if isinstance(shape, TokenTree):
        return shape.max_depth
    return max(1, math.ceil(shape))


def _speculation(row: dict, architectures: dict, target):
    """``(speculator, shape, acceptance)`` of a speedup row: the method's speculator (a
    draft model in the row's dtypes for ``"draft"``), its chain or tree, and the row's
    constant alpha, or the acceptance reproducing its measured tau on that chain or tree
    (one top-1 rate for every depth, ``AcceptanceStats.tree``)."""
    method = row.get("method", "draft")
    options = {}
    if method == "draft":
        options["draft"] = _published_spec(row["draft"], architectures, row)
    if "medusa_heads" in row:
        options["n_heads"] = float(row["medusa_heads"])
    speculator = speculators.create(method, target, **options)
    shape = _shape(row)
    if "alpha" in row:
        if isinstance(shape, TokenTree):  # one top-1 rate at every depth, as the CLI's
            rates = [float(row["alpha"])] * shape.max_depth
            return speculator, shape, TreeAcceptance.from_top1(rates)
        return speculator, shape, float(row["alpha"])
    stats = acceptance_from_tau(row["tau"], _depth(shape))
    acceptance = stats.tree(shape) if isinstance(shape, TokenTree) else stats.constant()
    return speculator, shape, acceptance


def _check_latency_row(entry, row) -> None:
    """A first-token latency times the prefill of ``prompt_tokens`` (required), per request."""
    if "prompt_tokens" not in row:
        raise ValueError(
            f"{entry}: missing required key 'prompt_tokens' (of a first-token latency)"
        )
    if row.get("generate_tokens", 1) != 1:
        raise ValueError(
            _schema.message(
                entry,
                "generate_tokens",
                row["generate_tokens"],
                "a first-token latency generates one token",
                "1, or no generate_tokens",
            )
        )
    _refuse_extra(
        entry, row, ("per_chip",), "a latency is one request's", "per_chip only with tokens/s"
    )


def _refuse_extra(entry, row, keys, why: str, valid: str) -> None:
    """A ``ValueError`` naming the first of ``keys`` that ``row`` has but should not."""
    extra = [k for k in keys if k in row]
    if extra:
        raise ValueError(_schema.message(entry, extra[0], row[extra[0]], why, valid))
