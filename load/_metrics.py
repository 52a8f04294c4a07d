"""Prometheus metrics of the processes a load or soak run starts (prometheus-client).

Each process serves its own registry on ``127.0.0.1:PORT/metrics`` (loopback
unless told otherwise). Names follow the usual form: counters end in
``_total``, durations are ``_seconds``, sizes ``_bytes``:

| metric | process | what |
| --- | --- | --- |
| ``unbroken_load_messages_sent_total`` | load | messages handed to the target |
| ``unbroken_load_messages_acked_total`` | load | messages the target acknowledged |
| ``unbroken_load_ack_latency_seconds`` | load | intended send time to ack (histogram) |
| ``unbroken_load_read_requests_total{service}`` | load | BACnet reads answered |
| ``unbroken_load_read_latency_seconds{service}`` | load | BACnet read latency from intended time |
| ``unbroken_ingest_messages_processed_total`` | ingest | messages stored and acked |
| ``unbroken_store_append_latency_seconds`` | ingest | one batch's ``append_multi`` (histogram) |
| ``unbroken_projection_events_processed_total`` | projection | events folded |
| ``unbroken_projection_processing_latency_seconds`` | projection | intended send time to folded (histogram) |
| ``unbroken_projection_subscription_lag_events`` | projection | store head minus folded position |
| ``unbroken_projection_decisions_total`` | projection | decisions the projection took |
| ``unbroken_process_resident_memory_bytes``, ``unbroken_process_cpu_seconds_total`` | all | the process itself |

The BACnet event server (``unbroken serve bacnet --metrics-port``) has its own:
``unbroken_bacnet_server_objects``, ``_requests{service}``, ``_apply_lag_seconds``...
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.process_collector import ProcessCollector

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                   10.0, 30.0, 60.0)


class _Base:
    def __init__(self, port: int | None, host: str = "127.0.0.1") -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(namespace="unbroken", registry=self.registry)
        self.port = port
        if port is not None:
            start_http_server(port, addr=host, registry=self.registry)


class LoadMetrics(_Base):
    """The load process's metrics."""

    def __init__(self, port: int | None, host: str = "127.0.0.1") -> None:
        super().__init__(port, host)
        r = self.registry
        self.sent = Counter("unbroken_load_messages_sent", "messages handed to the target", registry=r)
        self.acked_total = Counter("unbroken_load_messages_acked", "messages acknowledged", registry=r)
        self.latency = Histogram("unbroken_load_ack_latency_seconds", "intended send time to ack",
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.reads = Counter("unbroken_load_read_requests", "BACnet reads answered", ["service"],
                             registry=r)
        self.read_errors = Counter("unbroken_load_read_errors", "BACnet reads failed", ["service"],
                                   registry=r)
        self.read_latency = Histogram("unbroken_load_read_latency_seconds",
                                      "BACnet read latency from its intended time", ["service"],
                                      buckets=LATENCY_BUCKETS, registry=r)
        self._sent = 0

    def acked(self, seconds: float) -> None:
        """One message acked ``seconds`` after its intended send time."""
        self.acked_total.inc()
        self.latency.observe(seconds)

    def sent_to(self, total: int) -> None:
        """The sent count is now ``total``."""
        self.sent.inc(max(0, total - self._sent))
        self._sent = max(self._sent, total)

    def read(self, service: str, seconds: float | None) -> None:
        """One read answered after ``seconds`` (None: it failed)."""
        if seconds is None:
            self.read_errors.labels(service).inc()
            return
        self.reads.labels(service).inc()
        self.read_latency.labels(service).observe(seconds)


class ProjectionMetrics(_Base):
    """The live projection process's metrics."""

    def __init__(self, port: int | None, host: str = "127.0.0.1") -> None:
        super().__init__(port, host)
        r = self.registry
        self.events = Counter("unbroken_projection_events_processed", "events folded", registry=r)
        self.latency = Histogram("unbroken_projection_processing_latency_seconds",
                                 "intended send time (occurred_at) to folded",
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.lag_events = Gauge("unbroken_projection_subscription_lag_events",
                                "store head minus the folded position", registry=r)
        self.decisions = Counter("unbroken_projection_decisions", "decisions taken", registry=r)

    def processed(self, event: Any, applied_ns: int) -> None:
        """One event folded at ``applied_ns``."""
        self.events.inc()
        if event.occurred_at:
            self.latency.observe(max(0, applied_ns - event.occurred_at) / 1e9)

    def lag(self, events: int) -> None:
        """The subscription is ``events`` behind the head."""
        self.lag_events.set(events)


class IngestMetrics(_Base):
    """The ingest wrapper's metrics."""

    def __init__(self, port: int | None, host: str = "127.0.0.1") -> None:
        super().__init__(port, host)
        r = self.registry
        self.messages = Counter("unbroken_ingest_messages_processed", "messages stored and acked",
                                registry=r)
        self.append = Histogram("unbroken_store_append_latency_seconds", "one batch's append",
                                buckets=LATENCY_BUCKETS, registry=r)
        self.append_errors = Counter("unbroken_store_append_errors", "appends that failed",
                                     registry=r)


class TimedStore:
    """A store whose ``append_multi``/``append`` are timed into ``metrics``; the rest passes through."""

    def __init__(self, store: Any, metrics: IngestMetrics) -> None:
        self._store, self._metrics = store, metrics

    def append_multi(self, requests: Any) -> Any:
        """``append_multi``, timed."""
        return self._timed(self._store.append_multi, requests)

    def append(self, *args: Any, **kwargs: Any) -> Any:
        """``append``, timed."""
        return self._timed(self._store.append, *args, **kwargs)

    def _timed(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        import time

        t0 = time.perf_counter()
        try:
            result = fn(*args, **kwargs)
        except Exception:
            self._metrics.append_errors.inc()
            raise
        self._metrics.append.observe(time.perf_counter() - t0)
        requests = args[0] if fn == self._store.append_multi else [args]
        try:
            self._metrics.messages.inc(sum(len(r[1]) for r in requests))
        except (TypeError, IndexError):
            pass
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def scrape(port: int, host: str = "127.0.0.1", timeout: float = 1.0) -> dict[str, float]:
    """The samples of ``host:port/metrics`` as ``{name{labels}: value}`` ({} if unreachable)."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    try:
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=timeout) as r:
            text = r.read().decode()
    except OSError:
        return {}
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return out
