"""Stopping a server that holds open streams: Ctrl-C (SIGINT to the terminal's process group)
and SIGTERM (a process manager's stop) end every stream, and the server says nothing alarming
on its way out: no traceback, no "Task exception was never retrieved", no CancelledError."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable
from typing import Any

import pytest

from chat import shutdown_noise
from chat.models import ChatMessage, Room

from .helpers import DEADLINE
from .servers import Server

STREAMS = 8
ALARMS = ("Traceback", "never retrieved", "CancelledError", "Error in ASGI")


@pytest.mark.parametrize(
    ("sig", "whole_group"),
    [
        pytest.param(signal.SIGINT, True, id="ctrl-c"),  # a terminal signals the whole group
        pytest.param(signal.SIGTERM, False, id="sigterm"),  # a process manager, the parent
    ],
)
async def test_stopping_with_open_streams_prints_no_traceback(
    make_server: Callable[..., Server], room: Room, sig: signal.Signals, whole_group: bool
) -> None:
    server = make_server()
    streams = await asyncio.gather(*(server.stream(room.slug) for _ in range(STREAMS)))
    message = await ChatMessage.objects.acreate(room=room, author="ops", text="before the stop")
    for stream in streams:  # every stream is live, not merely accepted
        assert (await stream.next_event(DEADLINE)).json()["id"] == message.pk
    assert server.process is not None
    if whole_group:
        os.killpg(server.process.pid, sig)
    else:
        server.process.send_signal(sig)
    for stream in streams:
        with pytest.raises(EOFError):  # ended, so EventSource reconnects elsewhere
            await stream.next_event(DEADLINE)
    assert await asyncio.to_thread(server.process.wait, DEADLINE) == 0
    log = server.log_path.read_text(errors="replace")
    assert "listener stopped" in log  # the lifespan shutdown ran to its end
    found = [alarm for alarm in ALARMS if alarm in log]
    assert not found, f"{found} in the server's output:\n{server.log_tail(80)}"


async def test_this_cpython_still_reports_cancelled_connections() -> None:
    """Tripwire for chat/shutdown_noise.py: it filters a CPython bug (gh-113538, a cancelled
    stream-server connection reported as an error). When this fails, the running CPython
    has the fix: delete that module and its call in config/asgi.py."""
    reports = await _reports_of_a_cancelled_connection(filtered=False)
    assert any(isinstance(r.get("exception"), asyncio.CancelledError) for r in reports)


async def test_the_filter_drops_cancellations_and_passes_other_reports_on() -> None:
    assert await _reports_of_a_cancelled_connection(filtered=True) == []
    loop = asyncio.get_running_loop()
    seen: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: seen.append(context))
    try:
        shutdown_noise.silence_cut_connections()
        loop.call_exception_handler({"message": "real", "exception": ValueError("x")})
        loop.call_exception_handler({"message": "cut", "exception": asyncio.CancelledError()})
    finally:
        loop.set_exception_handler(None)
    assert [context["message"] for context in seen] == ["real"]


async def _reports_of_a_cancelled_connection(*, filtered: bool) -> list[dict[str, Any]]:
    """Serve one connection with asyncio's stream server, cancel its handler as hypercorn
    does at the end of a graceful shutdown, and return what the loop was told."""
    loop = asyncio.get_running_loop()
    reports: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: reports.append(context))
    handlers: asyncio.Queue[asyncio.Task[Any]] = asyncio.Queue()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        await handlers.put(task)
        await reader.read()  # a stream: the client never ends it

    try:
        if filtered:
            shutdown_noise.silence_cut_connections()
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        async with asyncio.timeout(DEADLINE):
            handler = await handlers.get()
            handler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await handler
            for _ in range(3):  # the done-callbacks run on the next turns of the loop
                await asyncio.sleep(0)
        writer.close()
        server.close()
    finally:
        loop.set_exception_handler(None)
    return reports
