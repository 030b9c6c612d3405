"""chat/feed.py's order at open: subscribe, then check access, then read.

An access check reads a snapshot; a change committed after that snapshot, whose bell the
listener handles before the open subscribes, would leave a stream the check let in on a
room it may no longer read. Checked once subscribed, the bell finds the stream and the
gatekeeper ends it. Here the check is made to lose that race on purpose: it lets the open
in only after the room has been made private and the listener has handled the bell.
"""

from __future__ import annotations

import asyncio

import pytest

from chat.feed import Feed
from chat.listener import Listener
from chat.models import Room

from .helpers import DEADLINE, wait_until_async
from .test_feed import Connection, batches_of, conn, insert, listener, make_listener

__all__ = ["conn", "listener", "make_listener"]  # fixtures, used by name


async def test_an_access_change_during_the_check_ends_the_stream(
    listener: Listener, conn: Connection, room: Room
) -> None:
    revoked = listener.stats["revoked"]

    async def check_that_read_before_the_change() -> None:
        await conn.execute("UPDATE chat_room SET is_private = true WHERE slug = %s", (room.slug,))
        # The listener handles the access bell while this check is still "reading": it
        # must find the stream already subscribed, and end it.
        await wait_until_async(lambda: listener.stats["revoked"] > revoked, what="a revocation")

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

    async def refuse() -> None:
        raise Refused

    with pytest.raises(Refused):
        await Feed.open(listener, room.slug, 10**9, authorize=refuse)  # far ahead of the log
    assert listener.fanout.subscriptions(room.slug) == []
