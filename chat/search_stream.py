"""Hop 4, HTTP: ``GET /search/events?q=<text>&room=<slug>``, a live saved search: new messages
that match, in the rooms the viewer may read, as SSE.

Upstream:   chat/search_feeds.py (the replay's matches after the client's token, then the
            listener's live batches of matches).
Downstream: the browser, or any SSE client.
On failure: a stream that ends (log-out, server stopping, database gone, buffer overflow)
            loses nothing: the client reconnects with Last-Event-ID (a snapshot token,
            chat/position.py, as ``GET /events``) and the replay sends the matches committed
            meanwhile, none twice.

The query is checked exactly as ``GET /search`` checks it (chat/search.py ``check_text`` and
``check``: same 400s, a ``room`` the viewer may not read is a 404), and counts against the
same rate limit, once per open. Logged out, a visitor follows the public rooms, as
``GET /search`` lets them search those.
"""

from __future__ import annotations

import logging
import re

from django.conf import settings
from django.contrib import auth
from django.http import HttpRequest
from django.urls import get_script_prefix

from . import asgi_http, db, limits, position, ratelimit, rooms, search, token_stream
from .asgi_http import (
    Receive,
    Refused,
    Scope,
    Send,
    checked_request,
    last_event_id,
    send_error,
)
from .listener import get_listener
from .models import ROOM_SLUG_MAX_LENGTH
from .position import Snapshot
from .search_feeds import SearchSubscription, replay_page
from .subscription import Viewer

logger = logging.getLogger("pgchat.search_stream")
_SLUG = re.compile(rf"[-a-zA-Z0-9_]{{1,{ROOM_SLUG_MAX_LENGTH}}}")


def search_events_url() -> str:
    return f"{get_script_prefix()}search/events"


async def search_events(scope: Scope, receive: Receive, send: Send) -> None:
    """``GET /search/events``: the matches the client's token has not seen, then live."""
    try:
        request = checked_request(scope)
        params = asgi_http.query(scope)
        try:
            text = search.check_text(params.get("q"))
            since = position.decode(last_event_id(request, scope))
        except (search.BadQuery, position.InvalidPosition) as exc:
            raise Refused(400, str(exc)) from None
        room = params.get("room") or None
        if room is not None and not _SLUG.fullmatch(room):
            raise Refused(404, f"no room {room!r}")  # as for any room that does not exist
    except Refused as refusal:
        await send_error(send, refusal)
        return
    searches = get_listener().searches

    async def register() -> tuple[SearchSubscription, Snapshot]:
        try:
            user_id = await rooms.run_and_release(_counted_viewer, request)
        except ratelimit.RateLimited as exc:
            raise Refused(429, str(exc), Retry_After=str(exc.retry_after)) from None
        viewer = Viewer(user_id, asgi_http.session_key(request) if user_id else None)
        wanted = search.Search(text, user_id, room, window=settings.CHAT_SEARCH_WINDOW)
        try:
            async with db.connection() as conn:
                await search.check(conn, wanted)
            return await searches.register(
                viewer, text, room, since.whole if since is not None else None
            )
        except search.BadQuery as exc:
            raise Refused(400, str(exc)) from None
        except search.NoRoom as exc:
            raise Refused(404, str(exc)) from None

    await token_stream.open_and_serve(
        "/search/events", since, register, replay_page, searches.unregister, receive, send
    )


def _counted_viewer(request: HttpRequest) -> int | None:
    """As ``GET /search``: count the open against the searches budget, then the viewer id
    the read rule takes (None: anonymous, the public rooms)."""
    request.user = auth.get_user(request)
    limits.check_searches(request)
    return rooms.viewer_id(request.user)
