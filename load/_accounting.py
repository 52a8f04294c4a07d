"""Loss accounting: every message followed from sent to acknowledged, stored and projected.

``account(samples, store_uri, projected)`` matches ids: a message's event id is
``message_event_id(key)``; the store is read whole; ``projected`` is the
follower's list of applied ids. For each stage it counts the messages and lists
every id missing (in the stage before, not in this one) and every id found more
than once. It also returns, per message, when it was stored (``recorded_at``)
and projected, for latency and recovery judgements.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._driver import Samples
from ._targets import message_event_id

MAX_LISTED = 1000  # ids listed per stage in the report (the counts are always exact)


@dataclass(slots=True)
class Accounting:
    """Counts and ids per stage; ``stored_ns`` and ``projected_ns`` per message (0 = never)."""

    scheduled: int
    sent: int
    acked: int
    stored: int | None
    projected: int | None
    missing: dict[str, list[str]] = field(default_factory=dict)
    duplicated: dict[str, list[str]] = field(default_factory=dict)
    missing_count: dict[str, int] = field(default_factory=dict)
    duplicated_count: dict[str, int] = field(default_factory=dict)
    other_events: int = 0
    rejected: int = 0
    stored_ns: Any = None
    projected_ns: Any = None

    @property
    def lost(self) -> int:
        """Messages missing at any stage."""
        return sum(self.missing_count.values())

    @property
    def duplicates(self) -> int:
        """Messages found more than once at any stage."""
        return sum(self.duplicated_count.values())

    def as_dict(self) -> dict[str, Any]:
        """The counts and (up to MAX_LISTED per stage) ids, JSON-able."""
        return {
            "scheduled": self.scheduled, "sent": self.sent, "acked": self.acked,
            "stored": self.stored, "projected": self.projected, "lost": self.lost,
            "duplicates": self.duplicates, "missing_count": self.missing_count,
            "duplicated_count": self.duplicated_count, "missing": self.missing,
            "duplicated": self.duplicated, "other_events": self.other_events,
            "rejected": self.rejected,
        }


def account(samples: Samples, store_uri: str | None,
            projected: list[tuple[bytes, int]] | None = None) -> Accounting:
    """Follow each message of ``samples`` through the store and the projection."""
    n = len(samples.intended_ns)
    sent_mask = samples.sent_ns > 0
    acked_mask = samples.acked_ns > 0
    acc = Accounting(scheduled=n, sent=int(sent_mask.sum()), acked=int(acked_mask.sum()),
                     stored=None, projected=None)
    _stage(acc, "sent", samples, np.ones(n, bool), sent_mask.astype(np.int64))
    _stage(acc, "acked", samples, sent_mask, acked_mask.astype(np.int64))
    if store_uri is None:
        return acc
    index = {message_event_id(samples.key(k)).bytes: k for k in range(n)}
    stored_count = np.zeros(n, np.int64)
    acc.stored_ns = np.zeros(n, np.int64)
    from eventstore import open_store

    with open_store(store_uri, create=False) as store:
        for event in store.read_all():
            k = index.get(event.id.bytes)
            if k is None:
                acc.other_events += 1
                acc.rejected += event.type == "Rejected"
                continue
            stored_count[k] += 1
            acc.stored_ns[k] = event.recorded_at
    acc.stored = int((stored_count > 0).sum())
    _stage(acc, "stored", samples, acked_mask, stored_count)
    if projected is None:
        return acc
    projected_count = np.zeros(n, np.int64)
    acc.projected_ns = np.zeros(n, np.int64)
    for raw, at in projected:
        k = index.get(raw)
        if k is not None:
            projected_count[k] += 1
            if not acc.projected_ns[k]:
                acc.projected_ns[k] = at
    acc.projected = int((projected_count > 0).sum())
    _stage(acc, "projected", samples, stored_count > 0, projected_count)
    return acc


def _stage(acc: Accounting, name: str, samples: Samples, before: np.ndarray,
           counts: np.ndarray) -> None:
    """Ids present before this stage but not in it, and ids in it more than once."""
    missing = np.flatnonzero(before & (counts == 0))
    dup = np.flatnonzero(counts > 1)
    acc.missing_count[name] = int(len(missing))
    acc.duplicated_count[name] = int(len(dup))
    acc.missing[name] = [samples.key(int(k)) for k in missing[:MAX_LISTED]]
    acc.duplicated[name] = [samples.key(int(k)) for k in dup[:MAX_LISTED]]


def duplicates_of(ids: list[str]) -> list[str]:
    """Ids that occur more than once, each listed once, in first-seen order."""
    return [i for i, c in Counter(ids).items() if c > 1]
