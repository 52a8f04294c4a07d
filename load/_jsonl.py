"""Log lines in the JSON Lines import format (docs/architecture.md), built deterministically.

Every line carries an explicit ``id`` derived from its content (stream, type,
source time and data, plus a copy number for deliberate duplicates such as a
retried payment webhook), so the same seed gives byte-identical files, a
re-import is idempotent, and a longer log from the same seed shares the ids
of the events the two logs have in common (never an id for different content). ``occurred_at`` is source (device)
time; ``recorded_at`` is when the production system received the event, and
the file is ordered by it, as a production log would be. ``replay --log``
delivers each event at its ``recorded_at``.
"""

from __future__ import annotations

import uuid
from typing import Any, Final

import msgspec

from eventstore.payloads import Payload

NS: Final = 1_000_000_000
MINUTE: Final = 60 * NS
HOUR: Final = 60 * MINUTE
DAY: Final = 24 * HOUR

# Fixed namespace: ids depend only on what the event says, never on the machine.
ID_NAMESPACE: Final = uuid.UUID("6f1c9a52-3f0e-4f7a-9a57-0d2b8c1e4a10")


class LogLine(msgspec.Struct, frozen=True):
    """One line of a JSON Lines event log; field order is the byte order on disk."""

    id: str
    stream: str
    type: str
    occurred_at: int
    recorded_at: int
    data: dict[str, Any]
    metadata: dict[str, str]


_ENCODER: Final = msgspec.json.Encoder()

# (received_at, stream, counter, encoded line): sorting these gives the file order.
Item = tuple[int, str, int, bytes]


class StreamWriter:
    """Builds the lines of one stream, each with its content-derived id."""

    def __init__(self, seed: int, stream: str) -> None:
        self.seed = seed
        self.stream = stream
        self.items: list[Item] = []
        self._copies: dict[bytes, int] = {}

    def emit(self, payload: Payload, occurred_at: int, received_at: int, source: str) -> None:
        """Add one event that happened at ``occurred_at`` and was received at ``received_at``."""
        n = len(self.items)
        kind = type(payload).__struct_config__.tag
        data = _ENCODER.encode(payload)  # includes the tag, so the type is part of the key
        key = b"%s/%d/%s" % (self.stream.encode(), occurred_at, data)
        copy = self._copies[key] = self._copies.get(key, -1) + 1
        line = LogLine(
            id=str(uuid.uuid5(ID_NAMESPACE, f"{key.decode()}/{copy}")),
            stream=self.stream,
            type=kind,
            occurred_at=occurred_at,
            recorded_at=received_at,
            data=msgspec.structs.asdict(payload),
            metadata={"source": source},
        )
        self.items.append((received_at, self.stream, n, _ENCODER.encode(line) + b"\n"))
