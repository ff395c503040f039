"""Finding a model by what a user types: a catalogue name, a config file, a folder or a
Hugging Face Hub id already in the local cache.

Nothing here touches the network. A Hub id (``"org/name"``, optionally ``"org/name@rev"``)
is looked up where ``huggingface_hub`` keeps downloads: ``$HF_HUB_CACHE``, else
``$HUGGINGFACE_HUB_CACHE``, else ``$HF_HOME/hub``, else ``$XDG_CACHE_HOME/huggingface/hub``,
else ``~/.cache/huggingface/hub``; a repository lives in ``models--org--name/`` with
``refs/<branch>`` holding a commit hash and ``snapshots/<hash>/config.json`` the file.

References:
    huggingface_hub documentation, "Understand caching" (cache layout, ``refs/`` and
    ``snapshots/``) and "Environment variables" (``HF_HOME``, ``HF_HUB_CACHE``).
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Literal

from . import _catalog
from ._hf import from_hf_config
from ._spec import TransformerSpec

__all__ = ["ModelSource", "hub_cache_dir", "load", "locate"]

# Hub repository ids: "name" or "org/name" of letters, digits, '-', '_' and '.'.
_HUB_ID = re.compile(r"^(?:[A-Za-z0-9][\w.-]*/)?[A-Za-z0-9][\w.-]*(?:@[\w./-]+)?$")
_REPO_FOLDER = re.compile(r"models--(.+)$")


@dataclasses.dataclass(frozen=True)
class ModelSource:
    """Where a model reference points.

    Attributes:
        reference: the text (or path) as given.
        kind: ``"catalogue"``, ``"file"`` (a ``config.json`` or a folder holding one) or
            ``"hub"`` (a Hub id found in the local Hugging Face cache).
        label: the name to show: the catalogue's canonical name, the Hub id, or the
            folder that holds the file.
        config_path: the ``config.json`` read (``None`` for a catalogue entry).
        catalogue_name: the catalogue's canonical name, or ``None``.
    """

    reference: str
    kind: Literal["catalogue", "file", "hub"]
    label: str
    config_path: str | None = None
    catalogue_name: str | None = None


def hub_cache_dir() -> str:
    """The Hugging Face Hub cache folder, from the environment as ``huggingface_hub`` reads it.

    Examples:
        >>> import os
        >>> from unittest import mock
        >>> with mock.patch.dict(os.environ, {"HF_HUB_CACHE": "/tmp/hub"}):
        ...     hub_cache_dir()
        '/tmp/hub'
    """
    for variable in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(variable):
            return os.path.expanduser(os.environ[variable])
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache"), "huggingface"
    )
    return os.path.join(os.path.expanduser(home), "hub")


def locate(model: str | os.PathLike) -> ModelSource:
    """Finds what ``model`` names, in this order: an existing ``config.json`` file or a
    folder holding one, a catalogue name or alias, a Hub id in the local Hugging Face cache.

    Args:
        model: ``"llama-3-8b"``, ``"path/to/config.json"``, ``"path/to/model-folder"``,
            ``"meta-llama/Llama-3.1-8B"`` or ``"meta-llama/Llama-3.1-8B@<branch or commit>"``.

    Raises:
        ValueError: none of them matches (the message says where it looked and how to
            fetch a Hub config), or a folder or cached repository has no ``config.json``.

    Examples:
        >>> from specsim import models
        >>> models.locate("llama-3-8b").label
        'Llama-3-8B'
    """
    if not isinstance(model, str | os.PathLike):
        raise ValueError(f"model must be a name or a path, got {type(model).__name__}")
    text = os.fspath(model)
    if os.path.isfile(text):
        return ModelSource(text, "file", _file_label(text), config_path=text)
    if os.path.isdir(text):
        config = os.path.join(text, "config.json")
        if os.path.isfile(config):
            return ModelSource(text, "file", _file_label(config), config_path=config)
        if isinstance(model, os.PathLike) or os.sep in text.rstrip(os.sep):
            raise ValueError(f"model folder {text!r} holds no config.json")
    if isinstance(model, os.PathLike) or text.endswith(".json"):
        raise ValueError(f"cannot read model config {text!r}: no such file")
    try:
        canonical = _catalog.canonical_name(text)
    except ValueError as unknown:
        hub = _hub_config(text) if _HUB_ID.match(text) else None
        if hub is not None:
            return hub
        repo = text.split("@")[0]
        if not _HUB_ID.match(text) or "/" not in repo:
            raise ValueError(
                f"{unknown}, or a config.json path, a model folder or a Hub id cached "
                "locally (org/name)"
            ) from None
        raise ValueError(
            f"model {text!r} is not in the catalogue, not a file, and not in the local Hugging "
            f"Face cache ({hub_cache_dir()}; set HF_HUB_CACHE or HF_HOME to look elsewhere); "
            f"fetch its config with `hf download {repo} config.json` or pass a config.json path"
        ) from None
    return ModelSource(text, "catalogue", canonical, catalogue_name=canonical)


def load(model: str | os.PathLike | TransformerSpec, **dtypes: str) -> TransformerSpec:
    """The ``TransformerSpec`` of a catalogue name, a config file or folder, or a cached
    Hub id (see `locate`).

    Args:
        model: the reference, or a ``TransformerSpec`` (returned as is, with ``dtypes``
            applied).
        **dtypes: storage-format overrides forwarded to ``TransformerSpec.create``
            (``weight_dtype``, ``kv_dtype``, ...); ``None`` values are ignored, so
            ``load(name, weight_dtype=None)`` is the checkpoint's own format.

    Raises:
        ValueError: see `locate` and ``from_hf_config``.

    Examples:
        >>> from specsim import models
        >>> float(models.load("llama-3-8b", weight_dtype="int4").weight_bytes)
        0.5
    """
    dtypes = {k: v for k, v in dtypes.items() if v is not None}
    if isinstance(model, TransformerSpec):
        return model.with_dtypes(**_with_dtypes_args(model, dtypes)) if dtypes else model
    source = locate(model)
    if source.kind == "catalogue":
        if "weight_dtype" in dtypes and "expert_weight_dtype" in _catalog.info(source.label):
            # As with a config file: a weight dtype given applies to the experts too.
            dtypes.setdefault("expert_weight_dtype", dtypes["weight_dtype"])
        return _catalog.get(source.catalogue_name, **dtypes)
    try:
        return from_hf_config(source.config_path, **dtypes)
    except ValueError as e:
        raise ValueError(f"{source.label}: {e}") from None


def _with_dtypes_args(spec: TransformerSpec, dtypes: dict[str, str]) -> dict[str, str]:
    unknown = set(dtypes) - {"weight_dtype", "kv_dtype", "compute_dtype", "expert_weight_dtype"}
    if unknown:
        raise ValueError(f"unknown dtype argument(s) {sorted(unknown)} for a TransformerSpec")
    if "weight_dtype" not in dtypes:  # keep the stored weight format
        from ._formats import BYTES_PER_ELEMENT

        same = [k for k, v in BYTES_PER_ELEMENT.items() if v == float(spec.weight_bytes)]
        dtypes = {"weight_dtype": same[0] if same else "bf16", **dtypes}
    return dtypes


def _file_label(config_path: str) -> str:
    """The folder holding ``config_path``; for a file inside the Hub cache, the repo id."""
    folder = os.path.dirname(os.path.abspath(config_path))
    parts = folder.split(os.sep)
    if len(parts) >= 3 and parts[-2] == "snapshots":
        match = _REPO_FOLDER.match(parts[-3])
        if match:
            return match.group(1).replace("--", "/")
    return os.path.basename(folder) or config_path


def _hub_config(reference: str) -> ModelSource | None:
    """The cached ``config.json`` of Hub id ``reference`` (``org/name[@revision]``), if any."""
    repo, _, revision = reference.partition("@")
    root = os.path.join(hub_cache_dir(), "models--" + repo.replace("/", "--"))
    snapshots = os.path.join(root, "snapshots")
    if not os.path.isdir(snapshots):
        return None
    commit = _commit(root, revision or "main")
    if commit is None and revision:
        available = sorted(os.listdir(snapshots))
        raise ValueError(
            f"revision {revision!r} of {repo!r} is not in the local Hugging Face cache "
            f"({root}); cached snapshots: {', '.join(available) or 'none'}"
        )
    if commit is None:  # no refs/main: the most recently fetched snapshot holding a config
        held = [
            (os.path.getmtime(os.path.join(snapshots, c, "config.json")), c)
            for c in os.listdir(snapshots)
            if os.path.isfile(os.path.join(snapshots, c, "config.json"))
        ]
        commit = max(held)[1] if held else None
    config = None if commit is None else os.path.join(snapshots, commit, "config.json")
    if config is None or not os.path.isfile(config):
        raise ValueError(
            f"the Hugging Face cache holds {repo!r} ({root}) but not its config.json; "
            f"fetch it with `hf download {repo} config.json`"
        )
    return ModelSource(reference, "hub", repo, config_path=config)


def _commit(root: str, revision: str) -> str | None:
    """The snapshot folder of ``revision``: a branch or tag in ``refs/``, or a commit hash."""
    ref = os.path.join(root, "refs", revision)
    if os.path.isfile(ref):
        with open(ref, encoding="utf-8") as f:
            return f.read().strip()
    if os.path.isdir(os.path.join(root, "snapshots", revision)):
        return revision
    return None
