"""The load generator's BACnet reads: the raw read client against the real event server.

``encode_read``'s frames are decoded by bacpypes3 (the server's own decoder),
``read_load`` reads BN-001's 1,000 objects from a real ``EventServer`` on
loopback, and ``ReadClient`` is held to matching answers by invoke id, service
and object (a stray answer is not taken for the read's) and to timing out.
"""

from __future__ import annotations

import asyncio
import socket

import pytest
from bacpypes3.apdu import APDU, ReadPropertyMultipleRequest, ReadPropertyRequest, ReadRangeRequest
from bacpypes3.pdu import PDU

from adapters.bacnet.logrecords import object_identifier_bytes
from adapters.bacnet.net import free_port
from adapters.bacnet.server import EventServer
from load._profiles import bn_objects
from load._readclient import INVOKE_AT, ReadClient, encode_read, parse_answer
from load._reads import KINDS, read_load
from tests.adapters.bacnet_support import append, definition, value


def _decoded(frame: bytes):
    return APDU.decode(PDU(frame[6:]))  # past BVLC (4 bytes) and NPDU (2)


def _oid(identifier) -> tuple[str, int]:
    return str(identifier[0]), int(identifier[1])


@pytest.mark.parametrize("kind,cls", [("read-property", ReadPropertyRequest),
                                      ("read-property-multiple", ReadPropertyMultipleRequest),
                                      ("read-range", ReadRangeRequest)])
def test_encoded_reads_decode_as_the_requests_they_stand_for(kind, cls):
    frame = bytearray(encode_read(kind, "multi-state-value", 17))
    frame[INVOKE_AT] = 201
    assert frame[:2] == b"\x81\x0a" and int.from_bytes(frame[2:4]) == len(frame)
    apdu = _decoded(bytes(frame))
    request = cls.decode(apdu)
    assert isinstance(request, cls) and request.apduInvokeID == 201
    if kind == "read-property-multiple":
        spec = request.listOfReadAccessSpecs[0]
        assert _oid(spec.objectIdentifier) == ("multi-state-value", 17)
        assert [str(p.propertyIdentifier) for p in spec.listOfPropertyReferences] == [
            "present-value", "status-flags", "object-name"]
    else:
        assert _oid(request.objectIdentifier) == ("multi-state-value", 17)
        assert str(request.propertyIdentifier) == (
            "present-value" if kind == "read-property" else "log-buffer")


def test_read_load_reads_every_bn001_object_from_the_real_server(tmp_path):
    uri = f"embedded://{tmp_path}/events.db"
    objects = bn_objects()
    append(uri, [definition(i, t) for t, i in objects[:-1]])  # the last one is never defined
    append(uri, [value(i, 1, t) for t, i in objects[:-1]])

    async def main():
        address = f"127.0.0.1:{free_port()}"
        server = EventServer(uri, address=address, device_id=599)
        await server.start()
        try:
            return await read_load(address, 300.0, 1.5, seed=5), server.stats.requests
        finally:
            await server.stop()

    reads, served = asyncio.run(asyncio.wait_for(main(), 60))
    assert len(reads.ok) > 300 and reads.ok.all()  # every read answered
    errors = {k: v for k, v in reads.errors.items() if not k.startswith("answer:error")}
    assert errors == {}, reads.errors  # only the undefined object's unknown-object errors
    assert sum(served.values()) == len(reads.ok)
    for i, kind in enumerate(KINDS):
        assert (reads.kind == i).sum() > 0, kind
    assert (reads.latencies_ms() >= 0).all()


def test_a_stray_answer_is_not_taken_for_the_read_and_silence_times_out():
    async def main():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
            peer.bind(("127.0.0.1", 0))
            peer.setblocking(False)
            outcomes: list[tuple[str, str]] = []
            client = await ReadClient.open(*peer.getsockname(),
                                           lambda token, outcome, ns: outcomes.append((token, outcome)),
                                           timeout=0.5)
            loop = asyncio.get_running_loop()
            client.send("a", encode_read("read-property", "analog-input", 3),
                        object_identifier_bytes("analog-input", 3))
            request, source = await loop.sock_recvfrom(peer, 1500)
            invoke = request[INVOKE_AT]

            def ack(oid: bytes, service: int = 12) -> bytes:
                apdu = bytes([0x30, invoke, service, 0x0C]) + oid + b"\x19\x55\x3e\x44\x41\xa0\x00\x00\x3f"
                return b"\x81\x0a" + (6 + len(apdu)).to_bytes(2) + b"\x01\x00" + apdu

            await loop.sock_sendto(peer, ack(object_identifier_bytes("analog-input", 4)), source)
            await loop.sock_sendto(peer, ack(object_identifier_bytes("analog-input", 3), 14), source)
            await loop.sock_sendto(peer, b"garbage", source)
            await loop.sock_sendto(peer, ack(object_identifier_bytes("analog-input", 3)), source)
            client.send("b", encode_read("read-range", "analog-input", 3),
                        object_identifier_bytes("analog-input", 3))  # never answered
            await asyncio.wait_for(client.idle.wait(), 5)
            client.close()
            return outcomes, client.mismatched, client.unreadable

    outcomes, mismatched, unreadable = asyncio.run(main())
    assert outcomes == [("a", "ack"), ("b", "timeout")]
    assert (mismatched, unreadable) == (2, 1)


def test_answers_are_read_past_a_routed_npdu_and_error_pdus_name_their_kind():
    oid = object_identifier_bytes("binary-value", 9)
    routed = b"\x01\x08" + b"\x00\x05\x01\x07"  # source network 5, one-byte MAC 7
    for apdu, expected in [
        (bytes([0x30, 4, 14, 0x0C]) + oid, ("ack", 4, 14, oid)),
        (bytes([0x50, 6, 12, 0x91, 1, 0x91, 31]), ("error", 6, 12, b"")),
        (bytes([0x60, 7, 9]), ("reject", 7, -1, b"")),
        (bytes([0x71, 8, 4]), ("abort", 8, -1, b"")),
    ]:
        frame = b"\x81\x0a" + (4 + len(routed) + len(apdu)).to_bytes(2) + routed + apdu
        assert parse_answer(frame) == expected
