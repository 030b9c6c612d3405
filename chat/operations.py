"""What operators watch: ``/healthz`` for load balancers and ``/metrics`` for Prometheus.

Both answer even when the database is down (that is what they are for), and neither
touches a stream.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse

from . import db, metrics
from .listener import get_listener

HEALTH_TIMEOUT_SECONDS = 1.0  # a health check answers fast, even when the database hangs


async def healthz(request: HttpRequest) -> JsonResponse:
    """200 when the database answers and the listener is LISTENing; 503 otherwise.

    Reports this worker process: with several workers, each answers for itself.
    """
    listener = get_listener()
    body: dict[str, Any] = {
        "worker": os.getpid(),
        "listener_connected": listener.connected,
        "listener_lag_seconds": listener.last_lag_seconds,  # trigger -> fan-out, last event
        "subscribers": listener.subscriber_count,
        "user_streams": listener.users.fanout.count,  # GET /events
        "saved_searches": listener.searches.count,  # GET /search/events
        "counters": dict(listener.stats),
        "database": False,
    }
    try:
        body["notification_queue_usage"] = await _notification_queue_usage()
        body["database"] = True
    except Exception as exc:  # DatabaseError, PoolTimeout, TimeoutError: report, never raise
        body["database_error"] = str(exc) or type(exc).__name__
    # From the body, not the listener: it may reconnect while the query above awaits, and
    # the status must agree with the fields it is sent with.
    body["status"] = "ok" if body["database"] and body["listener_connected"] else "unavailable"
    return JsonResponse(body, status=200 if body["status"] == "ok" else 503)


async def metrics_view(request: HttpRequest) -> HttpResponse:
    """Prometheus text format: all workers' counters, gauges and latency histogram."""
    try:
        usage: float | None = await _notification_queue_usage()
    except Exception:  # the database is down: still report what the workers know
        usage = None
    text = await asyncio.to_thread(metrics.exposition, usage)  # reads files: off the loop
    return HttpResponse(text, content_type="text/plain; version=0.0.4; charset=utf-8")


async def _notification_queue_usage() -> float:
    async with asyncio.timeout(HEALTH_TIMEOUT_SECONDS):
        async with db.connection() as conn:
            cur = await conn.execute("SELECT pg_notification_queue_usage()")
            row = await cur.fetchone()
    return float(row[0]) if row else 0.0
