"""The room list's "N watching" counts every worker's streams, as /metrics does (issue 10).

It used to count only the streams of the worker that rendered the page, read from that
worker's listener off its event loop: with two workers it showed 5 or 7 of 12.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable

import httpx
from prometheus_client.parser import text_string_to_metric_families

from bench.sse_client import SSEClient
from chat.models import Room

from .servers import Server

DEADLINE = 30.0  # seconds for counts to settle; typically milliseconds
POLL_SECONDS = 0.05
STREAMS = 12


async def watching(client: httpx.AsyncClient, room: str) -> int | None:
    """The "N watching" the room list shows for ``room``."""
    page = (await client.get("/rooms/")).text
    found = re.search(rf'href="/rooms/{re.escape(room)}/".*?(\d+) watching', page, re.S)
    return int(found.group(1)) if found else None


async def metrics_subscribers(client: httpx.AsyncClient, room: str) -> int:
    """``pgchat_subscribers{room=...}`` in /metrics, summed."""
    text = (await client.get("/metrics")).text
    return sum(
        int(sample.value)
        for family in text_string_to_metric_families(text)
        if family.name == "pgchat_subscribers"
        for sample in family.samples
        if sample.labels.get("room") == room
    )


async def settled_counts(server: Server, room: str, expected: int) -> tuple[int | None, int]:
    """(the room list's count, /metrics' count), polled until both are ``expected`` or the
    deadline passes; each poll on fresh connections, so either worker may answer."""
    deadline = asyncio.get_running_loop().time() + DEADLINE
    while True:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as fresh:
            counts = (await watching(fresh, room), await metrics_subscribers(fresh, room))
        if counts == (expected, expected) or asyncio.get_running_loop().time() > deadline:
            return counts
        await asyncio.sleep(POLL_SECONDS)


async def streams_per_worker(server: Server, workers: int) -> dict[int, int]:
    """Each worker's own open streams, from /healthz (which answers per worker); polls until
    every worker has answered at least once (the kernel picks the worker per connection)."""
    seen: dict[int, int] = {}
    while len(seen) < workers:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as fresh:  # a new connection
            body = (await fresh.get("/healthz")).json()
        seen[body["worker"]] = body["subscribers"]
    return seen


async def test_room_list_counts_every_workers_streams_like_metrics(
    make_server: Callable[..., Server], room: Room
) -> None:
    server = await asyncio.to_thread(make_server, workers=2)
    streams: list[SSEClient] = []
    try:
        async with asyncio.timeout(DEADLINE):
            streams += [await server.stream(room.slug) for _ in range(STREAMS)]
            # The bug shows only when both workers hold streams; the kernel decides which
            # worker accepts each, so open more until both do.
            while 0 in (per_worker := await streams_per_worker(server, 2)).values():
                streams.append(await server.stream(room.slug))
        assert sum(per_worker.values()) == len(streams)

        counts = await settled_counts(server, room.slug, len(streams))
        assert counts == (len(streams), len(streams)), f"(room list, /metrics): {counts}"
        # Every rendering agrees, whichever worker answers (a few pages, a fresh connection
        # each, so both workers are all but certain to render one).
        for _ in range(10):
            async with httpx.AsyncClient(base_url=server.url, timeout=10) as fresh:
                assert await watching(fresh, room.slug) == len(streams)
    finally:
        for stream in streams:
            await stream.aclose()
