"""Reference 2, the ceiling: the least work any Python server could do for this fan-out.

Raw asyncio HTTP/1.1 (``asyncio.start_server``, no framework), ONE psycopg LISTEN connection,
one read of the log per batch of doorbells (bench/doorbell.py, as pgchat does), frame once,
and the same bytes offered to a bounded queue per client. What pgchat spends above this
figure is what its framework, its features (replay, cursors, slow-client handling, access
re-checks) and its code cost; what this costs is the floor on this box.

    python -m bench.ceiling --port 8001     # DATABASE_URL in the environment

Deliberately left out, so the floor stays a floor: reconnecting the LISTEN connection (it
exits instead: the benchmark would report the loss), replay, Last-Event-ID, auth, chunked
encoding (the body ends when the connection does, which HTTP/1.1 allows), keep-alive.
Frames come from pgchat's own chat/events.py and chat/sse.py, so encoders are not compared.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import re
import signal
import sys
from collections.abc import Sequence
from typing import Any, cast

import psycopg
from psycopg import sql

from chat import heap, sse
from chat.events import CHANNEL, ChatEvent

from .doorbell import LogReader

logger = logging.getLogger("bench.ceiling")

ROUTE = re.compile(r"GET /rooms/(?P<room>[-a-zA-Z0-9_]+)/events(?:\?\S*)? HTTP/1\.[01]")
QUEUE_FRAMES = 256  # per client, as pgchat's CHAT_SUBSCRIBER_QUEUE_SIZE default
HEARTBEAT_SECONDS = 15.0  # as pgchat's default
REQUEST_TIMEOUT_SECONDS = 10.0  # a client that sends no complete request head is dropped
REQUEST_HEAD_MAX_BYTES = 16 * 1024
STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: text/event-stream\r\n"
    b"Cache-Control: no-cache\r\n"
    b"Connection: close\r\n\r\n"
)


def plain_response(status: str, body: bytes) -> bytes:
    head = f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
    return head.encode() + b"Connection: close\r\n\r\n" + body


class Client:
    """One open stream: its room and its bounded queue of frames (None: stop)."""

    __slots__ = ("queue", "room")

    def __init__(self, room: str) -> None:
        self.room = room
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue(QUEUE_FRAMES)

    def offer(self, frame: bytes) -> bool:
        try:
            self.queue.put_nowait(frame)
        except asyncio.QueueFull:
            return False
        return True


class Ceiling:
    """The server: room -> clients, fed by one LISTEN connection."""

    def __init__(self, conninfo: str) -> None:
        self.conninfo = conninfo
        self.rooms: dict[str, set[Client]] = {}
        self.dropped = 0  # clients whose queue overflowed

    async def listen(self, listening: asyncio.Event) -> None:
        """LISTEN, then publish every notification; returns (ending the server) on error."""
        async with await psycopg.AsyncConnection.connect(
            self.conninfo,
            autocommit=True,  # a listener inside a transaction receives nothing
            connect_timeout=10,
            application_name="bench-ceiling",
        ) as conn:
            await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(CHANNEL)))
            listening.set()
            reader = LogReader()
            while True:  # whole packets of bells, then one read of the log for them
                batch = [n.payload async for n in conn.notifies(stop_after=1)]
                for event in await reader.read(conn, batch, self.rooms):
                    self.publish(event)

    def publish(self, event: ChatEvent) -> None:
        """Frame once, offer the same bytes to every client of the room."""
        clients = self.rooms.get(event.room)
        if not clients:
            return
        frame = sse.encode(event).data
        for client in list(clients):
            if not client.offer(frame):  # a stuck client must not hold up the others
                self._drop(client)

    def _drop(self, client: Client) -> None:
        self.dropped += 1
        self.rooms.get(client.room, set()).discard(client)
        while not client.queue.empty():
            client.queue.get_nowait()
        client.queue.put_nowait(None)

    async def heartbeat(self) -> None:
        """One timer for all clients, rather than a timeout per client per wait."""
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            for clients in list(self.rooms.values()):
                for client in list(clients):
                    if not client.offer(sse.KEEPALIVE):
                        self._drop(client)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One HTTP/1.1 request: the room's stream, /healthz, or 404."""
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_SECONDS):
                head = await reader.readuntil(b"\r\n\r\n")
            request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
            match = ROUTE.fullmatch(request_line)
            if match is not None:
                await self._stream(match["room"], reader, writer)
            elif request_line.startswith("GET /healthz "):
                writer.write(plain_response("200 OK", b"ok"))
            else:
                writer.write(plain_response("404 Not Found", b"not found"))
        except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # the client went away or spoke nonsense: nothing to clean up beyond close
        finally:
            writer.close()

    async def _stream(
        self, room: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        client = Client(room)
        self.rooms.setdefault(room, set()).add(client)  # before the 200: nothing is missed
        pump = asyncio.create_task(self._pump(client, writer))
        try:
            writer.write(STREAM_HEAD + sse.RETRY)
            await reader.read(1)  # an SSE client sends nothing more: this returns at EOF
        finally:
            pump.cancel()
            clients = self.rooms.get(room)
            if clients is not None:
                clients.discard(client)
                if not clients:
                    del self.rooms[room]

    async def _pump(self, client: Client, writer: asyncio.StreamWriter) -> None:
        """Write everything queued in one go; wait for the socket when it is backed up."""
        with contextlib.suppress(OSError):
            while True:
                frames = [await client.queue.get()]
                while not client.queue.empty():
                    frames.append(client.queue.get_nowait())
                if None in frames:  # dropped as too slow: end the stream
                    writer.close()
                    return
                writer.write(b"".join(cast(list[bytes], frames)))  # no None: checked above
                await writer.drain()


async def serve(host: str, port: int, backlog: int) -> None:
    """LISTEN first, then accept: a client that has its 200 misses nothing."""
    ceiling = Ceiling(os.environ["DATABASE_URL"])
    listening = asyncio.Event()
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    listener = asyncio.create_task(ceiling.listen(listening))
    ready = asyncio.create_task(listening.wait())
    await asyncio.wait([listener, ready], return_when=asyncio.FIRST_COMPLETED)
    if listener.done():
        ready.cancel()
        listener.result()  # raises the connection error
        return
    server = await asyncio.start_server(
        ceiling.handle, host, port, backlog=backlog, limit=REQUEST_HEAD_MAX_BYTES
    )
    heartbeat = asyncio.create_task(ceiling.heartbeat())
    heap.settle()  # as pgchat does
    stop = asyncio.create_task(stopping.wait())
    tasks: list[asyncio.Task[Any]] = [listener, stop]
    async with server:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        server.close()  # stop accepting; open streams end with the process
    heartbeat.cancel()
    listener.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await listener  # re-raises a LISTEN failure, so the exit status says so


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ceiling", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--backlog", type=int, default=2048)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    asyncio.run(serve(args.host, args.port, args.backlog))
    return 0


if __name__ == "__main__":
    sys.exit(main())
