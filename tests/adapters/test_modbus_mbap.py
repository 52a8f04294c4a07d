"""Our own Modbus TCP client (``adapters.modbus.mbap``), the one the poller uses for MBAP framing:
what it does beyond the simulator's misbehaviours (those are in test_modbus_poller.py): a retry
sends the same request again, transaction ids follow one another, and an answer that is a whole
frame but not the answer (too few registers, exception code 0) is a fault with its bytes, not a
crash, and a late answer to a cancelled request does not break the connection."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from adapters.modbus import parse_plan
from adapters.modbus.codec import mbap

from .modbus_support import device_toml, devices, free_port, record, until

SEED = 7


def test_a_retry_sends_the_same_request_again_and_its_answer_counts():
    """retries = 1: the first request gets no answer, the same ADU is sent again after the timeout
    and answered; no fault, and that frame's latency is past one timeout."""
    dev = dataclasses.replace(devices(device_toml(timeout=0.1))[0], retries=1)
    plan = parse_plan({"seed": SEED, "rule": [{"action": "silent", "count": 1, "after_requests": 2}]})
    s = asyncio.run(record([dev], plan, lambda s: len(s.of("ModbusFrame")) >= 6))
    assert s.fault_kinds() == []
    assert s.simulator.requests["tank1"] > len(s.of("ModbusFrame"))  # one request was sent twice
    retried = [f for f in s.of("ModbusFrame") if f.latency_ns >= 100_000_000]
    assert len(retried) == 1 and retried[0].raw[:2] == retried[0].request[:2]


def test_transaction_ids_follow_one_another_on_a_connection():
    s = asyncio.run(record(devices(device_toml()), None, lambda s: len(s.of("ModbusFrame")) >= 6))
    tids = [f.transaction for f in s.of("ModbusFrame")]
    assert tids == list(range(1, len(tids) + 1))
    assert all(f.request[:2] == f.transaction.to_bytes(2, "big") for f in s.of("ModbusFrame"))


@pytest.mark.parametrize("pdu", [bytes([4, 2, 0, 7]), bytes([0x84, 0])], ids=["one_register", "exception_0"])
def test_a_whole_frame_that_is_not_the_answer_is_a_fault_with_its_bytes(pdu):
    """A server that answers the input-register read with a well-formed frame that is no answer:
    one register instead of five, or an exception response with code 0 (no exception). Each is
    recorded as a fault with its bytes, never decoded, and the poller connects again."""
    port = free_port()
    dev = devices(device_toml(port=port))[0]

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while (header := await reader.read(12)) and len(header) == 12:
                tid, function, count = int.from_bytes(header[:2], "big"), header[7], header[11]
                writer.write(mbap(tid, header[6], pdu if function == 4 else bytes([function, 1, count & 1])))
        finally:
            writer.close()

    async def session():
        server = await asyncio.start_server(serve, "127.0.0.1", port)
        try:
            return await record([dev], None, lambda s: len(s.fault_kinds()) >= 2, simulate=False)
        finally:
            server.close()

    s = asyncio.run(session())
    faults = s.of("ModbusFault")
    assert {f.kind for f in faults} == {"garbage"} and all(f.function == 4 for f in faults)
    assert all(f.raw == mbap(f.transaction, 1, pdu) for f in faults)
    assert s.ingest.pollers["tank1"].stats.connects >= 2  # dropped and made again after each


def test_an_answer_to_a_cancelled_request_is_dropped_and_the_connection_kept():
    """A caller cancelled while waiting (a live controller stopped mid-write): its late answer
    must not fail the protocol (a cancelled future cannot take a result), the connection stays
    up and the next request is answered."""
    from adapters.modbus import MbapClient

    port, answer = free_port(), asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while (header := await reader.read(12)) and len(header) == 12:
                await answer.wait()
                writer.write(mbap(int.from_bytes(header[:2], "big"), header[6], bytes([4, 2, 0, 7])))
        finally:
            writer.close()

    class Record:
        tx, rx = b"", bytearray()

    async def session():
        server = await asyncio.start_server(serve, "127.0.0.1", port)
        io = Record()
        client = MbapClient("127.0.0.1", port, timeout=5.0, retries=0, io=io,
                            on_connect=lambda up: None, on_connect_error=lambda e: None)
        try:
            assert await client.connect()
            client.read_input_registers(0, count=1, device_id=1).cancel()  # sent, then given up
            answer.set()
            await until(lambda: len(io.rx) >= 11)  # the late answer arrived
            up = client.connected
            io.rx = bytearray()
            second = await client.read_input_registers(0, count=1, device_id=1)
            return up, second.registers, second.transaction_id
        finally:
            client.close()
            server.close()

    assert asyncio.run(session()) == (True, [7], 2)
