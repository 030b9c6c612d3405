"""Hop 4, HTTP: the SSE event stream of a room, a small ASGI endpoint beside Django.

Upstream:   chat/feed.py (what the client missed from the log, then the listener's frames).
Downstream: the browser's EventSource (chat/static/chat/room-stream.js), or any SSE client.
On failure: a stream that ends (server stopping, database gone mid-replay, error) loses
            nothing: the browser reconnects with Last-Event-ID and the replay fills the gap.

config/asgi.py routes ``GET /rooms/<slug>/events`` here, not to Django: opens come in storms
(every client of a restarted server reconnects at once), and Django's request cycle, for a
response it never touches after the headers, cost 4.4x the hypercorn floor's open time and
1.6x its memory per stream (README, "Benchmark"). What that cycle did for this URL is done
here with Django's public APIs (chat/asgi_http.py, shared with /events): the Host check
(``HttpRequest.get_host`` against ALLOWED_HOSTS), the session (SESSION_ENGINE's
``SessionStore``) and the user (``auth.get_user``, lazily: only a private room's check
reads them, in a thread). Django's middleware never sees the stream, so none can buffer or
rewrite its body (GZipMiddleware would compress it in blocks: no event would arrive until a
block filled).

Views never LISTEN and never NOTIFY.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import cast

from asgiref.sync import ThreadSensitiveContext
from django.contrib import auth
from django.urls import get_script_prefix
from django.utils.functional import SimpleLazyObject

from . import asgi_http, rooms, sse
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
from .feed import CursorAhead, Feed
from .listener import get_listener
from .sse import Frame
from .subscription import Viewer

logger = logging.getLogger("pgchat.stream")


def room_events_url(slug: str) -> str:
    """Where a room's stream is served (routed by config/asgi.py, not by Django's urlconf)."""
    return f"{get_script_prefix()}rooms/{slug}/events"


async def room_events(scope: Scope, receive: Receive, send: Send, *, slug: str) -> None:
    """``GET /rooms/<slug>/events``: the room's changes after the client's cursor, then live."""
    try:
        feed = await _open_feed(scope, slug)
    except Refused as refusal:
        await send_error(send, refusal)
        return
    await _stream(feed, receive, send)


async def _open_feed(scope: Scope, slug: str) -> Feed:
    """Check everything, then subscribe; raises Refused. Nothing of the request outlives this
    call (an open stream holds its feed, not a request object)."""
    request = checked_request(scope)
    session_key = asgi_http.session_key(request)
    # Lazy, as AuthenticationMiddleware makes it: a public room's check never reads the
    # session. The proxy stands in for the user it will load, hence the cast.
    user = cast(rooms.AnyUser, SimpleLazyObject(lambda: auth.get_user(request)))
    try:
        since = sse.parse_cursor(last_event_id(request, scope))
        # No pooled connection is taken up front: in a storm most opens read nothing
        # (Feed.open, Gatekeeper.admit), and each read takes one when it needs it. A
        # private room's check runs the ORM rule, which reads the session and the user:
        # in a thread of this open's own.
        async with ThreadSensitiveContext():
            # Who holds the stream, for presence and typing (issue 13): a signed-in
            # visitor's session is read here, once (a private room's check reuses it).
            member = (
                await rooms.run_and_release(rooms.viewer_id, user)
                if session_key is not None
                else None
            )
            # Subscribed before the response's headers go out: a client that sees the 200
            # and then writes must receive its own write ("from now" means now). The access
            # check runs once subscribed, before any read (Feed.open).
            listener = get_listener()
            return await Feed.open(
                listener,
                slug,
                since,
                Viewer(None, session_key),
                member,
                authorize=lambda replays: listener.gatekeeper.admit(
                    user, slug, remembered=not replays
                ),
            )
    except rooms.RoomNotFound as exc:
        raise Refused(404, str(exc)) from None
    except rooms.NotAllowed as exc:
        raise Refused(403, str(exc)) from None
    except (sse.InvalidCursor, CursorAhead) as exc:
        raise Refused(400, str(exc)) from None
    except DATABASE_DOWN as exc:
        raise asgi_http.unavailable(f"a stream of {slug!r}", exc) from None


async def _stream(feed: Feed, receive: Receive, send: Send) -> None:
    """The 200, then the feed as SSE, until the client leaves or the feed ends."""
    client_left = asyncio.create_task(close_on_disconnect(receive, feed))
    try:
        await send({"type": "http.response.start", "status": 200, "headers": STREAM_HEADERS})
        await send({"type": "http.response.body", "body": sse.RETRY, "more_body": True})
        try:
            async with contextlib.aclosing(feed.batches()) as batches:
                async for batch in batches:
                    body = _body(batch)
                    await send({"type": "http.response.body", "body": body, "more_body": True})
        except DATABASE_DOWN as exc:  # a replay page could not be read
            logger.warning("stream of %r ended: database unavailable: %r", feed.room, exc)
        if not client_left.done():  # the server is stopping, or the database went away
            await send(END)
    finally:
        client_left.cancel()  # a cancelled task is not an error: nothing is logged
        feed.close()


def _body(batch: list[Frame] | None) -> bytes:
    if batch is None:  # the listener's heartbeat found the feed idle
        return sse.KEEPALIVE
    if len(batch) == 1:
        return batch[0].data  # the shared bytes, as they are
    return b"".join(frame.data for frame in batch)  # one write for the batch
