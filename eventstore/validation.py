"""Checks applied to every event before any backend stores it.

Names are only ever bound as SQL parameters; these checks exist so that a
hostile or broken producer gets a clear error instead of a stored surprise
(control bytes in a name, a 10 MB stream name, a reserved ``$`` prefix).
"""

from __future__ import annotations

import re
from typing import Final

import msgspec

from ._errors import InvalidEvent, StoreError, mark_request
from ._types import ANY, EMPTY_METADATA, Metadata, NewEvent

MAX_STREAM_BYTES: Final = 500
MAX_TYPE_BYTES: Final = 200
MAX_METADATA_BYTES: Final = 16 * 1024
MAX_DATA_BYTES: Final = 16 * 1024 * 1024
MAX_BATCH: Final = 10_000
MAX_MULTI_EVENTS: Final = 100_000  # events in one append_multi, over all its requests
_JSON = msgspec.json.Encoder()
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_GOOD_TYPES: set[str] = set()  # event types already validated: a log has few, repeated often
_GOOD_STREAMS: set[str] = set()  # stream names already validated (str is immutable: still valid)
_GOOD_METADATA: set[tuple] = set()  # the fields of checked Metadata with no extra (see _metadata_key)
_CACHE_LIMIT: Final = 65_536
_CACHED_METADATA_CHARS: Final = 512  # longer metadata is checked every time: the cache stays under ~40 MB


def check_name(kind: str, value: object, max_bytes: int) -> str:
    """Return ``value`` if it is a usable stream or type name, else raise ``InvalidEvent``."""
    if type(value) is str and value.isascii() and value.isprintable() and 0 < len(value) <= max_bytes:
        return value  # printable ASCII: no control character, valid UTF-8, one byte a character
    if not isinstance(value, str):
        raise InvalidEvent(f"{kind} must be a string, got {type(value).__name__}")
    if not value:
        raise InvalidEvent(f"{kind} must not be empty")
    size = len(value.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise InvalidEvent(f"{kind} {value[:40]!r}... is {size} bytes; the limit is {max_bytes}")
    bad = _CONTROL.search(value)
    if bad is not None:
        raise InvalidEvent(
            f"{kind} {value!r} contains control character U+{ord(bad.group()):04X} at offset {bad.start()}"
        )
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise InvalidEvent(f"{kind} {value!r} is not valid UTF-8 text (lone surrogate)") from e
    return value


def check_stream(stream: object) -> str:
    """Validate a stream name; names starting with ``$`` are reserved for the system."""
    if type(stream) is str and stream in _GOOD_STREAMS:
        return stream
    name = check_name("stream name", stream, MAX_STREAM_BYTES)
    if name.startswith("$"):
        raise InvalidEvent(f"stream name {name!r}: names starting with '$' are reserved")
    if len(_GOOD_STREAMS) >= _CACHE_LIMIT:
        _GOOD_STREAMS.clear()
    _GOOD_STREAMS.add(name)
    return name


def _metadata_key(metadata: Metadata) -> tuple:
    """What ``_GOOD_METADATA`` remembers of checked ``Metadata`` that has no ``extra``.

    Whether metadata passes ``check_metadata`` depends only on these four
    text fields (immutable strings), so equal values need no second check;
    events decoded from a log or a wire carry equal but distinct objects, so
    the values are the key, not the object.
    """
    return (metadata.correlation_id, metadata.causation_id, metadata.source, metadata.content_type)


def _known_metadata(metadata: Metadata) -> bool:
    """True if metadata with these values passed ``check_metadata`` before."""
    try:
        return _metadata_key(metadata) in _GOOD_METADATA
    except TypeError:  # a field that is not text (a list, say): check_metadata names it
        return False


def _remember_metadata(metadata: Metadata) -> None:
    if type(metadata) is Metadata and not metadata.extra:
        key = _metadata_key(metadata)
        if sum(len(text) for text in key if text is not None) <= _CACHED_METADATA_CHARS:
            if len(_GOOD_METADATA) >= _CACHE_LIMIT:
                _GOOD_METADATA.clear()
            _GOOD_METADATA.add(key)


def check_metadata(metadata: Metadata | None) -> Metadata:
    """Validate metadata text fields and total size."""
    if metadata is None:
        return EMPTY_METADATA
    if not isinstance(metadata, Metadata):
        raise InvalidEvent(f"metadata must be Metadata or a dict, got {type(metadata).__name__}")
    texts = [metadata.correlation_id, metadata.causation_id, metadata.source, metadata.content_type]
    for key, value in metadata.extra.items():
        texts.extend((key, value))
    plain, total = True, 0
    for text in texts:
        if text is not None:
            check_name("metadata value", text, MAX_METADATA_BYTES)
            plain = plain and text.isascii()
            total += len(text)
    # JSON at most doubles printable ASCII (\" and \\), plus quotes and separators: skip encoding when it fits.
    if plain and 2 * total + 8 * len(texts) + 16 <= MAX_METADATA_BYTES:
        return metadata
    if len(_JSON.encode(metadata)) > MAX_METADATA_BYTES:
        raise InvalidEvent(f"metadata is larger than {MAX_METADATA_BYTES} bytes")
    return metadata


def check_batch(stream: str, events: object, checked: set[int] | None = None) -> list[NewEvent]:
    """Validate one append batch; every event must belong to ``stream``.

    ``checked`` holds the ``id()`` of ``Metadata`` objects already checked in
    this same call (``prepare_multi`` shares one set over its requests, whose
    events are all alive, so no id can be reused meanwhile).
    """
    return [event for event, _, _ in prepare_batch(stream, events, checked)]


def prepare_batch(
    stream: str, events: object, checked: set[int] | None = None
) -> list[tuple[NewEvent, bytes, Metadata]]:
    """Validate a batch (see ``check_batch``) and encode each event's data: ``(event, data bytes, metadata)``.

    Events that need only cache lookups (the usual case: types, streams and
    metadata repeat) are taken in one quick pass (``_plain_events``); any
    other batch is checked event by event here, which names what is wrong.
    """
    check_stream(stream)
    if isinstance(events, NewEvent):
        raise InvalidEvent(f"stream {stream!r}: append takes a list of events; wrap it: [event]")
    batch = events if type(events) is list else list(events)  # type: ignore[call-overload]
    if not batch:
        raise InvalidEvent(f"stream {stream!r}: an append needs at least one event")
    if len(batch) > MAX_BATCH:
        raise InvalidEvent(f"stream {stream!r}: {len(batch)} events in one append; limit {MAX_BATCH}")
    plain = _plain_events(stream, batch)
    if plain is not None:
        return plain
    if checked is None:
        checked = set()
    seen: set[int] = set()
    prepared = []
    for index, event in enumerate(batch):
        if type(event) is not NewEvent and not isinstance(event, NewEvent):
            raise InvalidEvent(f"stream {stream!r}, event {index}: expected NewEvent, got {type(event).__name__}")
        if event.stream is not None and event.stream != stream:
            raise InvalidEvent(f"stream {stream!r}, event {index}: event names stream {event.stream!r}")
        key = event.id.int  # type: ignore[union-attr]  # an int hashes in C; the UUID's __hash__ is Python
        if key in seen:
            raise InvalidEvent(f"stream {stream!r}, event {index}: id {event.id} appears twice in one batch")
        seen.add(key)
        if type(event.type) is not str or event.type not in _GOOD_TYPES:
            check_name("event type", event.type, MAX_TYPE_BYTES)
            if len(_GOOD_TYPES) < 10_000:
                _GOOD_TYPES.add(event.type)
        data = event.data
        if type(data) is not bytes:
            if isinstance(data, (bytes, bytearray, memoryview)) and len(data) > MAX_DATA_BYTES:
                raise InvalidEvent(f"stream {stream!r}, event {index}: data is {len(data)} bytes; "
                                   f"the limit is {MAX_DATA_BYTES}")
            data = _encode_data(event)  # a payload struct (or a bytes-like object) as bytes
        elif len(data) > MAX_DATA_BYTES:
            raise InvalidEvent(f"stream {stream!r}, event {index}: data is {len(data)} bytes; "
                               f"the limit is {MAX_DATA_BYTES}")
        metadata = event.metadata
        if metadata is None:
            metadata = EMPTY_METADATA
        elif id(metadata) not in checked and not (
            type(metadata) is Metadata and not metadata.extra and _known_metadata(metadata)
        ):  # checked before (see _metadata_key)
            check_metadata(metadata)  # type: ignore[arg-type]
            checked.add(id(metadata))
            _remember_metadata(metadata)  # type: ignore[arg-type]
        occurred_at, recorded_at = event.occurred_at, event.recorded_at
        if (occurred_at is not None and (type(occurred_at) is not int or occurred_at < 0)) or (
            recorded_at is not None and (type(recorded_at) is not int or recorded_at < 0)
        ):
            _check_times(stream, index, event)
        prepared.append((event, data, metadata))
    return prepared


def _check_times(stream: str, index: int, event: NewEvent) -> None:
    for name in ("occurred_at", "recorded_at"):
        value = getattr(event, name)
        if value is not None and (type(value) is not int or value < 0):
            if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                continue  # an int subclass other than bool
            raise InvalidEvent(f"stream {stream!r}, event {index}: {name} must be non-negative "
                               f"integer nanoseconds, got {value!r}")


def _encode_data(event: NewEvent) -> bytes:
    """The JSON of a payload struct (``payloads`` imports this module, so it is imported here)."""
    from .payloads import encode_data

    return encode_data(event)

__all__ = [
    "MAX_BATCH",
    "MAX_DATA_BYTES",
    "MAX_METADATA_BYTES",
    "MAX_STREAM_BYTES",
    "MAX_TYPE_BYTES",
    "check_batch",
    "check_metadata",
    "check_name",
    "check_stream",
    "prepare_batch",
]


def prepare_multi(requests: object) -> list[tuple[str, list[tuple[NewEvent, bytes, Metadata]], object]]:
    """Validate every request of an ``append_multi`` and encode its events; nothing is written yet.

    A request that fails raises its error with ``request_index`` set. One
    pass over all requests and their events: a request that needs only cache
    lookups (``_plain_events``) is taken inline; any other goes through
    ``prepare_batch``, which checks everything and names what is wrong. An
    import appends tens of thousands of one-event requests per call, so the
    per-request cost is the validation cost.
    """
    if isinstance(requests, (str, bytes)):
        raise InvalidEvent("append_multi takes a list of (stream, events, expected) requests")
    try:
        listed = list(requests)  # type: ignore[call-overload]
    except TypeError as e:
        raise InvalidEvent("append_multi takes a list of (stream, events, expected) requests") from e
    prepared = []
    total = 0
    checked: set[int] = set()
    good_streams = _GOOD_STREAMS
    for index, request in enumerate(listed):
        encoded = None
        if type(request) is tuple and len(request) == 3:
            stream, events, expected = request
            if expected is ANY and type(stream) is str and stream in good_streams and type(events) is list:
                encoded = _plain_events(stream, events)
        if encoded is None:
            try:
                encoded = _checked_request(index, request, checked)
            except StoreError as error:
                mark_request(error, index)
                raise
        total += len(encoded)
        if total > MAX_MULTI_EVENTS:
            raise InvalidEvent(f"append_multi holds more than {MAX_MULTI_EVENTS} events; split it")
        prepared.append((request[0], encoded, request[2]))
    return prepared


def _checked_request(index: int, request: object, checked: set[int]) -> list[tuple[NewEvent, bytes, Metadata]]:
    """Every check of one ``append_multi`` request (``prepare_batch``), raising what is wrong."""
    from ._rules import validate_expected

    if not isinstance(request, tuple) or len(request) != 3:
        raise InvalidEvent(f"append_multi request {index} must be a (stream, events, expected) tuple")
    stream, events, expected = request
    validate_expected(expected)
    return prepare_batch(stream, events, checked)


def _plain_events(stream: str, events: list) -> list[tuple[NewEvent, bytes, Metadata]] | None:
    """``prepare_batch``'s result for events that need only cache lookups, else None.

    Plain: 1 to ``MAX_BATCH`` events, each a ``NewEvent`` of ``stream`` (or
    of none) with bytes data within the limit, a type checked before, no
    metadata or metadata checked before (``_metadata_key``, inlined), times None or
    non-negative ints, ids distinct. Anything else is left to
    ``prepare_batch`` (None), so an error is always raised by the one
    function that names it. The caller has checked ``stream`` before.
    """
    if not 0 < len(events) <= MAX_BATCH:
        return None
    good_types, good_metadata, empty = _GOOD_TYPES, _GOOD_METADATA, EMPTY_METADATA
    encoded = []
    try:  # free in 3.11 unless raised
        for event in events:
            if not (
                type(event) is NewEvent
                and (event.stream is None or event.stream == stream)
                and event.type in good_types
                and type(data := event.data) is bytes
                and len(data) <= MAX_DATA_BYTES
                and ((metadata := event.metadata) is None or (
                    type(metadata) is Metadata and not metadata.extra
                    and (metadata.correlation_id, metadata.causation_id, metadata.source,
                         metadata.content_type) in good_metadata))
                and ((occurred_at := event.occurred_at) is None or (type(occurred_at) is int and occurred_at >= 0))
                and ((recorded_at := event.recorded_at) is None or (type(recorded_at) is int and recorded_at >= 0))
            ):  # fmt: skip
                return None
            encoded.append((event, data, empty if metadata is None else metadata))
    except TypeError:  # an unhashable type or metadata field (a list, say): prepare_batch names it
        return None
    if len(encoded) > 1 and len({event.id.int for event in events}) != len(encoded):  # type: ignore[union-attr]
        return None
    return encoded
