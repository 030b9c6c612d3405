"""``GET /search``: full-text search over the rooms the user may read (chat/search.py).

Upstream:   the browser's search box (chat/static/chat/search.js), scripts, curl.
Downstream: chat/search.py on the read pool; the rate limit (chat/limits.py) in PostgreSQL.
On failure: nothing is written but the rate limit's count; every refusal is 4xx JSON.

``GET /search?q=<text>&room=<slug>&before=<id>&limit=<n>`` -> ``{"results": [{"id", "room",
"author", "text", "created_at", "snippet"}], "next_before": id or null}``, newest first.
``q``: web-search syntax (``"a phrase"``, ``or``, ``-word``), 1 to 256 characters, with at
least one word to find. ``limit``: 1 to 50 (default 20). ``before``: a message id, the
previous page's ``next_before``. ``room``: only that room (404 if the user may not read it).
Logged out, a visitor searches the public rooms (they may read those anyway).
``snippet``: ``[{"text", "match"}]``, plain text; ``match`` marks the words found.
"""

from __future__ import annotations

import re

from django.conf import settings
from django.http import HttpRequest, HttpResponseBase, JsonResponse

from . import limits, replica, rooms, search
from .jsonapi import dispatch, error, int_param
from .models import ROOM_SLUG_MAX_LENGTH

_SLUG = re.compile(rf"[-a-zA-Z0-9_]{{1,{ROOM_SLUG_MAX_LENGTH}}}")


async def search_view(request: HttpRequest) -> HttpResponseBase:
    return await dispatch(request, {"GET": _search})


async def _search(request: HttpRequest) -> JsonResponse:
    try:
        text = search.check_text(request.GET.get("q"))
        before = int_param(request, "before", minimum=1)
        limit = int_param(request, "limit", minimum=1, maximum=search.LIMIT_MAX)
    except (search.BadQuery, ValueError) as exc:
        return error(400, str(exc))
    room = request.GET.get("room") or None
    if room is not None and not _SLUG.fullmatch(room):
        return error(404, f"no room {room!r}")  # as for any room that does not exist
    viewer = await rooms.run_and_release(_counted_viewer, request)
    wanted = search.Search(
        text, viewer, room, before, limit or search.LIMIT_DEFAULT, settings.CHAT_SEARCH_WINDOW
    )
    try:
        # Fenced: the query itself decides which rooms the viewer may read
        # (chat_room_readable), so a replica behind the primary could still show a room the
        # viewer was just removed from.
        async with replica.reading(await replica.fence()) as conn:
            found = await search.find(conn, wanted)
    except search.BadQuery as exc:
        return error(400, str(exc))
    except search.NoRoom as exc:
        return error(404, str(exc))
    return JsonResponse(found)


def _counted_viewer(request: HttpRequest) -> int | None:
    """Count the search against the user's (or, logged out, the address's) budget, then
    the viewer id the read rule takes."""
    limits.check_searches(request)
    return rooms.viewer_id(request.user)
