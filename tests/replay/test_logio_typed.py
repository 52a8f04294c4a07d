"""Typed decoding of JSON lines gives exactly what decoding into a dict gives (issue 11).

``RecordConverter.convert_json`` reads a line straight into a typed struct
(data and metadata kept as raw JSON). It must build the very event the
general path (``decode_json``, then ``convert_fast`` or ``convert``) builds
for the same bytes, or decline (None) and leave the line to that path; so a
line with whitespace, escapes, a repeated or unknown key, a non-canonical id
or data that does not fit its payload type is never taken by it.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import event as note_case
from hypothesis import given, settings
from hypothesis import strategies as st

from replay.log import LogMapping, read_log
from replay.log._read import decode_json
from replay.log._record import BadRecord, RecordConverter, TypedLines

ENCODE = msgspec.json.Encoder()
UID = "9b351dcf-e2b7-54b9-a9da-868a8533a0a3"

texts = st.one_of(st.sampled_from(["s", "account-1", "MeterReading", "T", "", "$sys", "a\x00b", "é", "x" * 600]),
                  st.text(max_size=10))
scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False),
                    st.text(max_size=8))
objects = st.dictionaries(st.text(max_size=6), scalars, max_size=4)
good_texts = st.sampled_from(["s", "account-1", "T", "MeterReading"])
odd_ids = st.one_of(st.uuids().map(lambda u: str(u).upper()), st.text(max_size=8), st.none(), st.integers())
odd_data = st.one_of(st.just({"meter_id": 3}), st.text(max_size=8), st.none())
# Half of each choice is what a canonical line holds, so that many examples are taken by the typed path.
lines = st.fixed_dictionaries(
    {"id": st.one_of(st.uuids().map(str), odd_ids), "stream": st.one_of(good_texts, texts),
     "type": st.one_of(good_texts, texts),
     "data": st.one_of(objects, st.just({"meter_id": "M", "account_id": "A", "register_kwh": 1.5}), odd_data)},
    optional={
        "occurred_at": st.one_of(st.integers(0, 2**62), st.integers(-(2**70), 2**70), st.none(),
                                 st.floats(allow_nan=False), st.just("17")),
        "recorded_at": st.one_of(st.integers(0, 2**62), st.none(), st.integers(-(2**64), 2**64)),
        "metadata": st.one_of(st.fixed_dictionaries({"source": st.text(max_size=8)}), objects, st.none(),
                              st.fixed_dictionaries({"extra": objects}), st.text(max_size=4)),
        "other": scalars,
    },
)
likely_good = st.fixed_dictionaries(  # lines most of which are taken: the equality is checked on many of them
    {"id": st.uuids().map(str), "stream": good_texts, "type": good_texts,
     "data": st.one_of(objects, st.just({"meter_id": "M", "account_id": "A", "register_kwh": 1.5}))},
    optional={"occurred_at": st.integers(0, 2**62), "recorded_at": st.integers(0, 2**62),
              "metadata": st.fixed_dictionaries({"source": st.text(max_size=8)},
                                                optional={"correlation_id": st.text(max_size=4)})},
).flatmap(lambda fields: st.permutations(list(fields.items())).map(dict))  # keys in any order
# Lines in the struct's own key order, compact: whole blocks of these are taken by the bulk path.
canonical = st.fixed_dictionaries(
    {"id": st.uuids().map(str), "stream": good_texts, "type": good_texts},
    optional={"occurred_at": st.integers(0, 2**62), "recorded_at": st.integers(0, 2**62)},
).flatmap(lambda head: st.fixed_dictionaries(
    {"data": st.one_of(objects, st.just({"meter_id": "M", "account_id": "A", "register_kwh": 1.5}))},
    optional={"metadata": st.fixed_dictionaries({"source": st.text(max_size=8)})},
).map(lambda tail: {**head, **tail}))
spellings = st.one_of(st.just("compact"),
                      st.sampled_from(["spaced", "ascii", "repeat-top", "repeat-inner", "reordered"]))


def spelled(fields: dict[str, Any], how: str) -> bytes:
    """The line's bytes, spelled in one of several ways JSON allows (or with a repeated key)."""
    if how == "spaced":
        return json.dumps(fields, ensure_ascii=False).encode()
    if how == "ascii":
        return json.dumps(fields).encode()
    raw = ENCODE.encode(fields)
    if how == "repeat-top":
        return b'{"stream":"other",' + raw[1:] if raw != b"{}" else raw
    if how == "repeat-inner" and isinstance(fields.get("data"), dict) and fields["data"]:
        key = ENCODE.encode(next(iter(fields["data"])))
        return raw.replace(b'"data":{', b'"data":{' + key + b":0,", 1)
    if how == "reordered":
        return ENCODE.encode(dict(reversed(fields.items())))
    return raw


def general(converter: RecordConverter, raw: bytes) -> Any:
    """What reading the line through a dict gives: a ``LogEvent`` or the reason it is bad."""
    try:
        fields = decode_json(raw)
    except ValueError as e:
        return e
    if not isinstance(fields, dict):
        return "not an object"
    try:
        return converter.convert_fast(fields) or converter.convert(fields)
    except BadRecord as e:
        return e


@settings(max_examples=500, deadline=None)
@given(st.one_of(lines, likely_good), spellings, st.sampled_from(["ns", "ms"]))
def test_typed_decoding_builds_the_same_event_or_declines(fields: dict[str, Any], how: str, unit: str) -> None:
    converter = RecordConverter(LogMapping(time_unit=unit))  # type: ignore[arg-type]
    raw = spelled(fields, how)
    typed = converter.convert_json(raw)
    expected = general(RecordConverter(LogMapping(time_unit=unit)), raw)  # type: ignore[arg-type]
    if typed is None:
        return
    assert not isinstance(expected, (BadRecord, ValueError, str)), (raw, expected)
    assert typed == expected
    assert ENCODE.encode(typed.event.metadata) == ENCODE.encode(expected.event.metadata)
    assert converter.convert_json(raw) == expected  # second sighting: names and metadata from the caches


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.lists(st.tuples(canonical, st.just("compact")), min_size=1, max_size=6),  # mostly taken whole
                 st.lists(st.tuples(st.one_of(canonical, lines, likely_good), spellings), min_size=1, max_size=6)),
       st.sampled_from(["ns", "ns", "ms"]))
def test_a_block_of_lines_converts_as_each_line_alone(block: list[tuple[dict[str, Any], str]], unit: str) -> None:
    raws = [spelled(fields, how) for fields, how in block]
    mapping = LogMapping(time_unit=unit)  # type: ignore[arg-type]
    alone = [RecordConverter(mapping).convert_json(raw) for raw in raws]
    whole = RecordConverter(mapping)._convert_block(raws)
    note_case("taken whole" if whole is not None else "each line alone")
    if whole is not None:  # taken whole: every line, each the event the line alone gives
        assert whole.log_events() == alone and None not in alone
        for got, raw in zip(whole.log_events(), raws, strict=True):
            expected = general(RecordConverter(mapping), raw)
            assert got == expected
            assert ENCODE.encode(got.event.metadata) == ENCODE.encode(expected.event.metadata)  # type: ignore[union-attr]
    converter = RecordConverter(mapping)
    assert each(converter.convert_json_lines(raws)) == alone
    assert each(converter.convert_json_lines(raws)) == alone  # second sighting: from the caches


def each(converted: TypedLines | list) -> list:
    """One result per line, from a block taken whole or not."""
    return converted if isinstance(converted, list) else converted.log_events()


def test_a_canonical_block_is_taken_whole_and_one_doubtful_line_sends_each_line_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rows = [{"id": str(uuid.uuid5(uuid.NAMESPACE_URL, str(n))), "stream": f"account-{n % 3}", "type": "MeterReading",
             "occurred_at": n, "recorded_at": n + 1, "data": {"meter_id": "M", "account_id": "A", "register_kwh": n / 2},
             "metadata": {"source": "m"}} for n in range(40)]
    raws = [ENCODE.encode(row) for row in rows]
    expected = [general(RecordConverter(LogMapping()), raw) for raw in raws]
    converter = RecordConverter(LogMapping())
    monkeypatch.setattr(converter, "convert_json", lambda raw: pytest.fail("a line was converted alone"))
    taken = converter.convert_json_lines(raws)
    assert isinstance(taken, TypedLines) and taken.log_events() == expected
    respelled = [b"{ " + b" , ".join(ENCODE.encode(k) + b": " + ENCODE.encode(v) for k, v in reversed(row.items())) + b" }"
                 for row in rows]  # keys reversed, spaces between them
    taken = converter.convert_json_lines(respelled)
    assert isinstance(taken, TypedLines) and taken.log_events() == expected
    escaped = [ENCODE.encode({**row, "stream": f'account-"{n % 3}"'}) for n, row in enumerate(rows)]
    assert all(b"\\" in raw for raw in escaped)  # escapes msgspec writes itself: the block is its own encoding
    taken = converter.convert_json_lines(escaped)
    assert isinstance(taken, TypedLines) and taken.log_events() == [
        general(RecordConverter(LogMapping()), raw) for raw in escaped]
    doubtful = [
        raws[:5] + [raws[5].replace(b'"account-2"', b'"account\\u002d2"')],  # an escape
        raws[:5] + [ENCODE.encode({**rows[5], "data": {"meter_id": "M", "account_id": "A"}})],  # not its payload
        raws[:5] + [raws[5].replace(b'"register_kwh":2.5', b'"register_kwh":2.50')],  # data not canonical
        raws[:5] + [raws[5].replace(b'{"source":"m"}', b'{"source":"m","source":"n"}')],  # metadata repeats a key
        raws[:5] + [b'{"stream":"account-0",' + raws[5][1:]],  # the line repeats a key
        raws[:5] + [raws[5][:-1] + b',"occurred_at":null}'],  # a repeated key, null the second time
    ]
    for block in doubtful:
        assert RecordConverter(LogMapping())._convert_block(block) is None, block[-1]
        assert each(RecordConverter(LogMapping()).convert_json_lines(block))[:5] == expected[:5]


def test_a_line_in_any_key_order_is_taken_and_a_doubtful_one_is_left_to_the_general_path() -> None:
    fields = {"id": UID, "stream": "account-1", "type": "MeterReading", "occurred_at": 5, "recorded_at": 6,
              "data": {"meter_id": "M", "account_id": "A", "register_kwh": 1.5}, "metadata": {"source": "m"}}
    converter = RecordConverter(LogMapping())
    raw = ENCODE.encode(fields)
    taken = [raw, spelled(fields, "reordered"), raw.replace(UID.encode(), UID.upper().encode()),
             raw.replace(b',"type"', b' ,\t"type" '), ENCODE.encode({**fields, "stream": "a:b", "type": "T:1"})]
    for line in taken:
        event = converter.convert_json(line)
        assert event is not None and event == general(converter, line), line
    assert converter.convert_json(raw).event.data == ENCODE.encode(fields["data"])  # type: ignore[union-attr]
    left = [spelled(fields, how) for how in ("spaced", "ascii", "repeat-top", "repeat-inner")]
    left += [ENCODE.encode({**fields, **changed}) for changed in (
        {"metadata": None}, {"occurred_at": 5.0}, {"occurred_at": None}, {"data": {"meter_id": "M"}},
        {"other": 1}, {"stream": ""}, {"id": "12"})]
    left += [
        raw.replace(b'"account-1"', b'"caf\\u00e9"'),  # an escape: the general path (a fine line, read there)
        raw.replace(b'"stream":"account-1"', b'"stream":"x","stream":"a\\u003ab"'),  # a repeat hidden by an escape
        raw.replace(b'"stream":"account-1"', b'"stream":"a:b","stream":"a:b"'),
        raw.replace(b'"data":{', b'"data":{"meter_id":"M"},"data":{'),
    ]
    for line in left:
        assert converter.convert_json(line) is None, line


def test_a_mapping_that_renames_fields_is_read_typed_and_a_template_is_not() -> None:
    mapping = LogMapping(stream="s", type="t", data="d", id="uid", occurred_at="ts", time_unit="ms")
    raw = ENCODE.encode({"uid": UID, "s": "a", "t": "T", "ts": 7, "d": {"x": 1}})
    taken = RecordConverter(mapping).convert_json(raw)
    assert taken is not None and taken == general(RecordConverter(mapping), raw)
    assert taken.event.occurred_at == 7_000_000
    templated = LogMapping(stream_template="meter-{x}")
    assert RecordConverter(templated).convert_json(ENCODE.encode({"id": UID, "type": "T", "data": {"x": 1}})) is None
    assert RecordConverter(LogMapping(occurred_at="ts", recorded_at="ts")).convert_json(raw) is None


def test_a_log_read_typed_gives_what_the_general_path_gives(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = []
    for n in range(1, 400):
        row = {"id": str(uuid.uuid5(uuid.NAMESPACE_URL, str(n))), "stream": f"s-{n % 5}", "type": "T",
               "occurred_at": n, "data": {"n": n}, "metadata": {"source": f"m{n % 3}"}}
        raw = ENCODE.encode(row)
        if n % 7 == 0:
            raw = json.dumps(row).encode()  # spaced: the general path
        if n % 11 == 0:
            raw = raw[:-1] + b',"stream":"again"}'  # a repeated key: rejected
        if n % 13 == 0:
            raw = raw[:20]  # cut short: rejected
        rows.append(raw)
    log = tmp_path / "mixed.jsonl"
    log.write_bytes(b"\n".join(rows) + b"\n")
    typed = read_log(log, quarantine=tmp_path / "q1.jsonl", read_ahead=False)
    typed_events = list(typed)
    monkeypatch.setattr(RecordConverter, "convert_json_lines", lambda self, raws: [None] * len(raws))
    plain = read_log(log, quarantine=tmp_path / "q2.jsonl", read_ahead=False)
    assert typed_events == list(plain) and len(typed_events) > 300
    assert typed.report.rejected == plain.report.rejected > 40
    assert (tmp_path / "q1.jsonl").read_bytes() == (tmp_path / "q2.jsonl").read_bytes()


@pytest.mark.parametrize("read_ahead", [False, True])
def test_whole_blocks_give_the_events_rejections_and_counts_of_the_general_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, read_ahead: bool
) -> None:
    rows = []
    for n in range(1, 2_200):
        key = n if n <= 1_900 else n - 1_900 - n % 2  # from 1,901 on, the id of a line 1,900 (same stream) or 1,901 back
        row: dict[str, Any] = {"id": str(uuid.uuid5(uuid.NAMESPACE_URL, str(key))), "stream": f"s-{n % 5}", "type": "T"}
        if n % 3:
            row["occurred_at"] = 10 * n - (n % 4) * 15  # times that go back now and then: stamps never do
        if n % 4 == 0:
            row["recorded_at"] = 10 * n
        row["data"] = {"n": n}
        if n % 5:
            row["metadata"] = {"source": f"m{n % 3}"}
        rows.append(ENCODE.encode(row))  # canonical: whole blocks
    rows[1_000] = b"{bad"  # one bad line: its block goes line by line
    log = tmp_path / "blocks.jsonl"
    log.write_bytes(b"\n".join(rows) + b"\n")
    taken: list[int] = []
    convert = RecordConverter.convert_json_lines
    monkeypatch.setattr(RecordConverter, "convert_json_lines",
                        lambda self, raws: taken.append(isinstance(out := convert(self, raws), TypedLines)) or out)
    typed = read_log(log, quarantine=tmp_path / "q1.jsonl", read_ahead=read_ahead)
    typed_events = list(typed)
    assert read_ahead or taken.count(True) >= 3  # (in a worker, its own count)
    monkeypatch.setattr(RecordConverter, "convert_json_lines", lambda self, raws: [None] * len(raws))
    plain = read_log(log, quarantine=tmp_path / "q2.jsonl", read_ahead=False)
    assert typed_events == list(plain) and len(typed_events) > 1_800
    assert (typed.report.read, typed.report.imported, typed.report.already_present, typed.report.rejected) == (
        plain.report.read, plain.report.imported, plain.report.already_present, plain.report.rejected)
    assert plain.report.rejected > 100 and plain.report.already_present > 100
    assert (tmp_path / "q1.jsonl").read_bytes() == (tmp_path / "q2.jsonl").read_bytes()


def test_the_read_ahead_worker_loads_only_the_log_reading_modules() -> None:
    import subprocess
    import sys

    from replay.log import _ahead

    probe = _ahead.bootstrap() + (
        "import replay.log._ahead\n"
        "from eventstore.payloads import payload_types\n"
        "assert 'MeterReading' in payload_types()\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'polars', 'numpy', 'duckdb', 'pyarrow'}))\n"
    )
    done = subprocess.run([sys.executable, "-I", "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"  # replay's __init__ (polars, numpy, DuckDB) is not run in the worker


def test_a_time_of_digits_int_cannot_read_is_a_bad_line_not_a_crash(tmp_path: Path) -> None:
    log = tmp_path / "sup.jsonl"
    log.write_bytes(ENCODE.encode({"stream": "s", "type": "T", "data": {}, "occurred_at": "²"}) + b"\n")
    reader = read_log(log, quarantine=tmp_path / "q.jsonl", read_ahead=False)
    assert list(reader) == [] and reader.report.rejected == 1
    assert "RFC 3339" in reader.report.first_rejections[0]


def test_counts_read_from_a_worker_add_up_at_every_event(tmp_path: Path) -> None:
    rows = [ENCODE.encode({"id": str(uuid.uuid5(uuid.NAMESPACE_URL, str(n % 2_900))), "stream": f"s-{n % 5}",
                           "type": "T", "occurred_at": n, "data": {"n": n}}) if n % 97 else b"{bad"
            for n in range(1, 3_001)]
    log = tmp_path / "counted.jsonl"
    log.write_bytes(b"\n".join(rows) + b"\n")
    reader = read_log(log, quarantine=tmp_path / "q.jsonl", read_ahead=True)
    for event in reader:
        report = reader.report
        assert report.imported >= event.position  # counted no later than handed on
        assert report.read == report.imported + report.already_present + report.rejected
    final = reader.report
    assert final.read == 3_000 and final.rejected == 3_000 // 97 and final.already_present > 0
