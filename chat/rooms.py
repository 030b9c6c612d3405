"""Who may see, post in and moderate which room: the one place these rules live.

The read rule itself is one SQL function, ``chat_room_readable(room, viewer)`` (migration
0005): the pages and the API (ORM, here), stream opens (async, here) and the listener's
re-checks of open streams (chat/gatekeeper.py, through ``unreadable``) all call it, so the
three can't disagree. A private room answers a visitor who may not read it exactly as a room
that does not exist (404), so its existence does not leak.

Sync ORM code is called from async views through ``run_and_release``, which returns the
request's database connection as soon as the check is done.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ParamSpec, TypeVar

from asgiref.sync import sync_to_async
from django.contrib.auth import get_user
from django.contrib.auth.models import AbstractUser, AnonymousUser
from django.db import close_old_connections, connection
from django.db.models import BooleanField, QuerySet
from django.db.models.expressions import RawSQL
from django.http import HttpRequest
from django.utils.module_loading import import_string

from . import db
from .models import ChatMessage, Room

P = ParamSpec("P")
T = TypeVar("T")
AnyUser = AbstractUser | AnonymousUser

_READABLE = "chat_room_readable(chat_room.slug, %s)"


class RoomNotFound(LookupError):
    """No such room, one the user may not read, or no such message in it (404)."""


class NotAllowed(PermissionError):
    """The user may read the room but not do this, e.g. post while logged out (403)."""


class InvalidChange(ValueError):
    """A change this kind of room does not take, or naming no such user (400)."""


def viewer_id(user: AnyUser) -> int | None:
    """The id the SQL rule takes: None for anonymous (and for an inactive user's session,
    which Django's auth backend already resolves to anonymous)."""
    return user.pk if user.is_authenticated else None


def visible_rooms(user: AnyUser) -> QuerySet[Room]:
    """The rooms this user may read."""
    readable = RawSQL(_READABLE, (viewer_id(user),), output_field=BooleanField())
    return Room.objects.filter(readable)


def readable_room(user: AnyUser, slug: str) -> Room:
    """The room, if this user may read it; raises RoomNotFound otherwise."""
    room = visible_rooms(user).filter(slug=slug).first()
    if room is None:
        raise RoomNotFound(f"no room {slug!r}")
    return room


async def readable_room_slug(user: AnyUser, slug: str) -> str:
    """``readable_room`` for stream opens, which come in storms (every client of a restarted
    server reconnects at once): one async query when anyone may read the room, so a public
    room costs no thread and no session read (pass ``request.user`` lazy, as it is). Only
    otherwise is the user resolved, and the same rule asked again for them."""
    await readable_by(user, slug)
    return slug


async def readable_by(user: AnyUser, slug: str) -> bool:
    """``readable_room_slug``'s check, saying who may read the room: True if anyone may,
    False if this user may (and not anyone); raises RoomNotFound if this user may not."""
    async with db.connection() as conn:
        cur = await conn.execute("SELECT chat_room_readable(%s, NULL)", (slug,))
        row = await cur.fetchone()
    if row is not None and row[0]:
        return True
    uid = await run_and_release(viewer_id, user)  # the lazy user, in a thread, then released
    if uid is not None:
        async with db.connection() as conn:
            cur = await conn.execute("SELECT chat_room_readable(%s, %s)", (slug, uid))
            row = await cur.fetchone()
        if row is not None and row[0]:
            return False
    raise RoomNotFound(f"no room {slug!r}")


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


# -- the workspace: joining, members, direct conversations (chat/membership.py) ----------
#
# chat_room_members is what a user joined: for a private room that is also who may read it
# (chat_room_readable), for a public room only a place in their workspace.


def signed_in_id(user: AnyUser) -> int:
    """The user's id; raises NotAllowed for a visitor who is not logged in."""
    uid = viewer_id(user)
    if uid is None:
        raise NotAllowed("log in first")
    return uid


def signed_in_room(user: AnyUser, slug: str) -> Room:
    """The room, if this user may read it (else RoomNotFound) and is logged in."""
    room = readable_room(user, slug)
    signed_in_id(user)
    return room


def is_member(user: AnyUser, room: Room) -> bool:
    return room.members.filter(pk=signed_in_id(user)).exists()


def joinable_room(user: AnyUser, slug: str) -> Room:
    """A room this user may join: any public room they may read; a private one only if they
    are in it already (joining it again changes nothing). Private rooms are entered by
    invitation (``managed_room``), so even staff, who may read them, do not join them."""
    room = signed_in_room(user, slug)
    if room.is_private and not is_member(user, room):
        raise NotAllowed("a private room is joined by invitation: ask its owner")
    return room


def leavable_room(user: AnyUser, slug: str) -> Room:
    """A room this user may leave: any they may read, but a direct conversation, whose two
    members are fixed. Leaving a private room gives up reading it."""
    room = signed_in_room(user, slug)
    if room.is_direct:
        raise InvalidChange("a direct conversation cannot be left")
    return room


def may_manage_members(user: AnyUser, room: Room) -> bool:
    """The room's owner (its creator) and staff manage who is in it."""
    uid = viewer_id(user)
    return uid is not None and (
        user.is_staff or (room.owner_id is not None and room.owner_id == uid)
    )


def managed_room(user: AnyUser, slug: str) -> Room:
    """A private room whose members this user may add and remove: 404 if they may not read
    it, 403 if it is not theirs to manage, 400 if it is public (anyone joins it) or direct
    (its two members are fixed)."""
    room = signed_in_room(user, slug)
    if not may_manage_members(user, room):
        raise NotAllowed("only the room's owner or staff may change its members")
    if room.is_direct:
        raise InvalidChange("a direct conversation's members cannot change")
    if not room.is_private:
        raise InvalidChange("a public room has no member list to manage: anyone may join it")
    return room


def can_manage(user: AnyUser, room: Room) -> bool:
    """Whether ``managed_room`` would let this user change the room's members (for a page
    deciding to offer it)."""
    try:
        managed_room(user, room.slug)
    except (RoomNotFound, NotAllowed, InvalidChange):
        return False
    return True


# -- re-checking open streams (chat/gatekeeper.py) ---------------------------------------

_UNREADABLE = """
    SELECT want.i FROM unnest(%s::text[], %s::bigint[], %s::text[])
        WITH ORDINALITY AS want(room, viewer, session_key, i)
    WHERE NOT chat_room_readable(
        want.room,
        -- a viewer whose session is gone (logged out, deleted, expired) is anonymous now
        CASE WHEN want.session_key IS NULL
                  OR EXISTS (SELECT FROM django_session s
                             WHERE s.session_key = want.session_key AND s.expire_date > now())
             THEN want.viewer END
    )
"""


async def unreadable(conn: Any, checks: Sequence[tuple[str, int | None, str | None]]) -> set[int]:
    """Of (room, viewer id, session key) triples, the 0-based positions of those the rule
    now refuses; one statement for all of them."""
    if not checks:
        return set()
    rooms, viewers, keys = (list(column) for column in zip(*checks, strict=True))
    cur = await conn.execute(_UNREADABLE, (rooms, viewers, keys))
    return {int(i) - 1 for (i,) in await cur.fetchall()}


async def anyone_may_read(conn: Any, slugs: Sequence[str]) -> set[str]:
    """Of these rooms, those the rule lets an anonymous visitor read (no user needed)."""
    cur = await conn.execute(
        "SELECT s FROM unnest(%s::text[]) AS s WHERE chat_room_readable(s, NULL)", (list(slugs),)
    )
    return {slug for (slug,) in await cur.fetchall()}


def session_users(session_keys: Sequence[str]) -> dict[str, int | None]:
    """Who each session is logged in as now (None: anonymous or gone), through Django's own
    session store and auth backend, so password changes and inactive users count as they
    do for a request. Sync: call it through ``sync_to_async``."""
    from django.conf import settings

    store = import_string(f"{settings.SESSION_ENGINE}.SessionStore")
    users: dict[str, int | None] = {}
    try:
        for key in session_keys:
            shell = HttpRequest()
            shell.session = store(key)
            users[key] = viewer_id(get_user(shell))
    finally:
        close_old_connections()
        connection.close()  # this runs outside any request: give the connection back
    return users


async def run_and_release(func: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run sync ORM code in a thread, then give its DB connection back."""

    def call() -> T:
        try:
            return func(*args, **kwargs)
        finally:
            if connection.in_atomic_block:  # never close mid-transaction
                close_old_connections()
            else:
                connection.close()

    return await sync_to_async(call)()
