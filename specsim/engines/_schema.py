"""Engine configuration schemas (``schemas/*.toml``), release lookup and config checks.

Each schema file copies, as data, what one serving engine accepts at each named release:
the keys specsim writes, their types and ranges, the cross-key rules, and the source
files and release artifacts they were read from. `check` tests an emitted configuration
against it; `resolve_version` maps a user's ``--engine-version`` to the schema entry whose
release range holds it.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from collections.abc import Mapping
from typing import Any

from .._registry import load_package_toml
from ._plan import is_placeholder

__all__ = ["ENGINES", "EngineVersion", "check", "engine_name", "resolve_version", "versions"]

# Engine names as the CLI and the API take them, and their schema files.
ENGINES = ("vllm", "sglang", "tensorrt-llm")
_FILES = {
    "vllm": "schemas/vllm.toml",
    "sglang": "schemas/sglang.toml",
    "tensorrt-llm": "schemas/tensorrt_llm.toml",
}
_RELEASE = re.compile(r"^v?(\d+)\.(\d+)(?:\.(\d+))?(?:rc(\d+))?(?:\.post(\d+))?$")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")


def engine_name(name: str) -> str:
    """The canonical engine name: ``"vllm"``, ``"sglang"`` or ``"tensorrt-llm"``.

    Examples:
        >>> engine_name("TensorRT_LLM"), engine_name("vLLM")
        ('tensorrt-llm', 'vllm')
    """
    key = re.sub(r"[^a-z]", "", str(name).lower())
    for engine in ENGINES:
        if key == re.sub(r"[^a-z]", "", engine):
            return engine
    if key in ("trtllm", "trt"):
        return "tensorrt-llm"
    raise ValueError(f"unknown serving engine {name!r}; valid: {', '.join(ENGINES)}")


def release_key(version: str) -> tuple[int, ...]:
    """Sort key of a release string: ``1.3.0rc27 < 1.3.0 < 1.3.0.post1``.

    Examples:
        >>> release_key("1.3.0rc27") < release_key("1.3.0") < release_key("1.3.0.post1")
        True
    """
    match = _RELEASE.match(str(version).strip())
    if match is None:
        raise ValueError(f"release {version!r}: expected MAJOR.MINOR[.PATCH][rcN][.postN]")
    major, minor, patch, rc, post = match.groups()
    final = (1, 0) if rc is None else (0, int(rc))
    return (int(major), int(minor), int(patch or 0), *final, int(post or 0))


@dataclasses.dataclass(frozen=True)
class EngineVersion:
    """One named release of an engine's schema.

    Attributes:
        engine: ``"vllm"``, ``"sglang"`` or ``"tensorrt-llm"``.
        engine_display: the engine's name in prose (``"TensorRT-LLM"``).
        name: the release the keys were read from (``"0.34.0"``).
        min: the oldest release the entry covers.
        below: the first release it no longer covers.
        checked: releases whose source was compared.
        artifact: what was read (wheel and commit, or repository and pull requests).
        schedule: how the lookahead per batch size is expressed: ``"ranges"``,
            ``"static"``, ``"slots"``, ``"lower_bounds"`` or ``"upper_bounds"``.
        sources: source files and the classes or functions in them.
        rules: the cross-key checks that apply.
        sections: ``{section: {key: spec}}`` (``speculative_config``, ``cli``, ...).
        extra: other fields of the entry (``adaptive_min_steps``, ``decoding_types``).
    """

    engine: str
    engine_display: str
    name: str
    min: str
    below: str
    checked: tuple[str, ...]
    artifact: str
    schedule: str
    sources: tuple[str, ...]
    rules: tuple[str, ...]
    sections: Mapping[str, Mapping[str, Mapping[str, Any]]]
    extra: Mapping[str, Any]

    @property
    def label(self) -> str:
        """``"vLLM 0.34.0"``."""
        return f"{self.engine_display} {self.name}"

    @property
    def span(self) -> str:
        """The releases covered, in words (``"0.33.0 to before 0.35.0"``)."""
        return f"{self.min} to before {self.below}"


@functools.cache
def _load(engine: str) -> tuple[EngineVersion, ...]:
    raw = load_package_toml("specsim.engines", _FILES[engine])
    known = {
        "name", "min", "below", "checked", "artifact", "schedule", "sources", "rules",
    }  # fmt: skip
    out = []
    for entry in raw["version"]:
        sections = {k: v for k, v in entry.items() if k not in known and isinstance(v, dict)}
        extra = {k: v for k, v in entry.items() if k not in known and not isinstance(v, dict)}
        out.append(
            EngineVersion(
                engine=engine,
                engine_display=raw["name"],
                name=entry["name"],
                min=entry["min"],
                below=entry["below"],
                checked=tuple(entry["checked"]),
                artifact=entry["artifact"],
                schedule=entry["schedule"],
                sources=tuple(entry["sources"]),
                rules=tuple(entry["rules"]),
                sections=sections,
                extra=extra,
            )
        )
    return tuple(sorted(out, key=lambda v: release_key(v.name), reverse=True))


def versions(engine: str) -> tuple[EngineVersion, ...]:
    """The named releases of ``engine``, newest first.

    Examples:
        >>> from specsim import engines
        >>> [v.name for v in engines.versions("vllm")]
        ['0.34.0', '0.32.0', '0.23.0']
    """
    return _load(engine_name(engine))


def resolve_version(engine: str, version: str | None = None) -> EngineVersion:
    """The schema entry covering ``version`` of ``engine`` (the newest if ``None``).

    Raises:
        ValueError: an unknown engine, a malformed release, or one no entry covers (the
            message lists the covered ranges).

    Examples:
        >>> from specsim import engines
        >>> engines.resolve_version("vllm", "0.30.1").name
        '0.32.0'
    """
    entries = versions(engine)
    if version is None:
        return entries[0]
    key = release_key(version)
    for entry in entries:
        if release_key(entry.min) <= key < release_key(entry.below):
            return entry
    spans = "; ".join(f"{e.span} (read from {e.name})" for e in entries)
    raise ValueError(
        f"{entries[0].engine_display} {version}: no schema for this release (its settings "
        f"were not checked against its source); valid: {spans}"
    )


def _type_error(spec: Mapping[str, Any], value: Any) -> str | None:
    kind = spec["type"]
    if kind == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind == "bool":
        ok = isinstance(value, bool)
    elif kind in ("str", "path"):
        ok = isinstance(value, str) and bool(value)
    elif kind == "flag":
        ok = value is True
    elif kind == "json":
        try:
            ok = isinstance(json.loads(value), dict)
        except (TypeError, ValueError):
            ok = False
    elif kind == "model_id":
        if is_placeholder(value):
            return f"is a placeholder, not a model id: {value}"
        ok = isinstance(value, str) and (
            bool(_HUB_ID.match(value)) or value.startswith(("/", "./", "../", "~"))
        )
        if not ok:
            return f"{value!r} is neither a Hub id (org/name) nor a path"
    elif kind == "ranges":
        ok = isinstance(value, list) and all(
            isinstance(e, list | tuple)
            and len(e) == 3
            and all(isinstance(x, int) and not isinstance(x, bool) for x in e)
            for e in value
        )
    elif kind == "int_map":
        ok = isinstance(value, dict) and all(
            isinstance(k, int) and isinstance(v, int) and not isinstance(v, bool)
            for k, v in value.items()
        )
    else:  # a schema file naming a type this module does not know is a bug here
        raise ValueError(f"schema type {kind!r} unknown")
    if not ok:
        return f"{value!r} is not of type {kind}"
    for bound, test in (("gt", lambda v, b: v > b), ("ge", lambda v, b: v >= b)):
        if bound in spec and not test(value, spec[bound]):
            return f"{value!r} must be {'>' if bound == 'gt' else '>='} {spec[bound]}"
    if "choices" in spec and value not in spec["choices"]:
        return f"{value!r} is not one of {', '.join(map(str, spec['choices']))}"
    return None


def check(version: EngineVersion, config: Mapping[str, Mapping[str, Any]]) -> None:
    """Checks an emitted configuration against ``version``'s schema.

    Args:
        version: an `EngineVersion` (`resolve_version`).
        config: ``{section: {key: value}}`` as emitters return it in
            `EngineFiles.config`: ``speculative_config`` (the engine's speculative
            config object), ``cli`` (command-line flags: ``{flag: value}``, ``True`` for a
            bare flag), ``llm_args`` and ``adaptive_config`` (SGLang's JSON).

    Raises:
        ValueError: the first key that is unknown, of the wrong type or out of range, or a
            broken cross-key rule; the message names the release and what is valid.

    Examples:
        >>> from specsim import engines
        >>> v = engines.resolve_version("vllm", "0.34.0")
        >>> engines.check(v, {"speculative_config": {"disable_by_batch_size": 4}})
        Traceback (most recent call last):
        ...
        ValueError: vLLM 0.34.0: speculative_config key 'disable_by_batch_size' is unknown ...
    """
    for section, values in config.items():
        if section == "adaptive_config":
            continue
        allowed = version.sections.get(section)
        if allowed is None:
            raise ValueError(f"{version.label}: section {section!r} is not part of its schema")
        for key, value in values.items():
            if key not in allowed:
                raise ValueError(
                    f"{version.label}: {section} key {key!r} is unknown (the engine rejects "
                    f"unknown keys); valid: {', '.join(allowed)}"
                )
            problem = _type_error(allowed[key], value)
            if problem is not None:
                raise ValueError(f"{version.label}: {section} {key}: {problem}")
        for key, spec in allowed.items():
            if spec.get("required") and key not in values:
                raise ValueError(f"{version.label}: {section} needs {key!r}")
    for rule in version.rules:
        problem = _RULES[rule](version, config)
        if problem is not None:
            raise ValueError(f"{version.label}: {problem}")


# ---- cross-key rules, each re-stating one check of the engine's own source -------------


def _spec(config) -> Mapping[str, Any]:
    return config.get("speculative_config", {})


def _ranges_start_at_one(version, config):
    # vllm/v1/spec_decode/dynamic/utils.py: "The first batch-size range must start at 1".
    ranges = _spec(config).get("num_speculative_tokens_per_batch_size")
    if ranges and min(e[0] for e in ranges) != 1:
        return "num_speculative_tokens_per_batch_size: the first range must start at batch 1"
    return None


def _ranges_sorted_disjoint(version, config):
    # Same file: positive bounds, start <= end, K >= 0, non-overlapping once sorted.
    ranges = _spec(config).get("num_speculative_tokens_per_batch_size")
    if ranges is None:
        return None
    if not ranges:
        return "num_speculative_tokens_per_batch_size must not be empty"
    end = 0
    for start, stop, k in sorted(ranges):
        if start < 1 or stop < start or k < 0:
            return f"num_speculative_tokens_per_batch_size entry {[start, stop, k]} is invalid"
        if start <= end:
            return "num_speculative_tokens_per_batch_size ranges overlap"
        end = stop
    return None


def _ranges_bounded(version, config):
    # build_dynamic_sd_schedule_lookup clamps K to num_speculative_tokens: a larger K in
    # the table would be silently cut, so specsim treats it as an error.
    spec = _spec(config)
    ranges, most = (
        spec.get("num_speculative_tokens_per_batch_size"),
        spec.get("num_speculative_tokens"),
    )
    if ranges and most is not None and max(e[2] for e in ranges) > most:
        return "num_speculative_tokens_per_batch_size: a K above num_speculative_tokens"
    return None


def _draft_tp_one_or_tp(version, config):
    # SpeculativeConfig._verify_and_get_draft_tp: "cannot be other value than 1 or target
    # model tensor_parallel_size".
    draft = _spec(config).get("draft_tensor_parallel_size")
    tp = config.get("cli", {}).get("--tensor-parallel-size", 1)
    if draft is not None and draft not in (1, tp):
        return f"draft_tensor_parallel_size {draft} must be 1 or the target's TP ({tp})"
    return None


def _no_tp_in_spec(version, config):
    # SpeculativeConfig._verify_args: "'tensor_parallel_size' is not a valid argument".
    if "tensor_parallel_size" in _spec(config):
        return "speculative_config takes draft_tensor_parallel_size, not tensor_parallel_size"
    return None


def _slots(config) -> dict[str, Any]:
    return {k: v for k, v in config.get("adaptive_config", {}).items() if k.isdigit()}


def _slot_keys(version, config):
    # adaptive_spec_params._load_adaptive_config: digit-string keys are batch sizes and
    # at least one is needed.
    if not config.get("adaptive_config"):
        return None
    slots = _slots(config)
    if not slots or min(int(k) for k in slots) < 1:
        return "adaptive config needs batch-size keys >= 1 ('1', '17', ...)"
    if min(int(k) for k in slots) != 1:
        return "adaptive config: the smallest batch-size key must be '1' (smaller batches use it)"
    return None


def _slot_steps(version, config):
    # candidate_steps: a non-empty list of ints >= 0 (0.5.14+) or >= 1 (0.5.13).
    low = version.extra.get("adaptive_min_steps", 1)
    for key, slot in _slots(config).items():
        steps = slot.get("candidate_steps") if isinstance(slot, dict) else None
        if (
            not isinstance(steps, list)
            or not steps
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= low for s in steps)
        ):
            return f"adaptive config slot {key}: candidate_steps must be a list of ints >= {low}"
    return None


def _num_steps_among(version, config):
    # _init_adaptive_speculative_params: "--speculative-num-steps=... is not in the
    # adaptive config candidate_steps".
    slots = _slots(config)
    cli = config.get("cli", {})
    if not slots or "--speculative-num-steps" not in cli:
        return None
    union = {s for slot in slots.values() for s in slot["candidate_steps"]}
    if cli["--speculative-num-steps"] not in union:
        return f"--speculative-num-steps must be one of the candidate steps {sorted(union)}"
    return None


def _adaptive_eagle_chain(version, config):
    # adaptive_unsupported_reason: only EAGLE/EAGLE3 and speculative_eagle_topk 1.
    cli = config.get("cli", {})
    if not cli.get("--speculative-adaptive"):
        return None
    if cli.get("--speculative-algorithm") not in ("EAGLE", "EAGLE3"):
        return "--speculative-adaptive runs only with EAGLE or EAGLE3"
    if cli.get("--speculative-eagle-topk", 1) != 1:
        return "--speculative-adaptive needs --speculative-eagle-topk 1"
    if "--speculative-adaptive-config" not in cli:
        return "--speculative-adaptive without --speculative-adaptive-config uses SGLang's defaults"
    return None


def _chain_tokens(version, config):
    # _handle_eagle_family: with topk 1, num_draft_tokens is set to num_steps + 1.
    cli = config.get("cli", {})
    if cli.get("--speculative-algorithm") not in ("EAGLE", "EAGLE3", "NEXTN", "STANDALONE"):
        return None
    steps, tokens = cli.get("--speculative-num-steps"), cli.get("--speculative-num-draft-tokens")
    if cli.get("--speculative-eagle-topk", 1) == 1 and None not in (steps, tokens):
        if tokens != steps + 1:
            return "with --speculative-eagle-topk 1, --speculative-num-draft-tokens is steps + 1"
    return None


def _schedule(config) -> dict[int, int] | None:
    return _spec(config).get("draft_len_schedule")


def _schedule_has_one(version, config):
    # llm_args.py (1.2): "draft_len_schedule must include batch_size=1".
    schedule = _schedule(config)
    if schedule is not None and 1 not in schedule:
        return "draft_len_schedule must include batch size 1 (keys are lower bounds)"
    return None


def _schedule_smallest(version, config):
    # llm_args.py: schedule[smallest key] (1.2: schedule[1]) must equal max_draft_len.
    schedule, most = _schedule(config), _spec(config).get("max_draft_len")
    if schedule and most is not None and schedule[min(schedule)] != most:
        return "draft_len_schedule: the smallest batch-size key must map to max_draft_len"
    return None


def _schedule_bounded(version, config):
    # llm_args.py: "all draft lengths must be <= max_draft_len"; "draft length must be >= 0".
    schedule, most = _schedule(config), _spec(config).get("max_draft_len")
    if schedule and any(v < 0 or (most is not None and v > most) for v in schedule.values()):
        return "draft_len_schedule: every draft length must be in 0 .. max_draft_len"
    return None


def _schedule_keys(version, config):
    # llm_args.py: "batch size threshold must be >= 1".
    schedule = _schedule(config)
    if schedule and min(schedule) < 1:
        return "draft_len_schedule: batch-size keys must be >= 1"
    return None


_RULES = {
    "ranges_start_at_one": _ranges_start_at_one,
    "ranges_sorted_disjoint": _ranges_sorted_disjoint,
    "ranges_bounded_by_num_speculative_tokens": _ranges_bounded,
    "draft_tp_one_or_tp": _draft_tp_one_or_tp,
    "no_tp_in_speculative_config": _no_tp_in_spec,
    "slots_keys_are_batch_sizes": _slot_keys,
    "slots_steps_in_range": _slot_steps,
    "num_steps_among_candidates": _num_steps_among,
    "adaptive_needs_eagle_chain": _adaptive_eagle_chain,
    "chain_draft_tokens_is_steps_plus_one": _chain_tokens,
    "schedule_has_batch_one": _schedule_has_one,
    "schedule_smallest_key_is_max_draft_len": _schedule_smallest,
    "schedule_values_bounded": _schedule_bounded,
    "schedule_keys_positive": _schedule_keys,
}
