"""Reference 3, the hypercorn floor: the ceiling's fan-out as a bare ASGI app under hypercorn.

The same single LISTEN connection, parse-once, frame-once and per-client bounded queue as
bench/ceiling.py (its ``Ceiling`` and ``Client`` are reused as they are), but each frame goes
through hypercorn's ASGI ``send`` (its HTTP stream, h11's chunked encoding, its write lock)
instead of straight into the socket. No Django, no pgchat feature:

    hypercorn bench.hypercorn_floor:app     # DATABASE_URL in the environment

So every figure splits in two: what hypercorn costs (this minus the ceiling) and what Django
and pgchat's features cost (pgchat minus this). pgchat must be served by hypercorn, so this,
not the ceiling, is the least a frame can cost there.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import Any, cast

from chat import heap, sse

from .ceiling import Ceiling, Client
from .per_connection import STREAM_HEADERS, Receive, Send, send_plain

Scope = dict[str, Any]

_ceiling: Ceiling | None = None  # made at start-up: one per hypercorn worker process


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
    elif scope["type"] == "http":
        path = scope["path"]
        room = path.removeprefix("/rooms/").removesuffix("/events")
        if path == "/healthz":
            await send_plain(send, 200, b"ok")
        elif path.startswith("/rooms/") and path.endswith("/events") and "/" not in room:
            await _stream(room, receive, send)
        else:
            await send_plain(send, 404, b"not found")


async def _lifespan(receive: Receive, send: Send) -> None:
    """LISTEN before serving, as pgchat does; stop the listener at shutdown."""
    global _ceiling
    tasks: list[asyncio.Task[None]] = []
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            _ceiling = Ceiling(os.environ["DATABASE_URL"])
            listening = asyncio.Event()
            tasks = [
                asyncio.create_task(_ceiling.listen(listening)),
                asyncio.create_task(_ceiling.heartbeat()),
            ]
            await listening.wait()
            heap.settle()  # as pgchat does
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _stream(room: str, receive: Receive, send: Send) -> None:
    assert _ceiling is not None, "no lifespan: run under hypercorn"
    client = Client(room)
    _ceiling.rooms.setdefault(room, set()).add(client)  # before the 200: nothing is missed
    await send({"type": "http.response.start", "status": 200, "headers": STREAM_HEADERS})
    await send({"type": "http.response.body", "body": sse.RETRY, "more_body": True})
    pump = asyncio.create_task(_pump(client, send))
    try:
        while (await receive())["type"] != "http.disconnect":
            pass
    finally:
        pump.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pump
        clients = _ceiling.rooms.get(room)
        if clients is not None:
            clients.discard(client)
            if not clients:
                del _ceiling.rooms[room]


async def _pump(client: Client, send: Send) -> None:
    """Everything queued in one send, as the ceiling writes it."""
    while True:
        frames = [await client.queue.get()]
        while not client.queue.empty():
            frames.append(client.queue.get_nowait())
        if None in frames:  # dropped as too slow: end the stream
            await send({"type": "http.response.body", "body": b""})
            return
        body = b"".join(cast(list[bytes], frames))  # no None: checked above
        await send({"type": "http.response.body", "body": body, "more_body": True})
