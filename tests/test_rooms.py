"""chat/rooms.py on the database alone: who may see, read, post in and moderate which room.

People: an anonymous reader, a member of the private room, an outsider (logged in, not a
member) and staff (not a member either). The rules are checked as functions, with no HTTP.
A private room answers anyone who may not read it RoomNotFound (404), as if it did not
exist, so that its name does not leak.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import pytest
from django.contrib.auth.models import AnonymousUser, User
from django.utils import timezone

from chat import rooms
from chat.models import ChatMessage, Room

from .helpers import unique

Who = Literal["anonymous", "member", "outsider", "staff"]
AnyUser = User | AnonymousUser


class People:
    def __init__(self, make_user: Callable[..., User]) -> None:
        self.member = make_user("member")
        self.outsider = make_user("outsider")
        self.staff = make_user("staff", staff=True)
        self.anonymous = AnonymousUser()

    def __getitem__(self, who: Who) -> AnyUser:
        user: AnyUser = getattr(self, who)
        return user


@pytest.fixture
def people(make_user: Callable[..., User]) -> People:
    return People(make_user)


@pytest.fixture
def public(people: People) -> Room:
    """A public room with two members (public rooms may have members too): the member
    must still see it listed once."""
    room = Room.objects.create(slug=unique("public"))
    room.members.add(people.member, people.outsider)
    return room


@pytest.fixture
def private(people: People) -> Room:
    """A private room whose only member is ``people.member``."""
    room = Room.objects.create(slug=unique("private"), is_private=True)
    room.members.add(people.member)
    return room


@pytest.fixture
def stranger(make_user: Callable[..., User]) -> Room:
    """Someone else's private room."""
    room = Room.objects.create(slug=unique("theirs"), is_private=True)
    room.members.add(make_user("stranger"))
    return room


# -- visible_rooms ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("who", "sees"),
    [
        ("anonymous", {"public"}),
        ("outsider", {"public"}),
        ("member", {"public", "private"}),
        ("staff", {"public", "private", "stranger"}),
    ],
)
def test_visible_rooms_are_public_ones_and_private_ones_of_ones_own(
    people: People, public: Room, private: Room, stranger: Room, who: Who, sees: set[str]
) -> None:
    mine = {public.slug: "public", private.slug: "private", stranger.slug: "stranger"}
    # The database is shared with every other test: look at this test's rooms only.
    visible = rooms.visible_rooms(people[who]).filter(slug__in=mine)
    slugs = list(visible.values_list("slug", flat=True))
    assert len(slugs) == len(set(slugs))  # a room with several members comes once
    assert {mine[slug] for slug in slugs} == sees


# -- readable_room ---------------------------------------------------------------------------


READABLE = [
    ("public", "anonymous", None),
    ("public", "outsider", None),
    ("public", "member", None),
    ("public", "staff", None),
    ("private", "member", None),
    ("private", "staff", None),
    ("private", "outsider", rooms.RoomNotFound),
    ("private", "anonymous", rooms.RoomNotFound),
]


@pytest.mark.parametrize(("kind", "who", "refusal"), READABLE)
def test_readable_room(
    people: People,
    public: Room,
    private: Room,
    kind: str,
    who: Who,
    refusal: type[Exception] | None,
) -> None:
    room = public if kind == "public" else private
    if refusal is None:
        assert rooms.readable_room(people[who], room.slug) == room
    else:
        with pytest.raises(refusal):
            rooms.readable_room(people[who], room.slug)


@pytest.mark.parametrize("who", ["anonymous", "outsider", "member", "staff"])
def test_an_unknown_room_is_not_found_for_anyone(people: People, who: Who) -> None:
    with pytest.raises(rooms.RoomNotFound, match="no room"):
        rooms.readable_room(people[who], unique("nowhere"))


@pytest.mark.parametrize(("kind", "who", "refusal"), READABLE)
async def test_the_streams_check_agrees_with_readable_room(
    people: People,
    public: Room,
    private: Room,
    read_pool: None,
    kind: str,
    who: Who,
    refusal: type[Exception] | None,
) -> None:
    """``readable_room_slug`` (the event stream's check, on the async pool) is the same rule
    as ``readable_room``: the same answer for every kind of room and person."""
    room = public if kind == "public" else private
    if refusal is None:
        assert await rooms.readable_room_slug(people[who], room.slug) == room.slug
    else:
        with pytest.raises(refusal):
            await rooms.readable_room_slug(people[who], room.slug)


async def test_the_streams_check_of_an_unknown_room(people: People, read_pool: None) -> None:
    with pytest.raises(rooms.RoomNotFound):
        await rooms.readable_room_slug(people.anonymous, unique("nowhere"))


# -- postable_room ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "who", "refusal"),
    [
        ("public", "outsider", None),
        ("public", "member", None),
        ("public", "staff", None),
        ("private", "member", None),
        ("private", "staff", None),
        ("public", "anonymous", rooms.NotAllowed),  # readable, but log in to post
        ("private", "outsider", rooms.RoomNotFound),
        ("private", "anonymous", rooms.RoomNotFound),
    ],
)
def test_postable_room(
    people: People,
    public: Room,
    private: Room,
    kind: str,
    who: Who,
    refusal: type[Exception] | None,
) -> None:
    room = public if kind == "public" else private
    if refusal is None:
        assert rooms.postable_room(people[who], room.slug) == room
    else:
        with pytest.raises(refusal):
            rooms.postable_room(people[who], room.slug)


def test_anonymous_posters_are_told_to_log_in(people: People, public: Room) -> None:
    with pytest.raises(rooms.NotAllowed, match="log in to post"):
        rooms.postable_room(people.anonymous, public.slug)


# -- editable_message ------------------------------------------------------------------------


def post(room: Room, sender: User | None, text: str = "hello") -> ChatMessage:
    """A message as the web posts it (``sender`` set), or as psql does (None)."""
    author = sender.username if sender is not None else "ops"
    return ChatMessage.objects.create(room=room, author=author, sender=sender, text=text)


@pytest.mark.parametrize(
    ("who", "refusal"),
    [
        ("member", None),  # its author
        ("staff", None),  # moderates anything
        ("outsider", rooms.NotAllowed),  # someone else's message
        ("anonymous", rooms.NotAllowed),
    ],
)
def test_editable_message_by_its_author_or_staff_only(
    people: People, public: Room, who: Who, refusal: type[Exception] | None
) -> None:
    message = post(public, people.member)
    if refusal is None:
        assert rooms.editable_message(people[who], public.slug, message.pk) == message
    else:
        with pytest.raises(refusal):
            rooms.editable_message(people[who], public.slug, message.pk)


def test_authorship_is_the_sender_not_the_author_name(people: People, public: Room) -> None:
    """A psql row may carry anyone's name as author: it is nobody's to edit but staff's."""
    forged = ChatMessage.objects.create(room=public, author=people.member.username, text="hi")
    with pytest.raises(rooms.NotAllowed, match="only its author or staff"):
        rooms.editable_message(people.member, public.slug, forged.pk)
    assert rooms.editable_message(people.staff, public.slug, forged.pk) == forged


@pytest.mark.parametrize("who", ["member", "staff"])
def test_a_deleted_message_cannot_be_changed_again(people: People, public: Room, who: Who) -> None:
    message = post(public, people.member)
    ChatMessage.objects.filter(pk=message.pk).update(deleted_at=timezone.now())
    with pytest.raises(rooms.NotAllowed, match="deleted"):
        rooms.editable_message(people[who], public.slug, message.pk)


def test_a_message_is_found_only_in_its_own_room(
    people: People, public: Room, private: Room
) -> None:
    elsewhere = post(private, people.member)
    with pytest.raises(rooms.RoomNotFound, match="no message"):
        rooms.editable_message(people.member, public.slug, elsewhere.pk)
    with pytest.raises(rooms.RoomNotFound, match="no message"):
        rooms.editable_message(people.staff, public.slug, 2**62)  # no such id at all


@pytest.mark.parametrize(
    "who",
    [
        "outsider",
        "anonymous",
    ],
)
def test_a_private_rooms_messages_are_not_found_by_those_who_cannot_read_it(
    people: People, private: Room, who: Who
) -> None:
    message = post(private, people.member)
    with pytest.raises(rooms.RoomNotFound):
        rooms.editable_message(people[who], private.slug, message.pk)
