"""Operating pgchat: several workers, /metrics, /healthz, and the ``manage.py chat`` CLI."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Callable

import httpx
import pytest

from bench.sse_client import SSEClient
from chat.db import POOL_MAX_SIZE
from chat.models import ChatMessage, MessageChange, Room

from .helpers import DEADLINE, LISTENER, READER, sessions, wait_until_async
from .servers import PROJECT_DIR, Server, collect, insert_sql, kill_listeners, logged_seqs, psql

# Some of these kill every server's listener: each ends with the others' back.
pytestmark = pytest.mark.usefixtures("listeners_back")


async def test_two_workers_each_listen_once_and_deliver_every_event_once(
    make_server: Callable[..., Server], room: Room, db_url: str
) -> None:
    before = {session.pid for session in sessions(db_url, LISTENER)}
    server = make_server(workers=2)

    def new_listeners() -> int:
        return len({s.pid for s in sessions(db_url, LISTENER)} - before)

    await wait_until_async(lambda: new_listeners() >= 2)  # both workers' listeners are up
    # hypercorn's workers accept on one shared socket, so which worker takes a connection
    # is the kernel's choice: open streams one by one until both workers hold some.
    streams: list[SSEClient] = []
    seen: dict[int, int] = {}  # worker pid -> its subscribers, as last reported

    async def one_more_stream() -> bool:
        streams.append(await server.stream(room.slug))
        body = (await server.health_async())[1]
        seen[body["worker"]] = body["subscribers"]
        return len(streams) >= 40 and len(seen) == 2 and 0 not in seen.values()

    await wait_until_async(one_more_stream)

    async def both_counts_fresh() -> bool:
        body = (await server.health_async())[1]
        seen[body["worker"]] = body["subscribers"]
        return sum(seen.values()) == len(streams)

    await wait_until_async(both_counts_fresh)
    assert all(count > 0 for count in seen.values())  # subscribers on both workers
    assert new_listeners() == 2  # exactly one LISTEN per worker

    for i in range(5):
        await psql(db_url, insert_sql(room.slug, f"m{i}"))
    await psql(db_url, insert_sql(room.slug, "marker"))
    logged = await logged_seqs(room.slug)
    for stream in streams:
        events = await collect(stream, 6)
        # Every event, on both workers, and nothing twice: a second copy of any would
        # have come before the marker.
        assert [e.cursor for e in events] == logged
    metrics = await asyncio.to_thread(server.metrics)  # any worker answers for both
    assert metrics[f"pgchat_subscribers{{room={room.slug}}}"] == len(streams)
    assert metrics["pgchat_listener_connected"] == 2
    assert metrics["pgchat_frames_sent_total"] >= 6 * len(streams)
    await asyncio.gather(*(s.aclose() for s in streams))


async def test_metrics_move_when_events_flow(
    make_server: Callable[..., Server], room: Room, db_url: str
) -> None:
    server = make_server()
    stream = await server.stream(room.slug)
    before = await asyncio.to_thread(server.metrics)
    await psql(db_url, insert_sql(room.slug, "counted"))
    await collect(stream, 1)
    after = await asyncio.to_thread(server.metrics)
    assert after["pgchat_events_relayed_total"] == before["pgchat_events_relayed_total"] + 1
    assert after["pgchat_frames_sent_total"] == before["pgchat_frames_sent_total"] + 1
    assert (
        after["pgchat_notify_to_send_seconds_count"]
        == before["pgchat_notify_to_send_seconds_count"] + 1
    )
    assert after[f"pgchat_subscribers{{room={room.slug}}}"] == 1
    assert 0 <= after["pgchat_notification_queue_usage"] < 1
    await stream.aclose()
    await wait_until_async(lambda: server.room_subscribers(room.slug) == 0)


async def test_healthz_reports_listener_reconnect_in_metrics_and_health(
    make_server: Callable[..., Server], db_url: str
) -> None:
    server = make_server(CHAT_LISTENER_BACKOFF="2")
    reconnects = server.metrics()["pgchat_listener_reconnects_total"]
    await kill_listeners(db_url)
    assert (await server.wait_health_async(503))["status"] == "unavailable"
    body = await server.wait_health_async(200)
    assert body["listener_connected"] is True
    assert server.metrics()["pgchat_listener_reconnects_total"] >= reconnects + 1


def manage(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", "chat", *args],
        cwd=PROJECT_DIR,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=DEADLINE * 2,  # a whole process: start Django, connect, run
    )


def test_cli_post_writes_through_the_same_validation(room: Room, db_url: str) -> None:
    ok = manage(
        "post", room.slug, "from the terminal", "--author", "ops", env={"DATABASE_URL": db_url}
    )
    assert ok.returncode == 0, ok.stderr
    message = ChatMessage.objects.get(room=room)
    assert (message.author, message.text) == ("ops", "from the terminal")


def test_cli_post_empty_text_fails_cleanly_and_writes_nothing(room: Room, db_url: str) -> None:
    result = manage("post", room.slug, "   ", env={"DATABASE_URL": db_url})
    assert result.returncode != 0
    assert "text must not be empty" in result.stderr
    assert "Traceback" not in result.stderr
    assert not MessageChange.objects.filter(room=room).exists()


def test_cli_unknown_room_fails_cleanly(db_url: str) -> None:
    result = manage("post", "no-such-room", "hi", env={"DATABASE_URL": db_url})
    assert result.returncode != 0
    assert "no room 'no-such-room'" in result.stderr
    assert "Traceback" not in result.stderr


async def test_cli_tail_prints_missed_then_live_then_exits_on_ctrl_c(
    room: Room, db_url: str
) -> None:
    await psql(db_url, insert_sql(room.slug, "missed while away"))
    tail = await asyncio.create_subprocess_exec(
        sys.executable, "-u", "manage.py", "chat", "tail", room.slug, "--since", "0",
        cwd=PROJECT_DIR, env={**os.environ, "DATABASE_URL": db_url},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert tail.stdout is not None
    async with asyncio.timeout(DEADLINE):
        first = (await tail.stdout.readline()).decode()
        assert "ops: missed while away" in first
        await psql(db_url, insert_sql(room.slug, "live from psql"))
        second = (await tail.stdout.readline()).decode()
        assert "ops: live from psql" in second
    cursors = [int(line[1 : line.index("]")]) for line in (first, second)]
    assert cursors == await logged_seqs(room.slug)  # "[<cursor>] hh:mm:ss author: text"
    tail.send_signal(signal.SIGINT)
    async with asyncio.timeout(DEADLINE):
        _, err = await tail.communicate()
    assert tail.returncode == 0
    assert b"Traceback" not in err


def test_cli_rooms_lists_rooms_with_counts(room: Room, db_url: str) -> None:
    ChatMessage.objects.create(room=room, author="a", text="one")
    result = manage("rooms", env={"DATABASE_URL": db_url})
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stdout.splitlines() if line.startswith(room.slug))
    assert line.split()[1] == "1"  # messages


@pytest.mark.slow  # waits out the server's 10 s start-up wait for its listener
async def test_listener_uses_its_own_dsn_and_the_rest_uses_database_url(db_url: str) -> None:
    """Behind a transaction-pooling PgBouncer, LISTEN must go to a session-mode DSN. Point
    the listener's DSN at nothing: the listener is down while ordinary queries still work."""
    server = Server(db_url, env={"CHAT_LISTEN_DATABASE_URL": "postgresql://127.0.0.1:1/none"})
    await asyncio.to_thread(server.start_without_waiting)
    try:
        body = await server.wait_health_async(503)
        assert body["database"] is True  # DATABASE_URL: fine
        assert body["listener_connected"] is False  # CHAT_LISTEN_DATABASE_URL: unreachable
        response = httpx.get(f"{server.url}/rooms/", timeout=DEADLINE)
        assert response.status_code == 200  # the web works without the listener
    finally:
        server.stop()


async def test_open_streams_hold_no_thread_and_no_database_connection(
    make_server: Callable[..., Server], room: Room, db_url: str
) -> None:
    """Django gives each in-flight request a thread and a DB connection of its own; a stream
    is a request that lasts, so it must give both back once it starts streaming."""
    import psutil

    server = make_server()
    worker = psutil.Process((await server.health_async())[1]["worker"])
    threads_before = worker.num_threads()
    before = {session.pid for session in await asyncio.to_thread(sessions, db_url)}
    streams = await asyncio.gather(*(server.stream(room.slug) for _ in range(200)))
    assert (await server.health_async())[1]["subscribers"] == 200  # its own server
    assert worker.num_threads() < threads_before + 10  # not one per stream
    # At most its read pool grew to its size (psycopg_pool grows only while opens wait, so
    # how far depends on the machine's speed); nothing else, and nothing per stream.
    # (Sessions that ended meanwhile, a previous test's server's, don't matter.)
    after = await asyncio.to_thread(sessions, db_url)
    opened = [session for session in after if session.pid not in before]
    assert {session.application_name for session in opened} <= {READER}, opened
    assert len(opened) <= POOL_MAX_SIZE, opened
    await asyncio.gather(*(s.aclose() for s in streams))


def test_cli_tail_never_prints_terminal_escape_sequences() -> None:
    from chat.events import ChatEvent
    from chat.management.commands.chat import describe

    event = ChatEvent(
        room="r", seq=7, op="created", message_id=1,
        message={"author": "x", "text": "\x1b]0;pwned\x07hi\nthere", "created_at": None},
    )  # fmt: skip
    line = describe(event)
    assert "\x1b" not in line
    assert "\x07" not in line
    assert line.startswith("[7] ")
    assert "hi\n    there" in line
