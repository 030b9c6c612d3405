"""``GET /events``: one stream for all of a user's rooms, resumable by an opaque snapshot
token; against a real server (one or two hypercorn workers), real psql and psycopg writers.

"Nothing else came" is proved with a later marker message: events are read up to it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import httpx
import psycopg
import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import AbstractUser

from bench.sse_client import Event, SSEClient, SSEError
from chat.models import Room
from chat.position import MAX_TOKEN_CHARS, decode

from .helpers import DEADLINE, session_cookies, unique
from .servers import Server, insert_sql, psql

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


async def open_events(
    server: Server, cookies: dict[str, str], *, last_event_id: str | None = None
) -> SSEClient:
    cookie = "; ".join(f"{name}={value}" for name, value in cookies.items())
    return await SSEClient.open(
        server.host,
        server.port,
        "/events",
        headers={"Cookie": cookie},
        last_event_id=last_event_id,
        timeout=DEADLINE,
    )


async def until(client: SSEClient, done: Callable[[Event], bool], rooms: set[str]) -> list[Event]:
    """Events of ``rooms`` (others' tests write to the lobby) up to the first ``done`` one."""
    seen: list[Event] = []
    async with asyncio.timeout(DEADLINE):
        while True:
            event = await client.next_event()
            if json.loads(event.data).get("room") not in rooms:
                continue
            seen.append(event)
            if done(event):
                return seen


def text_is(text: str) -> Callable[[Event], bool]:
    return lambda event: event.name == "message.created" and event.json()["text"] == text


def summary(events: list[Event]) -> list[tuple[str, str, str]]:
    return [(e.name, e.json()["room"], e.json().get("text", "")) for e in events]


def make_room(*, private: bool = False) -> Room:
    return Room.objects.create(slug=unique("room"), title="T", is_private=private)


@pytest.fixture
async def member(make_user: Callable[..., AbstractUser]) -> AbstractUser:
    return await sync_to_async(make_user)("reader")


@pytest.fixture
async def two_rooms(member: AbstractUser, db_url: str) -> tuple[str, str]:
    a, b = await sync_to_async(make_room)(), await sync_to_async(make_room)()
    await join(db_url, member, a.slug, b.slug)
    return a.slug, b.slug


async def join(db_url: str, user: AbstractUser, *slugs: str) -> None:
    values = ", ".join(f"('{slug}', {user.pk})" for slug in slugs)
    await psql(db_url, f"INSERT INTO chat_room_members (room_id, user_id) VALUES {values}")


async def test_anonymous_is_refused_and_bad_tokens_are_400(
    server: Server, member: AbstractUser
) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=DEADLINE) as client:
        anonymous = await client.get("/events")
        assert anonymous.status_code == 403
        assert "error" in anonymous.json()
    cookies = await session_cookies(server.url, member.username)
    for bad in ("42", "p1.!!", "p1." + "A" * (MAX_TOKEN_CHARS + 10), "p1.gICAgICAgICAgICAgAE"):
        with pytest.raises(SSEError) as refused:
            await open_events(server, cookies, last_event_id=bad)
        assert refused.value.status == 400, bad
        assert "error" in json.loads(refused.value.body)
    async with httpx.AsyncClient(base_url=server.url, timeout=DEADLINE, cookies=cookies) as client:
        assert (await client.get("/events?last_event_id=nonsense")).status_code == 400
        assert (await client.post("/events")).status_code == 405


async def test_live_events_of_every_joined_room_carry_the_room(
    server: Server, db_url: str, member: AbstractUser, two_rooms: tuple[str, str]
) -> None:
    a, b = two_rooms
    stream = await open_events(server, await session_cookies(server.url, member.username))
    try:
        assert stream.headers["content-type"] == "text/event-stream"
        await psql(db_url, insert_sql(a, "in a"), insert_sql(b, "in b"))
        events = await until(stream, text_is("in b"), {a, b})
        assert summary(events) == [
            ("message.created", a, "in a"),
            ("message.created", b, "in b"),
        ]
        assert events[-1].id is not None
        assert events[-1].id.startswith("p1.")
    finally:
        await stream.aclose()


async def test_rooms_committing_out_of_order_resume_exactly_once(
    server: Server, db_url: str, member: AbstractUser, two_rooms: tuple[str, str]
) -> None:
    """A's insert takes its cursor first but commits last; the stream has B's already."""
    a, b = two_rooms
    cookies = await session_cookies(server.url, member.username)
    stream = await open_events(server, cookies)
    async with await psycopg.AsyncConnection.connect(db_url) as held:
        await held.execute(insert_sql(a, "slow a"))  # in a transaction, not committed
        await psql(db_url, insert_sql(b, "fast b"))
        got = await until(stream, text_is("fast b"), {a, b})
        assert summary(got) == [("message.created", b, "fast b")]
        token = got[-1].id
        assert token is not None
        await stream.aclose()
        await held.commit()
    resumed = await open_events(server, cookies, last_event_id=token)
    try:
        await psql(db_url, insert_sql(b, "marker"))
        after = await until(resumed, text_is("marker"), {a, b})
        assert summary(after) == [
            ("message.created", a, "slow a"),
            ("message.created", b, "marker"),
        ]
    finally:
        await resumed.aclose()


async def test_rooms_committing_out_of_order_on_an_open_stream(
    server: Server, db_url: str, member: AbstractUser, two_rooms: tuple[str, str]
) -> None:
    a, b = two_rooms
    stream = await open_events(server, await session_cookies(server.url, member.username))
    try:
        async with await psycopg.AsyncConnection.connect(db_url) as held:
            await held.execute(insert_sql(a, "slow a"))
            await psql(db_url, insert_sql(b, "fast b"))
            assert summary(await until(stream, text_is("fast b"), {a, b})) == [
                ("message.created", b, "fast b")
            ]
            await held.commit()
        await psql(db_url, insert_sql(b, "marker"))
        assert summary(await until(stream, text_is("marker"), {a, b})) == [
            ("message.created", a, "slow a"),
            ("message.created", b, "marker"),
        ]
    finally:
        await stream.aclose()


async def test_a_transaction_over_two_rooms_comes_whole_and_is_not_repeated(
    server: Server, db_url: str, member: AbstractUser, two_rooms: tuple[str, str]
) -> None:
    a, b = two_rooms
    cookies = await session_cookies(server.url, member.username)
    stream = await open_events(server, cookies)
    await psql(db_url, "BEGIN", insert_sql(a, "one"), insert_sql(b, "two"), "COMMIT")
    got = await until(stream, text_is("two"), {a, b})
    assert summary(got) == [("message.created", a, "one"), ("message.created", b, "two")]
    assert got[0].id is None  # a resume cannot split the transaction
    assert got[1].id is not None
    await stream.aclose()
    resumed = await open_events(server, cookies, last_event_id=got[1].id)
    try:
        await psql(db_url, insert_sql(a, "marker"))
        assert summary(await until(resumed, text_is("marker"), {a, b})) == [
            ("message.created", a, "marker")
        ]
    finally:
        await resumed.aclose()


async def test_a_long_absence_replays_in_pages_in_each_rooms_order(
    server: Server, db_url: str, member: AbstractUser, two_rooms: tuple[str, str]
) -> None:
    """More transactions than a replay page: every one, once, in order; a resume from a
    token in the middle of the replay continues where it stopped."""
    a, b = two_rooms
    cookies = await session_cookies(server.url, member.username)
    stream = await open_events(server, cookies)
    await psql(db_url, insert_sql(a, "start"))
    token = (await until(stream, text_is("start"), {a, b}))[-1].id
    await stream.aclose()
    count = 450  # history.REPLAY_TRANSACTIONS is 200: three pages
    await psql(
        db_url,
        *(insert_sql(a if i % 2 else b, f"m{i}") for i in range(count)),
    )
    resumed = await open_events(server, cookies, last_event_id=token)
    got = await until(resumed, text_is(f"m{count - 1}"), {a, b})
    assert [e.json()["text"] for e in got] == [f"m{i}" for i in range(count)]
    middle = got[250]
    assert middle.id is None or middle.id.startswith("p1.")
    ids = [i for i, e in enumerate(got) if e.id]
    cut = ids[0]  # the end of the first page: a partial position
    position = decode(got[cut].id)
    assert position is not None
    assert position.target is not None
    await resumed.aclose()
    again = await open_events(server, cookies, last_event_id=got[cut].id)
    try:
        await psql(db_url, insert_sql(a, "marker"))
        rest = await until(again, text_is("marker"), {a, b})
        assert [e.json()["text"] for e in rest] == [
            *(f"m{i}" for i in range(cut + 1, count)),
            "marker",
        ]
    finally:
        await again.aclose()
