"""The read rule is written once (``chat_room_readable`` in SQL) and reached three ways: the
ORM for pages and the API, one async query for stream opens, and the listener's batched
re-check of open streams. For every kind of viewer and room, the three agree."""

from __future__ import annotations

import itertools

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser

from chat import db, rooms
from chat.models import Room

from .helpers import PASSWORD, unique

VIEWERS = ["anonymous", "member", "outsider", "staff", "inactive member"]
ROOMS = ["public", "private", "missing"]
EXPECTED = {  # who may read what: the table a reviewer checks
    ("anonymous", "public"): True,
    ("member", "public"): True,
    ("outsider", "public"): True,
    ("staff", "public"): True,
    ("inactive member", "public"): True,
    ("member", "private"): True,
    ("staff", "private"): True,
}


@pytest.fixture(scope="module")
def world(django_db_blocker):  # type: ignore[no-untyped-def]
    with django_db_blocker.unblock():
        users = get_user_model().objects
        member = users.create_user(unique("member"), password=PASSWORD)
        outsider = users.create_user(unique("outsider"), password=PASSWORD)
        staff = users.create_user(unique("staff"), password=PASSWORD, is_staff=True)
        inactive = users.create_user(unique("inactive"), password=PASSWORD, is_active=False)
        public = Room.objects.create(slug=unique("public"))
        private = Room.objects.create(slug=unique("private"), is_private=True)
        private.members.add(member, inactive)
    return {
        "viewers": {
            "anonymous": AnonymousUser(),
            "member": member,
            "outsider": outsider,
            "staff": staff,
            # Django's backend resolves an inactive user's session to anonymous; the rule
            # refuses the id too, for a caller that passes it directly.
            "inactive member": inactive,
        },
        "rooms": {"public": public.slug, "private": private.slug, "missing": unique("missing")},
    }


@pytest.fixture
async def pool(db_url: str):  # type: ignore[no-untyped-def]
    """This process's read pool, on the test database (settings name the dev database)."""
    await db.open_pool(db_url)
    yield
    await db.close_pool()


def by_orm(user, slug: str) -> bool:  # type: ignore[no-untyped-def]
    try:
        rooms.readable_room(user, slug)
    except rooms.RoomNotFound:
        return False
    return True


async def by_stream_open(user, slug: str) -> bool:  # type: ignore[no-untyped-def]
    try:
        await rooms.readable_room_slug(user, slug)
    except rooms.RoomNotFound:
        return False
    return True


@pytest.mark.parametrize(("viewer", "room"), list(itertools.product(VIEWERS, ROOMS)))
async def test_pages_stream_opens_and_rechecks_agree(world, pool, viewer: str, room: str) -> None:  # type: ignore[no-untyped-def]
    user, slug = world["viewers"][viewer], world["rooms"][room]
    expected = EXPECTED.get((viewer, room), False)
    assert await sync_to_async(by_orm)(user, slug) is expected
    assert await by_stream_open(user, slug) is expected
    async with db.connection() as conn:
        refused = await rooms.unreadable(conn, [(slug, user.pk, None)])
    assert (refused == set()) is expected
    listed = await sync_to_async(
        lambda: set(rooms.visible_rooms(user).values_list("slug", flat=True))
    )()
    assert (slug in listed) is expected
