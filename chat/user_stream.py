"""Hop 4, HTTP: ``GET /events``, one SSE stream for every room the signed-in user joined.

Upstream:   chat/history.py ``changes_since`` (the replay after the client's token), then
            chat/user_feeds.py via the listener (live batches, the user's own room events).
Downstream: the browser (one connection shared by its tabs), or any SSE client.
On failure: a stream that ends (log-out, server stopping, database gone, buffer overflow)
            loses nothing: the client reconnects with Last-Event-ID, an opaque token
            (chat/position.py), and the replay fills the gap, each transaction whole.

Served beside Django like chat/stream.py (config/asgi.py ``ROUTES``), with the same
plumbing (chat/asgi_http.py); the replay-then-live loop is chat/token_stream.py's, shared with
``GET /search/events``. The token goes on the last frame of each batch only, so a
client that resumes never splits a transaction: it gets what comes after, none of it twice.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from django.contrib import auth
from django.http import HttpRequest
from django.urls import get_script_prefix

from . import asgi_http, log_by_snapshot, position, rooms, sse, token_stream
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
from .position import Snapshot
from .subscription import Viewer
from .user_feeds import SignedOut
from .user_subscription import UserSubscription

logger = logging.getLogger("pgchat.user_stream")


def user_events_url() -> str:
    return f"{get_script_prefix()}events"


async def user_events(scope: Scope, receive: Receive, send: Send) -> None:
    """``GET /events``: what the client's token has not seen in the user's rooms, then live."""
    try:
        request = checked_request(scope)
        try:
            since = position.decode(last_event_id(request, scope))
        except position.InvalidPosition as exc:
            raise Refused(400, str(exc)) from None
    except Refused as refusal:
        await send_error(send, refusal)
        return
    users = get_listener().users

    async def register() -> tuple[UserSubscription, Snapshot]:
        user_id = await rooms.run_and_release(_signed_in, request)
        if user_id is None:
            raise Refused(403, "sign in to open /events")
        try:
            return await users.register(Viewer(user_id, asgi_http.session_key(request)), since)
        except SignedOut as exc:
            raise Refused(403, str(exc)) from None

    await token_stream.open_and_serve(
        "/events", since, register, _read_page, users.unregister, receive, send
    )


def _signed_in(request: HttpRequest) -> int | None:
    """The request's user id, as AuthenticationMiddleware would find it; None: anonymous."""
    return rooms.viewer_id(auth.get_user(request))


def _read_page(sub: UserSubscription) -> token_stream.ReadPage:
    """A replay page of ``GET /events``: whole transactions of the user's rooms."""

    async def read(
        conn: psycopg.AsyncConnection[Any], done: Snapshot, upto: Snapshot, after: int
    ) -> token_stream.Page:
        window = await log_by_snapshot.changes_since(
            conn,
            done,
            sorted(sub.rooms),
            target=upto,
            after=after,
            limit=log_by_snapshot.REPLAY_TRANSACTIONS,
        )
        frames = [
            sse.encode_untagged(event.name, event.message)
            for txn in window.transactions
            for event in txn.events
        ]
        if window.transactions:
            after = window.transactions[-1].top
        return token_stream.Page(frames, after, window.has_more)

    return read
