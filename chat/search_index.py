"""The search index: a generated ``tsvector`` column on the message table, its GIN index, and
the one SQL function that names the text search configuration both were built with.

Upstream:   ``settings.CHAT_SEARCH_CONFIG`` (default ``simple``), read by migration 0009 and by
            ``manage.py search_reindex``; nothing else writes here.
Downstream: chat/search.py, which queries ``search_vector`` with ``chat_search_config()``.
On failure: each change is one transaction: a failed reindex leaves the old column, index and
            function as they were, still consistent with each other.

Why a generated column rather than an expression index: the database computes it on every
INSERT and UPDATE, whoever writes (the web, the admin, psql), so a write is searchable at
once; and a stored ``tsvector`` makes the row-level checks cheap (phrase positions, ``-word``,
a backward scan by id for a common word) where an expression index would parse the text
again for every candidate row.

Why ``chat_search_config()``: a generated column needs a fixed ``regconfig``, so the setting
can only take effect by rewriting the column. The function is rewritten in the same
transaction, and queries parse the user's words with it, so a query always uses the
configuration the stored vectors were made with, even while the setting says another one
(until the operator runs ``search_reindex``). It is IMMUTABLE and unpinned, so the planner
inlines it into a constant and can match the index.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

COLUMN = "search_vector"
INDEX = "chat_message_search"

_VALID_CONFIG = "SELECT %s::regconfig::text"
_CURRENT_CONFIG = "SELECT chat_search_config()::text"


def _vector(config: str) -> str:
    # Quoted as an SQL literal of a validated name: a generated expression takes no parameter.
    return f"to_tsvector({_literal(config)}::regconfig, text)"


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _function(config: str) -> str:
    return f"""
CREATE OR REPLACE FUNCTION chat_search_config() RETURNS regconfig
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT {_literal(config)}::regconfig $$;
COMMENT ON FUNCTION chat_search_config() IS
    'The text search configuration chat_chatmessage.{COLUMN} was built with (chat/search_index.py)';
"""


def create_sql(config: str) -> str:
    """The column, its index (messages not deleted only: search never shows the others) and
    the function, for a table without them."""
    return f"""
ALTER TABLE chat_chatmessage ADD COLUMN {COLUMN} tsvector
    GENERATED ALWAYS AS ({_vector(config)}) STORED;
CREATE INDEX {INDEX} ON chat_chatmessage USING gin ({COLUMN}) WHERE deleted_at IS NULL;
{_function(config)}
"""


DROP_SQL = f"""
DROP FUNCTION IF EXISTS chat_search_config();
DROP INDEX IF EXISTS {INDEX};
ALTER TABLE chat_chatmessage DROP COLUMN IF EXISTS {COLUMN};
"""


def reindex_sql(config: str) -> str:
    """Recompute every row's vector with ``config`` (a table rewrite, which rebuilds the
    indexes), and point the function at it."""
    return f"""
ALTER TABLE chat_chatmessage ALTER COLUMN {COLUMN} SET EXPRESSION AS ({_vector(config)});
{_function(config)}
"""


def canonical(cursor: Any, config: str) -> str:
    """The configuration's name as PostgreSQL resolves it; raises the database's error for a
    configuration that does not exist."""
    cursor.execute(_VALID_CONFIG, [config])
    return str(cursor.fetchone()[0])


def current(cursor: Any) -> str:
    """The configuration the column was built with."""
    cursor.execute(_CURRENT_CONFIG)
    return str(cursor.fetchone()[0])


def configured() -> str:
    return str(settings.CHAT_SEARCH_CONFIG)
