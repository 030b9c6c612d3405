"""Hop 3: the in-process fan-out: room -> the open streams' buffers, each frame made once.

Upstream:   chat/relay.py publishes the events it read from the log (``publish``).
Downstream: one Subscription per open stream (chat/subscription.py), drained by chat/feed.py.
            (The ``/events`` streams have their own: chat/user_fanout.py.)
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

from . import metrics, sse
from .events import ChatEvent
from .presence import Presence
from .subscription import Subscription, Viewer

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
        # room slug -> the highest cursor an open read while one of its streams was here;
        # with _published, what a later open of the room may start from (``handled``).
        self._cursors: dict[str, int] = {}

    def subscribe(
        self, room: str, seq: int, viewer: Viewer = Viewer.ANONYMOUS, member: int | None = None
    ) -> Subscription:
        """A buffer for a new stream, held by ``viewer`` (signed in as ``member``, for
        presence), given everything up to ``seq``."""
        sub = Subscription(room, seq, self.queue_size, viewer)
        self._rooms.setdefault(room, set()).add(sub)
        metrics.SUBSCRIBERS.labels(room).inc()
        self.attend(sub, member)
        return sub

    def attend(self, sub: Subscription, member: int | None) -> None:
        """``member`` holds ``sub``: present in its room (an open does this once its access
        check has passed, so a refused one is never seen there)."""
        if member is None or sub.member is not None or sub not in self._rooms.get(sub.room, ()):
            return
        sub.member = member
        if self._presence is not None:
            self._presence.enter(sub.room, member)

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
                self._cursors.pop(sub.room, None)

    def close_all(self) -> None:
        """The server is stopping: every stream ends; browsers reconnect elsewhere."""
        for room, subs in self._rooms.items():
            for sub in subs:
                sub.close()
            metrics.SUBSCRIBERS.labels(room).dec(len(subs))
        self._rooms.clear()
        self._published.clear()
        self._cursors.clear()

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

    def note_cursor(self, sub: Subscription, cursor: int) -> None:
        """``sub``'s open read the room's cursor after subscribing: kept for ``handled`` if
        ``sub`` is still here (so the room has been watched since before that read)."""
        if sub in self._rooms.get(sub.room, ()):
            self._cursors[sub.room] = max(self._cursors.get(sub.room, 0), cursor)

    def handled(self, room: str) -> int | None:
        """A position of the room from which a new stream needs no read of the log, or None.

        Everything at or below it was committed before now; everything above it reaches
        every stream of the room from the listener. It is the highest seq published here,
        or the highest cursor an open read after subscribing, and it is only known while
        the room has stayed watched since (a room left by its last stream forgets it): any
        change committed after such a read rang a bell that found the room watched.
        """
        if room not in self._rooms:
            return None
        marks = [m for m in (self._published.get(room), self._cursors.get(room)) if m is not None]
        return max(marks) if marks else None

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
