"""Hops 2-4 without I/O: backoff, the per-stream buffer's contract, the stream's writes."""

from __future__ import annotations

import asyncio

import pytest

from chat.backoff import Backoff
from chat.events import ChatEvent
from chat.feed import Feed
from chat.history import Page
from chat.listener import Listener
from chat.sse import KEEPALIVE, RETRY, Frame
from chat.stream import _stream
from chat.subscription import Subscription

from .helpers import DEADLINE


def test_backoff_grows_exponentially_to_its_cap_with_jitter() -> None:
    backoff = Backoff(0.5)
    delays = [backoff.next_delay() for _ in range(10)]
    nominal = [0.5, 1, 2, 4, 8, 16, 30, 30, 30, 30]
    for delay, expected in zip(delays, nominal, strict=True):
        assert expected * 0.9 <= delay <= expected * 1.1


def test_backoff_refuses_a_non_positive_start() -> None:
    with pytest.raises(ValueError, match="positive"):
        Backoff(0)


def frame(seq: int) -> Frame:
    event = ChatEvent(room="r", seq=seq, op="created", message_id=seq, message={})
    return Frame(seq, f"id: {seq}\n\n".encode(), event)


async def test_subscription_hands_over_everything_buffered_at_once() -> None:
    sub = Subscription("r", 0, limit=10)
    assert sub.offer(frame(1))
    assert sub.offer(frame(2))
    assert [f.seq for f in await sub.next_frames() or []] == [1, 2]


async def test_subscription_ignores_what_it_was_already_given() -> None:
    sub = Subscription("r", 5, limit=10)  # replayed up to 5
    assert sub.offer(frame(4))  # accepted, but not buffered
    assert sub.offer(frame(6))
    assert [f.seq for f in await sub.next_frames() or []] == [6]


async def test_subscription_wakes_a_waiting_reader() -> None:
    sub = Subscription("r", 0, limit=10)
    reader = asyncio.create_task(sub.next_frames())
    await asyncio.sleep(0)  # one turn of the loop: the reader runs until it waits
    sub.offer(frame(1))
    async with asyncio.timeout(DEADLINE):
        assert [f.seq for f in await reader or []] == [1]


async def test_full_subscription_refuses_and_close_ends_the_reader() -> None:
    sub = Subscription("r", 0, limit=2)
    assert sub.offer(frame(1))
    assert sub.offer(frame(2))
    assert not sub.offer(frame(3))  # the listener then drops it
    sub.close(fell_behind=True)
    assert await sub.next_frames() is None
    assert sub.fell_behind


def test_subscription_limit_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Subscription("r", 0, limit=0)


async def test_heartbeat_wakes_an_idle_reader_with_an_empty_batch() -> None:
    sub = Subscription("r", 0, limit=10)
    reader = asyncio.create_task(sub.next_frames())
    await asyncio.sleep(0)  # one turn of the loop: the reader runs until it waits
    sub.heartbeat()  # nothing heard since the last tick
    async with asyncio.timeout(DEADLINE):
        assert await reader == []  # the view sends a keepalive


async def test_heartbeat_leaves_a_busy_reader_alone() -> None:
    sub = Subscription("r", 0, limit=10)
    sub.offer(frame(1))
    sub.heartbeat()  # it heard something this interval: no keepalive due
    assert [f.seq for f in await sub.next_frames() or []] == [1]
    reader = asyncio.create_task(sub.next_frames())
    await asyncio.sleep(0)  # one turn: the reader waits (a keepalive would end it)
    assert not reader.done()
    sub.heartbeat()  # a whole interval of quiet now
    async with asyncio.timeout(DEADLINE):
        assert await reader == []


# -- the stream endpoint's writes (chat/stream.py, _stream) ---------------------------------


def open_feed() -> tuple[Listener, Subscription, Feed]:
    listener = Listener("dbname=never-connected")  # the fan-out alone: no LISTEN needed
    sub = listener.subscribe("r", 0)
    return listener, sub, Feed(listener, sub, Page(0, [], False), 0)


class Client:
    """The ASGI server's side of one stream: what was sent, and a disconnect to trigger."""

    def __init__(self) -> None:
        self.sent: list[dict[str, object]] = []
        self.gone = asyncio.Event()

    async def receive(self) -> dict[str, object]:
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, object]) -> None:
        self.sent.append(message)

    def bodies(self) -> list[object]:
        return [m.get("body") for m in self.sent if m["type"] == "http.response.body"]

    async def wait_for_bodies(self, count: int) -> None:
        async with asyncio.timeout(2):
            while len(self.bodies()) < count:
                await asyncio.sleep(0)


async def test_stream_sends_head_retry_batches_keepalives_and_ends_with_the_feed() -> None:
    listener, sub, feed = open_feed()
    client = Client()
    stream = asyncio.create_task(_stream(feed, client.receive, client.send))
    await client.wait_for_bodies(1)
    assert client.sent[0]["type"] == "http.response.start"
    assert client.sent[0]["status"] == 200
    assert client.bodies() == [RETRY]
    sub.offer(frame(1))
    await client.wait_for_bodies(2)
    sub.offer(frame(2))
    sub.offer(frame(3))  # buffered together: one write
    await client.wait_for_bodies(3)
    sub.heartbeat()
    sub.heartbeat()  # nothing heard since the last tick: idle
    await client.wait_for_bodies(4)
    listener.unsubscribe(sub)  # as at shutdown: the feed ends, and so does the response
    async with asyncio.timeout(2):
        await stream
    assert client.bodies() == [RETRY, b"id: 1\n\n", b"id: 2\n\nid: 3\n\n", KEEPALIVE, b""]
    assert client.sent[-1]["more_body"] is False


async def test_stream_ends_its_feed_at_once_when_the_client_disconnects() -> None:
    listener, _, feed = open_feed()
    client = Client()
    stream = asyncio.create_task(_stream(feed, client.receive, client.send))
    await client.wait_for_bodies(1)
    client.gone.set()
    async with asyncio.timeout(2):
        await stream
    assert listener.subscriber_count == 0
    assert client.bodies() == [RETRY]  # nothing more is written to a client that left


async def test_a_closed_feed_that_fell_behind_does_not_subscribe_again() -> None:
    """The listener drops a slow stream, and its client leaves before the feed catches up:
    the feed must end, not subscribe again and read the log for nobody."""
    listener, sub, feed = open_feed()
    listener.unsubscribe(sub, fell_behind=True)
    feed.close()
    async with asyncio.timeout(2):
        assert [batch async for batch in feed.batches()] == []
    assert listener.subscriber_count == 0
