"""One parsed log line (a dict of fields) -> a validated ``NewEvent``, or a reason it is bad.

Rules, shared by JSON Lines, CSV and Parquet:

- ``data`` is a JSON object (or its text), a base64 string, or raw bytes (Parquet
  binary). Objects are stored as compact JSON; base64 and bytes as they are.
  Known payload types (``eventstore.payloads.payload_types()``) must decode into their struct.
- ``id``: a UUID is kept as it is (so exported logs re-import to the same ids);
  any other text or integer becomes ``uuid5(namespace, "id:" + text)``; without
  an id, ``uuid5`` over the event's stream, type, times, data and metadata.
  Either way importing the same line twice gives the same id.
- ``occurred_at``/``recorded_at``: integer (in the mapping's unit, default ns),
  digits in a string, an RFC 3339 string, or a timezone-aware datetime.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import re
import uuid
from itertools import repeat
from typing import Annotated, Any, Final, NamedTuple

import msgspec

from eventstore import InvalidEvent, Metadata, NewEvent
from eventstore.payloads import payload_decoder, payload_types

# The store's own name checks, applied before batching so that one hostile line
# is quarantined alone instead of failing the whole append batch.
from eventstore.validation import (
    MAX_DATA_BYTES,
    MAX_TYPE_BYTES,
    check_metadata,
    check_name,
    check_stream,
)

from ._mapping import TIME_UNITS, LogError, LogMapping, render_template, template_fields
from ._read import decode_json

NAMESPACE: Final = uuid.UUID("5b0a7d52-3f0e-5c43-9a51-6c6f67696d70")
_INT64_MAX: Final = 2**63 - 1
_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_RFC3339: Final = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})"
)
_ENCODE: Final = msgspec.json.Encoder()
_SORTED: Final = msgspec.json.Encoder(order="sorted")
_DECODE: Final = msgspec.json.Decoder()
_MISSING: Final = object()
_CACHE_LIMIT: Final = 100_000  # entries kept by each of the fast path's caches
_Ns = Annotated[int, msgspec.Meta(ge=-_INT64_MAX, le=_INT64_MAX)]  # a time in the int64 range (unit not applied)
_OBJECTS: Final = msgspec.json.Decoder(list[dict])
# A typed line's fields as a tuple, in the order ``_line_decoder`` declares them (the columns of a block).
_FIELDS: Final = msgspec.structs.astuple


class BadRecord(LogError):
    """This one line or row is unusable; the message says why."""


class LogEvent(NamedTuple):
    """A validated event from one line, with the source's recorded time if it had one."""

    event: NewEvent
    recorded_at: int | None


class TypedLines(NamedTuple):
    """A block of JSON lines taken whole by ``RecordConverter.convert_json_lines``: one list per field.

    ``recorded`` holds each line's own ``recorded_at`` (the source's, or None);
    the events' recorded times are stamped later, in file order.
    """

    ids: list[uuid.UUID]
    streams: list[str]
    types: list[str]
    data: list[bytes]
    occurred: list[int | None]
    recorded: list[int | None]
    metadata: list[Metadata | None]

    def new_events(self, recorded_at: list[int] | None = None) -> list[NewEvent]:
        """The lines' events, with ``recorded_at`` (stamped times) when given."""
        stamps = repeat(None) if recorded_at is None else recorded_at
        return list(map(NewEvent, self.types, self.data, self.ids, self.streams, self.occurred, self.metadata, stamps))

    def log_events(self) -> list[LogEvent]:
        """What ``convert_json`` gives for each line."""
        return list(map(LogEvent, self.new_events(), self.recorded))


class RecordConverter:
    """Turns field dicts into ``LogEvent`` under one mapping."""

    def __init__(self, mapping: LogMapping) -> None:
        self.mapping = mapping
        self._unit = TIME_UNITS[mapping.time_unit]
        self._template = template_fields(mapping.stream_template) if mapping.stream_template else None
        self._good_names: set[str] = set()  # stream names and types that passed the store's checks
        self._decoders: dict[str, Any] = {}  # event type -> payload decoder or None
        self._metadata: dict[bytes, Metadata] = {}  # canonical JSON of a metadata object -> checked Metadata
        self._payload_lists: dict[str, msgspec.json.Decoder | None] = {}  # event type -> decoder of a list of its payloads
        self._line = _line_decoder(mapping)

    def convert_json_lines(self, raws: list[bytes]) -> TypedLines | list[LogEvent | None]:
        """``convert_json`` of a block of JSON lines: the whole block at once (``TypedLines``) when it can be.

        The block is taken whole when every line is exactly msgspec's own
        encoding of its typed struct and every part of every line passes (see
        ``_convert_block``); its events (``TypedLines.log_events``) are the
        ones ``convert_json`` builds line by line. Any doubt about any line,
        and each line is tried alone: one result per line, as ``convert_json``.
        """
        return self._convert_block(raws) or [self.convert_json(raw) for raw in raws]

    def _convert_block(self, raws: list[bytes]) -> TypedLines | None:
        """Every line's fields, checked a block at a time in C (one ``map`` or one call per check), or None.

        The same checks as ``convert_json``, in bulk: each line decoded into
        its struct (no key unknown) with each key once and none null (the
        block re-encoded to its very bytes, else ``_keys_once`` summed over
        the block when it holds no backslash), names checked before, data objects in canonical
        form (one decode and re-encode of them all, as one JSON array), each
        event type's data decoded into its payload struct (one array per
        type), metadata checked before (by its raw JSON). Only when no time
        unit scales the times; None as soon as one check fails for one line.
        """
        if self._line is None or self._unit != 1 or not raws:
            return None
        decoder, encoder = self._line
        try:
            lines = list(map(decoder.decode, raws))
        except (msgspec.DecodeError, RecursionError, UnicodeDecodeError):
            return None
        # The struct's fields as columns: one transposition in C (0.69-0.96 us a line, was 1.15-1.35 with a map each).
        ids, streams, types, occurred, recorded, raw_data, raw_meta = map(list, zip(*map(_FIELDS, lines), strict=True))
        data, raw_metadata = list(map(bytes, raw_data)), list(map(bytes, raw_meta))
        joined = b",".join(raws)
        # Each key once and none null: every line exactly msgspec's encoding of its struct, checked with one
        # encode of the block (the items of an array are whole objects, so the arrays are equal only if each
        # line is; 0.42-0.67 us a line against 0.72-0.75 for counting colons), else, with no backslash, by the colons.
        if encoder.encode(lines) != b"[" + joined + b"]" and (
            b"\\" in joined or not _block_keys_once(joined, streams, types, occurred, recorded, data, raw_metadata)
        ):
            return None
        good = self._good_names
        if not (good.issuperset(types) and good.issuperset(streams)) and not all(
            self._learn_names(type_, stream) for type_, stream in set(zip(types, streams, strict=True))
            if type_ not in good or stream not in good
        ):  # each new pair once: the store's checks (regular expressions) ran for every line of the block
            return None
        if max(map(len, data)) > MAX_DATA_BYTES or not _canonical_objects(data) or not self._fit_payloads(types, data):
            return None
        metadata = self._block_metadata(raw_metadata)
        if metadata is None:
            return None
        return TypedLines(ids, streams, types, data, occurred, recorded, metadata)

    def _fit_payloads(self, types: list[str], data: list[bytes]) -> bool:
        """Whether each data fits its event type's payload struct: one decode per type of all its data."""
        for type_ in set(types):
            decoder = self._payload_lists.get(type_, _MISSING)
            if decoder is _MISSING:
                cls = payload_types().get(type_) if payload_decoder(type_) is not None else None
                decoder = self._payload_lists[type_] = None if cls is None else msgspec.json.Decoder(list[cls])
            if decoder is None:
                continue
            chosen = [d for d, t in zip(data, types, strict=True) if t == type_] if len(types) > 1 else data
            try:
                decoder.decode(b"[" + b",".join(chosen) + b"]")
            except (msgspec.DecodeError, UnicodeDecodeError):
                return False
        return True

    def _block_metadata(self, raws: list[bytes]) -> list[Metadata | None] | None:
        """The checked ``Metadata`` of each raw metadata object (None where a line has none), or None if one fails."""
        found = list(map(self._metadata.get, raws))  # a line without metadata has b"", never a key
        if found.count(None):
            for i, raw in enumerate(raws):
                if found[i] is None and raw:
                    metadata = self._raw_metadata(raw)
                    if metadata is None:
                        return None
                    found[i] = metadata
        return found

    def convert_json(self, raw: bytes) -> LogEvent | None:
        """``convert_fast`` straight from a JSON line's bytes, or None when the line needs the general path.

        Decodes the line into a typed struct, with ``data`` and ``metadata``
        kept as raw JSON, instead of into a dict. It only accepts a line
        without unknown, repeated or null keys (exactly msgspec's own
        encoding of the struct, the quick check; else see ``_keys_once``)
        whose data and metadata are each msgspec's own canonical encoding: for such a
        line the raw data bytes are the bytes ``convert_fast`` would encode,
        and decoding it into a dict could not have failed or found a repeated
        key. So the event is the one the general path builds; every other
        line, bad ones included, returns None and takes that path.
        """
        if self._line is None:
            return None
        decoder, encoder = self._line
        try:
            line = decoder.decode(raw)
        except (msgspec.DecodeError, RecursionError, UnicodeDecodeError):
            return None
        type_, stream, data = line.type, line.stream, bytes(line.data)
        if encoder.encode(line) != raw and not _keys_once(raw, line, data):
            return None
        if type_ not in self._good_names or stream not in self._good_names:
            if not self._learn_names(type_, stream):
                return None
        if len(data) > MAX_DATA_BYTES or not _canonical_object(data) or not self._fits_payload(type_, data):
            return None
        occurred_at, recorded_at = line.occurred_at, line.recorded_at  # in int64 range (the struct checks)
        if self._unit != 1:
            occurred_at = None if occurred_at is None else occurred_at * self._unit
            recorded_at = None if recorded_at is None else recorded_at * self._unit
            for ns in (occurred_at, recorded_at):
                if ns is not None and not -_INT64_MAX <= ns <= _INT64_MAX:
                    return None
        metadata = None
        if line.metadata:
            raw_metadata = bytes(line.metadata)
            metadata = self._metadata.get(raw_metadata) or self._raw_metadata(raw_metadata)
            if metadata is None:
                return None
        return LogEvent(NewEvent(type_, data, line.id, stream, occurred_at, metadata), recorded_at)

    def _raw_metadata(self, raw: bytes) -> Metadata | None:
        """The checked ``Metadata`` for a metadata object's raw JSON, when that JSON is canonical."""
        metadata = self._metadata.get(raw)  # keyed by canonical JSON: raw is its own key when canonical
        if metadata is not None:
            return metadata
        try:
            value = _DECODE.decode(raw)
        except (msgspec.DecodeError, RecursionError, UnicodeDecodeError):
            return None
        if type(value) is not dict or _ENCODE.encode(value) != raw:
            return None
        return self._checked_metadata(value)

    def convert_fast(self, fields: dict[str, Any]) -> LogEvent | None:
        """``convert`` for the common line, or None when the line needs ``convert`` itself.

        The common line has text stream and type that passed the store's
        checks before, an object as data, integer (or no) times, an object
        (or no) metadata, and a canonical UUID (or no) id. For such a line the
        event is exactly the one ``convert`` builds (same data bytes, id,
        times and metadata), at a fraction of the cost: names are checked
        once per distinct value, metadata once per distinct object. Anything
        else, every bad line included, returns None, so errors and their
        wording always come from ``convert``.
        """
        m = self.mapping
        if self._template is not None:
            return None
        type_, stream, data = fields.get(m.type), fields.get(m.stream), fields.get(m.data)
        good = self._good_names
        if type(type_) is not str or type(stream) is not str or type(data) is not dict:
            return None
        if type_ not in good or stream not in good:
            if not self._learn_names(type_, stream):
                return None
        encoded = _ENCODE.encode(data)
        if len(encoded) > MAX_DATA_BYTES or not self._fits_payload(type_, encoded):
            return None
        occurred_at, recorded_at = fields.get(m.occurred_at), fields.get(m.recorded_at)
        if (occurred_at is not None and type(occurred_at) is not int) or (
            recorded_at is not None and type(recorded_at) is not int
        ):
            return None
        if self._unit != 1:
            occurred_at = None if occurred_at is None else occurred_at * self._unit
            recorded_at = None if recorded_at is None else recorded_at * self._unit
        for ns in (occurred_at, recorded_at):
            if ns is not None and not -_INT64_MAX <= ns <= _INT64_MAX:
                return None
        raw_metadata = fields.get(m.metadata)
        metadata = _MISSING if raw_metadata is None else self._checked_metadata(raw_metadata)
        if metadata is None:
            return None
        event_id = _fast_uuid(fields.get(m.id))
        if event_id is None:
            if fields.get(m.id) is not None:
                return None
            event_id = content_id(stream, type_, occurred_at, encoded, raw_metadata)
        event = NewEvent(type_, encoded, event_id, stream, occurred_at, None if metadata is _MISSING else metadata)
        return LogEvent(event, recorded_at)

    def _learn_names(self, type_: str, stream: str) -> bool:
        """Whether ``type_`` and ``stream`` pass the store's checks (remembered when they do)."""
        try:
            check_name("event type", type_, MAX_TYPE_BYTES)
            check_stream(stream)
        except InvalidEvent:
            return False
        if len(self._good_names) >= _CACHE_LIMIT:
            self._good_names.clear()
        self._good_names.update((type_, stream))
        return True

    def _fits_payload(self, type_: str, data: bytes) -> bool:
        decoder = self._decoders.get(type_, _MISSING)
        if decoder is _MISSING:
            decoder = self._decoders[type_] = payload_decoder(type_)
        if decoder is None:
            return True
        try:
            decoder.decode(data)
        except (msgspec.DecodeError, UnicodeDecodeError):
            return False
        return True

    def _checked_metadata(self, raw: Any) -> Any:
        """The checked ``Metadata`` for a metadata object, shared by every line with the same one."""
        if type(raw) is not dict:
            return None
        key = _ENCODE.encode(raw)  # in the dict's own order: the stored record keeps that order
        metadata = self._metadata.get(key)
        if metadata is None:
            try:
                metadata = NewEvent("metadata", b"", NAMESPACE, metadata=raw).metadata  # as convert builds it
                check_metadata(metadata)  # type: ignore[arg-type]
            except (InvalidEvent, TypeError, ValueError, AttributeError):
                return None
            assert isinstance(metadata, Metadata)
            if len(self._metadata) >= _CACHE_LIMIT:
                self._metadata.clear()
            self._metadata[key] = metadata
        return metadata

    def convert(self, fields: dict[str, Any]) -> LogEvent:
        """A ``LogEvent`` for ``fields``; raises ``BadRecord`` naming the field and the problem."""
        m = self.mapping
        raw_data = fields.get(m.data)
        type_ = _text(fields, m.type, "type")
        _store_check(check_name, "event type", type_, MAX_TYPE_BYTES)
        data = encode_data(raw_data, m.data)
        stream = self._stream(fields, raw_data, data)
        check_payload(type_, data)
        occurred_at = parse_time(fields.get(m.occurred_at), m.occurred_at, self._unit)
        recorded_at = parse_time(fields.get(m.recorded_at), m.recorded_at, self._unit)
        metadata = parse_metadata(fields.get(m.metadata), m.metadata)
        source_id = parse_id(fields.get(m.id), m.id)
        event_id = source_id or content_id(stream, type_, occurred_at, data, metadata)
        try:
            event = NewEvent(type_, data, event_id, stream, occurred_at, metadata)
            check_metadata(event.metadata)  # type: ignore[arg-type]
        except InvalidEvent as e:
            raise BadRecord(f"field {m.metadata!r}: {e}") from e
        return LogEvent(event, recorded_at)

    def _stream(self, fields: dict[str, Any], raw_data: Any, data: bytes) -> str:
        if self._template is None:
            stream = _text(fields, self.mapping.stream, "stream")
        else:
            parsed = _DECODE.decode(data) if _is_json_text(raw_data) else raw_data
            try:
                stream = render_template(self._template, fields, parsed)
            except ValueError as e:
                raise BadRecord(str(e)) from e
        _store_check(check_stream, stream)
        return stream


def _line_decoder(mapping: LogMapping) -> tuple[msgspec.json.Decoder, msgspec.json.Encoder] | None:
    """A decoder of JSON lines into a typed struct under ``mapping`` (unknown fields refused), and its encoder.

    None when the mapping builds streams from a template or names one source
    field for two parts of the event (``convert_json`` then declines every line).
    """
    names = {"id": mapping.id, "stream": mapping.stream, "type": mapping.type, "occurred_at": mapping.occurred_at,
             "recorded_at": mapping.recorded_at, "data": mapping.data, "metadata": mapping.metadata}
    if mapping.stream_template is not None or len(set(names.values())) < len(names):
        return None
    line = msgspec.defstruct(
        "TypedLine",
        [("id", uuid.UUID), ("stream", str), ("type", str), ("occurred_at", _Ns | None, None),  # _FIELDS: this order
         ("recorded_at", _Ns | None, None), ("data", msgspec.Raw), ("metadata", msgspec.Raw, msgspec.Raw())],
        kw_only=True, forbid_unknown_fields=True, omit_defaults=True, rename=names, gc=False,
    )
    return msgspec.json.Decoder(line), msgspec.json.Encoder()


def _keys_once(raw: bytes, line: Any, data: bytes) -> bool:
    """Whether the typed ``line`` decoded from ``raw`` saw each of its keys once, none of them null.

    msgspec keeps the last of a repeated key silently (the dict path rejects
    such a line). Every key is followed by a colon; with no backslash in the
    line (so no colon is written as an escape), the line holds exactly as many
    colons as its keys plus the colons inside its values. Counting the values'
    colons from what was kept, a repeated key (or a null one) leaves the line
    with more colons than that, whatever order the keys come in.
    """
    if b"\\" in raw:
        return False
    keys = 4 + (line.occurred_at is not None) + (line.recorded_at is not None)
    inside = data.count(b":") + line.stream.count(":") + line.type.count(":")
    if line.metadata:
        keys += 1
        inside += bytes(line.metadata).count(b":")
    return raw.count(b":") == keys + inside


def _block_keys_once(
    joined: bytes, streams: list[str], types: list[str], occurred: list[int | None], recorded: list[int | None],
    data: list[bytes], metadata: list[bytes],
) -> bool:
    """``_keys_once`` of every line of a block (``joined``, holding no backslash) at once, from its columns.

    A line's colons never fall short of its keys' and values' colons, so the
    block's sums agree only if each line's do.
    """
    lines = len(streams)
    keys = 4 * lines + lines - occurred.count(None) + lines - recorded.count(None) + lines - metadata.count(b"")
    inside = b"".join(data).count(b":") + b"".join(metadata).count(b":")
    return joined.count(b":") == keys + inside + "".join(streams).count(":") + "".join(types).count(":")


def _canonical_object(data: bytes) -> bool:
    """Whether ``data`` is a JSON object exactly as msgspec encodes it (so decoding it loses nothing)."""
    if not data.startswith(b"{"):
        return False
    try:
        return _ENCODE.encode(_DECODE.decode(data)) == data
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError):
        return False


def _canonical_objects(data: list[bytes]) -> bool:
    """``_canonical_object`` of every one of ``data`` at once: decoded and re-encoded as one JSON array.

    Each item is one whole JSON value (msgspec parsed it), so the array's items
    are exactly these; the re-encoding equals the array only if each item
    re-encodes to its own bytes.
    """
    joined = b"[" + b",".join(data) + b"]"
    try:
        return _ENCODE.encode(_OBJECTS.decode(joined)) == joined
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError):
        return False


def _store_check(check: Any, *args: Any) -> None:
    """Apply one of the store's checks, turning its ``InvalidEvent`` into ``BadRecord``."""
    try:
        check(*args)
    except InvalidEvent as e:
        raise BadRecord(str(e)) from e


def _text(fields: dict[str, Any], name: str, role: str) -> str:
    value = fields.get(name)
    if value is None or value == "":
        raise BadRecord(f"missing field {name!r} (the event's {role})")
    if not isinstance(value, str):
        raise BadRecord(f"field {name!r} (the event's {role}) must be text, got {type(value).__name__}")
    return value


def _is_json_text(value: Any) -> bool:
    return isinstance(value, str) and value.lstrip().startswith("{")


def encode_data(value: Any, name: str) -> bytes:
    """The bytes to store for a line's data field."""
    if value is None:
        raise BadRecord(f"missing field {name!r} (the event's data)")
    if isinstance(value, dict):
        data = _ENCODE.encode(value)
    elif isinstance(value, (bytes, bytearray)):
        data = bytes(value)
    elif _is_json_text(value):
        data = _json_object_text(value, name)
    elif isinstance(value, str):
        try:
            data = base64.b64decode(value, validate=True)
        except ValueError as e:
            raise BadRecord(f"field {name!r} is neither a JSON object nor valid base64: {e}") from e
    else:
        raise BadRecord(f"field {name!r} must be an object or a base64 string, got {type(value).__name__}")
    if len(data) > MAX_DATA_BYTES:
        raise BadRecord(f"field {name!r} holds {len(data)} bytes; the limit is {MAX_DATA_BYTES}")
    return data


def _json_object_text(value: str, name: str) -> bytes:
    try:
        parsed = decode_json(value)
    except ValueError as e:
        raise BadRecord(f"field {name!r}: {e}") from e
    if not isinstance(parsed, dict):
        raise BadRecord(f"field {name!r} must be a JSON object")
    return _ENCODE.encode(parsed)


def check_payload(type_: str, data: bytes) -> None:
    """Known payload types must decode into their struct."""
    decoder = payload_decoder(type_)
    if decoder is None:
        return
    try:
        decoder.decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError) as e:
        raise BadRecord(f"data does not fit payload type {type_}: {e}") from e


def parse_time(value: Any, name: str, unit: int = 1) -> int | None:
    """Integer ns since the epoch from an int, digit string, RFC 3339 text or aware datetime."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise BadRecord(f"field {name!r} must be a time, got a boolean")
    if isinstance(value, str) and value.lstrip("-").isdecimal():  # not isdigit: int() refuses "²"
        value = int(value)
    if isinstance(value, int):
        ns = value * unit
    elif isinstance(value, str):
        ns = _rfc3339(value, name)
    elif isinstance(value, dt.datetime):
        ns = _datetime_ns(value)
    else:
        raise BadRecord(f"field {name!r} must be integer ns or RFC 3339 text, got {type(value).__name__}")
    if not -_INT64_MAX <= ns <= _INT64_MAX:
        raise BadRecord(f"field {name!r} = {value!r} is out of range for nanoseconds since 1970")
    return ns


def _rfc3339(text: str, name: str) -> int:
    match = _RFC3339.fullmatch(text.strip())
    if match is None:
        raise BadRecord(f"field {name!r} = {text[:60]!r} is not RFC 3339 (e.g. 2024-05-01T12:00:00.5Z)")
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    offset = dt.timedelta(0)
    if zone not in ("Z", "z"):
        sign = -1 if zone[0] == "-" else 1
        offset = sign * dt.timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
    try:
        moment = dt.datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second),
            tzinfo=dt.timezone(offset),
        )
    except ValueError as e:
        raise BadRecord(f"field {name!r} = {text[:60]!r} is not a valid time: {e}") from e
    return _datetime_ns(moment) + int((fraction or "").ljust(9, "0"))


def _datetime_ns(moment: dt.datetime) -> int:
    # Naive datetimes come from Parquet timestamps without a zone; Parquet means UTC there.
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    delta = moment - _EPOCH
    nanos = getattr(moment, "nanosecond", 0)  # pandas.Timestamp, when pyarrow hands one over
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000 + nanos


def parse_metadata(value: Any, name: str) -> dict | None:
    """Metadata as a dict (from an object or its JSON text); ``NewEvent`` checks its fields."""
    if value is None or value == "":
        return None
    if _is_json_text(value):
        value = _DECODE.decode(_json_object_text(value, name))
    if not isinstance(value, dict):
        raise BadRecord(f"field {name!r} must be an object, got {type(value).__name__}")
    return value


def parse_id(value: Any, name: str) -> uuid.UUID | None:
    """The event id a source id stands for; None when the line has none."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise BadRecord(f"field {name!r} must be text or an integer, got {type(value).__name__}")
    text = str(value)
    if len(text) > 500:
        raise BadRecord(f"field {name!r} is {len(text)} characters; the limit is 500")
    try:
        return uuid.UUID(text)
    except ValueError:
        return uuid.uuid5(NAMESPACE, "id:" + text)


def _fast_uuid(value: Any) -> uuid.UUID | None:
    """``uuid.UUID(value)`` for UUID text, parsed by msgspec in C; None for anything else.

    msgspec reads the hyphenated and the 32-digit forms, in either case, to
    the same 128-bit value as ``uuid.UUID``; any other text is left to
    ``parse_id`` (which may still read it, or derive an id from it).
    """
    if type(value) is not str:
        return None
    try:
        return msgspec.convert(value, uuid.UUID)
    except msgspec.ValidationError:
        return None


def content_id(
    stream: str, type_: str, occurred_at: int | None, data: bytes, metadata: dict | None
) -> uuid.UUID:
    """A deterministic id for a line without one: same content and stream, same id."""
    digest = hashlib.sha256(data).hexdigest()
    meta = _SORTED.encode(metadata).decode() if metadata else ""
    name = "\x00".join(("content", stream, type_, str(occurred_at), digest, meta))
    return uuid.uuid5(NAMESPACE, name)
