"""The check both connection pools run before lending a connection: no round trip, and a
dead pool emptied at once rather than one connection per back-off step.

Receives: an idle connection the pool is about to lend (chat/db.py's read pool, Django's
pool through chat/pg_backend). Hands on: nothing; it raises for a dead connection, which
the pool then closes, replaces, and tries the next one.
On failure: nothing is lost; a connection wrongly found dead is only replaced.

Why a drain: after PgBouncer or PostgreSQL restarts, every idle connection is dead, and
psycopg_pool checks them one by one, sleeping 0, 1, 2, 4 s between failed checks
(``_getconn_with_check_loop``): a host that had 4 to 8 connections answered its first
request after ~8 s, or after the 10 s pool timeout with a 503. The first dead connection
found means its peers from before the restart are dead too, so the pool is drained
(``drain()``, public since psycopg_pool 3.2): its idle connections are closed and replaced,
the lent ones are replaced when they come back, and the waiting request gets a fresh
connection as soon as one is made, without a back-off.

Why a short ``reconnect_timeout``: while the server is *down*, psycopg_pool retries each
lost connection with a back-off of 1, 2, 4, 8 s..., so after outages of 1 to 8 s the first
request answered 4 to 6 s after the server was back (measured through PgBouncer). With
``RECONNECT_SECONDS`` the pool gives an attempt up after about a second and calls
``reconnect_failed``; ``regrow`` then runs the pool's ``check()``, which starts a fresh
attempt at once: a down server is tried about once a second, and requests waiting in the
queue are served within about a second of its return.
"""

from __future__ import annotations

import logging
import select
import time
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool, ConnectionPool

logger = logging.getLogger("pgchat.pools")

DRAIN_INTERVAL_SECONDS = 1.0  # a storm of failed checks drains once, not once per request
RECONNECT_SECONDS = 1.0  # the pools' reconnect_timeout: how long one attempt backs off


def is_dead(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> bool:
    """True when an idle connection's server has gone, seen without a round trip.

    A server that ends a session (a restart, pg_terminate_backend, PgBouncer stopping) sends
    an error and closes the socket, so an idle connection it ended has something to read; a
    live idle one has nothing (the pools never LISTEN). (poll, not select: with thousands of
    streams open, descriptors go past select's limit of 1024.)
    """
    if conn.closed or conn.broken:
        return True
    poller = select.poll()
    poller.register(conn.fileno(), select.POLLIN)
    return bool(poller.poll(0))


class _Drainer:
    """Remembers the last drain, so concurrent failed checks drain a pool once."""

    def __init__(self) -> None:
        self._drained_at = -DRAIN_INTERVAL_SECONDS

    def due(self) -> bool:
        now = time.monotonic()
        if now - self._drained_at < DRAIN_INTERVAL_SECONDS:
            return False
        self._drained_at = now
        return True


class SyncCheck(_Drainer):
    """``check=`` for a ConnectionPool (Django's, in threads)."""

    pool: ConnectionPool[Any] | None = None  # set once the pool exists

    def __call__(self, conn: psycopg.Connection[Any]) -> None:
        if not is_dead(conn):
            return
        conn.close()  # closed, the pool replaces it rather than lending it again
        if self.pool is not None and self.due():
            logger.warning("pool %r: a connection was dead; replacing them all", self.pool.name)
            self.pool.drain()
        raise psycopg.OperationalError("the server ended this idle connection")


class AsyncCheck(_Drainer):
    """``check=`` for an AsyncConnectionPool (chat/db.py's read pool)."""

    pool: AsyncConnectionPool[Any] | None = None  # set once the pool exists

    async def __call__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        if not is_dead(conn):
            return
        await conn.close()
        if self.pool is not None and self.due():
            logger.warning("pool %r: a connection was dead; replacing them all", self.pool.name)
            await self.pool.drain()
        raise psycopg.OperationalError("the server ended this idle connection")


def regrow(pool: ConnectionPool[Any]) -> None:
    """``reconnect_failed=`` for a ConnectionPool: try again now, not after the back-off."""
    logger.info("pool %r: cannot connect; trying again", pool.name)  # psycopg warned why
    pool.check()  # grows the pool (a new attempt) when it is short, checks what is idle


async def aregrow(pool: AsyncConnectionPool[Any]) -> None:
    """``reconnect_failed=`` for an AsyncConnectionPool."""
    logger.info("pool %r: cannot connect; trying again", pool.name)  # psycopg warned why
    await pool.check()
