"""Resume: a client that reconnects with its cursor gets exactly what it missed, in order,
then the live stream; the cursor is safe even when transactions commit out of order."""

from __future__ import annotations

import asyncio

import httpx
import psycopg
import pytest

from bench.sse_client import SSEError
from chat.models import ChatMessage, Room

from .helpers import DEADLINE, wait_until_async
from .servers import Server, collect, insert_sql, logged_seqs, psql


async def test_reconnect_with_last_event_id_gets_exactly_what_was_missed(
    server: Server, room: Room, db_url: str
) -> None:
    first = await server.stream(room.slug)
    kept = await ChatMessage.objects.acreate(room=room, author="ada", text="seen")
    [seen] = await collect(first, 1)
    await first.aclose()  # Wi-Fi blinks

    edited = await ChatMessage.objects.acreate(room=room, author="ada", text="to edit")
    await ChatMessage.objects.acreate(room=room, author="ada", text="plain")
    await psql(db_url, f"UPDATE chat_chatmessage SET text = 'edited' WHERE id = {edited.pk}")
    await psql(db_url, f"DELETE FROM chat_chatmessage WHERE id = {kept.pk}")

    again = await server.stream(room.slug, last_event_id=seen.id)
    missed = await collect(again, 4)
    logged = await logged_seqs(room.slug)
    assert [(e.cursor, e.name) for e in missed] == [
        (logged[1], "message.created"),
        (logged[2], "message.created"),
        (logged[3], "message.updated"),
        (logged[4], "message.deleted"),
    ]
    assert missed[2].json()["text"] == "edited"
    assert missed[3].json()["id"] == kept.pk, missed[3].data
    # ...then the live stream, with nothing repeated at the seam.
    live = await ChatMessage.objects.acreate(room=room, author="ada", text="live")
    [after] = await collect(again, 1)
    assert (after.cursor, after.json()["id"]) == ((await logged_seqs(room.slug))[5], live.pk)
    marker = await ChatMessage.objects.acreate(room=room, author="ada", text="marker")
    [last] = await collect(again, 1)  # a repeat of anything would come before it
    assert last.json()["id"] == marker.pk
    await again.aclose()


async def test_query_parameter_resumes_like_the_header(server: Server, room: Room) -> None:
    for text in ("one", "two", "three"):
        await ChatMessage.objects.acreate(room=room, author="ada", text=text)
    first, _, _ = await logged_seqs(room.slug)
    stream = await server.stream(room.slug, query=f"?last_event_id={first}")
    events = await collect(stream, 2)
    assert [e.json()["text"] for e in events] == ["two", "three"]
    await stream.aclose()


async def test_header_wins_over_query_parameter(server: Server, room: Room) -> None:
    """The page's URL keeps its render cursor; the browser's header is newer."""
    for text in ("one", "two", "three"):
        await ChatMessage.objects.acreate(room=room, author="ada", text=text)
    _, second, _ = await logged_seqs(room.slug)
    stream = await server.stream(room.slug, query="?last_event_id=0", last_event_id=second)
    [event] = await collect(stream, 1)
    assert event.json()["text"] == "three"
    await stream.aclose()


async def test_stream_without_cursor_starts_from_now(server: Server, room: Room) -> None:
    await ChatMessage.objects.acreate(room=room, author="ada", text="old news")
    stream = await server.stream(room.slug)
    fresh = await ChatMessage.objects.acreate(room=room, author="ada", text="new")
    [event] = await collect(stream, 1)
    assert event.json()["id"] == fresh.pk
    await stream.aclose()


@pytest.mark.parametrize("cursor", ["abc", "-1", "1.0", "99999999999999999999999"])
async def test_malformed_cursor_is_400(server: Server, room: Room, cursor: str) -> None:
    with pytest.raises(SSEError) as refused:
        await server.stream(room.slug, last_event_id=cursor)
    assert refused.value.status == 400
    assert b"Last-Event-ID" in refused.value.body


async def test_cursor_from_the_future_is_400_not_a_silent_empty_stream(
    server: Server, room: Room
) -> None:
    await ChatMessage.objects.acreate(room=room, author="ada", text="only one")
    [only] = await logged_seqs(room.slug)
    with pytest.raises(SSEError) as refused:
        await server.stream(room.slug, last_event_id=only + 1)
    assert refused.value.status == 400
    assert b"ahead of room" in refused.value.body


async def test_transaction_committing_late_is_never_owed_below_a_seen_cursor(
    server: Server, room: Room, db_url: str
) -> None:
    """A inserts and stays open; B inserts. B cannot take a cursor until A settles (the
    per-room lock in chat_record_change), so a client that saw B never misses A."""
    stream = await server.stream(room.slug)
    async with await psycopg.AsyncConnection.connect(db_url) as a_conn:
        await a_conn.execute(insert_sql(room.slug, "A"))  # open transaction: A holds the lock
        b_task = asyncio.create_task(psql(db_url, insert_sql(room.slug, "B")))
        # B is waiting on A's advisory lock: it has no cursor and nothing was sent.
        async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as watch:

            async def b_waits() -> bool:
                cur = await watch.execute(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                    " AND NOT granted AND database = (SELECT oid FROM pg_database"
                    " WHERE datname = current_database())"
                )
                row = await cur.fetchone()
                return bool(row and row[0] >= 1)

            await wait_until_async(b_waits)
        assert not b_task.done()
        await a_conn.commit()
    await b_task
    # Had B been sent while it waited, it would come first: A is first, so nothing was.
    events = await collect(stream, 2)
    assert [e.json()["text"] for e in events] == ["A", "B"]
    a_seq, b_seq = await logged_seqs(room.slug)
    assert [e.cursor for e in events] == [a_seq, b_seq]  # A committed first: lower cursor
    # A client that saw B is owed nothing: A's cursor is already below B's.
    resumed = await server.stream(room.slug, last_event_id=a_seq)
    [only] = await collect(resumed, 1)
    assert only.json()["text"] == "B"
    await resumed.aclose()
    await stream.aclose()


async def test_long_multibyte_message_arrives_complete(
    server: Server, room: Room, db_url: str
) -> None:
    text = "€" * 4000  # 12,000 bytes: over NOTIFY's limit, which the doorbell never nears
    streams = await asyncio.gather(*(server.stream(room.slug) for _ in range(20)))
    reads_before = (await server.health_async())[1]["counters"].get("log_reads", 0)
    await psql(db_url, insert_sql(room.slug, text))
    events = await asyncio.gather(*(s.next_event(DEADLINE) for s in streams))
    assert {e.json()["text"] for e in events} == {text}
    # One read of the log for all 20 subscribers, not one each (the server is shared, so
    # other tests' rooms may have been read meanwhile: at least one, and not twenty).
    reads = (await server.health_async())[1]["counters"]["log_reads"] - reads_before
    assert 1 <= reads < 20
    await asyncio.gather(*(s.aclose() for s in streams))


async def test_replay_of_many_changes_comes_in_order_across_batches(
    server: Server, room: Room, db_url: str
) -> None:
    # More than one replay batch (500), written by one statement from psql.
    await psql(
        db_url,
        "INSERT INTO chat_chatmessage (room_id, author, text)"
        f" SELECT '{room.slug}', 'bulk', 'n' || g FROM generate_series(1, 1200) g",
    )
    stream = await server.stream(room.slug, last_event_id=0)
    events = await collect(stream, 1200)
    assert [e.cursor for e in events] == await logged_seqs(room.slug)
    assert events[-1].json()["text"] == "n1200"
    await stream.aclose()


async def test_replay_moves_past_a_page_of_changes_to_messages_hard_deleted_since(
    server: Server, room: Room, db_url: str
) -> None:
    """600 creates then 600 hard deletes: the first replay page (500 creates) has no event
    to send, yet the replay must move on (it used to read that page forever)."""
    await psql(
        db_url,
        "INSERT INTO chat_chatmessage (room_id, author, text)"
        f" SELECT '{room.slug}', 'bot', 'x' FROM generate_series(1, 600)",
        f"DELETE FROM chat_chatmessage WHERE room_id = '{room.slug}'",
    )
    stream = await server.stream(room.slug, last_event_id=0)
    events = await collect(stream, 600)
    assert {e.name for e in events} == {"message.deleted"}
    assert [e.cursor for e in events] == (await logged_seqs(room.slug))[600:]
    await stream.aclose()
    # The JSON history says where to continue from past such a page.
    async with httpx.AsyncClient(base_url=server.url, timeout=DEADLINE) as client:
        first = (await client.get(f"/rooms/{room.slug}/messages", params={"after": 0})).json()
    assert (first["changes"], first["has_more"]) == ([], True)
    assert first["next"] == (await logged_seqs(room.slug))[499]
