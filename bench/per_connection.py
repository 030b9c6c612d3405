"""Reference 1: one PostgreSQL connection with its own ``LISTEN chat`` per SSE subscriber.

The original blog's design, kept deliberately naive so the benchmark can show where it
stops: every subscriber holds a database session, so PostgreSQL's ``max_connections``
(about 100) caps the subscribers, and every subscriber parses every bell of the channel and
reads the log itself (N reads per event, where pgchat reads once; bench/doorbell.py). A raw
ASGI app, no Django, served by
hypercorn (bench/servers.py):

    hypercorn bench.per_connection:app     # DATABASE_URL in the environment

DO NOT "fix" it: it is the baseline. Frames are built with pgchat's own chat/events.py and
chat/sse.py, so the comparison is between designs, not between encoders. A subscriber the
database refuses gets a 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
from psycopg import sql

from chat import sse
from chat.events import CHANNEL

from .doorbell import LogReader

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

ROUTE = re.compile(r"/rooms/(?P<room>[-a-zA-Z0-9_]+)/events")
CONNECT_TIMEOUT_SECONDS = 10
HEARTBEAT_SECONDS = 15.0  # as pgchat's default: idle proxies drop silent streams
STREAM_HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
]


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    if scope["type"] != "http":
        return
    match = ROUTE.fullmatch(scope["path"])
    if scope["path"] == "/healthz":
        await send_plain(send, 200, b"ok")
    elif match is None or scope["method"] != "GET":
        await send_plain(send, 404, b"not found")
    else:
        await _stream(match["room"], receive, send)


async def _lifespan(receive: Receive, send: Send) -> None:
    """Nothing to start: that is the point of this design (and its flaw)."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def send_plain(send: Send, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _stream(room: str, receive: Receive, send: Send) -> None:
    """LISTEN on a connection of this subscriber's own, then relay until it disconnects."""
    try:
        conn = await psycopg.AsyncConnection.connect(
            os.environ["DATABASE_URL"],
            autocommit=True,  # a listener inside a transaction receives nothing
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
            application_name="bench-per-connection",
        )
    except psycopg.OperationalError as exc:  # "too many clients already", past max_connections
        reason = str(exc).rsplit("FATAL:", 1)[-1].strip()  # libpq's text names socket and all
        await send_plain(send, 503, f"database refused: {reason}".encode())
        return
    async with conn:
        # LISTEN before the response starts: once the client has its 200, nothing committed
        # afterwards can be missed, which is what the harness assumes of every target.
        await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(CHANNEL)))
        await send({"type": "http.response.start", "status": 200, "headers": STREAM_HEADERS})
        await send({"type": "http.response.body", "body": sse.RETRY, "more_body": True})
        relay = asyncio.create_task(_relay(conn, room, send))
        try:
            while (await receive())["type"] != "http.disconnect":
                pass
        finally:
            relay.cancel()
            with contextlib.suppress(asyncio.CancelledError, psycopg.Error, OSError):
                await relay


async def _relay(conn: psycopg.AsyncConnection[Any], room: str, send: Send) -> None:
    """Parse every notification of the channel, send this room's, keep the stream alive."""
    last_sent = time.monotonic()
    reader = LogReader()
    while True:
        idle_left = last_sent + HEARTBEAT_SECONDS - time.monotonic()
        if idle_left <= 0:
            await send({"type": "http.response.body", "body": sse.KEEPALIVE, "more_body": True})
            last_sent = time.monotonic()
            continue
        batch = [n.payload async for n in conn.notifies(timeout=idle_left, stop_after=1)]
        for event in await reader.read(conn, batch, (room,)):  # a read per subscriber
            body = sse.encode(event).data
            await send({"type": "http.response.body", "body": body, "more_body": True})
            last_sent = time.monotonic()
