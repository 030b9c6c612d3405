"""chat/relay.py reads the log no further than its bells rang.

A message committed after an access change, and already in the log when the relay reads
for an earlier message bell, must not be published before the access bell between them is
handled: the relay reads each room up to the highest seq of the bells it holds. The bells
here are the triggers' own, heard on a LISTEN of the test's, and handed to the relay as one
batch that stops at the access bell, as a batch boundary can.
"""

from __future__ import annotations

import asyncio

from chat.history import current_cursor
from chat.listener import Listener
from chat.models import Room

from .helpers import DEADLINE, bells_rung
from .test_feed import Connection, conn

__all__ = ["conn"]  # a fixture, used by name


async def bells_of(db_url: str, room: Room, *statements: str) -> list[str]:
    """The bells of ``room`` the statements rang, in commit order."""
    return await bells_rung(db_url, statements, lambda bell: bell.get("room") == room.slug)


def insert(room: Room, text: str) -> str:
    return (
        "INSERT INTO chat_chatmessage (room_id, author, text)"
        f" VALUES ('{room.slug}', 'ops', '{text}')"
    )


async def test_a_message_after_an_access_change_waits_for_its_own_bell(
    db_url: str, conn: Connection, room: Room
) -> None:
    listener = Listener(db_url)  # its relay alone, fed by hand: no LISTEN of its own
    sub = listener.subscribe(room.slug, await current_cursor(conn, room.slug))
    message, access, secret = await bells_of(
        db_url,
        room,
        insert(room, "public"),
        f"UPDATE chat_room SET is_private = true WHERE slug = '{room.slug}'",
        insert(room, "SECRET"),
    )
    assert '"access"' in access
    assert '"message"' in secret
    got: list[str] = []

    async def stream() -> None:  # drains its buffer whenever the relay awaits, as one does
        while (frames := await sub.next_frames()) is not None:
            got.extend(f.event.message["text"] for f in frames if f.event is not None)

    reading = asyncio.create_task(stream())
    await listener.relay.deliver(conn, [message, access])  # the batch ends at the access bell
    async with asyncio.timeout(DEADLINE):
        await reading  # ended: the anonymous stream lost the room
    assert got == ["public"]  # SECRET was in the log, but its bell had not come
