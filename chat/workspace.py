"""The workspace's reads and read-state writes, in SQL: a user's rooms with their unread and
mention counts (one statement), and moving how far the user has read a room.

Upstream:   chat_room_members (what the user joined), chat_readstate, chat_livemessage,
            chat_mention and the log chat_messagechange, all written by triggers or by
            chat/membership.py.
Downstream: chat/workspace_api.py (``GET /me/rooms``, ``POST /rooms/<slug>/read``) and the
            benchmark (bench/workspace_queries.py), which times the same statement.
On failure: a query error answers 503 (chat/jsonapi.py); a read-state write is one statement,
            whole or not at all, and its trigger rings the user's other streams only on
            COMMIT.

No Django here (the benchmark imports it): queries take a psycopg connection.

Counts are capped at ``COUNT_CAP`` (100): up to 99 they are exact, 100 means "100 or more"
(a badge shows "99+"). Counting stops there, so a room far behind costs at most that many
index entries, and the whole answer stays within milliseconds for a user in hundreds of
rooms (`make bench`: bench/workspace_queries.py).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import psycopg

COUNT_CAP = 100

# Unread: messages whose creating change is after last_read, not deleted, not the user's own
# (psql rows have no sender: they count for everyone): chat_livemessage by (room, seq),
# sender included, index-only; at most COUNT_CAP entries per room.
# Mentions: chat_mention by (user, room, seq): likewise.
# A DM's other user comes from its slug ("dm-<low id>-<high id>"), not its members, so it
# stays named if a member row goes. chat_room_readable: the one read rule (migration 0005);
# a member of a private room may read it, yet an inactive account, say, may not.
MY_ROOMS = f"""
    SELECT r.slug, r.title, r.is_private, r.is_direct, other.username,
           coalesce(rs.last_read, 0), latest.seq, unread.n, mentioned.n
    FROM chat_room_members mine
    JOIN chat_room r ON r.slug = mine.room_id
    LEFT JOIN chat_readstate rs ON rs.user_id = mine.user_id AND rs.room_id = r.slug
    LEFT JOIN auth_user other ON other.id = CASE
        WHEN NOT r.is_direct THEN NULL
        WHEN split_part(r.slug, '-', 2)::bigint = mine.user_id
            THEN split_part(r.slug, '-', 3)::bigint
        ELSE split_part(r.slug, '-', 2)::bigint
    END
    CROSS JOIN LATERAL (
        SELECT coalesce(max(c.seq), 0) AS seq FROM chat_messagechange c WHERE c.room_id = r.slug
    ) AS latest
    CROSS JOIN LATERAL (
        SELECT count(*) AS n FROM (
            SELECT FROM chat_livemessage lm
            WHERE lm.room_id = r.slug AND lm.seq > coalesce(rs.last_read, 0)
              AND lm.sender_id IS DISTINCT FROM mine.user_id
            LIMIT {COUNT_CAP}
        ) AS capped
    ) AS unread
    CROSS JOIN LATERAL (
        SELECT count(*) AS n FROM (
            SELECT FROM chat_mention mn
            WHERE mn.user_id = mine.user_id AND mn.room_id = r.slug
              AND mn.seq > coalesce(rs.last_read, 0)
            LIMIT {COUNT_CAP}
        ) AS capped
    ) AS mentioned
    -- The rule names mine.user_id (the same user), not the parameter, so it is checked for
    -- the user's rooms after the join, never pushed down onto a scan of every room.
    WHERE mine.user_id = %(user)s AND chat_room_readable(r.slug, mine.user_id)
    ORDER BY r.is_direct, r.slug
"""

# One statement: the room's latest cursor, the move (only forward, only up to that cursor),
# and the position now. The outer SELECT sees the snapshot from before the CTE's write, so
# "now" is the moved value if it moved, else the stored one.
_MARK_READ = """
    WITH latest AS (
        SELECT coalesce(max(seq), 0) AS seq FROM chat_messagechange WHERE room_id = %(room)s
    ), moved AS (
        INSERT INTO chat_readstate AS rs (user_id, room_id, last_read)
        SELECT %(user)s, %(room)s, %(cursor)s FROM latest WHERE %(cursor)s <= latest.seq
        ON CONFLICT (user_id, room_id) DO UPDATE
            SET last_read = EXCLUDED.last_read, updated_at = now()
            WHERE rs.last_read < EXCLUDED.last_read
        RETURNING last_read
    )
    SELECT latest.seq, coalesce(
        (SELECT last_read FROM moved),
        (SELECT last_read FROM chat_readstate WHERE user_id = %(user)s AND room_id = %(room)s),
        0
    )
    FROM latest
"""


class MyRoom(NamedTuple):
    slug: str
    title: str
    is_private: bool
    is_direct: bool
    dm_with: str | None  # the other user's name, for a direct conversation
    last_read: int
    latest: int
    unread: int  # capped at COUNT_CAP
    mentions: int  # capped at COUNT_CAP

    def as_json(self) -> dict[str, Any]:
        return self._asdict()


class CursorAhead(ValueError):
    """A read position beyond the room's latest cursor (400)."""


async def my_rooms(conn: psycopg.AsyncConnection[Any], user_id: int) -> list[MyRoom]:
    """The rooms the user joined and may read, public and private first, then DMs."""
    cur = await conn.execute(MY_ROOMS, {"user": user_id})
    return [MyRoom(*row) for row in await cur.fetchall()]


async def mark_read(
    conn: psycopg.AsyncConnection[Any], user_id: int, room: str, cursor: int
) -> int:
    """Move the user's read position in the room forward to ``cursor``; returns the position
    now (higher than ``cursor`` if it was already). Raises CursorAhead past the latest."""
    cur = await conn.execute(_MARK_READ, {"user": user_id, "room": room, "cursor": cursor})
    row = await cur.fetchone()
    assert row is not None  # the CTE "latest" always yields one row
    latest, position = int(row[0]), int(row[1])
    if cursor > latest:
        raise CursorAhead(f"cursor {cursor} is ahead of room {room!r} (latest {latest})")
    return position
