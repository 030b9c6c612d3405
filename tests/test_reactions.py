"""Reactions (issue 13): written by the API and by psql alike, logged like edits, so they
arrive live with a cursor and replay on resume (room stream and /events), once; only one
emoji is accepted, and history shows the counts.

"Nothing else came" is proved with a later marker message.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import AbstractUser

from bench.sse_client import Event
from chat.models import ChatMessage, Reaction, Room

from .helpers import session_cookies, unique
from .servers import Browserless, Server, conversation_until, insert_sql, psql, until_text
from .test_user_stream import join, open_events

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


def shown(events: list[Event]) -> list[tuple[str, object, object]]:
    """(event, emoji or text, user or author) of each."""
    out = []
    for event in events:
        data = event.json()
        if event.name.startswith("reaction."):
            out.append((event.name, data["emoji"], data["user"]))
        else:
            out.append((event.name, data["text"], data["author"]))
    return out


@pytest.fixture
async def user(make_user: Callable[..., AbstractUser]) -> AbstractUser:
    return await sync_to_async(make_user)("reactor")


@pytest.fixture
async def client(server: Server, user: AbstractUser) -> AsyncIterator[Browserless]:
    async with Browserless(server.url) as c:
        await c.login(user.username)
        yield c


@pytest.fixture
async def message(room: Room) -> ChatMessage:
    return await ChatMessage.objects.acreate(room=room, author="ops", text="react to me")


def reactions_url(message: ChatMessage) -> str:
    return f"/rooms/{message.room_id}/messages/{message.pk}/reactions"


async def test_api_adds_once_and_removes_live_with_cursors(
    server: Server, client: Browserless, user: AbstractUser, room: Room, message: ChatMessage
) -> None:
    stream = await server.stream(room.slug)
    try:
        url = reactions_url(message)
        first = await client.request("POST", url, json={"emoji": "👍"})
        assert first.status_code == 201, first.text
        assert first.json() == {
            "room": room.slug,
            "message_id": message.pk,
            "emoji": "👍",
            "user": user.username,
        }
        again = await client.request("POST", url, json={"emoji": ":thumbs_up:"})
        assert again.status_code == 200  # the same emoji, by its short name: already there
        gone = await client.request("DELETE", f"{url}/👍")
        assert gone.status_code == 204
        assert (await client.request("DELETE", f"{url}/👍")).status_code == 204
        await psql(server.db_url, insert_sql(room.slug, "marker"))
        events = await until_text(stream, "marker", room.slug)
        assert shown(events) == [
            ("reaction.added", "👍", user.username),
            ("reaction.removed", "👍", user.username),
            ("message.created", "marker", "ops"),
        ]
        assert events[0].json() == first.json()
        cursors = [event.cursor for event in events]
        assert cursors == sorted(cursors)
        assert len(set(cursors)) == 3
    finally:
        await stream.aclose()


async def test_psql_reaction_is_live_on_room_and_user_streams(
    server: Server, db_url: str, user: AbstractUser, room: Room, message: ChatMessage
) -> None:
    await join(db_url, user, room.slug)
    cookies = await session_cookies(server.url, user.username)
    room_stream = await server.stream(room.slug)
    user_stream = await open_events(server, cookies)
    try:
        await psql(
            db_url,
            "INSERT INTO chat_reaction (message_id, user_id, emoji)"
            f" VALUES ({message.pk}, {user.pk}, '🎉')",
            f"DELETE FROM chat_reaction WHERE message_id = {message.pk}",
            insert_sql(room.slug, "marker"),
        )
        expected = [
            ("reaction.added", "🎉", user.username),
            ("reaction.removed", "🎉", user.username),
            ("message.created", "marker", "ops"),
        ]
        assert shown(await conversation_until(room_stream, "marker", room.slug)) == expected
        assert shown(await conversation_until(user_stream, "marker", room.slug)) == expected
    finally:
        await room_stream.aclose()
        await user_stream.aclose()


async def test_resume_replays_reactions_once_on_the_room_stream(
    server: Server, client: Browserless, user: AbstractUser, room: Room, message: ChatMessage
) -> None:
    stream = await server.stream(room.slug)
    await psql(server.db_url, insert_sql(room.slug, "before"))
    [before] = await until_text(stream, "before", room.slug)
    await stream.aclose()
    url = reactions_url(message)
    assert (await client.request("POST", url, json={"emoji": "🔥"})).status_code == 201
    assert (await client.request("POST", url, json={"emoji": "❤"})).status_code == 201
    assert (await client.request("DELETE", f"{url}/🔥")).status_code == 204
    resumed = await server.stream(room.slug, last_event_id=before.cursor)
    try:
        await psql(server.db_url, insert_sql(room.slug, "marker"))
        events = await until_text(resumed, "marker", room.slug)
        assert shown(events) == [
            ("reaction.added", "🔥", user.username),
            ("reaction.added", "❤️", user.username),  # stored fully qualified
            ("reaction.removed", "🔥", user.username),
            ("message.created", "marker", "ops"),
        ]
    finally:
        await resumed.aclose()
    # The replay through the JSON history's ``after`` says the same.
    history = await client.client.get(f"/rooms/{room.slug}/messages?after={before.cursor}")
    assert [c["event"] for c in history.json()["changes"]] == [
        "reaction.added",
        "reaction.added",
        "reaction.removed",
        "message.created",
    ]


async def test_resume_replays_reactions_once_on_the_user_stream(
    server: Server, db_url: str, client: Browserless, user: AbstractUser, room: Room,
    message: ChatMessage,
) -> None:  # fmt: skip
    await join(db_url, user, room.slug)
    cookies = await session_cookies(server.url, user.username)
    stream = await open_events(server, cookies)
    await psql(db_url, insert_sql(room.slug, "before"))
    [before] = await until_text(stream, "before", room.slug)
    await stream.aclose()
    assert before.id is not None
    url = reactions_url(message)
    assert (await client.request("POST", url, json={"emoji": "👀"})).status_code == 201
    resumed = await open_events(server, cookies, last_event_id=before.id)
    try:
        await psql(db_url, insert_sql(room.slug, "marker"))
        assert shown(await until_text(resumed, "marker", room.slug)) == [
            ("reaction.added", "👀", user.username),
            ("message.created", "marker", "ops"),
        ]
    finally:
        await resumed.aclose()


@pytest.mark.parametrize(
    "emoji", ["a", "👍👍", "", " ", "👍 ", "🏽", "\u200d", ":no_such_name:", 42, None, "x" * 500]
)
async def test_anything_but_one_emoji_is_400_and_not_stored(
    client: Browserless, message: ChatMessage, emoji: object
) -> None:
    response = await client.request("POST", reactions_url(message), json={"emoji": emoji})
    assert response.status_code == 400, response.text
    assert "error" in response.json()
    assert not await Reaction.objects.filter(message=message).aexists()


async def test_removing_a_bad_emoji_is_400(client: Browserless, message: ChatMessage) -> None:
    response = await client.request("DELETE", f"{reactions_url(message)}/abc")
    assert response.status_code == 400
    assert "error" in response.json()


async def test_the_database_refuses_text_as_a_reaction(
    db_url: str, user: AbstractUser, message: ChatMessage
) -> None:
    for bad, refusal in [
        ("hello", "chat_reaction_emoji_shape"),
        ("👍 👍", "chat_reaction_emoji_shape"),
        ("", "chat_reaction_emoji_shape"),
        ("👍" * 17, "value too long"),
    ]:
        result = await psql(
            db_url,
            "INSERT INTO chat_reaction (message_id, user_id, emoji)"
            f" VALUES ({message.pk}, {user.pk}, '{bad}')",
            check=False,
        )
        assert result.returncode != 0, bad
        assert refusal in result.stderr, bad


async def test_history_shows_counts_and_who_reacted(
    server: Server, client: Browserless, user: AbstractUser, room: Room, message: ChatMessage,
    make_user: Callable[..., AbstractUser],
) -> None:  # fmt: skip
    other = await sync_to_async(make_user)("other")
    async with Browserless(server.url) as second:
        await second.login(other.username)
        url = reactions_url(message)
        assert (await client.request("POST", url, json={"emoji": "👍"})).status_code == 201
        assert (await second.request("POST", url, json={"emoji": "👍"})).status_code == 201
        assert (await second.request("POST", url, json={"emoji": "😂"})).status_code == 201
    body = (await client.client.get(f"/rooms/{room.slug}/messages")).json()
    [listed] = [m for m in body["messages"] if m["id"] == message.pk]
    assert listed["reactions"] == [
        {"emoji": "👍", "count": 2, "users": [user.username, other.username]},
        {"emoji": "😂", "count": 1, "users": [other.username]},
    ]


async def test_only_readers_who_are_logged_in_may_react(
    server: Server, client: Browserless, message: ChatMessage
) -> None:
    secret = await Room.objects.acreate(slug=unique("secret"), is_private=True)
    hidden = await ChatMessage.objects.acreate(room=secret, author="ops", text="hidden")
    refused = await client.request("POST", reactions_url(hidden), json={"emoji": "👍"})
    assert refused.status_code == 404
    async with Browserless(server.url) as anonymous:
        response = await anonymous.request("POST", reactions_url(message), json={"emoji": "👍"})
        assert response.status_code == 403
    wrong_room = f"/rooms/{secret.slug}/messages/{message.pk}/reactions"
    assert (await client.request("POST", wrong_room, json={"emoji": "👍"})).status_code == 404
    assert not await Reaction.objects.filter(message__in=[message, hidden]).aexists()


async def test_deleting_a_message_takes_its_reactions_without_removal_events(
    server: Server, db_url: str, client: Browserless, room: Room, message: ChatMessage
) -> None:
    assert (
        await client.request("POST", reactions_url(message), json={"emoji": "👍"})
    ).status_code == 201
    stream = await server.stream(room.slug)
    try:
        await psql(db_url, f"DELETE FROM chat_chatmessage WHERE id = {message.pk}")
        await psql(db_url, insert_sql(room.slug, "marker"))
        assert [e.name for e in await until_text(stream, "marker", room.slug)] == [
            "message.deleted",
            "message.created",
        ]
    finally:
        await stream.aclose()
    assert not await Reaction.objects.filter(message_id=message.pk).aexists()
