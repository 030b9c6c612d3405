"""chat/history.py on the database alone: the log read back in pages, the latest messages,
the listener's catch-up query. No server, no HTTP: a psycopg connection to the test
database, written to with plain SQL as psql would."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest

from chat import history
from chat.events import ChatEvent
from chat.models import Room

from .helpers import unique

Connection = psycopg.AsyncConnection[Any]


@pytest.fixture
async def conn(db_url: str) -> AsyncIterator[Connection]:
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        yield conn


async def insert(conn: Connection, room: Room, *texts: str) -> list[int]:
    """One INSERT per text, each its own transaction; the new messages' ids."""
    ids = []
    for text in texts:
        cur = await conn.execute(
            "INSERT INTO chat_chatmessage (room_id, author, text) VALUES (%s, 'ops', %s)"
            " RETURNING id",
            (room.slug, text),
        )
        row = await cur.fetchone()
        assert row is not None
        ids.append(int(row[0]))
    return ids


async def logged(conn: Connection, room: Room) -> list[tuple[int, str, int]]:
    """The room's log as (seq, op, message id), in order."""
    cur = await conn.execute(
        "SELECT seq, op, message_id FROM chat_messagechange WHERE room_id = %s ORDER BY seq",
        (room.slug,),
    )
    return [(int(seq), str(op), int(message_id)) for seq, op, message_id in await cur.fetchall()]


def seqs(events: list[ChatEvent]) -> list[int]:
    return [event.seq for event in events]


# -- changes_after ---------------------------------------------------------------------------


async def test_changes_after_pages_through_the_log_in_order(conn: Connection, room: Room) -> None:
    await insert(conn, room, "1", "2", "3", "4", "5")
    log = [seq for seq, _, _ in await logged(conn, room)]

    first = await history.changes_after(conn, room.slug, 0, limit=2)
    assert (seqs(first.rows), first.has_more, first.last_seq) == (log[:2], True, log[1])
    second = await history.changes_after(conn, room.slug, first.last_seq, limit=2)
    assert (seqs(second.rows), second.has_more, second.last_seq) == (log[2:4], True, log[3])
    third = await history.changes_after(conn, room.slug, second.last_seq, limit=2)
    assert (seqs(third.rows), third.has_more, third.last_seq) == (log[4:], False, log[4])
    assert {page.cursor for page in (first, second, third)} == {log[-1]}  # the room's latest
    assert [event.message["text"] for event in first.rows + second.rows + third.rows] == [
        "1", "2", "3", "4", "5",
    ]  # fmt: skip


async def test_changes_after_a_full_last_page_says_more_then_an_empty_page_says_none(
    conn: Connection, room: Room
) -> None:
    """A page as long as its limit cannot know whether more follows: the next read says."""
    await insert(conn, room, "1", "2")
    log = [seq for seq, _, _ in await logged(conn, room)]
    full = await history.changes_after(conn, room.slug, 0, limit=2)
    assert (seqs(full.rows), full.has_more) == (log, True)
    empty = await history.changes_after(conn, room.slug, full.last_seq, limit=2)
    assert empty == history.Page(log[-1], [], False, log[-1])


async def test_changes_after_of_an_empty_room(conn: Connection, room: Room) -> None:
    assert await history.changes_after(conn, room.slug, 0) == history.Page(0, [], False, 0)


async def test_changes_after_an_unknown_room_is_empty_not_an_error(conn: Connection) -> None:
    assert await history.changes_after(conn, unique("nowhere"), 0) == history.Page(0, [], False)


async def test_last_seq_moves_past_changes_to_messages_hard_deleted_since(
    conn: Connection, room: Room
) -> None:
    """Creates of messages deleted from psql since have no row left to show: such a page has
    no event, yet its last_seq must move the reader on (or it reads that page forever)."""
    ids = await insert(conn, room, "a", "b", "c")
    await conn.execute("DELETE FROM chat_chatmessage WHERE room_id = %s", (room.slug,))
    log = await logged(conn, room)
    assert [op for _, op, _ in log] == ["created"] * 3 + ["deleted"] * 3

    creates = await history.changes_after(conn, room.slug, 0, limit=3)
    assert (creates.rows, creates.has_more, creates.last_seq) == ([], True, log[2][0])
    deletes = await history.changes_after(conn, room.slug, creates.last_seq, limit=3)
    assert [(e.seq, e.op, e.message_id) for e in deletes.rows] == log[3:]
    assert deletes.has_more is True  # a full page: the next one is empty
    # One DELETE statement removes its rows in whatever order it finds them: the log holds
    # them in that order, so the tombstones are of these ids, each its own, in any order.
    assert sorted(event.message_id for event in deletes.rows) == sorted(ids)
    for event in deletes.rows:  # tombstones
        assert event.message["id"] == event.message_id
        assert event.message["room"] == room.slug
        assert event.message["text"] == ""
        assert event.message["author"] is None
        assert event.message["deleted_at"] is not None


async def test_an_edit_of_a_message_hard_deleted_since_is_skipped(
    conn: Connection, room: Room
) -> None:
    [message_id] = await insert(conn, room, "typo")
    await conn.execute("UPDATE chat_chatmessage SET text = 'fixed' WHERE id = %s", (message_id,))
    await conn.execute("DELETE FROM chat_chatmessage WHERE id = %s", (message_id,))
    page = await history.changes_after(conn, room.slug, 0)
    assert [(e.op, e.message_id) for e in page.rows] == [("deleted", message_id)]
    assert page.last_seq == page.cursor == (await logged(conn, room))[-1][0]


async def test_a_replayed_change_shows_the_message_as_it_is_now(
    conn: Connection, room: Room
) -> None:
    """The log says what happened; the row says what to show. A soft-deleted message's text
    is never sent again, not even in a replay of its creation."""
    [message_id] = await insert(conn, room, "secret")
    await conn.execute(
        "UPDATE chat_chatmessage SET deleted_at = now() WHERE id = %s", (message_id,)
    )
    page = await history.changes_after(conn, room.slug, 0)
    assert [event.op for event in page.rows] == ["created", "deleted"]
    assert {event.message["text"] for event in page.rows} == {""}
    assert all(event.message["deleted_at"] is not None for event in page.rows)


async def test_current_cursor_is_the_latest_change(conn: Connection, room: Room) -> None:
    assert await history.current_cursor(conn, room.slug) == 0
    await insert(conn, room, "a", "b")
    assert await history.current_cursor(conn, room.slug) == (await logged(conn, room))[-1][0]


# -- recent_messages -------------------------------------------------------------------------


async def test_recent_messages_pages_back_oldest_first(conn: Connection, room: Room) -> None:
    ids = await insert(conn, room, "1", "2", "3", "4", "5")
    cursor = await history.current_cursor(conn, room.slug)

    latest = await history.recent_messages(conn, room.slug, before=None, limit=2)
    assert ([m["id"] for m in latest.rows], latest.has_more, latest.cursor) == (
        ids[3:], True, cursor,
    )  # fmt: skip
    older = await history.recent_messages(conn, room.slug, before=ids[3], limit=2)
    assert ([m["id"] for m in older.rows], older.has_more) == (ids[1:3], True)
    oldest = await history.recent_messages(conn, room.slug, before=ids[1], limit=2)
    assert ([m["id"] for m in oldest.rows], oldest.has_more) == (ids[:1], False)
    everything = await history.recent_messages(conn, room.slug, before=None, limit=5)
    assert ([m["text"] for m in everything.rows], everything.has_more) == (
        ["1", "2", "3", "4", "5"], False,
    )  # fmt: skip


async def test_recent_messages_keep_soft_deleted_ones_without_text_and_drop_hard_deleted(
    conn: Connection, room: Room
) -> None:
    kept, soft, hard = await insert(conn, room, "kept", "soft", "hard")
    await conn.execute("UPDATE chat_chatmessage SET deleted_at = now() WHERE id = %s", (soft,))
    await conn.execute("DELETE FROM chat_chatmessage WHERE id = %s", (hard,))
    page = await history.recent_messages(conn, room.slug, before=None, limit=10)
    assert [(m["id"], m["text"]) for m in page.rows] == [(kept, "kept"), (soft, "")]
    assert page.cursor == (await logged(conn, room))[-1][0]  # the hard delete's


async def test_recent_messages_of_an_empty_room(conn: Connection, room: Room) -> None:
    assert await history.recent_messages(conn, room.slug, before=None, limit=3) == (
        history.Page(0, [], False)
    )


# -- changes_after_each (the listener's catch-up) --------------------------------------------


async def test_changes_after_each_reads_every_room_from_its_own_position(
    conn: Connection, room: Room
) -> None:
    other = await Room.objects.acreate(slug=unique("room"))
    await insert(conn, room, "r1", "r2", "r3")
    await insert(conn, other, "o1", "o2")
    here, there = await logged(conn, room), await logged(conn, other)

    events = await history.changes_after_each(conn, {room.slug: here[0][0], other.slug: 0})
    assert [(e.room, e.seq) for e in events if e.room == room.slug] == [
        (room.slug, seq) for seq, _, _ in here[1:]
    ]
    assert [(e.room, e.seq) for e in events if e.room == other.slug] == [
        (other.slug, seq) for seq, _, _ in there
    ]
    assert len(events) == 4  # nothing of any other room
    assert [(e.message or {})["text"] for e in events if e.room == other.slug] == ["o1", "o2"]


async def test_changes_after_each_skips_what_it_cannot_show_and_asks_nothing_of_no_rooms(
    conn: Connection, room: Room
) -> None:
    [gone] = await insert(conn, room, "gone")
    await conn.execute("DELETE FROM chat_chatmessage WHERE id = %s", (gone,))
    events = await history.changes_after_each(conn, {room.slug: 0})
    assert [(e.op, e.message_id) for e in events] == [("deleted", gone)]
    assert await history.changes_after_each(conn, {}) == []


# -- fetch_messages (the listener's stub reads) ----------------------------------------------


async def test_fetch_messages_returns_those_that_exist(conn: Connection, room: Room) -> None:
    kept, gone = await insert(conn, room, "kept", "gone")
    await conn.execute("DELETE FROM chat_chatmessage WHERE id = %s", (gone,))
    found = await history.fetch_messages(conn, [kept, gone])
    assert list(found) == [kept]
    assert found[kept]["text"] == "kept"
    assert await history.fetch_message(conn, gone) is None
