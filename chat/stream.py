"""Hop 4, HTTP: the SSE event stream of a room, a small ASGI endpoint beside Django.

Upstream:   chat/feed.py (what the client missed from the log, then the listener's frames).
Downstream: the browser's EventSource (chat/static/chat/chat.js), or any SSE client.
On failure: a stream that ends (server stopping, database gone mid-replay, error) loses
            nothing: the browser reconnects with Last-Event-ID and the replay fills the gap.

config/asgi.py routes ``GET /rooms/<slug>/events`` here, not to Django: opens come in storms
(every client of a restarted server reconnects at once), and Django's request cycle, for a
response it never touches after the headers, cost 4.4x the hypercorn floor's open time and
1.6x its memory per stream (README, "Benchmark"). What that cycle did for this URL is done
here with Django's public APIs: the Host check (``HttpRequest.get_host`` against
ALLOWED_HOSTS), the session (SESSION_ENGINE's ``SessionStore``) and the user
(``auth.get_user``, lazily: only a private room's check reads them, in a thread). Django's
middleware never sees the stream, so none can buffer or rewrite its body (GZipMiddleware
would compress it in blocks: no event would arrive until a block filled).

Views never LISTEN and never NOTIFY.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from collections.abc import Awaitable, Callable
from importlib import import_module
from typing import Any, cast

import psycopg
from asgiref.sync import ThreadSensitiveContext
from django.conf import settings
from django.contrib import auth
from django.contrib.sessions.backends.base import SessionBase
from django.core.exceptions import DisallowedHost
from django.db import DatabaseError
from django.http import HttpRequest, QueryDict, parse_cookie
from django.urls import get_script_prefix
from django.utils.functional import SimpleLazyObject
from psycopg_pool import PoolTimeout

from . import db, rooms, sse
from .feed import CursorAhead, Feed
from .listener import get_listener
from .sse import Frame
from .subscription import Viewer

logger = logging.getLogger("pgchat.stream")
Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
DATABASE_DOWN = (DatabaseError, psycopg.Error, PoolTimeout)  # down, restarting, saturated

STREAM_HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),  # stop nginx buffering the stream
    (b"x-content-type-options", b"nosniff"),
]
END = {"type": "http.response.body", "body": b"", "more_body": False}


class Refused(Exception):
    """The stream is not opened: answered with the API's JSON error instead."""

    def __init__(self, status: int, message: str, **headers: str) -> None:
        super().__init__(message)
        self.status, self.headers = status, headers


def room_events_url(slug: str) -> str:
    """Where a room's stream is served (routed by config/asgi.py, not by Django's urlconf)."""
    return f"{get_script_prefix()}rooms/{slug}/events"


async def room_events(scope: Scope, receive: Receive, send: Send, *, slug: str) -> None:
    """``GET /rooms/<slug>/events``: the room's changes after the client's cursor, then live."""
    try:
        feed = await _open_feed(scope, slug)
    except Refused as refusal:
        await _send_error(send, refusal)
        return
    await _stream(feed, receive, send)


async def _open_feed(scope: Scope, slug: str) -> Feed:
    """Check everything, then subscribe; raises Refused. Nothing of the request outlives this
    call (an open stream holds its feed, not a request object)."""
    if scope["method"] != "GET":
        raise Refused(405, f"method {scope['method']} not allowed; use GET", Allow="GET")
    request = _request(scope)
    try:
        request.get_host()  # ALLOWED_HOSTS, as CommonMiddleware checks it for Django's URLs
    except DisallowedHost as exc:
        raise Refused(400, f"bad request: {exc}".splitlines()[0][:200]) from None
    session_key = request.COOKIES.get(settings.SESSION_COOKIE_NAME) or None
    request.session = _session_store()(session_key)  # reads nothing until asked
    # Lazy, as AuthenticationMiddleware makes it: a public room's check never reads the
    # session. The proxy stands in for the user it will load, hence the cast.
    user = cast(rooms.AnyUser, SimpleLazyObject(lambda: auth.get_user(request)))
    try:
        # One pooled connection for both reads (db.connection() blocks nest).
        async with db.connection():
            # A public room's check is one async query; a private room's runs the ORM rule,
            # which reads the session and the user: in a thread of this open's own.
            async with ThreadSensitiveContext():
                room = await rooms.readable_room_slug(user, slug)
            # The header is newer than the query: the browser sends it on each reconnect,
            # while the URL keeps the cursor the page was rendered with.
            since = sse.parse_cursor(
                request.headers.get("Last-Event-ID") or _query(scope).get("last_event_id")
            )
            # Subscribed before the response's headers go out: a client that sees the 200
            # and then writes must receive its own write ("from now" means now).
            return await Feed.open(get_listener(), room, since, Viewer(None, session_key))
    except rooms.RoomNotFound as exc:
        raise Refused(404, str(exc)) from None
    except rooms.NotAllowed as exc:
        raise Refused(403, str(exc)) from None
    except (sse.InvalidCursor, CursorAhead) as exc:
        raise Refused(400, str(exc)) from None
    except DATABASE_DOWN as exc:
        logger.warning("database unavailable opening a stream of %r: %r", slug, exc)
        raise Refused(503, "the database is unavailable; retry shortly", Retry_After="2") from None


async def _stream(feed: Feed, receive: Receive, send: Send) -> None:
    """The 200, then the feed as SSE, until the client leaves or the feed ends."""
    client_left = asyncio.create_task(_close_on_disconnect(receive, feed))
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


async def _close_on_disconnect(receive: Receive, feed: Feed) -> None:
    """Wait for the client to go away, then end its feed (and so its stream) at once."""
    while (await receive())["type"] != "http.disconnect":
        pass  # the GET's empty request body
    feed.close()


def _body(batch: list[Frame] | None) -> bytes:
    if batch is None:  # the listener's heartbeat found the feed idle
        return sse.KEEPALIVE
    if len(batch) == 1:
        return batch[0].data  # the shared bytes, as they are
    return b"".join(frame.data for frame in batch)  # one write for the batch


async def _send_error(send: Send, refusal: Refused) -> None:
    """The API's one error shape, ``{"error": "..."}``, as chat/jsonapi.py answers it."""
    body = json.dumps({"error": str(refusal)}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"x-content-type-options", b"nosniff"),
        *(
            (name.replace("_", "-").encode(), value.encode())
            for name, value in refusal.headers.items()
        ),
    ]
    await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _request(scope: Scope) -> HttpRequest:
    """A plain HttpRequest with what the checks read (META, COOKIES), filled from the
    ASGI scope the way Django's own ASGI handler fills its requests."""
    request = HttpRequest()
    request.method = scope["method"]
    request.path = scope["path"]
    query_string = scope.get("query_string", b"").decode("latin-1")
    meta: dict[str, Any] = {
        "REQUEST_METHOD": request.method,
        "QUERY_STRING": query_string,
        "SCRIPT_NAME": scope.get("root_path", ""),
        "PATH_INFO": scope["path"],
    }
    server = scope.get("server") or ("unknown", "0")
    meta["SERVER_NAME"], meta["SERVER_PORT"] = str(server[0]), str(server[1])
    if client := scope.get("client"):
        meta["REMOTE_ADDR"] = meta["REMOTE_HOST"] = client[0]
        meta["REMOTE_PORT"] = client[1]
    for raw_name, raw_value in scope["headers"]:
        name = raw_name.decode("latin-1")
        if "_" in name:  # as Django does: no spoofing X-Forwarded-Host as X_Forwarded_Host
            continue
        key = "HTTP_" + name.upper().replace("-", "_")
        value = raw_value.decode("latin-1")
        meta[key] = f"{meta[key]},{value}" if key in meta else value
    request.META = meta
    request.COOKIES = parse_cookie(meta.get("HTTP_COOKIE", ""))
    return request


def _query(scope: Scope) -> QueryDict:
    """The query string's parameters (read only when a cursor is not in the header)."""
    return QueryDict(scope.get("query_string", b"").decode("latin-1"))


@functools.cache
def _session_store() -> type[SessionBase]:
    """SESSION_ENGINE's SessionStore, as SessionMiddleware loads it."""
    store: type[SessionBase] = import_module(settings.SESSION_ENGINE).SessionStore
    return store
