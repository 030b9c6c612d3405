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

from .position import Snapshot, token_of
from .subscription import Buffer, Viewer


class TokenBuffer(Buffer[bytes]):
    """A bounded buffer of frames for a stream resumed by snapshot token (``GET /events``,
    ``GET /search/events``): what was given (``delivered``) besides the shared buffer."""

    __slots__ = ("delivered",)

    def __init__(self, delivered: Snapshot, limit: int) -> None:
        super().__init__(limit)
        self.delivered = delivered

    @property
    def token(self) -> str:
        """The resume token of everything given so far."""
        return token_of(self.delivered)

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
