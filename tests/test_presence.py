"""Presence (issue 13): who has a stream open on a room, across workers and hosts.

A user is in a room while one of their streams carries it (a room stream, or /events for the
rooms they joined); ``presence.joined`` / ``presence.left`` reach the room's other streams on
every worker when the first opens and the last closes; ``GET /rooms/<slug>/presence`` says
who is there. A worker killed with SIGKILL leaves its users within the heartbeat's expiry
(a few seconds here, 30 s by default; the contract says 60 s).

Which worker holds a stream is read from ``chat_presence`` itself (one row per worker and
user), so "a user on worker 1 is seen by a user on worker 2" is checked, not hoped for.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator, Callable, Iterator

import httpx
import psycopg
import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import AbstractUser

from bench.sse_client import Event, SSEClient
from chat.events import Bell, InvalidPayload
from chat.models import Room
from chat.presence import Presence

from .helpers import DEADLINE, running_servers, session_cookies, wait_until_async
from .servers import Server, insert_sql, psql, run_bench, until_text, wait_for_server_backends_gone
from .test_user_stream import join, open_events

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")

EXPIRY = "3"  # seconds a killed worker's heartbeat keeps its users online, in these tests
CLOSED_STREAM_LEAVES_SECONDS = 5.0  # the bound for a closed stream
KILLED_WORKER_LEAVES_SECONDS = 60.0  # ... and for a worker killed with SIGKILL
PRESENCE_FLUSH_SECONDS = 1.0  # chat/presence.py: how often a worker writes its changes


@pytest.fixture(scope="module")
def two_workers(db_url: str) -> Iterator[Server]:
    # Servers of other modules (the session's) may be running: leave their sessions be.
    before = running_servers(db_url)
    # The default expiry (30 s): with a short one, a worker stalled on a loaded machine
    # would expire and come back, which is news no test here expects. Only the killed
    # worker's rows need to expire soon, and they carry its own (short) expiry.
    server = Server(db_url, workers=2).start()
    yield server
    server.stop()
    wait_for_server_backends_gone(db_url, running=before)


def cookie_header(cookies: dict[str, str]) -> dict[str, str]:
    return {"Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())}


async def workers_holding(db_url: str, room: str, user: AbstractUser) -> set[str]:
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT worker FROM chat_presence WHERE room_id = %s AND user_id = %s",
            (room, user.pk),
        )
        return {worker for (worker,) in await cur.fetchall()}


async def presence_event(stream: SSEClient, room: str) -> Event:
    """The stream's next presence event of ``room`` (other tests' rooms are skipped)."""
    while True:
        event = await stream.next_event()
        if event.name.startswith("presence.") and event.json()["room"] == room:
            return event


async def online(server: Server, room: str, cookies: dict[str, str]) -> list[str]:
    async with httpx.AsyncClient(base_url=server.url, cookies=cookies, timeout=DEADLINE) as c:
        response = await c.get(f"/rooms/{room}/presence")
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["room"] == room
        return list(body["online"])


@pytest.fixture
async def people(
    make_user: Callable[..., AbstractUser],
) -> tuple[AbstractUser, AbstractUser]:
    return await sync_to_async(make_user)("alice"), await sync_to_async(make_user)("bob")


@pytest.fixture
async def closing() -> AsyncIterator[list[SSEClient]]:
    opened: list[SSEClient] = []
    yield opened
    await asyncio.gather(*(s.aclose() for s in opened))


async def watchers_on_both_workers(
    server: Server, db_url: str, room: str, user: AbstractUser, headers: dict[str, str]
) -> list[SSEClient]:
    """Streams of ``user`` on ``room`` until the two workers each hold at least one (the
    kernel spreads connections; a worker writes its row within a flush interval)."""
    opened: list[SSEClient] = []
    for _ in range(8):  # rounds; all of a round on one worker is 1 in 32 or so
        opened += [await server.stream(room, headers=headers) for _ in range(6)]
        with contextlib.suppress(TimeoutError):
            await wait_until_async(
                lambda: _on_two(db_url, room, user), deadline=3 * PRESENCE_FLUSH_SECONDS
            )
            return opened
    await asyncio.gather(*(s.aclose() for s in opened))
    raise AssertionError(f"{len(opened)} streams all landed on one worker")


async def _on_two(db_url: str, room: str, user: AbstractUser) -> bool:
    return len(await workers_holding(db_url, room, user)) >= 2


async def test_a_user_on_one_worker_is_seen_on_the_other(
    two_workers: Server, db_url: str, room: Room, people: tuple[AbstractUser, AbstractUser],
    closing: list[SSEClient],
) -> None:  # fmt: skip
    alice, bob = people
    alice_cookies = await session_cookies(two_workers.url, alice.username)
    bob_cookies = await session_cookies(two_workers.url, bob.username)
    watchers = await watchers_on_both_workers(
        two_workers, db_url, room.slug, bob, cookie_header(bob_cookies)
    )
    closing += watchers
    assert await online(two_workers, room.slug, alice_cookies) == [bob.username]

    alice_stream = await two_workers.stream(room.slug, headers=cookie_header(alice_cookies))
    [alice_worker] = await wait_until_async(lambda: workers_holding(db_url, room.slug, alice))
    async with asyncio.timeout(DEADLINE):
        joined = await asyncio.gather(*(presence_event(w, room.slug) for w in watchers))
    assert {(e.name, e.json()["user"]) for e in joined} == {("presence.joined", alice.username)}
    assert all(e.id is None for e in joined)  # not in the log: no cursor
    assert len(await workers_holding(db_url, room.slug, bob) - {alice_worker}) == 1
    assert await online(two_workers, room.slug, bob_cookies) == sorted(
        [alice.username, bob.username]
    )

    closed_at = time.monotonic()
    await alice_stream.aclose()
    async with asyncio.timeout(DEADLINE):
        left = await asyncio.gather(*(presence_event(w, room.slug) for w in watchers))
    assert time.monotonic() - closed_at < CLOSED_STREAM_LEAVES_SECONDS
    assert {(e.name, e.json()["user"]) for e in left} == {("presence.left", alice.username)}
    assert await online(two_workers, room.slug, bob_cookies) == [bob.username]
    # Nothing else came: the next thing each watcher sees is a later message.
    await psql(db_url, insert_sql(room.slug, "marker"))
    for watcher in watchers:
        assert [e.name for e in await until_text(watcher, "marker", room.slug)] == [
            "message.created"
        ]


async def test_a_second_stream_of_a_user_is_not_news(
    two_workers: Server, db_url: str, room: Room, people: tuple[AbstractUser, AbstractUser],
    closing: list[SSEClient],
) -> None:  # fmt: skip
    alice, _ = people
    alice_headers = cookie_header(await session_cookies(two_workers.url, alice.username))
    watcher = await two_workers.stream(room.slug)  # anonymous streams are told too
    closing.append(watcher)
    first = await two_workers.stream(room.slug, headers=alice_headers)
    closing.append(first)
    async with asyncio.timeout(DEADLINE):
        assert (await presence_event(watcher, room.slug)).name == "presence.joined"
    second = await two_workers.stream(room.slug, headers=alice_headers)
    await second.aclose()  # open and closed: she is still here with the first
    await wait_until_async(lambda: workers_holding(db_url, room.slug, alice))
    await psql(db_url, insert_sql(room.slug, "marker"))
    assert [e.name for e in await until_text(watcher, "marker", room.slug)] == ["message.created"]
    assert await online(two_workers, room.slug, {}) == [alice.username]


async def test_an_events_stream_makes_its_user_present_in_joined_rooms(
    two_workers: Server, db_url: str, room: Room, people: tuple[AbstractUser, AbstractUser],
    closing: list[SSEClient],
) -> None:  # fmt: skip
    alice, bob = people
    await join(db_url, alice, room.slug)
    await join(db_url, bob, room.slug)
    bob_events = await open_events(
        two_workers, await session_cookies(two_workers.url, bob.username)
    )
    closing.append(bob_events)
    alice_events = await open_events(
        two_workers, await session_cookies(two_workers.url, alice.username)
    )
    async with asyncio.timeout(DEADLINE):
        event = await presence_event(bob_events, room.slug)
    assert (event.name, event.json()) == (
        "presence.joined",
        {"room": room.slug, "user": alice.username},
    )
    await alice_events.aclose()
    async with asyncio.timeout(DEADLINE):
        event = await presence_event(bob_events, room.slug)
    assert (event.name, event.json()["user"]) == ("presence.left", alice.username)


async def test_a_forged_presence_bell_changes_nothing(
    two_workers: Server, db_url: str, room: Room, closing: list[SSEClient]
) -> None:
    watcher = await two_workers.stream(room.slug)
    closing.append(watcher)
    await psql(
        db_url,
        f"""NOTIFY chat, '{{"kind": "presence", "room": "{room.slug}"}}'""",
        insert_sql(room.slug, "marker"),
    )
    assert [e.name for e in await until_text(watcher, "marker", room.slug)] == ["message.created"]


async def test_a_killed_workers_users_leave(
    two_workers: Server, make_server: Callable[..., Server], db_url: str, room: Room,
    people: tuple[AbstractUser, AbstractUser], closing: list[SSEClient],
) -> None:  # fmt: skip
    alice, _ = people
    doomed = make_server(CHAT_PRESENCE_EXPIRY_SECONDS=EXPIRY)
    headers = cookie_header(await session_cookies(doomed.url, alice.username))
    watcher = await two_workers.stream(room.slug)
    closing.append(watcher)
    closing.append(await doomed.stream(room.slug, headers=headers))
    async with asyncio.timeout(DEADLINE):
        assert (await presence_event(watcher, room.slug)).name == "presence.joined"
    killed_at = time.monotonic()
    doomed.stop(signal.SIGKILL)  # no lifespan shutdown: its rows stay until they expire
    async with asyncio.timeout(KILLED_WORKER_LEAVES_SECONDS):
        event = await presence_event(watcher, room.slug)
    waited = time.monotonic() - killed_at
    assert (event.name, event.json()["user"]) == ("presence.left", alice.username)
    assert waited < KILLED_WORKER_LEAVES_SECONDS
    assert await online(two_workers, room.slug, {}) == []
    assert not await workers_holding(db_url, room.slug, alice)  # swept, not only expired


@pytest.mark.slow
def test_the_cost_bench_writes_one_row_per_heartbeat_not_per_stream(db_url: str) -> None:
    """bench/presence_cost.py at a small size: pairs are written once, a heartbeat is one
    row whatever the number of streams, a reconnect writes nothing, and PostgreSQL's own
    counters saw those rows."""
    summary = run_bench(db_url, "bench.presence_cost", "--streams", "500", "--users", "100",
                        "--rooms", "20", "--beats", "2")  # fmt: skip
    phases = {p["phase"]: p for p in summary["phases"]}
    assert summary["rows_per_heartbeat"] == 1
    assert phases["open"]["rows"] == phases["open"]["pairs"] + 1  # + the worker's row
    assert phases["churn"]["rows"] == 1  # reopened streams: only the heartbeat
    # Every row the writer counted, PostgreSQL counted too (servers of other tests may add
    # their own to the database-wide figure, never take any away).
    assert summary["rows_total_pg_stat"] >= summary["rows_total"]


# -- without I/O: the per-process counting --------------------------------------------------


def test_only_a_pairs_first_open_and_last_close_are_written() -> None:
    tracker = Presence(expiry_seconds=30.0)
    for _ in range(3):  # three tabs of user 1 in room a
        tracker.enter("a", 1)
    tracker.enter("b", 2)
    assert sorted(tracker._pending()[0]) == [("a", 1), ("b", 2)]
    tracker._written.update(tracker._pending()[0])  # as a flush does
    tracker._dirty.clear()
    tracker.leave("a", 1)
    tracker.leave("a", 1)
    assert tracker._pending() == ([], [])  # one tab left: still there
    tracker.leave("b", 2)
    tracker.enter("b", 2)  # a reconnect within one flush interval
    assert tracker._pending() == ([], [])
    tracker.leave("a", 1)
    assert tracker._pending() == ([], [("a", 1)])
    assert tracker.pairs == 1


@pytest.mark.parametrize(
    ("payload", "kind"),
    [
        ('{"kind": "typing", "room": "r", "user": 3}', "typing"),
        ('{"kind": "presence", "room": "r"}', "presence"),
    ],
)
def test_conversation_bells_parse(payload: str, kind: str) -> None:
    assert Bell.from_payload(payload).kind == kind


@pytest.mark.parametrize(
    "payload",
    [
        '{"kind": "typing", "room": "r"}',
        '{"kind": "typing", "user": 3}',
        '{"kind": "typing", "room": "r", "user": "3"}',
        '{"kind": "presence"}',
    ],
)
def test_malformed_conversation_bells_are_refused(payload: str) -> None:
    with pytest.raises(InvalidPayload):
        Bell.from_payload(payload)
