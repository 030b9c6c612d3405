"""``GET /events`` (chat/user_feeds.py) and saved searches (chat/search_feeds.py) read the
log "up to now", past bells not handled yet: an access change or a log-out among them, and
a message after it, must not reach the stream that lost access.

The same shape as tests/test_relay_reads.py: the triggers' own bells are heard on a LISTEN of
the test's, and handed to ``listener.relay.deliver`` by hand as a batch that ends BEFORE the
access bell, while the log already holds: "public", then the access change, then "SECRET".
Each test failed before the fix (SECRET reached the stream), except the saved search's
member removal, which the read rule in its statement already covered.

What a stream was given is taken after each batch (``heartbeat`` twice makes
``next_frames`` return at once, with whatever is buffered, or [] when nothing is), as its
writer would drain it between batches.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.auth.models import User
from django.contrib.sessions.backends.db import SessionStore

from chat.listener import Listener
from chat.models import Room
from chat.subscription import Viewer
from chat.user_subscription import TokenBuffer

from .helpers import PASSWORD, bells_rung, unique

Connection = psycopg.AsyncConnection[Any]


@pytest.fixture
async def conn(db_url: str) -> AsyncIterator[Connection]:
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        yield conn


@dataclass
class Setup:
    user: User
    room: Room
    session_key: str
    word: str  # a word only this test's messages hold (for the saved search)


@pytest.fixture
def member() -> Setup:
    """A private room with one member, signed in (a live django_session row)."""
    user = User.objects.create_user(unique("member"), password=PASSWORD)
    room = Room.objects.create(slug=unique("secret-room"), title="Private", is_private=True)
    room.members.add(user)
    store = SessionStore()
    store[SESSION_KEY] = str(user.pk)
    store[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    store[HASH_SESSION_KEY] = user.get_session_auth_hash()
    store.create()
    assert store.session_key is not None
    return Setup(user, room, store.session_key, "w" + uuid.uuid4().hex[:12])


def insert(setup: Setup, text: str) -> str:
    return (
        "INSERT INTO chat_chatmessage (room_id, author, text)"
        f" VALUES ('{setup.room.slug}', 'ops', '{setup.word} {text}')"
    )


def remove_member(setup: Setup) -> str:
    return (
        f"DELETE FROM chat_room_members WHERE room_id = '{setup.room.slug}'"
        f" AND user_id = {setup.user.pk}"
    )


def log_out(setup: Setup) -> str:
    return f"DELETE FROM django_session WHERE session_key = '{setup.session_key}'"


async def bells_of(db_url: str, setup: Setup, *statements: str) -> list[str]:
    """The bells the statements rang that concern the room or the user (and session
    bells), in commit order."""
    return await bells_rung(
        db_url,
        statements,
        lambda bell: (
            bell.get("room") == setup.room.slug
            or bell.get("kind") == "sessions"
            or (bell.get("kind") == "user" and bell.get("user") == setup.user.pk)
        ),
    )


async def buffered(sub: TokenBuffer) -> list[str] | None:
    """What the stream holds now, without waiting: each frame's event and data lines (None:
    the stream was ended)."""
    sub.heartbeat()
    sub.heartbeat()  # the second tick finds it quiet: next_frames returns at once
    frames = await sub.next_frames()
    if frames is None:
        return None
    return [
        " ".join(line for line in f.decode().split("\n") if line.startswith(("event:", "data:")))
        for f in frames
    ]


def texts(frames: list[str] | None) -> list[str]:
    return [t for f in frames or [] for t in ("public", "SECRET") if t in f]


async def test_events_a_message_after_a_member_removal_waits_for_the_removal(
    db_url: str, conn: Connection, read_pool: None, member: Setup
) -> None:
    listener = Listener(db_url)  # its relay alone, fed by hand: no LISTEN of its own
    sub, _ = await listener.users.register(Viewer(member.user.pk, member.session_key), None)
    assert member.room.slug in sub.rooms  # (with the lobby every user joins)
    bells = await bells_of(
        db_url, member, insert(member, "public"), remove_member(member), insert(member, "SECRET")
    )
    kinds = [json.loads(b)["kind"] for b in bells]
    assert kinds[0] == kinds[-1] == "message"
    assert set(kinds[1:-1]) == {"access", "left"}, kinds

    await listener.relay.deliver(conn, bells[:1])  # the batch ends before the removal's bells
    first = await buffered(sub)
    await listener.relay.deliver(conn, bells[1:])  # the removal, then SECRET's own bell
    second = await buffered(sub)
    assert member.room.slug not in sub.rooms
    # The read of batch 1 saw the removal in its own snapshot: the room left then, and what
    # the window held of it was withheld ("public" too: a loss for a stream on its way out).
    assert any("room.left" in f for f in first or [])
    assert texts(first) + texts(second) == []


async def test_events_a_message_after_a_log_out_waits_for_the_log_out(
    db_url: str, conn: Connection, read_pool: None, member: Setup
) -> None:
    listener = Listener(db_url)
    sub, _ = await listener.users.register(Viewer(member.user.pk, member.session_key), None)
    bells = await bells_of(
        db_url, member, insert(member, "public"), log_out(member), insert(member, "SECRET")
    )
    assert [json.loads(b)["kind"] for b in bells] == ["message", "sessions", "message"]

    await listener.relay.deliver(conn, bells[:1])
    first = await buffered(sub)
    assert first is None  # ended by batch 1's read, which saw the log-out in its snapshot
    await listener.relay.deliver(conn, bells[1:])
    assert sub.closed


async def saved_search_through(
    db_url: str, conn: Connection, member: Setup, change: str
) -> tuple[TokenBuffer, list[str], list[str] | None, list[str] | None]:
    """A saved search of ``member``'s word; "public", ``change``, "SECRET" written; the
    relay handed the first bell alone, then the rest. The stream, the bells' kinds, and
    what it held after each batch."""
    listener = Listener(db_url)
    viewer = Viewer(member.user.pk, member.session_key)
    sub, _ = await listener.searches.register(viewer, member.word, None, None)
    bells = await bells_of(
        db_url, member, insert(member, "public"), change, insert(member, "SECRET")
    )
    await listener.relay.deliver(conn, bells[:1])
    first = await buffered(sub)
    await listener.relay.deliver(conn, bells[1:])
    second = None if sub.closed else await buffered(sub)
    return sub, [json.loads(b)["kind"] for b in bells], first, second


async def test_saved_search_a_match_after_a_member_removal_is_not_given(
    db_url: str, conn: Connection, read_pool: None, member: Setup
) -> None:
    _, _, first, second = await saved_search_through(db_url, conn, member, remove_member(member))
    assert "SECRET" not in texts(first) + texts(second)
    # The rule is asked "now" for everything read: "public", committed while still a
    # member, is not given either (withheld, not leaked).
    assert texts(first) + texts(second) == []


async def test_saved_search_a_match_after_a_log_out_is_not_given(
    db_url: str, conn: Connection, read_pool: None, member: Setup
) -> None:
    sub, kinds, first, _ = await saved_search_through(db_url, conn, member, log_out(member))
    assert kinds == ["message", "sessions", "message"]
    assert sub.closed
    # Batch 1's statement saw the log-out: no match for a session that is gone ("public"
    # withheld too, as for a member removed).
    assert texts(first) == []
