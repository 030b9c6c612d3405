"""An ASGI guard in front of Django: request bodies are bounded in size and in time.

Receives: every request config/asgi.py hands to Django (the event streams never read a body
and are not behind it).
Hands on: the same request, with its whole body already read (Django reads it whole first
anyway), to Django.
Refuses, without Django: a declared ``Content-Length`` over ``CHAT_MAX_BODY_BYTES`` with 413
*before reading any of it*; a body that turns out longer than that (chunked, or lying) with
413 as soon as it passes the limit; a body not complete after ``CHAT_BODY_TIMEOUT_SECONDS``
with 408. Each refusal is ``{"error": ...}`` and closes the connection.
On failure: nothing is lost; a refused request never reached Django, so it wrote nothing.

Why here and not hypercorn's ``--read-timeout``: that timeout also ends a connection that
sends nothing for so long, which is what every idle SSE stream is. Bounding the *body* only
is this module's job.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from django.conf import settings

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


class BodyLimit:
    """``BodyLimit(app)``: an ASGI app that bounds the bodies ``app`` gets."""

    def __init__(self, app: App) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit: int = settings.CHAT_MAX_BODY_BYTES
        declared = _content_length(scope)
        if declared == -1:
            await _refuse(send, 400, "Content-Length is not a number")
            return
        if declared is not None and declared > limit:
            await _refuse(send, 413, _too_large(limit))
            return
        try:
            async with asyncio.timeout(settings.CHAT_BODY_TIMEOUT_SECONDS):
                body = await _read_body(receive, limit)
        except TimeoutError:
            await _refuse(send, 408, "the request body did not arrive in time")
            return
        except _TooLarge:
            await _refuse(send, 413, _too_large(limit))
            return
        if body is None:
            return  # the client went away while sending
        await self.app(scope, _replay(body, receive), send)


class _TooLarge(Exception):
    pass


def _too_large(limit: int) -> str:
    return f"request body too large: the limit is {limit} bytes"


def _content_length(scope: Scope) -> int | None:
    """The declared length; None when absent, -1 when not a number."""
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            return int(value) if value.isdigit() else -1
    return None


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    chunks, size, more = [], 0, True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
        more = message.get("more_body", False)
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """The body as one message, then the client's own messages (its disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _refuse(send: Send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),  # the rest of the body is not read: end the connection
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
