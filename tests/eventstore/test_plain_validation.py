"""Validation's quick pass (``_plain_events``) takes only what the full checks would take.

Once a stream, a type and a metadata value are known good (the caches are
warm), batches of them skip the event-by-event checks. Each test warms the
caches with good events first, then sends one bad event that differs in a
single field: it must still be refused by the full checks, with the same
message and, in an ``append_multi``, the index of its request.
"""

from __future__ import annotations

import uuid

import pytest

from eventstore import ANY, InvalidEvent, Metadata, NewEvent
from eventstore.validation import MAX_DATA_BYTES, prepare_batch, prepare_multi

STREAM = "plain-meter-1"
META = Metadata(source="plain-test")


def good(n: int = 0) -> NewEvent:
    return NewEvent("PlainReading", b'{"kwh": %d}' % n, stream=STREAM, occurred_at=n, metadata=META, recorded_at=n)


def warm() -> None:
    prepare_batch(STREAM, [good(1), good(2)])  # the caches now hold STREAM, the type and META


SAME_ID = uuid.UUID(int=7)
BAD = {
    "negative time": NewEvent("PlainReading", b"{}", occurred_at=-1),
    "float time": NewEvent("PlainReading", b"{}", recorded_at=1.5),  # type: ignore[arg-type]
    "other stream": NewEvent("PlainReading", b"{}", stream="plain-meter-2"),
    "new type with control byte": NewEvent("Plain\x01Reading", b"{}"),
    "data too big": NewEvent("PlainReading", b"x" * (MAX_DATA_BYTES + 1)),
    "metadata with a control byte": NewEvent("PlainReading", b"{}", metadata=Metadata(source="a\x02b")),
    "not a NewEvent": "not an event",
    "new type that is a list": NewEvent(["PlainReading"], b"{}"),  # type: ignore[arg-type]  # unhashable
    "metadata that is a list": NewEvent("PlainReading", b"{}", metadata=Metadata(source=["x"])),  # type: ignore[arg-type]
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_a_bad_event_in_a_warm_batch_is_refused_as_by_the_full_checks(name: str) -> None:
    warm()
    with pytest.raises(InvalidEvent) as caught:
        prepare_batch(STREAM, [good(3), BAD[name]])
    assert "event 1" in str(caught.value) or name.startswith(("new type", "metadata"))


@pytest.mark.parametrize("name", sorted(BAD))
def test_a_bad_request_among_plain_ones_is_named_by_its_index(name: str) -> None:
    warm()
    requests = [(STREAM, [good(i)], ANY) for i in range(3)]
    requests.insert(2, (STREAM, [BAD[name]], ANY))
    with pytest.raises(InvalidEvent) as caught:
        prepare_multi(requests)
    assert caught.value.request_index == 2


def test_a_repeated_id_within_a_warm_batch_is_refused() -> None:
    warm()
    twice = [NewEvent("PlainReading", b"{}", id=SAME_ID), NewEvent("PlainReading", b"{}", id=SAME_ID)]
    with pytest.raises(InvalidEvent, match="appears twice"):
        prepare_batch(STREAM, twice)
    with pytest.raises(InvalidEvent, match="appears twice") as caught:
        prepare_multi([(STREAM, [good(1)], ANY), (STREAM, twice, ANY)])
    assert caught.value.request_index == 1


def test_plain_requests_are_prepared_as_the_full_checks_prepare_them() -> None:
    warm()
    events = [good(i) for i in range(5)] + [NewEvent("PlainReading", b"{}")]  # no metadata: the empty one
    prepared = prepare_multi([(STREAM, [e], ANY) for e in events] + [(STREAM, events[:2], 3)])
    assert [(s, x) for s, _, x in prepared] == [(STREAM, ANY)] * 6 + [(STREAM, 3)]
    assert [p for _, batch, _ in prepared[:6] for p in batch] == prepare_batch(STREAM, events)
    assert prepared[-1][1] == prepare_batch(STREAM, events[:2])
    assert prepared[5][1][0][2] == Metadata()
