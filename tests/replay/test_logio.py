"""Log import/export: round trips per format, mappings, deterministic ids, idempotent re-import."""

from __future__ import annotations

import gzip
import tracemalloc
import uuid
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from eventstore import EventStore, NewEvent, RecordedEvent, open_store
from projections.payloads import MeterReading, ModbusFrame, PaymentReceived
from replay import ImportReport, LogMapping, export_log, import_log, load_mapping, read_log
from replay.log._record import NAMESPACE

SECOND = 1_000_000_000
FORMATS = ["jsonl", "csv", "parquet"]


@pytest.fixture(params=["memory", "embedded"])
def store_uri(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return "memory://" if request.param == "memory" else f"embedded://{tmp_path / 'events.db'}"


@pytest.fixture
def store(store_uri: str) -> Iterator[EventStore]:
    with open_store(store_uri) as opened:
        yield opened


def fill(store: EventStore) -> list[RecordedEvent]:
    """A varied log: known payloads, raw and non-canonical bytes, metadata, odd stream names."""
    store.append("meter-1", [NewEvent.of(MeterReading("1", "a", 10.5), occurred_at=5 * SECOND)])
    store.append("acct-a", [
        NewEvent.of(PaymentReceived("a", "p1", 1250), metadata={"source": "bank", "batch": "7"}),
        NewEvent("Opaque", b"\x00\xff\x10binary"),
    ])
    store.append("meter-1", [
        NewEvent.of(MeterReading("1", "a", 11.0, estimated=True), occurred_at=6 * SECOND),
        NewEvent("Spaced", b'{"a": 1,  "b": [1, 2]}'),  # JSON, but not canonical: must survive byte for byte
        NewEvent("Empty", b""),
    ])
    store.append("plc-7", [NewEvent.of(ModbusFrame("plc-7", 1, 3, 100, [1, 2], raw=b"\x01\x03\x04"))])
    store.append("acct-'; DROP TABLE events;--", [NewEvent("Note", b'{"text":"caf\\u00e9 \\n line"}')])
    return list(store.read_all())


def essence(event: RecordedEvent) -> tuple:
    """Everything an import must preserve (recorded_at is the importing store's own)."""
    return (event.id, event.stream, event.revision, event.type, event.data, event.occurred_at, event.metadata)


@pytest.mark.parametrize("format", FORMATS)
def test_export_then_import_gives_the_same_events(format: str, store: EventStore, tmp_path: Path) -> None:
    source = open_store("memory://")
    original = fill(source)
    path = tmp_path / f"log.{format}"

    assert export_log(source, path) == len(original)
    report = import_log(path, store)

    assert report == ImportReport(str(path), read=len(original), imported=len(original))
    copied = list(store.read_all())
    assert [essence(e) for e in copied] == [essence(e) for e in original]
    assert [e.position for e in copied] == [e.position for e in original]  # file order kept


@pytest.mark.parametrize("format", FORMATS)
def test_read_log_replays_an_export_exactly(format: str, tmp_path: Path) -> None:
    source = open_store("memory://")
    original = fill(source)
    path = tmp_path / f"log.{format}"
    export_log(source, path)

    assert list(read_log(path)) == original


@pytest.mark.parametrize("format", FORMATS)
def test_reimport_adds_nothing(format: str, store_uri: str, tmp_path: Path) -> None:
    source = open_store("memory://")
    original = fill(source)
    path = tmp_path / f"log.{format}"
    export_log(source, path)
    store = open_store(store_uri)
    import_log(path, store, batch=3)
    if store_uri.startswith("embedded"):  # reopened: dedupe must be durable on disk
        store.close()
        store = open_store(store_uri)
    with store:
        again = import_log(path, store, batch=5)  # batched differently: partial repeats per append
        assert (again.read, again.imported, again.already_present) == (len(original), 0, len(original))
        assert store.last_position() == len(original)


def test_ids_are_deterministic_without_an_id_field(tmp_path: Path) -> None:
    path = tmp_path / "noid.jsonl"
    line = b'{"stream":"s-1","type":"Ping","data":{"n":1},"occurred_at":"2024-05-01T00:00:00Z"}\n'
    path.write_bytes(line + b'{"stream":"s-1","type":"Ping","data":{"n":2}}\n' + line)
    first, second = open_store("memory://"), open_store("memory://")

    report = import_log(path, first)
    import_log(path, second)

    assert (report.imported, report.already_present) == (2, 1)  # the repeated line is the same event
    assert [e.id for e in first.read_all()] == [e.id for e in second.read_all()]
    assert import_log(path, first).imported == 0


def test_source_ids_map_to_uuids(tmp_path: Path) -> None:
    kept = uuid.UUID("0b6f4a52-0000-4000-8000-000000000001")
    path = tmp_path / "ids.jsonl"
    path.write_text(
        f'{{"stream":"s","type":"T","data":{{}},"id":"{kept}"}}\n'
        '{"stream":"s","type":"T","data":{},"id":"msg-42"}\n'
        '{"stream":"s","type":"T","data":{},"id":43}\n'
    )
    ids = [e.id for e in read_log(path)]
    assert ids == [kept, uuid.uuid5(NAMESPACE, "id:msg-42"), uuid.uuid5(NAMESPACE, "id:43")]


PRODUCTION_LINES = (
    '{"msg_id":"r-1","kind":"MeterReading","ts":1714564800123,'
    '"payload":{"meter_id":"m7","account_id":"a1","register_kwh":3.5}}\n'
    '{"msg_id":"r-2","kind":"MeterReading","ts":1714564860000,'
    '"payload":{"meter_id":"m8","account_id":"a2","register_kwh":1.0}}\n'
)


@pytest.mark.parametrize("suffix", [".json", ".toml"])
def test_mapping_file_renames_fields_and_builds_streams(suffix: str, tmp_path: Path) -> None:
    log = tmp_path / "prod.jsonl"
    log.write_text(PRODUCTION_LINES)
    mapping = tmp_path / f"mapping{suffix}"
    values = {"type": "kind", "occurred_at": "ts", "id": "msg_id", "data": "payload",
              "stream_template": "meter-{meter_id}", "time_unit": "ms"}
    if suffix == ".toml":
        mapping.write_text("".join(f'{k} = "{v}"\n' for k, v in values.items()))
    else:
        mapping.write_bytes(msgspec.json.encode(values))

    events = list(read_log(log, mapping))

    assert [(e.stream, e.type, e.occurred_at) for e in events] == [
        ("meter-m7", "MeterReading", 1714564800123 * 1_000_000),
        ("meter-m8", "MeterReading", 1714564860000 * 1_000_000),
    ]
    assert events[0].id == uuid.uuid5(NAMESPACE, "id:r-1")
    assert msgspec.json.decode(events[0].data)["register_kwh"] == 3.5


def test_stream_template_refuses_attribute_lookups() -> None:
    for template in ("meter-{x.__class__}", "meter-{x[0]}", "meter-{x!r}", "meter-{x:>9}", "no-fields", "a-{"):
        with pytest.raises(ValueError, match="template"):
            load_mapping({"stream_template": template})


def test_unknown_mapping_keys_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="stram"):
        load_mapping({"stram": "s"})


def test_csv_header_without_required_columns_is_refused_up_front(tmp_path: Path) -> None:
    log = tmp_path / "x.csv"
    log.write_text("kind,payload\nT,{}\n")
    with pytest.raises(ValueError, match="no column 'stream'"):
        list(read_log(log))
    events = list(read_log(log, LogMapping(type="kind", data="payload", stream_template="all-{kind}")))
    assert [(e.stream, e.type) for e in events] == [("all-T", "T")]


def test_rfc3339_times_keep_nanoseconds_and_offsets(tmp_path: Path) -> None:
    log = tmp_path / "t.jsonl"
    log.write_text(
        '{"stream":"s","type":"T","data":{},"occurred_at":"1970-01-01T00:00:01.000000007Z"}\n'
        '{"stream":"s","type":"T","data":{"b":1},"occurred_at":"1970-01-01T01:00:00+01:00"}\n'
        '{"stream":"s","type":"T","data":{"c":1},"occurred_at":"2024-02-29 23:59:59.5-00:30"}\n'
    )
    times = [e.occurred_at for e in read_log(log)]
    assert times == [SECOND + 7, 0, 1709251199 * SECOND + 500_000_000 + 1800 * SECOND]


def test_read_log_positions_revisions_and_recorded_times(tmp_path: Path) -> None:
    log = tmp_path / "order.jsonl"
    log.write_text(
        '{"stream":"a","type":"T","data":{"i":1},"occurred_at":100}\n'
        '{"stream":"b","type":"T","data":{"i":2}}\n'
        '{"stream":"a","type":"T","data":{"i":3},"occurred_at":50}\n'  # late: recorded after the others
        '{"stream":"a","type":"T","data":{"i":4},"occurred_at":200,"recorded_at":300}\n'
    )
    events = list(read_log(log))
    assert [(e.stream, e.revision, e.position) for e in events] == [("a", 0, 1), ("b", 0, 2), ("a", 1, 3), ("a", 2, 4)]
    assert [(e.occurred_at, e.recorded_at) for e in events] == [(100, 100), (101, 101), (50, 101), (200, 300)]


def test_file_order_is_kept_across_streams_unless_grouping_is_asked_for(tmp_path: Path) -> None:
    log = tmp_path / "mixed.jsonl"
    log.write_text("".join(f'{{"stream":"s{i % 2}","type":"T","data":{{"i":{i}}}}}\n' for i in range(6)))
    in_order, grouped = open_store("memory://"), open_store("memory://")

    import_log(log, in_order)
    import_log(log, grouped, order="stream")

    def index(e: RecordedEvent) -> int:
        return msgspec.json.decode(e.data)["i"]

    assert [index(e) for e in in_order.read_all()] == [0, 1, 2, 3, 4, 5]
    assert [index(e) for e in grouped.read_all()] == [0, 2, 4, 1, 3, 5]


def test_progress_reports_counts_per_batch(tmp_path: Path) -> None:
    log = tmp_path / "p.jsonl"
    log.write_text("".join(f'{{"stream":"s","type":"T","data":{{"i":{i}}}}}\n' for i in range(25)))
    seen: list[int] = []

    import_log(log, open_store("memory://"), batch=10, progress=lambda r: seen.append(r.imported))

    assert seen == [10, 20, 25]


def test_gzipped_logs_are_read(tmp_path: Path) -> None:
    log = tmp_path / "z.jsonl.gz"
    with gzip.open(log, "wt") as f:
        f.write('{"stream":"s","type":"T","data":"AAE="}\n')
    assert [e.data for e in read_log(log)] == [b"\x00\x01"]


def _import_peak(path: Path, lines: int, db: Path) -> int:
    path.write_text("".join(
        f'{{"stream":"meter-{i // 100}","type":"MeterReading","occurred_at":{i},'
        f'"data":{{"meter_id":"{i % 50}","account_id":"a","register_kwh":{i}.5}}}}\n' for i in range(lines)
    ))
    with open_store(f"embedded://{db}") as store:
        tracemalloc.start()
        try:
            report = import_log(path, store, batch=200)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert report.imported == lines
    return peak


def test_import_memory_does_not_grow_with_the_log(tmp_path: Path) -> None:
    small = _import_peak(tmp_path / "small.jsonl", 600, tmp_path / "small.db")
    large = _import_peak(tmp_path / "large.jsonl", 4_800, tmp_path / "large.db")
    assert large < small * 1.5 + 256 * 1024, (small, large)


def test_parquet_timestamp_columns_are_read_as_nanoseconds(tmp_path: Path) -> None:
    import datetime as dt

    import polars as pl

    log = tmp_path / "ts.parquet"
    moment = dt.datetime(2024, 1, 1, 0, 0, 0, 123456)
    pl.DataFrame({"stream": ["s"], "type": ["T"], "data": ["{}"], "occurred_at": [moment]}).with_columns(
        pl.col("occurred_at").cast(pl.Datetime("us", "UTC"))
    ).write_parquet(log)
    assert [e.occurred_at for e in read_log(log)] == [1704067200_123456000]


def test_cli_import_with_mapping_flags_then_export_round_trips(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from eventstore.cli import main

    log = tmp_path / "prod.jsonl"
    log.write_text(PRODUCTION_LINES)
    uri = f"embedded://{tmp_path / 'events.db'}"
    flags = ["--type-field", "kind", "--occurred-at-field", "ts", "--id-field", "msg_id", "--data-field", "payload",
             "--stream-template", "meter-{meter_id}", "--time-unit", "ms"]

    assert main(["import", str(log), "--store", uri, *flags]) == 0
    assert "2 imported, 0 already present, 0 rejected" in capsys.readouterr().out
    assert main(["import", str(log), "--store", uri, *flags]) == 0
    assert "0 imported, 2 already present" in capsys.readouterr().out

    out = tmp_path / "out.parquet"
    assert main(["export", "--store", uri, "--out", str(out)]) == 0
    assert main(["export", "--store", uri, "--out", str(out)]) == 2  # exists: a usage error without --force, as for generate
    assert "exists" in capsys.readouterr().err
    assert main(["export", "--store", uri, "--out", str(out), "--force"]) == 0
    with open_store(uri) as store:
        assert [essence(e) for e in read_log(out)] == [essence(e) for e in store.read_all()]
    assert [e.stream for e in read_log(out)] == ["meter-m7", "meter-m8"]


def test_cli_import_refuses_a_bad_mapping_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from eventstore.cli import main

    log, mapping = tmp_path / "prod.jsonl", tmp_path / "m.toml"
    log.write_text(PRODUCTION_LINES)
    mapping.write_text('stream_template = "meter-{meter_id.__class__}"\n')
    assert main(["import", str(log), "--store", "memory://", "--mapping", str(mapping)]) == 3
    assert "plain field name" in capsys.readouterr().err
