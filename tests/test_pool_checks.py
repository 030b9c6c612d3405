"""chat/pool_checks.py: after the server ended every pooled connection (a PostgreSQL
restart does that; pg_terminate_backend is the same to a client), the next checkout gets a
live connection at once, not after psycopg_pool's back-off of 1, 2, 4 s per dead one."""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from chat.pool_checks import AsyncCheck, SyncCheck, is_dead

from .helpers import DEADLINE, sessions, terminate, wait_until

NAME = "pgchat-pool-check-test"  # application_name of this test's connections only
SIZE = 6  # dead connections in a row: the back-off this replaces took 0+1+2+4+8 s


def _end_sessions(db_url: str) -> None:
    """End the pool's sessions and wait until they are gone: as after a restart, every
    pooled connection is dead before the next request (not dying while it is lent)."""
    assert terminate(db_url, NAME) == SIZE
    wait_until(lambda: not sessions(db_url, NAME), what="the ended sessions are gone")


def _print(what: str, seconds: float) -> None:
    print(f"\n{what}: first checkout after all {SIZE} died: {seconds:.3f} s", file=sys.stderr)


def test_sync_pool_replaces_a_dead_pool_at_once(db_url: str) -> None:
    check = SyncCheck()
    kwargs: dict[str, Any] = {"autocommit": True, "application_name": NAME}
    with ConnectionPool(db_url, min_size=SIZE, kwargs=kwargs, check=check, open=False) as pool:
        check.pool = pool
        pool.open(wait=True, timeout=DEADLINE)
        _end_sessions(db_url)
        started = time.monotonic()
        with pool.connection(timeout=DEADLINE) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        seconds = time.monotonic() - started
        stats = pool.get_stats()
    _print("Django's pool", seconds)
    assert stats.get("requests_errors", 0) == 0
    assert seconds < 5.0, "waited out a back-off (1, 2, 4 s...): the pool was not drained"


async def test_async_pool_replaces_a_dead_pool_at_once(db_url: str) -> None:
    check = AsyncCheck()
    kwargs: dict[str, Any] = {"autocommit": True, "application_name": NAME}
    pool = AsyncConnectionPool(db_url, min_size=SIZE, kwargs=kwargs, check=check, open=False)
    check.pool = pool
    await pool.open(wait=True, timeout=DEADLINE)
    try:
        await asyncio.to_thread(_end_sessions, db_url)
        started = time.monotonic()
        async with pool.connection(timeout=DEADLINE) as conn:
            cur = await conn.execute("SELECT 1")
            assert await cur.fetchone() == (1,)
        seconds = time.monotonic() - started
    finally:
        await pool.close()
    _print("the read pool", seconds)
    assert seconds < 5.0, "waited out a back-off (1, 2, 4 s...): the pool was not drained"


def test_is_dead_sees_a_terminated_idle_connection_without_a_round_trip(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True, application_name=NAME) as conn:
        assert not is_dead(conn)
        terminate(db_url, NAME)
        wait_until(lambda: is_dead(conn), what="the ended session's socket is readable")


def test_djangos_pool_is_built_by_our_backend_from_the_version_it_copies() -> None:
    """chat/pg_backend copies Django 5.2's DatabaseWrapper.pool: an upgrade must re-read it."""
    import django
    from django.db import connections
    from django.db.backends.postgresql.base import DatabaseWrapper as DjangoWrapper

    from chat.pg_backend.base import COPIED_FROM_DJANGO, DatabaseWrapper

    assert django.VERSION[:2] == COPIED_FROM_DJANGO
    connection = connections["default"]
    assert isinstance(connection, DatabaseWrapper)
    assert not connection.settings_dict["CONN_HEALTH_CHECKS"]  # else Django's check is used
    assert isinstance(connection.pool, ConnectionPool)
    assert connection.pool is DjangoWrapper._connection_pools[connection.alias]  # type: ignore[attr-defined]
