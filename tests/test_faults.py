"""Nothing lost under faults: the listener's connection killed, PostgreSQL restarted, a
client that never reads, a server shut down with open streams, and a soak of all of it."""

from __future__ import annotations

import asyncio
import random
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest

from chat.models import Room
from devtools.embedded_pg import EmbeddedPostgres

from .helpers import DEADLINE, SERVER_SESSIONS, sessions, unique, wait_until_async
from .servers import Server, collect, insert_sql, kill_listeners, logged_seqs, psql

# Some of these kill every server's listener: each ends with the others' back.
pytestmark = pytest.mark.usefixtures("listeners_back")

SOAK_SECONDS = 20  # how long the soak writes, reconnects and kills; bounded by design


async def test_listener_killed_while_writers_insert_loses_nothing(
    make_server: Callable[..., Server], room: Room, db_url: str
) -> None:
    server = make_server(CHAT_LISTENER_BACKOFF="0.05")
    streams = await asyncio.gather(*(server.stream(room.slug) for _ in range(5)))
    written = 0

    async def write(count: int) -> None:
        nonlocal written
        async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
            for _ in range(count):
                written += 1
                await conn.execute(insert_sql(room.slug, f"m{written}"))

    writers = asyncio.gather(*(write(40) for _ in range(3)))
    kills = 0
    while not writers.done():  # kill it repeatedly while the writers run
        kills += await kill_listeners(db_url)
        await asyncio.sleep(random.uniform(0.02, 0.1))
    await writers
    assert kills >= 1
    logged = await logged_seqs(room.slug)
    for stream in streams:
        events = await collect(stream, 120)
        assert [e.cursor for e in events] == logged  # all, once, in order
    await psql(db_url, insert_sql(room.slug, "marker"))  # a late repeat would come before it
    for stream in streams:
        [marker] = await collect(stream, 1)
        assert marker.json()["text"] == "marker"
    body = await server.wait_health_async(200)  # listening again
    assert body["counters"]["reconnects"] >= 1
    await asyncio.gather(*(s.aclose() for s in streams))


async def test_healthz_is_503_while_the_listener_is_down_and_200_after(
    make_server: Callable[..., Server], db_url: str
) -> None:
    server = make_server(CHAT_LISTENER_BACKOFF="3")  # a window long enough to observe
    await kill_listeners(db_url)
    body = await server.wait_health_async(503)
    assert body["listener_connected"] is False
    assert body["database"] is True
    body = await server.wait_health_async(200)
    assert body["listener_connected"] is True


@pytest.mark.slow  # ten reconnects, each waited out
async def test_healthz_status_agrees_with_its_body_while_the_listener_flaps(
    make_server: Callable[..., Server], db_url: str
) -> None:
    """Pollers back to back across each reconnect, so that some answers are computed at the
    instant it happens (a race this once lost: 200 sent with listener_connected false)."""
    server = make_server(CHAT_LISTENER_BACKOFF="0.5")  # 503 long enough to see every time
    answers: list[tuple[int, dict[str, Any]]] = []
    reconnected = asyncio.Event()

    def poll() -> None:
        while not reconnected.is_set():
            answers.append(server.health())

    for _ in range(10):
        await kill_listeners(db_url)
        await server.wait_health_async(503)
        reconnected.clear()
        pollers = [asyncio.create_task(asyncio.to_thread(poll)) for _ in range(4)]
        try:
            await server.wait_health_async(200)
        finally:
            reconnected.set()  # the pollers end even if the wait failed
            await asyncio.gather(*pollers)
    answered = [(code, body) for code, body in answers if code]  # 0: no HTTP answer
    assert {code for code, _ in answered} == {200, 503}
    for code, body in answered:
        assert (code == 200) == (body["listener_connected"] and body["database"]), body


async def test_postgres_restart_mid_stream_loses_nothing(
    make_server: Callable[..., Server], restartable: EmbeddedPostgres
) -> None:
    url = restartable.url()
    server = make_server(url, CHAT_LISTENER_BACKOFF="0.2")
    slug = unique("restart")
    await psql(url, f"INSERT INTO chat_room (slug) VALUES ('{slug}')")
    stream = await server.stream(slug, last_event_id=0)
    for i in range(3):
        await psql(url, insert_sql(slug, f"before {i}"))
    before = await collect(stream, 3)
    assert [e.json()["text"] for e in before] == ["before 0", "before 1", "before 2"]

    await asyncio.to_thread(restartable.stop)
    body = await server.wait_health_async(503)
    assert body["listener_connected"] is False
    await asyncio.to_thread(restartable.ensure_running)
    for i in range(3):  # likely before the listener is back: only the table has these
        await psql(url, insert_sql(slug, f"during {i}"))
    await server.wait_health_async(200)
    for i in range(3):
        await psql(url, insert_sql(slug, f"after {i}"))
    await psql(url, insert_sql(slug, "marker"))

    events = await collect(stream, 7)  # the same connection: it stayed open
    with psycopg.connect(url, autocommit=True) as conn:
        log = conn.execute(
            "SELECT seq FROM chat_messagechange WHERE room_id = %s ORDER BY seq", (slug,)
        ).fetchall()
    assert [e.cursor for e in before + events] == [seq for (seq,) in log]
    assert [e.json()["text"] for e in events] == [
        "during 0", "during 1", "during 2", "after 0", "after 1", "after 2", "marker",
    ]  # fmt: skip
    # (Nothing repeated either: a repeat would have come before the marker.)
    await stream.aclose()


async def test_slow_subscriber_is_dropped_then_catches_up_without_slowing_others(
    make_server: Callable[..., Server], room: Room, db_url: str
) -> None:
    server = make_server(CHAT_SUBSCRIBER_QUEUE_SIZE="8")
    stuck = await server.stream(room.slug, receive_buffer=4096)  # no read from here on
    fast = await server.stream(room.slug)
    count = 60
    big = "€" * 4000  # 12 kB frames fill the stuck client's socket quickly
    await psql(
        db_url,
        "INSERT INTO chat_chatmessage (room_id, author, text)"
        f" SELECT '{room.slug}', 'bulk', g || '{big[:-4]}' FROM generate_series(1, {count}) g",
    )
    # The stuck client has read nothing yet: the fast one getting every event now proves
    # the stuck one holds nobody back. (How fast is `make bench`'s to say.)
    events = await collect(fast, count)
    logged = await logged_seqs(room.slug)
    assert [e.cursor for e in events] == logged

    async def dropped() -> bool:
        return bool((await server.health_async())[1]["counters"].get("slow_drops", 0) >= 1)

    await wait_until_async(dropped)

    # The stuck client reads again: its stream, never closed, catches up from the table.
    caught_up = await collect(stuck, count)
    assert [e.cursor for e in caught_up] == logged
    assert (await server.health_async())[1]["subscribers"] == 2  # both live (its own server)
    await asyncio.gather(fast.aclose(), stuck.aclose())


async def test_sigterm_ends_streams_and_leaks_nothing(
    make_server: Callable[..., Server], restartable: EmbeddedPostgres
) -> None:
    url = restartable.url()  # a cluster of its own: every pgchat session on it is this server's
    restartable.ensure_running()
    server = make_server(url)
    streams = await asyncio.gather(*(server.stream("lobby") for _ in range(10)))
    assert (await server.health_async())[1]["subscribers"] == 10
    assert server.process is not None
    server.process.send_signal(signal.SIGTERM)
    for stream in streams:
        with pytest.raises(EOFError):  # ended: EventSource would reconnect elsewhere
            await stream.next_event(DEADLINE)
    assert await asyncio.to_thread(server.process.wait, DEADLINE) == 0
    assert "listener stopped" in server.log_tail()  # the lifespan shutdown ran
    # Backends exit right after their clients.
    await wait_until_async(lambda: not sessions(url, SERVER_SESSIONS))


@dataclass
class SoakSubscriber:
    received: list[tuple[int, str, int]] = field(default_factory=list)
    connections: int = 0


@pytest.mark.slow
async def test_soak_writers_reconnecting_subscribers_and_listener_kills(
    make_server: Callable[..., Server], room: Room, db_url: str
) -> None:
    """Bounded in time: ~20 s of writing, then every subscriber must hold the committed log."""
    server = make_server(CHAT_LISTENER_BACKOFF="0.05")
    rng = random.Random(20261125)
    writing = asyncio.Event()
    writing.set()
    stats = {"writes": 0, "kills": 0, "reconnects": 0}

    async def writer(n: int) -> None:
        async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
            mine: list[int] = []
            while writing.is_set():
                roll = rng.random()
                if mine and roll < 0.1:
                    await conn.execute(
                        "UPDATE chat_chatmessage SET text = text || ' (edited)' WHERE id = %s",
                        (rng.choice(mine),),
                    )
                elif mine and roll < 0.15:
                    await conn.execute(
                        "UPDATE chat_chatmessage SET deleted_at = now() WHERE id = %s",
                        (mine.pop(rng.randrange(len(mine))),),
                    )
                else:
                    text = "€" * 3000 if roll > 0.95 else f"w{n} says {stats['writes']}"
                    cur = await conn.execute(
                        "INSERT INTO chat_chatmessage (room_id, author, text)"
                        " VALUES (%s, %s, %s) RETURNING id",
                        (room.slug, f"w{n}", text),
                    )
                    row = await cur.fetchone()
                    assert row is not None
                    mine.append(row[0])
                stats["writes"] += 1
                await asyncio.sleep(rng.uniform(0, 0.04))

    async def killer() -> None:
        while writing.is_set():
            await asyncio.sleep(rng.uniform(1.0, 3.0))
            stats["kills"] += await kill_listeners(db_url)

    async def subscriber(sub: SoakSubscriber, final: asyncio.Future[int]) -> None:
        last = 0
        while not (final.done() and last >= final.result()):
            client = await server.stream(room.slug, last_event_id=last)
            sub.connections += 1
            # The workload, not a check: each connection lasts a random while, then the
            # subscriber reconnects from its cursor as a browser would.
            session_ends = time.monotonic() + rng.uniform(0.2, 3.0)
            try:
                while time.monotonic() < session_ends:
                    try:
                        event = await client.next_event(max(0.01, session_ends - time.monotonic()))
                    except TimeoutError:
                        break
                    sub.received.append((event.cursor, event.name, event.json()["id"]))
                    last = event.cursor
                    if final.done() and last >= final.result():
                        break
            finally:
                await client.aclose()

    final: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    subscribers = [SoakSubscriber() for _ in range(30)]
    readers = [asyncio.create_task(subscriber(s, final)) for s in subscribers]
    load = [asyncio.create_task(writer(n)) for n in range(4)] + [asyncio.create_task(killer())]
    await asyncio.sleep(SOAK_SECONDS)  # the load runs meanwhile; nothing is asserted yet
    writing.clear()
    await asyncio.gather(*load)
    with psycopg.connect(db_url, autocommit=True) as conn:
        log = conn.execute(
            "SELECT seq, op, message_id FROM chat_messagechange WHERE room_id = %s ORDER BY seq",
            (room.slug,),
        ).fetchall()
    final.set_result(log[-1][0])
    async with asyncio.timeout(DEADLINE):
        await asyncio.gather(*readers)

    expected = [(seq, f"message.{op}", message_id) for seq, op, message_id in log]
    lost = [len(set(expected) - set(s.received)) for s in subscribers]
    duplicated = [len(s.received) - len(set(s.received)) for s in subscribers]
    print(
        f"\nsoak: {stats['writes']} writes, {len(log)} changes, {stats['kills']} listener kills,"
        f" {sum(s.connections for s in subscribers)} stream connections by"
        f" {len(subscribers)} subscribers; lost {sum(lost)}, duplicated {sum(duplicated)}"
    )
    assert stats["kills"] >= 3
    assert all(s.received == expected for s in subscribers)  # 0 lost, 0 dup, in order
