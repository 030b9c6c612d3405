"""chat/feed.py on the database alone: one client's feed, replay then live, without a server.

A real Listener LISTENs on the test database and fans out to real Subscriptions; writes are
plain SQL on another connection, so every event comes the way it does in production:
trigger, NOTIFY at COMMIT, listener, feed. No HTTP.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any

import psycopg
import pytest

from chat import history
from chat.feed import CursorAhead, Feed
from chat.listener import Listener
from chat.models import Room
from chat.sse import EPHEMERAL, Frame, ephemeral

from .helpers import DEADLINE, wait_until_async

Connection = psycopg.AsyncConnection[Any]
Batches = AsyncGenerator[list[Frame] | None, None]
QUIET = 3600.0  # heartbeat seconds: no keepalive (a None batch) unless a test asks for one


@pytest.fixture
async def conn(db_url: str) -> AsyncIterator[Connection]:
    """The writer (and reader of the log), as psql would be."""
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        yield conn


@pytest.fixture
async def make_listener(
    db_url: str, read_pool: None
) -> AsyncIterator[Callable[..., Awaitable[Listener]]]:
    """Start a listener of this process's own (settings as keywords), LISTENing already."""
    started: list[Listener] = []

    async def make(**settings: Any) -> Listener:
        listener = Listener(db_url, **{"heartbeat_seconds": QUIET, **settings})
        started.append(listener)
        await listener.start()
        assert await listener.wait_connected(DEADLINE)
        return listener

    yield make
    for listener in started:
        await listener.stop()


@pytest.fixture
async def listener(make_listener: Callable[..., Awaitable[Listener]]) -> Listener:
    return await make_listener()


async def insert(conn: Connection, room: Room, *texts: str) -> list[int]:
    """One statement, one transaction, for all the texts; their cursors, in order."""
    await conn.execute(
        "INSERT INTO chat_chatmessage (room_id, author, text)"
        " SELECT %s, 'ops', t FROM unnest(%s::text[]) WITH ORDINALITY AS x(t, n) ORDER BY n",
        (room.slug, list(texts)),
    )
    return (await logged(conn, room))[-len(texts) :]


async def logged(conn: Connection, room: Room) -> list[int]:
    cur = await conn.execute(
        "SELECT seq FROM chat_messagechange WHERE room_id = %s ORDER BY seq", (room.slug,)
    )
    return [int(seq) for (seq,) in await cur.fetchall()]


async def next_batch(batches: Batches) -> list[Frame] | None:
    async with asyncio.timeout(DEADLINE):
        return await anext(batches)


async def take(batches: Batches, count: int) -> list[Frame]:
    """The next ``count`` frames, however they are batched."""
    frames: list[Frame] = []
    while len(frames) < count:
        frames += await next_batch(batches) or []
    return frames


def batches_of(feed: Feed) -> Batches:
    """``feed.batches()``, as the async generator it is (the test closes it: aclose)."""
    batches = feed.batches()
    assert isinstance(batches, AsyncGenerator)
    return batches


def texts(frames: list[Frame] | None) -> list[str]:
    return [frame.event.message["text"] for frame in frames or [] if frame.event is not None]


# -- replay, then live -----------------------------------------------------------------------


async def test_feed_replays_what_was_missed_then_goes_live(
    listener: Listener, conn: Connection, room: Room
) -> None:
    seen, *missed = await insert(conn, room, "seen", "missed 1", "missed 2")
    feed = await Feed.open(listener, room.slug, seen)
    batches = batches_of(feed)
    replayed = await next_batch(batches)
    assert ([f.seq for f in replayed or []], texts(replayed)) == (missed, ["missed 1", "missed 2"])
    [live_seq] = await insert(conn, room, "live")
    live = await next_batch(batches)
    assert ([f.seq for f in live or []], texts(live)) == ([live_seq], ["live"])
    assert feed.cursor == live_seq
    await batches.aclose()
    assert listener.subscriber_count == 0  # closing the feed left the fan-out


async def test_feed_from_now_replays_nothing(
    listener: Listener, conn: Connection, room: Room
) -> None:
    [old] = await insert(conn, room, "old news")
    feed = await Feed.open(listener, room.slug, None)
    assert feed.cursor == old
    batches = batches_of(feed)
    await insert(conn, room, "new")
    assert texts(await next_batch(batches)) == ["new"]  # "old news" would have come first
    await batches.aclose()


async def test_feed_replays_a_long_absence_in_pages_in_order(
    listener: Listener, conn: Connection, room: Room
) -> None:
    count = history.REPLAY_BATCH * 2 + 1
    await conn.execute(
        "INSERT INTO chat_chatmessage (room_id, author, text)"
        " SELECT %s, 'bulk', 'n' || g FROM generate_series(1, %s) g",
        (room.slug, count),
    )
    feed = await Feed.open(listener, room.slug, 0)
    batches = batches_of(feed)
    first = await next_batch(batches)
    assert len(first or []) == history.REPLAY_BATCH  # one page at a time
    frames = (first or []) + await take(batches, count - history.REPLAY_BATCH)
    assert [frame.seq for frame in frames] == await logged(conn, room)
    [marker] = await insert(conn, room, "marker")  # then live, with nothing repeated
    assert [frame.seq for frame in await next_batch(batches) or []] == [marker]
    await batches.aclose()


# -- the seam between replay and live --------------------------------------------------------


async def test_a_frame_both_replayed_and_buffered_live_is_given_once(
    listener: Listener, conn: Connection, room: Room, db_url: str
) -> None:
    """Subscribe first, then read the log (as Feed.open does): a change committed in between
    is in both. Here it is made so on purpose: buffered live, then read in the page too."""
    sub = listener.subscribe(room.slug, 0)
    [both] = await insert(conn, room, "in both")
    await wait_until_async(lambda: sub.seq == both)  # the listener buffered it
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as reader:
        page = await history.changes_after(reader, room.slug, 0)
    assert [event.seq for event in page.rows] == [both]
    batches = batches_of(Feed(listener, sub, page, 0))
    assert texts(await next_batch(batches)) == ["in both"]  # from the replay
    await insert(conn, room, "marker")
    assert texts(await next_batch(batches)) == ["marker"]  # the buffered copy was dropped
    await batches.aclose()


async def test_of_a_live_batch_only_what_the_replay_did_not_give_is_given(
    listener: Listener, conn: Connection, room: Room, db_url: str
) -> None:
    sub = listener.subscribe(room.slug, 0)
    [replayed] = await insert(conn, room, "replayed")
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as reader:
        page = await history.changes_after(reader, room.slug, 0)
    [fresh] = await insert(conn, room, "fresh")
    await wait_until_async(lambda: sub.seq == fresh)  # buffered: [replayed, fresh]
    batches = batches_of(Feed(listener, sub, page, 0))
    assert [f.seq for f in await next_batch(batches) or []] == [replayed]
    assert [f.seq for f in await next_batch(batches) or []] == [fresh]
    await insert(conn, room, "marker")
    assert texts(await next_batch(batches)) == ["marker"]
    await batches.aclose()


# -- refusals, falling behind, stopping ------------------------------------------------------


async def test_a_cursor_ahead_of_the_room_is_refused_and_leaves_no_subscriber(
    listener: Listener, conn: Connection, room: Room
) -> None:
    [latest] = await insert(conn, room, "only one")
    with pytest.raises(CursorAhead, match="ahead of room"):
        await Feed.open(listener, room.slug, latest + 1)
    assert listener.subscriber_count == 0
    at_latest = await Feed.open(listener, room.slug, latest)  # the latest itself is fine
    assert listener.subscriber_count == 1
    at_latest.close()
    assert listener.subscriber_count == 0


async def test_a_feed_that_fell_behind_catches_up_from_the_log_and_goes_live_again(
    make_listener: Callable[..., Awaitable[Listener]], conn: Connection, room: Room
) -> None:
    """Its buffer holds 2 frames; one transaction writes 5. The listener drops the feed from
    the fan-out (its buffer freed at once) and the feed, when read, reads the 5 from the
    log, subscribes again, and is live."""
    listener = await make_listener(queue_size=2)
    feed = await Feed.open(listener, room.slug, None)
    written = await insert(conn, room, *(f"burst {n}" for n in range(5)))
    await wait_until_async(lambda: listener.stats["slow_drops"] == 1)
    assert listener.subscriber_count == 0  # dropped: nothing is buffered for it any more
    batches = batches_of(feed)
    assert [frame.seq for frame in await take(batches, 5)] == written
    assert listener.subscriber_count == 1  # subscribed again
    [marker] = await insert(conn, room, "marker")
    assert [frame.seq for frame in await next_batch(batches) or []] == [marker]
    await batches.aclose()


async def test_a_feed_ends_when_its_listener_stops(
    listener: Listener, conn: Connection, room: Room
) -> None:
    feed = await Feed.open(listener, room.slug, None)
    batches = batches_of(feed)
    waiting = asyncio.ensure_future(next_batch(batches))
    await listener.stop()  # the server shuts down: the client resumes elsewhere
    with pytest.raises(StopAsyncIteration):
        await waiting


async def test_an_idle_feed_yields_none_for_a_keepalive(
    make_listener: Callable[..., Awaitable[Listener]], conn: Connection, room: Room
) -> None:
    listener = await make_listener(heartbeat_seconds=0.05)
    batches = batches_of(await Feed.open(listener, room.slug, None))
    assert await next_batch(batches) is None
    await insert(conn, room, "after the keepalive")
    async with asyncio.timeout(DEADLINE):
        while (batch := await anext(batches)) is None:
            pass  # more keepalives may come first: the heartbeat is short
    assert texts(batch) == ["after the keepalive"]
    await batches.aclose()


async def test_ephemeral_frames_pass_through_without_moving_the_cursor(
    listener: Listener, conn: Connection, room: Room
) -> None:
    """Typing and presence frames (no ``id:``) reach the feed between logged ones, in the
    order they were offered, and a frame already given is still dropped after them."""
    feed = await Feed.open(listener, room.slug, None)
    batches = batches_of(feed)
    try:
        [first] = await insert(conn, room, "one")
        assert [f.seq for f in await take(batches, 1)] == [first]
        [sub] = listener.fanout.subscriptions(room.slug)
        sub.offer_ephemeral(ephemeral("typing", {"room": room.slug, "user": "ann"}))
        [second] = await insert(conn, room, "two")
        frames = await take(batches, 2)
        assert [f.seq for f in frames] == [EPHEMERAL, second]
        assert b"id:" not in frames[0].data
        sub.offer_ephemeral(ephemeral("typing", {"room": room.slug, "user": "bob"}))
        sub.offer(frames[1])  # a logged frame given already: dropped, as always
        assert [f.seq for f in await take(batches, 1)] == [EPHEMERAL]
        assert feed.cursor == second
    finally:
        await batches.aclose()
