"""``GET /search/events``: live saved searches against a real server, real psql writes and
a real SSE client: matches arrive live with snippets, others do not, private rooms and
removed members get nothing, a resume replays what matched while away exactly once, and
bad queries are refused as ``GET /search`` refuses them.

"Nothing else came" is proved with a later matching marker: events are read up to it.
Every test searches for words made up for it, so other tests' messages never match.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable

import httpx
import psycopg
import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import AbstractUser

from bench.sse_client import Event, SSEClient, SSEError
from chat.models import Room

from .helpers import DEADLINE, session_cookies, unique
from .servers import Browserless, Server, insert_sql, psql

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


def word() -> str:
    return "s" + uuid.uuid4().hex[:12]


async def open_search(
    server: Server,
    q: str,
    cookies: dict[str, str] | None = None,
    *,
    room: str | None = None,
    last_event_id: str | None = None,
) -> SSEClient:
    query = str(httpx.QueryParams({"q": q} | ({"room": room} if room else {})))
    headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in (cookies or {}).items())}
    return await SSEClient.open(
        server.host,
        server.port,
        f"/search/events?{query}",
        headers=headers if cookies else {},
        last_event_id=last_event_id,
        timeout=DEADLINE,
    )


async def until(client: SSEClient, last_text: str) -> list[Event]:
    """The matches up to (and with) the one whose text is ``last_text``."""
    seen: list[Event] = []
    async with asyncio.timeout(DEADLINE):
        while True:
            event = await client.next_event()
            seen.append(event)
            if event.json()["text"] == last_text:
                return seen


def texts(events: list[Event]) -> list[str]:
    assert {event.name for event in events} == {"search.match"}
    return [event.json()["text"] for event in events]


def make_room(*, private: bool = False) -> Room:
    return Room.objects.create(slug=unique("saved"), title="T", is_private=private)


@pytest.fixture
async def reader(make_user: Callable[..., AbstractUser]) -> AbstractUser:
    return await sync_to_async(make_user)("seeker")


@pytest.fixture
async def public_room() -> str:
    return (await sync_to_async(make_room)()).slug


async def test_a_matching_psql_insert_arrives_live_and_others_do_not(
    server: Server, db_url: str, reader: AbstractUser, public_room: str
) -> None:
    w = word()
    stream = await open_search(server, w, await session_cookies(server.url, reader.username))
    try:
        assert stream.headers["content-type"] == "text/event-stream"
        assert (await server.health_async())[1]["saved_searches"] >= 1
        await psql(
            db_url,
            insert_sql(public_room, f"deploy {w} went fine"),
            insert_sql(public_room, "deploy went fine without it"),  # no match
            insert_sql(public_room, f"{w}x is another word"),  # no match: a word, not a prefix
            insert_sql(public_room, f"marker {w}"),
        )
        events = await until(stream, f"marker {w}")
        assert texts(events) == [f"deploy {w} went fine", f"marker {w}"]
        first = events[0].json()
        assert first["room"] == public_room
        assert first["author"] == "ops"
        assert {"id", "created_at", "edited_at", "deleted_at", "sender_id"} <= set(first)
        assert {"text": w, "match": True} in first["snippet"]
        assert "".join(part["text"] for part in first["snippet"]) == f"deploy {w} went fine"
        assert events[-1].id is not None
        assert events[-1].id.startswith("p1.")
    finally:
        await stream.aclose()


async def test_web_search_syntax_and_room_filter(
    server: Server, db_url: str, reader: AbstractUser, public_room: str
) -> None:
    a, b, other = word(), word(), await sync_to_async(make_room)()
    cookies = await session_cookies(server.url, reader.username)
    stream = await open_search(server, f'"{a} {b}" -nope', cookies, room=public_room)
    try:
        await psql(
            db_url,
            insert_sql(public_room, f"{b} {a} reversed"),  # not the phrase
            insert_sql(public_room, f"{a} {b} nope"),  # left out
            insert_sql(other.slug, f"{a} {b} elsewhere"),  # another room
            insert_sql(public_room, f"{a} {b} marker"),
        )
        assert texts(await until(stream, f"{a} {b} marker")) == [f"{a} {b} marker"]
    finally:
        await stream.aclose()


async def test_private_rooms_reach_members_only_and_stop_at_removal(
    server: Server,
    db_url: str,
    reader: AbstractUser,
    make_user: Callable[..., AbstractUser],
    public_room: str,
) -> None:
    member = await sync_to_async(make_user)("insider")
    private = (await sync_to_async(make_room)(private=True)).slug
    await psql(
        db_url,
        f"INSERT INTO chat_room_members (room_id, user_id) VALUES ('{private}', {member.pk})",
    )
    w = word()
    outsider = await open_search(server, w, await session_cookies(server.url, reader.username))
    insider = await open_search(server, w, await session_cookies(server.url, member.username))
    anonymous = await open_search(server, w)
    try:
        await psql(
            db_url,
            insert_sql(private, f"secret {w}"),
            insert_sql(public_room, f"first marker {w}"),
        )
        assert texts(await until(insider, f"first marker {w}")) == [
            f"secret {w}",
            f"first marker {w}",
        ]
        assert texts(await until(outsider, f"first marker {w}")) == [f"first marker {w}"]
        assert texts(await until(anonymous, f"first marker {w}")) == [f"first marker {w}"]
        # Removed: the next match in the room no longer reaches them; the stream goes on.
        await psql(
            db_url,
            f"DELETE FROM chat_room_members WHERE room_id = '{private}' AND user_id = {member.pk}",
        )
        await psql(
            db_url,
            insert_sql(private, f"after removal {w}"),
            insert_sql(public_room, f"second marker {w}"),
        )
        assert texts(await until(insider, f"second marker {w}")) == [f"second marker {w}"]
    finally:
        for stream in (outsider, insider, anonymous):
            await stream.aclose()


async def test_resume_replays_the_matches_committed_while_away_once(
    server: Server, db_url: str, reader: AbstractUser, public_room: str
) -> None:
    w = word()
    cookies = await session_cookies(server.url, reader.username)
    stream = await open_search(server, w, cookies)
    await psql(db_url, insert_sql(public_room, f"seen {w}"))
    seen = await until(stream, f"seen {w}")
    token = seen[-1].id
    assert token is not None
    await stream.aclose()
    await psql(
        db_url,
        insert_sql(public_room, f"away one {w}"),
        insert_sql(public_room, "away, no match"),
        insert_sql(public_room, f"away two {w}"),
    )
    resumed = await open_search(server, w, cookies, last_event_id=token)
    try:
        await psql(db_url, insert_sql(public_room, f"live {w}"))
        assert texts(await until(resumed, f"live {w}")) == [
            f"away one {w}",
            f"away two {w}",
            f"live {w}",
        ]
    finally:
        await resumed.aclose()


async def test_a_match_committing_late_is_not_lost(
    server: Server, db_url: str, reader: AbstractUser, public_room: str
) -> None:
    """A match that takes its cursor first but commits after the client's token: the resume
    delivers it (the token is a snapshot, not a cursor)."""
    w, other = word(), (await sync_to_async(make_room)()).slug
    cookies = await session_cookies(server.url, reader.username)
    stream = await open_search(server, w, cookies)
    async with await psycopg.AsyncConnection.connect(db_url) as held:
        await held.execute(insert_sql(public_room, f"slow {w}"))  # not committed yet
        await psql(db_url, insert_sql(other, f"fast {w}"))
        assert texts(await until(stream, f"fast {w}")) == [f"fast {w}"]
        token = await until_token(stream)
        await stream.aclose()
        await held.commit()
    resumed = await open_search(server, w, cookies, last_event_id=token)
    try:
        await psql(db_url, insert_sql(other, f"marker {w}"))
        assert texts(await until(resumed, f"marker {w}")) == [f"slow {w}", f"marker {w}"]
    finally:
        await resumed.aclose()


async def until_token(stream: SSEClient) -> str:
    token = stream.last_event_id
    assert token is not None
    return token


async def test_bad_queries_are_refused_as_search_refuses_them(
    server: Server, reader: AbstractUser
) -> None:
    private = (await sync_to_async(make_room)(private=True)).slug
    cookies = await session_cookies(server.url, reader.username)
    bad = {
        "": 400,
        "   ": 400,
        "x" * 10_000: 400,
        "-only": 400,
        "!!! ...": 400,
    }
    for q, status in bad.items():
        with pytest.raises(SSEError) as refused:
            await open_search(server, q, cookies)
        assert refused.value.status == status, q[:20]
        assert "error" in json.loads(refused.value.body)
    async with httpx.AsyncClient(base_url=server.url, timeout=DEADLINE, cookies=cookies) as client:
        assert (await client.get("/search/events")).status_code == 400
        answer = await client.get("/search/events", params={"q": "a", "last_event_id": "nonsense"})
        assert answer.status_code == 400
        assert "error" in answer.json()
        for room in (private, "no-such-room", "bad slug!"):
            answer = await client.get("/search/events", params={"q": "a", "room": room})
            assert answer.status_code == 404, room
            assert "error" in answer.json()
        assert (await client.post("/search/events", params={"q": "a"})).status_code in (403, 405)


async def test_logging_out_or_deactivation_ends_the_stream(
    server: Server, db_url: str, make_user: Callable[..., AbstractUser]
) -> None:
    leaving = await sync_to_async(make_user)("leaving")
    async with Browserless(server.url) as client:
        await client.login(leaving.username)
        stream = await open_search(server, word(), dict(client.client.cookies.items()))
        assert (await client.request("POST", "/accounts/logout/")).status_code in (200, 302)
        await ended(stream)
        await stream.aclose()
    deactivated = await sync_to_async(make_user)("deactivated")
    stream = await open_search(
        server, word(), await session_cookies(server.url, deactivated.username)
    )
    await psql(db_url, f"UPDATE auth_user SET is_active = false WHERE id = {deactivated.pk}")
    await ended(stream)
    await stream.aclose()


async def ended(stream: SSEClient) -> None:
    """Wait (within the deadline) for the server to end the stream."""
    async with asyncio.timeout(DEADLINE):
        try:
            while True:
                await stream.next_event()
        except EOFError:
            return
