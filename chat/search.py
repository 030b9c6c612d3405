"""Full-text search over the rooms a user may read: parsing the query, finding, snippets.

Upstream:   chat/search_api.py (``GET /search``), which has validated the parameters and
            resolved the viewer; bench/search_queries.py times these very statements.
Downstream: one read-pool connection (chat/db.py): one statement checks the query and lists
            the rooms the viewer may read, one finds the page of results with their
            snippets. Nothing is written.
On failure: a query error ends the request (503 from chat/jsonapi.py); nothing to lose.

Who may read what is ``chat_room_readable(room, viewer)`` (migration 0005), asked once per
room by the checking statement; the finding statement reads those rooms only, so a private
room's messages never reach a result, a snippet or a count (there are no counts). Messages
are found through ``search_vector``, which PostgreSQL keeps for every writer
(chat/search_index.py): an edit is found by its new text only, and the index holds no
deleted message (the statement asks ``deleted_at IS NULL`` too).

Snippets: ``ts_headline`` marks the matched words with two control characters (STX, ETX)
that the message text cannot bring in (they are taken out of it first); the marked string is
cut here into ``[{"text": ..., "match": bool}]`` parts. The browser puts each part into a text
node: it never parses a snippet as HTML, so a message holding markup shows as text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, NamedTuple

import psycopg
import psycopg.errors

QUERY_MAX_LENGTH = 256  # characters; web-search syntax needs no more
LIMIT_DEFAULT, LIMIT_MAX = 20, 50
WINDOW = 5000  # newest readable messages checked row by row before the index (see FIND)
PHRASE_WALK_IDS = 50_000  # at most, below the window, for a phrase dense enough (see FIND)
PHRASE_ADJACENT = 10  # rows holding a phrase's words, per row holding them side by side
_PHRASE = re.compile(r"<(?:-|\d+)>")  # querytree()'s phrase operators: <->, <2>, ...
START, STOP = "\x02", "\x03"
_MARKS = re.compile(f"([{START}{STOP}])")
# One stretch of up to 30 words from just before the first match (ts_headline's fragment
# mode, tried too, often cut a fragment down to the matched word alone).
HEADLINE_OPTIONS = f"StartSel={START}, StopSel={STOP}, MaxWords=30, MinWords=12, ShortWord=2"


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
    window: int = WINDOW  # settings.CHAT_SEARCH_WINDOW in the server


# What the parser of a tsquery may raise for a text (the query itself is fixed); an
# InternalError_ is what PostgreSQL 18 raises for a deep run of operators.
_UNPARSABLE = (psycopg.errors.DataError, psycopg.errors.InternalError_)

# querytree() is the part of a query an index can serve; 'T' when none (only -words, or an
# "or" with a -word branch): such a query would read the whole index, so it is refused.
#
# The last column, for a phrase: whether a walk of PHRASE_WALK_IDS ids below the window is
# likely to fill the page (see FIND). From the statistics ANALYZE keeps of the vectors'
# lexemes (the planner's own: each lexeme's share of rows; one not among the commonest
# counts half the least common's): the rows holding every word are about the product of
# their shares, and about one in PHRASE_ADJACENT of those holds them side by side. NULL
# before the table's first ANALYZE: no walk.
_CHECK = """
    SELECT numnode(tq), querytree(tq),
           ARRAY(SELECT r.slug FROM chat_room r
                 WHERE (%(room)s::text IS NULL OR r.slug = %(room)s)
                   AND chat_room_readable(r.slug, %(viewer)s)),
           CASE WHEN querytree(tq) ~ '<(-|[0-9]+)>' THEN (SELECT exp(sum(ln(coalesce(
                       s.most_common_elem_freqs[
                           array_position(s.most_common_elems::text::text[], w.lexeme)],
                       s.most_common_elem_freqs[
                           array_length(s.most_common_elems::text::text[], 1)] / 2))))
                   >= %(limit)s * %(adjacent)s / %(walk_ids)s::float8
            FROM unnest(tsvector_to_array(to_tsvector(chat_search_config(), %(q)s))) AS w(lexeme),
                 pg_stats s
            WHERE s.schemaname = current_schema() AND s.tablename = 'chat_chatmessage'
              AND s.attname = 'search_vector') END
    FROM websearch_to_tsquery(chat_search_config(), %(q)s) AS tq
"""

# The rooms come as a list (the read rule asked once per room by _CHECK, just before): a
# constant the planner can estimate from the column's statistics, where a subquery on the
# rule would be a guess, and a wrong guess made it sort the whole table.
#
# Two ways to find the newest matches, each fast where the other is slow, in one statement:
#
# 1. ``recent``: the newest WINDOW messages in those rooms, walked backwards on the primary
#    key and checked row by row against the stored vectors. A common word fills a page in
#    the first few dozen rows, and the walk stops there (the LIMIT above stops pulling).
# 2. Only if that found less than a page: the GIN index, for the matches older than the
#    window. A word or phrase rarer than a page per WINDOW messages has few matches in all,
#    so reading them through the index is cheap. ``m.id + 0`` keeps the planner off the
#    primary key: for a phrase it multiplies its words' frequencies, overestimates the
#    matches by ten times or more, and then walks the key backwards, reading half the table
#    for a rare phrase; and for "older than the window" it ANDs the GIN bitmap with a
#    bitmap of the key's range, reading most of the key (bench/search_queries.py shows it).
#
# 1b. Only for a phrase whose words are common enough (``_CHECK``'s last column), between
#    the two: a walk of at most PHRASE_WALK_IDS ids below the window, as in 1. The index
#    cannot tell whether the words stand side by side, so for a phrase it hands over every
#    row holding all of them, each a heap page to read and recheck; for two common words
#    that is tens of thousands of pages at a million messages (the phrase kind's p95 was
#    77 ms), while the phrase itself turns up every few thousand rows, so a walk fills the
#    page sooner. ``IS TRUE`` keeps the match out of the index conditions: this branch is a
#    walk, bounded by its id range, never the index. Branch 2 then starts below the walk.
#
# So no query reads more than about WINDOW rows (plus PHRASE_WALK_IDS for a dense phrase)
# plus its index matches older than that. UNION ALL runs its branches in order and the LIMIT
# stops it, so a branch does not run when those before it fill the page. ``recent`` is read
# in the order it was written (a materialized CTE keeps it): newest first, so branch 1
# yields the newest. The query is written out in each place (not a CTE), so the planner
# sees a constant. Snippets are made for the page's rows only.
FIND = f"""
    WITH recent AS MATERIALIZED (
        SELECT m.id, m.room_id, m.author, m.text, m.created_at, m.deleted_at, m.search_vector
        FROM chat_chatmessage m
        WHERE m.room_id = ANY(%(rooms)s::text[])
          AND (%(before)s::bigint IS NULL OR m.id < %(before)s)
        ORDER BY m.id DESC
        LIMIT %(window)s
    ),
    hits AS (
        (SELECT w.id, w.room_id, w.author, w.text, w.created_at FROM recent w
         WHERE w.search_vector @@ websearch_to_tsquery(chat_search_config(), %(q)s)
           AND w.deleted_at IS NULL
         LIMIT %(limit)s)
        UNION ALL
        (SELECT m.id, m.room_id, m.author, m.text, m.created_at FROM chat_chatmessage m
         WHERE m.id < (SELECT min(id) FROM recent)
           AND m.id >= (SELECT min(id) FROM recent) - %(walk)s
           -- IS TRUE: not an index condition, so this is a walk, never the GIN bitmap
           AND (m.search_vector @@ websearch_to_tsquery(chat_search_config(), %(q)s)) IS TRUE
           AND m.deleted_at IS NULL
           AND m.room_id = ANY(%(rooms)s::text[])
           AND (SELECT count(*) FROM recent) >= %(window)s
         ORDER BY m.id DESC
         LIMIT %(limit)s)
        UNION ALL
        (SELECT m.id, m.room_id, m.author, m.text, m.created_at FROM chat_chatmessage m
         WHERE m.search_vector @@ websearch_to_tsquery(chat_search_config(), %(q)s)
           AND m.deleted_at IS NULL
           AND m.room_id = ANY(%(rooms)s::text[])
           -- a filter, not a primary key scan:
           AND m.id + 0 < (SELECT min(id) FROM recent) - %(walk)s
           AND (SELECT count(*) FROM recent) >= %(window)s  -- else nothing older to read
         ORDER BY m.id + 0 DESC
         LIMIT %(limit)s)
        LIMIT %(limit)s
    )
    SELECT h.id, h.room_id, h.author, h.text, chat_iso(h.created_at),
           ts_headline(chat_search_config(), translate(h.text, E'\\x02\\x03', ''),
                       websearch_to_tsquery(chat_search_config(), %(q)s),
                       '{HEADLINE_OPTIONS}')
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


def params(search: Search, rooms: list[str] | None = None, walk: bool = False) -> dict[str, Any]:
    return {
        "rooms": rooms or [],
        "q": search.text,
        "viewer": search.viewer,
        "room": search.room,
        "before": search.before,
        "limit": search.limit + 1,  # one more: is there a next page?
        "window": search.window,
        "walk": PHRASE_WALK_IDS if walk else 0,
        "walk_ids": PHRASE_WALK_IDS,
        "adjacent": PHRASE_ADJACENT,
    }


class Checked(NamedTuple):
    rooms: list[str]  # the rooms the search may read
    walk: bool  # a phrase likely found by walking below the window (FIND)


async def check(conn: psycopg.AsyncConnection[Any], search: Search) -> Checked:
    """The rooms the search may read (``search.room`` alone, if given), once its query is
    known to search something: BadQuery or NoRoom otherwise. ``GET /search`` and
    ``GET /search/events`` refuse the same queries with this one statement."""
    try:
        cur = await conn.execute(_CHECK, params(search))
    except _UNPARSABLE as exc:  # e.g. "tsquery stack too small" for "- - - ..."
        raise BadQuery(f"q could not be parsed: {exc.diag.message_primary}") from exc
    row = await cur.fetchone()
    assert row is not None
    nodes, tree, rooms, dense = row
    if search.room is not None and not rooms:
        raise NoRoom(f"no room {search.room!r}")
    if nodes == 0:
        raise BadQuery("q has no words to search for (only punctuation or stop words)")
    if tree == "T":
        raise BadQuery("q needs a word to find, not only words to leave out (-word)")
    return Checked(list(rooms), bool(dense) and bool(_PHRASE.search(tree)))


async def find(conn: psycopg.AsyncConnection[Any], search: Search) -> dict[str, Any]:
    """``{"results": [...], "next_before": id or None}``, newest first."""
    rooms, walk = await check(conn, search)
    if not rooms:
        return {"results": [], "next_before": None}
    cur = await conn.execute(FIND, params(search, rooms, walk))
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
