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


def test_event_ids_are_the_uuid5_of_session_source_and_sequence_in_every_respect():
    """``event_id`` sets the UUID's slots itself (no constructor checks): it must still be
    exactly ``uuid.uuid5`` (value, version, variant, text, hash, pickle, is_safe)."""
    import pickle
    import uuid

    from adapters.modbus import event_id
    from adapters.modbus.recorder import NAMESPACE

    for session, source, sequence in [("s", "tank1", 1), ("bench123", "dev07", 987654321), ("x" * 70, "é", 0)]:
        made, expected = event_id(session, source, sequence), uuid.uuid5(NAMESPACE, f"{session}/{source}/{sequence}")
        assert type(made) is uuid.UUID and made == expected and made.int == expected.int
        assert (made.version, made.variant, str(made), hash(made)) == \
            (5, uuid.RFC_4122, str(expected), hash(expected))
        assert made.is_safe is expected.is_safe and pickle.loads(pickle.dumps(made)) == expected
