"""Hop 3 for ``GET /events``: every open user stream of this process, by room and by user.

Upstream:   chat/user_feeds.py, which reads the log by snapshot once per batch of bells for
            every room a user stream carries (``publish_window``), and settles each stream's
            rooms (``add_room`` / ``remove_room``) and users' notices (``notify_user``);
            chat/conversation_feeds.py (typing and presence, ``offer_ephemeral``).
Downstream: one UserSubscription per open stream (chat/user_subscription.py), drained by
            chat/user_stream.py.
On failure: a stream whose buffer is full is dropped at once (memory stays bounded) and its
            client resumes from its last token; nothing here is a record of anything.

Each change is framed once and the same bytes are offered to every stream of its room
(chat/fanout.py does the same for room streams).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from . import metrics, sse
from .log_by_snapshot import Window
from .position import Snapshot
from .presence import Presence
from .subscription import Viewer
from .user_subscription import UserSubscription

logger = logging.getLogger("pgchat.fanout")


class UserFanOut:
    """Every open ``/events`` stream of this process, by room and by user; the listener's
    batches become one frame per change, shared by every stream of its room."""

    def __init__(
        self,
        queue_size: int,
        count: Callable[[str, int], None],
        presence: Presence | None = None,
    ) -> None:
        self.queue_size = queue_size
        self._count = count
        self._presence = presence  # a user is present in each room their stream carries
        self._by_room: dict[str, set[UserSubscription]] = {}
        self._by_user: dict[int, set[UserSubscription]] = {}

    def subscribe_user(
        self, viewer: Viewer, rooms: set[str], delivered: Snapshot
    ) -> UserSubscription:
        sub = UserSubscription(viewer, rooms, delivered, self.queue_size)
        self._by_user.setdefault(sub.user_id, set()).add(sub)
        metrics.USER_STREAMS.inc()
        for room in rooms:
            self._by_room.setdefault(room, set()).add(sub)
            if self._presence is not None:
                self._presence.enter(room, sub.user_id)
        return sub

    def unsubscribe_user(self, sub: UserSubscription, *, fell_behind: bool = False) -> None:
        """Close and forget a user stream; idempotent."""
        sub.close(fell_behind=fell_behind)
        for room in list(sub.rooms):
            self._forget(sub, room)
        subs = self._by_user.get(sub.user_id)
        if subs is not None and sub in subs:
            subs.remove(sub)
            metrics.USER_STREAMS.dec()
            if not subs:
                del self._by_user[sub.user_id]
            if self._presence is not None:  # once: the stream was still registered
                for room in sub.rooms:
                    self._presence.leave(room, sub.user_id)

    def add_room(self, sub: UserSubscription, room: str) -> None:
        if room not in sub.rooms and self._presence is not None:
            self._presence.enter(room, sub.user_id)
        sub.rooms.add(room)
        self._by_room.setdefault(room, set()).add(sub)

    def remove_room(self, sub: UserSubscription, room: str) -> None:
        """The stream stops carrying the room at once: nothing later of it is offered."""
        if room in sub.rooms and self._presence is not None:
            self._presence.leave(room, sub.user_id)
        sub.rooms.discard(room)
        self._forget(sub, room)

    def _forget(self, sub: UserSubscription, room: str) -> None:
        subs = self._by_room.get(room)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._by_room[room]

    @property
    def rooms(self) -> list[str]:
        return sorted(self._by_room)

    def watches(self, room: str) -> bool:
        return room in self._by_room

    def subscriptions(
        self, *, user: int | None = None, room: str | None = None
    ) -> list[UserSubscription]:
        if user is not None:
            return list(self._by_user.get(user, ()))
        if room is not None:
            return list(self._by_room.get(room, ()))
        return [sub for subs in self._by_user.values() for sub in subs]

    @property
    def count(self) -> int:
        return sum(len(subs) for subs in self._by_user.values())

    def heartbeat(self) -> None:
        for subs in self._by_user.values():
            for sub in subs:
                sub.heartbeat()

    def close_all(self) -> None:
        for sub in self.subscriptions():
            sub.close()
        metrics.USER_STREAMS.dec(self.count)
        self._by_room.clear()
        self._by_user.clear()

    def publish_window(self, window: Window, previous: Snapshot) -> None:
        """A log read's transactions (everything ``window.target`` adds to ``previous``), to
        the streams of their rooms that lack them; then every stream has everything visible
        in ``window.target``: the token on its batch."""
        batches: dict[UserSubscription, list[bytes]] = {}
        for txn in window.transactions:
            for event in txn.events:
                subs = self._by_room.get(event.room)
                if not subs:
                    continue
                frame = sse.encode_untagged(event.name, event.message)
                self._count("events", 1)
                for sub in subs:
                    # At ``previous`` (most streams): lacks it by construction. Otherwise its
                    # client's token may already hold it (a resume from another worker).
                    if sub.delivered is previous or not sub.delivered.visible(txn.txid):
                        batches.setdefault(sub, []).append(frame)
        for subs in self._by_user.values():
            for sub in subs:  # the same object for most: the tokens are encoded once
                at = sub.delivered
                sub.delivered = window.target if at is previous else at.union(window.target)
        for sub, frames in batches.items():
            self.offer(sub, frames)

    def notify_user(self, user: int, name: str, data: dict[str, Any]) -> None:
        """One of the user's own events (``room.joined``, ...) to each of their streams."""
        frame = sse.encode_untagged(name, data)
        for sub in self.subscriptions(user=user):
            self.offer(sub, [frame])

    def offer_ephemeral(self, sub: UserSubscription, frame: bytes) -> None:
        """A frame that is not in the log (typing, presence): no token, so it moves no
        client's Last-Event-ID; best effort (UserSubscription.offer_ephemeral)."""
        sub.offer_ephemeral(frame)

    def offer(self, sub: UserSubscription, frames: list[bytes]) -> None:
        """A batch with the stream's token on its last frame; a full buffer ends the stream."""
        frames[-1] = sse.tag(frames[-1], sub.token)
        self._count("frames", len(frames))
        if not sub.offer(frames):
            self.unsubscribe_user(sub, fell_behind=True)
            self._count("slow_drops", 1)
            logger.info("dropped a slow /events subscriber (buffer full)")
