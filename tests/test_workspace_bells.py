"""The workspace's doorbells: a join, a leave, a member added or removed, a read position
moved, each rings on the ``chat`` channel with the room and the user, whoever writes it (the
API or psql). Heard on a LISTEN connection of the test's own, parsed by ``Bell``.

"Nothing else rang" is proved with a later marker: the bells of one room are read until the
marker's, and must be exactly the expected list.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import psycopg
import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User

from chat.events import USER_ROOM_KINDS, Bell
from chat.models import Room

from .helpers import DEADLINE, unique
from .servers import Server, insert_sql, psql
from .workspace_clients import logged_in, post_json


class Bells:
    """Notifications on ``chat`` heard by a connection of the test's own."""

    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self.conn = conn

    async def until(self, room: str, last: tuple[str, int | None]) -> list[tuple[str, int | None]]:
        """The (kind, user) of every bell of ``room`` but message bells, up to and including
        the first one equal to ``last``."""
        heard: list[tuple[str, int | None]] = []
        async for notify in self.conn.notifies(timeout=DEADLINE):
            payload = json.loads(notify.payload)
            if payload.get("room") != room or payload["kind"] == "message":
                continue
            bell = Bell.from_payload(notify.payload)  # every one of ours parses
            heard.append((bell.kind, bell.user))
            if heard[-1] == last:
                return heard
        raise AssertionError(f"no {last} bell for {room} within {DEADLINE} s: {heard}")


@pytest.fixture
async def bells(db_url: str) -> AsyncIterator[Bells]:
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        await conn.execute("LISTEN chat")
        yield Bells(conn)


@pytest.fixture
async def user(make_user: Callable[..., User]) -> User:
    return await sync_to_async(make_user)("ringer")


async def test_join_read_and_leave_ring_for_the_user(
    server: Server, bells: Bells, user: User, room: Room
) -> None:
    uid = user.pk
    async with logged_in(server, user) as client:
        assert (await client.request("POST", f"/rooms/{room.slug}/join")).status_code == 201
        # A join rings "joined", then "read": the join starts the read position.
        assert await bells.until(room.slug, ("read", uid)) == [("joined", uid), ("read", uid)]

        message = await client.request("POST", f"/rooms/{room.slug}/messages", json={"text": "x"})
        assert message.status_code == 201
        cursor = (await client.client.get("/me/rooms")).json()["rooms"]
        end = next(r["latest"] for r in cursor if r["slug"] == room.slug)
        assert (
            await post_json(client, f"/rooms/{room.slug}/read", {"cursor": end})
        ).status_code == 200
        assert await bells.until(room.slug, ("read", uid)) == [("read", uid)]

        # A position that does not move rings nothing: the leave's bells come next.
        assert (
            await post_json(client, f"/rooms/{room.slug}/read", {"cursor": end})
        ).status_code == 200
        assert (await client.request("POST", f"/rooms/{room.slug}/leave")).status_code == 200
        assert await bells.until(room.slug, ("access", None)) == [("left", uid), ("access", None)]


async def test_owner_adding_and_removing_a_member_rings(
    server: Server, bells: Bells, make_user: Callable[..., User]
) -> None:
    owner, guest = [await sync_to_async(make_user)(p) for p in ("owner", "guest")]
    private = await Room.objects.acreate(slug=unique("private"), is_private=True, owner=owner)
    await private.members.aadd(owner)  # as creating it on its page does (the ORM rings too)
    url = f"/rooms/{private.slug}/members"
    async with logged_in(server, owner) as client:
        assert (await post_json(client, url, {"username": guest.username})).status_code == 201
        assert await bells.until(private.slug, ("read", guest.pk)) == [
            ("joined", owner.pk),
            ("read", owner.pk),
            ("joined", guest.pk),
            ("read", guest.pk),
        ]
        assert (await client.request("DELETE", f"{url}/{guest.username}")).status_code == 204
        assert await bells.until(private.slug, ("access", None)) == [
            ("left", guest.pk),
            ("access", None),
        ]


async def test_psql_membership_changes_ring_too(
    db_url: str, bells: Bells, user: User, room: Room
) -> None:
    await psql(
        db_url,
        f"INSERT INTO chat_room_members (room_id, user_id) VALUES ('{room.slug}', {user.pk})",
    )
    assert await bells.until(room.slug, ("read", user.pk)) == [
        ("joined", user.pk),
        ("read", user.pk),
    ]
    await psql(db_url, f"DELETE FROM chat_room_members WHERE room_id = '{room.slug}'")
    assert await bells.until(room.slug, ("access", None)) == [
        ("left", user.pk),
        ("access", None),
    ]


async def test_a_new_dm_rings_for_both_users(
    server: Server, bells: Bells, make_user: Callable[..., User]
) -> None:
    ann, bob = [await sync_to_async(make_user)(p) for p in ("ann", "bob")]
    async with logged_in(server, ann) as client:
        response = await client.request("POST", f"/dm/{bob.username}")
        slug = response.json()["room"]
    heard = await bells.until(slug, ("read", bob.pk))
    assert heard == [("joined", ann.pk), ("read", ann.pk), ("joined", bob.pk), ("read", bob.pk)]


async def test_the_listener_parses_workspace_bells_and_rechecks_nothing(
    server: Server, user: User, room: Room, make_user: Callable[..., User], db_url: str
) -> None:
    """They are for the user's /events streams: no open stream's access changed, so no
    re-check of the signed-in streams (a join would otherwise re-check every one of them),
    and nothing is counted as an invalid notification."""
    other_room = await Room.objects.acreate(slug=unique("other"))
    async with logged_in(server, user) as client:
        cookie = {"Cookie": f"sessionid={client.client.cookies['sessionid']}"}
        stream = await server.stream(room.slug, headers=cookie)  # a signed-in stream
        try:
            before = server.health()[1]["counters"]
            assert (
                await client.request("POST", f"/rooms/{other_room.slug}/join")
            ).status_code == 201
            await psql(db_url, insert_sql(other_room.slug, "to read"))
            read = await post_json(client, f"/rooms/{other_room.slug}/read", {"cursor": 1})
            assert read.status_code == 200  # moved: the join left it at 0
            await psql(db_url, insert_sql(room.slug, "marker"))  # committed after the bells
            async with asyncio.timeout(DEADLINE):
                while (await stream.next_event()).json().get("text") != "marker":
                    pass
        finally:
            await stream.aclose()
    after = server.health()[1]["counters"]
    for counter in ("access_checks", "invalid_payloads"):
        assert after.get(counter, 0) == before.get(counter, 0), counter


def test_workspace_bells_need_a_room_and_a_user() -> None:
    for kind in USER_ROOM_KINDS:
        assert Bell.from_payload(json.dumps({"kind": kind, "room": "r", "user": 1})).user == 1
        for partial in ({"kind": kind, "room": "r"}, {"kind": kind, "user": 1}):
            with pytest.raises(ValueError, match="needs a room and a user"):
                Bell.from_payload(json.dumps(partial))
