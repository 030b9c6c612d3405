"""The message API: history as JSON, and posting, editing and deleting messages.

Upstream:   the browser's fetch() calls (chat/static/chat/*.js), scripts, curl.
Downstream: writes go through the ORM into chat_chatmessage, whose trigger announces them to
            every stream exactly as it announces a write from psql; reads come from the log
            (chat/history.py).
On failure: a refused write writes nothing (one statement; a post with an Idempotency-Key
            is one transaction with its key, chat/idempotency.py); a client error is a 4xx
            JSON error (chat/jsonapi.py), over a rate limit a 429 (chat/limits.py), an
            unreachable database a 503.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.exceptions import RequestDataTooBig, ValidationError
from django.db import DataError, IntegrityError, connection
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.utils import timezone

from . import db, history, idempotency, limits, replica, rooms
from .forms import message_text
from .jsonapi import dispatch, error, int_param, invalid, request_data
from .models import ChatMessage

HISTORY_LIMIT_DEFAULT, HISTORY_LIMIT_MAX = 50, 200
# A created message as every browser sees it: the SQL function that shapes the events.
_SHOWN = "SELECT chat_message_json(m)::text FROM chat_chatmessage m WHERE m.id = %s"


async def room_messages(request: HttpRequest, slug: str) -> HttpResponseBase:
    return await dispatch(request, {"GET": _list_messages, "POST": _post_message}, slug)


async def _list_messages(request: HttpRequest, slug: str) -> JsonResponse:
    room = await rooms.run_and_release(rooms.readable_room, request.user, slug)
    try:
        after = int_param(request, "after", minimum=0)
        before = int_param(request, "before", minimum=1)
        around = int_param(request, "around", minimum=1)
        limit = int_param(request, "limit", minimum=1, maximum=HISTORY_LIMIT_MAX)
    except ValueError as exc:
        return error(400, str(exc))
    if sum(param is not None for param in (after, before, around)) > 1:
        return error(400, "use one of after (a cursor), before or around (a message id)")
    # "after" asks for every change after a cursor: fenced like a stream's replay. The other
    # reads show history as of a moment, which a replica a little behind may answer; a
    # client continues from the cursor it was given (chat/replica.py).
    fence = await replica.fence() if after is not None else None
    async with replica.reading(fence, stale_ok=True) as conn:
        if around is not None:
            near = await history.messages_around(
                conn, room.slug, around, limit or HISTORY_LIMIT_DEFAULT
            )
            if near is None:
                return error(404, f"no message {around} in room {slug!r}")
            body = {"room": room.slug, "cursor": near.cursor, "messages": near.rows}
            return JsonResponse(body | {"has_more": near.has_more, "has_newer": near.has_newer})
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


async def _post_message(request: HttpRequest, slug: str) -> HttpResponseBase:
    try:
        key = idempotency.key_from(request)
        text = message_text(request_data(request))
    except idempotency.KeyInvalid as exc:
        return error(400, str(exc))
    except (RequestDataTooBig, ValidationError) as exc:
        return invalid(exc)
    try:
        answer = await rooms.run_and_release(_create_message, request, slug, text, key)
    except (IntegrityError, DataError) as exc:  # a CHECK we did not foresee: still a 400
        return error(400, f"the database refused this message: {exc}".splitlines()[0])
    except idempotency.KeyReused as exc:
        return error(422, str(exc))
    except idempotency.KeyBusy as exc:
        return error(409, str(exc))
    return HttpResponse(answer.body, status=answer.status, content_type="application/json")


def _create_message(
    request: HttpRequest, slug: str, text: str, key: str | None
) -> idempotency.Answer:
    """Post once: a key already answered is answered again (before the rate limit counts
    it: a retry is not a new message); otherwise check access, count, write."""
    user = request.user
    if key is not None and user.is_authenticated:
        answer = idempotency.stored_answer(user.pk, key, idempotency.fingerprint(slug, text))
        if answer is not None:
            return answer
    room = rooms.postable_room(user, slug)  # raises unless signed in and allowed
    limits.check_messages(user)
    sender_id = user.pk
    assert sender_id is not None  # postable_room refused anonymous users

    def post() -> idempotency.Answer:
        message = ChatMessage.objects.create(
            room=room, author=user.get_username(), sender_id=sender_id, text=text
        )
        # Read in this connection, so a keyed post keeps the answer in its transaction.
        with connection.cursor() as cursor:
            cursor.execute(_SHOWN, [message.pk])
            row = cursor.fetchone()
        if row is None:  # hard-deleted (psql, admin) in the instant since we wrote it
            raise rooms.RoomNotFound(f"message {message.pk} is gone")
        (shown,) = row
        return idempotency.Answer(201, JsonResponse(json.loads(shown)).content.decode())

    if key is None:
        return post()
    return idempotency.once(sender_id, key, idempotency.fingerprint(slug, text), post)


async def message_detail(request: HttpRequest, slug: str, message_id: int) -> HttpResponseBase:
    return await dispatch(
        request, {"PATCH": _edit_message, "DELETE": _delete_message}, slug, message_id
    )


async def _edit_message(request: HttpRequest, slug: str, message_id: int) -> JsonResponse:
    try:
        text = message_text(request_data(request))
    except (RequestDataTooBig, ValidationError) as exc:
        return invalid(exc)

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
    async with db.connection() as conn:
        message = await history.fetch_message(conn, message_id)
    if message is None:  # hard-deleted (psql, admin) in the instant since we wrote it
        raise rooms.RoomNotFound(f"message {message_id} is gone")
    return message
