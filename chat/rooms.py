"""Who may see, post in and moderate which room: the one place these rules live.

Sync ORM code, called from async views through ``run_and_release``, which returns the
request's database connection as soon as the check is done: an SSE stream lasts minutes and
must not hold a connection for its whole life. The stream's check of a public room is async
(``readable_room_slug``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ParamSpec, TypeVar

from asgiref.sync import sync_to_async
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import close_old_connections, connection
from django.db.models import Q, QuerySet

from . import db
from .models import ChatMessage, Room

P = ParamSpec("P")
T = TypeVar("T")
AnyUser = AbstractBaseUser | AnonymousUser


class RoomNotFound(LookupError):
    """No such room, or no such message in it (404)."""


class NotAllowed(PermissionError):
    """The user may not do this here, e.g. read a private room they are not in (403)."""


def visible_rooms(user: AnyUser) -> QuerySet[Room]:
    """Public rooms, plus private rooms the user belongs to (all rooms for staff)."""
    rooms = Room.objects.all()
    if getattr(user, "is_staff", False):
        return rooms
    if user.is_authenticated:
        return rooms.filter(Q(is_private=False) | Q(members=user)).distinct()
    return rooms.filter(is_private=False)


def readable_room(user: AnyUser, slug: str) -> Room:
    """The room, if this user may read it; raises RoomNotFound or NotAllowed."""
    try:
        room = Room.objects.get(slug=slug)
    except Room.DoesNotExist:
        raise RoomNotFound(f"no room {slug!r}") from None
    if room.is_private and not can_enter_private(user, room):
        raise NotAllowed(f"room {slug!r} is private")
    return room


async def readable_room_slug(user: AnyUser, slug: str) -> str:
    """``readable_room`` for the event stream, whose opens come in storms (every client of a
    restarted server reconnects at once): a public room is one query on the async read pool,
    with no thread and no session read (``request.user`` is lazy: pass it as it is); a
    private room takes the full check above."""
    async with db.connection() as conn:
        cur = await conn.execute("SELECT is_private FROM chat_room WHERE slug = %s", (slug,))
        row = await cur.fetchone()
    if row is None:
        raise RoomNotFound(f"no room {slug!r}")
    if row[0]:
        room = await run_and_release(readable_room, user, slug)
        return room.slug
    return slug


def can_enter_private(user: AnyUser, room: Room) -> bool:
    if not user.is_authenticated:
        return False
    return bool(user.is_staff) or room.members.filter(pk=user.pk).exists()


def postable_room(user: AnyUser, slug: str) -> Room:
    """The room, if this user may post in it (readable and logged in)."""
    room = readable_room(user, slug)
    if not user.is_authenticated:
        raise NotAllowed("log in to post")
    return room


def editable_message(user: AnyUser, slug: str, message_id: int) -> ChatMessage:
    """A message this user may edit or delete: their own, or any if staff."""
    room = readable_room(user, slug)
    try:
        message = ChatMessage.objects.get(pk=message_id, room=room)
    except ChatMessage.DoesNotExist:
        raise RoomNotFound(f"no message {message_id} in room {slug!r}") from None
    if not user.is_authenticated:
        raise NotAllowed("log in to change messages")
    if not (user.is_staff or (message.sender_id is not None and message.sender_id == user.pk)):
        raise NotAllowed("only its author or staff may change this message")
    if message.deleted_at is not None:
        raise NotAllowed("this message was deleted")
    return message


async def run_and_release(func: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run sync ORM code in the request's thread, then give its DB connection back."""

    def call() -> T:
        try:
            return func(*args, **kwargs)
        finally:
            if connection.in_atomic_block:  # never close mid-transaction
                close_old_connections()
            else:
                connection.close()

    return await sync_to_async(call)()
