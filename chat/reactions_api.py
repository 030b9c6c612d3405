"""The reactions API: add or take back an emoji on a message.

Upstream:   the browser's fetch() calls, scripts, curl (login and CSRF required).
Downstream: one INSERT or DELETE on chat_reaction, whose trigger logs ``reacted`` /
            ``unreacted`` in the room's change log and rings the room's bell, exactly as a
            psql write does (the views never NOTIFY).
On failure: a refused request writes nothing; errors are JSON (chat/jsonapi.py): 400 for
            anything but one emoji, 404 for a room the caller may not read or a message not
            in it, 403 when logged out or the message was deleted.

| method, path                                              | answers                      |
|-----------------------------------------------------------|------------------------------|
| POST /rooms/<slug>/messages/<id>/reactions {"emoji"}      | 201 added, 200 already there |
| DELETE /rooms/<slug>/messages/<id>/reactions/<emoji>      | 204 (also when not there)    |

Both answer (or take) the emoji as stored: fully qualified (chat/reaction_emoji.py).
"""

from __future__ import annotations

from django.core.exceptions import RequestDataTooBig, ValidationError
from django.db import connection
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse

from . import reaction_emoji, rooms
from .jsonapi import dispatch, error, invalid, request_data
from .models import ChatMessage

_ADD = """
    INSERT INTO chat_reaction (message_id, user_id, emoji) VALUES (%s, %s, %s)
    ON CONFLICT (message_id, user_id, emoji) DO NOTHING RETURNING id
"""
_REMOVE = "DELETE FROM chat_reaction WHERE message_id = %s AND user_id = %s AND emoji = %s"


async def message_reactions(request: HttpRequest, slug: str, message_id: int) -> HttpResponseBase:
    return await dispatch(request, {"POST": _add}, slug, message_id)


async def reaction_detail(
    request: HttpRequest, slug: str, message_id: int, emoji: str
) -> HttpResponseBase:
    async def remove(request: HttpRequest, slug: str, message_id: int) -> HttpResponseBase:
        try:
            shown = reaction_emoji.normalize(emoji)
        except reaction_emoji.InvalidEmoji as exc:
            return error(400, str(exc))
        await rooms.run_and_release(_write, request, slug, message_id, shown, _REMOVE)
        return HttpResponse(status=204)

    return await dispatch(request, {"DELETE": remove}, slug, message_id)


async def _add(request: HttpRequest, slug: str, message_id: int) -> HttpResponseBase:
    try:
        shown = reaction_emoji.normalize(request_data(request).get("emoji"))
    except (RequestDataTooBig, ValidationError) as exc:
        return invalid(exc)
    except reaction_emoji.InvalidEmoji as exc:
        return error(400, str(exc))
    added = await rooms.run_and_release(_write, request, slug, message_id, shown, _ADD)
    body = {
        "room": slug,
        "message_id": message_id,
        "emoji": shown,
        "user": request.user.get_username(),
    }
    return JsonResponse(body, status=201 if added else 200)


def _write(request: HttpRequest, slug: str, message_id: int, shown: str, statement: str) -> bool:
    """Check that the user may react to the message, then write; True if a row changed."""
    user = request.user
    room = rooms.postable_room(user, slug)  # may read the room, and is logged in
    message = ChatMessage.objects.filter(pk=message_id, room=room).only("deleted_at").first()
    if message is None:
        raise rooms.RoomNotFound(f"no message {message_id} in room {slug!r}")
    if message.deleted_at is not None:
        raise rooms.NotAllowed("this message was deleted")
    with connection.cursor() as cursor:
        cursor.execute(statement, [message_id, user.pk, shown])
        return bool(cursor.rowcount)
