"""Operating pgchat: several workers, /metrics, /healthz, and the ``manage.py chat`` CLI."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Callable

import httpx
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bench.sse_client import SSEClient
from chat.models import ChatMessage, MessageChange, Room

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


def scrape(server: Server) -> dict[str, float]:
    """/metrics parsed as Prometheus text: sample name{labels} -> value."""
    response = httpx.get(f"{server.url}/metrics", timeout=5)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):  # raises if malformed
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


async def test_two_workers_each_listen_once_and_deliver_every_event_once(
    make_server: Callable[..., Server], room: Room, db_url: str
) -> None:
    before = len(listen_backends(db_url))
    server = make_server(workers=2)
    async with asyncio.timeout(DEADLINE):  # both workers' listeners come up
        while len(listen_backends(db_url)) < before + 2:
            await asyncio.sleep(0.05)
    # hypercorn's workers accept on one shared socket, so which worker takes a connection
    # is the kernel's choice: open streams one by one until both workers hold some.
    streams: list[SSEClient] = []
    seen: dict[int, int] = {}
    async with asyncio.timeout(DEADLINE * 2):
        while len(streams) < 40 or len(seen) < 2 or 0 in seen.values():
            streams.append(await server.stream(room.slug))
            body = server.health()[1]
            seen[body["worker"]] = body["subscribers"]
    async with asyncio.timeout(DEADLINE):  # refresh both workers' counts
        while sum(seen.values()) != len(streams):
            body = server.health()[1]
            seen[body["worker"]] = body["subscribers"]
    assert sum(seen.values()) == len(streams)
    assert all(count > 0 for count in seen.values())  # subscribers on both workers
    assert len(listen_backends(db_url)) == before + 2  # exactly one LISTEN per worker

    for i in range(5):
        await psql(db_url, insert_sql(room.slug, f"m{i}"))
    logged = await logged_seqs(room.slug)
    for stream in streams:
        events = await collect(stream, 5, DEADLINE)
        assert [e.cursor for e in events] == logged  # every event, on both workers
        with pytest.raises(TimeoutError):  # and nothing twice
            await stream.next_event(0.05)
    metrics = scrape(server)  # any worker answers for both
    assert metrics[f"pgchat_subscribers{{room={room.slug}}}"] == len(streams)
    assert metrics["pgchat_listener_connected"] == 2
    assert metrics["pgchat_frames_sent_total"] >= 5 * len(streams)
    await asyncio.gather(*(s.aclose() for s in streams))


async def test_metrics_move_when_events_flow(
    make_server: Callable[..., Server], room: Room, db_url: str
) -> None:
    server = make_server()
    stream = await server.stream(room.slug)
    before = scrape(server)
    await psql(db_url, insert_sql(room.slug, "counted"))
    await collect(stream, 1, DEADLINE)
    after = scrape(server)
    assert after["pgchat_events_relayed_total"] == before["pgchat_events_relayed_total"] + 1
    assert after["pgchat_frames_sent_total"] == before["pgchat_frames_sent_total"] + 1
    assert (
        after["pgchat_notify_to_send_seconds_count"]
        == before["pgchat_notify_to_send_seconds_count"] + 1
    )
    assert after[f"pgchat_subscribers{{room={room.slug}}}"] == 1
    assert 0 <= after["pgchat_notification_queue_usage"] < 1
    await stream.aclose()
    async with asyncio.timeout(DEADLINE):
        while scrape(server).get(f"pgchat_subscribers{{room={room.slug}}}", 0) != 0:
            await asyncio.sleep(0.05)


async def test_healthz_reports_listener_reconnect_in_metrics_and_health(
    make_server: Callable[..., Server], db_url: str
) -> None:
    server = make_server(CHAT_LISTENER_BACKOFF="2")
    reconnects = scrape(server)["pgchat_listener_reconnects_total"]
    await kill_listeners(db_url)
    assert (await asyncio.to_thread(server.wait_health, 503, DEADLINE))["status"] == "unavailable"
    body = await asyncio.to_thread(server.wait_health, 200, DEADLINE)
    assert body["listener_connected"] is True
    assert scrape(server)["pgchat_listener_reconnects_total"] >= reconnects + 1


def manage(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", "chat", *args],
        cwd=PROJECT_DIR,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
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


async def test_listener_uses_its_own_dsn_and_the_rest_uses_database_url(db_url: str) -> None:
    """Behind a transaction-pooling PgBouncer, LISTEN must go to a session-mode DSN. Point
    the listener's DSN at nothing: the listener is down while ordinary queries still work."""
    server = Server(db_url, env={"CHAT_LISTEN_DATABASE_URL": "postgresql://127.0.0.1:1/none"})
    await asyncio.to_thread(server.start_without_waiting)
    try:
        body = await asyncio.to_thread(server.wait_health, 503, DEADLINE)
        assert body["database"] is True  # DATABASE_URL: fine
        assert body["listener_connected"] is False  # CHAT_LISTEN_DATABASE_URL: unreachable
        response = httpx.get(f"{server.url}/rooms/", timeout=5)
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
    worker = psutil.Process(server.health()[1]["worker"])
    threads_before = worker.num_threads()
    streams = await asyncio.gather(*(server.stream(room.slug) for _ in range(100)))
    sessions_at_100 = await asyncio.to_thread(_sessions, db_url)
    streams += await asyncio.gather(*(server.stream(room.slug) for _ in range(100)))
    assert server.health()[1]["subscribers"] == 200
    assert worker.num_threads() < threads_before + 10  # not one per stream
    # The pools may have grown to their sizes opening the first 100; the next 100 hold none.
    assert await asyncio.to_thread(_sessions, db_url) <= sessions_at_100
    await asyncio.gather(*(s.aclose() for s in streams))


def _sessions(db_url: str) -> int:
    with psycopg.connect(db_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        ).fetchone()
    return int(row[0]) if row else 0


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
