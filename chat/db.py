"""The process's async read pools: a few PostgreSQL connections shared by every open stream.

Streams, the JSON API and the access checks read through ``connection()`` (the primary,
``DATABASE_URL``) with single statements in autocommit, so thousands of open streams share
a handful of connections and an open stream holds none. History, replay and search may read
through ``replica`` instead (``CHAT_READ_DATABASE_URL``; chat/replica.py decides when).
Writes go through Django's ORM (its own pool, config/settings.py), so the trigger announces
them exactly as it announces a write from psql.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import AsyncIterator
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from .pool_checks import RECONNECT_SECONDS, AsyncCheck, aregrow

POOL_MAX_SIZE = 4  # per process and pool; reads are short single statements


class ReadPool:
    """One lazily opened async pool of autocommit connections to one server."""

    def __init__(self, name: str, timeout: float = 10.0) -> None:
        self.name, self.timeout = name, timeout
        self._pool: AsyncConnectionPool | None = None
        # At most POOL_MAX_SIZE tasks ask the pool at once; the others queue here.
        self._turns: asyncio.Semaphore | None = None
        # The connection this task holds, if any: nested ``connection()`` blocks share it.
        self._held: contextvars.ContextVar[psycopg.AsyncConnection[Any] | None] = (
            contextvars.ContextVar(f"{name}_connection", default=None)
        )

    async def open(self, conninfo: str) -> AsyncConnectionPool:
        """Open the pool (idempotent); call from the running event loop."""
        if self._pool is None:
            self._turns = asyncio.Semaphore(POOL_MAX_SIZE)
            check = AsyncCheck()
            self._pool = AsyncConnectionPool(
                conninfo,
                min_size=1,
                max_size=POOL_MAX_SIZE,
                # prepare_threshold=None: no server-side prepared statements, which a
                # transaction-pooling PgBouncer in DATABASE_URL would not keep.
                kwargs={
                    "autocommit": True,
                    "application_name": self.name,
                    "prepare_threshold": None,
                },
                timeout=self.timeout,  # seconds to wait for a connection
                # After a restart of PostgreSQL or PgBouncer, pooled connections are dead,
                # and a stream's replay must get a live one at once rather than fail or
                # wait. The check polls the idle socket: the round trip of
                # check_connection, once per checkout, was a quarter of an open's CPU.
                check=check,
                # While the server is down: a fresh attempt every second or so, not a
                # back-off that leaves requests waiting seconds after it is back
                # (chat/pool_checks.py).
                reconnect_timeout=RECONNECT_SECONDS,
                reconnect_failed=aregrow,
                open=False,
                name=self.name,
            )
            check.pool = self._pool
            await self._pool.open()
        return self._pool

    @property
    def is_open(self) -> bool:
        return self._pool is not None

    def lent(self) -> int:
        """How many of its connections are out now (psycopg_pool's public stats)."""
        if self._pool is None:
            return 0
        stats = self._pool.get_stats()
        return stats.get("pool_size", 0) - stats.get("pool_available", 0)

    async def close(self) -> None:
        pool, self._pool, self._turns = self._pool, None, None
        if pool is not None:
            await pool.close()

    @contextlib.asynccontextmanager
    async def connection(self, conninfo: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A pooled connection; the pool is opened on first use with ``conninfo``.

        Nested blocks in one task share the outer block's connection: a stream's open
        (access check, then cursor) takes one connection from the pool, not one per read.
        Every read here is one statement in autocommit, so sharing changes no result.

        In a reconnect storm hundreds of opens want a connection at once. psycopg_pool
        queues each waiter behind a lock and a condition of its own; a semaphore's queue is
        a future per waiter, so the waiting happens there and the pool only lends. Measured
        with 500 opens in flight: the pool's own queue was a third of the server's CPU.
        """
        held = self._held.get()
        if held is not None:
            yield held
            return
        if self._pool is None:
            await self.open(conninfo)
        assert self._pool is not None
        assert self._turns is not None
        async with self._turns, self._pool.connection() as conn:
            token = self._held.set(conn)
            try:
                yield conn
            finally:
                self._held.reset(token)


primary = ReadPool("pgchat-reader")  # 10 s to wait for a connection, like Django's pool
# Used only with CHAT_READ_DATABASE_URL. A replica that lends no connection within a second
# is passed over for the primary (chat/replica.py), rather than keeping a reader waiting.
replica = ReadPool("pgchat-replica-reader", timeout=1.0)


async def open_pool(conninfo: str) -> AsyncConnectionPool:
    """Open this process's primary read pool (idempotent); call from the running loop."""
    return await primary.open(conninfo)


async def close_pool() -> None:
    """Close both pools (the replica's is open only if it was used)."""
    await primary.close()
    await replica.close()


def connection() -> contextlib.AbstractAsyncContextManager[psycopg.AsyncConnection[Any]]:
    """A pooled connection to the primary (``DATABASE_URL``), opened from settings."""
    return primary.connection(_setting("DATABASE_URL") if not primary.is_open else "")


def _setting(name: str) -> str:
    from django.conf import settings  # lazily: tests and the CLI may open their own pool

    return str(getattr(settings, name))
