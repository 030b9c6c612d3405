"""Hop 3: the in-process fan-out: room -> the open streams' buffers, each frame made once.

Upstream:   chat/relay.py publishes the events it read from the log (``publish``).
Downstream: one Subscription per open stream (chat/subscription.py), drained by chat/feed.py;
            one UserSubscription per open ``/events`` stream (``UserFanOut``).
On failure: a stream whose buffer is full is dropped from the fan-out at once (memory stays
            bounded) and its feed catches up from the log; nothing here is a record of
            anything, so a process that dies loses only buffers the log still holds.

Ordering: PostgreSQL delivers notifications in commit order and the trigger numbers a room's
changes in commit order, so each room's events reach a Subscription with rising ``seq``. A
Subscription remembers the highest ``seq`` it was given and ignores anything at or below it,
which makes the seams (catch-up vs. live, replay vs. live) free of duplicates.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from . import metrics, sse
from .events import ChatEvent
from .log_by_snapshot import Window
from .position import Snapshot
from .presence import Presence
from .subscription import Subscription, Viewer
from .user_subscription import UserSubscription

logger = logging.getLogger("pgchat.fanout")


class FanOut:
    """Every open stream of this process, by room; touched only from the event loop."""

    def __init__(
        self,
        queue_size: int,
        count: Callable[[str, int], None],
        presence: Presence | None = None,
    ) -> None:
        if queue_size < 1:
            raise ValueError(f"queue_size must be at least 1, got {queue_size}")
        self.queue_size = queue_size
        self._count = count  # the listener's counters (/healthz and /metrics)
        self._presence = presence  # told of each signed-in stream's open and close
        self._rooms: dict[str, set[Subscription]] = {}  # room slug -> its open streams
        self._published: dict[str, int] = {}  # room slug -> highest seq published

    def subscribe(
        self, room: str, seq: int, viewer: Viewer = Viewer.ANONYMOUS, member: int | None = None
    ) -> Subscription:
        """A buffer for a new stream, held by ``viewer`` (signed in as ``member``, for
        presence), given everything up to ``seq``."""
        sub = Subscription(room, seq, self.queue_size, viewer, member)
        self._rooms.setdefault(room, set()).add(sub)
        metrics.SUBSCRIBERS.labels(room).inc()
        if member is not None and self._presence is not None:
            self._presence.enter(room, member)
        return sub

    def unsubscribe(self, sub: Subscription, *, fell_behind: bool = False) -> None:
        """Close and forget a subscription; idempotent (it may have been dropped)."""
        sub.close(fell_behind=fell_behind)
        subs = self._rooms.get(sub.room)
        if subs is not None and sub in subs:
            subs.remove(sub)
            metrics.SUBSCRIBERS.labels(sub.room).dec()
            if sub.member is not None and self._presence is not None:
                self._presence.leave(sub.room, sub.member)
            if not subs:
                del self._rooms[sub.room]
                self._published.pop(sub.room, None)

    def close_all(self) -> None:
        """The server is stopping: every stream ends; browsers reconnect elsewhere."""
        for room, subs in self._rooms.items():
            for sub in subs:
                sub.close()
            metrics.SUBSCRIBERS.labels(room).dec(len(subs))
        self._rooms.clear()
        self._published.clear()

    def heartbeat(self) -> None:
        for subs in self._rooms.values():
            for sub in subs:
                sub.heartbeat()

    @property
    def rooms(self) -> list[str]:
        return list(self._rooms)

    def watches(self, room: str) -> bool:
        """Whether any stream of this process carries the room (no copy of anything)."""
        return room in self._rooms

    def subscriptions(self, room: str | None = None) -> list[Subscription]:
        """The open streams of one room, or of every room."""
        if room is not None:
            return list(self._rooms.get(room, ()))
        return [sub for subs in self._rooms.values() for sub in subs]

    def wants(self, room: str, seq_hint: int | None) -> bool:
        """Whether a bell for ``room`` may point past what its streams were given."""
        if room not in self._rooms:
            return False
        return seq_hint is None or seq_hint > self._published.get(room, 0)

    def positions(self, rooms: list[str]) -> dict[str, int]:
        """Where to read each room's log from: everything at or below was offered to the
        room's current streams or is covered by their own replay."""
        return {
            room: max(min(sub.seq for sub in subs), self._published.get(room, 0))
            for room in rooms
            if (subs := self._rooms.get(room))
        }

    @property
    def subscriber_count(self) -> int:
        return sum(len(subs) for subs in self._rooms.values())

    def subscribers_by_room(self) -> dict[str, int]:
        return {room: len(subs) for room, subs in self._rooms.items()}

    def publish(self, event: ChatEvent) -> None:
        """Frame once; offer the same bytes to every subscriber of the room."""
        subs = self._rooms.get(event.room)
        if not subs or event.seq <= self._published.get(event.room, 0):
            return
        self._count("events", 1)
        self._published[event.room] = event.seq
        frame = sse.encode(event)
        self._count("frames", len(subs))
        # No copy of the set per event: the (rare) full buffers are collected, then dropped.
        full = [sub for sub in subs if not sub.offer(frame)]
        for sub in full:  # a stuck client must not stall the only listener: its buffer is
            self.unsubscribe(sub, fell_behind=True)  # freed now, and the feed catches up
            self._count("slow_drops", 1)  # from the table when it can write again
            logger.info("dropped a slow subscriber of %r (buffer full)", event.room)


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
