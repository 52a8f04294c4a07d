"""``unbroken replay`` and ``unbroken diff`` end to end, in process, on real files."""

from __future__ import annotations

import json

import msgspec
import pytest
from replay_helpers import LedgerProjection, payment_log

import projections
from eventstore import NewEvent, open_store
from eventstore.cli import main
from eventstore.payloads import decode_payload
from projections._contract import Decision, Status
from replay import deliveries_of, load_trace, run


class LedgerConfig(msgspec.Struct, frozen=True):
    hold_ns: int = 10_000_000_000
    threshold: int = 0


_impure_calls = 0


class ImpureLedger(LedgerProjection):
    name = "ledger-impure-test"

    def apply(self, state, event, ctx):
        global _impure_calls
        _impure_calls += 1
        if event.position == 3:
            ctx.decide(Decision(kind="x", subject=str(_impure_calls), action="y",
                                status=Status.PROPOSED))
        return super().apply(state, event, ctx)


def _ledger(config: LedgerConfig) -> LedgerProjection:
    return LedgerProjection(hold_ns=config.hold_ns, threshold=config.threshold)


if "ledger-test" not in projections.names():
    projections.register("ledger-test", _ledger, LedgerConfig)
    projections.register("ledger-impure-test", lambda c: ImpureLedger(), LedgerConfig)


@pytest.fixture
def log_file(tmp_path):
    path = tmp_path / "payments.jsonl"
    lines = [{"stream": e.stream, "type": e.type, "id": str(e.id),
              "data": msgspec.to_builtins(decode_payload(e)),
              "occurred_at": e.occurred_at, "recorded_at": e.recorded_at}
             for e in payment_log(n=25)]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def test_replay_a_log_writes_the_trace_and_prints_the_digest(log_file, tmp_path, capsys):
    code = main(["replay", "--log", str(log_file), "--projection", "ledger-test",
                 "--trace", str(tmp_path / "trace"), "--config", "hold_ns=5000000000"])
    out = capsys.readouterr().out
    assert code == 0, out
    runs = load_trace(tmp_path / "trace")["runs"].row(0, named=True)
    assert f"digest {runs['digest']}" in out
    assert runs["source"] == str(log_file) and json.loads(runs["config"])["hold_ns"] == 5e9
    expected = run(list(deliveries_of(payment_log(n=25))), LedgerProjection(hold_ns=5 * 10**9))
    assert runs["digest"] == expected.digest  # the file replays exactly like the events


def test_replay_a_store_with_snapshots_then_resume(tmp_path, capsys):
    uri = f"embedded:///{tmp_path}/events.db"
    with open_store(uri) as store:
        for e in payment_log(n=30):
            store.append(e.stream, [NewEvent(e.type, e.data, id=e.id)])
    args = ["replay", "--store", uri, "--projection", "ledger-test",
            "--snapshot-every", "10", "--snapshot-dir", str(tmp_path / "snaps")]
    assert main(args) == 0
    full = capsys.readouterr().out
    assert main([*args, "--resume"]) == 0
    resumed = capsys.readouterr().out
    assert "resumed after 30 deliveries" in resumed
    digest = [line for line in full.splitlines() if line.startswith("digest")]
    assert digest and digest[0] in resumed.splitlines()


def test_check_determinism_exit_codes(log_file, capsys):
    assert main(["replay", "--log", str(log_file), "--projection", "ledger-test",
                 "--check-determinism"]) == 0
    assert "deterministic" in capsys.readouterr().out
    assert main(["replay", "--log", str(log_file), "--projection", "ledger-impure-test",
                 "--check-determinism"]) == 1
    out = capsys.readouterr().out
    assert "NOT deterministic" in out and "decisions at seq 2" in out


def test_diff_of_two_configurations(log_file, capsys):
    code = main(["diff", "--log", str(log_file), "--projection", "ledger-test",
                 "--against", "ledger-test", "--config-b", "threshold=110"])
    out = capsys.readouterr().out
    assert code == 1
    assert "only in A" in out and "payment" in out
    assert main(["diff", "--log", str(log_file), "--projection", "ledger-test",
                 "--against", "ledger-test"]) == 0


def test_unknown_projection_could_not_run(log_file, capsys):
    assert main(["replay", "--log", str(log_file), "--projection", "nope"]) == 3
    err = capsys.readouterr().err
    assert "unknown projection 'nope'" in err and "ledger-test" in err


def test_progress_goes_to_stderr_when_asked(log_file, capsys, monkeypatch):
    import replay.core._pacing as pacing

    monkeypatch.setattr(pacing.Progress.__init__, "__defaults__", (10,))
    assert main(["replay", "--log", str(log_file), "--projection", "ledger-test",
                 "--progress"]) == 0
    err = capsys.readouterr().err
    assert "replay: 10 events" in err and "events/s" in err
