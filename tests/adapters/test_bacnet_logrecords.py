"""``logrecords``: ReadRange answers written straight to bytes equal bacpypes3's encoding.

Each datum kind (real, enumerated, unsigned), every status flag, the result
flags, an empty answer and the optional first sequence number are encoded both
ways, by ``logrecords`` and by bacpypes3's ``LogRecord``/``ReadRangeACK``, and
compared byte for byte; the server's ReadRange tests then read them with a
bacpypes3 client (``test_bacnet_server``).
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from bacpypes3.apdu import ReadRangeACK
from bacpypes3.basetypes import LogRecord, LogRecordLogDatum, ResultFlags, StatusFlags
from bacpypes3.constructeddata import Any as AnyValue
from bacpypes3.constructeddata import SequenceOf
from bacpypes3.primitivedata import ObjectIdentifier

from adapters.bacnet.logrecords import log_record, object_identifier_bytes, read_range_ack
from adapters.bacnet.net import ns_to_datetime

T = 1_790_000_000_123_456_789


def _bacpypes_datum(object_type: str, value):
    if object_type.startswith("binary"):
        return LogRecordLogDatum(enumValue=1 if value else 0)
    if object_type.startswith("multi-state"):
        return LogRecordLogDatum(unsignedValue=int(value))
    return LogRecordLogDatum(realValue=float(value))


def _bacpypes_record(object_type: str, entry) -> LogRecord:
    return LogRecord(timestamp=ns_to_datetime(entry.at),
                     logDatum=_bacpypes_datum(object_type, entry.value),
                     statusFlags=StatusFlags([(entry.flags >> i) & 1 for i in range(4)]))


ENTRIES = [("analog-input", 21.5, 0), ("analog-value", -1e-3, 2), ("binary-output", True, 9),
           ("binary-input", False, 15), ("multi-state-value", 3, 4), ("multi-state-input", 300, 8)]


@pytest.mark.parametrize("object_type,value,flags", ENTRIES)
def test_a_log_record_is_encoded_as_bacpypes3_encodes_it(object_type, value, flags):
    for at in (T, T + 86_400 * 10**9 * 200 + 999_999_999, 0):
        entry = SimpleNamespace(at=at, value=value, flags=flags)
        expected = _bacpypes_record(object_type, entry).encode().encode().pduData
        assert log_record(object_type, entry) == bytes(expected)


@pytest.mark.parametrize("count,flags,first_seq", [(0, (False, False, False), None),
                                                    (3, (True, False, True), None),
                                                    (50, (False, True, False), 12345),
                                                    (1, (True, True, False), 7)])
def test_a_read_range_ack_is_encoded_as_bacpypes3_encodes_it(count, flags, first_seq):
    oid = ("multi-state-value", 4194000 % (1 << 22))
    entries = [SimpleNamespace(at=T + i * 10**9, value=i % 5 + 1, flags=i % 16, seq=i + 1)
               for i in range(count)]
    records = SequenceOf(LogRecord)()
    for entry in entries:
        records.append(_bacpypes_record(oid[0], entry))
    ack = ReadRangeACK(objectIdentifier=ObjectIdentifier(oid), propertyIdentifier="log-buffer",
                       resultFlags=ResultFlags([int(f) for f in flags]), itemCount=count,
                       itemData=AnyValue(records))
    if first_seq is not None:
        ack.firstSequenceNumber = first_seq
    ack.apduInvokeID = 1
    expected = bytes(ack.encode().pduData)
    got = read_range_ack(object_identifier_bytes(ObjectIdentifier(oid)), oid[0], entries, flags,
                         first_seq)
    assert got == expected
    assert object_identifier_bytes(*oid) == got[1:5]
