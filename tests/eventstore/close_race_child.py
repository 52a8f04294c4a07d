"""Child process of the close-race test: close a store while threads are using it.

Usage: python close_race_child.py URI CYCLES NAMESPACE

Each cycle opens the store, starts readers, appenders and a subscriber, and
closes the store once they are busy. Every thread must end with StoreClosed
(nothing else); on a durable store every acknowledged append must be there
after reopening. Runs in its own process because a backend that frees a
connection under a running query can crash the interpreter, and a crash must
fail one test, not end the whole test run. Prints ``survived N cycles``.
"""

from __future__ import annotations

import sys
import threading

from eventstore import NewEvent, StoreClosed, open_store

BUSY = 40  # operations done before the close lands


def one_cycle(uri: str, stream: str, cycle: int) -> None:
    store = open_store(uri)
    acknowledged: list[NewEvent] = []
    outcomes: list[str] = []
    done = [0]
    busy = threading.Event()

    def step(kind: str, index: int) -> None:
        if kind == "append":
            events = [NewEvent("T", b"%d/%d" % (cycle, index)) for _ in range(2)]
            store.append(stream, events)
            acknowledged.extend(events)
        elif kind == "read":
            list(store.read_all(limit=50))
            store.stream_revision(stream)
        else:
            for _ in store.subscribe(from_position=store.last_position()):
                pass

    def work(kind: str, index: int) -> None:
        try:
            while True:
                step(kind, index)
                done[0] += 1
                if done[0] >= BUSY:
                    busy.set()
        except StoreClosed:
            outcomes.append("closed")
        except BaseException as e:
            outcomes.append(f"{kind}: {type(e).__name__}: {e}")

    kinds = ["read", "read", "read", "append", "append", "subscribe"]
    threads = [threading.Thread(target=work, args=(k, i)) for i, k in enumerate(kinds)]
    for thread in threads:
        thread.start()
    busy.wait(10)
    store.close()
    for thread in threads:
        thread.join(10)
    assert not any(t.is_alive() for t in threads), f"cycle {cycle}: a thread is stuck after close()"
    assert outcomes == ["closed"] * len(kinds), f"cycle {cycle}: {outcomes}"
    if uri.startswith("memory:"):
        return
    with open_store(uri) as again:
        stored = {e.id for e in again.read_stream(stream)}
    lost = [e.id for e in acknowledged if e.id not in stored]
    assert not lost, f"cycle {cycle}: acknowledged appends lost across close: {lost[:5]}"


def main() -> None:
    uri, cycles, namespace = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    for cycle in range(cycles):
        one_cycle(uri, namespace + "close-race", cycle)
    print(f"survived {cycles} cycles", flush=True)


if __name__ == "__main__":
    main()
