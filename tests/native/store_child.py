"""A child process appending to an embedded store, for the store-under-faults tests: runs JSON
commands from stdin ({"op": "append", "first": N, "count": K}: events N..N+K-1, one append),
answers one JSON line each: {"ok": true} once the append returned, or the error's class and
message. It runs under the fault library, so SQLite's writes and fsyncs go through it."""

from __future__ import annotations

import json
import sys
import uuid

from eventstore import NewEvent, StoreError, open_store


def event(n: int) -> NewEvent:
    """Event number ``n``: a fixed id, so a retry is idempotent."""
    return NewEvent("Tick", json.dumps({"n": n, "pad": "x" * 200}).encode(), id=uuid.UUID(int=n + 1))


def main(uri: str) -> None:
    """Answer commands until stdin closes."""
    with open_store(uri) as store:
        for line in sys.stdin:
            cmd = json.loads(line)
            try:
                store.append("ticks", [event(n) for n in range(cmd["first"], cmd["first"] + cmd["count"])])
                answer = {"ok": True}
            except StoreError as e:
                answer = {"ok": False, "error": type(e).__name__, "message": str(e),
                          "store_error": True}
            except Exception as e:  # anything else is a bug the test must see
                answer = {"ok": False, "error": type(e).__name__, "message": str(e), "store_error": False}
            sys.stdout.write(json.dumps(answer) + "\n")
            sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1])
