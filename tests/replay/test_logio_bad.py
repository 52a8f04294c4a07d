"""EF-002 at the log boundary: every bad line is quarantined whole, with its line and reason;
every good line is still imported; output paths cannot be turned against the user."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from pathlib import Path

import msgspec
import polars as pl
import pytest

from eventstore import EventStore, NewEvent, open_store
from eventstore.cli import main
from replay import LogError, Rejection, export_log, import_log, read_log

GOOD = b'{"stream":"acct-1","type":"PaymentReceived","data":{"account_id":"1","payment_id":"p%d","amount_minor":5}}'

# (bytes of the line, a fragment of the reason it is rejected)
BAD_LINES: list[tuple[bytes, str]] = [
    (b"\xff\xfe\x00garbage \x9c bytes", "not valid"),
    (b'{"stream":"acct-1","type":"PaymentReceived","data":{"account_id":"1"', "truncated"),
    (b"[1, 2, 3]", "must be a JSON object"),
    (b'{"stream":42,"type":"T","data":{}}', "'stream'"),
    (b'{"stream":"s","type":"T","data":[1,2]}', "'data' must be an object or a base64 string"),
    (b'{"stream":"s","type":"T","data":{},"occurred_at":true}', "'occurred_at'"),
    (b'{"stream":"s","type":"T","data":{},"occurred_at":1.5}', "'occurred_at'"),
    (b'{"stream":"s","type":"T","data":{},"occurred_at":"yesterday"}', "RFC 3339"),
    (b'{"stream":"s","type":"T","data":{},"occurred_at":99999999999999999999}', "out of range"),
    (b'{"stream":"s","type":"T","data":{},"id":{"x":1}}', "'id'"),
    (b'{"stream":"s","type":"T","data":{},"metadata":"not json"}', "'metadata'"),
    (b'{"stream":"s","type":"T","data":{},"metadata":{"source":"a\\u0007b"}}', "control character"),
    (b'{"type":"T","data":{}}', "missing field 'stream'"),
    (b'{"stream":"s","data":{}}', "missing field 'type'"),
    (b'{"stream":"s","type":"T"}', "missing field 'data'"),
    (b'{"stream":"s","type":"T","data":"not base64!"}', "base64"),
    (b'{"stream":"acct-1","type":"PaymentReceived","data":{"account_id":"1","payment_id":"p","amount_minor":"5"}}', "PaymentReceived"),
    (b'{"stream":"acct-1","type":"MeterReading","data":{"meter_id":"m","account_id":"a","register_kwh":1,"evil":1}}', "MeterReading"),
    (b'{"stream":"acct\\n1","type":"T","data":{}}', "control character"),
    (b'{"stream":"$all","type":"T","data":{}}', "reserved"),
    (b'{"stream":"' + b"x" * 600 + b'","type":"T","data":{}}', "limit is 500"),
    (b'{"stream":"s","type":"T\\u0000; DROP TABLE events","data":{}}', "control character"),
    (b'{"stream":"s\\ud800","type":"T","data":{}}', "surrogate"),
]


@pytest.fixture(params=["memory", "embedded"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EventStore]:
    uri = "memory://" if request.param == "memory" else f"embedded://{tmp_path / 'events.db'}"
    with open_store(uri) as opened:
        yield opened


def mixed_log(path: Path) -> list[int]:
    """Good lines around every bad one; returns the line numbers of the bad lines."""
    lines, bad_at = [], []
    for index, (bad, _reason) in enumerate(BAD_LINES):
        lines.append(GOOD % index)
        lines.append(bad)
        bad_at.append(len(lines))
    lines.append(GOOD % 999)
    path.write_bytes(b"\n".join(lines) + b"\n")
    return bad_at


def quarantined(path: Path) -> list[dict]:
    return [msgspec.json.decode(line) for line in path.read_bytes().splitlines()]


def raw_of(record: dict) -> bytes:
    return record["raw"].encode() if "raw" in record else base64.b64decode(record["raw_base64"])


@pytest.mark.case("EF-002")
def test_EF_002_bad_lines_are_quarantined_whole_and_good_lines_imported(store: EventStore, tmp_path: Path) -> None:
    log, quarantine = tmp_path / "prod.jsonl", tmp_path / "bad.jsonl"
    bad_at = mixed_log(log)

    report = import_log(log, store, quarantine=quarantine, batch=7)

    good = len(BAD_LINES) + 1
    assert (report.read, report.imported, report.rejected) == (good + len(BAD_LINES), good, len(BAD_LINES))
    assert report.quarantine == str(quarantine)
    assert sorted(msgspec.json.decode(e.data)["payment_id"] for e in store.read_all()) == sorted(
        f"p{i}" for i in [*range(len(BAD_LINES)), 999]
    )
    records = quarantined(quarantine)
    assert [r["line"] for r in records] == bad_at
    physical = log.read_bytes().split(b"\n")
    for record, (bad, reason) in zip(records, BAD_LINES, strict=True):
        assert reason in record["reason"], record
        assert raw_of(record) == bad == physical[record["line"] - 1]
        assert record["source"] == str(log)


@pytest.mark.case("EF-002")
def test_EF_002_read_log_skips_and_reports_the_same_lines(tmp_path: Path) -> None:
    log = tmp_path / "prod.jsonl"
    bad_at = mixed_log(log)
    seen: list[Rejection] = []

    reader = read_log(log, on_reject=seen.append)
    events = list(reader)

    assert len(events) == len(BAD_LINES) + 1
    assert [r.where for r in seen] == bad_at
    assert reader.report.rejected == len(BAD_LINES)
    with pytest.raises(LogError, match=f"line {bad_at[0]}: not valid"):
        list(read_log(log))  # neither quarantine nor on_reject: the first bad line stops it, loudly


@pytest.mark.case("EF-002")
def test_EF_002_injection_and_traversal_strings_are_just_names(store: EventStore, tmp_path: Path) -> None:
    names = ["acct-'; DROP TABLE events;--", "../../../../tmp/owned", "<script>alert(1)</script>",
             "log-${jndi:ldap://x/a}", "meter-{meter_id}", "Robert'); DELETE FROM streams;--"]
    log = tmp_path / "names.jsonl"
    log.write_bytes(b"".join(msgspec.json.encode({"stream": n, "type": n, "data": {}}) + b"\n" for n in names))
    before = set(os.listdir(tmp_path))

    report = import_log(log, store)

    assert (report.imported, report.rejected) == (len(names), 0)
    assert [(e.stream, e.type) for e in store.read_all()] == [(n, n) for n in names]
    assert set(os.listdir(tmp_path)) - before <= {"events.db-wal", "events.db-shm"}  # no file from a name
    assert not Path("/tmp/owned").exists()


@pytest.mark.case("EF-002")
def test_EF_002_an_id_reused_in_another_stream_is_rejected_not_lost(store: EventStore, tmp_path: Path) -> None:
    log, quarantine = tmp_path / "ids.jsonl", tmp_path / "q.jsonl"
    log.write_text(
        '{"stream":"a","type":"T","data":{"n":1},"id":"dup"}\n'
        '{"stream":"a","type":"T","data":{"n":2},"id":"other"}\n'
        '{"stream":"b","type":"T","data":{"n":3},"id":"dup"}\n'
        '{"stream":"b","type":"T","data":{"n":4},"id":"fine"}\n'
    )
    report = import_log(log, store, quarantine=quarantine)

    assert (report.imported, report.rejected) == (3, 1)
    assert [r["line"] for r in quarantined(quarantine)] == [3]
    assert "stream 'a'" in quarantined(quarantine)[0]["reason"]
    assert [msgspec.json.decode(e.data)["n"] for e in store.read_all()] == [1, 2, 4]
    assert [e.stream for e in read_log(log, on_reject=lambda r: None)] == ["a", "a", "b"]


@pytest.mark.case("EF-002")
def test_EF_002_bad_csv_rows_keep_their_line_numbers(tmp_path: Path) -> None:
    log, quarantine = tmp_path / "x.csv", tmp_path / "q.jsonl"
    log.write_bytes(
        b"stream,type,data,occurred_at\n"
        b's1,T,"{""a"":1}",5\n'
        b"s1,T,\xff\xfebad,6\n"
        b's1,T,"{""multi"":\n""line""}",7\n'  # one record over two lines: the next starts on line 6
        b"s1,T\n"
        b"s1,T,AAE=,not-a-time\n"
        b"s1,T,AAE=,8\n"
    )
    store = open_store("memory://")
    report = import_log(log, store, quarantine=quarantine)

    assert (report.imported, report.rejected) == (3, 3)
    assert [(r["line"], raw_of(r)) for r in quarantined(quarantine)] == [
        (3, b"s1,T,\xff\xfebad,6"), (6, b"s1,T"), (7, b"s1,T,AAE=,not-a-time"),
    ]
    assert [e.occurred_at for e in store.read_all()] == [5, 7, 8]


@pytest.mark.case("EF-002")
def test_EF_002_bad_parquet_rows_are_quarantined_by_row(tmp_path: Path) -> None:
    log, quarantine = tmp_path / "x.parquet", tmp_path / "q.jsonl"
    pl.DataFrame({
        "stream": ["s", None, "s", "s\x1b[2J", "s"],
        "type": ["T", "T", "MeterReading", "T", "T"],
        "data": ["{}", "{}", '{"meter_id":1}', "{}", "AAE="],
        "occurred_at": ["1", "2", "3", "4", "2024-01-01T00:00:00Z"],
    }).write_parquet(log)

    report = import_log(log, open_store("memory://"), quarantine=quarantine)

    assert (report.imported, report.rejected) == (2, 3)
    records = quarantined(quarantine)
    assert [r["row"] for r in records] == [2, 3, 4]
    assert msgspec.json.decode(records[2]["raw"])["stream"] == "s\x1b[2J"


def test_garbage_instead_of_a_parquet_file_is_a_clear_error(tmp_path: Path) -> None:
    log = tmp_path / "x.parquet"
    log.write_bytes(b"PAR1 this is not parquet at all")
    with pytest.raises(LogError, match="not a readable Parquet file"):
        import_log(log, open_store("memory://"))


def test_an_overlong_line_is_quarantined_and_the_next_line_still_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import replay.log._read as logread

    monkeypatch.setattr(logread, "MAX_LINE_BYTES", 64)
    log, quarantine = tmp_path / "long.jsonl", tmp_path / "q.jsonl"
    log.write_bytes(b'{"stream":"s","type":"T","data":"' + b"A" * 300 + b'"}\n{"stream":"s","type":"T","data":{}}\n')

    report = import_log(log, open_store("memory://"), quarantine=quarantine)

    assert (report.imported, report.rejected) == (1, 1)
    assert quarantined(quarantine)[0]["line"] == 1
    assert "longer than 64 bytes" in quarantined(quarantine)[0]["reason"]


# -- output paths -------------------------------------------------------------------
def test_quarantine_cannot_be_the_log_itself(tmp_path: Path) -> None:
    log = tmp_path / "prod.jsonl"
    mixed_log(log)
    content = log.read_bytes()
    for alias in (log, tmp_path / "sub" / ".." / "prod.jsonl"):
        (tmp_path / "sub").mkdir(exist_ok=True)
        with pytest.raises(LogError, match="is the input file"):
            import_log(log, open_store("memory://"), quarantine=alias)
    assert log.read_bytes() == content


def test_quarantine_and_export_refuse_symlinks_directories_and_control_characters(tmp_path: Path) -> None:
    log = tmp_path / "prod.jsonl"
    mixed_log(log)
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    link = tmp_path / "link.jsonl"
    link.symlink_to(victim)
    store = open_store("memory://")
    store.append("s", [NewEvent("T", b"{}")])
    for bad, match in [(link, "symbolic link"), (tmp_path, "directory"), (str(tmp_path / "a\nb.jsonl"), "control"),
                       (str(tmp_path / "a\x00b.jsonl"), "control")]:
        with pytest.raises(LogError, match=match):
            import_log(log, store, quarantine=bad)
        with pytest.raises(LogError, match=match):
            export_log(store, bad, format="jsonl", overwrite=True)
    assert victim.read_text() == "keep me"
    assert store.last_position() == 1  # refused before anything was imported


def test_export_refuses_to_overwrite_and_leaves_nothing_half_written(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    out.write_text("precious")
    store = open_store("memory://")
    store.append("s", [NewEvent("T", b"{}")])
    with pytest.raises(LogError, match="exists"):
        export_log(store, out)
    assert out.read_text() == "precious"

    def failing() -> Iterator:
        yield from store.read_all()
        raise RuntimeError("source broke mid-export")

    target = tmp_path / "new.parquet"
    with pytest.raises(RuntimeError):
        export_log(failing(), target)
    assert sorted(os.listdir(tmp_path)) == ["out.jsonl"]  # no target, no .partial left behind


# -- command line -------------------------------------------------------------------------
@pytest.mark.case("EF-002")
def test_EF_002_cli_import_exits_1_naming_the_count_and_the_quarantine(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "prod.jsonl"
    mixed_log(log)
    uri = f"embedded://{tmp_path / 'events.db'}"

    assert main(["import", str(log), "--store", uri]) == 1
    err = capsys.readouterr().err
    assert f"{len(BAD_LINES)} line(s) rejected" in err
    assert f"{log}.rejected.jsonl" in err
    assert len(quarantined(Path(f"{log}.rejected.jsonl"))) == len(BAD_LINES)

    clean = tmp_path / "clean.jsonl"
    clean.write_bytes(GOOD % 1 + b"\n")
    assert main(["import", str(clean), "--store", uri]) == 0
    assert main(["import", str(tmp_path / "missing.jsonl"), "--store", uri]) == 3


@pytest.mark.case("EF-002")
def test_EF_002_bad_lines_can_also_be_kept_as_rejected_events(store: EventStore, tmp_path: Path) -> None:
    from eventstore.payloads import Rejected, decode_payload

    log = tmp_path / "prod.jsonl"
    bad_at = mixed_log(log)

    first = import_log(log, store, quarantine=tmp_path / "q.jsonl", rejected_stream="import-rejected")
    again = import_log(log, store, quarantine=tmp_path / "q.jsonl", rejected_stream="import-rejected")

    kept = [decode_payload(e) for e in store.read_stream("import-rejected")]
    assert all(isinstance(k, Rejected) for k in kept)
    assert [k.where for k in kept] == [f"line {n}" for n in bad_at]  # once each, despite the re-import
    assert [k.raw for k in kept] == [bad for bad, _ in BAD_LINES]
    assert (first.imported, again.imported, again.rejected) == (len(BAD_LINES) + 1, 0, len(BAD_LINES))
    with pytest.raises(LogError, match="reserved"):
        import_log(log, store, rejected_stream="$rejected")
