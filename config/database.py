"""Where the web's database connections go: Django's ``DATABASES`` entry from a libpq URL.

Read by config/settings.py. With no ``DATABASE_URL`` the project's embedded PostgreSQL
(devtools/embedded_pg) is used; ``CHAT_PGBOUNCER=transaction`` says the URL is a
transaction-mode PgBouncer, and the entry then keeps no server-side state (docs/deploy.md).
Raises ImproperlyConfigured for anything it cannot use, so a bad setting stops the start.
"""

from __future__ import annotations

import os
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from psycopg.conninfo import conninfo_to_dict

from devtools import embedded_pg

# Behind a transaction-pooling PgBouncer each transaction may run on another server
# connection, so nothing may outlive one: psycopg prepares a statement on the server after
# it ran 5 times (prepare_threshold), and PgBouncer before 1.21 does not carry prepared
# statements across connections ("prepared statement _pg3_0 does not exist").
_TRANSACTION_POOL_OPTIONS = {"prepare_threshold": None}


def pgbouncer_mode() -> str:
    """``CHAT_PGBOUNCER``: ``transaction`` when DATABASE_URL is a transaction-mode pool."""
    mode = os.environ.get("CHAT_PGBOUNCER", "").strip().lower()
    if mode not in ("", "session", "transaction"):
        raise ImproperlyConfigured(f"CHAT_PGBOUNCER={mode!r}: use transaction, session or unset")
    return mode


def database_from_url(url: str, *, transaction_pool: bool = False) -> dict[str, Any]:
    """Django's DATABASES entry from a libpq URL or ``key=value`` string, via psycopg's parser.

    ``transaction_pool``: the URL is a PgBouncer in transaction mode (no server-side state).
    """
    try:
        params: dict[str, Any] = conninfo_to_dict(url)
    except Exception as exc:  # psycopg.ProgrammingError, named loosely to avoid the import
        raise ImproperlyConfigured(f"DATABASE_URL is not a valid PostgreSQL URL: {exc}") from exc
    return {
        # Django's backend, its pool checked by chat/pool_checks.py (chat/pg_backend).
        "ENGINE": "chat.pg_backend",
        "NAME": params.pop("dbname", "postgres"),
        "USER": params.pop("user", ""),
        "PASSWORD": params.pop("password", ""),
        "HOST": params.pop("host", ""),
        "PORT": params.pop("port", ""),
        # Anything else (sslmode, options, ...) goes to psycopg as is; the name tells
        # operators which sessions in pg_stat_activity are the web's.
        "OPTIONS": {
            "application_name": "pgchat-web",
            # A bounded pool per process: a burst of requests (a reconnect storm after a
            # restart) waits for a connection instead of exceeding max_connections.
            "pool": {
                "min_size": 1,
                "max_size": int(os.environ.get("CHAT_DB_POOL_SIZE", "8")),
                "timeout": 10,  # seconds a request waits for a connection, then 503
                "name": "pgchat-web",  # in psycopg_pool's log lines
            },
            **params,
            # No startup ``options`` (a transaction-pooling PgBouncer refuses them): the
            # bound on a room's lock lives in the function that takes it (migration 0010).
            **(_TRANSACTION_POOL_OPTIONS if transaction_pool else {}),
        },
        "CONN_MAX_AGE": 0,  # required with "pool": connections go back to it at once
        # A named cursor is a server-side object of one session: through a transaction
        # pool the next FETCH may reach another server connection.
        "DISABLE_SERVER_SIDE_CURSORS": transaction_pool,
        # Off: Django's check is a round trip per checkout that walks a dead pool with a
        # back-off; chat/pg_backend checks each connection before lending it out instead,
        # so the first requests after a restart neither fail nor wait (chat/pool_checks.py).
        "CONN_HEALTH_CHECKS": False,
    }


def embedded_database_url() -> str:
    try:
        return embedded_pg.EmbeddedPostgres.from_environment().url()
    except embedded_pg.EmbeddedPgError as exc:
        raise ImproperlyConfigured(
            f"DATABASE_URL is not set and {exc}: run `make db` (or `make run`), "
            "or set DATABASE_URL to a PostgreSQL server"
        ) from exc
