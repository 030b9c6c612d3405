"""Hop 4, the wire side of the streams resumed by a snapshot token (``GET /events``,
``GET /search/events``): replay after the client's token in pages, then the live batches.

Upstream:   a ``ReadPage`` of the endpoint (the log read its way: a user's rooms, or a saved
            search's matches) for the replay; then the stream's TokenBuffer, filled by the
            listener (chat/user_feeds.py, chat/search_feeds.py).
Downstream: the client, as SSE bytes.
On failure: a stream that ends (server stopping, database gone, buffer overflow, client
            away) loses nothing: the client resumes from the last ``id:`` it got, and the
            replay fills the gap. The ``unregister`` callback runs whatever ended it.

One copy of this loop for both endpoints: what differs is only which log entries a page
holds, so that is the one thing each passes in.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple, TypeVar

import psycopg

from . import asgi_http, replica, sse
from .asgi_http import (
    DATABASE_DOWN,
    END,
    STREAM_HEADERS,
    Receive,
    Refused,
    Send,
    close_on_disconnect,
    send_error,
)
from .position import Position, Snapshot
from .user_feeds import TokenAhead
from .user_subscription import TokenBuffer

logger = logging.getLogger("pgchat.token_stream")


class Page(NamedTuple):
    """One page of a replay: its frames (untagged), where the next page starts, and whether
    there is one."""

    frames: list[bytes]
    after: int  # the cursor a partial Position continues after (unchanged if no frames)
    has_more: bool


# (connection, done, upto, after) -> the next page of what ``upto`` adds to ``done``.
ReadPage = Callable[[psycopg.AsyncConnection[Any], Snapshot, Snapshot, int], Awaitable[Page]]


Sub = TypeVar("Sub", bound=TokenBuffer)


async def open_and_serve(
    what: str,
    since: Position | None,
    register: Callable[[], Awaitable[tuple[Sub, Snapshot]]],
    read_page: Callable[[Sub], ReadPage],
    unregister: Callable[[Sub], None],
    receive: Receive,
    send: Send,
) -> None:
    """Open a token stream and serve it, or refuse it with the API's JSON error.

    ``register`` runs the endpoint's own checks (raising Refused) and registers the stream
    with the listener, returning it and the snapshot its replay must reach. The refusals
    both endpoints share are here: a token ahead of the database (400) and a database that
    cannot serve the open (503, ``what`` names it in the log); a stream registered before a
    refusal is unregistered again."""
    sub: Sub | None = None
    try:
        try:
            sub, target = await register()
            # After the target snapshot was taken: the replica must hold all it shows.
            fence = await replica.fence() if since is not None else None
        except TokenAhead as exc:
            raise Refused(400, str(exc)) from None
        except DATABASE_DOWN as exc:
            raise asgi_http.unavailable(what, exc) from None
    except BaseException as exc:
        if sub is not None:
            unregister(sub)
        if isinstance(exc, Refused):
            await send_error(send, exc)
            return
        raise
    opened = sub
    await serve(
        opened, since, target, fence, read_page(opened), lambda: unregister(opened), receive, send
    )


async def serve(
    sub: TokenBuffer,
    since: Position | None,
    target: Snapshot,
    fence: replica.Fence | None,
    read_page: ReadPage,
    unregister: Callable[[], None],
    receive: Receive,
    send: Send,
) -> None:
    """The stream's whole life: headers, replay from ``since`` up to ``target`` (where the
    listener's live batches for ``sub`` begin), then live, until the client or the server
    ends it."""
    client_left = asyncio.create_task(close_on_disconnect(receive, sub))
    try:
        await send({"type": "http.response.start", "status": 200, "headers": STREAM_HEADERS})
        await _write(send, sse.RETRY)
        try:
            await _replay(sub, since, target, fence, read_page, send)
            sent = ""  # the token the client has from an idle block
            while (frames := await sub.next_frames()) is not None:
                if frames:
                    await _write(send, b"".join(frames))
                    continue
                # Idle, everything offered written: move the client's position along with
                # the listener's, so a resume after a quiet hour reads an hour less log.
                token = sub.token
                await _write(
                    send, sse.KEEPALIVE + (sse.position_only(token) if token != sent else b"")
                )
                sent = token
        except DATABASE_DOWN as exc:  # a replay page could not be read
            logger.warning("a stream ended: database unavailable: %r", exc)
        if not client_left.done():
            await send(END)
    finally:
        client_left.cancel()
        unregister()


async def _replay(
    sub: TokenBuffer,
    since: Position | None,
    target: Snapshot,
    fence: replica.Fence | None,
    read_page: ReadPage,
    send: Send,
) -> None:
    """What ``since`` has not seen up to ``target``, in pages, each page's last frame
    carrying a token a resume continues from; read from the replica when it holds
    everything up to ``fence`` (chat/replica.py), else from the primary."""
    if since is None:
        await _write(send, sse.position_only(Position(target).encode()))
        return
    phases = []
    if since.target is not None:  # a replay cut short: first its rest
        phases.append((since.done, since.target, since.after))
    phases.append((since.whole, target, 0))
    for done, upto, after in phases:
        while not sub.closed:
            async with replica.reading(fence) as conn:
                page = await read_page(conn, done, upto, after)
            after = page.after
            token = (
                Position(done, upto, after) if page.has_more else Position(done.union(upto))
            ).encode()
            if page.frames:
                frames = list(page.frames)
                frames[-1] = sse.tag(frames[-1], token)
                await _write(send, b"".join(frames))
            else:
                await _write(send, sse.position_only(token))
            if not page.has_more:
                break


async def _write(send: Send, body: bytes) -> None:
    await send({"type": "http.response.body", "body": body, "more_body": True})
