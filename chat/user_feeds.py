"""The listener's side of ``GET /events``: which rooms each user stream carries, and the log
read by snapshot for all of them.

Upstream:   chat/relay.py hands over each batch of bells (``on_batch``), its reconnects
            (``catch_up``) and the periodic sweep; chat/user_stream.py registers streams.
Downstream: chat/user_fanout.py ``UserFanOut`` (frames, ``room.joined`` / ``room.left`` /
            ``room.read`` events, closing streams whose session ended).
On failure: a read or a check that fails drops the listener's connection; on reconnect,
            ``catch_up`` reads everything after the last position it reached and re-derives
            every stream's rooms and sessions from the tables, so nothing is lost or left
            open. A bell is only a hint: rooms, sessions and read positions are read here.

One lock orders registration against the listener's reads: a stream registers between two
batches, at the listener's position, and its own replay (chat/user_stream.py) ends exactly
there, so the two never overlap nor leave a gap. Membership is settled before each batch's
log read: a room joined in the batch is carried from the read on (its newcomer may read
all of it anyway); a room left or no longer readable is dropped before the read, so nothing
committed after the change can reach the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any, Protocol, TypeVar

import psycopg
from asgiref.sync import sync_to_async

from . import db, log_by_snapshot, rooms, sse
from .events import Bell
from .log_by_snapshot import Window
from .position import Position, Snapshot
from .presence import Presence
from .subscription import Viewer
from .user_fanout import UserFanOut
from .user_subscription import UserSubscription

logger = logging.getLogger("pgchat.user_feeds")

# The rooms a user joined and may read now: what their /events carries.
_ROOMS_OF = """
    SELECT m.user_id, m.room_id FROM chat_room_members m
    WHERE m.user_id = ANY(%s::bigint[]) AND chat_room_readable(m.room_id, m.user_id)
"""
_SESSION_LIVE = (
    "EXISTS (SELECT FROM django_session s WHERE s.session_key = {key} AND s.expire_date > now())"
)
_LIVE_SESSIONS = f"""
    SELECT k FROM unnest(%s::text[]) AS k WHERE {_SESSION_LIVE.format(key="k")}
"""
# What a window's streams lost, in one statement and normally no row: of these (user, room)
# pairs, those no longer joined and readable (_ROOMS_OF's condition), then of these session
# keys, those no longer live (_LIVE_SESSIONS's).
_LOST = f"""
    SELECT w.user_id, w.room_id, NULL FROM unnest(%s::bigint[], %s::text[]) AS w(user_id, room_id)
    WHERE NOT (EXISTS (SELECT FROM chat_room_members m
                       WHERE m.user_id = w.user_id AND m.room_id = w.room_id)
               AND chat_room_readable(w.room_id, w.user_id))
    UNION ALL
    SELECT NULL, NULL, k FROM unnest(%s::text[]) AS k WHERE NOT {_SESSION_LIVE.format(key="k")}
"""
_READ_POSITIONS = """
    SELECT rs.user_id, rs.room_id, rs.last_read
    FROM unnest(%s::bigint[], %s::text[]) AS w(user_id, room_id)
    JOIN chat_readstate rs ON rs.user_id = w.user_id AND rs.room_id = w.room_id
"""
_NOW = "SELECT pg_current_snapshot()::text"
_STILL_SIGNED_IN = """
    SELECT EXISTS (SELECT FROM django_session s WHERE s.session_key = %s AND s.expire_date > now())
       AND EXISTS (SELECT FROM auth_user u WHERE u.id = %s AND u.is_active)
"""


class TokenAhead(ValueError):
    """A token naming transactions the database has not begun (400)."""


class SignedOut(ValueError):
    """The session ended, or its user was deactivated, while the stream was opening (403)."""


class UserFeeds:
    """This process's user streams, their rooms, and the log position they all stand at."""

    def __init__(
        self,
        queue_size: int,
        count: Callable[[str, int], None],
        presence: Presence | None = None,
    ) -> None:
        self.fanout = UserFanOut(queue_size, count, presence)
        self._count = count
        # Everything visible here has been offered to every registered stream; None while
        # no stream is open (the next registration takes a fresh snapshot).
        self._position: Snapshot | None = None
        self._lock = asyncio.Lock()

    async def register(
        self, viewer: Viewer, since: Position | None
    ) -> tuple[UserSubscription, Snapshot]:
        """A stream for ``viewer`` carrying their rooms from the listener's position on; and
        the snapshot its replay of ``since`` must reach (everything visible there counts as
        given to the stream from now on)."""
        assert viewer.user_id is not None
        # The connection first: waiting for a busy pool must not hold up the listener.
        async with db.connection() as conn, self._lock:
            now = await current_snapshot(conn)
            if since is not None and since.whole.xmax > now.xmax:
                # Not one of this database's tokens (forged, or from before a restore): it
                # would count transactions not yet begun as delivered.
                raise TokenAhead("Last-Event-ID is ahead of the database; open without it")
            # Checked again under the lock: a log-out or deactivation handled by the
            # listener just before this registration would otherwise not end the stream.
            cur = await conn.execute(_STILL_SIGNED_IN, (viewer.session_key, viewer.user_id))
            if not (row := await cur.fetchone()) or not row[0]:
                raise SignedOut("sign in to open /events")
            if self._position is None or not self.fanout.count:
                self._position = now
            joined = (await _rooms_of(conn, [viewer.user_id]))[viewer.user_id]
            target = self._position if since is None else self._position.union(since.whole)
            return self.fanout.subscribe_user(viewer, joined, target), target

    def unregister(self, sub: UserSubscription) -> None:
        self.fanout.unsubscribe_user(sub)

    async def on_batch(self, conn: psycopg.AsyncConnection[Any], bells: list[Bell]) -> None:
        """One batch of bells: sessions, then rooms, then the log, then read positions."""
        async with self._lock:
            if not self.fanout.count:
                self._position = None
                return
            users: set[int] = set()
            reads: dict[tuple[int, str], None] = {}
            sessions, changed_users, messages = False, set(), False
            for bell in bells:
                if bell.kind == "message":
                    messages = True
                elif bell.kind in ("joined", "left") and bell.user is not None:
                    users.add(bell.user)
                elif bell.kind == "access":
                    users.update(s.user_id for s in self.fanout.subscriptions(room=bell.room))
                elif bell.kind == "user" and bell.user is not None:
                    changed_users.add(bell.user)
                    users.add(bell.user)
                elif bell.kind == "sessions":
                    sessions = True
                elif bell.kind == "read" and bell.user is not None and bell.room is not None:
                    reads[(bell.user, bell.room)] = None
            if sessions or changed_users:
                await self._end_lost_sessions(conn, sessions, changed_users)
            await self._settle_rooms(conn, users)
            if messages:
                await self._read(conn)
            await self._send_reads(conn, list(reads))

    async def catch_up(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """After a reconnect, and for the periodic sweep: every stream's session and rooms
        again (bells may have been missed), then the log after the last position."""
        async with self._lock:
            if not self.fanout.count:
                self._position = None
                return
            every = {sub.user_id for sub in self.fanout.subscriptions()}
            await self._end_lost_sessions(conn, True, every)
            await self._settle_rooms(conn, every)
            await self._read(conn)

    async def _read(self, conn: psycopg.AsyncConnection[Any]) -> None:
        if self._position is None:  # registration sets it; kept for safety
            self._position = await current_snapshot(conn)
            return
        self._count("log_reads", 1)
        previous = self._position
        async with one_snapshot(conn):
            window = await log_by_snapshot.changes_since(conn, previous, self.fanout.rooms)
            await self._recheck_window(conn, window)
        self._position = window.target
        self.fanout.publish_window(window, previous)

    async def _recheck_window(self, conn: psycopg.AsyncConnection[Any], window: Window) -> None:
        """In the window's own snapshot, the streams it would reach: still signed in, and
        still joined to and allowed in each room it changes. The read goes up to now, past
        bells not handled yet: a removal or a log-out among them, and a message after it,
        are both in the window, and the message must not reach that stream. (What the
        stream lost in the window is withheld with it: it was leaving anyway.)"""
        changed = {event.room for tx in window.transactions for event in tx.events}
        subs = list({s: None for r in changed for s in self.fanout.subscriptions(room=r)})
        if not subs:
            return
        pairs = [(s.user_id, r) for s in subs for r in changed & s.rooms]
        keys = sorted({key for s in subs if (key := s.viewer.session_key) is not None})
        users, slugs = zip(*pairs, strict=True) if pairs else ((), ())
        cur = await conn.execute(_LOST, (list(users), list(slugs), keys))
        lost_rooms: set[tuple[int, str]] = set()
        gone_keys: set[str] = set()
        for user, room, key in await cur.fetchall():
            if key is not None:
                gone_keys.add(key)
            else:
                lost_rooms.add((user, room))
        for sub in subs:
            if sub.viewer.session_key in gone_keys:
                self._end(sub, "its session ended")
                continue
            for room in sorted(room for user, room in lost_rooms if user == sub.user_id):
                if room in sub.rooms:
                    self.fanout.remove_room(sub, room)
                    self._offer(sub, "room.left", {"room": room})

    async def _settle_rooms(self, conn: psycopg.AsyncConnection[Any], users: set[int]) -> None:
        """Make these users' streams carry exactly the rooms they joined and may read."""
        users = {user for user in users if self.fanout.subscriptions(user=user)}  # here
        if not users:
            return
        now = await _rooms_of(conn, users)
        for user in users:
            for sub in self.fanout.subscriptions(user=user):
                for room in sorted(sub.rooms - now[user]):
                    self.fanout.remove_room(sub, room)
                    self._offer(sub, "room.left", {"room": room})
                for room in sorted(now[user] - sub.rooms):
                    self.fanout.add_room(sub, room)
                    self._offer(sub, "room.joined", {"room": room})

    async def _end_lost_sessions(
        self, conn: psycopg.AsyncConnection[Any], sessions: bool, users: Iterable[int]
    ) -> None:
        for sub in await signed_out(conn, self.fanout.subscriptions(), sessions, users):
            self._end(sub, "its session ended, or no longer resolves to its user")

    async def _send_reads(
        self, conn: psycopg.AsyncConnection[Any], reads: list[tuple[int, str]]
    ) -> None:
        reads = [(user, room) for user, room in reads if self.fanout.subscriptions(user=user)]
        if not reads:
            return
        users, slugs = zip(*reads, strict=True)
        cur = await conn.execute(_READ_POSITIONS, (list(users), list(slugs)))
        for user, room, cursor in await cur.fetchall():
            for sub in self.fanout.subscriptions(user=user):
                if room in sub.rooms:
                    self._offer(sub, "room.read", {"room": room, "cursor": cursor})

    def _offer(self, sub: UserSubscription, name: str, data: dict[str, Any]) -> None:
        self.fanout.offer(sub, [sse.encode_untagged(name, data)])

    def _end(self, sub: UserSubscription, why: str) -> None:
        self.fanout.unsubscribe_user(sub)
        self._count("revoked", 1)
        logger.info("ended a /events stream of user %s: %s", sub.user_id, why)


class Viewed(Protocol):
    """A stream opened by a viewer (a user stream, a saved search)."""

    @property
    def viewer(self) -> Viewer: ...


S = TypeVar("S", bound=Viewed)


async def signed_out(
    conn: psycopg.AsyncConnection[Any], subs: list[S], sessions: bool, users: Iterable[int]
) -> list[S]:
    """Of these streams (each with a ``viewer``), those whose session is gone (log-out,
    expiry: checked when ``sessions``) or, for a stream of one of ``users``, no longer
    resolves to its user (deactivated, password changed: Django's own rules). Streams
    opened without a session (anonymous) have nothing to lose."""
    signed = [(key, sub) for sub in subs if (key := sub.viewer.session_key) is not None]
    lost: dict[S, None] = {}
    if sessions and signed:
        cur = await conn.execute(_LIVE_SESSIONS, (sorted({key for key, _ in signed}),))
        live = {key for (key,) in await cur.fetchall()}
        lost.update((sub, None) for key, sub in signed if key not in live)
    wanted = set(users)
    mine = [(k, sub) for k, sub in signed if sub.viewer.user_id in wanted and sub not in lost]
    if mine:
        resolved = await sync_to_async(rooms.session_users)(sorted({k for k, _ in mine}))
        lost.update((sub, None) for k, sub in mine if resolved.get(k) != sub.viewer.user_id)
    return list(lost)


@contextlib.asynccontextmanager
async def one_snapshot(conn: psycopg.AsyncConnection[Any]) -> AsyncIterator[None]:
    """The statements inside read one snapshot (REPEATABLE READ, read only), on a
    connection in autocommit (the listener's)."""
    await conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    try:
        yield
    except BaseException:
        with contextlib.suppress(psycopg.Error):
            await conn.execute("ROLLBACK")
        raise
    await conn.execute("COMMIT")


async def current_snapshot(conn: psycopg.AsyncConnection[Any]) -> Snapshot:
    cur = await conn.execute(_NOW)
    row = await cur.fetchone()
    assert row is not None
    return Snapshot.from_pg(row[0])


async def _rooms_of(
    conn: psycopg.AsyncConnection[Any], users: Iterable[int]
) -> dict[int, set[str]]:
    wanted = sorted(set(users))
    cur = await conn.execute(_ROOMS_OF, (wanted,))
    joined: dict[int, set[str]] = {user: set() for user in wanted}
    for user, room in await cur.fetchall():
        joined[user].add(room)
    return joined
