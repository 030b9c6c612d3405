"""A real streaming replica for reads (issue 15.3): CHAT_READ_DATABASE_URL.

The standby is made from the embedded primary the tests use, as an operator would
(``pg_basebackup -R``, the server wheel's own binaries), started on its own port, with its
replay held back (``recovery_min_apply_delay``) so that every commit reaches it late. A
pgchat server then has DATABASE_URL = the primary and CHAT_READ_DATABASE_URL = the standby:
a resume must still get every event at once, exactly once (the fence, chat/replica.py), and
reads must land on the standby whenever it has caught up. Writes and LISTEN stay on the
primary (a standby can do neither).
"""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import psycopg
import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import AbstractUser

from chat import db, replica
from chat.models import ChatMessage, Room
from devtools.embedded_pg import EmbeddedPgError, EmbeddedPostgres, ownership
from devtools.embedded_pg.tools import binaries_dir, run

from .helpers import (
    DEADLINE,
    LISTENER,
    running_servers,
    session_cookies,
    sessions,
    wait_until_async,
)
from .servers import (
    PROJECT_DIR,
    Server,
    collect,
    insert_sql,
    psql,
    wait_for_server_backends_gone,
)
from .test_saved_search import open_search
from .test_saved_search import until as until_text
from .test_user_stream import join, make_room, open_events, summary, text_is, until

APPLY_DELAY = "3s"  # every commit reaches the standby's readers this late
REPLICA_READER = "pgchat-replica-reader"  # application_name of chat/db.py's replica pool


@pytest.fixture(scope="module")
def standby(db_url: str) -> Iterator[EmbeddedPostgres]:
    """A hot standby of the embedded primary, replaying APPLY_DELAY behind it."""
    primary = EmbeddedPostgres.from_environment()
    try:
        embedded = primary.is_running() and str(primary.port()) in db_url
    except EmbeddedPgError:
        embedded = False
    if not embedded:
        pytest.skip("the tests use DATABASE_URL, not the embedded server to copy a standby of")
    state = PROJECT_DIR / ".pgchat" / "test-clusters" / f"standby-{uuid.uuid4().hex[:8]}"
    state.mkdir(parents=True, mode=0o700)
    if ownership.is_root():  # the server, and so pg_basebackup, run as the service user
        ownership.hand_over([state])
    replica = EmbeddedPostgres(state)
    run(
        ownership.as_owner(
            [
                str(binaries_dir() / "pg_basebackup"),
                "-D", str(replica.data_dir),
                "-R",  # standby.signal and primary_conninfo: a standby of this primary
                "-X", "stream", "-c", "fast",
                "-h", str(primary.socket_dir), "-p", str(primary.port()), "-U", "postgres",
            ]
        ),
        check=True,
    )  # fmt: skip
    # Appending keeps the file the service user's.
    with open(replica.data_dir / "postgresql.auto.conf", "a") as conf:
        conf.write(f"recovery_min_apply_delay = '{APPLY_DELAY}'\nhot_standby = on\n")
    replica.ensure_running()  # its own port and socket, from its own state folder
    yield replica
    replica.stop()
    shutil.rmtree(state, ignore_errors=True)
    state.with_name(state.name + ".lock").unlink(missing_ok=True)  # cluster.py's, beside it


@pytest.fixture(scope="module")
def standby_url(standby: EmbeddedPostgres, db_url: str) -> str:
    """The test database, on the standby."""
    dbname = psycopg.conninfo.conninfo_to_dict(db_url)["dbname"]
    return standby.url(str(dbname))


@pytest.fixture(scope="module")
def replicated(db_url: str, standby_url: str) -> Iterator[Server]:
    """A pgchat server reading history, replay and search from the standby."""
    before = running_servers(db_url)
    server = Server(
        db_url,
        env={"CHAT_READ_DATABASE_URL": standby_url, "CHAT_READ_FENCE_SECONDS": "0.3"},
    ).start()
    yield server
    server.stop()
    wait_for_server_backends_gone(db_url, running=before)


def _one(url: str, sql: str, *params: object) -> object:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(sql, params).fetchone()
    assert row is not None
    return row[0]


def _standby_has(standby_url: str, message_id: int) -> bool:
    return _one(standby_url, "SELECT count(*) FROM chat_chatmessage WHERE id = %s", message_id) == 1


def _caught_up(db_url: str, standby_url: str) -> bool:
    """Has the standby applied everything the primary has written?"""
    lsn = _one(db_url, "SELECT pg_current_wal_insert_lsn()::text")
    return bool(_one(standby_url, "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", lsn))


def _standby_reads(standby_url: str, since: object) -> list[str]:
    """The server's statements on the standby that started after ``since`` (the standby's
    clock): the last one of each of its connections there."""
    with psycopg.connect(standby_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT query FROM pg_stat_activity WHERE application_name = %s AND query_start >= %s",
            [REPLICA_READER, since],
        ).fetchall()
    return [row[0] for row in rows]


async def test_resume_right_after_a_commit_loses_nothing(
    replicated: Server, room: Room, standby_url: str
) -> None:
    """The event the client missed is on the primary only: the replay must not read the
    standby (3 s behind), which would answer "nothing after your cursor"; it waits a little
    for the standby, then reads the primary."""
    stream = await replicated.stream(room.slug)
    first = await ChatMessage.objects.acreate(room=room, author="ada", text="seen")
    [seen] = await collect(stream, 1)
    await stream.aclose()
    # The standby knows the room up to the client's cursor, and nothing after it.
    await wait_until_async(lambda: _standby_has(standby_url, first.pk), what="seen, replayed")

    fallbacks = replicated.metrics()["pgchat_replica_fallbacks_total"]
    missed = await ChatMessage.objects.acreate(room=room, author="ada", text="missed")
    behind = not _standby_has(standby_url, missed.pk)
    again = await replicated.stream(room.slug, last_event_id=seen.id)
    [got] = await collect(again, 1)
    assert got.json()["id"] == missed.pk
    assert behind, "the standby already had the row: this run did not test the fence"
    assert replicated.metrics()["pgchat_replica_fallbacks_total"] > fallbacks
    marker = await ChatMessage.objects.acreate(room=room, author="ada", text="marker")
    [last] = await collect(again, 1)  # a repeat would have come before it
    assert last.json()["id"] == marker.pk
    await again.aclose()


async def test_resume_while_replay_is_paused(
    replicated: Server, room: Room, db_url: str, standby_url: str
) -> None:
    """The standby applies nothing at all: resumes of the room stream and of the JSON
    history after a cursor still get everything, from the primary."""
    stream = await replicated.stream(room.slug)
    await ChatMessage.objects.acreate(room=room, author="ada", text="seen")
    [seen] = await collect(stream, 1)
    await stream.aclose()
    _one(standby_url, "SELECT pg_wal_replay_pause()::text")
    try:
        missed = [
            await ChatMessage.objects.acreate(room=room, author="ada", text=f"missed {n}")
            for n in range(3)
        ]
        again = await replicated.stream(room.slug, last_event_id=seen.id)
        got = await collect(again, 3)
        assert [e.json()["id"] for e in got] == [m.pk for m in missed]
        async with httpx.AsyncClient(base_url=replicated.url, timeout=DEADLINE) as client:
            page = (await client.get(f"/rooms/{room.slug}/messages?after={seen.id}")).json()
        assert [c["message"]["id"] for c in page["changes"]] == [m.pk for m in missed]
        assert not any(_standby_has(standby_url, m.pk) for m in missed)  # still paused
        marker = await ChatMessage.objects.acreate(room=room, author="ada", text="marker")
        [last] = await collect(again, 1)
        assert last.json()["id"] == marker.pk
        await again.aclose()
    finally:
        _one(standby_url, "SELECT pg_wal_replay_resume()::text")


async def test_events_resume_while_replay_is_paused(
    replicated: Server, db_url: str, standby_url: str, make_user: Callable[..., AbstractUser]
) -> None:
    """/events replays by snapshot (chat/position.py): the token and the target are the
    primary's snapshots, compared with the transaction ids the log stores, so a standby
    that has replayed past the fence answers exactly as the primary would; one that has
    not is passed over."""
    member = await sync_to_async(make_user)("reader")
    a, b = await sync_to_async(make_room)(), await sync_to_async(make_room)()
    await join(db_url, member, a.slug, b.slug)
    cookies = await session_cookies(replicated.url, member.username)
    stream = await open_events(replicated, cookies)
    await psql(db_url, insert_sql(a.slug, "seen"))
    token = (await until(stream, text_is("seen"), {a.slug, b.slug}))[-1].id
    await stream.aclose()
    _one(standby_url, "SELECT pg_wal_replay_pause()::text")
    try:
        await psql(db_url, insert_sql(b.slug, "missed b"), insert_sql(a.slug, "missed a"))
        resumed = await open_events(replicated, cookies, last_event_id=token)
        await psql(db_url, insert_sql(a.slug, "marker"))
        got = await until(resumed, text_is("marker"), {a.slug, b.slug})
        assert summary(got) == [
            ("message.created", b.slug, "missed b"),
            ("message.created", a.slug, "missed a"),
            ("message.created", a.slug, "marker"),
        ]
        await resumed.aclose()
    finally:
        _one(standby_url, "SELECT pg_wal_replay_resume()::text")


async def test_saved_search_resume_while_replay_is_paused(
    replicated: Server, db_url: str, standby_url: str, make_user: Callable[..., AbstractUser]
) -> None:
    """/search/events replays by snapshot through the same loop as /events
    (chat/token_stream.py): with the standby paused, the matches committed while away still
    come, once, from the primary."""
    seeker = await sync_to_async(make_user)("seeker")
    room = (await sync_to_async(make_room)()).slug
    w = "r" + uuid.uuid4().hex[:12]
    cookies = await session_cookies(replicated.url, seeker.username)
    stream = await open_search(replicated, w, cookies)
    await psql(db_url, insert_sql(room, f"seen {w}"))
    token = (await until_text(stream, f"seen {w}"))[-1].id
    await stream.aclose()
    _one(standby_url, "SELECT pg_wal_replay_pause()::text")
    try:
        await psql(db_url, insert_sql(room, f"missed {w}"), insert_sql(room, "no match"))
        resumed = await open_search(replicated, w, cookies, last_event_id=token)
        await psql(db_url, insert_sql(room, f"marker {w}"))
        got = await until_text(resumed, f"marker {w}")
        assert [event.json()["text"] for event in got] == [f"missed {w}", f"marker {w}"]
        await resumed.aclose()
    finally:
        _one(standby_url, "SELECT pg_wal_replay_resume()::text")


async def test_reads_hit_the_standby_once_it_has_caught_up(
    replicated: Server, room: Room, db_url: str, standby_url: str
) -> None:
    message = await ChatMessage.objects.acreate(room=room, author="ada", text="replicated")
    await wait_until_async(lambda: _caught_up(db_url, standby_url), what="the standby to catch up")
    reads = replicated.metrics()["pgchat_replica_reads_total"]
    async with httpx.AsyncClient(base_url=replicated.url, timeout=DEADLINE) as client:
        start = _one(standby_url, "SELECT clock_timestamp()")
        page = (await client.get(f"/rooms/{room.slug}/messages?after=0")).json()
        assert [c["message"]["id"] for c in page["changes"]] == [message.pk]
        # The fenced read ran on the standby: its reader's last statement is the log's.
        assert any("chat_messagechange" in q for q in _standby_reads(standby_url, start))
        start = _one(standby_url, "SELECT clock_timestamp()")
        recent = (await client.get(f"/rooms/{room.slug}/messages")).json()
        assert [m["id"] for m in recent["messages"]] == [message.pk]
        assert any("chat_chatmessage m" in q for q in _standby_reads(standby_url, start))
        stream = await replicated.stream(room.slug, last_event_id="0")
        [replayed] = await collect(stream, 1)
        assert replayed.json()["id"] == message.pk
        await stream.aclose()
    assert replicated.metrics()["pgchat_replica_reads_total"] >= reads + 3
    # Writes and LISTEN stay on the primary: the standby has no listener of ours.
    with psycopg.connect(standby_url, autocommit=True) as conn:
        listening = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", [LISTENER]
        ).fetchone()
    assert listening == (0,)
    assert len(sessions(db_url, LISTENER)) >= 1


async def test_a_standby_that_is_down_sends_reads_to_the_primary(
    replicated: Server, room: Room, standby: EmbeddedPostgres
) -> None:
    message = await ChatMessage.objects.acreate(room=room, author="ada", text="still here")
    standby.stop()
    try:
        async with httpx.AsyncClient(base_url=replicated.url, timeout=DEADLINE) as client:
            recent = await client.get(f"/rooms/{room.slug}/messages")
            assert recent.status_code == 200, recent.text
            assert [m["id"] for m in recent.json()["messages"]] == [message.pk]
        stream = await replicated.stream(room.slug, last_event_id="0")
        [replayed] = await collect(stream, 1)
        assert replayed.json()["id"] == message.pk
        await stream.aclose()
    finally:
        standby.ensure_running()


async def test_a_reader_cancelled_while_it_waits_gives_its_connection_back(
    read_pool: None, settings: Any, db_url: str, standby_url: str, room: Room
) -> None:
    """A stream that goes away (or a server stopping) while its replay waits for the
    replica must not keep the replica connection: with every slot of the pool leaked, the
    next readers would wait for ever."""
    settings.CHAT_READ_DATABASE_URL = standby_url
    settings.CHAT_READ_FENCE_SECONDS = DEADLINE  # the wait is cut by the cancel, not by time
    _one(standby_url, "SELECT pg_wal_replay_pause()::text")
    try:
        await ChatMessage.objects.acreate(room=room, author="ada", text="not replayed")
        fence = await replica.fence()
        assert fence is not None
        entered = asyncio.Event()

        async def wait_for_the_replica() -> None:
            entered.set()
            async with replica.reading(fence):
                pytest.fail("the paused replica cannot have reached the fence")

        for _ in range(db.POOL_MAX_SIZE):  # every slot, one after another
            waiting = asyncio.create_task(wait_for_the_replica())
            await entered.wait()
            await wait_until_async(lambda: db.replica.lent() == 1, what="a replica reader waits")
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            assert db.replica.lent() == 0
            entered.clear()
        async with asyncio.timeout(DEADLINE), replica.reading(stale_ok=True) as conn:
            await conn.execute("SELECT 1")  # a slot was free: none leaked
    finally:
        _one(standby_url, "SELECT pg_wal_replay_resume()::text")
