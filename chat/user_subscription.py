"""One open ``GET /events`` stream's buffer: the user's rooms, what it was given, its frames.

Upstream:   chat/fanout.py offers each listener batch's frames for the stream's rooms, and
            the user's own ``room.joined`` / ``room.left`` / ``room.read`` events.
Downstream: chat/user_stream.py drains it (``next_frames``) onto the wire.
On failure: a full buffer refuses the batch (the fan-out then closes the stream and the
            client resumes from its last token, read back from the log); a closed one drops
            what it held. Nothing here is the record of anything: the log is.

``delivered`` is a snapshot (chat/position.py): every change of the stream's rooms whose
transaction is visible in it has been given to the stream (sent, buffered, or covered by the
client's own token). A batch's frames skip transactions already visible there, and the
batch's last frame carries ``delivered`` as its ``id:``, so a resume never repeats or skips.
"""

from __future__ import annotations

import asyncio

from .position import Snapshot, token_of
from .subscription import Viewer


class TokenBuffer:
    """A bounded buffer of frames for a stream resumed by snapshot token (``GET /events``,
    ``GET /search/events``): what was given (``delivered``), the frames, the reader's
    wake-up. Touched only from the event loop."""

    __slots__ = (
        "_closed", "_frames", "_heard", "_idle", "_limit", "_waiter", "delivered",
        "fell_behind",
    )  # fmt: skip

    def __init__(self, delivered: Snapshot, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"subscriber buffer limit must be at least 1, got {limit}")
        self.delivered = delivered
        self._frames: list[bytes] = []
        self._limit = limit
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self._heard = False
        self._idle = False
        self.fell_behind = False

    @property
    def token(self) -> str:
        """The resume token of everything given so far."""
        return token_of(self.delivered)

    @property
    def closed(self) -> bool:
        return self._closed

    def offer(self, frames: list[bytes]) -> bool:
        """Buffer a batch (its last frame already tagged); False when the buffer is full."""
        if self._closed or not frames:
            return True
        if len(self._frames) + len(frames) > self._limit:
            return False
        self._frames.extend(frames)
        self._heard = True
        self._wake()
        return True

    def offer_ephemeral(self, frame: bytes) -> None:
        """A frame not in the log (typing, presence), best effort: dropped past half the
        buffer, never ending the stream (see Subscription.offer_ephemeral)."""
        if self._closed or len(self._frames) >= self._limit // 2:
            return
        self._frames.append(frame)
        self._heard = True
        self._wake()

    def heartbeat(self) -> None:
        """As Subscription.heartbeat: a reader that heard nothing since the last tick gets
        an empty batch (and sends a keepalive)."""
        if self._heard:
            self._heard = False
            return
        self._idle = True
        self._wake()

    async def next_frames(self) -> list[bytes] | None:
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
        """Drop what is buffered and wake the reader: the stream ends; the client resumes."""
        self.fell_behind = self.fell_behind or fell_behind
        self._closed = True
        self._frames = []
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


class UserSubscription(TokenBuffer):
    """A user stream's rooms and bounded buffer of frames; touched only from the event loop."""

    __slots__ = ("rooms", "viewer")

    def __init__(self, viewer: Viewer, rooms: set[str], delivered: Snapshot, limit: int) -> None:
        if viewer.user_id is None:
            raise ValueError("a user stream needs a user")
        super().__init__(delivered, limit)
        self.viewer = viewer
        self.rooms = set(rooms)  # the rooms it carries now (joined and readable)

    @property
    def user_id(self) -> int:
        assert self.viewer.user_id is not None  # checked in __init__
        return self.viewer.user_id
