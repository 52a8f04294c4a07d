"""The fast paths of log reading give exactly what the full paths give (issue 11).

``RecordConverter.convert_fast`` must build the very event ``convert`` builds,
or decline (None) and leave the line to ``convert``; the block reader must
find every repeated key and keep every line's number, cut and BOM rules.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventstore import open_store
from replay.log import LogMapping, import_log, read_log
from replay.log._read import _decode_block, _json_line, _line_blocks
from replay.log._record import BadRecord, RecordConverter

ENCODE = msgspec.json.Encoder()

texts = st.one_of(
    st.sampled_from(["s", "account-1", "MeterReading", "T", "", "$sys", "a\x00b", "é", "x" * 600]),
    st.text(max_size=12),
)
ids = st.one_of(
    st.none(), st.uuids().map(str), st.uuids().map(lambda u: str(u).upper()), st.uuids().map(lambda u: u.hex),
    st.uuids().map(lambda u: "{" + str(u) + "}"), st.text(max_size=40), st.integers(), st.just(""),
)
times = st.one_of(st.none(), st.integers(-(2**70), 2**70), st.just(""), st.booleans(), st.text(max_size=5),
                  st.sampled_from(["2024-05-01T12:00:00Z", "17"]), st.floats(allow_nan=False))
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=8))
objects = st.dictionaries(st.text(max_size=6), scalars, max_size=4)
metadata = st.one_of(st.none(), st.just(""), objects, st.fixed_dictionaries({"source": st.text(max_size=8)}),
                     st.fixed_dictionaries({"extra": objects}), st.text(max_size=8))
data = st.one_of(objects, st.just({"meter_id": "M", "account_id": "A", "register_kwh": 1.5}),
                 st.just({"meter_id": 3}), st.text(max_size=8), st.none(), st.integers())
lines = st.fixed_dictionaries(
    {"stream": texts, "type": st.one_of(texts, st.just("MeterReading"))},
    optional={"data": data, "id": ids, "occurred_at": times, "recorded_at": times, "metadata": metadata,
              "other": scalars},
)


def full(converter: RecordConverter, fields: dict[str, Any]) -> Any:
    try:
        return converter.convert(fields)
    except BadRecord as e:
        return e


@settings(max_examples=400, deadline=None)
@given(lines, st.sampled_from(["ns", "ms"]))
def test_the_fast_converter_builds_the_same_event_or_declines(fields: dict[str, Any], unit: str) -> None:
    converter = RecordConverter(LogMapping(time_unit=unit))  # type: ignore[arg-type]
    fast = converter.convert_fast(fields)
    expected = full(converter, fields)
    if fast is None:
        return
    assert not isinstance(expected, BadRecord), (fields, expected)
    assert fast == expected
    assert ENCODE.encode(fast.event.metadata) == ENCODE.encode(expected.event.metadata)
    again = converter.convert_fast(fields)  # second sighting: names and metadata come from the caches
    assert again == expected


def test_the_fast_converter_reads_uuid_text_as_uuid_does() -> None:
    converter = RecordConverter(LogMapping())
    for text in ["9b351dcf-e2b7-54b9-a9da-868a8533a0a3", "9B351DCF-E2B7-54B9-A9DA-868A8533A0A3",
                 "9b351dcfe2b754b9a9da868a8533a0a3"]:
        event = converter.convert_fast({"stream": "s", "type": "T", "data": {}, "id": text})
        assert event is not None and event.event.id == uuid.UUID(text)
    for text in ["{9b351dcf-e2b7-54b9-a9da-868a8533a0a3}", "urn:uuid:9b351dcf-e2b7-54b9-a9da-868a8533a0a3", "12"]:
        assert converter.convert_fast({"stream": "s", "type": "T", "data": {}, "id": text}) is None


def blocks_of(tmp_path: Path, content: bytes) -> list[tuple[int, bytes, bool]]:
    log = tmp_path / "b.jsonl"
    log.write_bytes(content)
    with open(log, "rb") as f:
        return [line for block in _line_blocks(f) for line in block]


@pytest.mark.parametrize("block", [1, 2, 7, 64, 1 << 16])
def test_block_reading_keeps_numbers_endings_bom_and_cuts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          block: int) -> None:
    import replay.log._read as logread

    monkeypatch.setattr(logread, "READ_BLOCK", block)
    monkeypatch.setattr(logread, "MAX_LINE_BYTES", 16)
    content = b"\xef\xbb\xbf{}\r\n\n" + b"y" * 15 + b"\n" + b"z" * 16 + b"\n" + b"w" * 40 + b"\nlast"
    assert blocks_of(tmp_path, content) == [
        (1, b"{}", False), (2, b"", False), (3, b"y" * 15, False), (4, b"z" * 16, True),
        (5, b"w" * 16, True), (6, b"last", False),
    ]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([
    b'{"a":1,"b":{"c":"x:y"}}', b'{"a":1,"a":2}', b'{"a":"p:q","a":"r"}', b'{"a":{"k":1,"k":"::"}}',
    b'{"a":"\\u003a","a":1}', b'{"k\\u003a":1,"k:":2}', b'{"a":[{"b":1},{"b":2,"b":3}]}', b'[1,2]',
    b'{"a":"\\"","b":":"}', b'{bad', b'{"a":1e400}', b'{"x":"\xc3\xa9:"}',
]), max_size=12))
def test_block_decoding_finds_every_repeated_key_as_line_by_line_does(raws: list[bytes]) -> None:
    block = [(number, raw, False) for number, raw in enumerate(raws, start=1)]
    assert _decode_block(block) == [_json_line(number, raw) for number, raw, _ in block]


def test_a_repeated_key_in_a_long_block_rejects_only_its_line(tmp_path: Path) -> None:
    log, quarantine = tmp_path / "dup.jsonl", tmp_path / "q.jsonl"
    good = [f'{{"stream":"s","type":"T","data":{{"i":{i}}}}}' for i in range(2000)]
    good[1500] = '{"stream":"s","type":"T","data":{"i":1,"i":2}}'
    log.write_text("\n".join(good) + "\n")
    report = import_log(log, open_store("memory://"), quarantine=quarantine)
    assert (report.imported, report.rejected) == (1999, 1)
    assert msgspec.json.decode(quarantine.read_bytes())["line"] == 1501
    assert len(list(read_log(log, quarantine=tmp_path / "q2.jsonl"))) == 1999
