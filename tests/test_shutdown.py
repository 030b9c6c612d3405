"""Stopping a server that holds open streams: Ctrl-C (SIGINT to the terminal's process group)
and SIGTERM (a process manager's stop) end every stream, and the server says nothing alarming
on its way out: no traceback, no "Task exception was never retrieved", no CancelledError."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable

import pytest

from chat.models import ChatMessage, Room

from .servers import Server

DEADLINE = 15.0
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
