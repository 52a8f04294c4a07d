"""Child process of the PostgreSQL kill tests: append batches, print each acknowledgement.

Usage: python postgres_child.py URI WRITER BATCHES SEED   (BATCHES 0: until killed)

Each batch goes to the writer's own stream (with the exact expected revision)
or to the stream ``shared`` (with ANY); its events' data names the writer, the
batch and the batch's size, so a reader can tell a whole batch from part of
one. On ``StoreUnavailable`` (the server is down or restarting) the same batch
is sent again, same ids, until it is acknowledged: idempotency makes that
safe whether or not the first try was stored. Prints one line per
acknowledged batch, ``ack STREAM FIRST LAST ID,ID,...``, and one line per
outage seen (opening the store included), ``unavailable``; flushes each line at once.
"""

from __future__ import annotations

import json
import random
import sys
import time

from eventstore import ANY, NO_STREAM, NewEvent, StoreUnavailable, open_store


def batch(writer: str, number: int, size: int) -> list[NewEvent]:
    return [NewEvent("Load", json.dumps({"w": writer, "b": number, "k": k, "n": size}).encode())
            for k in range(size)]


def send(store, stream: str, events: list[NewEvent], expected):
    """Append until acknowledged, retrying the same events through outages."""
    while True:
        try:
            return store.append(stream, events, expected)
        except StoreUnavailable:
            print("unavailable", flush=True)
            time.sleep(0.02)  # back off before reconnecting


def connect(uri: str):
    """Open the store, waiting out an outage (the other writers may be fast enough that the
    server is killed before this one has even connected)."""
    while True:
        try:
            return open_store(uri)
        except StoreUnavailable:
            print("unavailable", flush=True)
            time.sleep(0.02)


def main() -> None:
    uri, writer, batches, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    rng = random.Random(seed)
    store = connect(uri)
    revision = None
    number = 0
    while batches == 0 or number < batches:
        events = batch(writer, number, rng.randint(1, 20))
        if rng.random() < 0.5:
            stream, expected = writer, NO_STREAM if revision is None else revision
        else:
            stream, expected = "shared", ANY
        result = send(store, stream, events, expected)
        if stream == writer:
            revision = result.next_revision - 1
        ids = ",".join(str(e.id) for e in events)
        print(f"ack {stream} {result.first_position} {result.last_position} {ids}", flush=True)
        number += 1
    store.close()
    print("done", flush=True)


if __name__ == "__main__":
    main()
