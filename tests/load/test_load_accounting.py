"""Loss accounting against a real store, criteria judging, fault plans, metrics, ``unbroken load``."""

from __future__ import annotations

import asyncio
import json
import socket

import numpy as np
import pytest

from eventstore import ANY, NewEvent, open_store
from eventstore.cli import main
from load import (
    Criterion,
    FaultPlan,
    LoadMetrics,
    Plan,
    PlanError,
    ProjectionMetrics,
    StoreTarget,
    account,
    constant,
    drive,
    message_event_id,
    parse_plan,
    read_samples,
    scrape,
    verdict,
)
from load._criteria import memory, no_crashes, processing_p99, read_p99, recovery, zero_loss
from projections.payloads.trading import MarketTick

NS = 1_000_000_000


def _msg(seq: int, phase: str, progress: float):
    return f"ticks-{seq % 3}", MarketTick(symbol="X", price=100.0 + seq)


def _run(tmp_path, n_seconds: float = 1.0, rate: float = 100):
    uri = f"embedded:///{tmp_path / 'events.db'}"
    target = StoreTarget(uri)

    async def go():
        await target.open()
        try:
            return await drive(target, Plan(constant(rate, n_seconds), _msg, "acct", seed=1))
        finally:
            await target.close()
    return uri, asyncio.run(go())


def test_every_message_is_followed_to_the_store_and_the_projection(tmp_path):
    uri, samples = _run(tmp_path)
    with open_store(uri) as store:
        events = list(store.read_all())
    projected = [(e.id.bytes, e.recorded_at + 1000) for e in events]
    acc = account(samples, uri, projected)
    assert (acc.scheduled, acc.sent, acc.acked, acc.stored, acc.projected) == (100,) * 5
    assert acc.lost == 0 and acc.duplicates == 0
    assert np.all(acc.projected_ns > acc.stored_ns)


def test_missing_and_duplicated_ids_are_listed_by_stage(tmp_path):
    uri = f"embedded:///{tmp_path / 'events.db'}"
    _, samples = _run(tmp_path / "src")  # sent and acked: 100 messages
    keep = [k for k in range(100) if k not in (5, 17, 99)]
    with open_store(uri) as store:  # the store lost three of them
        for k in keep:
            store.append("t", [NewEvent.of(MarketTick(symbol="X", price=1.0),
                                           id=message_event_id(samples.key(k)))], ANY)
        store.append("other", [NewEvent.of(MarketTick(symbol="Y", price=1.0))], ANY)
        events = [e for e in store.read_all() if e.stream == "t"]
    projected = [(e.id.bytes, 1) for e in events[:-1]]  # the projection missed the last stored
    projected += [(events[0].id.bytes, 2), (events[1].id.bytes, 3)]  # and applied two twice
    acc = account(samples, uri, projected)
    assert acc.missing["stored"] == [samples.key(5), samples.key(17), samples.key(99)]
    assert acc.missing["projected"] == [samples.key(keep[-1])]
    assert acc.duplicated["projected"] == [samples.key(keep[0]), samples.key(keep[1])]
    assert acc.missing_count == {"sent": 0, "acked": 0, "stored": 3, "projected": 1}
    assert acc.other_events == 1
    assert zero_loss(acc).status == "fail"


def test_unacked_messages_are_missing_at_the_acked_stage(tmp_path):
    uri, samples = _run(tmp_path)
    samples.acked_ns[[3, 4]] = 0
    acc = account(samples, None)
    assert acc.missing["acked"] == [samples.key(3), samples.key(4)]
    assert acc.stored is None and zero_loss(acc).status == "unknown"


def test_a_criterion_that_could_not_be_judged_is_unknown_and_never_passes():
    intended = np.arange(1000, dtype=np.int64) * 10_000_000
    nothing = np.zeros(1000, bool)
    assert processing_p99(intended, None, nothing, 100).status == "unknown"
    assert processing_p99(intended, intended + 1, np.ones(1000, bool), 100).status == "unknown"
    assert read_p99(None, True, 50).status == "unknown"
    assert read_p99(None, False, 50).status == "n/a"
    assert memory({}, {}, {"memory_limit_mb": 512, "memory_growth": 0.2,
                           "memory_growth_mb": 16}).status == "unknown"
    assert recovery(intended, None, [("f1", 5 * NS)], 30).status == "unknown"
    assert recovery(intended, None, [], 30).status == "n/a"
    assert no_crashes([], None).status == "unknown"
    passed = Criterion("a", "a", "pass")
    assert verdict([passed, Criterion("b", "b", "n/a")]) == "pass"
    assert verdict([passed, Criterion("b", "b", "unknown")]) == "fail"
    assert verdict([passed, Criterion("b", "b", "fail")]) == "fail"
    assert verdict([]) == "fail"


def test_latency_recovery_and_memory_are_judged_against_their_limits():
    intended = np.arange(1000, dtype=np.int64) * 10_000_000  # 10 s at 100/s
    done = intended + 20_000_000
    assert processing_p99(intended, done, np.zeros(1000, bool), 100).status == "pass"
    slow = done.copy()
    slow[500:520] += 5 * NS  # 2% of messages 5 s late
    assert processing_p99(intended, slow, np.zeros(1000, bool), 100).status == "fail"
    excluded = np.zeros(1000, bool)
    excluded[490:530] = True  # ... inside a fault window: judged outside it
    assert processing_p99(intended, slow, excluded, 100).status == "pass"
    restart = [("f1", 5_100_000_000)]  # the late messages were due before the restart
    assert recovery(intended, slow, restart, 30).status == "pass"
    assert recovery(intended, slow, restart, 2).status == "fail"
    never = done.copy()
    never[10] = 0
    assert recovery(intended, never, [("f1", 5 * NS)], 30).status == "fail"
    cfg = {"memory_limit_mb": 100, "memory_growth": 0.2, "memory_growth_mb": 5}
    flat = {"p": [(t, 50.0 + (t % 3)) for t in range(40)]}
    growing = {"p": [(t, 50.0 + 2 * t) for t in range(40)]}
    assert memory(flat, {}, cfg).status == "pass"
    assert memory(growing, {}, cfg).status == "fail"
    assert memory(flat, {"p": 40}, cfg).status == "fail"  # over its own limit


def test_a_fault_plan_is_seeded_and_bad_plans_name_the_field():
    data = {"seed": 4, "every": "60s", "first": "30s", "down": "2s",
            "kinds": ["kill:ingest", "kill:projection", "restart:broker"],
            "fault": [{"at": "100s", "action": "native", "process": "ingest",
                       "rules": ["latency dst={broker} ms=50"], "for": "5s"}],
            "limits": {"projection": 300}, "criteria": {"processing_p99_ms": 250}}
    plan = parse_plan(data)
    plan.broker = "127.0.0.1:4999"
    first = [f.as_dict() for f in plan.schedule(600)]
    again = [f.as_dict() for f in parse_plan(data).schedule(600)]
    assert [f["at"] for f in first] == [f["at"] for f in again]
    assert len([f for f in first if f["action"] != "native"]) == 10
    native = [f for f in first if f["action"] == "native"]
    assert native[0]["rules"] == ["latency dst=127.0.0.1:4999 ms=50"] and native[0]["down"] == 5
    assert parse_plan({**data, "seed": 5}).schedule(600) != plan.schedule(600)
    for bad, field in (({"kinds": ["explode:ingest"], "every": "1m"}, "kinds"),
                       ({"fault": [{"at": "1s", "action": "kill", "process": "db"}]}, "process"),
                       ({"fault": [{"action": "kill"}]}, "needs at"),
                       ({"fault": [{"at": "1s", "action": "native", "rules": ["bogus x=1"]}]},
                        "action"),
                       ({"criteria": {"speed": 1}}, "criteria"),
                       ({"limits": {"projection": -1}}, "limits.projection"),
                       ({"every": "1m"}, "kinds"), ({"colour": 1}, "colour")):
        with pytest.raises(PlanError, match=field):
            parse_plan(bad)
    assert FaultPlan().schedule(600) == []


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_metrics_are_served_on_loopback_with_standard_names():
    load_port, proj_port = _port(), _port()
    m = LoadMetrics(load_port)
    m.sent_to(10)
    m.acked(0.02)
    m.read("read-property", 0.004)
    ProjectionMetrics(proj_port).lag(42)
    samples = scrape(load_port)
    assert samples["unbroken_load_messages_sent_total"] == 10
    assert samples["unbroken_load_ack_latency_seconds_count"] == 1
    assert samples["unbroken_load_read_requests_total{service=read-property}"] == 1
    assert samples["unbroken_process_resident_memory_bytes"] > 1e6
    assert scrape(proj_port)["unbroken_projection_subscription_lag_events"] == 42
    with socket.socket() as s:  # loopback only
        s.bind(("127.0.0.1", 0))
        assert s.getsockname()[0] == "127.0.0.1"
    for name in list(samples) + list(scrape(proj_port)):
        base = name.split("{")[0]
        assert base.startswith(("unbroken_", "python_")), base


def test_unbroken_load_sends_every_message_and_writes_samples(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["load", "--profile", "bn001", "--target", f"embedded:///{tmp_path / 'e.db'}",
                 "--rate", "300", "--duration", "2s", "--seed", "3", "--out", str(out)])
    assert code == 0
    summary = json.loads((out / "load-summary.json").read_text())
    assert summary["scheduled"] == summary["acked"] > 500
    samples = read_samples(out / "samples.parquet")
    assert samples.acked == summary["acked"]
    assert samples.types[:5] == ["BacnetObjectDefinition"] * 5  # each object is defined first
    with open_store(f"embedded:///{tmp_path / 'e.db'}") as store:
        assert store.last_position() == summary["acked"]
    assert "p99.9=" in capsys.readouterr().out


def test_unbroken_load_and_soak_refuse_bad_arguments_with_usage_errors(tmp_path, capsys):
    assert main(["load", "--profile", "nope", "--target", "memory://", "--duration", "1s"]) == 2
    assert "known: bn001" in capsys.readouterr().err
    assert main(["load", "--profile", "bn001", "--target", "memory://", "--duration", "soon"]) == 2
    plan = tmp_path / "p.toml"
    plan.write_text('every = "1m"\nkinds = ["kill:everything"]\n')
    assert main(["soak", "--profile", "bn001", "--faults", str(plan), "--out",
                 str(tmp_path / "o")]) == 2
    assert "kinds" in capsys.readouterr().err
    assert main(["soak", "--rejudge", "--out", str(tmp_path)]) == 2


def test_due_messages_go_in_batches_at_least_the_batch_interval_apart(tmp_path):
    target = StoreTarget(f"embedded:///{tmp_path / 'events.db'}")

    async def go():
        await target.open()
        try:
            return await drive(target, Plan(constant(500, 1.0), _msg, "batches", seed=1,
                                            batch_interval_s=0.05))
        finally:
            await target.close()

    samples = asyncio.run(go())
    assert samples.acked == len(samples.intended_ns) == 500
    batch_starts = np.unique(samples.sent_ns)
    assert len(batch_starts) <= 22  # one batch per 50 ms at most (plus the first)
    assert np.diff(batch_starts).min() >= 50_000_000
    assert (samples.sent_ns >= samples.intended_ns).all()  # nothing goes before its time
