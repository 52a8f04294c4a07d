"""Child process of the crash test: appends from several threads until it is killed.

Usage: python crash_child.py DB_PATH THREADS SEED

Writes ``appending`` once the store is open, then one JSON line per append as
soon as ``append`` returns (the acknowledgement): stream, ids, first and last
position, next revision. Each line is a single ``os.write`` of well under
PIPE_BUF bytes, so a SIGKILL never leaves half a line in the pipe.
"""

from __future__ import annotations

import json
import os
import random
import sys
import threading
import uuid

from eventstore import NewEvent, open_store

STREAMS = 6


def report(record: dict) -> None:
    """Tell the parent about an acknowledged append, in one atomic pipe write."""
    os.write(1, (json.dumps(record, separators=(",", ":")) + "\n").encode())


def append_forever(store, index: int, seed: int) -> None:
    """Append seeded batches; every tenth call retries the previous batch (must be a no-op)."""
    rng = random.Random(seed * 1009 + index)
    previous = None
    for count in range(10**9):
        if previous is not None and count % 10 == 0:
            stream, events, result = previous
            again = store.append(stream, events)
            if again != result:
                report({"error": f"retry of {result} returned {again}"})
            continue
        stream = f"s-{rng.randrange(STREAMS)}"
        events = [
            NewEvent("Tick", b'{"t":%d,"n":%d,"k":%d}' % (index, count, k),
                     id=uuid.UUID(int=rng.getrandbits(128)))
            for k in range(rng.randint(1, 4))
        ]
        result = store.append(stream, events)
        report({"stream": stream, "ids": [str(e.id) for e in events],
                "first": result.first_position, "last": result.last_position,
                "next": result.next_revision})
        previous = (stream, events, result)


def main() -> None:
    path, threads, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    store = open_store(f"embedded://{path}")
    os.write(1, b"appending\n")
    workers = [
        threading.Thread(target=append_forever, args=(store, i, seed), daemon=True)
        for i in range(threads)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


if __name__ == "__main__":
    main()
