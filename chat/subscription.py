"""One open stream's buffer in the fan-out, and who holds it.

Upstream:   chat/listener.py offers each frame of the stream's room (``offer``).
Downstream: chat/feed.py drains it (``next_frames``) for the SSE view or ``chat tail``.
On failure: a full buffer refuses the frame (the listener then drops the subscription, and
            the feed reads what it missed from the log); a closed one drops what it held.
            Nothing here is the record of anything: the log in PostgreSQL is.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import ClassVar

from .sse import Frame


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who holds a stream: what the listener needs to re-check its access when access changes
    (a member removed, a room made private or deleted, a session logged out)."""

    user_id: int | None  # None: anonymous
    session_key: str | None  # the session that opened the stream; None: anonymous or a tool

    ANONYMOUS: ClassVar[Viewer]


Viewer.ANONYMOUS = Viewer(None, None)


class Subscription:
    """One open stream's bounded buffer of frames, filled by the listener, drained by a view.

    Not an asyncio.Queue: the view takes everything buffered in one call and writes it in one
    chunk, and the hot path (``offer``) is a comparison and an append.
    """

    __slots__ = (
        "_closed", "_frames", "_heard", "_idle", "_limit", "_waiter", "fell_behind", "member",
        "room", "seq", "viewer",
    )  # fmt: skip

    def __init__(
        self,
        room: str,
        seq: int,
        limit: int,
        viewer: Viewer = Viewer.ANONYMOUS,
        member: int | None = None,
    ) -> None:
        if limit < 1:
            raise ValueError(f"subscriber buffer limit must be at least 1, got {limit}")
        self.room = room
        self.viewer = viewer  # whose access the listener re-checks when access changes
        # The signed-in user holding the stream, for presence and typing only (None:
        # anonymous). Never used for access: the gatekeeper resolves the session itself, so
        # a log-out or a password change is seen (chat/gatekeeper.py).
        self.member = member
        self.seq = seq  # the highest cursor this stream has been given (buffered or replayed)
        self._frames: list[Frame] = []  # a list, not a deque: an empty deque costs 760 B
        self._limit = limit
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self._heard = False  # a frame came since the last heartbeat tick
        self._idle = False  # the last tick found it quiet: the reader sends a keepalive
        self.fell_behind = False  # closed because its buffer overflowed, not by a shutdown

    def offer(self, frame: Frame) -> bool:
        """Buffer a frame unless already given; False when the buffer is full."""
        if frame.seq <= self.seq or self._closed:
            return True
        if len(self._frames) >= self._limit:
            return False
        self._frames.append(frame)
        self.seq = frame.seq
        self._heard = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        return True

    def offer_ephemeral(self, frame: Frame) -> bool:
        """Buffer a frame that is not in the log (typing, presence): it moves no cursor.

        Best effort, so always True: past half the buffer the frame is dropped, never the
        stream. An open storm (every member of a room arriving at once) makes presence
        frames by the hundred thousand, and ending streams over them would lose what
        matters (messages come from the log, presence from GET /presence on load)."""
        if self._closed or len(self._frames) >= self._limit // 2:
            return True
        self._frames.append(frame)
        self._heard = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        return True

    def advance(self, seq: int) -> None:
        """Note that the stream replayed up to ``seq`` from the table itself."""
        self.seq = max(self.seq, seq)

    def heartbeat(self) -> None:
        """The listener's periodic tick: a reader that heard nothing since the previous
        tick is woken with an empty batch (and sends a keepalive). One timer for all
        streams, instead of a timeout per stream per wait."""
        if self._heard:
            self._heard = False
            return
        self._idle = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def next_frames(self) -> list[Frame] | None:
        """Everything buffered, waiting for at least one frame; [] when idle for a
        heartbeat; None once closed."""
        while not self._frames:
            if self._closed:
                return None
            if self._idle:
                self._idle = False
                return []
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        frames, self._frames = self._frames, []
        return frames

    def close(self, *, fell_behind: bool = False) -> None:
        """Drop what is buffered and wake the view: it ends the stream, or if the stream
        fell behind, reads what it missed from the table and subscribes again."""
        self.fell_behind = self.fell_behind or fell_behind
        self._closed = True
        self._frames = []
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
