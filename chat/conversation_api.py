"""The conversation's ephemeral API: who is typing, who is here (issue 13).

Upstream:   the browser's fetch() calls, scripts, curl (typing needs login and CSRF).
Downstream: typing: one upsert on the UNLOGGED ``chat_typing``, whose trigger rings a typing
            bell that each listener checks and sends to the room's other streams
            (chat/conversation_feeds.py); never written to the change log. Presence: read
            from ``chat_presence`` of live workers (chat/presence.py).
On failure: a typing signal lost is a name not shown for 5 s; errors are JSON
            (chat/jsonapi.py), 429 over the typing rate limit.

| method, path                   | answers                                               |
|--------------------------------|-------------------------------------------------------|
| POST /rooms/<slug>/typing      | 204; rings at most once per CHAT_TYPING_THROTTLE_SECONDS |
| GET /rooms/<slug>/presence     | 200 {"room", "online": [usernames]}                   |
"""

from __future__ import annotations

import random

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse

from . import db, limits, presence, rooms
from .jsonapi import dispatch

PRUNE_ONE_IN = 200  # typing signals: rows older than an hour go on about one in this many

# The row is only touched when it last rang longer ago than the throttle: no update, no
# trigger, no bell. One statement: two workers racing for one user ring once.
_TYPING = """
    INSERT INTO chat_typing AS t (room_id, user_id) VALUES (%s, %s)
    ON CONFLICT (room_id, user_id) DO UPDATE SET rung_at = clock_timestamp()
    WHERE t.rung_at <= clock_timestamp() - make_interval(secs => %s)
"""
_PRUNE = "DELETE FROM chat_typing WHERE rung_at < clock_timestamp() - interval '1 hour'"


async def room_typing(request: HttpRequest, slug: str) -> HttpResponseBase:
    async def typing(request: HttpRequest, slug: str) -> HttpResponse:
        await rooms.run_and_release(_ring, request, slug)
        return HttpResponse(status=204)

    return await dispatch(request, {"POST": typing}, slug)


def _ring(request: HttpRequest, slug: str) -> bool:
    """Check, count, then ring unless this user rang this room within the throttle; True if
    it rang."""
    user = request.user
    room = rooms.postable_room(user, slug)  # may read it, and is logged in
    limits.check_typing(user)
    with connection.cursor() as cursor:
        if random.randrange(PRUNE_ONE_IN) == 0:
            cursor.execute(_PRUNE)
        cursor.execute(_TYPING, [room.slug, user.pk, settings.CHAT_TYPING_THROTTLE_SECONDS])
        return bool(cursor.rowcount)


async def room_presence(request: HttpRequest, slug: str) -> HttpResponseBase:
    async def online(request: HttpRequest, slug: str) -> JsonResponse:
        room = await rooms.run_and_release(rooms.readable_room, request.user, slug)
        async with db.connection() as conn:
            names = (await presence.online(conn, [room.slug]))[room.slug]
        return JsonResponse({"room": room.slug, "online": sorted(names)})

    return await dispatch(request, {"GET": online}, slug)
