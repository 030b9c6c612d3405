"""A cheap Server-Sent Events client on raw asyncio streams.

Used by the benchmark (thousands of clients in one process: no thread and no HTTP library
per client) and by the tests (the same parser reads every stream the suite checks).
Speaks HTTP/1.1 with chunked or close-delimited bodies, which is what hypercorn sends.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

READ_SIZE = 65536


class SSEError(Exception):
    """The server refused the stream or spoke something that is not SSE over HTTP/1.1."""

    def __init__(self, message: str, status: int = 0, body: bytes = b"") -> None:
        super().__init__(message)
        self.status, self.body = status, body


@dataclass(slots=True)
class Event:
    """One dispatched SSE event, stamped with the time it was parsed."""

    id: str | None
    name: str
    data: str
    received_at: float = field(default_factory=time.time)

    @property
    def cursor(self) -> int:
        assert self.id is not None, "event without id"
        return int(self.id)

    def json(self) -> Any:
        return json.loads(self.data)


class SSEClient:
    """One open stream. ``await SSEClient.open(...)``, then ``next_event()`` or iterate."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader, self._writer = reader, writer
        self.status = 0
        self.headers: dict[str, str] = {}
        self.retry_ms: int | None = None
        self.comments = 0  # keepalive lines seen
        self.last_event_id: str | None = None
        self._chunked = False
        self._chunk_left = 0  # bytes of the current chunk still to come, its CRLF included
        self._raw = bytearray()  # chunked body bytes not decoded yet
        self._body_ended = False
        self._body = bytearray()  # undecoded HTTP body bytes
        self._text = ""  # decoded SSE text not yet split into lines
        self._pending: list[Event] = []
        self._fields: dict[str, Any] = {"data": []}
        self.closed = False

    @classmethod
    async def open(
        cls,
        host: str,
        port: int,
        path: str,
        *,
        last_event_id: str | int | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 10.0,
        receive_buffer: int | None = None,
    ) -> SSEClient:
        """Open a stream; ``receive_buffer`` shrinks SO_RCVBUF (to play a stuck client)."""
        async with asyncio.timeout(timeout):
            if receive_buffer is not None:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
                sock.setblocking(False)
                await asyncio.get_running_loop().sock_connect(sock, (host, port))
                reader, writer = await asyncio.open_connection(sock=sock, limit=READ_SIZE * 4)
            else:
                reader, writer = await asyncio.open_connection(host, port, limit=READ_SIZE * 4)
            client = cls(reader, writer)
            lines = [
                f"GET {path} HTTP/1.1",
                f"Host: {host}:{port}",
                "Accept: text/event-stream",
                "Cache-Control: no-cache",
            ]
            if last_event_id is not None:
                lines.append(f"Last-Event-ID: {last_event_id}")
            lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
            await client._read_head()
        return client

    async def _read_head(self) -> None:
        head = await self._reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        self.status = int(status_line.split()[1])
        for line in header_lines:
            if ":" in line:
                name, value = line.split(":", 1)
                self.headers[name.strip().lower()] = value.strip()
        self._chunked = self.headers.get("transfer-encoding", "").lower() == "chunked"
        if self.status != 200:
            body = await self._read_whole_body()
            self.close()
            raise SSEError(f"HTTP {self.status}: {body[:200]!r}", self.status, body)

    async def _read_whole_body(self) -> bytes:
        length = self.headers.get("content-length")
        with_deadline = asyncio.timeout(5)
        async with with_deadline:
            if length is not None:
                return await self._reader.readexactly(int(length))
            chunks = []
            while data := await self._read_body_bytes():
                chunks.append(data)
            return b"".join(chunks)

    async def _read_body_bytes(self) -> bytes:
        """The next piece of decoded body; b'' at the end of the body.

        Chunked bodies are decoded from whatever one socket read returned, with a single
        await per read: thousands of these clients share one process, and a few awaits per
        frame made the client, not the server, the slow side of the benchmark.
        """
        if not self._chunked:
            return await self._reader.read(READ_SIZE)
        while True:
            data = self._dechunk()
            if data or self._body_ended:
                return data
            more = await self._reader.read(READ_SIZE)
            if not more:  # the connection ended inside the body
                return b""
            self._raw += more

    def _dechunk(self) -> bytes:
        """Decode the complete chunk data in ``_raw``; keep any partial size line."""
        raw, pos, out = self._raw, 0, bytearray()
        while not self._body_ended:
            if self._chunk_left == 0:  # at a size line
                end = raw.find(b"\r\n", pos)
                if end < 0:
                    break
                size = int(bytes(raw[pos:end]).split(b";")[0], 16)
                pos = end + 2
                if size == 0:  # the last chunk (trailers, if any, are not read)
                    self._body_ended = True
                    break
                self._chunk_left = size + 2  # the data and its CRLF
            take = min(self._chunk_left, len(raw) - pos)
            if take == 0:
                break
            data = min(take, self._chunk_left - 2)
            if data > 0:
                out += raw[pos : pos + data]
            pos += take
            self._chunk_left -= take
        del raw[:pos]
        return bytes(out)

    async def next_event(self, timeout: float | None = None) -> Event:
        """The next event; raises TimeoutError after ``timeout``, EOFError at end of stream."""
        if timeout is None:  # no timeout context per event: this runs once per frame
            return await self._next_event()
        async with asyncio.timeout(timeout):
            return await self._next_event()

    async def _next_event(self) -> Event:
        while not self._pending:
            data = b""
            if not self.closed:
                try:
                    data = await self._read_body_bytes()
                except (asyncio.IncompleteReadError, ConnectionError):
                    data = b""
            if not data:
                self.closed = True
                raise EOFError("stream ended")
            self._feed(data)
        return self._pending.pop(0)

    async def events(self) -> AsyncIterator[Event]:
        while True:
            try:
                yield await self.next_event()
            except EOFError:
                return

    def _feed(self, data: bytes) -> None:
        self._body += data
        try:
            text = self._body.decode()
            self._body.clear()
        except UnicodeDecodeError as exc:  # a multi-byte character split across reads
            text = self._body[: exc.start].decode()
            del self._body[: exc.start]
        self._text += text
        *lines, self._text = self._text.split("\n")
        now = time.time()
        for raw in lines:
            line = raw.removesuffix("\r")
            if not line:
                self._dispatch(now)
                continue
            if line.startswith(":"):
                self.comments += 1
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "data":
                self._fields["data"].append(value)
            elif name == "retry" and value.isdigit():
                self.retry_ms = int(value)
            elif name in ("id", "event"):
                self._fields[name] = value

    def _dispatch(self, now: float) -> None:
        fields, self._fields = self._fields, {"data": []}
        if "id" in fields:
            self.last_event_id = fields["id"]
        if not fields["data"]:
            return  # no data: nothing to dispatch (a retry-only block, say)
        self._pending.append(
            Event(fields.get("id"), fields.get("event", "message"), "\n".join(fields["data"]), now)
        )

    def close(self) -> None:
        self.closed = True
        self._writer.close()

    async def aclose(self) -> None:
        self.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self._writer.wait_closed()
