"""The listener's side of typing and presence: ephemeral bells, checked, to the room's streams.

Upstream:   chat/relay.py hands over each batch's ``typing`` and ``presence`` bells
            (``on_batch``) and its reconnects (``catch_up``).
Downstream: the room's open streams in this process: room streams (chat/fanout.py
            ``FanOut``) and the /events streams carrying the room (``UserFanOut``), as
            frames without ``id:`` (``typing``, ``presence.joined``, ``presence.left``).
On failure: nothing here is kept anywhere: a typing bell missed is a name not shown for
            5 s; presence is read from the tables, so after a reconnect ``catch_up`` reads
            every watched room again and tells streams what changed meanwhile.

Bells are untrusted (any role that can connect may NOTIFY). A typing bell is believed only
if ``chat_typing`` holds a row for that (room, user) rung within ``TYPING_FRESH_SECONDS``,
and the user is active and may read the room (``chat_room_readable``): one query per batch
for every typing bell of the rooms this process has streams on; the name shown is read from
``auth_user``, not the bell. A forged typing bell can so only repeat a real one. A presence
bell names a room only: who is online is read from the tables and compared with what this
process last told the room's streams, so a forged one costs one read and changes nothing.
Only streams of the room get either: they were checked when they opened and are re-checked
when access changes (chat/gatekeeper.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import psycopg

from . import presence, sse
from .events import Bell
from .fanout import FanOut
from .user_fanout import UserFanOut

logger = logging.getLogger("pgchat.conversation")

TYPING_FRESH_SECONDS = 5.0  # a typing bell older than this in chat_typing is not believed

_TYPING_CHECK = """
    SELECT b.room, u.id, u.username
    FROM unnest(%s::text[], %s::bigint[]) AS b(room, usr)
    JOIN chat_typing t ON t.room_id = b.room AND t.user_id = b.usr
        AND t.rung_at > clock_timestamp() - make_interval(secs => %s)
    JOIN auth_user u ON u.id = b.usr AND u.is_active
    WHERE chat_room_readable(b.room, b.usr)
"""


class ConversationFeeds:
    """Typing and presence for this process's streams; touched only from the event loop."""

    def __init__(self, rooms: FanOut, users: UserFanOut, count: Callable[[str, int], None]) -> None:
        self._rooms, self._users, self._count = rooms, users, count
        # room -> {username: user id} its streams were last told of
        self._online: dict[str, dict[str, int]] = {}

    def watched(self, room: str) -> bool:
        return self._rooms.watches(room) or self._users.watches(room)

    def forget_unwatched(self) -> None:
        """Drop what was told to rooms with no stream here any more (bounded memory; a room
        watched again starts afresh)."""
        self._online = {room: names for room, names in self._online.items() if self.watched(room)}

    async def on_batch(self, conn: psycopg.AsyncConnection[Any], bells: list[Bell]) -> None:
        typing: dict[tuple[str, int], None] = {}
        rooms: dict[str, None] = {}
        for bell in bells:
            if bell.room is None or not self.watched(bell.room):
                continue
            if bell.kind == "typing" and bell.user is not None:
                typing[(bell.room, bell.user)] = None
            elif bell.kind == "presence":
                rooms[bell.room] = None
        if typing:
            await self._typing(conn, list(typing))
        if rooms:
            await self._presence(conn, list(rooms))

    async def catch_up(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """After a reconnect (bells may have been missed): every watched room again; rooms
        no longer watched are forgotten."""
        watched = sorted(set(self._rooms.rooms) | set(self._users.rooms))
        self._online = {room: names for room, names in self._online.items() if room in watched}
        if watched:
            await self._presence(conn, watched)

    async def _typing(
        self, conn: psycopg.AsyncConnection[Any], bells: list[tuple[str, int]]
    ) -> None:
        rooms, users = zip(*bells, strict=True)
        cur = await conn.execute(_TYPING_CHECK, (list(rooms), list(users), TYPING_FRESH_SECONDS))
        believed = await cur.fetchall()
        self._count("typing_refused", len(bells) - len(believed))
        for room, user_id, username in believed:
            self._send(room, sse.ephemeral("typing", {"room": room, "user": username}), user_id)

    async def _presence(self, conn: psycopg.AsyncConnection[Any], rooms: list[str]) -> None:
        self._count("presence_reads", 1)
        now = await presence.online(conn, rooms)
        for room in rooms:
            before = self._online.get(room, {})  # a room new here: everyone is news
            after = now[room]
            self._online[room] = after
            for name, changed in (
                ("presence.left", {u: i for u, i in before.items() if u not in after}),
                ("presence.joined", {u: i for u, i in after.items() if u not in before}),
            ):
                for user, user_id in sorted(changed.items()):
                    data = {"room": room, "user": user}  # a user's own streams are not told
                    self._send(room, sse.ephemeral(name, data), skip_user=user_id)

    def _send(self, room: str, frame: sse.Frame, skip_user: int | None = None) -> None:
        """The frame to the room's streams here, but those of ``skip_user`` (the typist)."""
        sent = 0
        for sub in self._rooms.subscriptions(room):
            if skip_user is not None and sub.member == skip_user:
                continue
            sent += 1
            sub.offer_ephemeral(frame)  # best effort: never ends the stream
        for user_sub in self._users.subscriptions(room=room):
            if skip_user is not None and user_sub.user_id == skip_user:
                continue
            sent += 1
            self._users.offer_ephemeral(user_sub, frame.data)
        self._count("frames", sent)
