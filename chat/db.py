"""The process's async read pool: a few PostgreSQL connections shared by every open stream.

Streams, the JSON API and the access checks read through it with single statements in
autocommit, so thousands of open streams share a handful of connections and an open stream
holds none. Writes go through Django's ORM (its own pool, config/settings.py), so the
trigger announces them exactly as it announces a write from psql.
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

POOL_MAX_SIZE = 4  # per process; reads are short single statements

_pool: AsyncConnectionPool | None = None
# At most POOL_MAX_SIZE tasks ask the pool at once; the others queue here (see connection()).
_turns: asyncio.Semaphore | None = None
# The connection this task holds, if any: nested ``connection()`` blocks share it.
_held: contextvars.ContextVar[psycopg.AsyncConnection[Any] | None] = contextvars.ContextVar(
    "pgchat_db_connection", default=None
)


async def open_pool(conninfo: str) -> AsyncConnectionPool:
    """Open this process's read pool (idempotent); call from the running event loop."""
    global _pool, _turns
    if _pool is None:
        _turns = asyncio.Semaphore(POOL_MAX_SIZE)
        check = AsyncCheck()
        _pool = AsyncConnectionPool(
            conninfo,
            min_size=1,
            max_size=POOL_MAX_SIZE,
            # prepare_threshold=None: no server-side prepared statements, which a
            # transaction-pooling PgBouncer in DATABASE_URL would not keep.
            kwargs={
                "autocommit": True,
                "application_name": "pgchat-reader",
                "prepare_threshold": None,
            },
            timeout=10,  # seconds to wait for a connection, like Django's pool
            # After a restart of PostgreSQL or PgBouncer, pooled connections are dead, and a
            # stream's replay must get a live one at once rather than fail or wait. The
            # check polls the idle socket: the round trip of check_connection, once per
            # checkout, was a quarter of a stream open's CPU.
            check=check,
            # While the server is down: a fresh attempt every second or so, not a back-off
            # that leaves requests waiting seconds after it is back (chat/pool_checks.py).
            reconnect_timeout=RECONNECT_SECONDS,
            reconnect_failed=aregrow,
            open=False,
            name="pgchat-reader",
        )
        check.pool = _pool
        await _pool.open()
    return _pool


async def close_pool() -> None:
    global _pool, _turns
    pool, _pool, _turns = _pool, None, None
    if pool is not None:
        await pool.close()


@contextlib.asynccontextmanager
async def connection() -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """A pooled connection; the pool is opened on first use from settings.

    Nested blocks in one task share the outer block's connection: a stream's open (access
    check, then cursor) takes one connection from the pool, not one per read. Every read
    here is one statement in autocommit, so sharing changes no result.

    In a reconnect storm hundreds of opens want a connection at once. psycopg_pool queues
    each waiter behind a lock and a condition of its own; a semaphore's queue is a future
    per waiter, so the waiting happens there and the pool only lends. Measured with 500
    opens in flight: the pool's own queue was a third of the server's CPU.
    """
    held = _held.get()
    if held is not None:
        yield held
        return
    if _pool is None:
        from django.conf import settings  # lazily: tests and the CLI may open their own

        await open_pool(settings.DATABASE_URL)
    assert _pool is not None
    assert _turns is not None
    async with _turns, _pool.connection() as conn:
        token = _held.set(conn)
        try:
            yield conn
        finally:
            _held.reset(token)
