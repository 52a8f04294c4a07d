"""The ``deliveries`` columns built for the trace writer and their Parquet layout.

``DeliveryColumns`` converts rows as they come instead of at the flush; these
tests hold it to the plain per-row conversion (``delivery_columns`` then
``arrow_batch``), including the inputs its fast paths must hand back to the
general one, and check that DuckDB and polars read the written files as the
run collected them.
"""

from __future__ import annotations

import uuid

import duckdb
import msgspec
import polars as pl
import pyarrow.parquet as pq
import pytest
from polars.testing import assert_frame_equal
from replay_helpers import LedgerProjection, payment_log

from eventstore import Metadata
from replay import Delivery, deliveries_of, run
from replay.core._buffer import delivery_columns, delivery_core
from replay.trace._writer import DeliveryColumns, arrow_batch, parquet_layout


def _odd_events():
    """Events whose strings and ids the fast paths must not mangle."""
    events = payment_log(n=12, reversals=False)
    odd = {
        1: {"metadata": Metadata(source=None)},
        2: {"stream": "acct\x1fwith-separator"},
        3: {"stream": "", "metadata": Metadata(source="")},
        4: {"stream": "kontō-ß-✓", "metadata": Metadata(source="zählerstand")},
        5: {"type": 'Quote"d\\Type'},
    }
    return [msgspec.structs.replace(e, **odd.get(i, {})) for i, e in enumerate(events)]


def _chunks(seqs, items, identity, size):
    for i in range(0, len(items), size):
        yield delivery_core(seqs[i : i + size], items[i : i + size], identity)


def _built(items, identity, size=4):
    seqs = list(range(10, 10 + 2 * len(items), 2))  # gaps, as timer firings leave them
    columns = DeliveryColumns(identity)
    expected = None
    for core in _chunks(seqs, items, identity, size):
        plain = delivery_columns(core)
        expected = plain if expected is None else [a + b for a, b in zip(expected, plain, strict=True)]
        columns.add(core)
    assert expected is not None and columns.n == len(items)
    return columns.arrays(), arrow_batch("deliveries", "r", expected).columns[1:]


@pytest.mark.parametrize("identity", [True, False])
def test_built_columns_equal_the_plain_conversion(identity):
    events = _odd_events()
    items = events if identity else [
        Delivery(e, e.recorded_at + 5 * i, copy=i % 2, perturbation="dupli\x1fcate" if i == 7
                 else ("delayed" if i % 3 else "none"), delay_ns=5 * i)
        for i, e in enumerate(events)]
    built, plain = _built(items, identity)
    assert len(built) == len(plain) == 12
    for got, want in zip(built, plain, strict=True):
        assert got.type == want.type
        assert got.to_pylist() == want.to_pylist()
    assert built[5].to_pylist()[1] is None  # source
    assert built[3].to_pylist()[2] == "acct\x1fwith-separator"


def test_uuid_ids_are_sliced_and_other_ids_decoded():
    events = payment_log(n=6, reversals=False)
    built, plain = _built(events, True, size=5)
    assert built[2].to_pylist() == [str(e.id) for e in events] == plain[2].to_pylist()
    # ids that are not UUIDs, some 36 characters long with quotes in them, take the general way
    odd_ids = ['a"' + "x" * 34, "short", "y" * 36, 'q\\"' + "z" * 33, "-" * 36, "w" * 36]
    odd = [msgspec.structs.replace(e, id=i) for e, i in zip(events, odd_ids, strict=True)]
    built, plain = _built(odd, True, size=5)
    assert built[2].to_pylist() == odd_ids == plain[2].to_pylist()
    # every id 38 bytes of JSON with its quotes in place, but one escaped: not sliced
    escaped = ["y" * 36, "\\" + "v" * 34, "-" * 36, "w" * 36, "x" * 36, "z" * 36]
    odd = [msgspec.structs.replace(e, id=i) for e, i in zip(events, escaped, strict=True)]
    built, plain = _built(odd, True, size=5)
    assert built[2].to_pylist() == escaped == plain[2].to_pylist()


def test_written_deliveries_read_back_as_collected_in_duckdb_and_polars(tmp_path):
    events = _odd_events()
    schedule = [Delivery(e, e.recorded_at, copy=c, perturbation="duplicate" if c else "none")
                for e in events for c in (0, 1)]
    result = run(schedule, LedgerProjection(), trace_dir=tmp_path, collect=True, run_id="r")
    path = str(tmp_path / "deliveries.parquet")
    collected = result.tables["deliveries"]
    assert_frame_equal(pl.read_parquet(path), collected)
    from_duckdb = duckdb.sql(f"SELECT * FROM read_parquet('{path}') ORDER BY seq").pl()
    assert_frame_equal(from_duckdb, collected)
    nulls = duckdb.sql(f"SELECT count(*) FROM '{path}' WHERE source IS NULL").fetchall()
    assert nulls == [(collected["source"].null_count(),)] and 0 < nulls[0][0] < len(schedule)


def test_deliveries_parquet_uses_the_declared_layout_and_is_byte_identical(tmp_path):
    events = payment_log(n=40)
    for name in ("a", "b"):
        run(deliveries_of(events), LedgerProjection(), trace_dir=tmp_path / name, run_id="same")
    data = (tmp_path / "a" / "deliveries.parquet").read_bytes()
    assert data == (tmp_path / "b" / "deliveries.parquet").read_bytes()
    group = pq.ParquetFile(tmp_path / "a" / "deliveries.parquet").metadata.row_group(0)
    chunk = {group.column(i).path_in_schema: group.column(i) for i in range(group.num_columns)}
    layout = parquet_layout("deliveries")
    for name in layout["use_dictionary"]:
        assert chunk[name].has_dictionary_page, name
    for name, encoding in layout["column_encoding"].items():
        assert encoding in chunk[name].encodings, name
    assert chunk["seq"].is_stats_set and not chunk["event_id"].is_stats_set
    assert str(uuid.UUID(pl.read_parquet(tmp_path / "a" / "deliveries.parquet")["event_id"][0]))
