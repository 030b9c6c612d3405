"""Hop 4, HTTP: the SSE event stream of a room.

Upstream:   chat/feed.py (what the client missed from the log, then the listener's frames).
Downstream: the browser's EventSource (chat/static/chat/chat.js), or any SSE client.
On failure: a stream that ends (server stopping, error) loses nothing: the browser
            reconnects with Last-Event-ID and the replay fills the gap.

Views never LISTEN and never NOTIFY.
"""

from __future__ import annotations

import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any, cast

from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, HttpResponseBase, StreamingHttpResponse

from . import rooms, sse
from .feed import CursorAhead, Feed
from .jsonapi import dispatch, error
from .listener import get_listener
from .sse import Frame
from .subscription import Viewer

Send = Callable[[dict[str, Any]], Awaitable[None]]
# The scope key under which config.asgi hands the ASGI server's own ``send`` to views
ASGI_SEND = "pgchat.send"


async def room_events(request: HttpRequest, slug: str) -> HttpResponseBase:
    return await dispatch(request, {"GET": _open_stream}, slug)


async def _open_stream(request: HttpRequest, slug: str) -> HttpResponseBase:
    room = await rooms.readable_room_slug(request.user, slug)  # 404/403 first
    try:
        # The header is newer than the query: the browser sends it on each reconnect, while
        # the URL keeps the cursor the page was rendered with.
        since = sse.parse_cursor(
            request.headers.get("Last-Event-ID") or request.GET.get("last_event_id")
        )
        # Subscribed before the response's headers go out: a client that sees the 200 and
        # then writes must receive its own write ("from now" means now).
        # The session that opened the stream: the listener re-checks its access later.
        viewer = Viewer(None, request.COOKIES.get(settings.SESSION_COOKIE_NAME) or None)
        feed = await Feed.open(get_listener(), room, since, viewer)
    except (sse.InvalidCursor, CursorAhead) as exc:
        return error(400, str(exc))
    body = _frames(feed, cast(ASGIRequest, request).scope.get(ASGI_SEND))  # served by ASGI
    # If the client leaves before Django starts the body, the generator never runs (nor
    # its finally); dropping it then still ends the subscription.
    weakref.finalize(body, feed.close)
    response = EventStreamResponse(body, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # stop nginx buffering the stream
    return response


class EventStreamResponse(StreamingHttpResponse):
    """An SSE body handed to Django's ASGI handler as it is.

    StreamingHttpResponse wraps an async iterator in two more async generators, to coerce
    each part to bytes; ours are bytes already, and this runs once per event per stream.
    """

    def __aiter__(self) -> AsyncIterator[bytes]:
        # [attr-defined]: the private attribute where streaming_content's setter keeps the
        # body; django-stubs leaves it out, as it is no API (issue 10, point 1).
        return cast(AsyncIterator[bytes], self._iterator)  # type: ignore[attr-defined]


async def _frames(feed: Feed, send: Send | None) -> AsyncGenerator[bytes, None]:
    """RETRY, then the feed as SSE bytes, a keepalive comment when it is quiet."""
    rooms.release_request_thread()  # the middleware ran; nothing sync is left to do
    try:
        yield sse.RETRY  # Django sends the headers and this, then asks for the next part
        if send is None:  # not under config.asgi (a test client): Django writes each part
            async for batch in feed.batches():
                yield _body(batch)
            return
        # Django's per-part loop (a chunking generator and a message per part, behind two
        # iterator layers) ran once per event per stream, about a tenth of the CPU of a
        # frame: from here on the frames go straight to the server's ASGI send. Django is
        # still waiting on this generator, so it still cancels it when the client leaves.
        async for batch in feed.batches():
            await send({"type": "http.response.body", "body": _body(batch), "more_body": True})
    finally:
        feed.close()  # the client went away (Django cancels us) or the server stops


def _body(batch: list[Frame] | None) -> bytes:
    if batch is None:
        return sse.KEEPALIVE
    if len(batch) == 1:
        return batch[0].data  # the shared bytes, as they are
    return b"".join(frame.data for frame in batch)  # one write for the batch
