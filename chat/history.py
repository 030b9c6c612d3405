"""The log: reading back from the tables what a client or the listener missed.

Upstream:   the MessageChange log and ChatMessage rows written by the trigger
            (chat/models/messages.py).
Downstream: chat/pages.py (the page), chat/messages_api.py (JSON history), chat/feed.py
            (a stream's replay) and chat/relay.py (what the listener's bells point to; catch-up).
On failure: a query error ends that request or that listener connection; the database still
            holds everything, so the client's next resume (or the listener's next reconnect)
            reads it again.

Every query here is one statement, so the cursor it returns and the rows it returns come
from one snapshot: "history up to cursor N" means exactly that.

Reads go through the process's small async pool (chat/db.py), not the ORM, so an open
stream never pins a database connection or a thread.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple, cast

import psycopg

from .events import MESSAGE_FIELDS, REACTION_FIELDS, REACTION_OPS, ChatEvent, Op

REPLAY_BATCH = 500  # changes per query when replaying; a long absence takes several queries
# Who reacted, per emoji and message, in history: the first this many (the count is exact).
REACTION_USERS_SHOWN = 20


class Page(NamedTuple):
    """Rows read in one snapshot, and the room's cursor in that same snapshot."""

    cursor: int
    rows: list[Any]
    has_more: bool
    # The last log entry read, event or not: a page of creates of messages hard-deleted
    # since yields no event, yet the reader must move past it.
    last_seq: int = 0
    # The read rule for the reader, in the same snapshot as the rows (``changes_after``'s
    # ``reader``); when False, no row of the room was read.
    allowed: bool = True


class Reader(NamedTuple):
    """Who reads a replay, for the read rule (chat_room_readable): a user, or None for an
    anonymous visitor."""

    user_id: int | None


# -- queries -----------------------------------------------------------------------------

_CHANGES_AFTER = """
    SELECT cur.cursor, c.seq, c.op, c.message_id, chat_message_json(m)::text,
           chat_iso(c.created_at), c.emoji, c.reactor, cur.allowed
    FROM (SELECT coalesce(max(seq), 0) AS cursor,
                 NOT %(check)s OR chat_room_readable(%(room)s, %(viewer)s::bigint) AS allowed
          FROM chat_messagechange WHERE room_id = %(room)s) AS cur
    LEFT JOIN LATERAL (
        SELECT * FROM chat_messagechange
        WHERE room_id = %(room)s AND seq > %(after)s AND cur.allowed
        ORDER BY seq LIMIT %(limit)s
    ) AS c ON true
    LEFT JOIN chat_chatmessage m ON m.id = c.message_id
    ORDER BY c.seq
"""

# The shape keeps the plan to index lookups whatever the planner guesses: one range of
# (room_id, seq) per room, and the message by its key for each entry. As plain joins, a
# batch that rang many rooms, or a log that had grown, was planned as a scan of the whole
# log or of every message (61 ms at 119,000 rows, growing with them), on the listener's
# one connection, for each batch of bells (README, "Writers"). The inner ORDER BY is what
# keeps the LATERAL subquery from being flattened back into a plain join: keep it.
_CHANGES_AFTER_EACH = """
    SELECT c.room_id, c.seq, c.op, c.message_id,
           (SELECT chat_message_json(m)::text FROM chat_chatmessage m WHERE m.id = c.message_id),
           chat_iso(c.created_at), c.emoji, c.reactor
    FROM unnest(%s::text[], %s::bigint[], %s::bigint[]) AS want(room, after, upto)
    CROSS JOIN LATERAL (
        SELECT * FROM chat_messagechange
        WHERE room_id = want.room AND seq > want.after
          AND seq <= coalesce(want.upto, 9223372036854775807)
        ORDER BY seq
    ) AS c
    ORDER BY c.room_id, c.seq
"""

_RECENT_MESSAGES = """
    SELECT cur.cursor, recent.message, recent.reactions
    FROM (SELECT coalesce(max(seq), 0) AS cursor
          FROM chat_messagechange WHERE room_id = %(room)s) AS cur
    LEFT JOIN LATERAL (
        SELECT m.id, chat_message_json(m)::text AS message,
               CASE WHEN m.deleted_at IS NULL
                    THEN chat_message_reactions(m.id, %(shown)s)::text END AS reactions
        FROM chat_chatmessage m
        WHERE m.room_id = %(room)s AND (%(before)s::bigint IS NULL OR m.id < %(before)s)
        ORDER BY m.id DESC LIMIT %(limit)s
    ) AS recent ON true
    ORDER BY recent.id
"""

# The message, up to %(older)s before it and up to %(newer)s after it (one more each way, to
# tell whether there is more), in one snapshot with the cursor.
_AROUND = """
    SELECT cur.cursor, near.id, near.message,
           CASE WHEN near.deleted_at IS NULL
                THEN chat_message_reactions(near.id, %(shown)s)::text END AS reactions
    FROM (SELECT coalesce(max(seq), 0) AS cursor
          FROM chat_messagechange WHERE room_id = %(room)s) AS cur
    LEFT JOIN LATERAL (
        (SELECT m.id, m.deleted_at, chat_message_json(m)::text AS message
         FROM chat_chatmessage m
         WHERE m.room_id = %(room)s AND m.id <= %(around)s
         ORDER BY m.id DESC LIMIT %(older)s + 2)
        UNION ALL
        (SELECT m.id, m.deleted_at, chat_message_json(m)::text FROM chat_chatmessage m
         WHERE m.room_id = %(room)s AND m.id > %(around)s
         ORDER BY m.id LIMIT %(newer)s + 1)
    ) AS near ON true
    ORDER BY near.id
"""

_CURSOR = "SELECT coalesce(max(seq), 0) FROM chat_messagechange WHERE room_id = %s"
_CURSORS = """
    SELECT want.room,
           (SELECT coalesce(max(seq), 0) FROM chat_messagechange WHERE room_id = want.room)
    FROM unnest(%s::text[]) AS want(room)
"""
_SOME_MESSAGES = (
    "SELECT m.id, chat_message_json(m)::text FROM chat_chatmessage m WHERE m.id = ANY(%s)"
)


async def changes_after(
    conn: psycopg.AsyncConnection[Any],
    room: str,
    after: int,
    limit: int = REPLAY_BATCH,
    *,
    reader: Reader | None = None,
) -> Page:
    """The room's cursor and up to ``limit`` changes with a cursor above ``after``, in order.

    With a ``reader``, only if the read rule lets them read the room in the same snapshot
    (``Page.allowed``): a check made before the read, however recent, can't rule out an
    access change committed in between and the messages written after it."""
    check, viewer = (False, None) if reader is None else (True, reader.user_id)
    cur = await conn.execute(
        _CHANGES_AFTER,
        {"room": room, "after": after, "limit": limit, "check": check, "viewer": viewer},
    )
    rows = await cur.fetchall()
    cursor = int(rows[0][0]) if rows else 0
    allowed = bool(rows[0][-1]) if rows else True
    scanned = [row for row in rows if row[1] is not None]
    events = [event for _, *row, _ in scanned if (event := event_of(room, *row)) is not None]
    last_seq = scanned[-1][1] if scanned else after
    return Page(cursor, events, len(scanned) >= limit, last_seq, allowed)


async def current_cursor(conn: psycopg.AsyncConnection[Any], room: str) -> int:
    """The room's latest cursor: where a stream opened "from now" starts."""
    cur = await conn.execute(_CURSOR, (room,))
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def changes_after_each(
    conn: psycopg.AsyncConnection[Any],
    positions: dict[str, int],
    upto: dict[str, int | None] | None = None,
) -> list[ChatEvent]:
    """For the listener: changes after a position in each room, up to ``upto[room]`` when
    given (the listener reads no further than its bells rang: a change past them may come
    after an access change whose bell is not handled yet), one query."""
    if not positions:
        return []
    rooms, afters = zip(*positions.items(), strict=True)
    uptos = [(upto or {}).get(room) for room in rooms]
    cur = await conn.execute(_CHANGES_AFTER_EACH, (list(rooms), list(afters), uptos))
    return [event for row in await cur.fetchall() if (event := event_of(*row)) is not None]


async def cursors(conn: psycopg.AsyncConnection[Any], rooms: list[str]) -> dict[str, int]:
    """Each room's latest cursor, in one snapshot."""
    if not rooms:
        return {}
    cur = await conn.execute(_CURSORS, (rooms,))
    return {room: int(seq) for room, seq in await cur.fetchall()}


async def recent_messages(
    conn: psycopg.AsyncConnection[Any], room: str, *, before: int | None, limit: int
) -> Page:
    """The latest ``limit`` messages (below id ``before``), oldest first, and the cursor;
    each with its ``reactions``: ``[{"emoji", "count", "users"}]`` (a deleted one's: [])."""
    params = {"room": room, "before": before, "limit": limit + 1, "shown": REACTION_USERS_SHOWN}
    cur = await conn.execute(_RECENT_MESSAGES, params)
    rows = await cur.fetchall()
    cursor = int(rows[0][0]) if rows else 0
    messages = [
        json.loads(message) | {"reactions": json.loads(reactions or "[]")}
        for _, message, reactions in rows
        if message is not None
    ]
    has_more = len(messages) > limit
    return Page(cursor, messages[1:] if has_more else messages, has_more)


class Around(NamedTuple):
    """Messages around one, oldest first, the room's cursor, and whether there is more."""

    cursor: int
    rows: list[Any]
    has_more: bool  # older messages than the first listed
    has_newer: bool  # newer messages than the last listed


async def messages_around(
    conn: psycopg.AsyncConnection[Any], room: str, around: int, limit: int
) -> Around | None:
    """Up to ``limit`` messages of the room with message ``around`` among them (about half
    before it, the rest after), oldest first; None if the room has no such message."""
    older = limit // 2
    newer = limit - 1 - older
    params = {"room": room, "around": around, "older": older, "newer": newer}
    params |= {"shown": REACTION_USERS_SHOWN}
    cur = await conn.execute(_AROUND, params)
    rows = await cur.fetchall()
    cursor = int(rows[0][0]) if rows else 0
    found = [
        (int(message_id), json.loads(message) | {"reactions": json.loads(reactions or "[]")})
        for _, message_id, message, reactions in rows
        if message_id
    ]
    at = next((i for i, (message_id, _) in enumerate(found) if message_id == around), None)
    if at is None:
        return None
    before, after = found[:at], found[at + 1 :]
    shown = before[-older:] if older else []
    shown += [found[at], *after[:newer]]
    return Around(
        cursor,
        [message for _, message in shown],
        has_more=len(before) > older,
        has_newer=len(after) > newer,
    )


async def fetch_message(
    conn: psycopg.AsyncConnection[Any], message_id: int
) -> dict[str, Any] | None:
    """One message as the browser sees it; None if it is gone."""
    return (await fetch_messages(conn, [message_id])).get(message_id)


async def fetch_messages(
    conn: psycopg.AsyncConnection[Any], message_ids: list[int]
) -> dict[int, dict[str, Any]]:
    """Several messages by id in one query; absent ids are gone."""
    cur = await conn.execute(_SOME_MESSAGES, (message_ids,))
    return {message_id: json.loads(message) for message_id, message in await cur.fetchall()}


def event_of(
    room: str,
    seq: int,
    op: str,
    message_id: int,
    message: str | None,
    changed_at: str,
    emoji: str | None = None,
    reactor: str | None = None,
) -> ChatEvent | None:
    """A log row as an event; None for a create or edit of a message hard-deleted since."""
    if op in REACTION_OPS:  # the entry itself says everything (its row may be gone)
        data = dict(zip(REACTION_FIELDS, (room, message_id, emoji, reactor), strict=True))
        return ChatEvent(room=room, seq=seq, op=op, message_id=message_id, message=data)
    if message is not None:
        shown = json.loads(message)
    elif op == "deleted":
        shown = tombstone(room, message_id, changed_at)
    else:
        return None  # its hard delete comes later in the log
    return ChatEvent(room=room, seq=seq, op=cast(Op, op), message_id=message_id, message=shown)


def tombstone(room: str, message_id: int, deleted_at: str) -> dict[str, Any]:
    """What is left to say of a hard-deleted message: which one, and when."""
    return {field: None for field in MESSAGE_FIELDS} | {
        "id": message_id,
        "room": room,
        "text": "",
        "deleted_at": deleted_at,
    }


# -- by snapshot (GET /events) -------------------------------------------------------------
