"""Contract cases: what the store keeps on each event (times, metadata, payload bytes)."""

from __future__ import annotations

import uuid

import pytest

from eventstore import InvalidPayload, Metadata, NewEvent
from eventstore.payloads import Rejected, decode_payload
from projections.payloads import MeterReading, PaymentReceived

from .helpers import ManualClock, batch, ev


def _need_own_clock(backend) -> None:
    if not backend.own_clock:
        pytest.skip(f"{backend.name} sets recorded_at on its server; no clock can be injected")


class FieldCases:
    def test_recorded_at_comes_from_the_injected_clock(self, backend, ns):
        _need_own_clock(backend)
        clock = ManualClock(1_000_000_000)
        with backend.open(clock=clock) as store:
            store.append(ns + "t", batch(2))
            clock.set(5_000_000_000)
            store.append(ns + "t", batch(1))
            times = [e.recorded_at for e in store.read_stream(ns + "t")]
        assert times == [1_000_000_000, 1_000_000_000, 5_000_000_000]
        assert clock.calls >= 2

    def test_recorded_at_never_goes_backwards_when_the_clock_does(self, backend, ns):
        _need_own_clock(backend)
        clock = ManualClock(9_000)
        with backend.open(clock=clock) as store:
            store.append(ns + "back", batch(1))
            clock.set(4_000)
            store.append(ns + "back", batch(1))
            times = [e.recorded_at for e in store.read_stream(ns + "back")]
        assert times == [9_000, 9_000]

    def test_occurred_at_defaults_to_recorded_at_and_is_kept_when_given(self, backend, ns):
        _need_own_clock(backend)
        clock = ManualClock(7_000_000)
        with backend.open(clock=clock) as store:
            store.append(ns + "occ", [ev(), ev(occurred_at=1_234), ev(occurred_at=0)])
            events = list(store.read_stream(ns + "occ"))
        assert [e.occurred_at for e in events] == [7_000_000, 1_234, 0]
        assert {e.recorded_at for e in events} == {7_000_000}

    def test_ids_types_and_data_come_back_exactly(self, store, ns):
        fixed = uuid.UUID("12345678-1234-5678-1234-567812345678")
        raw = bytes(range(256))
        store.append(ns + "exact", [NewEvent("Blob", raw, id=fixed), ev("Empty", b"")])
        blob, empty = store.read_stream(ns + "exact")
        assert (blob.id, blob.type, blob.data) == (fixed, "Blob", raw)
        assert isinstance(blob.id, uuid.UUID) and isinstance(blob.data, bytes)
        assert (empty.type, empty.data) == ("Empty", b"")

    def test_metadata_round_trips(self, store, ns):
        full = Metadata(
            correlation_id="corr-1", causation_id="cause-2", source="modbus://plc-7",
            content_type="application/octet-stream", extra={"tenant": "t1", "ünï": "çødé"})
        store.append(ns + "meta", [
            ev(metadata=full),
            ev(metadata={"source": "importer", "batch": "b-9"}),
            ev(),
        ])
        first, from_dict, plain = store.read_stream(ns + "meta")
        assert first.metadata == full
        assert from_dict.metadata == Metadata(source="importer", extra={"batch": "b-9"})
        assert plain.metadata == Metadata()

    def test_unknown_types_are_kept_as_raw_bytes(self, store, ns):
        garbage = b"\x00\xff\xfe not json {"
        store.append(ns + "unknown", [ev("VendorSpecificThing", garbage)])
        [event] = store.read_stream(ns + "unknown")
        assert event.data == garbage
        assert decode_payload(event) == garbage

    def test_payload_structs_are_encoded_and_decode_back(self, store, ns):
        reading = MeterReading("m-1", "acct-1", 1234.5, estimated=True)
        rejected = Rejected("modbus", "truncated frame", b"\x01\x03\x00", where="plc-7")
        store.append(ns + "payload", [NewEvent.of(reading), NewEvent.of(rejected)])
        first, second = store.read_stream(ns + "payload")
        assert first.type == "MeterReading" and decode_payload(first) == reading
        assert second.type == "Rejected" and decode_payload(second) == rejected

    def test_known_type_with_wrong_fields_fails_to_decode_naming_where(self, store, ns):
        store.append(ns + "bad-payload", [
            NewEvent("PaymentReceived", b'{"account_id":"a","payment_id":"p","amount_minor":"ten"}')])
        [event] = store.read_stream(ns + "bad-payload")
        with pytest.raises(InvalidPayload) as caught:
            decode_payload(event)
        error = caught.value
        assert (error.position, error.type) == (event.position, "PaymentReceived")
        text = str(error)
        assert f"position {event.position}" in text
        assert "amount_minor" in text and "PaymentReceived" in text and "int" in text

    def test_payload_of_a_different_type_than_the_event_is_refused(self, store, ns):
        with pytest.raises(InvalidPayload, match="PaymentReceived"):
            store.append(ns + "mismatch", [NewEvent("MeterReading", PaymentReceived("a", "p", 1))])
        assert store.stream_revision(ns + "mismatch") is None
