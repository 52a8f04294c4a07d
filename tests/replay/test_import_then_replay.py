"""Replaying a store a log was imported into is the same replay as replaying the log file."""

from __future__ import annotations

from pathlib import Path

from replay_helpers import LedgerProjection, payment_log

from eventstore import open_store
from replay import deliveries_of, export_log, import_log, read_log, run

IMPORT_TIME = 4 * 10**18  # the store's clock during the import: far after every event


def test_import_keeps_receive_times_so_store_and_file_replays_agree(tmp_path: Path) -> None:
    log = tmp_path / "payments.jsonl"
    export_log(payment_log(n=40), log)
    with open_store(f"embedded://{tmp_path / 'events.db'}", clock=lambda: IMPORT_TIME) as store:
        assert import_log(log, store).imported == 40 + 40 // 7
        from_store = list(store.read_all())
        replayed_store = run(deliveries_of(from_store), LedgerProjection())
    from_file = list(read_log(log))
    replayed_file = run(deliveries_of(from_file), LedgerProjection())

    assert [e.recorded_at for e in from_store] == [e.recorded_at for e in from_file]
    assert all(e.recorded_at < IMPORT_TIME for e in from_store), "the import time leaked into recorded_at"
    assert replayed_store.digest == replayed_file.digest
    assert replayed_store.decisions == replayed_file.decisions and replayed_file.decisions


def test_a_store_imported_by_stream_is_refused_with_what_to_do(tmp_path: Path) -> None:
    import pytest

    from replay import ReplayError

    log = tmp_path / "payments.jsonl"
    export_log(payment_log(n=40, accounts=3), log)
    with open_store(f"embedded://{tmp_path / 'events.db'}") as store:
        import_log(log, store, order="stream")  # groups each batch by stream: receive times go back
        with pytest.raises(ReplayError, match=r"position \d+ .*received at .*--order stream.*file order"):
            run(deliveries_of(store.read_all()), LedgerProjection())
