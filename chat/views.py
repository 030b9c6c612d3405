"""Hop 4, HTTP: the room page, the JSON API and the SSE event stream.

Upstream:   chat/listener.py (live frames), chat/history.py (what a client missed).
Downstream: the browser: chat/static/chat/chat.js, or any HTTP/SSE client.
On failure: a stream that ends (server stopping, slow client dropped, error) loses nothing:
            the browser reconnects with Last-Event-ID and the replay fills the gap.

Views never LISTEN and never NOTIFY: writes go through the ORM and the trigger announces them,
exactly as it announces a write from psql.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import psycopg
from django.core.exceptions import RequestDataTooBig, ValidationError
from django.db import DatabaseError, DataError, IntegrityError
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    HttpResponseRedirect,
    JsonResponse,
    QueryDict,
    StreamingHttpResponse,
)
from django.http.multipartparser import MultiPartParserError
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.csrf import ensure_csrf_cookie
from psycopg_pool import PoolTimeout

from . import history, metrics, rooms, sse
from .feed import CursorAhead, Feed
from .forms import message_text
from .listener import get_listener
from .models import ChatMessage, Room
from .sse import Frame

logger = logging.getLogger("pgchat.views")
HISTORY_LIMIT_DEFAULT, HISTORY_LIMIT_MAX = 50, 200
HEALTH_TIMEOUT_SECONDS = 1.0  # a health check answers fast, even when the database hangs
View = Callable[..., Awaitable[HttpResponseBase]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
# The scope key under which config.asgi hands the ASGI server's own ``send`` to views
ASGI_SEND = "pgchat.send"


def error(status: int, message: str, **headers: str) -> JsonResponse:
    """The one error shape of the API: ``{"error": "..."}``."""
    response = JsonResponse({"error": message}, status=status)
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response


async def dispatch(request: HttpRequest, handlers: dict[str, View], *args: Any) -> Any:
    """Route by method, answering a JSON 405 with an Allow header for the others; map the
    access errors of chat/rooms.py to 404 and 403, and an unreachable database to 503."""
    handler = handlers.get(request.method or "")
    if handler is None:
        allowed = ", ".join(sorted(handlers))
        return error(405, f"method {request.method} not allowed; use {allowed}", Allow=allowed)
    try:
        return await handler(request, *args)
    except rooms.RoomNotFound as exc:
        return error(404, str(exc))
    except rooms.NotAllowed as exc:
        return error(403, str(exc))
    except (DatabaseError, psycopg.Error, PoolTimeout) as exc:  # down, restarting, saturated
        logger.warning("database unavailable for %s %s: %r", request.method, request.path, exc)
        return error(503, "the database is unavailable; retry shortly", Retry_After="2")


# -- pages -------------------------------------------------------------------------------


async def index(request: HttpRequest) -> HttpResponse:
    return HttpResponseRedirect(reverse("room", args=["lobby"]))


@ensure_csrf_cookie  # chat.js reads the token from the cookie for its fetch() calls
async def room_page(request: HttpRequest, slug: str) -> HttpResponseBase:
    """History up to cursor N, rendered with N, so the page's stream starts exactly there."""

    async def show(request: HttpRequest, slug: str) -> HttpResponse:
        room = await rooms.run_and_release(_readable_room, request, slug)
        async with history.connection() as conn:
            page = await history.recent_messages(
                conn, room.slug, before=None, limit=HISTORY_LIMIT_DEFAULT
            )
        # Rendered in the request's thread: the template reads the lazy user, the session
        # and flash messages, all of which may query the database.
        return await rooms.run_and_release(_render_room, request, room, page)

    return await dispatch(request, {"GET": show}, slug)


def _render_room(request: HttpRequest, room: Room, page: history.Page) -> HttpResponse:
    user = request.user
    boot = {
        "room": room.slug,
        "cursor": page.cursor,
        "messages": page.rows,
        "has_more": page.has_more,
        "user": {"id": user.pk, "name": user.get_username(), "is_staff": bool(user.is_staff)}
        if user.is_authenticated
        else None,
        "urls": {
            "events": reverse("room_events", args=[room.slug]),
            "messages": reverse("room_messages", args=[room.slug]),
        },
    }
    return render(request, "chat/room.html", {"room": room, "boot": boot})


def _readable_room(request: HttpRequest, slug: str) -> Room:
    return rooms.readable_room(request.user, slug)


# -- the event stream --------------------------------------------------------------------


async def room_events(request: HttpRequest, slug: str) -> HttpResponseBase:
    return await dispatch(request, {"GET": _open_stream}, slug)


async def _open_stream(request: HttpRequest, slug: str) -> HttpResponseBase:
    room = await rooms.readable_room_slug(request.user, slug)  # 404/403 first
    try:
        # The header is newer than the query: the browser sends it on each reconnect, while
        # the URL keeps the cursor the page was rendered with.
        since = sse.parse_cursor(
            request.headers.get("Last-Event-ID") or request.GET.get("last_event_id")
        )
        # Subscribed before the response's headers go out: a client that sees the 200 and
        # then writes must receive its own write ("from now" means now).
        feed = await Feed.open(get_listener(), room, since)
    except (sse.InvalidCursor, CursorAhead) as exc:
        return error(400, str(exc))
    body = _frames(feed, request.scope.get(ASGI_SEND))
    # If the client leaves before Django starts the body, the generator never runs (nor
    # its finally); dropping it then still ends the subscription.
    weakref.finalize(body, feed.close)
    response = EventStreamResponse(body, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # stop nginx buffering the stream
    return response


class EventStreamResponse(StreamingHttpResponse):
    """An SSE body handed to Django's ASGI handler as it is.

    StreamingHttpResponse wraps an async iterator in two more async generators, to coerce
    each part to bytes; ours are bytes already, and this runs once per event per stream.
    """

    def __aiter__(self) -> AsyncIterator[bytes]:  # type: ignore[override]
        return self._iterator  # type: ignore[no-any-return]


async def _frames(feed: Feed, send: Send | None) -> AsyncIterator[bytes]:
    """RETRY, then the feed as SSE bytes, a keepalive comment when it is quiet."""
    rooms.release_request_thread()  # the middleware ran; nothing sync is left to do
    try:
        yield sse.RETRY  # Django sends the headers and this, then asks for the next part
        if send is None:  # not under config.asgi (a test client): Django writes each part
            async for batch in feed.batches():
                yield _body(batch)
            return
        # Django's per-part loop (a chunking generator and a message per part, behind two
        # iterator layers) ran once per event per stream, about a tenth of the CPU of a
        # frame: from here on the frames go straight to the server's ASGI send. Django is
        # still waiting on this generator, so it still cancels it when the client leaves.
        async for batch in feed.batches():
            await send({"type": "http.response.body", "body": _body(batch), "more_body": True})
    finally:
        feed.close()  # the client went away (Django cancels us) or the server stops


def _body(batch: list[Frame] | None) -> bytes:
    if batch is None:
        return sse.KEEPALIVE
    if len(batch) == 1:
        return batch[0].data  # the shared bytes, as they are
    return b"".join(frame.data for frame in batch)  # one write for the batch


# -- the JSON API ------------------------------------------------------------------------


async def room_messages(request: HttpRequest, slug: str) -> HttpResponseBase:
    return await dispatch(request, {"GET": _list_messages, "POST": _post_message}, slug)


async def _list_messages(request: HttpRequest, slug: str) -> JsonResponse:
    room = await rooms.run_and_release(_readable_room, request, slug)
    try:
        after = _int_param(request, "after", minimum=0)
        before = _int_param(request, "before", minimum=1)
        limit = _int_param(request, "limit", minimum=1, maximum=HISTORY_LIMIT_MAX)
    except ValueError as exc:
        return error(400, str(exc))
    if after is not None and before is not None:
        return error(400, "use either after (a cursor) or before (a message id), not both")
    async with history.connection() as conn:
        if after is not None:
            page = await history.changes_after(
                conn, room.slug, after, limit or history.REPLAY_BATCH
            )
            if after > page.cursor:
                return error(400, f"cursor {after} is ahead of room {slug!r} ({page.cursor})")
            changes = [
                {"cursor": event.seq, "event": event.name, "message": event.message}
                for event in page.rows
            ]
            # "next": where to continue from (entries of messages hard-deleted since are
            # skipped, so it can be ahead of the last change listed).
            body = {
                "room": room.slug,
                "cursor": page.cursor,
                "next": page.last_seq,
                "changes": changes,
            }
        else:
            page = await history.recent_messages(
                conn, room.slug, before=before, limit=limit or HISTORY_LIMIT_DEFAULT
            )
            body = {"room": room.slug, "cursor": page.cursor, "messages": page.rows}
    return JsonResponse(body | {"has_more": page.has_more})


async def _post_message(request: HttpRequest, slug: str) -> JsonResponse:
    try:
        text = message_text(_request_data(request))
    except (RequestDataTooBig, ValidationError) as exc:
        return _invalid(exc)
    try:
        message_id = await rooms.run_and_release(_create_message, request, slug, text)
    except (IntegrityError, DataError) as exc:  # a CHECK we did not foresee: still a 400
        return error(400, f"the database refused this message: {exc}".splitlines()[0])
    return JsonResponse(await _shown(message_id), status=201)


def _create_message(request: HttpRequest, slug: str, text: str) -> int:
    room = rooms.postable_room(request.user, slug)
    message = ChatMessage.objects.create(
        room=room, author=request.user.get_username(), sender=request.user, text=text
    )
    return message.pk


async def message_detail(request: HttpRequest, slug: str, message_id: int) -> HttpResponseBase:
    return await dispatch(
        request, {"PATCH": _edit_message, "DELETE": _delete_message}, slug, message_id
    )


async def _edit_message(request: HttpRequest, slug: str, message_id: int) -> JsonResponse:
    try:
        text = message_text(_request_data(request))
    except (RequestDataTooBig, ValidationError) as exc:
        return _invalid(exc)

    def edit() -> None:
        message = rooms.editable_message(request.user, slug, message_id)
        # Only while not deleted: a moderator's delete may land between check and write.
        if not ChatMessage.objects.filter(pk=message.pk, deleted_at__isnull=True).update(
            text=text  # the trigger stamps edited_at
        ):
            raise rooms.NotAllowed("this message was deleted")

    await rooms.run_and_release(edit)
    return JsonResponse(await _shown(message_id))


async def _delete_message(request: HttpRequest, slug: str, message_id: int) -> JsonResponse:
    def delete() -> None:
        message = rooms.editable_message(request.user, slug, message_id)
        ChatMessage.objects.filter(pk=message.pk, deleted_at__isnull=True).update(
            deleted_at=timezone.now()  # soft: moderators keep the text; twice is a no-op
        )

    await rooms.run_and_release(delete)
    return JsonResponse(await _shown(message_id))


async def _shown(message_id: int) -> dict[str, Any]:
    """The message as every browser sees it, shaped by the same SQL as the events."""
    async with history.connection() as conn:
        message = await history.fetch_message(conn, message_id)
    if message is None:  # hard-deleted (psql, admin) in the instant since we wrote it
        raise rooms.RoomNotFound(f"message {message_id} is gone")
    return message


def _invalid(exc: RequestDataTooBig | ValidationError) -> JsonResponse:
    """413 for too long (the text, or the whole body), 400 for anything else."""
    if isinstance(exc, RequestDataTooBig):
        return error(413, "request body too large")
    return error(413 if exc.code == "max_length" else 400, exc.messages[0])


def _request_data(request: HttpRequest) -> dict[str, Any]:
    """A JSON object body, or form fields; raises ValidationError on anything else."""
    if request.content_type == "application/json":
        try:
            data = json.loads(request.body or b"null")
        except (ValueError, UnicodeDecodeError) as exc:
            raise ValidationError(f"body is not valid JSON: {exc}", code="invalid") from exc
        if not isinstance(data, dict):
            raise ValidationError("JSON body must be an object", code="invalid")
        return data
    if request.method == "POST":
        try:
            return request.POST.dict()
        except MultiPartParserError as exc:  # e.g. multipart without a boundary
            raise ValidationError(f"malformed form body: {exc}", code="invalid") from exc
    # Django parses form bodies for POST only; PATCH with a form body is parsed here.
    return QueryDict(request.body, encoding=request.encoding).dict()


def _int_param(
    request: HttpRequest, name: str, *, minimum: int, maximum: int = sse.MAX_CURSOR
) -> int | None:
    raw = request.GET.get(name)
    if raw is None or raw == "":
        return None
    if not raw.isascii() or not raw.isdigit() or not minimum <= int(raw) <= maximum:
        raise ValueError(f"{name} must be an integer from {minimum} to {maximum}, got {raw!r}")
    return int(raw)


# -- operations --------------------------------------------------------------------------


async def healthz(request: HttpRequest) -> JsonResponse:
    """200 when the database answers and the listener is LISTENing; 503 otherwise.

    Reports this worker process: with several workers, each answers for itself.
    """
    listener = get_listener()
    body: dict[str, Any] = {
        "worker": os.getpid(),
        "listener_connected": listener.connected,
        "listener_lag_seconds": listener.last_lag_seconds,  # trigger -> fan-out, last event
        "subscribers": listener.subscriber_count,
        "counters": dict(listener.stats),
        "database": False,
    }
    try:
        body["notification_queue_usage"] = await _notification_queue_usage()
        body["database"] = True
    except Exception as exc:  # DatabaseError, PoolTimeout, TimeoutError: report, never raise
        body["database_error"] = str(exc) or type(exc).__name__
    # From the body, not the listener: it may reconnect while the query above awaits, and
    # the status must agree with the fields it is sent with.
    body["status"] = "ok" if body["database"] and body["listener_connected"] else "unavailable"
    return JsonResponse(body, status=200 if body["status"] == "ok" else 503)


async def metrics_view(request: HttpRequest) -> HttpResponse:
    """Prometheus text format: all workers' counters, gauges and latency histogram."""
    try:
        usage: float | None = await _notification_queue_usage()
    except Exception:  # the database is down: still report what the workers know
        usage = None
    text = await asyncio.to_thread(metrics.exposition, usage)  # reads files: off the loop
    return HttpResponse(text, content_type="text/plain; version=0.0.4; charset=utf-8")


async def _notification_queue_usage() -> float:
    async with asyncio.timeout(HEALTH_TIMEOUT_SECONDS):
        async with history.connection() as conn:
            cur = await conn.execute("SELECT pg_notification_queue_usage()")
            row = await cur.fetchone()
    return float(row[0]) if row else 0.0


def bad_request(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    """Django's own 400s (a malformed multipart body, a bad Host header) as JSON errors."""
    return error(400, f"bad request: {exception or 'malformed'}".splitlines()[0][:200])


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """CSRF refusals as the API's JSON error (a page form still gets a readable message)."""
    return error(403, f"CSRF verification failed: {reason}")
