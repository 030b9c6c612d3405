"""Prometheus metrics of the data path, safe with several hypercorn workers.

With ``PROMETHEUS_MULTIPROC_DIR`` set (``make run`` sets it and empties it at start), every
worker writes its values to files there and ``/metrics`` on any worker adds them up. Without
it, each process reports its own values, which is right for a single worker.

Updated once per event or per connection, never once per subscriber per event: the fan-out
loop stays free of metric calls.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.metrics_core import Metric

MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
# Where `make run` keeps the workers' files; `manage.py chat rooms` reads them from here.
DEFAULT_DIR = Path(__file__).resolve().parent.parent / ".pgchat" / "metrics"

SUBSCRIBERS = Gauge(
    "pgchat_subscribers", "Open event streams, by room.", ["room"], multiprocess_mode="livesum"
)
USER_STREAMS = Gauge(
    "pgchat_user_streams",
    "Open GET /events streams (all of a user's rooms).",
    multiprocess_mode="livesum",
)
SAVED_SEARCHES = Gauge(
    "pgchat_saved_searches",
    "Open GET /search/events streams (live saved searches).",
    multiprocess_mode="livesum",
)
LISTENERS_CONNECTED = Gauge(
    "pgchat_listener_connected",
    "LISTEN connections that are up and caught up (one per worker process).",
    multiprocess_mode="livesum",
)
NOTIFY_TO_SEND = Histogram(
    "pgchat_notify_to_send_seconds",
    "From the trigger running in the writer's transaction to the event's frame being in "
    "every subscriber's buffer (includes the rest of that transaction and its COMMIT).",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
COUNTERS = {
    "events": Counter("pgchat_events_relayed_total", "Events fanned out (live or caught up)."),
    "frames": Counter("pgchat_frames_sent_total", "Frames handed to subscribers' buffers."),
    "reconnects": Counter("pgchat_listener_reconnects_total", "Times the listener reconnected."),
    "slow_drops": Counter(
        "pgchat_slow_subscriber_drops_total",
        "Streams dropped from the fan-out because their buffer was full.",
    ),
    "log_reads": Counter(
        "pgchat_log_reads_total", "Reads of the log for a batch of message bells (or catch-up)."
    ),
    "search_reads": Counter(
        "pgchat_saved_search_reads_total",
        "Statements matching a batch's new messages against every open saved search.",
    ),
    "search_matches": Counter(
        "pgchat_saved_search_matches_total", "Matches found for open saved searches."
    ),
    "invalid_payloads": Counter(
        "pgchat_invalid_payloads_total", "Notifications on the channel that were not bells."
    ),
    "access_checks": Counter(
        "pgchat_access_checks_total", "Re-checks of open streams' access (bells and sweeps)."
    ),
    "revoked": Counter(
        "pgchat_streams_revoked_total", "Streams ended because their viewer lost access."
    ),
    "typing_refused": Counter(
        "pgchat_typing_refused_total",
        "Typing bells not believed (no fresh chat_typing row, or the user may not read).",
    ),
    "presence_reads": Counter(
        "pgchat_presence_reads_total", "Reads of who is online, for presence bells."
    ),
    "replica_reads": Counter(
        "pgchat_replica_reads_total", "Reads answered by the replica (CHAT_READ_DATABASE_URL)."
    ),
    "replica_fallbacks": Counter(
        "pgchat_replica_fallbacks_total",
        "Reads meant for the replica that went to the primary: behind the fence, or down.",
    ),
}


def exposition(notification_queue_usage: float | None) -> bytes:
    """The Prometheus text: every worker's metrics, plus the cluster's NOTIFY queue usage."""
    if MULTIPROCESS:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    text = generate_latest(registry)
    if notification_queue_usage is not None:  # read at scrape time: one value per cluster
        extra = CollectorRegistry()
        Gauge(
            "pgchat_notification_queue_usage",
            "pg_notification_queue_usage(): fraction of PostgreSQL's NOTIFY queue in use.",
            registry=extra,
        ).set(notification_queue_usage)
        text += generate_latest(extra)
    return text


def open_streams_by_room() -> dict[str, int]:
    """Open streams per room on every worker of this server: what ``/metrics`` reports as
    ``pgchat_subscribers``, from the same source. With several workers this reads their
    files: call it off the event loop (a sync view, ``asyncio.to_thread``)."""
    if MULTIPROCESS:
        return subscribers_by_room() or {}
    return _by_room(SUBSCRIBERS.collect())  # the gauge's own lock: safe from any thread


def subscribers_by_room(directory: str | None = None) -> dict[str, int] | None:
    """Open streams per room across the live workers writing to ``directory`` (by default
    $PROMETHEUS_MULTIPROC_DIR, else make run's); None when no server writes there."""
    path = Path(directory or os.environ.get("PROMETHEUS_MULTIPROC_DIR") or DEFAULT_DIR)
    if not any(path.glob("gauge_livesum_*.db")):
        return None
    return _by_room(multiprocess.MultiProcessCollector(None, path=str(path)).collect())


def _by_room(metrics: Iterable[Metric]) -> dict[str, int]:
    for metric in metrics:
        if metric.name == "pgchat_subscribers":
            return {
                sample.labels["room"]: int(sample.value)
                for sample in metric.samples
                if sample.value
            }
    return {}


def forget_this_process() -> None:
    """At shutdown: drop this worker's live gauges (its subscribers, its listener)."""
    if MULTIPROCESS:
        multiprocess.mark_process_dead(os.getpid())
