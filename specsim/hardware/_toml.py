"""Hardware TOML files: reading a user's entry strictly, writing a spec, where they live.

A hardware file holds one entry in datasheet units (the catalogue's keys, see
``specsim.hardware.FIELDS``), either at top level or as one ``[hardware."Name"]`` table
(the form ``specsim calibrate`` writes). ``base = "h100"`` starts from a catalogue
entry. Numbers are read as exact decimals, so a spec written by `save_hardware` reads
back bit for bit.

Plain Python (no JAX); `specsim.hardware.get` builds the `HardwareSpec`.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import re
import tempfile
import tomllib
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

from .. import _schema
from . import _catalog
from ._fields import (
    _SPELLINGS,
    DATASHEET_KEYS,
    FIELD_BY_NAME,
    FIELDS,
    METADATA_KEYS,
    datasheet_decimals,
    to_datasheet,
    to_si,
)

# Environment variable naming the folder of calibrated specs (default: `calibration_dir`).
HARDWARE_DIR_ENV = "SPECSIM_HARDWARE_DIR"
SCHEMA_VERSION = 1
# Keys a file may hold besides an entry's: its format version, and `base` (flat form).
_FILE_KEYS = ("schema_version", "hardware")
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def read_toml_entry(path: str | os.PathLike) -> tuple[dict[str, Any], str]:
    """Reads a hardware TOML file: ``(datasheet entry, display name)``.

    The display name is the ``[hardware."Name"]`` key, or the file's stem for a flat file.
    ``base`` is resolved (the catalogue entry, then the file's keys over it); numbers are
    ``Decimal`` (exactly as written). A fitted roofline sharpness stored by older versions
    under ``[hardware."Name".calibration]`` is read as the entry's ``roofline_sharpness``.
    Keys are checked by ``HardwareSpec.from_datasheet``.

    Raises:
        ValueError: unreadable file, malformed TOML, not exactly one entry, a bad ``base``
            or ``schema_version``.
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f, parse_float=Decimal)
    except OSError as e:
        raise ValueError(f"cannot read hardware file {path!r}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"malformed TOML in {path!r}: {e}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a text file; valid: a UTF-8 TOML file") from None
    version = data.pop("schema_version", SCHEMA_VERSION)
    if version != SCHEMA_VERSION:
        raise ValueError(
            _schema.message(path, "schema_version", version, "unsupported", str(SCHEMA_VERSION))
        )
    name = os.path.splitext(os.path.basename(path))[0]
    if "hardware" in data:
        tables = data.pop("hardware")
        if not isinstance(tables, dict) or len(tables) != 1:
            raise ValueError(f'{path}: expected exactly one [hardware."Name"] table')
        if data:  # keys beside the table
            _schema.check_keys(data, _FILE_KEYS, path)
        ((name, data),) = tables.items()
        if not isinstance(data, dict):
            raise ValueError(f'{path}: hardware.{name} is not a table; valid: [hardware."Name"]')
    where = f"{path}: {name}"
    entry = dict(data)
    # The file's own keys, `base` among them (a typo names the closest valid one).
    _schema.check_keys(entry, (*DATASHEET_KEYS, *METADATA_KEYS, "base"), where, _SPELLINGS)
    # A fitted sharpness in the file's calibration table (earlier versions) overrides the
    # base's catalogue sharpness, not a sharpness the file gives itself.
    calibration = entry.get("calibration")
    sharpness = FIELD_BY_NAME["roofline_sharpness"].key
    if isinstance(calibration, Mapping) and sharpness in calibration and sharpness not in entry:
        entry[sharpness] = calibration[sharpness]
    base = entry.pop("base", None)
    if base is not None:
        entry = _over_base(_schema.text(where, "base", base), entry, where)
    return entry, name


def _over_base(base: str, entry: dict[str, Any], where: str) -> dict[str, Any]:
    """The catalogue entry ``base`` with ``entry``'s keys over it."""
    try:
        merged = _catalog.entry(base)
    except ValueError as e:
        raise ValueError(f"{where}: base: {e}") from None
    merged.pop("aliases", None)
    for field in FIELDS:  # a capacity in GiB replaces the base's capacity in GB
        if any(key in entry for key in field.keys):
            for key in field.keys:
                merged.pop(key, None)
    merged.update(entry)
    return merged


def datasheet(name_or_path: str | os.PathLike) -> dict[str, float]:
    """The datasheet numbers of a catalogue entry or a hardware TOML file, checked.

    Every field is filled in (defaults included; capacity as ``hbm_gb``), as
    `HardwareSpec.to_datasheet` gives them, without building a spec (no JAX).

    Raises:
        ValueError: an unknown name or a bad file (as ``specsim.hardware.get``).

    Examples:
        >>> datasheet("v5p")["hbm_gb"]  # 95 GiB
        102.00547328
    """
    text = os.fspath(name_or_path)
    if isinstance(name_or_path, os.PathLike) or text.endswith(".toml"):
        entry, name = read_toml_entry(text)
        where = f"{text}: {name}"
    else:
        where = _catalog.canonical_name(text)
        entry = _catalog.entry(where)
    return to_datasheet(to_si(entry, where))


def calibration_dir() -> Path:
    """Folder of calibrated specs: ``$SPECSIM_HARDWARE_DIR`` or ``~/.config/specsim/hardware``.

    Examples:
        >>> calibration_dir().name
        'hardware'
    """
    env = os.environ.get(HARDWARE_DIR_ENV)
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "specsim" / "hardware"


def check_hardware_name(name: str) -> str:
    """``name`` if it can name a ``[hardware."Name"]`` table (``ValueError`` otherwise).

    Examples:
        >>> check_hardware_name("my gpu")
        'my gpu'
    """
    if not isinstance(name, str) or not name.strip() or any(c in name for c in '"\\\n\r\t'):
        raise ValueError(
            _schema.message(
                "", "hardware name", name, "not usable", "a non-empty name without quotes"
            )
        )
    return name


def save_hardware(
    hardware: Any,
    path: str | os.PathLike,
    name: str = "local",
    *,
    source: str = "",
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Writes ``hardware`` as a ``[hardware."name"]`` TOML file (datasheet units).

    Every field is written (``roofline_sharpness = inf`` is the hard roofline), exactly:
    ``specsim.hardware.get(path)`` reads back the same spec, bit for bit. The file is
    written to a temporary file beside ``path`` and renamed, so it is never half-written.

    Args:
        hardware: the `HardwareSpec` (concrete scalar leaves).
        path: the file to write (folders are created).
        name: the display name (the table key).
        source: where the numbers come from (stored as ``source``).
        metadata: extra scalar facts (strings/numbers) stored under ``calibration``.

    Returns:
        The path written.

    Raises:
        ValueError: an invalid spec or name, or metadata that is not a table of scalars.

    Examples:
        >>> import tempfile, os
        >>> from specsim import hardware
        >>> path = save_hardware(hardware.get("h100"), os.path.join(tempfile.mkdtemp(), "x.toml"))
        >>> float(hardware.get(path).hbm_bytes_per_s) / 1e12
        3.35
    """
    check_hardware_name(name)
    hardware.validate(name)
    if any(_size(getattr(hardware, f.name)) != 1 for f in FIELDS):
        raise ValueError(f"{name}: save_hardware writes one chip; valid: a spec of scalar leaves")
    lines = [
        f"# {name}: written by specsim on {datetime.datetime.now().isoformat(timespec='seconds')}",
        "# Datasheet units; read back with specsim.hardware.get(path).",
        f"[hardware.{json.dumps(name)}]",
    ]
    decimals = datasheet_decimals(hardware)  # (a field following another, unset: left out)
    for field in (f for f in FIELDS if f.key in decimals):
        unit = f", {field.unit}" if field.unit else ""
        lines.append(f"{field.key} = {_toml_number(decimals[field.key])}  # {field.label}{unit}")
    if source:
        lines.append(f"source = {json.dumps(str(source))}")
    if metadata:
        lines += ["", f"[hardware.{json.dumps(name)}.calibration]"]
        saved = to_datasheet(hardware)
        for key, value in metadata.items():
            if key in saved and value is not None and float(value) == saved[key]:
                continue  # a field of the spec, saved with it
            if key in METADATA_KEYS or key in saved or not _BARE_KEY.match(str(key)):
                raise ValueError(
                    _schema.message(
                        name,
                        "metadata key",
                        key,
                        "reserved or not a bare key",
                        "letters, digits, _ and -, not a field of the spec",
                    )
                )
            if value is not None:
                lines.append(f"{key} = {_toml_scalar(value)}")
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomically(path, "\n".join(lines) + "\n")
    return path


def _size(value) -> int:
    shape = getattr(value, "shape", ())
    return math.prod(shape)


def _write_atomically(path: Path, text: str) -> None:
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def _toml_number(value: Decimal) -> str:
    """A TOML float for an exact decimal (``inf``, ``3.35``, ``4.0``, ``1.5e-07``)."""
    if value.is_infinite():
        return "inf" if value > 0 else "-inf"
    if value == 0:
        return "0.0"
    text = str(value).lower()
    return text if any(c in text for c in ".e") else f"{text}.0"


def _toml_scalar(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int) or (hasattr(value, "dtype") and value.dtype.kind in "iu"):
        return str(int(value))
    if isinstance(value, float | Decimal) or hasattr(value, "dtype"):
        value = float(value)
        return repr(value) if math.isfinite(value) else json.dumps(str(value))
    return json.dumps(str(value))
