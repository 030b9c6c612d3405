"""Nothing lost under faults: the listener's connection killed, PostgreSQL restarted, a
client that never reads, a server shut down with open streams, and a soak of all of it."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest

from bench.sse_client import SSEClient
from chat.models import Room
from devtools.embedded_pg import EmbeddedPostgres

from .conftest import unique
from .servers import (
    PROJECT_DIR,
    Server,
    collect,
    insert_sql,
    kill_listeners,
    listen_backends,
    logged_seqs,
    psql,
)

DEADLINE = 15.0
POLL_SECONDS = 0.05
SOAK_SECONDS = 20  # how long the soak writes, reconnects and kills; bounded by design


async def wait_health(server: Server, status: int) -> dict[str, Any]:
    return await asyncio.to_thread(server.wait_health, status, DEADLINE)


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
    for stream in streams:
        events = await collect(stream, 120, DEADLINE)
        assert [e.cursor for e in events] == await logged_seqs(room.slug)  # all, once, in order
        with pytest.raises(TimeoutError):
            await stream.next_event(0.2)
    assert server.health()[1]["counters"]["reconnects"] >= 1
    assert len(listen_backends(db_url)) >= 1
    await asyncio.gather(*(s.aclose() for s in streams))


async def test_healthz_is_503_while_the_listener_is_down_and_200_after(
    make_server: Callable[..., Server], db_url: str
) -> None:
    server = make_server(CHAT_LISTENER_BACKOFF="3")  # a window long enough to observe
    await kill_listeners(db_url)
    body = await wait_health(server, 503)
    assert body["listener_connected"] is False
    assert body["database"] is True
    body = await wait_health(server, 200)
    assert body["listener_connected"] is True


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
        await wait_health(server, 503)
        reconnected.clear()
        pollers = [asyncio.create_task(asyncio.to_thread(poll)) for _ in range(4)]
        try:
            await wait_health(server, 200)
        finally:
            reconnected.set()  # the pollers end even if the wait failed
            await asyncio.gather(*pollers)
    answered = [(code, body) for code, body in answers if code]  # 0: no HTTP answer
    assert {code for code, _ in answered} == {200, 503}
    for code, body in answered:
        assert (code == 200) == (body["listener_connected"] and body["database"]), body


@pytest.fixture(scope="module")
def restartable(scratch_cluster: EmbeddedPostgres) -> EmbeddedPostgres:
    """A cluster of its own to stop and start, migrated."""
    scratch_cluster.ensure_running()
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--no-input", "-v0"],
        cwd=PROJECT_DIR,
        env={**os.environ, "DATABASE_URL": scratch_cluster.url()},
        check=True,
        timeout=120,
    )
    return scratch_cluster


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
    before = await collect(stream, 3, DEADLINE)
    assert [e.json()["text"] for e in before] == ["before 0", "before 1", "before 2"]

    await asyncio.to_thread(restartable.stop)
    body = await wait_health(server, 503)
    assert body["listener_connected"] is False
    await asyncio.to_thread(restartable.ensure_running)
    for i in range(3):  # likely before the listener is back: only the table has these
        await psql(url, insert_sql(slug, f"during {i}"))
    await wait_health(server, 200)
    for i in range(3):
        await psql(url, insert_sql(slug, f"after {i}"))

    events = await collect(stream, 6, DEADLINE)  # the same connection: it stayed open
    with psycopg.connect(url, autocommit=True) as conn:
        log = conn.execute(
            "SELECT seq FROM chat_messagechange WHERE room_id = %s ORDER BY seq", (slug,)
        ).fetchall()
    assert [e.cursor for e in before + events] == [seq for (seq,) in log]
    assert [e.json()["text"] for e in events] == [
        "during 0", "during 1", "during 2", "after 0", "after 1", "after 2",
    ]  # fmt: skip
    with pytest.raises(TimeoutError):
        await stream.next_event(0.3)
    await stream.aclose()


async def test_slow_subscriber_is_dropped_then_catches_up_without_slowing_others(
    make_server: Callable[..., Server], room: Room, db_url: str
) -> None:
    server = make_server(CHAT_SUBSCRIBER_QUEUE_SIZE="8")
    stuck = await SSEClient.open(
        server.host, server.port, f"/rooms/{room.slug}/events", receive_buffer=4096
    )  # never reads from here on
    fast = await server.stream(room.slug)
    count = 60
    big = "€" * 4000  # 12 kB frames fill the stuck client's socket quickly
    await psql(
        db_url,
        "INSERT INTO chat_chatmessage (room_id, author, text)"
        f" SELECT '{room.slug}', 'bulk', g || '{big[:-4]}' FROM generate_series(1, {count}) g",
    )
    committed_at = time.time()
    events = await collect(fast, count, DEADLINE)
    logged = await logged_seqs(room.slug)
    assert [e.cursor for e in events] == logged
    assert events[-1].received_at - committed_at < 5.0  # not held back by the stuck one
    async with asyncio.timeout(DEADLINE):
        while server.health()[1]["counters"].get("slow_drops", 0) < 1:
            await asyncio.sleep(POLL_SECONDS)

    # The stuck client reads again: its stream, never closed, catches up from the table.
    caught_up = await collect(stuck, count, DEADLINE)
    assert [e.cursor for e in caught_up] == logged
    assert server.health()[1]["subscribers"] == 2  # both live again
    await asyncio.gather(fast.aclose(), stuck.aclose())


async def test_sigterm_ends_streams_and_leaks_nothing(
    make_server: Callable[..., Server], restartable: EmbeddedPostgres
) -> None:
    url = restartable.url()  # a cluster of its own: every pgchat session on it is this server's
    restartable.ensure_running()
    server = make_server(url)
    streams = await asyncio.gather(*(server.stream("lobby") for _ in range(10)))
    assert server.health()[1]["subscribers"] == 10
    started = time.monotonic()
    assert server.process is not None
    server.process.send_signal(signal.SIGTERM)
    for stream in streams:
        with pytest.raises(EOFError):  # ended: EventSource would reconnect elsewhere
            await stream.next_event(DEADLINE)
    assert time.monotonic() - started < 3 + 3  # graceful_timeout, plus slack
    assert await asyncio.to_thread(server.process.wait, DEADLINE) == 0
    assert "listener stopped" in server.log_tail()  # the lifespan shutdown ran
    async with asyncio.timeout(DEADLINE):  # backends exit right after their clients
        while listen_backends(url) or listen_backends(url, "pgchat-reader"):
            await asyncio.sleep(POLL_SECONDS)


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
    async with asyncio.timeout(45):
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
