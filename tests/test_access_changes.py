"""Access changes reach open streams, on every worker, whoever writes them (psql here).

A member removed, a room made private, deleted (and re-created by someone else), a session
logged out or deleted, a password or staff flag changed: the streams concerned end, and the
message committed right after the change never reaches them, while the streams that keep
access receive it. "Never reaches them" is proved by ordering, not by waiting: the change and
the later message are committed in that order, and a stream either ends or gets the message.

Two workers, several streams each: each worker's own listener must act on the bell.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import AbstractUser, User

from bench.sse_client import SSEClient, SSEError
from chat.models import Room

from .helpers import DEADLINE, PASSWORD, running_servers, unique
from .servers import (
    Browserless,
    Server,
    insert_sql,
    kill_listeners,
    psql,
    wait_for_server_backends_gone,
)

STREAMS_PER_VIEWER = 6  # spread over the two workers by the kernel


@pytest.fixture(scope="module")
def two_workers(db_url: str) -> Iterator[Server]:
    # Other servers of the suite (the session's) may hold sessions too: leave theirs.
    before = running_servers(db_url)
    server = Server(db_url, workers=2).start()
    yield server
    server.stop()
    wait_for_server_backends_gone(db_url, running=before)


@pytest.fixture
def private_room() -> Room:
    return Room.objects.create(slug=unique("secret"), title="Secret", is_private=True)


async def logged_in(server: Server, user: AbstractUser) -> Browserless:
    client = Browserless(server.url)
    await client.__aenter__()
    await client.login(user.username, PASSWORD)
    return client


def cookie(client: Browserless) -> dict[str, str]:
    return {"Cookie": f"sessionid={client.client.cookies['sessionid']}"}


async def streams(server: Server, room: str, headers: dict[str, str] | None = None) -> list[Any]:
    return list(
        await asyncio.gather(
            *(server.stream(room, headers=headers or {}) for _ in range(STREAMS_PER_VIEWER))
        )
    )


async def ends_without(stream: SSEClient, text: str) -> None:
    """The stream ends (EOF) before any event carrying ``text`` arrives."""
    async with asyncio.timeout(DEADLINE):
        while True:
            try:
                event = await stream.next_event()
            except EOFError:
                return
            assert text not in event.data, f"{text!r} reached a stream that lost access"


async def receives(stream: SSEClient, text: str) -> None:
    async with asyncio.timeout(DEADLINE):
        while (await stream.next_event()).json().get("text") != text:  # presence has none
            pass


@pytest.fixture
async def closing() -> AsyncIterator[list[SSEClient]]:
    opened: list[SSEClient] = []
    yield opened
    await asyncio.gather(*(s.aclose() for s in opened))


async def test_removed_member_stops_receiving_the_room(
    two_workers: Server,
    private_room: Room,
    make_user: Callable[..., User],
    db_url: str,
    closing: list[Any],
) -> None:
    alice, bob = await sync_to_async(make_user)("alice"), await sync_to_async(make_user)("bob")
    await private_room.members.aadd(alice, bob)
    alice_client, bob_client = (
        await logged_in(two_workers, alice),
        await logged_in(two_workers, bob),
    )
    gone = await streams(two_workers, private_room.slug, cookie(alice_client))
    [stays] = (await streams(two_workers, private_room.slug, cookie(bob_client)))[:1]
    closing += [*gone, stays]
    await psql(
        db_url,
        f"DELETE FROM chat_room_members WHERE room_id = '{private_room.slug}'"
        f" AND user_id = {alice.pk}",
        insert_sql(private_room.slug, "after alice left"),
    )
    await asyncio.gather(*(ends_without(s, "after alice left") for s in gone))
    await receives(stays, "after alice left")
    for client in (alice_client, bob_client):
        await client.__aexit__(None, None, None)


async def test_room_made_private_ends_anonymous_streams_but_not_members(
    two_workers: Server, room: Room, make_user: Callable[..., User], db_url: str, closing: list[Any]
) -> None:
    alice = await sync_to_async(make_user)("alice")
    await room.members.aadd(alice)
    alice_client = await logged_in(two_workers, alice)
    anonymous = await streams(two_workers, room.slug)
    member = await two_workers.stream(room.slug, headers=cookie(alice_client))
    closing += [*anonymous, member]
    await psql(
        db_url,
        f"UPDATE chat_room SET is_private = true WHERE slug = '{room.slug}'",
        insert_sql(room.slug, "members only now"),
    )
    await asyncio.gather(*(ends_without(s, "members only now") for s in anonymous))
    await receives(member, "members only now")
    # ...and a reconnect is refused exactly as for a room that does not exist.
    with pytest.raises(SSEError) as refused:
        await two_workers.stream(room.slug)
    assert refused.value.status == 404
    await alice_client.__aexit__(None, None, None)


@pytest.mark.usefixtures("listeners_back")  # every server's listener is killed
async def test_access_lost_while_the_listener_was_away_ends_the_stream_first(
    make_server: Callable[..., Server], room: Room, db_url: str, closing: list[Any]
) -> None:
    """The access bell went while no LISTEN was up: the reconnect re-checks the streams
    before it hands out what was written meanwhile, so the message committed after the
    change still never reaches the stream that lost access."""
    server = make_server(CHAT_LISTENER_BACKOFF="5")  # a window to write in while it is away
    stream = await server.stream(room.slug)
    closing.append(stream)
    await psql(db_url, insert_sql(room.slug, "before"))
    await receives(stream, "before")
    await kill_listeners(db_url)
    await server.wait_health_async(503)  # away: the bell below is heard by nobody
    await psql(
        db_url,
        f"UPDATE chat_room SET is_private = true WHERE slug = '{room.slug}'",
        insert_sql(room.slug, "members only now"),
    )
    await server.wait_health_async(200)  # back, caught up
    await ends_without(stream, "members only now")


async def test_room_deleted_and_recreated_private_by_another_user(
    two_workers: Server, room: Room, make_user: Callable[..., User], db_url: str, closing: list[Any]
) -> None:
    mallory = await sync_to_async(make_user)("mallory")
    anonymous = await streams(two_workers, room.slug)
    closing += anonymous
    await psql(
        db_url,
        f"DELETE FROM chat_room WHERE slug = '{room.slug}'",
        f"INSERT INTO chat_room (slug, title, is_private) VALUES ('{room.slug}', 'mine', true)",
        f"INSERT INTO chat_room_members (room_id, user_id) VALUES ('{room.slug}', {mallory.pk})",
        insert_sql(room.slug, "the new owner's secret"),
    )
    await asyncio.gather(*(ends_without(s, "the new owner's secret") for s in anonymous))


async def test_log_out_ends_the_sessions_private_streams(
    two_workers: Server,
    private_room: Room,
    make_user: Callable[..., User],
    db_url: str,
    closing: list[Any],
) -> None:
    alice = await sync_to_async(make_user)("alice")
    await private_room.members.aadd(alice)
    alice_client = await logged_in(two_workers, alice)
    opened = await streams(two_workers, private_room.slug, cookie(alice_client))
    closing += opened
    response = await alice_client.request("POST", "/accounts/logout/")
    assert response.status_code in (200, 302)
    await psql(db_url, insert_sql(private_room.slug, "after log-out"))
    await asyncio.gather(*(ends_without(s, "after log-out") for s in opened))
    await alice_client.__aexit__(None, None, None)


async def test_sessions_deleted_from_psql_end_their_streams(
    two_workers: Server,
    private_room: Room,
    make_user: Callable[..., User],
    db_url: str,
    closing: list[Any],
) -> None:
    alice = await sync_to_async(make_user)("alice")
    await private_room.members.aadd(alice)
    alice_client = await logged_in(two_workers, alice)
    key = alice_client.client.cookies["sessionid"]
    opened = await streams(two_workers, private_room.slug, cookie(alice_client))
    closing += opened
    await psql(  # what the admin's session delete or `clearsessions` does
        db_url,
        f"DELETE FROM django_session WHERE session_key = '{key}'",
        insert_sql(private_room.slug, "after the session"),
    )
    await asyncio.gather(*(ends_without(s, "after the session") for s in opened))
    await alice_client.__aexit__(None, None, None)


@pytest.mark.parametrize(
    "change",
    [
        "UPDATE auth_user SET is_staff = false WHERE id = {id}",
        "UPDATE auth_user SET is_active = false WHERE id = {id}",
        "UPDATE auth_user SET password = 'changed elsewhere' WHERE id = {id}",
    ],
)
async def test_a_staff_users_change_ends_their_private_streams(
    change: str,
    two_workers: Server,
    private_room: Room,
    make_user: Callable[..., User],
    db_url: str,
    closing: list[Any],
) -> None:
    staff = await sync_to_async(make_user)(
        "staff", staff=True
    )  # not a member: staff read every room
    staff_client = await logged_in(two_workers, staff)
    opened = await streams(two_workers, private_room.slug, cookie(staff_client))
    closing += opened
    await psql(db_url, change.format(id=staff.pk), insert_sql(private_room.slug, "after"))
    await asyncio.gather(*(ends_without(s, "after") for s in opened))
    await staff_client.__aexit__(None, None, None)


async def test_unrelated_access_bells_leave_streams_alone(
    two_workers: Server,
    room: Room,
    private_room: Room,
    make_user: Callable[..., User],
    db_url: str,
    closing: list[Any],
) -> None:
    alice = await sync_to_async(make_user)("alice")
    await private_room.members.aadd(alice, await sync_to_async(make_user)("bob"))
    alice_client = await logged_in(two_workers, alice)
    public = await streams(two_workers, room.slug, cookie(alice_client))
    member = await two_workers.stream(private_room.slug, headers=cookie(alice_client))
    closing += [*public, member]
    await psql(
        db_url,
        # someone else removed from alice's private room; a forged access bell; any log-out
        f"DELETE FROM chat_room_members WHERE room_id = '{private_room.slug}'"
        f" AND user_id <> {alice.pk}",
        f"""NOTIFY chat, '{{"kind": "access", "room": "{room.slug}"}}'""",
        """NOTIFY chat, '{"kind": "sessions"}'""",
        insert_sql(room.slug, "still here"),
        insert_sql(private_room.slug, "still a member"),
    )
    await asyncio.gather(*(receives(s, "still here") for s in public))
    await receives(member, "still a member")
    await alice_client.__aexit__(None, None, None)


async def test_periodic_recheck_ends_a_stream_whose_session_expired(
    make_server: Callable[..., Server],
    private_room: Room,
    make_user: Callable[..., User],
    db_url: str,
    closing: list[Any],
) -> None:
    # An expiry rings no bell (no row changes); the sweep is what catches it.
    server = make_server(CHAT_ACCESS_RECHECK_SECONDS="1", CHAT_SSE_HEARTBEAT="1")
    alice = await sync_to_async(make_user)("alice")
    await private_room.members.aadd(alice)
    alice_client = await logged_in(server, alice)
    key = alice_client.client.cookies["sessionid"]
    stream = await server.stream(private_room.slug, headers=cookie(alice_client))
    closing.append(stream)
    await psql(
        db_url,
        f"UPDATE django_session SET expire_date = now() - interval '1 second'"
        f" WHERE session_key = '{key}'",
    )
    await ends_without(stream, "never sent")
    await alice_client.__aexit__(None, None, None)
