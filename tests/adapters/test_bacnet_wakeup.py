"""``PromptFollow``'s settle: after a WAL write it looks again at 1, 2, 4, 8 ms..., not every ms.

A real embedded store on disk, a real inotify watch: an append wakes the
follower, the looks that follow wait twice as long each time, and the next
append starts again from the shortest.
"""

from __future__ import annotations

import asyncio

from adapters.bacnet.wakeup import SETTLE_POLL, PromptFollow
from eventstore import NewEvent, open_store
from projections.payloads.bacnet import BacnetValueUpdate


def test_settle_looks_double_after_each_wake_and_restart_on_the_next_write(tmp_path):
    store = open_store(f"embedded://{tmp_path}/events.db")

    def append() -> None:
        store.append("bacnet", [NewEvent.of(BacnetValueUpdate(
            device_id=1, object_type="analog-input", instance=1, value=1.0))])

    async def main() -> list[float]:
        follow = PromptFollow(store)
        assert follow.prompt
        seen = []
        try:
            follow.watch.drain()
            append()
            assert await follow.wait_for_append_async(0, 5.0)  # woken by the WAL write
            for _ in range(4):
                await follow.wait_for_append_async(0, 5.0)
                seen.append(follow._settle)
            append()
            assert await follow.wait_for_append_async(0, 5.0)
            seen.append(follow._settle)
        finally:
            follow.close()
        return seen

    try:
        seen = asyncio.run(asyncio.wait_for(main(), 30))
    finally:
        store.close()
    assert seen == [SETTLE_POLL * 2, SETTLE_POLL * 4, SETTLE_POLL * 8, SETTLE_POLL * 16,
                    SETTLE_POLL]
