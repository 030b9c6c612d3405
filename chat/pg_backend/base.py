"""Django's PostgreSQL backend, its pool built with chat/pool_checks.py's check.

Django builds its psycopg pool itself (``DatabaseWrapper.pool``) and offers one check only:
``CONN_HEALTH_CHECKS`` passes ``ConnectionPool.check_connection``, a round trip per
checkout that, after a restart of PostgreSQL or PgBouncer, let psycopg_pool walk the dead
connections one back-off step at a time (0, 1, 2, 4 s; 10 s and a 503 with 8 of them).
``OPTIONS["pool"]`` cannot carry a ``check`` of its own (Django passes ``check=`` too), so
this subclass (Django documents subclassing a backend through ``ENGINE``) builds the pool
the way Django 5.2 does, with our check. tests/test_pgbouncer.py pins the Django version
this copies and the behaviour (the first request after a PgBouncer restart answers).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import psycopg
from django.db.backends.base.base import NO_DB_ALIAS
from django.db.backends.postgresql import base
from psycopg_pool import ConnectionPool

from chat.pool_checks import RECONNECT_SECONDS, SyncCheck, regrow

COPIED_FROM_DJANGO = (5, 2)  # DatabaseWrapper.pool, django/db/backends/postgresql/base.py


class DatabaseWrapper(base.DatabaseWrapper):
    # Django's, untyped in django-stubs: annotations only (no value), so the parent's stay.
    _connection_pools: dict[str, ConnectionPool[Any]]
    _configure_connection: Callable[[psycopg.Connection[Any]], None]

    @property
    def pool(self) -> ConnectionPool[Any] | None:
        pool_options = self.settings_dict["OPTIONS"].get("pool")
        if (
            self.alias == NO_DB_ALIAS
            or not pool_options
            or self.settings_dict["CONN_HEALTH_CHECKS"]
        ):
            # Django's own: no pool, or Django's check asked for.
            return cast("ConnectionPool[Any] | None", super().pool)
        if self.alias not in self._connection_pools:
            check = SyncCheck()
            connect_kwargs = self.get_connection_params()
            connect_kwargs["autocommit"] = True  # as Django's: it sets autocommit later on
            pool: ConnectionPool[Any] = ConnectionPool(
                kwargs=connect_kwargs,
                open=False,  # opened by Django on first use, as its own
                configure=self._configure_connection,
                check=check,
                # A down server is tried about once a second (chat/pool_checks.py).
                reconnect_timeout=RECONNECT_SECONDS,
                reconnect_failed=regrow,
                **(pool_options if isinstance(pool_options, dict) else {}),
            )
            check.pool = pool
            # setdefault, as Django: of threads racing here, the first pool stored wins.
            self._connection_pools.setdefault(self.alias, pool)
        return self._connection_pools[self.alias]
