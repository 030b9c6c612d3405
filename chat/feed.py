"""Hop 3 to 4: one client's feed of a room: what it missed (from the log), then live frames.

Upstream:   chat/listener.py (a Subscription per feed) and chat/history.py (the log).
Downstream: chat/stream.py frames it as SSE; ``manage.py chat tail`` prints it.
On failure: nothing is lost. A feed that falls behind (its buffer overflowed) is dropped from
            the fan-out at once, so memory stays bounded, and catches up from the log when
            its consumer comes back; a feed whose server stops simply ends, and the client
            resumes elsewhere from its cursor.

The order is what makes the seams safe: subscribe first, then read the log; every frame at
or below the cursor already given is dropped, so nothing is missed or repeated.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable

from . import db, history, replica, rooms
from .listener import Listener
from .sse import EPHEMERAL, Frame, encode
from .subscription import Subscription, Viewer


class CursorAhead(ValueError):
    """A resume cursor beyond the room's latest change (a reset room, or a made-up id)."""


class Feed:
    """Open with ``await Feed.open(...)`` (it validates the cursor), then iterate ``batches``."""

    _page: history.Page | None  # the first page of the log, until _replay takes it

    def __init__(
        self,
        listener: Listener,
        sub: Subscription,
        first: history.Page | None,
        since: int,
        fence: replica.Fence | None = None,
        *,
        reader: history.Reader | None = None,
        member: int | None = None,
    ):
        self._listener, self._sub, self._page, self.cursor = listener, sub, first, since
        # Who the read rule is asked about with every page of a replay (None: not asked,
        # for the operator's CLI), and who holds the stream (presence), for a resubscribe.
        self._reader, self._member = reader, member
        # Where the primary stood when ``sub`` subscribed: the replica must have replayed
        # that far before it may answer this feed's replay (chat/replica.py).
        self._fence = fence
        self._closed = False  # by its consumer: a feed that fell behind must not resubscribe

    @classmethod
    async def open(
        cls,
        listener: Listener,
        room: str,
        since: int | None,
        viewer: Viewer = Viewer.ANONYMOUS,
        member: int | None = None,
        *,
        authorize: Callable[[bool], Awaitable[object]] | None = None,
    ) -> Feed:
        """Subscribe, then read the first page of the log after ``since`` (with a replica:
        check the cursor here, and let ``batches`` read the replay from the replica).

        ``since=None`` means "from now": the room's current cursor, with nothing to replay.
        ``member``: the signed-in user holding the stream (presence), None if anonymous.
        ``authorize(replays)``: the access check, awaited once subscribed and before
        anything is read; it raises to refuse. ``replays`` says whether the open goes on to
        read messages of the log (a check may answer from memory only when not). In that
        order an access change can't fall between the check and the subscription: one
        committed before the check is what the check reads; the bell of one committed after
        it finds the stream subscribed and re-checks it (chat/gatekeeper.py). And every
        page a replay reads asks the rule again in its own snapshot, so no message written
        after an access change is read for a viewer it shut out. Nothing of a refused room
        is read, so a refusal tells nothing of its log (not even whether a cursor is ahead
        of it).
        Raises CursorAhead for a cursor the room has not reached.

        A room this process already carries needs no read at all for an open "from now" or
        from exactly where its streams stand (``FanOut.handled``): in a reconnect storm,
        every client that was up to date resumes there.
        """
        handled = listener.fanout.handled(room)
        start = handled if handled is not None and since in (None, handled) else None
        # Every page of a replay asks the rule again, in its own snapshot: the check above
        # may have read before an access change, and a page after it (chat/history.py).
        reader = None if authorize is None else history.Reader(member)
        sub = listener.subscribe(room, since or 0 if start is None else start, viewer)
        try:
            if authorize is not None:
                await authorize(start is None and since is not None)
            listener.fanout.attend(sub, member)  # present once allowed in
            if start is not None:  # nothing to read (FanOut.handled)
                page = history.Page(start, [], False, start)
                return cls(listener, sub, page, start, reader=reader, member=member)
            async with db.connection() as conn:
                if since is None:  # one index probe, not a page of history to discard
                    # On the primary: "from now" is the primary's now.
                    cursor = await history.current_cursor(conn, room)
                    sub.advance(cursor)
                    listener.fanout.note_cursor(sub, cursor)
                    page = history.Page(cursor, [], False)
                    return cls(listener, sub, page, cursor, reader=reader, member=member)
                fence = await replica.fence()  # after subscribing: see chat/replica.py
                if fence is None:  # no replica: the first page now, on this connection
                    first = await history.changes_after(conn, room, since, reader=reader)
                    if not first.allowed:  # access changed since the check: refused
                        raise rooms.RoomNotFound(f"no room {room!r}")
                    cursor = first.cursor
                else:  # the cursor checked here (one index probe); the replay reads the
                    # replica from ``batches``, after the open has let this connection go:
                    # waiting for a lagging replica must not hold a primary connection.
                    first, cursor = None, await history.current_cursor(conn, room)
                listener.fanout.note_cursor(sub, cursor)
            if since > cursor:
                raise CursorAhead(f"cursor {since} is ahead of room {room!r} (at {cursor})")
        except BaseException:
            listener.unsubscribe(sub)
            raise
        return cls(listener, sub, first, since, fence, reader=reader, member=member)

    async def batches(self) -> AsyncGenerator[list[Frame] | None, None]:
        """Frames in cursor order, several at a time; None when the listener's heartbeat
        found the feed idle (the SSE view sends a keepalive then). Ends when the server
        stops."""
        try:
            while True:
                async for batch in self._replay():
                    yield batch
                # Live, inlined rather than a nested generator: this loop runs once per
                # event per subscriber, the hottest path after the fan-out itself.
                while (frames := await self._sub.next_frames()) is not None:
                    if not frames:  # idle for a heartbeat
                        yield None
                    elif frames[0].seq > self.cursor < frames[-1].seq:  # the usual case: all
                        self.cursor = frames[-1].seq  # new, none ephemeral at either end
                        yield frames
                    else:  # some already given, or ephemeral frames (typing, presence)
                        fresh = [f for f in frames if f.seq > self.cursor or f.seq == EPHEMERAL]
                        self.cursor = max([self.cursor, *(f.seq for f in fresh)])
                        if fresh:
                            yield fresh
                if self._closed or not self._sub.fell_behind:
                    return
                # Dropped as slow: subscribe again first, then read what we missed (each
                # page asks the rule: an access bell rung meanwhile found no subscription).
                self._sub = self._listener.subscribe(
                    self._sub.room, self.cursor, self._sub.viewer, self._member
                )
                self._fence = await replica.fence()  # a new subscription, a new fence
        finally:
            self.close()

    @property
    def room(self) -> str:
        return self._sub.room

    def close(self) -> None:
        """Leave the fan-out and end ``batches`` (idempotent); the stream calls it when the
        client goes away."""
        self._closed = True
        self._listener.unsubscribe(self._sub)

    async def _replay(self) -> AsyncIterator[list[Frame]]:
        page = self._page
        self._page = None
        while True:
            if page is None:
                async with replica.reading(self._fence) as conn:
                    page = await history.changes_after(
                        conn, self._sub.room, self.cursor, reader=self._reader
                    )
            if not page.allowed:  # the viewer lost access: the stream ends here
                self.close()
                return
            if page.rows:
                yield [encode(event) for event in page.rows]
            self.cursor = max(self.cursor, page.last_seq)
            self._sub.advance(self.cursor)
            if not page.has_more:
                return
            page = None
