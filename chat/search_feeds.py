"""The listener's side of ``GET /search/events`` (live saved searches): the open saved
searches, and matching each batch's new messages against all of them in one statement.

Upstream:   chat/relay.py hands over each batch of bells (``on_batch``), its reconnects
            and the periodic sweep (``catch_up``); chat/search_stream.py registers streams.
Downstream: each stream's SearchSubscription (a TokenBuffer): ``search.match`` frames, the
            batch's resume token on its last frame.
On failure: a read that fails drops the listener's connection; on reconnect ``catch_up``
            matches everything after the last position it reached, so nothing is lost. A
            bell is only a hint that the log grew: what matched is read from the tables.

Where matching happens (measured by bench/saved_search_cost.py): in PostgreSQL, once per
batch of bells, for every open saved search at once. The statement takes the log entries
that became visible since the listener's last position (by snapshot, as ``GET /events``:
chat/position.py), keeps the creations, and joins them with the saved searches (``unnest``
of arrays: one row per stream) on ``search_vector @@ query``, each distinct query parsed
once. The process does nothing per saved search and per message but frame the few matches;
the same ``@@`` as ``GET /search`` decides, so a saved search finds exactly what a search
would.

Who may read what: every match is checked in the same statement with the one rule,
``chat_room_readable(room, viewer)``, as of that statement, which also decided which log
entries it sees. So a member removed from a room, or a room made private, stops a stream's
matches from the first batch read after the change committed, on every worker, with no
bookkeeping here; a room created later is searched from its first message. A stream whose
session ends (log-out, expiry, the user deactivated) is ended on the listener's session and
user bells, the same check as ``GET /events`` (``user_feeds.signed_out``).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Sequence
from typing import Any

import psycopg

from . import db, metrics, search, sse
from .events import Bell
from .position import Snapshot
from .subscription import Viewer
from .token_stream import Page, ReadPage
from .user_feeds import TokenAhead, current_snapshot, signed_out
from .user_subscription import TokenBuffer

logger = logging.getLogger("pgchat.search_feeds")

EVENT = "search.match"
REPLAY_MATCHES = 200  # matches per page of a replay

# The creations made visible between ``since`` (its xmax and in-flight ids) and ``target``
# (NULL: this statement's own snapshot, returned with the rows) that match a saved search,
# in rooms its viewer may read now, for a session still live in that same snapshot (a match
# committed after a log-out must not reach the stream the log-out's bell has yet to end),
# not deleted; ``after``: a replay page's start. Ordered by
# cursor: within a room that is commit order. ``found`` first matches each message against
# each distinct query; only matches meet the read rule and the headline.
MATCHES = f"""
    WITH snap AS (
        SELECT coalesce(%(target)s::pg_snapshot, pg_current_snapshot()) AS target
    ), new AS (
        SELECT c.seq, c.txid, c.room_id, c.message_id FROM chat_messagechange c, snap
        WHERE (c.txid >= %(xmax)s::xid8 OR c.txid = ANY(%(xip)s::xid8[]))
          AND c.op = 'created' AND c.seq > %(after)s
          AND pg_visible_in_snapshot(c.txid, snap.target)
    ), saved AS (
        SELECT * FROM unnest(%(subs)s::int[], %(queries)s::text[], %(viewers)s::bigint[],
                             %(rooms)s::text[], %(keys)s::text[]) AS s(sub, q, viewer, room, key)
    ), queries AS (
        SELECT q, websearch_to_tsquery(chat_search_config(), q) AS tsq FROM saved GROUP BY q
    ), found AS MATERIALIZED (
        SELECT n.seq, n.txid, n.room_id, qs.q, qs.tsq, m AS msg
        FROM new n
        JOIN chat_chatmessage m ON m.id = n.message_id AND m.deleted_at IS NULL
        JOIN queries qs ON m.search_vector @@ qs.tsq
    ), hits AS (
        SELECT f.*, s.sub FROM found f JOIN saved s ON s.q = f.q
        WHERE (s.room IS NULL OR s.room = f.room_id) AND chat_room_readable(f.room_id, s.viewer)
          AND (s.key IS NULL OR EXISTS (SELECT FROM django_session d
                                        WHERE d.session_key = s.key AND d.expire_date > now()))
        ORDER BY f.seq, s.sub
        LIMIT %(limit)s
    )
    SELECT snap.target::text, h.sub, h.seq, h.txid::text, h.q,
           chat_message_json(h.msg)::text,
           ts_headline(chat_search_config(), translate((h.msg).text, E'\\x02\\x03', ''), h.tsq,
                       '{search.HEADLINE_OPTIONS}')
    FROM snap LEFT JOIN hits h ON true
    ORDER BY h.seq, h.sub
"""


class SearchSubscription(TokenBuffer):
    """One open saved search: its query, its viewer, an optional room, its buffer."""

    __slots__ = ("query", "room", "viewer")

    def __init__(
        self, viewer: Viewer, query: str, room: str | None, delivered: Snapshot, limit: int
    ) -> None:
        super().__init__(delivered, limit)
        self.viewer, self.query, self.room = viewer, query, room


async def matches(
    conn: psycopg.AsyncConnection[Any],
    since: Snapshot,
    subs: Sequence[SearchSubscription],
    *,
    target: Snapshot | None = None,
    after: int = 0,
    limit: int | None = None,
) -> tuple[Snapshot, list[tuple[int, int, int, bytes]]]:
    """The position read up to, and the matches after ``since`` (up to ``target``, default
    now) as (index into ``subs``, cursor, txid, frame), in cursor order. One frame per
    message and query, shared by every stream of that query."""
    params = {
        "target": target.pg() if target is not None else None,
        "xmax": str(since.xmax),
        "xip": [str(txid) for txid in since.xip],
        "after": after,
        "limit": limit,
        "subs": list(range(len(subs))),
        "queries": [sub.query for sub in subs],
        "viewers": [sub.viewer.user_id for sub in subs],
        "rooms": [sub.room for sub in subs],
        "keys": [sub.viewer.session_key for sub in subs],
    }
    cur = await conn.execute(MATCHES, params)
    rows = await cur.fetchall()
    reached = Snapshot.from_pg(rows[0][0])
    frames: dict[tuple[int, str], bytes] = {}
    found = []
    for _, index, seq, txid, query, message, headline in rows:
        if index is None:
            continue
        frame = frames.get((seq, query))
        if frame is None:
            data = json.loads(message) | {"snippet": search.snippet_parts(headline)}
            frame = frames[(seq, query)] = sse.encode_untagged(EVENT, data)
        found.append((int(index), int(seq), int(txid), frame))
    return reached, found


def replay_page(sub: SearchSubscription) -> ReadPage:
    """A replay page of one saved search: its matches after ``after`` between two
    positions, up to REPLAY_MATCHES of them (chat/token_stream.py)."""

    async def read(
        conn: psycopg.AsyncConnection[Any], done: Snapshot, upto: Snapshot, after: int
    ) -> Page:
        _, found = await matches(conn, done, [sub], target=upto, after=after, limit=REPLAY_MATCHES)
        if found:
            after = found[-1][1]
        return Page([frame for _, _, _, frame in found], after, len(found) >= REPLAY_MATCHES)

    return read


class SearchFeeds:
    """This process's open saved searches and the log position they all stand at."""

    def __init__(self, queue_size: int, count: Callable[[str, int], None]) -> None:
        self.queue_size = queue_size
        self._count = count
        self._subs: dict[SearchSubscription, None] = {}  # in the order they opened
        # Everything visible here was matched for every registered stream; None while no
        # stream is open (the next registration takes a fresh snapshot).
        self._position: Snapshot | None = None
        self._lock = asyncio.Lock()  # a stream registers between two batches, never in one

    @property
    def count(self) -> int:
        return len(self._subs)

    def subscriptions(self) -> list[SearchSubscription]:
        return list(self._subs)

    async def register(
        self, viewer: Viewer, query: str, room: str | None, since: Snapshot | None
    ) -> tuple[SearchSubscription, Snapshot]:
        """A stream matching ``query`` from the listener's position on; and the snapshot its
        replay of ``since`` must reach."""
        async with db.connection() as conn, self._lock:  # the connection first: see UserFeeds
            now = await current_snapshot(conn)
            if since is not None and since.xmax > now.xmax:
                raise TokenAhead("Last-Event-ID is ahead of the database; open without it")
            if self._position is None or not self._subs:
                self._position = now
            target = self._position if since is None else self._position.union(since)
            sub = SearchSubscription(viewer, query, room, target, self.queue_size)
            self._subs[sub] = None
            metrics.SAVED_SEARCHES.inc()
            return sub, target

    def unregister(self, sub: SearchSubscription, *, fell_behind: bool = False) -> None:
        """Close and forget a stream; idempotent."""
        sub.close(fell_behind=fell_behind)
        if self._subs.pop(sub, 0) is None:
            metrics.SAVED_SEARCHES.dec()

    def close_all(self) -> None:
        for sub in self.subscriptions():
            self.unregister(sub)

    def heartbeat(self) -> None:
        for sub in self._subs:
            sub.heartbeat()

    async def on_batch(self, conn: psycopg.AsyncConnection[Any], bells: list[Bell]) -> None:
        """One batch of bells: sessions first (a log-out in the batch ends its streams
        before anything later is matched for them), then the log."""
        async with self._lock:
            if not self._subs:
                self._position = None
                return
            sessions = any(bell.kind == "sessions" for bell in bells)
            users = {bell.user for bell in bells if bell.kind == "user" and bell.user}
            if sessions or users:
                await self._end_lost_sessions(conn, sessions, users)
            if any(bell.kind == "message" for bell in bells):
                await self._read(conn)

    async def catch_up(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """After a reconnect, and for the periodic sweep: every stream's session again,
        then the log after the last position."""
        async with self._lock:
            if not self._subs:
                self._position = None
                return
            every = {uid for sub in self._subs if (uid := sub.viewer.user_id) is not None}
            await self._end_lost_sessions(conn, True, every)
            await self._read(conn)

    async def _read(self, conn: psycopg.AsyncConnection[Any]) -> None:
        if self._position is None or not self._subs:
            return
        subs = list(self._subs)
        previous = self._position
        self._count("search_reads", 1)
        reached, found = await matches(conn, previous, subs)
        self._position = reached
        batches: dict[SearchSubscription, list[bytes]] = {}
        for index, _, txid, frame in found:
            sub = subs[index]
            # At ``previous`` (most streams): lacks it by construction. Otherwise its
            # client's token may already hold it (a resume from another worker).
            if sub.delivered is previous or not sub.delivered.visible(txid):
                batches.setdefault(sub, []).append(frame)
        for sub in subs:
            at = sub.delivered
            sub.delivered = reached if at is previous else at.union(reached)
        self._count("search_matches", len(found))
        for sub, frames in batches.items():
            frames[-1] = sse.tag(frames[-1], sub.token)
            if not sub.offer(frames):
                self.unregister(sub, fell_behind=True)
                self._count("slow_drops", 1)
                logger.info("dropped a slow saved search (buffer full)")

    async def _end_lost_sessions(
        self, conn: psycopg.AsyncConnection[Any], sessions: bool, users: set[int]
    ) -> None:
        for sub in await signed_out(conn, list(self._subs), sessions, users):
            self.unregister(sub)
            self._count("revoked", 1)
            logger.info("ended a saved search: its session ended")
