"""End to end: any writer -> trigger -> NOTIFY -> listener -> SSE -> a real client.

A real hypercorn subprocess, a real PostgreSQL, a real psql, a raw-socket SSE client.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from django.contrib.auth.models import AbstractUser, User

from bench.sse_client import SSEClient, SSEError
from chat.db import POOL_MAX_SIZE
from chat.models import ChatMessage, Room

from .helpers import DEADLINE, LISTENER, sessions, wait_until_async
from .servers import Browserless, Server, admin_save_message, insert_sql, logged_seqs, psql


async def test_orm_create_reaches_subscriber(room_stream: SSEClient, room: Room) -> None:
    message = await ChatMessage.objects.acreate(room=room, author="ada", text="from the ORM")
    event = await room_stream.next_event(DEADLINE)
    assert event.name == "message.created"
    assert event.json() == {
        "id": message.pk,
        "room": room.slug,
        "author": "ada",
        "sender_id": None,
        "text": "from the ORM",
        "created_at": event.json()["created_at"],
        "edited_at": None,
        "deleted_at": None,
    }
    assert [event.cursor] == await logged_seqs(room.slug)


async def test_stream_opens_with_retry_and_sse_headers(room_stream: SSEClient, room: Room) -> None:
    assert room_stream.status == 200
    assert room_stream.headers["content-type"].startswith("text/event-stream")
    assert room_stream.headers["cache-control"] == "no-cache"
    assert room_stream.headers["x-accel-buffering"] == "no"
    marker = await ChatMessage.objects.acreate(room=room, author="ada", text="marker")
    event = await room_stream.next_event(DEADLINE)
    assert event.json()["id"] == marker.pk  # nothing happened in the room before: no event
    assert room_stream.retry_ms == 2000


async def test_keepalive_comment_is_sent_when_idle(room_stream: SSEClient, room: Room) -> None:
    reading = asyncio.create_task(room_stream.next_event())  # counts comments as it reads
    try:
        # CHAT_SSE_HEARTBEAT=1 in the test server
        await wait_until_async(lambda: room_stream.comments >= 1 or reading.done())
        assert not reading.done(), reading.result()  # a comment, not an event
        marker = await ChatMessage.objects.acreate(room=room, author="ada", text="marker")
        async with asyncio.timeout(DEADLINE):
            event = await reading
    finally:
        reading.cancel()
    assert event.json()["id"] == marker.pk  # the keepalive dispatched no event of its own


async def test_http_post_by_logged_in_user_reaches_subscriber(
    room_stream: SSEClient, room: Room, alice: Browserless, alice_user: User
) -> None:
    response = await alice.request("POST", f"/rooms/{room.slug}/messages", json={"text": "hi"})
    assert response.status_code == 201, response.text
    posted = response.json()
    event = await room_stream.next_event(DEADLINE)
    assert (event.name, event.json()) == ("message.created", posted)
    assert posted["author"] == alice_user.username
    assert posted["sender_id"] == alice_user.pk


async def test_form_post_works_too(room_stream: SSEClient, room: Room, alice: Browserless) -> None:
    response = await alice.request(
        "POST", f"/rooms/{room.slug}/messages", data={"text": "form-encoded"}
    )
    assert response.status_code == 201, response.text
    event = await room_stream.next_event(DEADLINE)
    assert event.json()["text"] == "form-encoded"


@pytest.fixture
def moderator(make_user: Callable[..., User]) -> User:
    return make_user("mod", staff=True)


async def test_admin_add_form_reaches_subscriber(
    server: Server, room_stream: SSEClient, room: Room, moderator: AbstractUser
) -> None:
    async with Browserless(server.url) as mod:
        await mod.login(moderator.username)
        await admin_save_message(
            mod,
            "/admin/chat/chatmessage/add/",
            room=room.slug,
            author="moderator",
            text="from the admin",
        )
    event = await room_stream.next_event(DEADLINE)
    assert (event.name, event.json()["text"]) == ("message.created", "from the admin")


async def test_admin_edit_form_sends_update(
    server: Server, room_stream: SSEClient, room: Room, moderator: AbstractUser
) -> None:
    message = await ChatMessage.objects.acreate(room=room, author="ada", text="typo")
    await room_stream.next_event(DEADLINE)
    async with Browserless(server.url) as mod:
        await mod.login(moderator.username)
        await admin_save_message(
            mod,
            f"/admin/chat/chatmessage/{message.pk}/change/",
            author="ada",
            text="fixed by a moderator",
        )
    event = await room_stream.next_event(DEADLINE)
    assert event.name == "message.updated"
    assert event.json()["text"] == "fixed by a moderator"
    assert event.json()["edited_at"] is not None


async def test_psql_insert_update_delete_reach_subscriber(
    room_stream: SSEClient, room: Room, db_url: str
) -> None:
    await psql(
        db_url,
        insert_sql(room.slug, "hello"),
    )
    created = await room_stream.next_event(DEADLINE)
    assert (created.name, created.json()["author"], created.json()["text"]) == (
        "message.created",
        "ops",
        "hello",
    )
    message_id = created.json()["id"]
    await psql(
        db_url, f"UPDATE chat_chatmessage SET text = 'hello, edited' WHERE id = {message_id}"
    )
    updated = await room_stream.next_event(DEADLINE)
    assert updated.name == "message.updated"
    assert updated.json()["text"] == "hello, edited"
    assert updated.json()["edited_at"] is not None  # stamped by the trigger, not by psql
    await psql(db_url, f"DELETE FROM chat_chatmessage WHERE id = {message_id}")
    deleted = await room_stream.next_event(DEADLINE)
    assert deleted.name == "message.deleted"
    assert deleted.json()["id"] == message_id
    assert deleted.json()["text"] == ""  # a deleted text is never sent again
    assert deleted.json()["deleted_at"] is not None
    assert [created.cursor, updated.cursor, deleted.cursor] == await logged_seqs(room.slug)


async def test_api_delete_is_soft_and_announced(
    room_stream: SSEClient, room: Room, alice: Browserless
) -> None:
    posted = (
        await alice.request("POST", f"/rooms/{room.slug}/messages", json={"text": "oops"})
    ).json()
    await room_stream.next_event(DEADLINE)
    response = await alice.request("DELETE", f"/rooms/{room.slug}/messages/{posted['id']}")
    assert response.status_code == 200, response.text
    event = await room_stream.next_event(DEADLINE)
    assert (event.name, event.json()["id"], event.json()["text"]) == (
        "message.deleted",
        posted["id"],
        "",
    )
    row = await ChatMessage.objects.aget(pk=posted["id"])
    assert row.deleted_at is not None
    assert row.text == "oops"  # moderators still see it in the admin


async def test_events_never_reach_another_rooms_subscribers(server: Server, room: Room) -> None:
    other = await Room.objects.acreate(slug=f"{room.slug}-other")
    here, there = await server.stream(room.slug), await server.stream(other.slug)
    try:
        await ChatMessage.objects.acreate(room=other, author="ada", text="for the other room")
        await ChatMessage.objects.acreate(room=room, author="ada", text="marker")
        assert (await there.next_event(DEADLINE)).json()["text"] == "for the other room"
        # The marker was written after the other room's message: had that leaked here, it
        # would arrive first.
        assert (await here.next_event(DEADLINE)).json()["text"] == "marker"
    finally:
        await here.aclose()
        await there.aclose()


async def test_rolled_back_insert_sends_nothing(
    room_stream: SSEClient, room: Room, db_url: str
) -> None:
    await psql(
        db_url,
        "BEGIN",
        insert_sql(room.slug, "ghost"),
        "ROLLBACK",
    )
    marker = await ChatMessage.objects.acreate(room=room, author="ada", text="marker")
    event = await room_stream.next_event(DEADLINE)
    assert (event.json()["id"], event.json()["text"]) == (marker.pk, "marker")  # no ghost first


async def test_unknown_room_stream_is_404_json(server: Server) -> None:
    with pytest.raises(SSEError) as refused:
        await server.stream("no-such-room")
    assert refused.value.status == 404
    assert b'"error"' in refused.value.body


async def test_200_subscribers_share_one_listen_connection(
    server: Server, room: Room, db_url: str
) -> None:
    """The server is the session's, shared: counts are its streams of this room, and the
    database sessions that appeared while they opened (a previous test's server may still
    be ending its own)."""
    before = {session.pid: session for session in sessions(db_url)}
    clients = await asyncio.gather(*(server.stream(room.slug) for _ in range(200)))
    try:
        assert await asyncio.to_thread(server.room_subscribers, room.slug) == 200
        after = sessions(db_url)
        new = [session for session in after if session.pid not in before]
        assert [s for s in new if s.application_name == LISTENER] == []  # still one LISTEN
        # No connection per subscriber: at most its read pool grew to its size.
        assert len(new) <= POOL_MAX_SIZE, new
        message = await ChatMessage.objects.acreate(room=room, author="ada", text="to all")
        events = await asyncio.gather(*(c.next_event(DEADLINE) for c in clients))
        assert {e.json()["id"] for e in events} == {message.pk}
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))
    await wait_until_async(lambda: server.room_subscribers(room.slug) == 0)  # gone at once


async def test_csrf_missing_token_is_refused(
    server: Server, room: Room, alice: Browserless
) -> None:
    response = await alice.client.post(f"/rooms/{room.slug}/messages", json={"text": "no token"})
    assert response.status_code == 403
    assert "CSRF" in response.json()["error"]
    assert not await ChatMessage.objects.filter(room=room).aexists()


async def test_anonymous_post_is_refused(server: Server, room: Room) -> None:
    async with Browserless(server.url) as anonymous:
        response = await anonymous.request(
            "POST", f"/rooms/{room.slug}/messages", json={"text": "who am I"}
        )
    assert response.status_code == 403
    assert response.json() == {"error": "log in to post"}
    assert not await ChatMessage.objects.filter(room=room).aexists()


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({"text": ""}, 400, "text must not be empty"),
        ({"text": "  \n\t "}, 400, "text must not be empty"),
        ({}, 400, "text is required and must be a string"),
        ({"text": 42}, 400, "text is required and must be a string"),
        ({"text": "x" * 4001}, 413, "text is 4001 characters; the limit is 4000"),
        ({"text": "nul\x00byte"}, 400, "text must not contain NUL characters"),
    ],
)
async def test_invalid_text_is_refused_and_nothing_written(
    room: Room, alice: Browserless, body: dict[str, object], status: int, error: str
) -> None:
    response = await alice.request("POST", f"/rooms/{room.slug}/messages", json=body)
    assert (response.status_code, response.json()) == (status, {"error": error})
    assert not await ChatMessage.objects.filter(room=room).aexists()


async def test_malformed_json_is_400(room: Room, alice: Browserless) -> None:
    response = await alice.request(
        "POST",
        f"/rooms/{room.slug}/messages",
        content=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["error"].startswith("body is not valid JSON")


async def test_wrong_method_is_405_json(room: Room, alice: Browserless) -> None:
    response = await alice.request("PUT", f"/rooms/{room.slug}/messages")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, POST"
    assert "not allowed" in response.json()["error"]


async def test_4000_character_text_is_accepted(room: Room, alice: Browserless) -> None:
    response = await alice.request(
        "POST", f"/rooms/{room.slug}/messages", json={"text": "é" * 4000}
    )
    assert response.status_code == 201
    assert response.json()["text"] == "é" * 4000


async def test_room_page_renders_for_a_logged_in_user(
    room: Room, alice: Browserless, alice_user: User
) -> None:
    """The template reads the lazy user, session and flash messages: none of it may run
    on the event loop (Django refuses: a 500)."""
    response = await alice.client.get(f"/rooms/{room.slug}/")
    assert response.status_code == 200
    assert alice_user.username in response.text
    assert '"cursor": 0' in response.text


async def test_room_page_renders_for_an_anonymous_reader(server: Server, room: Room) -> None:
    async with Browserless(server.url) as anonymous:
        response = await anonymous.client.get(f"/rooms/{room.slug}/")
    assert response.status_code == 200
    assert "to write." in response.text
