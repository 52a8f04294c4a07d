"""From broker messages to events: ids, decoding, rejection, and durable batched appends.

A message's body is a payload's JSON with its ``type`` tag (what
``eventstore.payloads.encode_payload`` writes). Optional headers: ``Ub-Stream``
(the store stream; else the ingest's stream, else the subject), ``Ub-Occurred-At``
(source time, integer ns) and ``Ub-Source``.

The event id is ``uuid5`` of the message id (``Nats-Msg-Id``, the AMQP
``message_id``, a ``Ub-Msg-Id`` field) or, without one, of the broker's own
position (JetStream stream and sequence, Redis stream entry id). A redelivered
message therefore has the id it had the first time, and the store's idempotent
append keeps it once (EF-003).

A message that cannot be decoded, is over the size limit or names an invalid
stream becomes a ``Rejected`` event (raw bytes and reason) in the rejected
stream, under the same id; it is acknowledged like any other (EF-002).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

import msgspec

from eventstore import ANY, DuplicateIdConflict, EventStore, Metadata, NewEvent
from eventstore.payloads import Rejected, payload_decoder
from eventstore.validation import check_stream

NAMESPACE: Final = uuid.UUID("3a0e4e52-91c3-4f0b-8d55-6c1f0b7e2d41")
MAX_BYTES: Final = 256 * 1024
KEEP_RAW: Final = 4 * 1024 * 1024  # raw bytes kept in a Rejected event (more are cut)
STREAM_HEADER: Final = "Ub-Stream"
OCCURRED_HEADER: Final = "Ub-Occurred-At"
SOURCE_HEADER: Final = "Ub-Source"


class _Tagged(msgspec.Struct):
    type: str


_TYPE_ONLY: Final = msgspec.json.Decoder(_Tagged)


@dataclass(slots=True)
class Incoming:
    """One broker message, before it is an event.

    ``key`` is the idempotency key (a message id, or the broker's position of
    the message); ``subject`` where it came from; ``where`` says it for people
    (``stream ORDERS seq 42``).
    """

    key: str
    subject: str
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)
    where: str = ""


def event_id(key: str) -> uuid.UUID:
    """The event id of the message with idempotency key ``key`` (``uuid5(NAMESPACE, key)``)."""
    digest = hashlib.sha1(_NS_BYTES + key.encode("utf-8", "surrogatepass")).digest()
    return uuid.UUID(bytes=digest[:16], version=5)  # what uuid.uuid5 computes, cheaper


_NS_BYTES: Final = NAMESPACE.bytes


@dataclass(slots=True)
class Ingestor:
    """Turns messages into events and appends batches of them durably and idempotently."""

    store: EventStore
    broker: str  # "nats", "redis", "rabbit": the source prefix
    stream: str | None = None  # None: the subject names the stream
    rejected_stream: str = "rejected"
    max_bytes: int = MAX_BYTES
    stored: int = 0  # messages whose events are durable (duplicates included)
    rejected: int = 0
    batches: int = 0
    _sources: dict[str, Metadata] = field(default_factory=dict)

    def to_event(self, m: Incoming) -> tuple[str, NewEvent, bool]:
        """``(stream, event, rejected)`` for message ``m``; never raises on bad input."""
        source = m.headers.get(SOURCE_HEADER) or f"{self.broker}:{m.subject}"
        if len(m.body) > self.max_bytes:
            return self._reject(m, source, f"message of {len(m.body)} bytes is over the "
                                f"limit of {self.max_bytes} bytes")
        stream = m.headers.get(STREAM_HEADER) or self.stream or m.subject
        try:
            check_stream(stream)
        except Exception as e:  # InvalidEvent: the message names a stream we cannot store
            return self._reject(m, source, f"invalid stream: {e}")
        occurred = m.headers.get(OCCURRED_HEADER)
        if occurred is not None and not occurred.isdigit():
            return self._reject(m, source, f"{OCCURRED_HEADER} {occurred[:40]!r} is not integer ns")
        try:
            kind = _decode(m.body)
        except ValueError as e:
            return self._reject(m, source, str(e))
        # The producer's bytes are stored as they came (they fit the payload's struct).
        event = NewEvent(kind, m.body, id=event_id(m.key), metadata=self._metadata(source),
                         occurred_at=int(occurred) if occurred is not None else None)
        return stream, event, False

    def _metadata(self, source: str) -> Metadata:
        found = self._sources.get(source)
        if found is None:
            if len(self._sources) > 10_000:  # many distinct subjects: do not grow forever
                self._sources.clear()
            found = self._sources[source] = Metadata(source=source)
        return found

    def _reject(self, m: Incoming, source: str, reason: str,
                key: str | None = None) -> tuple[str, NewEvent, bool]:
        raw = m.body[:KEEP_RAW]
        event = NewEvent.of(Rejected(source=source, reason=reason, raw=raw,
                                     where=m.where or m.key),
                            id=event_id(key or m.key), metadata={"source": source})
        return self.rejected_stream, event, True

    def append(self, messages: Sequence[Incoming]) -> None:
        """Append every message (as an event or a Rejected one); returns once all are durable.

        One transaction for the batch (``append_multi``), consecutive events of a
        stream in one request. A request that repeats some stored ids (a
        redelivery) is split into one request per event, so each is idempotent on
        its own; an id stored with other content or in another stream makes that
        message a Rejected event instead. Store errors propagate: nothing is acked.
        """
        seen: set[uuid.UUID] = set()
        items: list[tuple[str, NewEvent, bool, Incoming]] = []
        for m in messages:
            stream, event, bad = self.to_event(m)
            if event.id not in seen:  # the same message twice in one batch
                seen.add(event.id)
                items.append((stream, event, bad, m))
        groups = _group(items)
        for _ in range(len(items) + 2):
            try:
                self.store.append_multi([(s, [i[1] for i in g], ANY) for s, g in groups])
                break
            except DuplicateIdConflict as e:
                groups = self._resolve(groups, getattr(e, "request_index", None), e)
        else:  # pragma: no cover - every round splits or rejects something
            raise RuntimeError("append did not converge")
        self.stored += len(messages)
        self.rejected += sum(1 for _, _, bad, _ in items if bad)
        self.batches += 1

    def _resolve(self, groups, index: int | None, error: Exception):
        if index is None:  # a backend that does not say which request: split everything
            return [(s, [i]) for s, g in groups for i in g] if any(len(g) > 1 for _, g in groups) \
                else self._reject_all(groups, error)
        stream, group = groups[index]
        if len(group) > 1:
            return groups[:index] + [(stream, [i]) for i in group] + groups[index + 1:]
        _, event, _, m = group[0]
        source = f"{self.broker}:{m.subject}"
        s, ev, bad = self._reject(m, source, f"message id {m.key!r} is already stored as event "
                                  f"{event.id} with other content or in another stream: {error}",
                                  key=f"conflict/{m.key}")
        return groups[:index] + [(s, [(s, ev, bad, m)])] + groups[index + 1:]

    def _reject_all(self, groups, error):
        raise error


def _group(items):
    groups: list[tuple[str, list]] = []
    for item in items:
        if groups and groups[-1][0] == item[0] and not item[2]:
            groups[-1][1].append(item)
        else:
            groups.append((item[0], [item]))
    return groups


def _decode(body: bytes) -> str:
    """The event type of a payload's JSON, checked to fit its struct; ValueError if not."""
    try:
        kind = _TYPE_ONLY.decode(body).type
    except msgspec.ValidationError as e:
        raise ValueError(f"not a payload's JSON (an object with a string 'type'): {e}") from None
    except msgspec.DecodeError as e:
        raise ValueError(f"not JSON: {e}") from None
    decoder = payload_decoder(kind)
    if decoder is None:
        raise ValueError(f"unknown event type {kind[:80]!r}")
    try:
        decoder.decode(body)
    except msgspec.DecodeError as e:
        raise ValueError(f"does not fit {kind}: {e}") from None
    return kind
