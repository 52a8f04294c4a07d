"""The soak report: report.md with PNG charts, report.json for CI, and a one-screen summary.

Charts (matplotlib, Agg backend), fault windows shaded and labelled in each:
``rate.png`` (sent, acked, stored, projected per second), ``latency.png``
(p50/p99/max of intended-send-to-projected per 5 s, log scale),
``resources.png`` (resident memory and CPU of each process), ``lag.png``
(the projection's subscription lag in events, and the backlog: acked but not
yet projected).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

NS = 1_000_000_000
COLORS = {"kill ingest": "#d62728", "kill projection": "#e377c2", "kill server": "#8c564b",
          "restart broker": "#ff7f0e", "kill broker": "#ff7f0e", "native ingest": "#9467bd",
          "memory-limit": "#7f7f7f", "burst load": "#bcbd22"}


def _shade(ax: Any, windows: list[dict], t0: int, numbers: bool = True) -> None:
    seen = set()
    for w in windows:
        fid, action, process = (w["label"].split(":") + ["", ""])[:3]
        key = f"{action} {process}"
        label = None if key in seen else f"{action} {process}"
        seen.add(key)
        start, end = (w["start_ns"] - t0) / NS, (w["end_ns"] - t0) / NS
        color = COLORS.get(key, COLORS.get(action, "#7f7f7f"))
        ax.axvspan(start, max(end, start + 0.5), color=color, alpha=0.25, label=label, lw=0)
        if numbers and len(windows) <= 60:
            ax.annotate(fid, (start, 1.0), xycoords=("data", "axes fraction"), fontsize=6,
                        va="bottom", ha="center", color=color)


def _per_second(ns: np.ndarray, t0: int, seconds: int) -> np.ndarray:
    ns = ns[ns > 0]
    if not len(ns):
        return np.zeros(seconds)
    idx = ((ns - t0) // NS).astype(int)
    idx = idx[(idx >= 0) & (idx < seconds)]
    return np.bincount(idx, minlength=seconds)[:seconds]


def charts(out: Path, data: dict, samples: Any, acc: Any, resources: list[dict],
           lag: list[tuple[float, float]]) -> list[str]:
    """Write the PNGs; returns their file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t0 = data["started_ns"]
    windows = data["windows"] + [{"label": f"b{i + 1}:burst:load", **b}
                                 for i, b in enumerate(data.get("bursts", []))]
    names = []
    last = [r["t"] for r in resources[-1:]]
    if acc is not None and acc.projected_ns is not None and (acc.projected_ns > 0).any():
        last.append((acc.projected_ns.max() - t0) / NS)
    if samples is not None and len(samples.intended_ns):
        last.append((samples.intended_ns.max() - t0) / NS)
    seconds = int(max(last or [60.0])) + 5
    if samples is not None:
        fig, ax = plt.subplots(figsize=(11, 3.6))
        x = np.arange(seconds)
        series = [("sent", samples.sent_ns), ("acked", samples.acked_ns)]
        if acc is not None and acc.stored_ns is not None:
            series.append(("stored", acc.stored_ns))
        if acc is not None and acc.projected_ns is not None:
            series.append(("projected", acc.projected_ns))
        for label, ns in series:
            ax.plot(x, _per_second(ns, t0, seconds), label=label, lw=0.9)
        _shade(ax, windows, t0)
        ax.set(title="Messages per second", xlabel="seconds since start", ylabel="messages/s",
               xlim=(0, seconds))
        ax.legend(loc="upper left", fontsize=7, ncol=4, framealpha=0.85)
        ax.grid(alpha=0.3)
        names.append(_save(fig, out / "rate.png"))
        if acc is not None and acc.projected_ns is not None:
            names.append(_latency_chart(plt, out, samples, acc, windows, t0))
    reads_path = out / "load" / "reads.parquet"
    if reads_path.exists():
        names.append(_reads_chart(plt, out, reads_path, windows, t0))
    if resources:
        fig, (a1, a2) = plt.subplots(2, 1, figsize=(11, 5.5), sharex=True)
        for proc in sorted({r["process"] for r in resources}):
            pts = [r for r in resources if r["process"] == proc]
            t = [r["t"] for r in pts]
            a1.plot(t, [r["rss_mb"] for r in pts], label=proc, lw=0.9)
            a2.plot(t, [r["cpu_pct"] for r in pts], label=proc, lw=0.7)
        for a in (a1, a2):
            _shade(a, windows, t0)
            a.grid(alpha=0.3)
        a1.set(title="Resident memory per process", ylabel="MB")
        a2.set(title="CPU per process", ylabel="% of one core", xlabel="seconds since start")
        a1.legend(loc="upper left", fontsize=7, ncol=6, framealpha=0.85)
        a1.set_xlim(0, seconds)
        names.append(_save(fig, out / "resources.png"))
    if lag or (acc is not None and acc.projected_ns is not None):
        fig, ax = plt.subplots(figsize=(11, 3.6))
        if lag:
            ax.plot([t for t, _ in lag], [v for _, v in lag], label="subscription lag (events)", lw=0.9)
        if samples is not None and acc is not None and acc.projected_ns is not None:
            acked = np.cumsum(_per_second(samples.acked_ns, t0, seconds))
            projected = np.cumsum(_per_second(acc.projected_ns, t0, seconds))
            ax.plot(np.arange(seconds), acked - projected, label="backlog: acked, not yet projected",
                    lw=0.9)
        _shade(ax, windows, t0)
        ax.set(title="Lag and backlog", xlabel="seconds since start", ylabel="messages",
               xlim=(0, seconds))
        ax.legend(loc="upper left", fontsize=7, ncol=4, framealpha=0.85)
        ax.grid(alpha=0.3)
        names.append(_save(fig, out / "lag.png"))
    return names


def _latency_chart(plt: Any, out: Path, samples: Any, acc: Any, windows: list, t0: int) -> str:
    ok = acc.projected_ns > 0
    t = (samples.intended_ns[ok] - t0) / NS
    lat = (acc.projected_ns[ok] - samples.intended_ns[ok]) / 1e6
    width = max(1.0, float(np.ceil(t.max() / 300))) if len(t) else 1.0
    bins = (t // width).astype(int)
    xs, p50, p99, mx = [], [], [], []
    order = np.argsort(bins, kind="stable")
    bins, lat = bins[order], lat[order]
    cuts = np.flatnonzero(np.diff(bins)) + 1
    for chunk_b, chunk in zip(np.split(bins, cuts), np.split(lat, cuts), strict=True):
        if len(chunk):
            xs.append(chunk_b[0] * width + width / 2)
            p50.append(np.percentile(chunk, 50))
            p99.append(np.percentile(chunk, 99))
            mx.append(chunk.max())
    fig, ax = plt.subplots(figsize=(11, 3.6))
    ax.plot(xs, mx, label="max", lw=0.7, color="#bbbbbb")
    ax.plot(xs, p99, label="p99", lw=1.0)
    ax.plot(xs, p50, label="p50", lw=1.0)
    ax.axhline(100, color="black", ls="--", lw=0.7, label="100 ms")
    _shade(ax, windows, t0)
    ax.set_yscale("log")
    ax.set(title=f"Intended send to projected, per {width:g} s (coordinated omission counted)",
           xlabel="seconds since start (intended send time)", ylabel="ms")
    ax.legend(loc="upper left", fontsize=7, ncol=5, framealpha=0.85)
    ax.grid(alpha=0.3, which="both")
    return _save(fig, out / "latency.png")


def _binned(t: np.ndarray, values: np.ndarray) -> tuple[list, list, list]:
    width = max(1.0, float(np.ceil(t.max() / 300))) if len(t) else 1.0
    bins = (t // width).astype(int)
    xs, p50, p99 = [], [], []
    for b in np.unique(bins):
        chunk = values[bins == b]
        xs.append(b * width + width / 2)
        p50.append(np.percentile(chunk, 50))
        p99.append(np.percentile(chunk, 99))
    return xs, p50, p99


def _reads_chart(plt: Any, out: Path, path: Path, windows: list, t0: int) -> str:
    from ._reads import load_reads

    reads = load_reads(path)
    ok = reads.ok == 1
    t = (reads.intended_ns[ok] - t0) / NS
    xs, p50, p99 = _binned(t, (reads.done_ns[ok] - reads.intended_ns[ok]) / 1e6)
    fig, ax = plt.subplots(figsize=(11, 3.6))
    ax.plot(xs, p99, label="p99", lw=1.0)
    ax.plot(xs, p50, label="p50", lw=1.0)
    failed = (reads.intended_ns[~ok] - t0) / NS
    if len(failed):
        ax.plot(failed, np.full(len(failed), 2000.0), "x", ms=3, color="#d62728",
                label=f"failed reads ({len(failed)})")
    ax.axhline(50, color="black", ls="--", lw=0.7, label="50 ms")
    _shade(ax, windows, t0)
    ax.set_yscale("log")
    ax.set(title="BACnet reads (60% RP, 30% RPM, 10% ReadRange): latency from intended time",
           xlabel="seconds since start", ylabel="ms")
    ax.legend(loc="upper left", fontsize=7, ncol=5, framealpha=0.85)
    ax.grid(alpha=0.3, which="both")
    return _save(fig, out / "reads.png")


def _save(fig: Any, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path.name


def _fmt(v: Any) -> str:
    return "-" if v is None else f"{v:,.1f}" if isinstance(v, float) else str(v)


def markdown(data: dict, pngs: list[str]) -> str:
    """report.md's text."""
    acc = data.get("accounting") or {}
    lines = [f"# Soak report: {data['profile']} over {data['target']}, "
             f"{data['duration_s']:g} s at {data['rate']:g}/s (seed {data['seed']})", "",
             f"**Verdict: {data['verdict'].upper()}**", "",
             "| criterion | status | measured |", "| --- | --- | --- |"]
    for c in data["criteria"]:
        lines.append(f"| {c['description']} | **{c['status']}** | {c['measured']} |")
    lines += ["", "## Loss accounting", "",
              "| scheduled | sent | acked | stored | projected | missing | duplicated |",
              "| --- | --- | --- | --- | --- | --- | --- |",
              f"| {_fmt(acc.get('scheduled'))} | {_fmt(acc.get('sent'))} | {_fmt(acc.get('acked'))} | "
              f"{_fmt(acc.get('stored'))} | {_fmt(acc.get('projected'))} | {_fmt(acc.get('lost'))} | "
              f"{_fmt(acc.get('duplicates'))} |", ""]
    for stage, ids in (acc.get("missing") or {}).items():
        if ids:
            lines.append(f"- missing at {stage}: {', '.join(ids[:50])}"
                         + (" ..." if len(ids) > 50 else ""))
    for stage, ids in (acc.get("duplicated") or {}).items():
        if ids:
            lines.append(f"- duplicated at {stage}: {', '.join(ids[:50])}")
    lines += ["", "## Latency (ms, from each message's intended send time)", "",
              "| measure | phase | p50 | p90 | p99 | p99.9 | max | count |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for measure, phases in data.get("latency_ms", {}).items():
        if "count" in phases:
            phases = {"all": phases}
        for phase, q in phases.items():
            lines.append(f"| {measure} | {phase} | " + " | ".join(
                _fmt(q.get(k)) for k in ("p50", "p90", "p99", "p99.9", "max", "count")) + " |")
    lines += ["", "## Charts", ""] + [f"![{p}]({p})" for p in pngs]
    lines += ["", f"## Faults ({sum(1 for f in data['faults'] if f['phase'] == 'start')})", "",
              "| t (s) | fault | phase | detail |", "| --- | --- | --- | --- |"]
    lines += [f"| {f['t']} | {f['label']} | {f['phase']} | {f['detail']} |" for f in data["faults"]]
    lines += ["", "Files: `report.json` (this, for CI), `load/samples.parquet` (one row per "
              "message), `faults.jsonl`, `resources.jsonl`, `logs/`.", ""]
    return "\n".join(lines)


def summary_text(data: dict, out: Path) -> str:
    """The one-screen summary printed at the end of the run."""
    acc = data.get("accounting") or {}
    lines = [f"soak {data['profile']} -> {data['target']}: {data['duration_s']:g} s at "
             f"{data['rate']:g}/s, {sum(1 for f in data['faults'] if f['phase'] == 'start')} faults",
             f"  messages: scheduled {acc.get('scheduled', '-')}, sent {acc.get('sent', '-')}, acked "
             f"{acc.get('acked', '-')}, stored {acc.get('stored', '-')}, projected "
             f"{acc.get('projected', '-')}; missing {acc.get('lost', '-')}, duplicated "
             f"{acc.get('duplicates', '-')}"]
    width = max(len(c["id"]) for c in data["criteria"])
    for c in data["criteria"]:
        lines.append(f"  {c['status'].upper():8} {c['id']:{width}}  {c['measured']}")
    lines.append(f"  verdict: {data['verdict'].upper()}   report: {out / 'report.md'}")
    return "\n".join(lines)


def write_report(soak: Any, data: dict, samples: Any, acc: Any) -> None:
    """Write resources.jsonl, the charts, report.md and report.json into the run directory."""
    out = soak.out
    with (out / "resources.jsonl").open("w") as f:
        for r in soak.resources:
            f.write(json.dumps(r) + "\n")
    try:
        pngs = charts(out, data, samples, acc, soak.resources, soak.lag)
    except Exception as e:  # a chart that fails must not hide the verdict
        pngs = []
        data["chart_error"] = f"{type(e).__name__}: {e}"
    (out / "report.json").write_text(json.dumps(data, indent=2, default=str))
    (out / "report.md").write_text(markdown(data, pngs))
