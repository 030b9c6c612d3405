"""One measurement's result, and how results are shown: an aligned table and one JSON line.

Definitions, so the numbers mean the same thing for every target:

- ``expected`` is inserts x N *requested* subscribers: a subscriber that was refused or
  failed to connect loses every event, and that is counted in ``lost``.
- ``received`` counts each (subscriber, message) once; a second copy is ``duplicated``.
- latency is receipt (parsed by the client) minus the writer's clock right after COMMIT.
- the window runs from the first insert until every connected stream has every event, or
  until the grace period after the last insert ends; CPU and frames/s use that window.
- CPU comes from the kernel's per-process counters, in 10 ms ticks: at a few dozen frames
  the CPU columns are coarse; they mean something from hundreds of subscribers up.
- ``kb_per_subscriber`` is the server's RSS growth from before the first subscriber to the
  end of the window, divided by the subscribers that connected (a refused one costs nothing).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class Result:
    """One target at one size. Fields left None were not measured (the run failed first)."""

    target: str
    subscribers: int  # N requested
    rate: float  # inserts per second
    duration_s: float
    workers: int
    connected: int = 0
    refused: int = 0  # the server answered with an HTTP error
    failed: int = 0  # timeout, reset, refused TCP connection
    ended_early: int = 0  # streams the server closed before the end of the window
    connect_s: float | None = None  # time to open all N
    inserts: int = 0
    expected: int = 0
    received: int = 0
    lost: int = 0
    duplicated: int = 0
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    pg_backends: int | None = None  # the server's sessions, peak during the run
    server_threads: int | None = None  # OS threads over the tree at the end of the window
    server_rss_mb: float | None = None  # at the end of the window, subscribers still open
    server_rss_peak_mb: float | None = None
    kb_per_subscriber: float | None = None
    server_cpu_s: float | None = None
    cpu_us_per_frame: float | None = None
    frames_per_s: float | None = None
    harness_cpu_s: float | None = None  # near window_s means the client was the bottleneck
    window_s: float | None = None
    error: str | None = None  # why the measurement stopped short, if it did

    def as_dict(self) -> dict[str, Any]:
        return {
            key: round(value, 3) if isinstance(value, float) else value
            for key, value in dataclasses.asdict(self).items()
        }


def columns_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """``rows`` as right-aligned text columns, a header first (the scratch-database benches'
    tables: bench/search_queries.py, bench/workspace_queries.py)."""
    widths = [max(len(c), *(len(str(r[c])) for r in rows)) for c in columns]
    lines = ["  ".join(c.rjust(w) for c, w in zip(columns, widths, strict=True))]
    for row in rows:
        lines.append("  ".join(str(row[c]).rjust(w) for c, w in zip(columns, widths, strict=True)))
    return "\n".join(lines)


def percentile(ordered: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of an ascending, non-empty sequence."""
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


# (header, attribute, format) per column; a None value prints as "-".
COLUMNS: list[tuple[str, str, str]] = [
    ("target", "target", "{}"),
    ("N", "subscribers", "{}"),
    ("ins/s", "rate", "{:g}"),
    ("conn", "connected", "{}"),
    ("refused", "refused", "{}"),
    ("failed", "failed", "{}"),
    ("expected", "expected", "{}"),
    ("received", "received", "{}"),
    ("lost", "lost", "{}"),
    ("dup", "duplicated", "{}"),
    ("p50ms", "p50_ms", "{:.1f}"),
    ("p95ms", "p95_ms", "{:.1f}"),
    ("p99ms", "p99_ms", "{:.1f}"),
    ("maxms", "max_ms", "{:.1f}"),
    ("pg", "pg_backends", "{}"),
    ("threads", "server_threads", "{}"),
    ("rssMB", "server_rss_mb", "{:.1f}"),
    ("KB/sub", "kb_per_subscriber", "{:.1f}"),
    ("cpu_s", "server_cpu_s", "{:.2f}"),
    ("us/frame", "cpu_us_per_frame", "{:.1f}"),
    ("frames/s", "frames_per_s", "{:.0f}"),
    ("client_cpu_s", "harness_cpu_s", "{:.2f}"),
    ("open_s", "connect_s", "{:.1f}"),
]


def table(results: Sequence[Result]) -> str:
    """An aligned text table, then one line per result that stopped with an error."""
    rows = [[header for header, _, _ in COLUMNS]]
    for result in results:
        row = []
        for _, attribute, spec in COLUMNS:
            value = getattr(result, attribute)
            row.append("-" if value is None else spec.format(value))
        rows.append(row)
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = [
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]
    lines += [
        f"{result.target} N={result.subscribers}: {result.error}"
        for result in results
        if result.error
    ]
    return "\n".join(lines)


def summary(result: Result) -> str:
    """One line per finished measurement, for progress on stderr."""
    if result.error:
        return f"{result.target} N={result.subscribers}: FAILED: {result.error}"
    latency = "-" if result.p50_ms is None else f"{result.p50_ms:.1f}/{result.p99_ms:.1f} ms"
    return (
        f"{result.target} N={result.subscribers}: {result.connected} connected, "
        f"{result.received}/{result.expected} received, {result.lost} lost, "
        f"{result.duplicated} duplicated, p50/p99 {latency}"
    )


def json_line(results: Sequence[Result]) -> str:
    """Everything on one line, for scripts: a list of result objects."""
    return json.dumps([result.as_dict() for result in results], separators=(",", ":"))
