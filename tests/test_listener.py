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
from chat.stream import _frames
from chat.subscription import Subscription

from .helpers import DEADLINE, wait_until_async


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


# -- the view's two ways of writing a stream (chat/stream.py, _frames) ----------------------


def open_feed() -> tuple[Listener, Subscription, Feed]:
    listener = Listener("dbname=never-connected")  # the fan-out alone: no LISTEN needed
    sub = listener.subscribe("r", 0)
    return listener, sub, Feed(listener, sub, Page(0, [], False), 0)


async def test_stream_writes_live_frames_straight_to_the_servers_send() -> None:
    listener, sub, feed = open_feed()
    sent: list[dict[str, object]] = []

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    body = _frames(feed, send)
    assert await anext(body) == RETRY  # Django sends this one, after the headers
    rest = asyncio.ensure_future(anext(body))
    sub.offer(frame(1))
    await wait_until_async(lambda: len(sent) >= 1)
    sub.offer(frame(2))
    sub.offer(frame(3))
    await wait_until_async(lambda: len(sent) >= 2)
    assert sent == [
        {"type": "http.response.body", "body": b"id: 1\n\n", "more_body": True},
        {"type": "http.response.body", "body": b"id: 2\n\nid: 3\n\n", "more_body": True},
    ]
    listener.unsubscribe(sub)  # as at shutdown: the body ends, Django sends the last part
    with pytest.raises(StopAsyncIteration):
        async with asyncio.timeout(DEADLINE):
            await rest
    assert listener.subscriber_count == 0


async def test_stream_without_the_servers_send_yields_every_part_to_django() -> None:
    listener, sub, feed = open_feed()
    body = _frames(feed, None)
    assert await anext(body) == RETRY
    sub.offer(frame(1))
    sub.offer(frame(2))
    async with asyncio.timeout(DEADLINE):
        assert await anext(body) == b"id: 1\n\nid: 2\n\n"
        sub.heartbeat()  # frames came since the last tick: not idle yet
        sub.heartbeat()  # nothing since: idle
        assert await anext(body) == KEEPALIVE
    await body.aclose()  # the client left: Django closes the body
    assert listener.subscriber_count == 0
