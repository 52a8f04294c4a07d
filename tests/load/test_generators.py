"""The seeded log generators: determinism, validity of every line, realistic proportions."""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict

import msgspec
import pytest

from eventstore.payloads import payload_types
from load import ArrearsProfile, arrears_lines, bulk_lines, generate_arrears, generate_bulk

SMALL = ArrearsProfile(accounts=60, days=45, seed=7)


@pytest.fixture(scope="module")
def arrears_log() -> list[dict]:
    """A mid-sized log, large enough for the rare cases to show up."""
    profile = ArrearsProfile(accounts=400, days=70, seed=20240101)
    return [msgspec.json.decode(line) for line in arrears_lines(profile)]


def check_line(line: dict, where: str) -> None:
    """Fail with the line number unless ``line`` is a valid event in the log format of docs/architecture.md."""
    assert set(line) == {"id", "stream", "type", "occurred_at", "recorded_at", "data", "metadata"}, where
    uuid.UUID(line["id"])
    assert isinstance(line["occurred_at"], int) and line["occurred_at"] > 0, where
    assert line["type"] in payload_types(), where
    try:
        msgspec.convert(line["data"], payload_types()[line["type"]])
    except msgspec.ValidationError as e:
        pytest.fail(f"{where}: {line['type']} data does not fit its struct: {e}")
    assert isinstance(line["recorded_at"], int), where
    assert set(line["metadata"]) == {"source"}, where


def received(line: dict) -> int:
    return line["recorded_at"]


# -- determinism -----------------------------------------------------------
def test_same_seed_gives_byte_identical_files(tmp_path):
    a = generate_arrears(tmp_path / "a.jsonl", SMALL)
    b = generate_arrears(tmp_path / "b.jsonl", SMALL)
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    assert a.events == b.events > 0 and a.seed == 7


def test_another_seed_gives_another_log():
    other = ArrearsProfile(accounts=SMALL.accounts, days=SMALL.days, seed=8)
    assert list(arrears_lines(SMALL)) != list(arrears_lines(other))


def test_an_account_does_not_depend_on_how_many_others_there_are():
    def account_3(profile: ArrearsProfile) -> list[bytes]:
        return [line for line in arrears_lines(profile) if b'"account-000003"' in line]

    few = account_3(ArrearsProfile(accounts=5, days=30, seed=1))
    many = account_3(ArrearsProfile(accounts=50, days=30, seed=1))
    assert few == many and few


def test_an_id_never_names_two_different_events():
    """Ids come from content, so two logs from one seed share ids only for identical events."""

    def by_id(days: int) -> dict[str, tuple]:
        lines = map(msgspec.json.decode, arrears_lines(ArrearsProfile(accounts=20, days=days, seed=3)))
        return {e["id"]: (e["stream"], e["type"], e["occurred_at"], str(e["data"])) for e in lines}

    short, longer = by_id(30), by_id(45)
    shared = short.keys() & longer.keys()
    assert shared  # the calendar, at least, is the same
    assert all(short[i] == longer[i] for i in shared)


def test_summary_counts_what_was_written(tmp_path):
    summary = generate_arrears(tmp_path / "log.jsonl", SMALL)
    lines = (tmp_path / "log.jsonl").read_bytes().splitlines()
    types = Counter(msgspec.json.decode(line)["type"] for line in lines)
    assert summary.events == len(lines)
    assert summary.types == dict(types)


def test_bad_profile_is_refused_with_the_reason():
    with pytest.raises(ValueError, match="accounts and days"):
        ArrearsProfile(accounts=0)
    with pytest.raises(ValueError):
        ArrearsProfile(start="2024-13-01")


# -- validity --------------------------------------------------------------
def test_every_line_is_a_valid_event(arrears_log):
    for n, line in enumerate(arrears_log, 1):
        check_line(line, f"line {n}")


def test_lines_are_in_receive_order_and_ids_unique(arrears_log):
    times = [received(line) for line in arrears_log]
    assert times == sorted(times)
    assert len({line["id"] for line in arrears_log}) == len(arrears_log)


def test_account_events_stay_on_their_account_stream(arrears_log):
    for line in arrears_log:
        if line["stream"] != "calendar":
            assert line["stream"] == "account-" + line["data"]["account_id"][2:]


# -- realistic proportions and the awkward cases -----------------------------
def test_mix_of_event_types(arrears_log):
    types = Counter(line["type"] for line in arrears_log)
    readings = types["MeterReading"]
    assert readings > 0.85 * len(arrears_log)  # daily readings dominate, as in production
    assert types["CalendarDay"] == 70
    for rarer in ("AccountBalance", "PaymentReceived", "PaymentReversed", "CustomerFlag", "NotificationAck"):
        assert types[rarer] > 0, rarer


def test_some_readings_are_estimated_lagged_late_or_from_fast_clocks(arrears_log):
    readings = [line for line in arrears_log if line["type"] == "MeterReading"]
    estimated = sum(line["data"]["estimated"] for line in readings) / len(readings)
    assert 0.005 < estimated < 0.06
    lags = sorted(received(line) - line["occurred_at"] for line in readings)
    median_s = lags[len(lags) // 2] / 1e9
    assert 30 < median_s < 1800  # minutes, not hours
    assert lags[-1] > 24 * 3600 * 10**9  # batch uploads from lagging meters: days late
    assert lags[0] < 0  # a device clock ahead of the receiving system
    newest: dict[str, int] = {}
    older_after_newer = 0
    for line in readings:
        meter, at = line["data"]["meter_id"], line["occurred_at"]
        older_after_newer += at < newest.get(meter, 0)
        newest[meter] = max(at, newest.get(meter, 0))
    assert older_after_newer > 0


def test_payments_duplicated_and_reversed(arrears_log):
    payments = [line["data"] for line in arrears_log if line["type"] == "PaymentReceived"]
    copies = Counter(p["payment_id"] for p in payments)
    duplicated = sum(n > 1 for n in copies.values())
    assert 0 < duplicated < 0.06 * len(copies)
    paid_by = {p["payment_id"]: p["account_id"] for p in payments}
    reversals = [line["data"] for line in arrears_log if line["type"] == "PaymentReversed"]
    assert 0 < len(reversals) < 0.08 * len(copies)
    for reversal in reversals:
        assert paid_by[reversal["payment_id"]] == reversal["account_id"]  # reverses a payment seen earlier


def test_provisional_balances_are_reconciled(arrears_log):
    by_account: defaultdict[str, list[bool]] = defaultdict(list)
    for line in arrears_log:
        if line["type"] == "AccountBalance":
            by_account[line["data"]["account_id"]].append(line["data"]["provisional"])
    statements = sum(len(v) for v in by_account.values())
    provisional = sum(sum(v) for v in by_account.values())
    assert 0.02 * statements < provisional < 0.2 * statements
    for flags in by_account.values():
        if flags[-1]:
            continue  # the window closed before its reconciliation
        assert all(not later for first, later in zip(flags, flags[1:], strict=False) if first)


def test_vulnerable_flags_holidays_and_acks(arrears_log):
    flags = [line["data"] for line in arrears_log if line["type"] == "CustomerFlag"]
    flagged = {f["account_id"] for f in flags if f["active"]}
    assert 0.01 * 400 < len(flagged) < 0.1 * 400
    assert all(f["flag"] == "vulnerable" for f in flags)
    holidays = [line["data"]["date"] for line in arrears_log if line["type"] == "CalendarDay" and line["data"]["holiday"]]
    assert "2024-01-01" in holidays
    stages: defaultdict[str, set[str]] = defaultdict(set)
    for line in arrears_log:
        if line["type"] == "NotificationAck":
            stages[line["data"]["notice_id"]].add(line["data"]["stage"])
    assert any(s == {"accepted", "delivered"} for s in stages.values())
    assert any(s == {"accepted"} for s in stages.values())  # accepted, never delivered


# -- bulk ----------------------------------------------------------------------
def test_bulk_is_deterministic_exact_in_size_and_valid(tmp_path):
    summary = generate_bulk(tmp_path / "a.jsonl", 20_000, seed=3)
    generate_bulk(tmp_path / "b.jsonl", 20_000, seed=3)
    data = (tmp_path / "a.jsonl").read_bytes()
    assert data == (tmp_path / "b.jsonl").read_bytes()
    lines = [msgspec.json.decode(line) for line in data.splitlines()]
    assert summary.events == len(lines) == 20_000
    for n, line in enumerate(lines, 1):
        check_line(line, f"line {n}")
    assert [received(line) for line in lines] == sorted(received(line) for line in lines)
    assert summary.types["MeterReading"] > 0.85 * 20_000
    assert len(summary.types) == 7


def test_bulk_lines_depend_on_the_seed():
    assert list(bulk_lines(100, seed=1)) != list(bulk_lines(100, seed=2))


# -- through the real importer -------------------------------------------------
def test_generated_logs_import_without_a_single_rejection(tmp_path):
    from eventstore import open_store
    from replay import import_log, read_log

    arrears = generate_arrears(tmp_path / "arrears.jsonl", SMALL)
    bulk = generate_bulk(tmp_path / "bulk.jsonl", 3_000, seed=5)
    for summary in (arrears, bulk):
        events = list(read_log(summary.path))  # strict: the first bad line would raise
        assert len(events) == summary.events
        assert [e.recorded_at for e in events] == sorted(e.recorded_at for e in events)
        with open_store("memory://") as store:
            first = import_log(summary.path, store, quarantine=tmp_path / "q.jsonl")
            again = import_log(summary.path, store, quarantine=tmp_path / "q.jsonl")
        assert (first.imported, first.rejected) == (summary.events, 0)
        assert (again.imported, again.already_present) == (0, summary.events)
