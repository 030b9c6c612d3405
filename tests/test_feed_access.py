"""chat/feed.py's order at open: subscribe, then check access, then read; and the check's
memory of rooms anyone may read (chat/gatekeeper.py ``admit``).

An access check reads a snapshot; a change committed after that snapshot, whose bell the
listener handles before the open subscribes, would leave a stream the check let in on a
room it may no longer read. Checked once subscribed, the bell finds the stream and the
gatekeeper ends it. Here checks are made to lose that race on purpose: they let the open
in only after the room has been made private and the listener has handled the bell.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from django.contrib.auth.models import AnonymousUser

from chat import rooms
from chat.feed import Feed
from chat.listener import Listener
from chat.models import Room
from chat.rooms import RoomNotFound

from .helpers import DEADLINE, LISTENER, terminate, wait_until_async
from .test_feed import Connection, batches_of, conn, insert, listener, make_listener, texts
from .test_feed_handled import pool_held

__all__ = ["conn", "listener", "make_listener", "pool_held"]  # fixtures, used by name


async def make_private(conn: Connection, listener: Listener, room: Room, *, ending: int) -> None:
    """Commit the change and wait until the listener has handled its bell (``ending``
    streams of the room ended by it)."""
    revoked = listener.stats["revoked"]
    await conn.execute("UPDATE chat_room SET is_private = true WHERE slug = %s", (room.slug,))
    await wait_until_async(
        lambda: listener.stats["revoked"] >= revoked + ending, what="the bell handled"
    )


async def test_an_access_change_during_the_check_ends_the_stream(
    listener: Listener, conn: Connection, room: Room
) -> None:
    async def check_that_read_before_the_change(replays: bool) -> None:
        # The listener handles the access bell while this check is still "reading": it
        # must find the stream already subscribed, and end it.
        await make_private(conn, listener, room, ending=1)

    feed = await Feed.open(listener, room.slug, None, authorize=check_that_read_before_the_change)
    batches = batches_of(feed)
    await insert(conn, room, "members only now")
    async with asyncio.timeout(DEADLINE):
        assert [batch async for batch in batches] == []  # ended, and nothing reached it
    assert listener.fanout.subscriptions(room.slug) == []


async def test_a_refused_open_reads_nothing_and_holds_nothing(
    listener: Listener, conn: Connection, room: Room
) -> None:
    """A refusal comes before any read: no error about the cursor (which would tell the
    log's length), and no subscription left behind."""

    class Refused(Exception):
        pass

    async def refuse(replays: bool) -> None:
        raise Refused

    with pytest.raises(Refused):
        await Feed.open(listener, room.slug, 10**9, authorize=refuse)  # far ahead of the log
    assert listener.fanout.subscriptions(room.slug) == []


# -- rooms anyone may read, remembered until an access change (Gatekeeper.admit) ----------


def admit(listener: Listener, room: Room) -> Callable[[bool], Awaitable[None]]:
    """The stream's check for an anonymous visitor, as chat/stream.py passes it."""
    return lambda replays: listener.gatekeeper.admit(
        AnonymousUser(), room.slug, remembered=not replays
    )


async def test_a_public_room_is_asked_about_once_until_an_access_change(
    listener: Listener, conn: Connection, room: Room,
    pool_held: Callable[[], Awaitable[None]],
) -> None:  # fmt: skip
    first = await Feed.open(listener, room.slug, None, authorize=admit(listener, room))
    await pool_held()  # from here on, an open that asked the database would wait forever
    async with asyncio.timeout(DEADLINE):
        second = await Feed.open(listener, room.slug, None, authorize=admit(listener, room))
    assert listener.fanout.subscriptions(room.slug) != []
    first.close()
    second.close()


async def test_an_access_change_makes_the_next_open_ask_again(
    listener: Listener, conn: Connection, room: Room
) -> None:
    watcher = await Feed.open(listener, room.slug, None, authorize=admit(listener, room))
    await make_private(conn, listener, room, ending=1)
    assert listener.fanout.subscriptions(room.slug) == []
    with pytest.raises(RoomNotFound):
        await Feed.open(listener, room.slug, None, authorize=admit(listener, room))
    watcher.close()


async def test_an_answer_read_before_an_access_change_is_not_remembered(
    listener: Listener, conn: Connection, room: Room, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check reads "anyone may read it", then the room is made private and its bell
    handled before the check returns: that open is ended by the bell, and the answer must
    not admit the next open."""
    real = rooms.readable_by

    async def readable_then_made_private(user: rooms.AnyUser, slug: str) -> bool:
        anyone = await real(user, slug)
        await make_private(conn, listener, room, ending=1)  # ends this very open's stream
        return anyone

    monkeypatch.setattr(rooms, "readable_by", readable_then_made_private)
    racing = await Feed.open(listener, room.slug, None, authorize=admit(listener, room))
    monkeypatch.setattr(rooms, "readable_by", real)
    assert listener.fanout.subscriptions(room.slug) == []
    with pytest.raises(RoomNotFound):
        await Feed.open(listener, room.slug, None, authorize=admit(listener, room))
    racing.close()


# -- a replay asks the rule in each page's own snapshot ------------------------------------


@pytest.mark.usefixtures("listeners_back")  # every listener on the database is ended
async def test_a_resume_after_an_access_change_the_listener_missed_is_refused(
    make_listener: Callable[..., Awaitable[Listener]], conn: Connection, room: Room,
    db_url: str,
) -> None:  # fmt: skip
    """The gatekeeper remembers the room as public and no bell can tell it otherwise (the
    listener is away): a resume, which reads messages, must not be let in from memory."""
    listener = await make_listener(backoff_initial=5.0)
    await insert(conn, room, "public")  # so a resume from 0 replays (FanOut.handled is past it)
    watcher = await Feed.open(listener, room.slug, None, authorize=admit(listener, room))
    await asyncio.to_thread(terminate, db_url, LISTENER)
    await wait_until_async(lambda: not listener.connected, what="the listener is away")
    await conn.execute("UPDATE chat_room SET is_private = true WHERE slug = %s", (room.slug,))
    await insert(conn, room, "SECRET")
    with pytest.raises(RoomNotFound):
        await Feed.open(listener, room.slug, 0, authorize=admit(listener, room))
    watcher.close()


async def test_a_replay_read_after_an_access_change_is_refused(
    listener: Listener, conn: Connection, room: Room
) -> None:
    """The check reads "anyone may read it"; then the room is made private, the bell
    handled and a secret written, all before the open reads its first page."""
    await insert(conn, room, "public")

    async def check_then_change(replays: bool) -> None:
        assert await rooms.readable_by(AnonymousUser(), room.slug)  # anyone may, still
        await make_private(conn, listener, room, ending=1)  # ends this very open's stream
        await insert(conn, room, "SECRET")

    with pytest.raises(RoomNotFound):
        await Feed.open(listener, room.slug, 0, authorize=check_then_change)
    assert listener.fanout.subscriptions(room.slug) == []


async def test_a_stream_dropped_as_slow_does_not_come_back_to_a_room_it_lost(
    make_listener: Callable[..., Awaitable[Listener]], conn: Connection, room: Room
) -> None:
    """Dropped from the fan-out, a stream is no subscription for an access bell to end;
    when its client reads again, its replay must ask the rule before anything else."""
    listener = await make_listener(queue_size=2)
    feed = await Feed.open(listener, room.slug, None, authorize=admit(listener, room))
    batches = batches_of(feed)
    await insert(conn, room, *(f"m{i}" for i in range(10)))  # more than its buffer holds
    await wait_until_async(lambda: listener.stats["slow_drops"] >= 1, what="the drop")
    # Another stream, for the bell to end: the sign that the listener has handled it.
    witness = await Feed.open(listener, room.slug, None, authorize=admit(listener, room))
    await make_private(conn, listener, room, ending=1)
    await insert(conn, room, "SECRET")
    async with asyncio.timeout(DEADLINE):
        got = [text for batch in [b async for b in batches] for text in texts(batch)]
    assert "SECRET" not in got
    assert set(got) <= {f"m{i}" for i in range(10)}  # only what was written before
    assert listener.fanout.subscriptions(room.slug) == []
    witness.close()
