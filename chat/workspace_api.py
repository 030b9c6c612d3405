"""The workspace API: a user's rooms with unread and mention counts, and read state.

Upstream:   the browser's fetch() calls (the sidebar), scripts, curl.
Downstream: chat/workspace.py's SQL on the read pool (chat/db.py): ``GET /me/rooms`` is one
            statement; ``POST /rooms/<slug>/read`` one upsert, whose trigger rings
            ``{"kind": "read", "room", "user"}`` for the user's other streams.
On failure: a refused read position writes nothing; errors are JSON (chat/jsonapi.py).

``GET /me/rooms`` -> ``{"rooms": [{"slug", "title", "is_private", "is_direct", "dm_with",
"last_read", "latest", "unread", "mentions"}]}``: the rooms the user joined and may read,
DMs last. ``unread``: messages created after ``last_read``, not deleted, not the user's own;
``mentions``: those of them naming ``@user``. Both are exact up to 99, and 100 means "100 or
more" (show "99+"). ``dm_with``: a DM's other user (null otherwise). ``latest``: the
room's cursor (the SSE ``id:`` of its newest change); a client that has shown everything up
to it posts it as read.

``POST /rooms/<slug>/read`` with JSON ``{"cursor": N}`` -> ``{"room", "last_read"}``: the
position only moves forward (an older N answers the stored one); N above the room's latest
cursor, or not a non-negative integer, is a 400; a room the user may not read, a 404.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import RequestDataTooBig, ValidationError
from django.http import HttpRequest, HttpResponseBase, JsonResponse

from . import db, rooms, sse, workspace
from .jsonapi import dispatch, error, invalid, request_data


async def my_rooms(request: HttpRequest) -> HttpResponseBase:
    async def listed(request: HttpRequest) -> JsonResponse:
        user_id = await rooms.run_and_release(rooms.signed_in_id, request.user)
        async with db.connection() as conn:
            found = await workspace.my_rooms(conn, user_id)
        return JsonResponse({"rooms": [room.as_json() for room in found]})

    return await dispatch(request, {"GET": listed})


async def room_read(request: HttpRequest, slug: str) -> HttpResponseBase:
    return await dispatch(request, {"POST": _mark_read}, slug)


async def _mark_read(request: HttpRequest, slug: str) -> JsonResponse:
    try:
        cursor = _cursor(request_data(request))
    except (RequestDataTooBig, ValidationError) as exc:
        return invalid(exc)

    def reader(user: rooms.AnyUser, slug: str) -> int:
        rooms.signed_in_room(user, slug)  # 404 unless readable, then 403 unless logged in
        return rooms.signed_in_id(user)

    user_id = await rooms.run_and_release(reader, request.user, slug)
    try:
        async with db.connection() as conn:
            position = await workspace.mark_read(conn, user_id, slug, cursor)
    except workspace.CursorAhead as exc:
        return error(400, str(exc))
    return JsonResponse({"room": slug, "last_read": position})


def _cursor(data: dict[str, Any]) -> int:
    """A JSON integer, or a decimal string (a form post), from 0 to the largest bigint."""
    raw = data.get("cursor")
    if isinstance(raw, str) and raw.isascii() and raw.isdigit():
        raw = int(raw)
    if type(raw) is not int or not 0 <= raw <= sse.MAX_CURSOR:  # bool is an int: refused
        raise ValidationError(
            "cursor must be an integer from 0 to the room's latest cursor", code="invalid"
        )
    return raw
