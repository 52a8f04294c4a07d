"""The soak runner: load, ingest and projection as separate processes, faults on a seeded plan.

``Soak(spec).run()`` lays out a run directory, starts a nats-server of its own
(free port, JetStream in the run directory) when the target is NATS, the
ingest (``load._procs ingest-nats``) and the live projection
(``load._procs follow``), then the load (``unbroken load``). While the load
runs it carries out the fault plan (see ``_plan``), samples every process's
resident memory and CPU (psutil) and the projection's lag (its Prometheus
endpoint) once a second. When the load is done it waits for the backlog to
drain, stops everything, accounts for every message, checks the projection's
invariants on the stored log and that the live state equals a replay, judges
the criteria and writes the report.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eventstore import NewEvent, UnbrokenError, open_store
from eventstore.payloads import Fault

from ._plan import FaultPlan, PlannedFault

NS = 1_000_000_000


class SoakError(UnbrokenError, RuntimeError):
    """The soak could not run (a process would not start, nats-server is missing...)."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _reachable(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def wait_until(condition, timeout: float, what: str, every: float = 0.05) -> Any:
    """Poll ``condition`` until true or ``timeout`` (then ``SoakError``)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise SoakError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(every)


@dataclass
class SoakSpec:
    """What ``unbroken soak`` was asked for."""

    profile: str
    duration: float
    out: Path
    plan: FaultPlan
    target: str = "nats"  # nats | embedded
    rate: float = 100.0
    seed: int = 0
    arrivals: str = "profile"
    drain_timeout: float = 120.0
    ingest_ack_wait: float = 5.0  # JetStream redelivers what a killed ingest fetched after this
    server: str = "none"  # none | bacnet: run `unbroken serve bacnet` over the store
    read_rate: float = 0.0  # BACnet reads per second against that server
    load_args: list[str] = field(default_factory=list)  # more `unbroken load` options (bursts)
    check_examples: int = 1
    progress: Any = None  # callable(str) for status lines


def _prctl() -> Any:
    """libc's ``prctl`` (Linux), looked up in the parent: a child between fork and exec imports nothing."""
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def _die_with_parent(prctl: Any, parent: int) -> None:
    """In a child between fork and exec: have the kernel SIGKILL it when ``parent`` ends (Linux).

    ``PR_SET_PDEATHSIG`` fires when the thread that forked the child ends; the soak
    starts its processes from its main thread, which lives as long as the run. A
    parent already gone before the call would never signal: exit at once instead.
    Without ``prctl`` (not Linux) this does nothing.
    """
    if prctl is None:
        return
    prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:
        os._exit(1)


@dataclass
class Proc:
    """One child process the soak starts, kills and restarts."""

    name: str
    argv: list[str]
    log: Path
    env: dict[str, str] | None = None
    metrics_port: int | None = None
    limit_mb: float | None = None
    popen: subprocess.Popen | None = None
    starts: int = 0
    killed: bool = False  # the plan killed it (an exit is expected)
    unplanned: list[str] = field(default_factory=list)

    def start(self) -> None:
        """Start (or restart) the process: in a session of its own, killed if the soak dies.

        Its own session lets the plan signal it alone; without the death signal a soak
        runner killed hard (SIGKILL, a test's timeout) left its nats-server and ingest
        processes running, holding ports and CPU, with nobody to stop them.
        """
        limit = self.limit_mb
        runner, prctl = os.getpid(), _prctl()

        def preexec() -> None:
            os.setsid()
            _die_with_parent(prctl, runner)
            if limit:
                size = int(limit * 1024 * 1024)
                resource.setrlimit(resource.RLIMIT_AS, (size, size))

        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT,
                                          env=self.env, preexec_fn=preexec)
        self.starts += 1
        self.killed = False

    def alive(self) -> bool:
        """True while the process runs."""
        return self.popen is not None and self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL, no shutdown."""
        if self.alive():
            self.killed = True
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait(timeout=30)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``."""
        if not self.alive():
            return
        self.killed = True
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout=10)

    def check(self) -> None:
        """Note an exit the plan did not cause."""
        if self.popen is not None and not self.alive() and not self.killed:
            self.unplanned.append(f"{self.name} exited with {self.popen.returncode} "
                                  f"(see {self.log.name})")
            self.killed = True  # noted once


class Soak:
    """One soak run (see the module docstring)."""

    def __init__(self, spec: SoakSpec) -> None:
        self.spec = spec
        self.out = spec.out
        self.procs: dict[str, Proc] = {}
        self.faults: list[dict[str, Any]] = []
        self.resources: list[dict[str, Any]] = []
        self.lag: list[tuple[float, float]] = []
        self._stop_sampling = threading.Event()
        self.store_uri = f"embedded:///{(self.out / 'events.db').resolve()}"
        self.native_env: Any = None
        self.t0_ns = 0
        self.fault_events = 0  # Fault events the soak appended to the store

    # -- layout and processes ---------------------------------------------
    def say(self, line: str) -> None:
        """A status line."""
        if self.spec.progress is not None:
            self.spec.progress(line)

    def _proc(self, name: str, argv: list[str], **kw: Any) -> Proc:
        proc = Proc(name, argv, self.out / "logs" / f"{name}.log",
                    limit_mb=self.spec.plan.rlimit_as.get(name), **kw)
        self.procs[name] = proc
        return proc

    def setup(self) -> None:
        """Lay out the run directory and start broker, ingest and projection."""
        from ._profiles import profile

        self.prof = profile(self.spec.profile)
        if self.out.exists() and any(self.out.iterdir()):
            raise SoakError(f"{self.out} exists and is not empty; choose a new --out")
        (self.out / "logs").mkdir(parents=True, exist_ok=True)
        py = sys.executable
        with open_store(self.store_uri):
            pass
        if self.spec.target == "nats":
            binary = shutil.which("nats-server")
            if binary is None:
                raise SoakError("nats-server is not installed (make system-deps, or "
                                "apt-get install nats-server); or use --target embedded")
            self.nats_port = free_port()
            (self.out / "jetstream").mkdir()
            self._proc("broker", [binary, "-js", "-sd", str(self.out / "jetstream"), "-a",
                                  "127.0.0.1", "-p", str(self.nats_port)])
            self._start("broker")
            wait_until(lambda: _reachable(self.nats_port), 30, "nats-server to listen")
            self.spec.plan.broker = f"127.0.0.1:{self.nats_port}"
            env, port = self._native_env(), free_port()
            self._proc("ingest", [py, "-m", "load._procs", "ingest-nats", "--store", self.store_uri,
                                  "--url", f"nats://127.0.0.1:{self.nats_port}", "--subject",
                                  "soak.>", "--metrics-port", str(port), "--ack-wait",
                                  str(self.spec.ingest_ack_wait),
                                  "--status-every", "10"],
                       env=env, metrics_port=port)
            self._start("ingest")
            self.target_uri = f"nats://127.0.0.1:{self.nats_port}/soak.in?stream=UNBROKEN"
        else:
            self.target_uri = self.store_uri
        port = free_port()
        self._proc("projection", [py, "-m", "load._procs", "follow", "--store", self.store_uri,
                                  "--projection", self.prof.projection, "--dir",
                                  str(self.out / "projection"), "--metrics-port", str(port)],
                   metrics_port=port)
        self._start("projection")
        if self.spec.server == "bacnet":
            self._start_server(py)
        self._wait_ready()

    def _start_server(self, py: str) -> None:
        from adapters.bacnet.net import free_port as free_udp_port

        self.server_address = f"127.0.0.1:{free_udp_port()}"
        port = free_port()
        self._proc("server", [py, "-m", "load._procs", "serve-bacnet", "--store",
                              self.store_uri, "--address", self.server_address, "--device-id",
                              "599", "--metrics-port", str(port), "--snapshot",
                              str(self.out / "server.snapshot"), "--status-every", "10"],
                   metrics_port=port)
        self.spec.plan.limits.setdefault("server", 128.0)  # BN-001: under 128 MB resident
        self._start("server")

    def _wait_ready(self) -> None:
        """Wait until the projection serves metrics and the ingest's durable consumer exists."""
        from ._metrics import scrape

        proj = self.procs["projection"]
        wait_until(lambda: scrape(proj.metrics_port) or not proj.alive(), 120,
                   "the projection process to serve metrics")
        if not proj.alive():
            raise SoakError(f"the projection process exited; see {proj.log}")
        if "server" in self.procs:
            server = self.procs["server"]
            wait_until(lambda: scrape(server.metrics_port) or not server.alive(), 120,
                       "the BACnet server to serve metrics")
            if not server.alive():
                raise SoakError(f"the BACnet server exited; see {server.log}")
        if "ingest" in self.procs:
            ingest = self.procs["ingest"]
            wait_until(lambda: self._consumer_ready() or not ingest.alive(), 120,
                       "the ingest's durable consumer")
            if not ingest.alive():
                raise SoakError(f"the ingest process exited; see {ingest.log}")

    def _consumer_ready(self) -> bool:
        import asyncio

        async def probe() -> bool:
            import nats

            nc = await nats.connect(f"nats://127.0.0.1:{self.nats_port}", connect_timeout=1,
                                    allow_reconnect=False, max_reconnect_attempts=0)
            try:
                await nc.jetstream().consumer_info("UNBROKEN", "soak")
                return True
            except Exception:
                return False
            finally:
                await nc.close()

        try:
            return asyncio.run(probe())
        except Exception:
            return False

    def _native_env(self) -> dict[str, str] | None:
        if "native" not in self.spec.plan.actions:  # fixed or generated native faults
            return None
        import native

        self._native_cm = native.faults([], log=self.out / "native-faults.jsonl", control=True)
        self.native_env = self._native_cm.__enter__()
        return dict(self.native_env)

    def _start(self, name: str) -> None:
        self.procs[name].start()

    # -- faults -------------------------------------------------------------
    def record_fault(self, fault: PlannedFault, phase: str, detail: str = "") -> None:
        """Keep the fault in faults.jsonl and as a ``Fault`` event in the store."""
        now = time.time_ns()
        row = {"at_ns": now, "t": round((now - self.t0_ns) / NS, 3), "phase": phase,
               "action": fault.action, "process": fault.process, "label": fault.label,
               "detail": detail}
        self.faults.append(row)
        with (self.out / "faults.jsonl").open("a") as f:
            f.write(json.dumps(row) + "\n")
        try:
            with open_store(self.store_uri) as store:
                store.append("soak-faults", [NewEvent.of(Fault(
                    source=f"soak:{fault.process}", kind=f"{fault.action}-{phase}",
                    detail=f"{fault.label} {detail}".strip()))])
                self.fault_events += 1  # an undercount only makes the drain wait longer
        except Exception as e:  # the store may be the thing under fault
            row["detail"] += f" (not stored: {e})"
        self.say(f"fault {fault.label}: {phase} {detail}".rstrip())

    def inject(self, fault: PlannedFault) -> None:
        """Start a fault; its end is ``end_fault``."""
        if fault.action in ("kill", "restart"):
            proc = self.procs.get(fault.process)
            if proc is None:
                self.record_fault(fault, "skipped", f"no {fault.process} process in this run")
                return
            proc.kill()
            self.record_fault(fault, "start", "SIGKILL")
        elif fault.action == "native":
            if self.native_env is None:
                self.record_fault(fault, "skipped", "native faults unavailable")
                return
            self.native_env.set_rules(fault.rules)
            self.record_fault(fault, "start", "; ".join(fault.rules))
        elif fault.action == "memory-limit":
            proc = self.procs.get(fault.process)
            if proc is None:
                self.record_fault(fault, "skipped", f"no {fault.process} process")
                return
            proc.kill()
            proc.limit_mb = fault.limit_mb
            self.record_fault(fault, "start", f"restart under RLIMIT_AS {fault.limit_mb:g} MB")

    def end_fault(self, fault: PlannedFault) -> None:
        """Undo a fault: restart what was killed, clear native rules."""
        if fault.action in ("kill", "restart", "memory-limit"):
            proc = self.procs.get(fault.process)
            if proc is None:
                return
            proc.start()
            if fault.process == "broker":
                wait_until(lambda: _reachable(self.nats_port), 30, "nats-server to listen again")
            self.record_fault(fault, "end", "restarted")
        elif fault.action == "native" and self.native_env is not None:
            self.native_env.set_rules([])
            self.record_fault(fault, "end", "rules cleared")

    # -- sampling -----------------------------------------------------------
    def _sample_loop(self) -> None:
        import psutil

        from ._metrics import scrape

        handles: dict[int, Any] = {}
        while not self._stop_sampling.wait(1.0):
            t = round((time.time_ns() - self.t0_ns) / NS, 2)
            for proc in list(self.procs.values()):
                if not proc.alive():
                    continue
                pid = proc.popen.pid
                h = handles.get(pid)
                try:
                    if h is None:
                        h = handles[pid] = psutil.Process(pid)
                        h.cpu_percent(None)
                        continue
                    rss = h.memory_info().rss / 1e6
                    cpu = h.cpu_percent(None)
                except psutil.Error:
                    continue
                row = {"t": t, "process": proc.name, "rss_mb": round(rss, 2), "cpu_pct": cpu}
                self.resources.append(row)
                self._live.write(json.dumps(row) + "\n")
            port = self.procs["projection"].metrics_port
            m = scrape(port) if port and self.procs["projection"].alive() else {}
            if "unbroken_projection_subscription_lag_events" in m:
                self.lag.append((t, m["unbroken_projection_subscription_lag_events"]))
                self._live.write(json.dumps({"t": t, "lag_events": self.lag[-1][1]}) + "\n")
            self._live.flush()

    # -- the run ------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Run the soak end to end and return the report data (see ``_report``)."""
        self.setup()
        self.t0_ns = time.time_ns()
        self._live = (self.out / "samples-live.jsonl").open("a")
        (self.out / "soak.json").write_text(json.dumps({
            "profile": self.spec.profile, "duration": self.spec.duration, "target": self.spec.target,
            "rate": self.spec.rate, "seed": self.spec.seed, "arrivals": self.spec.arrivals,
            "t0_ns": self.t0_ns, "store_uri": self.store_uri, "plan": self.spec.plan.source,
            "limits": self.spec.plan.limits, "criteria": self.spec.plan.criteria,
            "drain_timeout": self.spec.drain_timeout, "server": self.spec.server,
            "read_rate": self.spec.read_rate}, indent=2))
        sampler = threading.Thread(target=self._sample_loop, name="soak-sampler", daemon=True)
        sampler.start()
        load_dir = self.out / "load"
        load_port = free_port()
        self._proc("load", [sys.executable, "-m", "load._procs", "load", "--profile",
                            self.spec.profile, "--target", self.target_uri, "--rate",
                            str(self.spec.rate), "--duration", str(self.spec.duration), "--seed",
                            str(self.spec.seed), "--arrivals", self.spec.arrivals, "--out",
                            str(load_dir), "--metrics-port", str(load_port), "--quiet",
                            *self._read_args(), *self.spec.load_args],
                   metrics_port=load_port)
        self._start("load")
        drained = False
        try:
            self._carry_out_plan()
            self.say("load finished; waiting for the backlog to drain")
            drained = self._drain()
        finally:
            self._stop_sampling.set()
            sampler.join(timeout=5)
            self._live.close()
            self._stop_all()
            (self.out / "drained").write_text("yes" if drained else "no")
        from ._judge import judge

        return judge(self, drained)

    def _read_args(self) -> list[str]:
        if self.spec.server != "bacnet" or self.spec.read_rate <= 0:
            return []
        return ["--reads", f"bacnet://{self.server_address}", "--read-rate",
                str(self.spec.read_rate)]

    def _carry_out_plan(self) -> None:
        schedule = self.spec.plan.schedule(self.spec.duration)
        (self.out / "plan.json").write_text(json.dumps([f.as_dict() for f in schedule], indent=2))
        events: list[tuple[float, int, PlannedFault]] = []
        for f in schedule:
            events.append((f.at, 0, f))
            events.append((f.at + f.down, 1, f))
        events.sort(key=lambda e: (e[0], e[1]))
        last_status = 0.0
        while self.procs["load"].alive() or events:
            now = (time.time_ns() - self.t0_ns) / NS
            while events and events[0][0] <= now:
                _, kind, fault = events.pop(0)
                (self.end_fault if kind else self.inject)(fault)
            for name, proc in self.procs.items():
                if name != "load":
                    proc.check()
            if now - last_status >= 10:
                self.say(self._status_line(now))
                last_status = now
            if not self.procs["load"].alive() and not events:
                break
            if not self.procs["load"].alive() and events and events[0][0] > now + 1:
                # the load ended early (it failed): end the open faults now
                for _, kind, fault in events:
                    if kind:
                        self.end_fault(fault)
                events.clear()
            time.sleep(0.05)
        load = self.procs["load"]
        load.killed = True  # its exit is expected now; a failed one is noted here
        if load.popen.returncode not in (0, 1):
            load.unplanned.append(f"load exited with {load.popen.returncode} (see load.log)")

    def _status_line(self, now: float) -> str:
        rss = {r["process"]: r["rss_mb"] for r in self.resources[-len(self.procs) * 2:]}
        lag = self.lag[-1][1] if self.lag else None
        from ._metrics import scrape

        m = scrape(self.procs["load"].metrics_port) if self.procs["load"].alive() else {}
        sent = int(m.get("unbroken_load_messages_sent_total", 0))
        acked = int(m.get("unbroken_load_messages_acked_total", 0))
        mem = ", ".join(f"{k} {v:.0f} MB" for k, v in sorted(rss.items()))
        return (f"t={now:,.0f}s sent {sent:,} acked {acked:,} lag {lag if lag is not None else '?'}"
                f" events; {mem}; faults {len([f for f in self.faults if f['phase'] == 'start'])}")

    def _drain(self) -> bool:
        """Wait until the projection has folded everything stored and the ingest is idle."""
        from ._follower import read_checkpoint

        deadline = time.monotonic() + self.spec.drain_timeout
        summary = self.out / "load" / "load-summary.json"
        acked = json.loads(summary.read_text())["acked"] if summary.exists() else None
        last_head, stable_since = -1, time.monotonic()
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if name != "load":
                    proc.check()
            with open_store(self.store_uri) as store:
                head = store.last_position()
            cp = read_checkpoint(self.out / "projection")
            if head != last_head:
                last_head, stable_since = head, time.monotonic()
            folded = cp is not None and cp.position >= head
            # every acked message stored (positions also count the soak's own Fault events)
            stored_enough = acked is None or head - self.fault_events >= acked
            quiet = time.monotonic() - stable_since > 2
            if folded and stored_enough and quiet:
                return True
            time.sleep(0.2)
        return False

    def _stop_all(self) -> None:
        (self.out / "projection").mkdir(exist_ok=True)
        (self.out / "projection" / "finish").touch()  # input has ended: drain the timers
        for name in ("load", "ingest", "projection", "server", "broker"):
            proc = self.procs.get(name)
            if proc is not None:
                proc.check()
                proc.stop()
        if self.native_env is not None:
            self._native_cm.__exit__(None, None, None)
        unplanned = [u for p in self.procs.values() for u in p.unplanned]
        starts = {p.name: p.starts for p in self.procs.values()}
        (self.out / "processes.json").write_text(json.dumps(
            {"unplanned": unplanned, "starts": starts}, indent=2))


def state_digest(state: Any) -> str:
    """sha256 of a projection state's MessagePack bytes."""
    import msgspec

    return hashlib.sha256(msgspec.msgpack.encode(state)).hexdigest()


def rejudge(out: Path, progress: Any = None) -> dict[str, Any]:
    """Judge a finished (or interrupted) run again from its directory and rewrite the report."""
    from ._judge import judge
    from ._plan import FaultPlan
    from ._profiles import profile

    meta = json.loads((out / "soak.json").read_text())
    plan = FaultPlan(limits=meta["limits"], criteria=meta["criteria"])
    spec = SoakSpec(meta["profile"], meta["duration"], out, plan, target=meta["target"],
                    rate=meta["rate"], seed=meta["seed"], arrivals=meta["arrivals"],
                    drain_timeout=meta["drain_timeout"], progress=progress,
                    server=meta.get("server", "none"), read_rate=meta.get("read_rate", 0.0))
    soak = Soak(spec)
    soak.prof = profile(meta["profile"])
    soak.t0_ns = meta["t0_ns"]
    soak.store_uri = meta["store_uri"]
    soak.faults = _jsonl(out / "faults.jsonl")
    for row in _jsonl(out / "samples-live.jsonl"):
        if "lag_events" in row:
            soak.lag.append((row["t"], row["lag_events"]))
        else:
            soak.resources.append(row)
    drained = (out / "drained").exists() and (out / "drained").read_text() == "yes"
    return judge(soak, drained)


def _jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
