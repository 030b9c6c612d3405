"""Two app hosts against one database through PgBouncer (issue 15.4).

Two independent hypercorn processes, each with 2 workers, on two ports, as two machines
would run them: DATABASE_URL is a real PgBouncer in transaction mode, the listeners connect
to PostgreSQL directly (CHAT_LISTEN_DATABASE_URL). A message posted on one host reaches the
subscribers of both; a client that moves from one host to the other with its Last-Event-ID
(room stream and /events) loses nothing and sees nothing twice; and PostgreSQL sees exactly
one LISTEN session per process, four in all, traced to the processes by their TCP ports.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import psutil
import psycopg
import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import AbstractUser
from django.db import connection

from chat.models import Room
from devtools.embedded_pg import EmbeddedPgError, EmbeddedPostgres

from . import pgbouncer
from .helpers import LISTENER, running_servers, session_cookies, wait_until
from .servers import (
    Browserless,
    Server,
    collect,
    insert_sql,
    psql,
    wait_for_server_backends_gone,
)
from .test_user_stream import join, open_events, summary, text_is, until

WORKERS = 2  # per host


@pytest.fixture(scope="module")
def cluster(db_url: str) -> EmbeddedPostgres:
    cluster = EmbeddedPostgres.from_environment()
    try:
        embedded = cluster.is_running() and str(cluster.port()) in db_url
    except EmbeddedPgError:
        embedded = False
    if not embedded:
        pytest.skip("the tests use DATABASE_URL, not the embedded server PgBouncer fronts")
    return cluster


@pytest.fixture(scope="module")
def hosts(cluster: EmbeddedPostgres, db_url: str) -> Iterator[tuple[Server, Server]]:
    """Host A and host B: same settings, nothing shared but the database."""
    if pgbouncer.binary() is None:
        pytest.skip("pgbouncer is not installed (Debian: apt-get install pgbouncer)")
    name = str(connection.settings_dict["NAME"])
    bouncer = pgbouncer.PgBouncer(cluster).start()
    env = {
        "DATABASE_URL": bouncer.url(name),
        "CHAT_PGBOUNCER": "transaction",
        # Over TCP, so each LISTEN session's client port names the process that holds it.
        "CHAT_LISTEN_DATABASE_URL": cluster.tcp_url(name),
    }
    before = running_servers(db_url)
    a = Server(env["DATABASE_URL"], workers=WORKERS, env=env).start()
    b = Server(env["DATABASE_URL"], workers=WORKERS, env=env).start()
    try:
        yield a, b
    finally:
        a.stop()
        b.stop()
        bouncer.remove()
        wait_for_server_backends_gone(db_url, running=before)


def _workers(server: Server) -> list[psutil.Process]:
    assert server.process is not None
    return psutil.Process(server.process.pid).children(recursive=True)


def _listen_ports(db_url: str) -> set[int]:
    """The client ports of the LISTEN sessions that came over TCP (the hosts')."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT client_port FROM pg_stat_activity"
            " WHERE application_name = %s AND client_port > 0 AND datname = current_database()",
            [LISTENER],
        ).fetchall()
    return {int(row[0]) for row in rows}


def _ports_to_postgres(process: psutil.Process, pg_port: int) -> set[int]:
    return {
        c.laddr.port
        for c in process.net_connections(kind="tcp")
        if c.raddr and c.raddr.port == pg_port and c.status == psutil.CONN_ESTABLISHED
    }


def test_one_listen_session_per_process(
    hosts: tuple[Server, Server], cluster: EmbeddedPostgres, db_url: str
) -> None:
    """Each worker's only direct connection is its listener (everything else goes through
    PgBouncer): four processes, four LISTEN sessions, one each."""
    for server in hosts:
        server.wait_healthy()
    processes = [p for server in hosts for p in _workers(server)]

    def each_has_one() -> dict[int, set[int]] | None:
        held = {p.pid: _ports_to_postgres(p, cluster.port()) for p in processes}
        held = {pid: ports for pid, ports in held.items() if ports}
        return held if len(held) == 2 * WORKERS else None

    held = wait_until(each_has_one, what="every worker connected to PostgreSQL")
    assert all(len(ports) == 1 for ports in held.values()), held
    listening = _listen_ports(db_url)
    assert set().union(*held.values()) == listening, (held, listening)
    assert len(listening) == 2 * WORKERS


async def test_a_post_on_one_host_reaches_subscribers_of_both(
    hosts: tuple[Server, Server], room: Room, make_user: Callable[..., AbstractUser]
) -> None:
    a, b = hosts
    author = await sync_to_async(make_user)("author")
    # Several streams per host, so that both workers of each are likely to hold some.
    streams = [await server.stream(room.slug) for server in (a, b) for _ in range(3)]
    async with Browserless(a.url) as client:
        await client.login(author.username)
        posted = await client.request(
            "POST", f"/rooms/{room.slug}/messages", json={"text": "from host A"}
        )
        assert posted.status_code == 201, posted.text
    for stream in streams:
        [event] = await collect(stream, 1)
        assert event.json()["text"] == "from host A"
        await stream.aclose()


async def test_a_client_moves_from_host_a_to_host_b_with_its_cursor(
    hosts: tuple[Server, Server], room: Room, db_url: str
) -> None:
    a, b = hosts
    on_a = await a.stream(room.slug)
    await psql(db_url, insert_sql(room.slug, "seen on A"))
    [seen] = await collect(on_a, 1)
    await on_a.aclose()  # host A goes away, or the load balancer sends it elsewhere
    await psql(db_url, insert_sql(room.slug, "missed 1"), insert_sql(room.slug, "missed 2"))
    on_b = await b.stream(room.slug, last_event_id=seen.id)
    await psql(db_url, insert_sql(room.slug, "marker"))
    got = await collect(on_b, 3)  # a repeat of anything would come before the marker
    assert [e.json()["text"] for e in got] == ["missed 1", "missed 2", "marker"]
    assert len({e.cursor for e in got}) == 3
    await on_b.aclose()


async def test_events_move_from_host_a_to_host_b_with_the_token(
    hosts: tuple[Server, Server], db_url: str, make_user: Callable[..., AbstractUser]
) -> None:
    a, b = hosts
    member = await sync_to_async(make_user)("mover")
    x = await Room.objects.acreate(slug=f"x-{member.pk}", title="X")
    y = await Room.objects.acreate(slug=f"y-{member.pk}", title="Y")
    await join(db_url, member, x.slug, y.slug)
    cookies = await session_cookies(a.url, member.username)  # one session, any host
    on_a = await open_events(a, cookies)
    await psql(db_url, insert_sql(x.slug, "seen on A"))
    token = (await until(on_a, text_is("seen on A"), {x.slug, y.slug}))[-1].id
    await on_a.aclose()
    await psql(db_url, insert_sql(y.slug, "missed y"), insert_sql(x.slug, "missed x"))
    on_b = await open_events(b, cookies, last_event_id=token)
    await psql(db_url, insert_sql(y.slug, "marker"))
    got = await until(on_b, text_is("marker"), {x.slug, y.slug})
    assert summary(got) == [
        ("message.created", y.slug, "missed y"),
        ("message.created", x.slug, "missed x"),
        ("message.created", y.slug, "marker"),
    ]
    await on_b.aclose()
