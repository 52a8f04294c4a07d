"""Snapshots every N deliveries, and resuming from the newest one."""

from __future__ import annotations

import pytest
from replay_helpers import SECOND, LedgerProjection, payment_log

from replay import Delivery, ReplayError, Snapshots, deliveries_of, load_trace, run


class Crashing(LedgerProjection):
    """The ledger, but the process 'dies' at one position (not part of its config)."""

    def __init__(self, crash_at: int, **kw) -> None:
        super().__init__(**kw)
        self.crash_at = crash_at

    def apply(self, state, event, ctx):
        if event.position == self.crash_at:
            raise KeyboardInterrupt  # not an Exception: the run stops, as a kill would
        return super().apply(state, event, ctx)


def test_resume_after_a_crash_gives_the_same_digest_state_and_decisions(tmp_path):
    events = payment_log(n=60, accounts=4, step=SECOND)
    schedule = list(deliveries_of(events))
    projection = LedgerProjection(hold_ns=3 * SECOND)
    full = run(schedule, projection)
    snaps = tmp_path / "snaps"
    with pytest.raises(KeyboardInterrupt):
        run(schedule, Crashing(crash_at=45, hold_ns=3 * SECOND), snapshots=Snapshots(every=10, directory=snaps))
    assert [p.name for p in sorted(snaps.iterdir())] == [
        "snapshot-000000000030.msgpack", "snapshot-000000000040.msgpack"]
    resumed = run(schedule, projection, snapshots=Snapshots(every=10, directory=snaps, resume=True),
                  trace_dir=tmp_path / "trace")
    assert resumed.resumed_from == 40
    assert resumed.digest == full.digest
    assert resumed.state == full.state
    assert resumed.counts == full.counts
    n = len(resumed.decisions)
    assert 0 < n < len(full.decisions)
    assert resumed.decisions == full.decisions[-n:]
    tail = full.tables["decisions"].tail(n).drop("run_id")
    assert load_trace(tmp_path / "trace")["decisions"].drop("run_id").equals(tail)


def test_snapshots_during_a_run_do_not_change_its_digest(tmp_path):
    events = payment_log(n=25)
    plain = run(list(deliveries_of(events)), LedgerProjection())
    snapped = run(list(deliveries_of(events)), LedgerProjection(), snapshots=Snapshots(every=4),
                  trace_dir=tmp_path)
    assert snapped.digest == plain.digest
    assert (tmp_path / "snapshots").is_dir()


def test_resume_without_snapshots_replays_from_the_start(tmp_path):
    events = payment_log(n=5)
    result = run(list(deliveries_of(events)), LedgerProjection(), snapshots=Snapshots(directory=tmp_path, resume=True))
    assert result.resumed_from is None
    assert result.counts["deliveries"] == len(events)


def test_resume_refuses_a_snapshot_of_another_configuration(tmp_path):
    events = payment_log(n=12)
    run(list(deliveries_of(events)), LedgerProjection(), snapshots=Snapshots(every=5, directory=tmp_path))
    with pytest.raises(ReplayError, match="config"):
        run(list(deliveries_of(events)), LedgerProjection(hold_ns=1), snapshots=Snapshots(directory=tmp_path, resume=True))


def test_resume_refuses_a_snapshot_of_another_format(tmp_path):
    import msgspec

    from replay.core._snapshot import FORMAT, Snapshot

    events = payment_log(n=20)
    run(list(deliveries_of(events)), LedgerProjection(), snapshots=Snapshots(every=5, directory=tmp_path))
    newest = sorted(tmp_path.glob("snapshot-*.msgpack"))[-1]
    snap = msgspec.msgpack.decode(newest.read_bytes(), type=Snapshot)
    newest.write_bytes(msgspec.msgpack.encode(msgspec.structs.replace(snap, format=FORMAT + 1)))
    with pytest.raises(ReplayError, match=f"format {FORMAT + 1}.*replay from the start"):
        run(list(deliveries_of(events)), LedgerProjection(), snapshots=Snapshots(directory=tmp_path, resume=True))


def test_resume_refuses_different_deliveries(tmp_path):
    events = payment_log(n=12)
    run(list(deliveries_of(events)), LedgerProjection(), snapshots=Snapshots(every=5, directory=tmp_path))
    shifted = [Delivery(e, e.recorded_at + 1) for e in events]
    with pytest.raises(ReplayError, match="deliveries differ"):
        run(shifted, LedgerProjection(), snapshots=Snapshots(directory=tmp_path, resume=True))


def test_snapshot_every_must_be_positive(tmp_path):
    with pytest.raises(ReplayError, match="positive integer"):
        run([], LedgerProjection(), snapshots=Snapshots(every=0, directory=tmp_path, resume=True))
