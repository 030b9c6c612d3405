"""The membership API: join and leave rooms, owners manage members, direct conversations.

Upstream:   the browser's fetch() calls (the sidebar, a room's page), scripts, curl. Login and
            CSRF are required for every change (Django's CSRF middleware: ``X-CSRFToken``).
Downstream: chat/membership.py writes chat_room_members and chat_room; the triggers ring
            "joined" / "left" for the user's streams (the views never NOTIFY).
On failure: a refused change writes nothing; errors are JSON (chat/jsonapi.py): 404 for a
            room the caller may not read, 403 for a change that is not theirs to make, 400
            for one the room's kind does not take or an unknown user.

| method, path                               | answers                                     |
|--------------------------------------------|---------------------------------------------|
| POST /rooms/<slug>/join                    | 201 joined now, 200 already in it            |
| POST /rooms/<slug>/leave                   | 200 (also when not in it)                    |
| GET /rooms/<slug>/members                  | 200 the owner, the members, may I manage     |
| POST /rooms/<slug>/members {"username"}    | 201 added, 200 already a member              |
| DELETE /rooms/<slug>/members/<username>    | 204 (also when not a member)                 |
| POST /dm/<username>                        | 201 created, 200 existing: {"room": slug}    |
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import RequestDataTooBig, ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse

from . import membership, rooms
from .jsonapi import dispatch, invalid, request_data

MEMBERS_LISTED_MAX = 1000  # a public room's joiners can be everyone (the lobby)


async def room_join(request: HttpRequest, slug: str) -> HttpResponseBase:
    async def join(request: HttpRequest, slug: str) -> JsonResponse:
        joined_now = await rooms.run_and_release(membership.join, request.user, slug)
        return JsonResponse({"room": slug, "joined": True}, status=201 if joined_now else 200)

    return await dispatch(request, {"POST": join}, slug)


async def room_leave(request: HttpRequest, slug: str) -> HttpResponseBase:
    async def leave(request: HttpRequest, slug: str) -> JsonResponse:
        await rooms.run_and_release(membership.leave, request.user, slug)
        return JsonResponse({"room": slug, "joined": False})

    return await dispatch(request, {"POST": leave}, slug)


async def room_members(request: HttpRequest, slug: str) -> HttpResponseBase:
    return await dispatch(request, {"GET": _list_members, "POST": _add_member}, slug)


async def _list_members(request: HttpRequest, slug: str) -> JsonResponse:
    body = await rooms.run_and_release(_members_of, request.user, slug)
    return JsonResponse(body)


def _members_of(user: rooms.AnyUser, slug: str) -> dict[str, Any]:
    room = rooms.signed_in_room(user, slug)
    names = list(
        get_user_model()
        .objects.filter(chat_rooms=room)
        .order_by("username")
        .values_list("username", flat=True)[: MEMBERS_LISTED_MAX + 1]
    )
    owner = None
    if room.owner_id is not None:
        owners = get_user_model().objects.filter(pk=room.owner_id)
        owner = owners.values_list("username", flat=True).first()
    return {
        "room": room.slug,
        "owner": owner,
        "members": names[:MEMBERS_LISTED_MAX],
        "has_more": len(names) > MEMBERS_LISTED_MAX,
        "can_manage": rooms.can_manage(user, room),
    }


async def _add_member(request: HttpRequest, slug: str) -> JsonResponse:
    try:
        username = _username(request_data(request))
    except (RequestDataTooBig, ValidationError) as exc:
        return invalid(exc)
    added = await rooms.run_and_release(membership.add_member, request.user, slug, username)
    return JsonResponse({"room": slug, "username": username}, status=201 if added else 200)


async def member_detail(request: HttpRequest, slug: str, username: str) -> HttpResponseBase:
    async def remove(request: HttpRequest, slug: str, username: str) -> HttpResponse:
        await rooms.run_and_release(membership.remove_member, request.user, slug, username)
        return HttpResponse(status=204)

    return await dispatch(request, {"DELETE": remove}, slug, username)


async def direct_room(request: HttpRequest, username: str) -> HttpResponseBase:
    async def open_direct(request: HttpRequest, username: str) -> JsonResponse:
        slug, created = await rooms.run_and_release(membership.open_direct, request.user, username)
        return JsonResponse({"room": slug}, status=201 if created else 200)

    return await dispatch(request, {"POST": open_direct}, username)


def _username(data: dict[str, Any]) -> str:
    username = data.get("username")
    if not isinstance(username, str) or not username.strip():
        raise ValidationError("username is required and must be a string", code="required")
    return username
