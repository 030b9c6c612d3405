"""Full-text search over the rooms a user may read: parsing the query, finding, snippets.

Upstream:   chat/search_api.py (``GET /search``), which has validated the parameters and
            resolved the viewer; bench/search_queries.py times these very statements.
Downstream: one read-pool connection (chat/db.py): one statement checks the query, one finds
            the page of results with their snippets. Nothing is written.
On failure: a query error ends the request (503 from chat/jsonapi.py); nothing to lose.

Who may read what is ``chat_room_readable(room, viewer)`` (migration 0005), asked once per
room inside the finding statement, so a private room's messages never reach a result, a
snippet or a count (there are no counts). Messages are found through ``search_vector``, which
PostgreSQL keeps for every writer (chat/search_index.py): an edit is found by its new text
only, and the index holds no deleted message (the statement asks ``deleted_at IS NULL`` too).

Snippets: ``ts_headline`` marks the matched words with two control characters (STX, ETX)
that the message text cannot bring in (they are taken out of it first); the marked string is
cut here into ``[{"text": ..., "match": bool}]`` parts. The browser puts each part into a text
node: it never parses a snippet as HTML, so a message holding markup shows as text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import psycopg
import psycopg.errors

QUERY_MAX_LENGTH = 256  # characters; web-search syntax needs no more
LIMIT_DEFAULT, LIMIT_MAX = 20, 50
START, STOP = "\x02", "\x03"
_MARKS = re.compile(f"([{START}{STOP}])")
# One stretch of up to 30 words from just before the first match (ts_headline's fragment
# mode, tried too, often cut a fragment down to the matched word alone).
_HEADLINE_OPTIONS = f"StartSel={START}, StopSel={STOP}, MaxWords=30, MinWords=12, ShortWord=2"


class BadQuery(ValueError):
    """A query that cannot search: empty, too long, no words, or nothing but ``-word`` (400)."""


class NoRoom(LookupError):
    """``room`` names no room this viewer may read (404, as for a room that does not exist)."""


@dataclass(frozen=True)
class Search:
    """One validated request: the words, the viewer (None: anonymous) and the page."""

    text: str
    viewer: int | None
    room: str | None = None
    before: int | None = None
    limit: int = LIMIT_DEFAULT


# What the parser of a tsquery may raise for a text (the query itself is fixed); an
# InternalError_ is what PostgreSQL 18 raises for a deep run of operators.
_UNPARSABLE = (psycopg.errors.DataError, psycopg.errors.InternalError_)

# querytree() is the part of a query an index can serve; 'T' when none (only -words, or an
# "or" with a -word branch): such a query would read the whole index, so it is refused.
_CHECK = """
    SELECT numnode(tq), querytree(tq),
           %(room)s::text IS NULL OR chat_room_readable(%(room)s, %(viewer)s)
    FROM websearch_to_tsquery(chat_search_config(), %(q)s) AS tq
"""

# The readable rooms first (at most one call of the rule per room), then the newest matches
# in them; the planner picks the GIN index for rare words and a backward scan by id for
# common ones. The query is written out in each place (not a CTE) so the planner sees a
# constant and can use the column's statistics. Snippets only for the page's rows.
FIND = f"""
    WITH readable AS MATERIALIZED (
        SELECT r.slug FROM chat_room r
        WHERE (%(room)s::text IS NULL OR r.slug = %(room)s)
          AND chat_room_readable(r.slug, %(viewer)s)
    ),
    hits AS (
        SELECT m.id, m.room_id, m.author, m.text, m.created_at FROM chat_chatmessage m
        WHERE m.search_vector @@ websearch_to_tsquery(chat_search_config(), %(q)s)
          AND m.deleted_at IS NULL
          AND m.room_id IN (SELECT slug FROM readable)
          AND (%(before)s::bigint IS NULL OR m.id < %(before)s)
        ORDER BY m.id DESC
        LIMIT %(limit)s
    )
    SELECT h.id, h.room_id, h.author, h.text, chat_iso(h.created_at),
           ts_headline(chat_search_config(), translate(h.text, E'\\x02\\x03', ''),
                       websearch_to_tsquery(chat_search_config(), %(q)s),
                       '{_HEADLINE_OPTIONS}')
    FROM hits h
    ORDER BY h.id DESC
"""


def check_text(raw: str | None) -> str:
    """The query text, or BadQuery saying what is wrong with it (before any SQL runs)."""
    text = (raw or "").strip()
    if not text:
        raise BadQuery("q is required: the words to search for")
    if len(text) > QUERY_MAX_LENGTH:
        raise BadQuery(f"q is too long: at most {QUERY_MAX_LENGTH} characters")
    if "\x00" in text:
        raise BadQuery("q must not contain NUL characters")
    return text


def params(search: Search) -> dict[str, Any]:
    return {
        "q": search.text,
        "viewer": search.viewer,
        "room": search.room,
        "before": search.before,
        "limit": search.limit + 1,  # one more: is there a next page?
    }


async def find(conn: psycopg.AsyncConnection[Any], search: Search) -> dict[str, Any]:
    """``{"results": [...], "next_before": id or None}``, newest first."""
    try:
        cur = await conn.execute(_CHECK, params(search))
    except _UNPARSABLE as exc:  # e.g. "tsquery stack too small" for "- - - ..."
        raise BadQuery(f"q could not be parsed: {exc.diag.message_primary}") from exc
    row = await cur.fetchone()
    assert row is not None
    nodes, tree, room_readable = row
    if not room_readable:
        raise NoRoom(f"no room {search.room!r}")
    if nodes == 0:
        raise BadQuery("q has no words to search for (only punctuation or stop words)")
    if tree == "T":
        raise BadQuery("q needs a word to find, not only words to leave out (-word)")
    cur = await conn.execute(FIND, params(search))
    rows = await cur.fetchall()
    more = len(rows) > search.limit
    rows = rows[: search.limit]
    results = [
        {
            "id": message_id,
            "room": room,
            "author": author,
            "text": text,
            "created_at": created_at,
            "snippet": snippet_parts(headline),
        }
        for message_id, room, author, text, created_at, headline in rows
    ]
    return {"results": results, "next_before": results[-1]["id"] if more else None}


def snippet_parts(headline: str) -> list[dict[str, Any]]:
    """``ts_headline``'s marked string as plain-text parts; adjacent parts of one kind merge."""
    parts: list[dict[str, Any]] = []
    match = False
    for piece in _MARKS.split(headline):
        if piece == START:
            match = True
        elif piece == STOP:
            match = False
        elif piece:
            if parts and parts[-1]["match"] == match:
                parts[-1]["text"] += piece
            else:
                parts.append({"text": piece, "match": match})
    return parts
