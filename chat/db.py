"""The process's async read pool: a few PostgreSQL connections shared by every open stream.

Streams, the JSON API and the access checks read through it with single statements in
autocommit, so thousands of open streams share a handful of connections and an open stream
holds none. Writes go through Django's ORM (its own pool, config/settings.py), so the
trigger announces them exactly as it announces a write from psql.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

POOL_MAX_SIZE = 4  # per process; reads are short single statements

_pool: AsyncConnectionPool | None = None


async def open_pool(conninfo: str) -> AsyncConnectionPool:
    """Open this process's read pool (idempotent); call from the running event loop."""
    global _pool
    if _pool is None:
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
            # A round trip per checkout: after a database restart, pooled connections are
            # dead, and a stream's replay must get a live one rather than fail.
            check=AsyncConnectionPool.check_connection,
            open=False,
            name="pgchat-reader",
        )
        await _pool.open()
    return _pool


async def close_pool() -> None:
    global _pool
    pool, _pool = _pool, None
    if pool is not None:
        await pool.close()


@contextlib.asynccontextmanager
async def connection() -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """A pooled connection; the pool is opened on first use from settings."""
    if _pool is None:
        from django.conf import settings  # lazily: tests and the CLI may open their own

        await open_pool(settings.DATABASE_URL)
    assert _pool is not None
    async with _pool.connection() as conn:
        yield conn
