"""Notifications are untrusted input: any role that can connect may ``NOTIFY chat``.

A forged notification may at worst cost a read: it never delivers what the log does not hold
for that room, and never moves a cursor past the log. Each test forges with psql, then writes
a real marker message: the next event must be exactly that marker, with its real cursor, and
the stream must keep delivering after it.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from bench.sse_client import SSEClient
from chat.models import ChatMessage, Room

from .helpers import DEADLINE, unique
from .servers import Server, insert_sql, logged_seqs, psql


def notify(payload: dict[str, Any] | str) -> str:
    text = payload if isinstance(payload, str) else json.dumps(payload)
    return "NOTIFY chat, '" + text.replace("'", "''") + "'"


@pytest.fixture
def secret() -> ChatMessage:
    private = Room.objects.create(slug=unique("vault"), is_private=True)
    return ChatMessage.objects.create(room=private, author="boss", text="the vault code is 1234")


async def next_is_marker(stream: SSEClient, room: Room, db_url: str, text: str) -> None:
    await psql(db_url, insert_sql(room.slug, text))
    event = await stream.next_event(DEADLINE)
    assert event.json()["text"] == text  # nothing forged came first
    assert event.cursor == (await logged_seqs(room.slug))[-1]  # and its cursor is the log's


async def test_forged_stub_naming_a_private_message_delivers_nothing(
    room_stream: SSEClient, room: Room, secret: ChatMessage, db_url: str
) -> None:
    # The old listener read any message id a stub named, whatever its room.
    forged = {"room": room.slug, "seq": 10**6, "op": "created", "id": secret.pk, "truncated": True}
    await psql(db_url, notify(forged))
    await next_is_marker(room_stream, room, db_url, "marker after a forged stub")


async def test_forged_content_is_never_delivered(
    room_stream: SSEClient, room: Room, db_url: str
) -> None:
    forged = {
        "room": room.slug,
        "seq": 10**6,
        "op": "created",
        "id": 1,
        "message": {"id": 1, "room": room.slug, "author": "admin", "text": "send me your password"},
    }
    await psql(db_url, notify(forged), notify({"kind": "message", "room": room.slug, **forged}))
    await next_is_marker(room_stream, room, db_url, "marker after forged content")


async def test_forged_huge_cursor_does_not_freeze_the_room(
    room_stream: SSEClient, room: Room, db_url: str
) -> None:
    # The old listener took the cursor from the payload and then ignored every real event
    # below it, for every current and future subscriber of the room.
    huge = 9_000_000_000_000_000_000
    message = {"id": 1, "room": room.slug, "author": "x", "text": "forged"}
    old_style = {"room": room.slug, "seq": huge, "op": "created", "id": 1, "message": message}
    await psql(
        db_url,
        notify({"kind": "message", "room": room.slug, "seq": huge}),
        notify(old_style),
    )
    await next_is_marker(room_stream, room, db_url, "first after the forgery")
    await next_is_marker(room_stream, room, db_url, "second after the forgery")


@pytest.mark.parametrize(
    "payload",
    [
        "not json",
        '{"kind": "message", "room": 5}',
        '{"kind": "user", "user": "everyone"}',
        '{"kind": "access"}',
        "x" * 7999,
    ],
)
async def test_garbage_notifications_are_ignored(
    payload: str, room_stream: SSEClient, room: Room, db_url: str, server: Server
) -> None:
    ignored_before = server.health()[1]["counters"].get("invalid_payloads", 0)
    await psql(db_url, notify(payload))
    await next_is_marker(room_stream, room, db_url, "marker after garbage")
    assert server.health()[1]["counters"]["invalid_payloads"] > ignored_before


async def test_a_writer_without_public_in_its_search_path_can_still_write(
    room_stream: SSEClient, room: Room, db_url: str
) -> None:
    text = "written with search_path = pg_catalog"
    await psql(
        db_url,
        "SET search_path = pg_catalog",
        "INSERT INTO public.chat_chatmessage (room_id, author, text)"
        f" VALUES ('{room.slug}', 'ops', '{text}')",
        f"UPDATE public.chat_chatmessage SET text = '{text}!' WHERE room_id = '{room.slug}'",
    )
    created = await room_stream.next_event(DEADLINE)
    updated = await room_stream.next_event(DEADLINE)
    assert (created.name, updated.name) == ("message.created", "message.updated")
    assert updated.json()["text"] == text + "!"
