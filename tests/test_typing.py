"""Typing (issue 13): ``POST /rooms/<slug>/typing`` reaches the room's other streams (room
stream and /events) as ``typing``, without ``id:``; it is never written to the log, so a
resume never replays it; the server throttles it and refuses a flood (429); a forged bell
delivers nothing.

"Nothing else came" is proved with a later marker message.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import AbstractUser

from bench.sse_client import Event
from chat.models import MessageChange, Room

from .helpers import DEADLINE, session_cookies, unique
from .servers import Browserless, Server, conversation_until, insert_sql, psql
from .test_user_stream import join, open_events

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


def names(events: list[Event]) -> list[tuple[str, str]]:
    return [(e.name, e.json().get("user") or e.json().get("text")) for e in events]


def cookie_header(cookies: dict[str, str]) -> dict[str, str]:
    return {"Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())}


@pytest.fixture
async def users(make_user: Callable[..., AbstractUser]) -> tuple[AbstractUser, AbstractUser]:
    return await sync_to_async(make_user)("typist"), await sync_to_async(make_user)("watcher")


@pytest.fixture
async def typist(
    server: Server, users: tuple[AbstractUser, AbstractUser]
) -> AsyncIterator[Browserless]:
    async with Browserless(server.url) as client:
        await client.login(users[0].username)
        yield client


async def test_typing_reaches_the_other_streams_without_an_id(
    server: Server, db_url: str, room: Room, users: tuple[AbstractUser, AbstractUser],
    typist: Browserless,
) -> None:  # fmt: skip
    alice, bob = users
    await join(db_url, bob, room.slug)
    bob_cookies = await session_cookies(server.url, bob.username)
    alice_cookies = await session_cookies(server.url, alice.username)
    bob_room = await server.stream(room.slug, headers=cookie_header(bob_cookies))
    bob_events = await open_events(server, bob_cookies)
    anonymous = await server.stream(room.slug)
    alice_own = await server.stream(room.slug, headers=cookie_header(alice_cookies))
    try:
        response = await typist.request("POST", f"/rooms/{room.slug}/typing")
        assert response.status_code == 204
        await psql(db_url, insert_sql(room.slug, "marker"))
        for stream in (bob_room, bob_events, anonymous):
            events = await conversation_until(stream, "marker", room.slug)
            assert names(events) == [("typing", alice.username), ("message.created", "marker")]
            assert events[0].json() == {"room": room.slug, "user": alice.username}
            assert events[0].id is None
        # The typist's own stream is not told.
        assert names(await conversation_until(alice_own, "marker", room.slug)) == [
            ("message.created", "marker")
        ]
    finally:
        for stream in (bob_room, bob_events, anonymous, alice_own):
            await stream.aclose()


async def test_typing_is_never_replayed_on_resume(
    server: Server, db_url: str, room: Room, users: tuple[AbstractUser, AbstractUser],
    typist: Browserless,
) -> None:  # fmt: skip
    _, bob = users
    await join(db_url, bob, room.slug)
    cookies = await session_cookies(server.url, bob.username)
    room_stream = await server.stream(room.slug)
    user_stream = await open_events(server, cookies)
    await psql(db_url, insert_sql(room.slug, "before"))
    [before_room] = await conversation_until(room_stream, "before", room.slug)
    [before_user] = await conversation_until(user_stream, "before", room.slug)
    assert (await typist.request("POST", f"/rooms/{room.slug}/typing")).status_code == 204
    await psql(db_url, insert_sql(room.slug, "after"))
    # Live, both got it: the typing happened between the two messages.
    assert [e.name for e in await conversation_until(room_stream, "after", room.slug)] == [
        "typing",
        "message.created",
    ]
    assert [e.name for e in await conversation_until(user_stream, "after", room.slug)] == [
        "typing",
        "message.created",
    ]
    await room_stream.aclose()
    await user_stream.aclose()
    resumed_room = await server.stream(room.slug, last_event_id=before_room.cursor)
    resumed_user = await open_events(server, cookies, last_event_id=before_user.id)
    try:
        await psql(db_url, insert_sql(room.slug, "marker"))
        for stream in (resumed_room, resumed_user):
            assert names(await conversation_until(stream, "marker", room.slug)) == [
                ("message.created", "after"),
                ("message.created", "marker"),
            ]
    finally:
        await resumed_room.aclose()
        await resumed_user.aclose()
    # before, after, marker: typing is not in the log
    assert await MessageChange.objects.filter(room_id=room.slug).acount() == 3


async def test_typing_fans_out_once_per_throttle_interval(
    server: Server, db_url: str, room: Room, typist: Browserless
) -> None:
    stream = await server.stream(room.slug)
    try:
        for _ in range(3):  # well within the throttle's 2.5 s on any machine that runs this
            assert (await typist.request("POST", f"/rooms/{room.slug}/typing")).status_code == 204
        await psql(db_url, insert_sql(room.slug, "marker"))
        assert [e.name for e in await conversation_until(stream, "marker", room.slug)] == [
            "typing",
            "message.created",
        ]
    finally:
        await stream.aclose()


async def test_a_flood_of_typing_is_refused_with_429(
    server: Server, room: Room, typist: Browserless
) -> None:
    statuses = []
    for _ in range(100):
        response = await typist.request("POST", f"/rooms/{room.slug}/typing")
        statuses.append(response.status_code)
        if response.status_code == 429:
            assert int(response.headers["Retry-After"]) >= 1
            assert "error" in response.json()
            break
    assert statuses[-1] == 429, statuses
    assert set(statuses[:-1]) == {204}


async def test_typing_needs_a_signed_in_reader(
    server: Server, typist: Browserless, room: Room
) -> None:
    secret = await Room.objects.acreate(slug=unique("secret"), is_private=True)
    assert (await typist.request("POST", f"/rooms/{secret.slug}/typing")).status_code == 404
    assert (await typist.request("GET", f"/rooms/{room.slug}/typing")).status_code == 405
    async with httpx.AsyncClient(base_url=server.url, timeout=DEADLINE) as anonymous:
        await anonymous.get("/accounts/login/")
        token = anonymous.cookies.get("csrftoken") or ""
        refused = await anonymous.post(f"/rooms/{room.slug}/typing", headers={"X-CSRFToken": token})
        assert refused.status_code == 403


async def test_a_forged_typing_bell_delivers_nothing(
    server: Server, db_url: str, room: Room, users: tuple[AbstractUser, AbstractUser]
) -> None:
    alice, _ = users
    stream = await server.stream(room.slug)
    try:
        forged = f'{{"kind": "typing", "room": "{room.slug}", "user": {alice.pk}}}'
        await psql(db_url, f"NOTIFY chat, '{forged}'")
        # A row written by psql is a real signal (a database writer is trusted).
        await psql(
            db_url,
            f"INSERT INTO chat_typing (room_id, user_id) VALUES ('{room.slug}', {alice.pk})",
            insert_sql(room.slug, "marker"),
        )
        assert names(await conversation_until(stream, "marker", room.slug)) == [
            ("typing", alice.username),
            ("message.created", "marker"),
        ]
    finally:
        await stream.aclose()
