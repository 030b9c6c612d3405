"""The event stream's own ASGI endpoint (chat/stream.py, routed by config/asgi.py): what
Django's request cycle did for it (methods, Host, session, errors as JSON) it still does, and
Django's middleware, which no longer sees it, cannot break it."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Iterator

import httpx
import psycopg
import pytest
from django.contrib.auth.models import AbstractUser, User

from bench.sse_client import SSEError
from chat.models import ChatMessage, Room

from .helpers import DEADLINE, PASSWORD, unique, wait_until_async
from .servers import Browserless, Server, database_url


async def test_a_method_other_than_get_is_405_json_with_allow(server: Server, room: Room) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=DEADLINE) as client:
        response = await client.post(f"/rooms/{room.slug}/events")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET"
    assert response.json() == {"error": "method POST not allowed; use GET"}


def test_a_host_outside_allowed_hosts_is_400_json(server: Server, room: Room) -> None:
    """Raw socket: the Host header goes on the wire as written."""
    request = (
        f"GET /rooms/{room.slug}/events HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection((server.host, server.port), timeout=DEADLINE) as sock:
        sock.sendall(request)
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ")
    assert b"content-type: application/json" in head.lower()
    assert (
        httpx.Response(400, content=body)
        .json()["error"]
        .startswith("bad request: Invalid HTTP_HOST header: 'evil.example'")
    )


@pytest.fixture
def people(make_user: Callable[..., User]) -> tuple[Room, AbstractUser, AbstractUser]:
    """A private room, its one member, and a stranger."""
    private = Room.objects.create(slug=unique("private"), title="S", is_private=True)
    member, stranger = make_user("member"), make_user("stranger")
    private.members.add(member)
    return private, member, stranger


async def test_a_member_streams_a_private_room_and_others_are_refused(
    server: Server, people: tuple[Room, AbstractUser, AbstractUser]
) -> None:
    """A private room's check reads the session from the cookie, and the user behind it."""
    private, member, stranger = people
    async with Browserless(server.url) as member_client, Browserless(server.url) as other:
        await member_client.login(member.username, PASSWORD)
        await other.login(stranger.username, PASSWORD)
        cookie = {"Cookie": f"sessionid={member_client.client.cookies['sessionid']}"}
        stream = await server.stream(private.slug, headers=cookie)
        message = await ChatMessage.objects.acreate(room=private, author="ops", text="hush")
        assert (await stream.next_event(DEADLINE)).json()["id"] == message.pk
        await stream.aclose()
        cookie = {"Cookie": f"sessionid={other.client.cookies['sessionid']}"}
        with pytest.raises(SSEError) as refused:
            await server.stream(private.slug, headers=cookie)
    assert refused.value.status == 404  # exactly as for a room that does not exist
    assert httpx.Response(404, content=refused.value.body).json() == {
        "error": f"no room {private.slug!r}"
    }


async def test_a_client_that_leaves_is_unsubscribed_at_once(server: Server, room: Room) -> None:
    streams = await asyncio.gather(*(server.stream(room.slug) for _ in range(5)))
    # The room's own count: the session server's process-wide one moves with other tests'
    # streams, whose closes may still be on their way.
    assert await asyncio.to_thread(server.room_subscribers, room.slug) == 5
    await asyncio.gather(*(stream.aclose() for stream in streams))
    await wait_until_async(lambda: server.room_subscribers(room.slug) == 0)


async def test_a_stream_still_works_with_a_body_rewriting_middleware(
    make_server: Callable[..., Server], room: Room
) -> None:
    """With GZipMiddleware in MIDDLEWARE (a common deployment choice), Django's pages are
    compressed and the stream is not: it never passes through Django's middleware."""
    server = make_server(DJANGO_SETTINGS_MODULE="tests.gzip_settings")
    async with httpx.AsyncClient(base_url=server.url, timeout=DEADLINE) as client:
        page = await client.get("/rooms/", headers={"Accept-Encoding": "gzip"})
    assert page.headers["content-encoding"] == "gzip"  # the middleware is on
    stream = await server.stream(room.slug, headers={"Accept-Encoding": "gzip"})
    assert "content-encoding" not in stream.headers
    message = await ChatMessage.objects.acreate(room=room, author="ops", text="plain")
    event = await stream.next_event(DEADLINE)
    assert (event.name, event.json()["id"]) == ("message.created", message.pk)
    await stream.aclose()


@pytest.fixture
def schemaless_database(db_url: str) -> Iterator[str]:
    """A database with no tables: every read of the stream's open fails in PostgreSQL."""
    name = unique("schemaless").replace("-", "_")
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield database_url(name)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def test_a_database_error_is_503_json_with_retry_after(
    make_server: Callable[..., Server], schemaless_database: str
) -> None:
    server = make_server(schemaless_database)
    async with httpx.AsyncClient(base_url=server.url, timeout=DEADLINE) as client:
        response = await client.get("/rooms/lobby/events")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "2"
    assert response.json() == {"error": "the database is unavailable; retry shortly"}
    assert "database unavailable opening a stream" in server.log_tail()
    assert "Traceback" not in server.log_tail(200)
