"""Where history, replay and search read: the streaming replica when it can answer, else
the primary.

Receives:   a read from chat/feed.py and chat/user_stream.py (a stream's replay),
            chat/messages_api.py, chat/pages.py and chat/search_api.py, with the fence the
            read must respect (or none: a page of recent history may be a moment old).
Hands on:   a pooled autocommit connection to the replica (``CHAT_READ_DATABASE_URL``) that
            has replayed at least up to the fence, or else one to the primary.
On failure: nothing is lost and nothing is refused: a replica that is down, or that has
            not replayed up to the fence within ``CHAT_READ_FENCE_SECONDS``, sends the read
            to the primary. Without ``CHAT_READ_DATABASE_URL`` every read is the primary's.

The fence. A replay ("the changes after cursor N", "after snapshot P") must return every
change the primary had committed when the stream subscribed: later ones come live from the
listener, which reads the primary, but earlier ones were rung before the subscription and
only the log still has them. So, after subscribing, the stream reads the primary's
``pg_current_wal_insert_lsn()`` (one round trip, no table read, on the primary connection
its open already holds): every transaction visible on the primary at that moment wrote its
commit record before that position (a commit is made visible after its record is inserted,
also with ``synchronous_commit = off``, which the flush position would miss). On the
replica, ``pg_last_wal_replay_lsn() >= fence`` then means every such commit has been
applied, and the read that follows (a new statement, so a new snapshot, taken after the
check) sees them. The bell's own cursor could not serve: notifications are untrusted
doorbells, and a cursor only says that one room reached N, not that the replica holds
everything the stream skipped when it subscribed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import psycopg
from psycopg_pool import PoolTimeout

from . import db, metrics

logger = logging.getLogger("pgchat.replica")

Fence = str  # a pg_lsn as text, e.g. '0/3000148'

_CAUGHT_UP = "SELECT NOT pg_is_in_recovery() OR pg_last_wal_replay_lsn() >= %s::pg_lsn"
FIRST_PAUSE = 0.005  # seconds between checks of the replica's replay position, doubling
LONGEST_PAUSE = 0.1


def _settings() -> tuple[str, float]:
    from django.conf import settings

    return settings.CHAT_READ_DATABASE_URL, settings.CHAT_READ_FENCE_SECONDS


async def fence() -> Fence | None:
    """Where the primary's WAL stands now; None when there is no replica (nothing to wait
    for). Call it *after* subscribing: it fences what the subscription may have missed."""
    url, _ = _settings()
    if not url:
        return None
    async with db.connection() as conn:
        cur = await conn.execute("SELECT pg_current_wal_insert_lsn()::text")
        row = await cur.fetchone()
    assert row is not None
    return str(row[0])


@contextlib.asynccontextmanager
async def reading(
    fence: Fence | None = None, *, stale_ok: bool = False
) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """A connection for a read: the replica's if it holds everything up to ``fence``
    (``stale_ok``: any replica position will do), else the primary's."""
    url, wait = _settings()
    async with contextlib.AsyncExitStack() as stack:
        conn = None
        if url and (fence is not None or stale_ok):
            conn = await _on_replica(stack, url, fence, wait)
        if conn is None:
            conn = await stack.enter_async_context(db.connection())
        yield conn


async def _on_replica(
    stack: contextlib.AsyncExitStack, url: str, fence: Fence | None, wait: float
) -> psycopg.AsyncConnection[Any] | None:
    """The replica's connection, handed to ``stack`` if it may answer; otherwise given
    back (also when the task is cancelled while it waits) before the primary is asked."""
    async with contextlib.AsyncExitStack() as lent:
        try:
            conn = await lent.enter_async_context(db.replica.connection(url))
            if fence is None or await _caught_up(conn, fence, wait):
                stack.push_async_exit(lent.pop_all())
                metrics.COUNTERS["replica_reads"].inc()
                return conn
        except (psycopg.Error, PoolTimeout, OSError) as exc:
            logger.warning("replica unavailable, reading the primary: %r", exc)
        else:
            logger.info("replica behind the fence %s after %.2fs: reading the primary", fence, wait)
    metrics.COUNTERS["replica_fallbacks"].inc()
    return None


async def _caught_up(conn: psycopg.AsyncConnection[Any], fence: Fence, wait: float) -> bool:
    """Has the replica applied everything up to ``fence``? Asked again, with growing pauses,
    for up to ``wait`` seconds (a replica a few milliseconds behind is the usual case)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    pause = FIRST_PAUSE
    while True:
        cur = await conn.execute(_CAUGHT_UP, [fence])
        row = await cur.fetchone()
        if row is not None and row[0]:
            return True
        if loop.time() + pause > deadline:
            return False
        await asyncio.sleep(pause)
        pause = min(pause * 2, LONGEST_PAUSE)
