"""Idempotent posting (issue 11, point 10): a POST with an Idempotency-Key already used by the
same user gets the first answer again, byte for byte, and writes nothing, also when the two
requests race on two worker processes. The browser's side is in tests/test_browser_sending.py.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import AbstractUser, User
from django.db.models.functions import Now

from chat import idempotency
from chat.models import ChatMessage, IdempotentPost, Room

from .helpers import PASSWORD, unique
from .servers import Browserless, Server

MakeServer = Callable[..., Server]


@pytest.fixture
async def logged_in() -> AsyncIterator[Callable[..., Any]]:
    """Log a user in to a server; clients closed afterwards."""
    opened: list[Browserless] = []

    async def log_in(server: Server, user: AbstractUser) -> Browserless:
        client = Browserless(server.url)
        opened.append(client)
        await client.login(user.username, PASSWORD)
        return client

    yield log_in
    for client in opened:
        await client.client.aclose()


async def post(
    client: Browserless, room: Room, text: str, key: str | None = None
) -> httpx.Response:
    headers = {} if key is None else {"Idempotency-Key": key}
    return await client.request(
        "POST", f"/rooms/{room.slug}/messages", json={"text": text}, headers=headers
    )


async def rows(room: Room) -> int:
    return await ChatMessage.objects.filter(room=room).acount()


async def test_same_key_twice_writes_once_and_answers_the_same(
    server: Server, logged_in: Any, alice_user: User, room: Room
) -> None:
    alice = await logged_in(server, alice_user)
    key = str(uuid.uuid4())
    first = await post(alice, room, "only once", key)
    again = await post(alice, room, "only once", key)

    assert first.status_code == again.status_code == 201
    assert again.content == first.content  # the same message, byte for byte
    assert again.headers["Content-Type"] == "application/json"
    assert first.json()["text"] == "only once"
    assert await rows(room) == 1
    assert await IdempotentPost.objects.filter(sender=alice_user, key=key).acount() == 1


async def test_concurrent_requests_with_one_key_write_once(
    make_server: MakeServer, logged_in: Any, alice_user: User, room: Room
) -> None:
    """The race a retrying client makes when its first request is only slow: the database's
    unique (sender, key) decides, on either worker; every answer is the one message."""
    srv = make_server(workers=2)
    clients = [await logged_in(srv, alice_user) for _ in range(4)]  # separate connections
    key = str(uuid.uuid4())
    answers = await asyncio.gather(*(post(clients[i % 4], room, "raced", key) for i in range(12)))

    assert {a.status_code for a in answers} == {201}
    assert len({a.content for a in answers}) == 1
    assert await rows(room) == 1


async def test_the_same_key_from_two_users_is_two_posts(
    server: Server, logged_in: Any, make_user: Any, room: Room
) -> None:
    alice = await logged_in(server, await sync_to_async(make_user)("alice"))
    bob = await logged_in(server, await sync_to_async(make_user)("bob"))
    key = "shared-key"
    a, b = await post(alice, room, "same words", key), await post(bob, room, "same words", key)
    assert a.status_code == b.status_code == 201
    assert a.json()["id"] != b.json()["id"]
    assert await rows(room) == 2


async def test_a_key_reused_for_another_message_is_refused(
    server: Server, logged_in: Any, alice_user: User, room: Room
) -> None:
    alice = await logged_in(server, alice_user)
    key = str(uuid.uuid4())
    assert (await post(alice, room, "first", key)).status_code == 201
    other = await post(alice, room, "something else", key)
    assert other.status_code == 422
    assert "different message" in other.json()["error"]
    assert await rows(room) == 1


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("", "empty"),
        ("k" * 256, "the limit is 255"),
        ("two words", "visible ASCII"),
        ("clé", "visible ASCII"),  # sent as Latin-1 bytes, as HTTP allows
    ],
)
async def test_a_malformed_key_is_a_400_and_writes_nothing(
    server: Server, logged_in: Any, alice_user: User, room: Room, key: str, reason: str
) -> None:
    alice = await logged_in(server, alice_user)
    response = await alice.request(
        "POST",
        f"/rooms/{room.slug}/messages",
        json={"text": "never"},
        headers={"Idempotency-Key": key.encode("latin-1")},
    )
    assert response.status_code == 400
    assert reason in response.json()["error"]
    assert await rows(room) == 0


async def test_a_refused_post_is_not_remembered(
    server: Server, logged_in: Any, alice_user: User, room: Room
) -> None:
    """A refusal wrote nothing, so the key stays free: sent again, fixed, it posts."""
    alice = await logged_in(server, alice_user)
    key = str(uuid.uuid4())
    missing = await alice.request(
        "POST", f"/rooms/{unique('nowhere')}/messages", json={"text": "x"}, headers={
            "Idempotency-Key": key
        }
    )  # fmt: skip
    assert missing.status_code == 404
    assert (await post(alice, room, "x", key)).status_code == 201


async def test_a_replay_is_not_counted_by_the_rate_limit(
    make_server: MakeServer, logged_in: Any, alice_user: User, room: Room
) -> None:
    srv = make_server(CHAT_RATELIMIT_MESSAGES="1/10000000")
    alice = await logged_in(srv, alice_user)
    key = str(uuid.uuid4())
    first = await post(alice, room, "one", key)
    assert first.status_code == 201
    replay = await post(alice, room, "one", key)
    assert (replay.status_code, replay.content) == (201, first.content)
    assert (await post(alice, room, "two", str(uuid.uuid4()))).status_code == 429
    assert await rows(room) == 1


async def test_an_expired_key_posts_afresh(
    make_server: MakeServer, logged_in: Any, alice_user: User, room: Room
) -> None:
    srv = make_server(CHAT_IDEMPOTENCY_SECONDS="60")
    alice = await logged_in(srv, alice_user)
    key = str(uuid.uuid4())
    first = await post(alice, room, "again later", key)
    await IdempotentPost.objects.filter(sender=alice_user, key=key).aupdate(
        created_at=Now() - timedelta(seconds=61)
    )
    later = await post(alice, room, "again later", key)
    assert later.status_code == 201
    assert later.json()["id"] != first.json()["id"]
    assert await rows(room) == 2
    assert await IdempotentPost.objects.filter(sender=alice_user, key=key).acount() == 1


def test_expired_keys_are_pruned(alice_user: User, settings: Any) -> None:
    settings.CHAT_IDEMPOTENCY_SECONDS = 3600
    old = IdempotentPost.objects.create(sender=alice_user, key="old", request_hash="h", status=201)
    new = IdempotentPost.objects.create(sender=alice_user, key="new", request_hash="h", status=201)
    IdempotentPost.objects.filter(pk=old.pk).update(created_at=Now() - timedelta(hours=2))
    assert idempotency.prune() >= 1
    assert list(IdempotentPost.objects.filter(sender=alice_user).values_list("pk", flat=True)) == [
        new.pk
    ]
