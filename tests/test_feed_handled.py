"""Opens that need no read of the log (``FanOut.handled``, chat/feed.py).

A room this process already carries is known up to a position: the highest seq published
to its streams, or the highest cursor an open read after subscribing. An open "from now",
or a resume from exactly there, starts at that position with no query: in a reconnect
storm every client that was up to date comes back there. These tests hold every connection
of the read pool while such opens run (an open that needed a read would wait for one), and
check that nothing is lost or repeated on either side of the seam, including after a
listener outage, when the position is stale.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from chat import db
from chat.feed import Feed
from chat.listener import Listener
from chat.models import Room

from .helpers import DEADLINE, LISTENER, terminate, wait_until_async
from .test_feed import Connection, batches_of, conn, insert, listener, make_listener, take, texts

__all__ = ["conn", "listener", "make_listener"]  # fixtures, used by name


@pytest.fixture
async def pool_held() -> AsyncIterator[Callable[[], Awaitable[None]]]:
    """``await hold()`` takes every connection of the read pool until the test ends."""
    release = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []

    async def hold_one(held: asyncio.Event) -> None:
        async with db.connection():
            held.set()
            await release.wait()

    async def hold() -> None:
        events = [asyncio.Event() for _ in range(db.POOL_MAX_SIZE)]
        tasks.extend(asyncio.create_task(hold_one(event)) for event in events)
        async with asyncio.timeout(DEADLINE):
            await asyncio.gather(*(event.wait() for event in events))

    yield hold
    release.set()
    await asyncio.gather(*tasks)


async def open_without_the_pool(listener: Listener, room: Room, since: int | None) -> Feed:
    """The open, while the pool has nothing to lend: it must not need it."""
    async with asyncio.timeout(DEADLINE):
        return await Feed.open(listener, room.slug, since)


async def test_an_open_from_now_in_a_watched_room_reads_nothing_and_misses_nothing(
    listener: Listener, conn: Connection, room: Room,
    pool_held: Callable[[], Awaitable[None]],
) -> None:  # fmt: skip
    await insert(conn, room, "before anyone")
    first = await Feed.open(listener, room.slug, None)  # reads the room's cursor
    await pool_held()
    second = await open_without_the_pool(listener, room, None)
    assert second.cursor == first.cursor == listener.fanout.handled(room.slug)
    a, b = batches_of(first), batches_of(second)
    try:
        await insert(conn, room, "after both")
        assert texts(await take(a, 1)) == texts(await take(b, 1)) == ["after both"]
        third = await open_without_the_pool(listener, room, None)  # now at the published seq
        c = batches_of(third)
        try:
            await insert(conn, room, "marker")
            for batches in (a, b, c):  # nothing repeated, nothing skipped
                assert texts(await take(batches, 1)) == ["marker"]
        finally:
            await c.aclose()
    finally:
        await a.aclose()
        await b.aclose()


async def test_a_resume_from_where_the_room_stands_reads_nothing_one_from_before_replays(
    listener: Listener, conn: Connection, room: Room,
    pool_held: Callable[[], Awaitable[None]],
) -> None:  # fmt: skip
    [zero] = await insert(conn, room, "zero")
    watcher = await Feed.open(listener, room.slug, None)
    w = batches_of(watcher)
    try:
        [one] = await insert(conn, room, "one")
        assert texts(await take(w, 1)) == ["one"]  # published: the room stands at ``one``
        behind = await Feed.open(listener, room.slug, zero)  # a page of the log: one
        await pool_held()
        current = await open_without_the_pool(listener, room, one)
        assert current.cursor == one
        c, b = batches_of(current), batches_of(behind)
        try:
            await insert(conn, room, "two")
            assert texts(await take(c, 1)) == ["two"]
            assert texts(await take(b, 2)) == ["one", "two"]
            assert texts(await take(w, 1)) == ["two"]
        finally:
            await c.aclose()
            await b.aclose()
    finally:
        await w.aclose()


@pytest.mark.usefixtures("listeners_back")  # every listener on the database is ended
async def test_an_open_during_a_listener_outage_gets_what_the_outage_held(
    make_listener: Callable[..., Awaitable[Listener]], conn: Connection, room: Room,
    db_url: str, pool_held: Callable[[], Awaitable[None]],
) -> None:  # fmt: skip
    """The position is stale while the listener is away: a stream opened then from it
    receives what was written meanwhile (after its open's "now", or just before it), once,
    in order, with what comes after."""
    listener = await make_listener(backoff_initial=2.0)
    watcher = await Feed.open(listener, room.slug, None)
    w = batches_of(watcher)
    try:
        await asyncio.to_thread(terminate, db_url, LISTENER)
        await wait_until_async(lambda: not listener.connected, what="the listener is away")
        during = await insert(conn, room, "during 1", "during 2")
        await pool_held()
        late = await open_without_the_pool(listener, room, None)
        assert late.cursor < during[0]  # stale: the log moved on while nobody listened
        lt = batches_of(late)
        try:
            await wait_until_async(lambda: listener.connected, what="the listener is back")
            await insert(conn, room, "marker")
            for batches in (w, lt):
                assert texts(await take(batches, 3)) == ["during 1", "during 2", "marker"]
        finally:
            await lt.aclose()
    finally:
        await w.aclose()


async def test_a_room_left_by_its_last_stream_forgets_its_position(
    listener: Listener, conn: Connection, room: Room
) -> None:
    """Bells that ring while nobody here watches the room are not read: once its last
    stream has gone, the next open must read the log again."""
    feed = await Feed.open(listener, room.slug, None)
    assert listener.fanout.handled(room.slug) == feed.cursor
    feed.close()
    assert listener.fanout.handled(room.slug) is None
    [written] = await insert(conn, room, "while nobody watched")
    again = await Feed.open(listener, room.slug, None)
    assert again.cursor == written
    again.close()
