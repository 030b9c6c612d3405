"""Direct conversations: ``POST /dm/<username>`` creates the private room of two once, whoever
asks and however many ask at once, against a real server."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User

from chat.models import Room

from .helpers import PASSWORD, unique
from .servers import Browserless, Server
from .workspace_clients import logged_in, my_rooms, post_json

RACING_PAIRS = 12  # pairs of users opening their conversation at the same moment


def expected_slug(a: User, b: User) -> str:
    low, high = sorted((a.pk, b.pk))
    return f"dm-{low}-{high}"


async def test_a_dm_is_created_once_and_found_by_either_user(
    server: Server, make_user: Callable[..., User]
) -> None:
    ann, bob, eve = [await sync_to_async(make_user)(p) for p in ("ann", "bob", "eve")]
    slug = expected_slug(ann, bob)
    async with logged_in(server, ann) as ann_client, logged_in(server, bob) as bob_client:
        first = await ann_client.request("POST", f"/dm/{bob.username}")
        again = await ann_client.request("POST", f"/dm/{bob.username}")
        from_bob = await bob_client.request("POST", f"/dm/{ann.username}")
        assert [r.status_code for r in (first, again, from_bob)] == [201, 200, 200]
        assert first.json() == again.json() == from_bob.json() == {"room": slug}

        for client, other in ((ann_client, bob), (bob_client, ann)):
            listed = (await my_rooms(client))[slug]
            assert (listed["is_direct"], listed["is_private"], listed["dm_with"]) == (
                True,
                True,
                other.username,
            )
        ordered = list(await my_rooms(ann_client))
        assert ordered[-1] == slug  # DMs come after the rooms
        response = await ann_client.request("POST", f"/rooms/{slug}/messages", json={"text": "hi"})
        assert response.status_code == 201

    room = await Room.objects.aget(slug=slug)
    assert (room.is_direct, room.is_private, room.owner_id) == (True, True, None)
    assert {u.pk async for u in room.members.all()} == {ann.pk, bob.pk}

    async with logged_in(server, eve) as eve_client:  # a DM is theirs alone
        assert (await eve_client.client.get(f"/rooms/{slug}/messages")).status_code == 404
        assert (await eve_client.request("POST", f"/rooms/{slug}/join")).status_code == 404
        room_list = await eve_client.client.get("/rooms/")
        assert slug not in room_list.text


async def test_a_dm_takes_no_other_members_and_cannot_be_left(
    server: Server, make_user: Callable[..., User]
) -> None:
    ann, bob, eve = [await sync_to_async(make_user)(p) for p in ("ann", "bob", "eve")]
    staff = await sync_to_async(make_user)("staff", staff=True)
    async with logged_in(server, ann) as client:
        slug = (await client.request("POST", f"/dm/{bob.username}")).json()["room"]
        response = await post_json(client, f"/rooms/{slug}/members", {"username": eve.username})
        assert response.status_code == 403  # a DM has no owner
        assert (await client.request("POST", f"/rooms/{slug}/leave")).status_code == 400
        response = await client.request("DELETE", f"/rooms/{slug}/members/{ann.username}")
        assert response.status_code == 400
    async with logged_in(server, staff) as client:  # staff may read it, not change it
        response = await post_json(client, f"/rooms/{slug}/members", {"username": eve.username})
        assert response.status_code == 400
        response = await client.request("DELETE", f"/rooms/{slug}/members/{bob.username}")
        assert response.status_code == 400
        listed = await client.client.get("/rooms/")
        assert slug not in listed.text  # listed apart, in /me/rooms of its two members
    room = await Room.objects.aget(slug=slug)
    assert {u.pk async for u in room.members.all()} == {ann.pk, bob.pk}


async def test_dm_refusals(server: Server, make_user: Callable[..., User]) -> None:
    ann = await sync_to_async(make_user)("ann")
    async with logged_in(server, ann) as client:
        myself = await client.request("POST", f"/dm/{ann.username}")
        assert myself.status_code == 400
        nobody = await client.request("POST", f"/dm/{unique('nobody')}")
        assert (nobody.status_code, "no user named" in nobody.json()["error"]) == (400, True)
        assert (await client.client.get(f"/dm/{ann.username}")).status_code == 405
        assert (await client.client.post(f"/dm/{ann.username}")).status_code == 403  # no CSRF
    async with Browserless(server.url) as anonymous:
        response = await anonymous.request("POST", f"/dm/{ann.username}")
        assert response.status_code == 403


@pytest.mark.parametrize("round_", range(2))
async def test_a_race_of_both_users_creates_one_room_per_pair(
    server: Server, make_user: Callable[..., User], round_: int
) -> None:
    pairs = [
        (await sync_to_async(make_user)("left"), await sync_to_async(make_user)("right"))
        for _ in range(RACING_PAIRS)
    ]
    clients = []
    try:
        for a, b in pairs:
            a_client, b_client = Browserless(server.url), Browserless(server.url)
            clients += [a_client, b_client]
            await asyncio.gather(*(c.get_token() for c in (a_client, b_client)))
            await a_client.login(a.username, PASSWORD)
            await b_client.login(b.username, PASSWORD)
        calls = []
        for i, (a, b) in enumerate(pairs):
            calls.append(clients[2 * i].request("POST", f"/dm/{b.username}"))
            calls.append(clients[2 * i + 1].request("POST", f"/dm/{a.username}"))
        responses = await asyncio.gather(*calls)  # every pair, both sides, at once
    finally:
        for client in clients:
            await client.__aexit__(None, None, None)

    for i, (a, b) in enumerate(pairs):
        mine, theirs = responses[2 * i], responses[2 * i + 1]
        assert sorted([mine.status_code, theirs.status_code]) == [200, 201], (mine, theirs)
        assert mine.json() == theirs.json() == {"room": expected_slug(a, b)}
    ids = [user.pk for pair in pairs for user in pair]
    direct = Room.objects.filter(is_direct=True, members__in=ids).distinct()
    assert await direct.acount() == RACING_PAIRS  # one room per pair, not two
    async for room in direct:
        assert await room.members.acount() == 2
