"""The plumbing the SSE endpoints share (chat/stream.py, chat/user_stream.py): the request
and the session read from an ASGI scope with Django's public APIs, JSON refusals, the
stream's headers, and ending a stream when its client leaves.

Upstream:   hypercorn's ASGI scope, routed by config/asgi.py ``ROUTES``.
Downstream: the endpoints; nothing here holds state between requests.
On failure: a refusal is a JSON ``{"error": ...}`` answer; nothing is written anywhere.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Awaitable, Callable
from importlib import import_module
from typing import Any, Protocol

import psycopg
from django.conf import settings
from django.contrib.sessions.backends.base import SessionBase
from django.core.exceptions import DisallowedHost
from django.db import DatabaseError
from django.http import HttpRequest, QueryDict, parse_cookie
from psycopg_pool import PoolTimeout

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


def unavailable(opening: str, exc: BaseException) -> Refused:
    """The 503 of an open the database could not serve (logged once, with what failed);
    the client retries after ``Retry-After``, as the API's 503 says (chat/jsonapi.py)."""
    logging.getLogger("pgchat.stream").warning("database unavailable opening %s: %r", opening, exc)
    return Refused(503, "the database is unavailable; retry shortly", Retry_After="2")


class Closable(Protocol):
    def close(self) -> None: ...


def checked_request(scope: Scope) -> HttpRequest:
    """The GET's request with its session attached (read lazily); raises Refused for another
    method or a Host that ALLOWED_HOSTS refuses (as CommonMiddleware checks Django's URLs)."""
    if scope["method"] != "GET":
        raise Refused(405, f"method {scope['method']} not allowed; use GET", Allow="GET")
    request = request_from_scope(scope)
    try:
        request.get_host()
    except DisallowedHost as exc:
        raise Refused(400, f"bad request: {exc}".splitlines()[0][:200]) from None
    request.session = session_store()(session_key(request))  # reads nothing until asked
    return request


def session_key(request: HttpRequest) -> str | None:
    return request.COOKIES.get(settings.SESSION_COOKIE_NAME) or None


def last_event_id(request: HttpRequest, scope: Scope) -> str | None:
    """The header is newer than the query: the browser sends it on each reconnect, while the
    URL keeps the position the page was rendered with."""
    # META, not request.headers: that builds a mapping of every header, per open.
    return request.META.get("HTTP_LAST_EVENT_ID") or query(scope).get("last_event_id")


async def close_on_disconnect(receive: Receive, feed: Closable) -> None:
    """Wait for the client to go away, then end its feed (and so its stream) at once."""
    while (await receive())["type"] != "http.disconnect":
        pass  # the GET's empty request body
    feed.close()


async def send_error(send: Send, refusal: Refused) -> None:
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


def request_from_scope(scope: Scope) -> HttpRequest:
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


def query(scope: Scope) -> QueryDict:
    """The query string's parameters (read only when a position is not in the header)."""
    return QueryDict(scope.get("query_string", b"").decode("latin-1"))


@functools.cache
def session_store() -> type[SessionBase]:
    """SESSION_ENGINE's SessionStore, as SessionMiddleware loads it."""
    store: type[SessionBase] = import_module(settings.SESSION_ENGINE).SessionStore
    return store
