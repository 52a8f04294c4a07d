"""Each rule of the fault library against a real child process and real loopback sockets and
files; processes run unchanged when no rule matches; rules change at run time."""

from __future__ import annotations

import errno
import socket

import native

from .support import Child, EchoServer, until


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _faults(env, action=None):
    return [r for r in env.injected() if action is None or r["action"] == action]


def test_no_matching_rule_changes_nothing(echo, tmp_path):
    other = _free_port()
    rules = [f"refuse dst=127.0.0.1:{other}", f"slice dst=:{other} bytes=1",
             f"enospc path={tmp_path}/elsewhere/*"]
    with native.faults(rules) as env, Child(env) as child:
        answer = child.ask(op="echo", port=echo.port, size=5000, timeout=5)
        wrote = child.ask(op="write", path=str(tmp_path / "f"), size=1000, fsync=True, writes=3)
    assert answer["ok"] and sum(answer["sizes"]) == 5000
    assert wrote["results"] == [1000, 1000, 1000, "fsync ok"]
    assert (tmp_path / "f").stat().st_size == 3000
    assert _faults(env) == []
    assert [r["event"] for r in env.records()] == ["rules"]


def test_refuse_fails_connect_with_ECONNREFUSED_and_logs_it(echo):
    spared = EchoServer()
    try:
        with native.faults({"action": "refuse", "dst": [f"127.0.0.1:{echo.port}"], "id": "no"}) as env, \
                Child(env) as child:
            refused = child.ask(op="connect", port=echo.port, timeout=5)
            fine = child.ask(op="connect", port=spared.port, timeout=5)
    finally:
        spared.close()
    assert refused == {**refused, "ok": False, "error": "ConnectionRefusedError", "errno": errno.ECONNREFUSED}
    assert fine["ok"]
    [fault] = _faults(env)
    assert fault["syscall"] == "connect" and fault["rule"] == "no" and fault["action"] == "refuse"
    assert fault["target"] == f"127.0.0.1:{echo.port}" and fault["errno"] == errno.ECONNREFUSED
    assert fault["errno_name"] == "ECONNREFUSED" and fault["t_ns"] > 0 and fault["pid"] > 0


def test_blackhole_connect_never_completes_within_the_callers_timeout(echo):
    with native.faults(f"blackhole dst=127.0.0.1:{echo.port}") as env, Child(env) as child:
        answer = child.ask(op="connect", port=echo.port, timeout=0.3)
        again = child.ask(op="connect", port=echo.port, timeout=0.3)  # the fd's state was forgotten
    for a in (answer, again):
        assert a["error"] == "TimeoutError" and a["elapsed"] >= 0.29
    assert [f["action"] for f in _faults(env)] == ["blackhole", "blackhole"]


def test_blackhole_data_stage_connects_but_nothing_comes_back(echo):
    with native.faults(f"blackhole dst=:{echo.port} stage=data") as env, Child(env) as child:
        answer = child.ask(op="echo", port=echo.port, size=100, timeout=0.3)
    assert answer["error"] == "TimeoutError" and answer["sizes"] == []
    [fault] = _faults(env)
    assert fault["syscall"] == "send" and "100 bytes vanished" in fault["detail"]


def test_reset_after_n_bytes(echo):
    with native.faults(f"reset dst=127.0.0.1:{echo.port} after=300") as env, Child(env) as child:
        answer = child.ask(op="echo", port=echo.port, size=1000, timeout=5)
    assert answer["error"] == "ConnectionResetError" and answer["errno"] == errno.ECONNRESET
    assert sum(answer["sizes"]) == 300
    [fault] = _faults(env)
    assert fault["errno_name"] == "ECONNRESET" and "after 300 bytes" in fault["detail"]


def test_slice_returns_reads_in_small_pieces(echo):
    with native.faults(f"slice dst=127.0.0.1:{echo.port} bytes=7") as env, Child(env) as child:
        answer = child.ask(op="echo", port=echo.port, size=100, timeout=5)
    assert answer["ok"] and sum(answer["sizes"]) == 100
    assert max(answer["sizes"]) <= 7 and len(answer["sizes"]) >= 15
    assert len(_faults(env, "slice")) == len(answer["sizes"])


def test_latency_with_seeded_jitter_is_added_and_repeats_with_the_seed(echo):
    def delays():
        rule = f"latency dst=127.0.0.1:{echo.port} ms=40 jitter=30 seed=5"
        with native.faults(rule) as env, Child(env) as child:
            answer = child.ask(op="echo", port=echo.port, size=10, timeout=5)
        return answer, [f["detail"] for f in _faults(env, "latency")]

    (first, d1), (_, d2) = delays(), delays()
    assert first["ok"] and first["elapsed"] >= 0.08  # connect and one recv, 40-70 ms each
    assert len(d1) >= 2 and d1 == d2
    assert all(40 <= int(d.split()[1]) < 70 for d in d1)


def test_drop_with_a_seeded_probability(sink):
    def run(seed):
        with native.faults(f"drop dst=127.0.0.1:{sink.port} p=0.3 seed={seed}") as env, Child(env) as child:
            child.ask(op="udp", port=sink.port, count=200)
        return env

    env = run(11)
    got = sink.received(200)
    dropped = len(_faults(env, "drop"))
    assert 30 <= dropped <= 90, dropped  # about 60 of 200
    assert len(got) == 200 - dropped  # exactly the datagrams not logged as dropped arrived
    again = run(11)
    assert len(_faults(again, "drop")) == dropped  # same seed, same drops


def test_fraction_silences_the_seeded_subset():
    servers = [EchoServer() for _ in range(10)]
    try:
        members = [f"127.0.0.1:{s.port}" for s in servers]
        silent = native.select_members(members, 0.3, seed=7)
        assert len(silent) == 3 and silent == native.select_members(members, 0.3, seed=7)
        rule = {"action": "refuse", "dst": members, "fraction": 0.3, "seed": 7, "id": "nf1"}
        with native.faults(rule) as env, Child(env) as child:
            answers = {m: child.ask(op="connect", port=s.port, timeout=5) for m, s in zip(members, servers, strict=True)}
    finally:
        for s in servers:
            s.close()
    assert sorted(m for m, a in answers.items() if not a["ok"]) == sorted(silent)
    [select] = [r for r in env.records() if r["event"] == "select"]
    assert sorted(select["target"].split(",")) == sorted(silent)
    assert native.select_members(members, 0.3, seed=8) != silent or len(members) < 3


def test_enospc_eio_and_short_writes_by_path_glob(tmp_path):
    rules = [f"enospc path={tmp_path}/full/*", f"eio path={tmp_path}/bad.*",
             f"short path={tmp_path}/short.log bytes=10"]
    (tmp_path / "full").mkdir()
    with native.faults(rules) as env, Child(env) as child:
        full = child.ask(op="write", path=str(tmp_path / "full" / "a"), size=100, fsync=False)
        bad = child.ask(op="write", path=str(tmp_path / "bad.db"), size=100, fsync=False)
        short = child.ask(op="write", path=str(tmp_path / "short.log"), size=100, fsync=False)
        fine = child.ask(op="write", path=str(tmp_path / "fine"), size=100, fsync=False)
    assert full["results"][0]["errno"] == errno.ENOSPC
    assert bad["results"][0]["errno"] == errno.EIO
    assert short["results"] == [10] and (tmp_path / "short.log").stat().st_size == 10
    assert fine["results"] == [100]
    assert [(f["action"], f["target"]) for f in _faults(env)] == [
        ("enospc", str(tmp_path / "full" / "a")), ("eio", str(tmp_path / "bad.db")),
        ("short", str(tmp_path / "short.log"))]


def test_fsync_failure_and_failure_on_the_nth_call(tmp_path):
    rules = [f"fsync path={tmp_path}/*.db", f"eio path={tmp_path}/nth.log nth=3"]
    with native.faults(rules) as env, Child(env) as child:
        synced = child.ask(op="write", path=str(tmp_path / "x.db"), size=10, fsync=True)
        nth = child.ask(op="write", path=str(tmp_path / "nth.log"), size=10, fsync=True, writes=5)
    assert synced["results"][0] == 10 and synced["results"][1]["errno"] == errno.EIO
    assert [r if isinstance(r, int) else r["errno"] for r in nth["results"][:5]] == [10, 10, errno.EIO, 10, 10]
    assert nth["results"][5] == "fsync ok"
    assert [f["syscall"] for f in _faults(env)] == ["fsync", "write"]


def test_rules_change_at_run_time_through_the_control_file(echo):
    with native.faults([], control=True) as env, Child(env) as child:
        assert child.ask(op="connect", port=echo.port, timeout=5)["ok"]
        env.set_rules(f"refuse dst=127.0.0.1:{echo.port} id=on")
        until(lambda: not child.ask(op="connect", port=echo.port, timeout=5)["ok"])
        env.set_rules([])
        until(lambda: child.ask(op="connect", port=echo.port, timeout=5)["ok"])
        assert child.ask(op="connect", port=echo.port, timeout=5)["ok"]
    kinds = [r["event"] for r in env.records()]
    assert kinds.count("rules") >= 3 and {f["rule"] for f in _faults(env)} == {"on"}


def test_a_bad_control_file_keeps_the_rules_and_says_why(echo):
    with native.faults(f"refuse dst=:{echo.port}", control=True) as env, Child(env) as child:
        env.control.write_text("explode dst=*\n")
        until(lambda: any(r["event"] == "error" for r in env.records()))
        assert child.ask(op="connect", port=echo.port, timeout=5)["error"] == "ConnectionRefusedError"
        err = child.close()
    assert "unknown action 'explode'" in err
    # one error per reading of the bad file: the write may be seen twice (truncate, then text)
    errors = [r for r in env.records() if r["event"] == "error"]
    assert errors and all(error["target"] == str(env.control) for error in errors)


def test_bad_rules_are_refused_in_python_naming_the_rule():
    import pytest

    for rule, words in [("explode dst=*", "action 'explode'"), ("enospc", "needs path=GLOB"),
                        ("refuse path=/x", "network rule"), ("slice dst=*", "bytes=N"),
                        ("refuse dst=* colour=red", "unknown key"), ("drop dst=* p=2", "outside [0, 1]"),
                        ({"action": "refuse", "dst": "a b"}, "space")]:
        with pytest.raises(ValueError, match="rule 1") as info:
            native.rules_text(rule)
        assert words in str(info.value)


def test_build_is_cached_by_source_hash_and_a_missing_compiler_names_the_package(library, monkeypatch,
                                                                               tmp_path):
    import pytest

    assert native.build() == library and library.name == native.LIBRARY
    assert library.parent.name == native._digest(native.compiler(), native._FLAGS, native.sources())
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing there
    monkeypatch.delenv("CC", raising=False)
    with pytest.raises(RuntimeError, match="install the Debian package gcc"):
        native.compiler()
    with pytest.raises(RuntimeError, match="gcc"):
        native.build(cache_dir=tmp_path / "cache")
