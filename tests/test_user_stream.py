"""``GET /events``: one stream for all of a user's rooms, resumable by an opaque snapshot
token; against a real server (one or two hypercorn workers), real psql and psycopg writers.

"Nothing else came" is proved with a later marker message: events are read up to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable

import httpx
import psycopg
import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import AbstractUser

from bench.sse_client import Event, SSEClient, SSEError
from chat.models import Room
from chat.position import MAX_TOKEN_CHARS, Position, Snapshot, decode
from devtools.embedded_pg import EmbeddedPostgres

from .helpers import DEADLINE, PASSWORD, session_cookies, unique, wait_until_async
from .servers import Browserless, Server, insert_sql, psql

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")

BELL_NOT_SWEEP_SECONDS = 10.0  # a bell took effect; the sweep would take an hour


async def open_events(
    server: Server,
    cookies: dict[str, str],
    *,
    last_event_id: str | None = None,
    receive_buffer: int | None = None,
    query: str = "",
) -> SSEClient:
    cookie = "; ".join(f"{name}={value}" for name, value in cookies.items())
    return await SSEClient.open(
        server.host,
        server.port,
        "/events" + query,
        headers={"Cookie": cookie},
        last_event_id=last_event_id,
        timeout=DEADLINE,
        receive_buffer=receive_buffer,
    )


async def until(client: SSEClient, done: Callable[[Event], bool], rooms: set[str]) -> list[Event]:
    """Events of ``rooms`` (others' tests write to the lobby) up to the first ``done`` one."""
    seen: list[Event] = []
    async with asyncio.timeout(DEADLINE):
        while True:
            event = await client.next_event()
            if json.loads(event.data).get("room") not in rooms:
                continue
            if event.name.startswith("presence.") or event.name == "typing":
                continue  # others' presence (issue 13): not what these tests are about
            seen.append(event)
            if done(event):
                return seen


async def until_heartbeat(stream: SSEClient) -> None:
    """Read until a keepalive comment (CHAT_SSE_HEARTBEAT is 1 s on test servers)."""
    async with asyncio.timeout(DEADLINE):
        while not stream.comments:
            with contextlib.suppress(TimeoutError):
                await stream.next_event(timeout=0.2)


async def ended(stream: SSEClient) -> None:
    """Wait (within the deadline) for the server to end the stream."""
    async with asyncio.timeout(DEADLINE):
        try:
            while True:
                await stream.next_event()
        except EOFError:
            return


def text_is(text: str) -> Callable[[Event], bool]:
    return lambda event: event.name == "message.created" and event.json()["text"] == text


def summary(events: list[Event]) -> list[tuple[str, str, str]]:
    return [(e.name, e.json()["room"], e.json().get("text", "")) for e in events]


def make_room(*, private: bool = False) -> Room:
    return Room.objects.create(slug=unique("room"), title="T", is_private=private)


@pytest.fixture
async def member(make_user: Callable[..., AbstractUser]) -> AbstractUser:
    return await sync_to_async(make_user)("reader")


@pytest.fixture
async def two_rooms(member: AbstractUser, db_url: str) -> tuple[str, str]:
    a, b = await sync_to_async(make_room)(), await sync_to_async(make_room)()
    await join(db_url, member, a.slug, b.slug)
    return a.slug, b.slug


async def join(db_url: str, user: AbstractUser, *slugs: str) -> None:
    values = ", ".join(f"('{slug}', {user.pk})" for slug in slugs)
    await psql(db_url, f"INSERT INTO chat_room_members (room_id, user_id) VALUES {values}")


async def test_anonymous_is_refused_and_bad_tokens_are_400(
    server: Server, member: AbstractUser
) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=DEADLINE) as client:
        anonymous = await client.get("/events")
        assert anonymous.status_code == 403
        assert "error" in anonymous.json()
    cookies = await session_cookies(server.url, member.username)
    for bad in ("42", "p1.!!", "p1." + "A" * (MAX_TOKEN_CHARS + 10), "p1.gICAgICAgICAgICAgAE"):
        with pytest.raises(SSEError) as refused:
            await open_events(server, cookies, last_event_id=bad)
        assert refused.value.status == 400, bad
        assert "error" in json.loads(refused.value.body)
    ahead = Position(Snapshot(2**40, 2**40)).encode()  # transactions not yet begun
    async with httpx.AsyncClient(base_url=server.url, timeout=DEADLINE, cookies=cookies) as client:
        assert (await client.get("/events?last_event_id=nonsense")).status_code == 400
        answer = await client.get(f"/events?last_event_id={ahead}")
        assert answer.status_code == 400
        assert "ahead" in answer.json()["error"]
        assert (await client.post("/events")).status_code == 405


async def test_live_events_of_every_joined_room_carry_the_room(
    server: Server, db_url: str, member: AbstractUser, two_rooms: tuple[str, str]
) -> None:
    a, b = two_rooms
    stream = await open_events(server, await session_cookies(server.url, member.username))
    try:
        assert stream.headers["content-type"] == "text/event-stream"
        assert (await server.health_async())[1]["user_streams"] >= 1
        await until_heartbeat(stream)  # the open's position block came before it
        assert stream.last_event_id is not None
        assert stream.last_event_id.startswith("p1.")
        await psql(db_url, insert_sql(a, "in a"), insert_sql(b, "in b"))
        events = await until(stream, text_is("in b"), {a, b})
        assert summary(events) == [
            ("message.created", a, "in a"),
            ("message.created", b, "in b"),
        ]
        assert events[-1].id is not None
        assert events[-1].id.startswith("p1.")
    finally:
        await stream.aclose()


async def test_rooms_committing_out_of_order_resume_exactly_once(
    server: Server, db_url: str, member: AbstractUser, two_rooms: tuple[str, str]
) -> None:
    """A's insert takes its cursor first but commits last; the stream has B's already."""
    a, b = two_rooms
    cookies = await session_cookies(server.url, member.username)
    stream = await open_events(server, cookies)
    async with await psycopg.AsyncConnection.connect(db_url) as held:
        await held.execute(insert_sql(a, "slow a"))  # in a transaction, not committed
        await psql(db_url, insert_sql(b, "fast b"))
        got = await until(stream, text_is("fast b"), {a, b})
        assert summary(got) == [("message.created", b, "fast b")]
        token = got[-1].id
        assert token is not None
        await stream.aclose()
        await held.commit()
    resumed = await open_events(server, cookies, last_event_id=token)
    try:
        await psql(db_url, insert_sql(b, "marker"))
        after = await until(resumed, text_is("marker"), {a, b})
        assert summary(after) == [
            ("message.created", a, "slow a"),
            ("message.created", b, "marker"),
        ]
    finally:
        await resumed.aclose()


async def test_rooms_committing_out_of_order_on_an_open_stream(
    server: Server, db_url: str, member: AbstractUser, two_rooms: tuple[str, str]
) -> None:
    a, b = two_rooms
    stream = await open_events(server, await session_cookies(server.url, member.username))
    try:
        async with await psycopg.AsyncConnection.connect(db_url) as held:
            await held.execute(insert_sql(a, "slow a"))
            await psql(db_url, insert_sql(b, "fast b"))
            assert summary(await until(stream, text_is("fast b"), {a, b})) == [
                ("message.created", b, "fast b")
            ]
            await held.commit()
        await psql(db_url, insert_sql(b, "marker"))
        assert summary(await until(stream, text_is("marker"), {a, b})) == [
            ("message.created", a, "slow a"),
            ("message.created", b, "marker"),
        ]
    finally:
        await stream.aclose()


async def test_a_transaction_over_two_rooms_comes_whole_and_is_not_repeated(
    server: Server, db_url: str, member: AbstractUser, two_rooms: tuple[str, str]
) -> None:
    a, b = two_rooms
    cookies = await session_cookies(server.url, member.username)
    stream = await open_events(server, cookies)
    await psql(db_url, "BEGIN", insert_sql(a, "one"), insert_sql(b, "two"), "COMMIT")
    got = await until(stream, text_is("two"), {a, b})
    assert summary(got) == [("message.created", a, "one"), ("message.created", b, "two")]
    assert got[0].id is None  # a resume cannot split the transaction
    assert got[1].id is not None
    await stream.aclose()
    # The query string resumes too (a page rendered with a position).
    resumed = await open_events(server, cookies, query=f"?last_event_id={got[1].id}")
    try:
        await psql(db_url, insert_sql(a, "marker"))
        assert summary(await until(resumed, text_is("marker"), {a, b})) == [
            ("message.created", a, "marker")
        ]
    finally:
        await resumed.aclose()


async def test_a_long_absence_replays_in_pages_in_each_rooms_order(
    server: Server, db_url: str, member: AbstractUser, two_rooms: tuple[str, str]
) -> None:
    """More transactions than a replay page: every one, once, in order; a resume from a
    token in the middle of the replay continues where it stopped."""
    a, b = two_rooms
    cookies = await session_cookies(server.url, member.username)
    stream = await open_events(server, cookies)
    await psql(db_url, insert_sql(a, "start"))
    token = (await until(stream, text_is("start"), {a, b}))[-1].id
    await stream.aclose()
    count = 450  # log_by_snapshot.REPLAY_TRANSACTIONS is 200: three pages
    await psql(
        db_url,
        *(insert_sql(a if i % 2 else b, f"m{i}") for i in range(count)),
    )
    resumed = await open_events(server, cookies, last_event_id=token)
    got = await until(resumed, text_is(f"m{count - 1}"), {a, b})
    assert [e.json()["text"] for e in got] == [f"m{i}" for i in range(count)]
    middle = got[250]
    assert middle.id is None or middle.id.startswith("p1.")
    ids = [i for i, e in enumerate(got) if e.id]
    cut = ids[0]  # the end of the first page: a partial position
    position = decode(got[cut].id)
    assert position is not None
    assert position.target is not None
    await resumed.aclose()
    again = await open_events(server, cookies, last_event_id=got[cut].id)
    try:
        await psql(db_url, insert_sql(a, "marker"))
        rest = await until(again, text_is("marker"), {a, b})
        assert [e.json()["text"] for e in rest] == [
            *(f"m{i}" for i in range(cut + 1, count)),
            "marker",
        ]
    finally:
        await again.aclose()


async def test_membership_changes_reach_open_streams_on_every_worker(
    make_server: Callable[..., Server], db_url: str, member: AbstractUser
) -> None:
    """Join, member added, member removed, leave: written with psql, carried (or no longer)
    by every open stream at once, whichever of two workers holds it."""
    server = make_server(workers=2)
    home, public, private = await sync_to_async(
        lambda: (make_room(), make_room(), make_room(private=True))
    )()
    mine = {home.slug, public.slug, private.slug}
    await join(db_url, member, home.slug)
    cookies = await session_cookies(server.url, member.username)
    streams = [await open_events(server, cookies) for _ in range(4)]
    try:

        async def everyone(done: Callable[[Event], bool]) -> list[list[tuple[str, str, str]]]:
            got = await asyncio.gather(*(until(s, done, mine) for s in streams))
            return [[(e.name, e.json()["room"], e.json().get("text", "")) for e in g] for g in got]

        def is_event(name: str, room: str) -> Callable[[Event], bool]:
            return lambda e: e.name == name and e.json()["room"] == room

        for room in (public.slug, private.slug):  # a join, and an owner adding a member
            await join(db_url, member, room)
            # A join also starts the user's read position in the room (migration 0007).
            assert await everyone(is_event("room.read", room)) == [
                [("room.joined", room, ""), ("room.read", room, "")]
            ] * len(streams)
            await psql(db_url, insert_sql(room, f"hello {room}"))
            assert await everyone(text_is(f"hello {room}")) == [
                [("message.created", room, f"hello {room}")]
            ] * len(streams)

        for room in (private.slug, public.slug):  # a member removed, and a leave
            await psql(
                db_url,
                f"DELETE FROM chat_room_members WHERE room_id = '{room}' AND user_id = {member.pk}",
            )
            written = time.time()
            left = await asyncio.gather(
                *(until(s, is_event("room.left", room), mine) for s in streams)
            )
            for events in left:
                assert [(e.name, e.json()) for e in events] == [("room.left", {"room": room})]
                # On the bell, not at the sweep (CHAT_ACCESS_RECHECK_SECONDS, an hour): far
                # sooner than that, with room for a loaded machine.
                assert events[0].received_at - written < BELL_NOT_SWEEP_SECONDS
            await psql(db_url, insert_sql(room, "not for you"), insert_sql(home.slug, f"m {room}"))
            assert await everyone(text_is(f"m {room}")) == [
                [("message.created", home.slug, f"m {room}")]
            ] * len(streams)
    finally:
        for stream in streams:
            await stream.aclose()


async def test_read_position_moves_reach_the_users_streams(
    server: Server, db_url: str, member: AbstractUser, two_rooms: tuple[str, str]
) -> None:
    a, b = two_rooms
    stream = await open_events(server, await session_cookies(server.url, member.username))
    try:
        await psql(db_url, insert_sql(a, "to read"))
        cursor = (await until(stream, text_is("to read"), {a, b}))[-1]
        async with Browserless(server.url) as client:
            await client.login(member.username)
            latest = (await client.client.get("/me/rooms")).json()["rooms"]
            end = next(r["latest"] for r in latest if r["slug"] == a)
            moved = await client.request("POST", f"/rooms/{a}/read", json={"cursor": end})
            assert moved.status_code == 200, moved.text
        got = await until(stream, lambda e: e.name == "room.read", {a, b})
        assert [(e.name, e.json()) for e in got] == [("room.read", {"room": a, "cursor": end})]
        assert cursor.id is not None
    finally:
        await stream.aclose()


async def test_logging_out_or_deactivation_ends_the_stream(
    server: Server, db_url: str, make_user: Callable[..., AbstractUser]
) -> None:
    leaving = await sync_to_async(make_user)("leaving")
    async with Browserless(server.url) as client:
        await client.login(leaving.username)
        stream = await open_events(server, dict(client.client.cookies.items()))
        assert (await client.request("POST", "/accounts/logout/")).status_code in (200, 302)
        await ended(stream)
        await stream.aclose()
    deactivated = await sync_to_async(make_user)("deactivated")
    stream = await open_events(server, await session_cookies(server.url, deactivated.username))
    await psql(db_url, f"UPDATE auth_user SET is_active = false WHERE id = {deactivated.pk}")
    await ended(stream)
    await stream.aclose()


async def test_a_500_room_users_token_is_as_small_as_anyones(
    server: Server, db_url: str, make_user: Callable[..., AbstractUser]
) -> None:
    """The token holds a snapshot (transactions in flight), never a cursor per room."""
    busy, quiet = await sync_to_async(lambda: (make_user("busy"), make_user("quiet")))()
    prefix = unique("many")
    await psql(
        db_url,
        f"INSERT INTO chat_room (slug, title) SELECT '{prefix}-' || i, 'many' "
        "FROM generate_series(1, 500) i",
        f"INSERT INTO chat_room_members (room_id, user_id) SELECT '{prefix}-' || i, {busy.pk} "
        "FROM generate_series(1, 500) i",
        f"INSERT INTO chat_room_members (room_id, user_id) VALUES ('{prefix}-1', {quiet.pk})",
    )
    rooms = {f"{prefix}-{i}" for i in range(1, 501)}
    held = [await psycopg.AsyncConnection.connect(db_url) for _ in range(5)]
    busy_stream = await open_events(server, await session_cookies(server.url, busy.username))
    quiet_stream = await open_events(server, await session_cookies(server.url, quiet.username))
    try:
        for i, conn in enumerate(held):  # transactions in flight: the token lists them
            await conn.execute(insert_sql(f"{prefix}-{i + 2}", "held"))
        await psql(db_url, *(insert_sql(f"{prefix}-{i}", f"r{i}") for i in range(1, 501, 7)))
        await psql(db_url, insert_sql(f"{prefix}-1", "last"))
        busy_token = (await until(busy_stream, text_is("last"), rooms))[-1].id
        quiet_token = (await until(quiet_stream, text_is("last"), rooms))[-1].id
        assert busy_token is not None
        assert quiet_token is not None
        print(f"token: 500 rooms {len(busy_token)} chars, 1 room {len(quiet_token)}")
        assert len(busy_token) < 200, busy_token  # far below the 2 KB a token may have
        assert abs(len(busy_token) - len(quiet_token)) <= 8, (busy_token, quiet_token)
        position = decode(busy_token)
        assert position is not None
        assert len(position.done.xip) >= len(held)
    finally:
        for conn in held:
            await conn.rollback()
            await conn.close()
        await busy_stream.aclose()
        await quiet_stream.aclose()


async def test_postgres_restart_mid_stream_loses_nothing_and_opens_meanwhile_are_503(
    make_server: Callable[..., Server], restartable: EmbeddedPostgres
) -> None:
    """The stream stays open while PostgreSQL restarts; what committed while the listener
    was away comes from the log after its last position; an open meanwhile is a JSON 503."""
    url = restartable.url()
    server = make_server(url, CHAT_LISTENER_BACKOFF="0.2")
    name, slug = unique("restarter"), unique("restart")
    await psql(
        url,
        "INSERT INTO auth_user (username, password, is_active, is_staff, is_superuser, "
        "first_name, last_name, email, date_joined) "
        f"VALUES ('{name}', '{make_password(PASSWORD)}', true, false, false, '', '', '', now())",
        f"INSERT INTO chat_room (slug) VALUES ('{slug}')",
        f"INSERT INTO chat_room_members (room_id, user_id) "
        f"SELECT '{slug}', id FROM auth_user WHERE username = '{name}'",
    )
    cookies = await session_cookies(server.url, name)
    stream = await open_events(server, cookies)
    try:
        await psql(url, insert_sql(slug, "before"))
        await until(stream, text_is("before"), {slug})
        await asyncio.to_thread(restartable.stop)
        await server.wait_health_async(503)
        with pytest.raises(SSEError) as refused:
            await open_events(server, cookies)
        assert refused.value.status == 503
        assert "error" in json.loads(refused.value.body)
        await asyncio.to_thread(restartable.ensure_running)
        for i in range(3):  # likely before the listener is back: only the log has these
            await psql(url, insert_sql(slug, f"during {i}"))
        await server.wait_health_async(200)
        await psql(url, insert_sql(slug, "marker"))
        got = await until(stream, text_is("marker"), {slug})
        assert [e.json()["text"] for e in got] == ["during 0", "during 1", "during 2", "marker"]
    finally:
        await stream.aclose()


async def test_a_stuck_stream_is_dropped_and_resumes_from_its_last_token(
    make_server: Callable[..., Server], db_url: str, member: AbstractUser
) -> None:
    """A client that stops reading overflows its buffer: the server ends its stream rather
    than hold memory; what it read, then a resume from its last token, is every change once."""
    server = make_server(CHAT_SUBSCRIBER_QUEUE_SIZE="8")
    room = (await sync_to_async(make_room)()).slug
    await join(db_url, member, room)
    cookies = await session_cookies(server.url, member.username)
    stuck = await open_events(server, cookies, receive_buffer=4096)
    # One frame of the room sent and read first: under load the flood can fill the 8-frame
    # buffer before the stream's first send, and then this client was sent none of it.
    await psql(db_url, insert_sql(room, "first"))
    read = await until(stuck, text_is("first"), {room})  # no read from here on
    count = 600  # 7 MB: more than the kernel buffers on a loopback connection hold
    await psql(  # one transaction each (COMMIT in a DO block), 12 kB frames
        db_url,
        f"DO $$ BEGIN FOR i IN 0..{count - 1} LOOP "
        "INSERT INTO chat_chatmessage (room_id, author, text) "
        f"VALUES ('{room}', 'bulk', i || ' ' || repeat('\u20ac', 3990)); COMMIT; "
        "END LOOP; END $$",
    )

    async def dropped() -> bool:
        return bool((await server.health_async())[1]["counters"].get("slow_drops", 0) >= 1)

    await wait_until_async(dropped)
    async with asyncio.timeout(DEADLINE):
        async for event in stuck.events():  # what was sent before the end, then EOF
            if event.json()["room"] == room:
                read.append(event)
    token = stuck.last_event_id
    assert token is not None
    resumed = await open_events(server, cookies, last_event_id=token)
    try:
        await psql(db_url, insert_sql(room, "marker"))
        rest = await until(resumed, text_is("marker"), {room})
        assert read[-1].id == token  # whole batches only: the last one ends with its token
        assert len(read) < 1 + count  # it was dropped before the end
        assert [e.json()["text"].split(" ")[0] for e in read + rest] == [
            "first",
            *(str(i) for i in range(count)),
            "marker",
        ]
    finally:
        await resumed.aclose()


async def test_an_idle_streams_token_moves_with_the_log(
    server: Server, db_url: str, member: AbstractUser, two_rooms: tuple[str, str], room: Room
) -> None:
    """Writes elsewhere move an idle stream's position (an id-only block with a keepalive),
    so its resume reads less log; resuming from it repeats nothing."""
    a, b = two_rooms
    cookies = await session_cookies(server.url, member.username)
    stream = await open_events(server, cookies)
    await until_heartbeat(stream)
    opened = stream.last_event_id
    assert opened is not None
    await psql(db_url, insert_sql(room.slug, "not the member's room"))

    async def moved() -> bool:
        with contextlib.suppress(TimeoutError):
            await stream.next_event(timeout=0.2)
        return stream.last_event_id != opened

    await wait_until_async(moved)
    token = stream.last_event_id
    await stream.aclose()
    assert token is not None
    before, after = decode(opened), decode(token)
    assert before is not None
    assert after is not None
    assert after.done.covers(before.done)
    assert after.done != before.done
    resumed = await open_events(server, cookies, last_event_id=token)
    try:
        await psql(db_url, insert_sql(a, "marker"))
        assert summary(await until(resumed, text_is("marker"), {a, b, room.slug})) == [
            ("message.created", a, "marker")
        ]
    finally:
        await resumed.aclose()


async def test_a_deleted_room_is_left(
    server: Server, db_url: str, member: AbstractUser, two_rooms: tuple[str, str]
) -> None:
    a, b = two_rooms
    stream = await open_events(server, await session_cookies(server.url, member.username))
    try:
        # As the admin deletes it (Django deletes its member rows first: no cascade in SQL).
        await sync_to_async(lambda: Room.objects.filter(slug=a).delete())()
        await psql(db_url, insert_sql(b, "marker"))
        assert summary_of_any(await until(stream, text_is("marker"), {a, b})) == [
            ("room.left", a),
            ("message.created", b),
        ]
    finally:
        await stream.aclose()


def summary_of_any(events: list[Event]) -> list[tuple[str, str]]:
    return [(e.name, e.json()["room"]) for e in events]
