"""Joining and leaving rooms, and owners managing a private room's members, over HTTP against
a real server: idempotent answers, and every refusal with its status (404 for a room the
caller may not read, 403 for a change not theirs, 400 for one the room's kind does not take).
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User

from chat.models import Room

from .helpers import PASSWORD, unique
from .servers import Browserless, Server
from .workspace_clients import logged_in, my_rooms, post_json


@pytest.fixture
def owner(make_user: Callable[..., User]) -> User:
    return make_user("owner")


@pytest.fixture
def private_room(owner: User) -> Room:
    room = Room.objects.create(slug=unique("private"), is_private=True, owner=owner)
    room.members.add(owner)
    return room


async def can_read(client: Browserless, slug: str) -> bool:
    status = (await client.client.get(f"/rooms/{slug}/messages")).status_code
    assert status in (200, 404), status
    return status == 200


async def members_of(slug: str) -> set[str]:
    room = await Room.objects.aget(slug=slug)
    return {user.username async for user in room.members.all()}


# -- join and leave ------------------------------------------------------------------------


async def test_join_and_leave_a_public_room_are_idempotent(
    server: Server, make_user: Callable[..., User], room: Room
) -> None:
    async with logged_in(server, await sync_to_async(make_user)("joiner")) as client:
        assert room.slug not in await my_rooms(client)
        first = await client.request("POST", f"/rooms/{room.slug}/join")
        again = await client.request("POST", f"/rooms/{room.slug}/join")
        assert (first.status_code, again.status_code) == (201, 200)
        assert first.json() == {"room": room.slug, "joined": True}
        assert room.slug in await my_rooms(client)
        left = await client.request("POST", f"/rooms/{room.slug}/leave")
        left_again = await client.request("POST", f"/rooms/{room.slug}/leave")
        assert (left.status_code, left_again.status_code) == (200, 200)
        assert left.json() == {"room": room.slug, "joined": False}
        assert room.slug not in await my_rooms(client)
        assert await can_read(client, room.slug)  # a public room: leaving changes no access


async def test_join_refusals(
    server: Server, make_user: Callable[..., User], room: Room, private_room: Room
) -> None:
    outsider = await sync_to_async(make_user)("outsider")
    staff = await sync_to_async(make_user)("staff", staff=True)
    async with logged_in(server, outsider) as client:
        response = await client.request("POST", f"/rooms/{private_room.slug}/join")
        assert response.status_code == 404  # its existence does not leak
        missing = await client.request("POST", f"/rooms/{unique('nowhere')}/join")
        assert missing.status_code == 404
        wrong_method = await client.client.get(f"/rooms/{room.slug}/join")
        assert (wrong_method.status_code, wrong_method.headers["Allow"]) == (405, "POST")
        no_csrf = await client.client.post(f"/rooms/{room.slug}/join")  # no X-CSRFToken
        assert no_csrf.status_code == 403
        assert room.slug not in await my_rooms(client)
    async with logged_in(server, staff) as client:  # may read it, yet is not invited
        response = await client.request("POST", f"/rooms/{private_room.slug}/join")
        assert response.status_code == 403
        assert "invitation" in response.json()["error"]
    async with Browserless(server.url) as anonymous:
        response = await anonymous.request("POST", f"/rooms/{room.slug}/join")
        assert response.status_code == 403
        assert "error" in response.json()
        assert (await anonymous.client.get("/me/rooms")).status_code == 403


async def test_a_member_joining_their_private_room_again_changes_nothing(
    server: Server, owner: User, private_room: Room
) -> None:
    async with logged_in(server, owner) as client:
        response = await client.request("POST", f"/rooms/{private_room.slug}/join")
        assert response.status_code == 200


async def test_leaving_a_private_room_gives_up_reading_it(
    server: Server, make_user: Callable[..., User], owner: User, private_room: Room
) -> None:
    member = await sync_to_async(make_user)("member")
    await private_room.members.aadd(member)
    async with logged_in(server, member) as client:
        assert await can_read(client, private_room.slug)
        response = await client.request("POST", f"/rooms/{private_room.slug}/leave")
        assert response.status_code == 200
        assert not await can_read(client, private_room.slug)
        again = await client.request("POST", f"/rooms/{private_room.slug}/leave")
        assert again.status_code == 404  # no longer theirs to see


async def test_an_owner_who_leaves_hands_the_room_to_its_longest_member(
    server: Server, make_user: Callable[..., User], owner: User, private_room: Room
) -> None:
    first, second = [await sync_to_async(make_user)(p) for p in ("first", "second")]
    await private_room.members.aadd(first)
    await private_room.members.aadd(second)
    async with logged_in(server, owner) as client:
        response = await client.request("POST", f"/rooms/{private_room.slug}/leave")
        assert response.status_code == 200
    await private_room.arefresh_from_db()
    assert private_room.owner_id == first.pk
    async with logged_in(server, first) as client:  # the new owner manages it now
        listed = (await client.client.get(f"/rooms/{private_room.slug}/members")).json()
        assert (listed["owner"], listed["can_manage"]) == (first.username, True)
        response = await client.request("DELETE", f"/rooms/{private_room.slug}/members/{second}")
        assert response.status_code == 204
        response = await client.request("POST", f"/rooms/{private_room.slug}/leave")
        assert response.status_code == 200
    await private_room.arefresh_from_db()
    assert private_room.owner_id is None  # nobody left to hand it to: staff manage it


# -- owners and members --------------------------------------------------------------------


async def test_creating_a_room_makes_its_creator_owner_and_member(
    server: Server, owner: User
) -> None:
    slug = unique("created")
    async with logged_in(server, owner) as client:
        form = await client.client.get("/rooms/new/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text)
        assert token
        response = await client.client.post(
            "/rooms/new/",
            data={"slug": slug, "title": "", "is_private": "on", "csrfmiddlewaretoken": token[1]},
        )
        assert response.status_code == 302, response.text
        assert (await my_rooms(client))[slug]["is_private"] is True
    room = await Room.objects.aget(slug=slug)
    assert room.owner_id == owner.pk
    assert await members_of(slug) == {owner.username}


async def test_the_room_form_keeps_dm_addresses_for_direct_messages(
    server: Server, owner: User
) -> None:
    async with logged_in(server, owner) as client:
        form = await client.client.get("/rooms/new/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text)
        assert token
        response = await client.client.post(
            "/rooms/new/", data={"slug": "dm-1-999999", "csrfmiddlewaretoken": token[1]}
        )
        assert response.status_code == 200  # the form again, with the reason
        assert "kept for direct messages" in response.text
    assert not await Room.objects.filter(slug="dm-1-999999").aexists()


async def test_the_owner_adds_and_removes_members(
    server: Server, make_user: Callable[..., User], owner: User, private_room: Room
) -> None:
    guest = await sync_to_async(make_user)("guest")
    slug = private_room.slug
    async with logged_in(server, owner) as client, logged_in(server, guest) as guest_client:
        assert not await can_read(guest_client, slug)
        added = await post_json(client, f"/rooms/{slug}/members", {"username": guest.username})
        again = await post_json(client, f"/rooms/{slug}/members", {"username": guest.username})
        assert (added.status_code, again.status_code) == (201, 200)
        assert await can_read(guest_client, slug)
        assert slug in await my_rooms(guest_client)
        listed = (await client.client.get(f"/rooms/{slug}/members")).json()
        assert listed["members"] == sorted([owner.username, guest.username])
        assert (listed["owner"], listed["can_manage"]) == (owner.username, True)

        removed = await client.request("DELETE", f"/rooms/{slug}/members/{guest.username}")
        removed_again = await client.request("DELETE", f"/rooms/{slug}/members/{guest.username}")
        assert (removed.status_code, removed_again.status_code) == (204, 204)
        assert not await can_read(guest_client, slug)
        assert slug not in await my_rooms(guest_client)


async def test_staff_manage_any_private_room(
    server: Server, make_user: Callable[..., User], private_room: Room
) -> None:
    staff = await sync_to_async(make_user)("staff", staff=True)
    guest = await sync_to_async(make_user)("guest")
    slug = private_room.slug
    async with logged_in(server, staff) as client:
        added = await post_json(client, f"/rooms/{slug}/members", {"username": guest.username})
        assert added.status_code == 201
        assert guest.username in await members_of(slug)
        removed = await client.request("DELETE", f"/rooms/{slug}/members/{guest.username}")
        assert removed.status_code == 204
    assert guest.username not in await members_of(slug)


async def test_member_management_refusals(
    server: Server, make_user: Callable[..., User], owner: User, private_room: Room, room: Room
) -> None:
    member = await sync_to_async(make_user)("member")
    outsider = await sync_to_async(make_user)("outsider")
    await private_room.members.aadd(member)
    slug = private_room.slug
    url = f"/rooms/{slug}/members"

    async with logged_in(server, member) as client:  # may read, may not manage
        response = await post_json(client, url, {"username": outsider.username})
        assert response.status_code == 403
        response = await client.request("DELETE", f"{url}/{owner.username}")
        assert response.status_code == 403
        assert (await client.client.get(url)).json()["can_manage"] is False
    async with logged_in(server, outsider) as client:  # may not even read it
        assert (await post_json(client, url, {"username": outsider.username})).status_code == 404
        assert (await client.request("DELETE", f"{url}/{member.username}")).status_code == 404
        assert (await client.client.get(url)).status_code == 404
    async with Browserless(server.url) as anonymous:
        assert (await post_json(anonymous, url, {"username": "x"})).status_code == 404
    async with logged_in(server, owner) as client:
        unknown = await post_json(client, url, {"username": unique("nobody")})
        assert unknown.status_code == 400
        assert "no user named" in unknown.json()["error"]
        for body in ({}, {"username": 7}, {"username": " "}):
            assert (await post_json(client, url, body)).status_code == 400, body
        not_json = await client.request(
            "POST", url, content=b"{", headers={"Content-Type": "application/json"}
        )
        assert not_json.status_code == 400
        gone = await client.request("DELETE", f"{url}/{unique('nobody')}")
        assert gone.status_code == 404
        assert (await client.request("PUT", url)).status_code == 405
    assert await members_of(slug) == {owner.username, member.username}

    # A public room has no member list to manage, even for its owner or staff.
    await Room.objects.filter(slug=room.slug).aupdate(owner=owner)
    staff = await sync_to_async(make_user)("staff", staff=True)
    for who in (owner, staff):
        async with logged_in(server, who) as client:
            response = await post_json(
                client, f"/rooms/{room.slug}/members", {"username": member.username}
            )
            assert response.status_code == 400
            assert "public" in response.json()["error"]


async def test_a_member_may_remove_themselves(
    server: Server, make_user: Callable[..., User], private_room: Room
) -> None:
    member = await sync_to_async(make_user)("member")
    await private_room.members.aadd(member)
    async with logged_in(server, member) as client:
        response = await client.request(
            "DELETE", f"/rooms/{private_room.slug}/members/{member.username}"
        )
        assert response.status_code == 204
        assert not await can_read(client, private_room.slug)


async def test_sign_up_joins_the_lobby(server: Server) -> None:
    username = unique("newcomer")
    async with Browserless(server.url) as client:
        await client.get_token()
        response = await client.client.post(
            "/accounts/signup/",
            data={
                "username": username,
                "password1": PASSWORD,
                "password2": PASSWORD,
                "csrfmiddlewaretoken": client.csrf_token,
            },
        )
        assert response.status_code == 302, response.text
        rooms = await my_rooms(client)
    assert "lobby" in rooms
    assert rooms["lobby"]["unread"] == 0  # the lobby's past is not unread to a newcomer
