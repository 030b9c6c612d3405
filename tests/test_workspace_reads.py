"""Read state and the counts of ``GET /me/rooms``, against a real server: the read position
only moves forward; unread counts leave out the user's own and deleted messages; a message
typed into psql counts, and mentions its ``@user`` (found by the database)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User

from chat.models import ChatMessage, LiveMessage, Mention, MessageChange, Room

from .helpers import unique
from .servers import Browserless, Server, insert_sql, psql
from .workspace_clients import logged_in, my_room, post_json, post_message


@pytest.fixture
async def reader(make_user: Callable[..., User]) -> User:
    return await sync_to_async(make_user)("reader")


async def joined(client: Browserless, room: Room) -> None:
    response = await client.request("POST", f"/rooms/{room.slug}/join")
    assert response.status_code == 201, response.text


async def latest(slug: str) -> int:
    return max([c.seq async for c in MessageChange.objects.filter(room_id=slug)], default=0)


# -- read state ----------------------------------------------------------------------------


async def test_the_read_position_only_moves_forward(
    server: Server, reader: User, room: Room
) -> None:
    async with logged_in(server, reader) as client:
        await joined(client, room)
        first = await post_message(client, room.slug, "one")
        await post_message(client, room.slug, "two")
        end = await latest(room.slug)
        start = (await my_room(client, room.slug))["last_read"]
        assert start < end

        url = f"/rooms/{room.slug}/read"
        moved = await post_json(client, url, {"cursor": end})
        assert (moved.status_code, moved.json()) == (200, {"room": room.slug, "last_read": end})
        back = await post_json(client, url, {"cursor": start})  # an older position: kept
        assert (back.status_code, back.json()["last_read"]) == (200, end)
        form = await client.request("POST", url, data={"cursor": str(start)})
        assert (form.status_code, form.json()["last_read"]) == (200, end)
        assert (await my_room(client, room.slug))["last_read"] == end
        assert first["id"]  # (posted before the position moved)


async def test_read_position_refusals(server: Server, reader: User, room: Room) -> None:
    private = await Room.objects.acreate(slug=unique("private"), is_private=True)
    async with logged_in(server, reader) as client:
        await joined(client, room)
        await post_message(client, room.slug, "hello")
        end = await latest(room.slug)
        url = f"/rooms/{room.slug}/read"
        ahead = await post_json(client, url, {"cursor": end + 1})
        assert ahead.status_code == 400
        assert "ahead" in ahead.json()["error"]
        for bad in (-1, "7x", "", 1.5, True, None, [1], 2**63, "١٢"):
            response = await post_json(client, url, {"cursor": bad})
            assert response.status_code == 400, bad
        assert (await post_json(client, url, {})).status_code == 400
        response = await client.request(
            "POST", url, content=b"[1]", headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 400
        assert (
            await post_json(client, f"/rooms/{private.slug}/read", {"cursor": 0})
        ).status_code == 404
        assert (
            await post_json(client, f"/rooms/{unique('none')}/read", {"cursor": 0})
        ).status_code == 404
        assert (await client.client.get(url)).status_code == 405
        assert (await client.client.post(url, json={"cursor": end})).status_code == 403  # CSRF
        assert (await my_room(client, room.slug))["last_read"] < end  # none of those moved it
    async with Browserless(server.url) as anonymous:
        assert (await post_json(anonymous, url, {"cursor": 0})).status_code == 403


async def test_read_state_is_shared_by_the_users_clients(
    server: Server, reader: User, room: Room
) -> None:
    async with logged_in(server, reader) as phone, logged_in(server, reader) as laptop:
        await joined(phone, room)
        await post_message(phone, room.slug, "from the phone")
        other = await sync_to_async(ChatMessage.objects.create)(room=room, author="ops", text="hi")
        assert other.pk
        assert (await my_room(laptop, room.slug))["unread"] == 1
        end = await latest(room.slug)
        assert (
            await post_json(phone, f"/rooms/{room.slug}/read", {"cursor": end})
        ).status_code == 200
        assert (await my_room(laptop, room.slug))["unread"] == 0
        assert (await my_room(laptop, room.slug))["last_read"] == end


# -- unread counts -------------------------------------------------------------------------


async def test_unread_counts_leave_out_own_and_deleted_messages(
    server: Server, make_user: Callable[..., User], reader: User, room: Room, db_url: str
) -> None:
    writer = await sync_to_async(make_user)("writer")
    async with logged_in(server, reader) as me, logged_in(server, writer) as them:
        await joined(me, room)
        await joined(them, room)
        theirs = [await post_message(them, room.slug, f"theirs {i}") for i in range(3)]
        for i in range(2):
            await post_message(me, room.slug, f"mine {i}")
        counts = await my_room(me, room.slug)
        assert (counts["unread"], counts["mentions"]) == (3, 0)
        assert (await my_room(them, room.slug))["unread"] == 2

        deleted = await them.request("DELETE", f"/rooms/{room.slug}/messages/{theirs[0]['id']}")
        assert deleted.status_code == 200
        assert (await my_room(me, room.slug))["unread"] == 2
        await psql(db_url, insert_sql(room.slug, "typed into psql"))
        assert (await my_room(me, room.slug))["unread"] == 3  # psql rows have no sender
        await psql(db_url, f"DELETE FROM chat_chatmessage WHERE id = {theirs[1]['id']}")
        counts = await my_room(me, room.slug)
        assert (counts["unread"], counts["latest"]) == (2, await latest(room.slug))

        await post_json(me, f"/rooms/{room.slug}/read", {"cursor": counts["latest"]})
        assert (await my_room(me, room.slug))["unread"] == 0
        await post_message(them, room.slug, "after reading")
        assert (await my_room(me, room.slug))["unread"] == 1


async def test_unread_counts_stop_at_the_cap(
    server: Server, reader: User, room: Room, db_url: str
) -> None:
    async with logged_in(server, reader) as client:
        await joined(client, room)
        await psql(
            db_url,
            "INSERT INTO chat_chatmessage (room_id, author, text) "
            f"SELECT '{room.slug}', 'ops', 'n' || i FROM generate_series(1, 99) AS i",
        )
        assert (await my_room(client, room.slug))["unread"] == 99
        await psql(db_url, insert_sql(room.slug, "the hundredth"), insert_sql(room.slug, "more"))
        assert (await my_room(client, room.slug))["unread"] == 100  # "99+"


async def test_my_rooms_lists_what_i_joined_with_its_fields(
    server: Server, reader: User, room: Room
) -> None:
    async with logged_in(server, reader) as client:
        await joined(client, room)
        assert await my_room(client, room.slug) == {
            "slug": room.slug,
            "title": "Test",
            "is_private": False,
            "is_direct": False,
            "dm_with": None,
            "last_read": await latest(room.slug),
            "latest": await latest(room.slug),
            "unread": 0,
            "mentions": 0,
        }
        assert (await client.request("POST", "/me/rooms")).status_code == 405


# -- mentions ------------------------------------------------------------------------------


async def test_a_psql_message_mentioning_a_user_counts_for_them(
    server: Server, make_user: Callable[..., User], room: Room, db_url: str
) -> None:
    alice = await sync_to_async(make_user)("alice")
    async with logged_in(server, alice) as client:
        await joined(client, room)
        await psql(db_url, insert_sql(room.slug, f"@{alice.username} hi"))
        counts = await my_room(client, room.slug)
        assert (counts["unread"], counts["mentions"]) == (1, 1)

    message = await ChatMessage.objects.aget(room=room, text=f"@{alice.username} hi")
    created = await MessageChange.objects.aget(message_id=message.pk, op="created")
    mention = await Mention.objects.aget(message=message)
    live = await LiveMessage.objects.aget(message=message)
    # The trigger read the creating change's cursor, which the notify trigger logged first.
    assert (mention.user_id, mention.room_id, mention.seq) == (alice.pk, room.slug, created.seq)
    assert (live.seq, live.sender_id) == (created.seq, None)


async def test_mentions_follow_edits_and_deletes(
    server: Server, make_user: Callable[..., User], room: Room, db_url: str
) -> None:
    alice, bob = [await sync_to_async(make_user)(p) for p in ("alice", "bob")]
    async with logged_in(server, alice) as me, logged_in(server, bob) as them:
        await joined(me, room)
        await joined(them, room)
        message = await post_message(them, room.slug, f"hey @{alice.username}, look")
        assert (await my_room(me, room.slug))["mentions"] == 1
        url = f"/rooms/{room.slug}/messages/{message['id']}"
        assert (await them.request("PATCH", url, json={"text": "never mind"})).status_code == 200
        assert (await my_room(me, room.slug))["mentions"] == 0
        await psql(
            db_url,
            f"UPDATE chat_chatmessage SET text = '@{alice.username}.' WHERE id = {message['id']}",
        )
        assert (await my_room(me, room.slug))["mentions"] == 1
        assert (await them.request("DELETE", url)).status_code == 200
        counts = await my_room(me, room.slug)
        assert (counts["mentions"], counts["unread"]) == (0, 0)

        # restored by a moderator in psql: counted again, at its original cursor
        await psql(
            db_url, f"UPDATE chat_chatmessage SET deleted_at = NULL WHERE id = {message['id']}"
        )
        counts = await my_room(me, room.slug)
        assert (counts["mentions"], counts["unread"]) == (1, 1)
        created = await MessageChange.objects.aget(message_id=message["id"], op="created")
        assert (await LiveMessage.objects.aget(message_id=message["id"])).seq == created.seq


async def test_what_is_and_is_not_a_mention(
    server: Server, make_user: Callable[..., User], room: Room, db_url: str
) -> None:
    alice = await sync_to_async(make_user)("alice")
    name = alice.username
    async with logged_in(server, alice) as client:
        await joined(client, room)
        await post_message(client, room.slug, f"note to self @{name}")  # own: never counted
        for text in (
            f"mail {name}@example.com",  # not after a word character
            f"@{name.upper()} shouting",  # names compare as Django stores them
            f"@{name}x is someone else",
            f"@{unique('nobody')} does not exist",
        ):
            await psql(db_url, insert_sql(room.slug, text))
        assert (await my_room(client, room.slug))["mentions"] == 0
        for text in (f"(@{name})", f"@{name}: hi", f"cc @{name} and @{name} twice"):
            await psql(db_url, insert_sql(room.slug, text))
        counts = await my_room(client, room.slug)
        assert (counts["mentions"], counts["unread"]) == (3, 7)
