"""Which field of a log line is which: the mapping used by log import.

The default log format names its fields ``stream``, ``type``, ``data``, ``id``,
``occurred_at``, ``recorded_at`` and ``metadata``. Production logs rarely do;
a ``LogMapping`` renames them, and a stream template such as
``"meter-{meter_id}"`` builds the stream name from other fields.
"""

from __future__ import annotations

import string
import tomllib
from pathlib import Path
from typing import Any, Literal

import msgspec

from replay._errors import ReplayError

TIME_UNITS: dict[str, int] = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000}


class LogError(ReplayError, ValueError):
    """A log, mapping or output path cannot be used at all (not one bad line: the whole input)."""


class LogMapping(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Field names of a log, and how to build the stream name.

    Each attribute names the source field holding that part of the event.
    ``stream_template`` (e.g. ``"meter-{meter_id}"``) builds the stream from
    fields of the line, looked up first at the top level, then inside ``data``;
    when set, the ``stream`` field is not read. ``time_unit`` says what integer
    times count (ns, us, ms or s); RFC 3339 strings are always exact.
    """

    stream: str = "stream"
    type: str = "type"
    data: str = "data"
    id: str = "id"
    occurred_at: str = "occurred_at"
    recorded_at: str = "recorded_at"
    metadata: str = "metadata"
    stream_template: str | None = None
    time_unit: Literal["ns", "us", "ms", "s"] = "ns"

    def __post_init__(self) -> None:
        for field in ("stream", "type", "data", "id", "occurred_at", "recorded_at", "metadata"):
            value = getattr(self, field)
            if not value or not value.isprintable():
                raise LogError(f"mapping: field name for {field!r} must be printable text, got {value!r}")
        if self.stream_template is not None:
            template_fields(self.stream_template)

    def required(self) -> list[str]:
        """Source fields every line must have."""
        names = [self.type, self.data]
        return names if self.stream_template else [self.stream, *names]


DEFAULT_MAPPING = LogMapping()


def template_fields(template: str) -> list[tuple[str, str | None]]:
    """The template as (literal text, field name or None) pairs; refuses anything but plain names.

    Attribute and index lookups (``{x.__class__}``, ``{x[0]}``), conversions and
    format specs are refused: a template only ever concatenates field values.
    """
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as e:
        raise LogError(f"mapping: stream template {template!r} is malformed: {e}") from e
    pairs: list[tuple[str, str | None]] = []
    for literal, name, spec, conversion in parts:
        if name is not None:
            if not name.isidentifier() or spec or conversion:
                raise LogError(
                    f"mapping: stream template {template!r}: {{{name}}} must be a plain field "
                    "name such as {meter_id} (no '.', '[', '!' or ':')"
                )
        pairs.append((literal, name))
    if not any(name for _, name in pairs):
        raise LogError(f"mapping: stream template {template!r} names no field; use e.g. 'meter-{{meter_id}}'")
    return pairs


def render_template(pairs: list[tuple[str, str | None]], top: dict, data: Any) -> str:
    """The stream name for one line; raises ``ValueError`` naming a missing or unusable field."""
    out = []
    for literal, name in pairs:
        out.append(literal)
        if name is None:
            continue
        value = top.get(name)
        if value is None and isinstance(data, dict):
            value = data.get(name)
        if value is None:
            raise ValueError(f"stream template needs field {name!r}, which the line does not have")
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise ValueError(f"stream template field {name!r} must be text or an integer, got {type(value).__name__}")
        out.append(str(value))
    return "".join(out)


def load_mapping(source: str | Path | dict | LogMapping | None) -> LogMapping:
    """A mapping from a JSON or TOML file, a dict, or the default; raises ``LogError`` if unusable."""
    if source is None:
        return DEFAULT_MAPPING
    if isinstance(source, LogMapping):
        return source
    if isinstance(source, dict):
        return _convert(source, "mapping")
    path = Path(source)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise LogError(f"mapping file {str(path)!r}: {e.strerror or e}") from e
    try:
        if path.suffix.lower() == ".toml":
            values = tomllib.loads(raw.decode("utf-8"))
        else:
            values = msgspec.json.decode(raw)
    except RecursionError:
        raise LogError(f"mapping file {str(path)!r} is nested too deeply to read") from None
    except (ValueError, msgspec.DecodeError) as e:
        raise LogError(f"mapping file {str(path)!r} is not valid {path.suffix or 'JSON'}: {e}") from e
    if not isinstance(values, dict):
        raise LogError(f"mapping file {str(path)!r} must hold an object/table of field names")
    return _convert(values, f"mapping file {str(path)!r}")


def _convert(values: dict, where: str) -> LogMapping:
    try:
        return msgspec.convert(values, LogMapping)
    except msgspec.ValidationError as e:
        known = ", ".join(LogMapping.__struct_fields__)
        raise LogError(f"{where}: {e} (known keys: {known})") from e
