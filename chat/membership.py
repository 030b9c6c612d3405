"""Who is in which room: joining, leaving, owners adding and removing members, and direct
conversations. The rules are chat/rooms.py's; here are the writes that follow them.

Upstream:   chat/members_api.py (the HTTP API), chat/pages.py (a room's creator joins it).
Downstream: chat_room_members and chat_room. The triggers of migration 0007 ring "joined"
            and "left" for every row inserted or deleted (and migration 0005's access bell
            for a deletion), so the user's open streams learn of it; a join also starts the
            user's read state at the room's newest cursor.
On failure: each call is one transaction: a refused or failed change writes nothing.

Sync (ORM connection): views call these through ``rooms.run_and_release``. Every write is
``INSERT ... ON CONFLICT`` or a ``DELETE``, so two clients doing the same at once both
succeed and the table holds it once; the first to commit is the one that "created" it.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction

from . import rooms
from .models import Room
from .rooms import AnyUser, InvalidChange

_ADD = """
    INSERT INTO chat_room_members (room_id, user_id) VALUES (%s, %s)
    ON CONFLICT DO NOTHING RETURNING id
"""
_REMOVE = "DELETE FROM chat_room_members WHERE room_id = %s AND user_id = %s RETURNING id"
# The owner of a private room who leaves hands it to the member who has been in it longest,
# so a room with members always has someone to manage them; with none left, it has no owner
# (staff still manage it).
_HAND_OVER = """
    UPDATE chat_room SET owner_id = (
        SELECT m.user_id FROM chat_room_members m WHERE m.room_id = %(room)s ORDER BY m.id LIMIT 1
    )
    WHERE slug = %(room)s AND owner_id = %(user)s AND is_private
"""
_CREATE_DIRECT = """
    INSERT INTO chat_room (slug, title, is_private, is_direct) VALUES (%s, '', true, true)
    ON CONFLICT (slug) DO NOTHING RETURNING slug
"""


def direct_slug(first_id: int, second_id: int) -> str:
    """The one slug of two users' conversation, whoever opens it (lower id first)."""
    low, high = sorted((first_id, second_id))
    return f"dm-{low}-{high}"


def account(username: str) -> AbstractBaseUser:
    """The active account of that name (as Django stores it); InvalidChange otherwise."""
    user = get_user_model().objects.filter(username=username, is_active=True).first()
    if user is None:
        raise InvalidChange(f"no user named {username[:150]!r}")
    return user


def join(user: AnyUser, slug: str) -> bool:
    """Join a room; True if the user was not in it yet."""
    room = rooms.joinable_room(user, slug)
    return _add(room.slug, rooms.signed_in_id(user))


def leave(user: AnyUser, slug: str) -> bool:
    """Leave a room; True if the user was in it."""
    room = rooms.leavable_room(user, slug)
    return _remove(room, rooms.signed_in_id(user))


def add_member(user: AnyUser, slug: str, username: str) -> bool:
    """The owner (or staff) adds someone to a private room; True if they were not in it."""
    room = rooms.managed_room(user, slug)
    return _add(room.slug, account(username).pk)


def remove_member(user: AnyUser, slug: str, username: str) -> bool:
    """The owner (or staff) removes someone from a private room; anyone may remove
    themselves, which is leaving. True if they were in it. An unknown name is a 404 here:
    it is the URL's resource."""
    if username == user.get_username():
        return leave(user, slug)
    room = rooms.managed_room(user, slug)
    try:
        member = account(username)
    except InvalidChange as exc:
        raise rooms.RoomNotFound(str(exc)) from None
    return _remove(room, member.pk)


def open_direct(user: AnyUser, username: str) -> tuple[str, bool]:
    """The direct conversation of the user and ``username``: its slug, and True if this call
    created it. Two calls racing (both users at once) create one room: the slug is the
    primary key, and the loser's INSERT waits for the winner's commit, then does nothing."""
    me = rooms.signed_in_id(user)
    other = account(username)
    if other.pk == me:
        raise InvalidChange("a direct conversation needs someone else")
    slug = direct_slug(me, other.pk)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_CREATE_DIRECT, [slug])
        created = cursor.fetchone() is not None
        for member in (me, other.pk):  # both, also on a later call: it heals a removal
            cursor.execute(_ADD, [slug, member])
    return slug, created


def _add(room: str, user_id: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute(_ADD, [room, user_id])
        return cursor.fetchone() is not None


def _remove(room: Room, user_id: int) -> bool:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_REMOVE, [room.slug, user_id])
        removed = cursor.fetchone() is not None
        if removed and room.is_private and room.owner_id == user_id:
            cursor.execute(_HAND_OVER, {"room": room.slug, "user": user_id})
    return removed
