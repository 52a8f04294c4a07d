"""The Modbus recorder: batched, acknowledged appends (see adapters/modbus/recorder.py)."""

from __future__ import annotations

import asyncio
import threading

from adapters.modbus import Recorder
from eventstore import open_store
from projections.payloads.modbus import ModbusFrame

from .modbus_support import until


def test_the_recorder_appends_one_batch_per_wake_up_not_what_came_in_meanwhile():
    """What arrives while a batch is being appended waits for the next wake-up (``flush_every``
    or ``max_batch`` waiting) instead of going at once in a batch of its own: with one device
    that made batches of 5-10 events and their commits the main cost."""
    class GatedStore:  # a real memory store whose first append waits until released
        def __init__(self) -> None:
            self.inner, self.sizes, self.release = open_store("memory://"), [], threading.Event()

        def append(self, stream, events):
            self.sizes.append(len(events))
            if len(self.sizes) == 1:
                assert self.release.wait(10)
            return self.inner.append(stream, events)

    async def session() -> list[int]:
        store = GatedStore()
        recorder = Recorder(store, flush_every=30.0, max_batch=2)  # wake-ups only by max_batch
        recorder.start()

        def add(sequence: int) -> None:
            recorder.add(ModbusFrame(device="d", unit=1, function=4, address=0, sequence=sequence),
                         source="d", session="s", sequence=sequence, received_at=recorder.now())
        add(1)
        add(2)  # max_batch waiting: the first append starts, and waits for the gate
        await until(lambda: store.sizes == [2])
        add(3)  # arrives during the append
        store.release.set()
        await until(lambda: recorder.stored == 2)
        add(4)  # now two wait: the next batch
        await until(lambda: recorder.stored == 4)
        await recorder.close()
        return store.sizes

    assert asyncio.run(session()) == [2, 2]


def test_event_ids_are_derived_from_session_source_sequence_and_receive_time():
    """``event_id`` is ``derived_event_id`` of the receive time and the SHA-1 of the namespace,
    session, source, sequence and receive time (its cached prefix state must not change that)."""
    import hashlib

    from adapters.modbus import event_id
    from adapters.modbus.recorder import NAMESPACE
    from eventstore import derived_event_id

    at = 1_767_225_600_123_456_789
    for session, source, sequence in [("s", "tank1", 1), ("bench123", "dev07", 987654321), ("x" * 70, "é", 0)]:
        for received_at in (at, at + 1):
            name = f"{session}/{source}/{sequence}/{received_at}".encode()
            expected = derived_event_id(received_at, hashlib.sha1(NAMESPACE.bytes + name).digest())
            assert event_id(session, source, sequence, received_at) == expected
    assert event_id("s", "tank1", 1, at) != event_id("s", "tank1", 1, at + 1)
    assert event_id("s", "tank1", 1, at) != event_id("s", "tank2", 1, at)
    assert event_id("s", "tank1", 1, at) < event_id("s", "tank1", 2, at + 1_000_000)  # a millisecond later


def test_a_second_run_under_the_same_session_name_is_stored_and_a_retry_is_not():
    """Two runs named alike restart their sequences at 1; their exchanges differ in receive time,
    so the second run's are stored, not taken for repeats. The same batch rebuilt and appended
    again (a retry) stores nothing new."""
    store = open_store("memory://")

    async def run(received: list[int]) -> None:
        recorder = Recorder(store)
        recorder.start()
        for n, t in enumerate(received):
            frame = ModbusFrame(device="d", unit=1, function=4, address=0, sequence=n + 1, received_at=t)
            recorder.add(frame, source="d", session="run", sequence=n + 1, received_at=t)
        await recorder.close()

    first = [1_767_225_600_000_000_000, 1_767_225_600_100_000_000]
    asyncio.run(run(first))
    asyncio.run(run([1_767_225_700_000_000_000, 1_767_225_700_100_000_000]))
    assert store.last_position() == 4 and len({e.id for e in store.read_all()}) == 4
    asyncio.run(run(first))  # a retry: the same exchanges, the same ids
    assert store.last_position() == 4
