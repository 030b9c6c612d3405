"""Hop 4, HTTP: ``GET /events``, one SSE stream for every room the signed-in user joined.

Upstream:   chat/history.py ``changes_since`` (the replay after the client's token), then
            chat/user_feeds.py via the listener (live batches, the user's own room events).
Downstream: the browser (one connection shared by its tabs), or any SSE client.
On failure: a stream that ends (log-out, server stopping, database gone, buffer overflow)
            loses nothing: the client reconnects with Last-Event-ID, an opaque token
            (chat/position.py), and the replay fills the gap, each transaction whole.

Served beside Django like chat/stream.py (config/asgi.py ``ROUTES``), with the same
plumbing (chat/asgi_http.py). The token goes on the last frame of each batch only, so a
client that resumes never splits a transaction: it gets what comes after, none of it twice.
"""

from __future__ import annotations

import asyncio
import logging

from django.contrib import auth
from django.http import HttpRequest
from django.urls import get_script_prefix

from . import asgi_http, history, position, replica, rooms, sse
from .asgi_http import (
    DATABASE_DOWN,
    END,
    STREAM_HEADERS,
    Receive,
    Refused,
    Scope,
    Send,
    checked_request,
    close_on_disconnect,
    last_event_id,
    send_error,
)
from .listener import get_listener
from .position import Position, Snapshot
from .subscription import Viewer
from .user_feeds import SignedOut, TokenAhead
from .user_subscription import UserSubscription

logger = logging.getLogger("pgchat.user_stream")


def user_events_url() -> str:
    return f"{get_script_prefix()}events"


async def user_events(scope: Scope, receive: Receive, send: Send) -> None:
    """``GET /events``: what the client's token has not seen in the user's rooms, then live."""
    try:
        request = checked_request(scope)
        try:
            since = position.decode(last_event_id(request, scope))
        except position.InvalidPosition as exc:
            raise Refused(400, str(exc)) from None
        try:
            user_id = await rooms.run_and_release(_signed_in, request)
            if user_id is None:
                raise Refused(403, "sign in to open /events")
            viewer = Viewer(user_id, asgi_http.session_key(request))
            sub, target = await get_listener().users.register(viewer, since)
            # After the target snapshot was taken: the replica must hold all it shows.
            fence = await replica.fence() if since is not None else None
        except TokenAhead as exc:
            raise Refused(400, str(exc)) from None
        except SignedOut as exc:
            raise Refused(403, str(exc)) from None
        except DATABASE_DOWN as exc:
            logger.warning("database unavailable opening /events: %r", exc)
            raise Refused(
                503, "the database is unavailable; retry shortly", Retry_After="2"
            ) from None
    except Refused as refusal:
        await send_error(send, refusal)
        return
    await _stream(sub, since, target, fence, receive, send)


def _signed_in(request: HttpRequest) -> int | None:
    """The request's user id, as AuthenticationMiddleware would find it; None: anonymous."""
    return rooms.viewer_id(auth.get_user(request))


async def _stream(
    sub: UserSubscription,
    since: Position | None,
    target: Snapshot,
    fence: replica.Fence | None,
    receive: Receive,
    send: Send,
) -> None:
    client_left = asyncio.create_task(close_on_disconnect(receive, sub))
    try:
        await send({"type": "http.response.start", "status": 200, "headers": STREAM_HEADERS})
        await _write(send, sse.RETRY)
        try:
            await _replay(sub, since, target, fence, send)
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
            logger.warning("a /events stream ended: database unavailable: %r", exc)
        if not client_left.done():
            await send(END)
    finally:
        client_left.cancel()
        get_listener().users.unregister(sub)


async def _replay(
    sub: UserSubscription,
    since: Position | None,
    target: Snapshot,
    fence: replica.Fence | None,
    send: Send,
) -> None:
    """What ``since`` has not seen up to ``target`` (where live batches begin), in pages of
    whole transactions, each page's last frame carrying a token a resume continues from."""
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
                window = await history.changes_since(
                    conn,
                    done,
                    sorted(sub.rooms),
                    target=upto,
                    after=after,
                    limit=history.REPLAY_TRANSACTIONS,
                )
            frames = [
                sse.encode_untagged(event.name, event.message)
                for txn in window.transactions
                for event in txn.events
            ]
            if window.transactions:
                after = window.transactions[-1].top
            token = (
                Position(done, upto, after) if window.has_more else Position(done.union(upto))
            ).encode()
            if frames:
                frames[-1] = sse.tag(frames[-1], token)
                await _write(send, b"".join(frames))
            else:
                await _write(send, sse.position_only(token))
            if not window.has_more:
                break


async def _write(send: Send, body: bytes) -> None:
    await send({"type": "http.response.body", "body": body, "more_body": True})
