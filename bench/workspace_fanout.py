"""``python -m bench.workspace_fanout``: one ``/events`` stream per user against per-room streams.

Issue 12's capacity scenario. A scratch database (created, migrated, dropped) holds
``--rooms`` public rooms and ``--users`` users, each a member of ``--rooms-per-user`` of
them, spread evenly (user u is in rooms u*k .. u*k+k-1, modulo the room count), so every
room has users*k/rooms members. Each user gets a session made with Django's own session
store, as logging in would. Then, on a fresh pgchat server each:

- ``events``: every user opens ONE ``GET /events`` (their cookie), which carries all of
  their rooms;
- ``per-room``: every user opens one ``GET /rooms/<slug>/events`` per room they are in
  (``users * rooms_per_user`` streams), the way a client without /events would.

Both receive exactly the same (user, message) pairs. A writer process (bench/writer.py)
inserts ``--rate`` messages per second for ``--duration`` seconds, round-robin over the
rooms, with plain SQL; the figures are commit-to-receipt latency and the server's CPU per
delivered frame (one message reaching one user), plus nothing lost or repeated. The
target (issue 12): the multi-room fan-out costs at most 20% more CPU per delivered frame.

Prints a table, then ONE line of JSON as the last line of stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import psycopg

from .harness import start_writer, stop_writer, wait_ready
from .probes import ProcessTree, cpu_used
from .report import percentile
from .runner import database_url
from .servers import HOST, ServerProcess, raise_open_files_limit
from .sse_client import SSEClient
from .workspace_queries import create_scratch, drop_scratch

logger = logging.getLogger("bench.workspace_fanout")

ROOM_PREFIX = "ws-"
USER_PREFIX = "ws-user-"
OPEN_CONCURRENCY = 200
OPEN_TIMEOUT_SECONDS = 30.0
TARGET_OVERHEAD = 1.20  # the multi-room fan-out's CPU per frame, relative to per-room


@dataclass(slots=True)
class Outcome:
    """One mode's figures."""

    mode: str
    streams: int
    connected: int = 0
    expected: int = 0  # (user, message) pairs owed
    received: int = 0
    duplicated: int = 0
    open_s: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    server_cpu_s: float | None = None
    cpu_us_per_frame: float | None = None
    error: str | None = None


class Books:
    """Every user's receipts, and an event set once all that is owed has arrived."""

    def __init__(self, users: int, expected: int) -> None:
        self.seen: list[dict[int, float]] = [{} for _ in range(users)]  # id -> first receipt
        self.duplicated = 0
        self.expected, self.received = expected, 0
        self.complete = asyncio.Event()

    def receipt(self, user: int, message_id: int, at: float) -> None:
        if message_id in self.seen[user]:
            self.duplicated += 1
            return
        self.seen[user][message_id] = at
        self.received += 1
        if self.received >= self.expected:
            self.complete.set()


def memberships(users: int, rooms: int, per_user: int) -> list[list[int]]:
    """Room indexes of each user: evenly spread, so every room gets the same members."""
    return [[(u * per_user + k) % rooms for k in range(per_user)] for u in range(users)]


def room_slug(index: int) -> str:
    return f"{ROOM_PREFIX}{index:04d}"


def load(scratch: str, args: argparse.Namespace) -> dict[str, str]:
    """Rooms, users, memberships in SQL; sessions through Django; returns user -> cookie."""
    plan = memberships(args.users, args.rooms, args.rooms_per_user)
    with psycopg.connect(scratch, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO chat_room (slug, title, is_private) "
            "SELECT %s || lpad(i::text, 4, '0'), 'Room ' || i, false "
            "FROM generate_series(0, %s - 1) AS i",
            (ROOM_PREFIX, args.rooms),
        )
        conn.execute(
            "INSERT INTO auth_user (username, password, is_superuser, first_name, last_name, "
            "email, is_staff, is_active, date_joined) "
            "SELECT %s || i, '!', false, '', '', '', false, true, now() "
            "FROM generate_series(0, %s - 1) AS i",
            (USER_PREFIX, args.users),
        )
        pairs = [(room_slug(r), f"{USER_PREFIX}{u}") for u, rooms in enumerate(plan) for r in rooms]
        with conn.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO chat_room_members (room_id, user_id) "
                "SELECT %s, id FROM auth_user WHERE username = %s",
                pairs,
            )
    return _sessions(scratch, args.users)


def _sessions(scratch: str, users: int) -> dict[str, str]:
    """A logged-in session per user, written by Django's session store as log-in would."""
    os.environ["DATABASE_URL"] = scratch
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.auth.models import User
    from django.contrib.sessions.backends.db import SessionStore

    cookies = {}
    for user in User.objects.filter(username__startswith=USER_PREFIX):
        session = SessionStore()
        session[SESSION_KEY] = str(user.pk)
        session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
        session[HASH_SESSION_KEY] = user.get_session_auth_hash()
        session.create()
        cookies[user.username] = f"{settings.SESSION_COOKIE_NAME}={session.session_key}"
    return cookies


async def run_mode(
    mode: str, scratch: str, cookies: dict[str, str], args: argparse.Namespace
) -> Outcome:
    """A fresh server, every stream of ``mode`` open, the writer's inserts, the books."""
    plan = memberships(args.users, args.rooms, args.rooms_per_user)
    streams: list[tuple[int, str, dict[str, str]]] = []  # (user, path, headers)
    for u, rooms in enumerate(plan):
        cookie = {"Cookie": cookies[f"{USER_PREFIX}{u}"]}
        if mode == "events":
            streams.append((u, "/events", cookie))
        else:
            streams += [(u, f"/rooms/{room_slug(r)}/events", {}) for r in rooms]
    outcome = Outcome(mode=mode, streams=len(streams))
    inserts = max(1, round(args.rate * args.duration))
    members = args.users * args.rooms_per_user // args.rooms
    outcome.expected = inserts * members
    books = Books(len(plan), outcome.expected)
    clients: list[SSEClient] = []
    readers: list[asyncio.Task[None]] = []
    every_room = ",".join(room_slug(r) for r in range(args.rooms))
    async with ServerProcess("pgchat", scratch, workers=args.workers) as server:
        tree = ProcessTree(server.pid)
        writer = await start_writer(every_room, args.rate, inserts, scratch)
        try:
            await wait_ready(writer)
            gate = asyncio.Semaphore(OPEN_CONCURRENCY)
            opened_at = time.monotonic()

            async def open_one(user: int, path: str, headers: dict[str, str]) -> None:
                async with gate:
                    client = await SSEClient.open(
                        HOST, server.port, path, timeout=OPEN_TIMEOUT_SECONDS, headers=headers
                    )
                clients.append(client)
                readers.append(asyncio.create_task(_read(client, books, user)))

            await asyncio.gather(*(open_one(*stream) for stream in streams))
            outcome.open_s = time.monotonic() - opened_at
            outcome.connected = len(clients)
            cpu_before = tree.cpu_seconds()
            commits = await _write(writer, inserts)
            with contextlib.suppress(TimeoutError):  # what is late by then counts as lost
                await asyncio.wait_for(books.complete.wait(), args.grace)
            outcome.server_cpu_s = cpu_used(cpu_before, tree.cpu_seconds())
            _balance(outcome, books, commits)
        except Exception as exc:  # a failed mode is a row with an error, not a crashed run
            logger.exception("%s failed", mode)
            outcome.error = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        finally:
            for client in clients:
                client.close()
            for task in readers:
                task.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
            await stop_writer(writer)
    return outcome


async def _read(client: SSEClient, books: Books, user: int) -> None:
    async for event in client.events():
        if event.name == "message.created":
            books.receipt(user, json.loads(event.data)["id"], event.received_at)


async def _write(writer: asyncio.subprocess.Process, inserts: int) -> dict[int, float]:
    assert writer.stdin is not None
    assert writer.stdout is not None
    writer.stdin.write(b"go\n")
    await writer.stdin.drain()
    commits: dict[int, float] = {}
    while (line := await writer.stdout.readline()) not in (b"done\n", b""):
        message_id, committed_at = line.split()
        commits[int(message_id)] = float(committed_at)
    if len(commits) < inserts:
        raise RuntimeError(f"the writer stopped after {len(commits)} of {inserts} inserts")
    return commits


def _balance(outcome: Outcome, books: Books, commits: dict[int, float]) -> None:
    latencies = sorted(
        (at - commits[mid]) * 1000
        for seen in books.seen
        for mid, at in seen.items()
        if mid in commits
    )
    outcome.received = len(latencies)
    outcome.duplicated = books.duplicated
    if latencies:
        outcome.p50_ms = percentile(latencies, 50)
        outcome.p99_ms = percentile(latencies, 99)
    if outcome.received and outcome.server_cpu_s is not None:
        outcome.cpu_us_per_frame = outcome.server_cpu_s * 1e6 / outcome.received


def table(outcomes: Sequence[Outcome]) -> str:
    lines = [
        f"{'mode':<9} {'streams':>7} {'open s':>7} {'owed':>7} {'received':>8} {'dup':>4} "
        f"{'p50 ms':>7} {'p99 ms':>7} {'CPU s':>6} {'us/frame':>8}"
    ]

    def num(value: float | None, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    for o in outcomes:
        lines.append(
            f"{o.mode:<9} {o.connected:>7} {num(o.open_s, '.1f'):>7} {o.expected:>7} "
            f"{o.received:>8} {o.duplicated:>4} {num(o.p50_ms, '.1f'):>7} "
            f"{num(o.p99_ms, '.1f'):>7} {num(o.server_cpu_s, '.2f'):>6} "
            f"{num(o.cpu_us_per_frame, '.1f'):>8}" + (f"  ERROR {o.error}" if o.error else "")
        )
    return "\n".join(lines)


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.workspace_fanout", description=__doc__)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--rooms", type=int, default=100)
    parser.add_argument("--rooms-per-user", type=int, default=10)
    parser.add_argument("--rate", type=float, default=10.0, help="inserts per second")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of inserts")
    parser.add_argument("--grace", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--modes", default="per-room,events")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    args = parser.parse_args(argv)
    if min(args.users, args.rooms, args.rooms_per_user) < 1 or args.rooms_per_user > args.rooms:
        parser.error("need users, rooms >= 1 and 1 <= rooms-per-user <= rooms")
    if (args.users * args.rooms_per_user) % args.rooms:
        parser.error("users * rooms-per-user must be a multiple of rooms (equal rooms)")
    return args


async def run_modes(
    scratch: str, cookies: dict[str, str], args: argparse.Namespace
) -> list[Outcome]:
    return [await run_mode(mode, scratch, cookies, args) for mode in args.modes.split(",")]


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args = parse(argv)
    raise_open_files_limit()
    base = database_url()
    scratch = create_scratch(base, "fanout")
    try:
        cookies = load(scratch, args)  # Django's ORM: before the event loop runs
        outcomes = asyncio.run(run_modes(scratch, cookies, args))
    finally:
        if not args.keep:
            with contextlib.suppress(psycopg.Error):
                drop_scratch(base, scratch)
    print(table(outcomes))
    by_mode = {o.mode: o for o in outcomes}
    ratio = None
    events, per_room = by_mode.get("events"), by_mode.get("per-room")
    if events and per_room and events.cpu_us_per_frame and per_room.cpu_us_per_frame:
        ratio = events.cpu_us_per_frame / per_room.cpu_us_per_frame
        verdict = "within" if ratio <= TARGET_OVERHEAD else "OVER"
        print(
            f"/events CPU per delivered frame: {ratio:.2f}x per-room ({verdict} the 1.20x target)"
        )
    print(json.dumps({"bench": "workspace_fanout", "args": vars(args), "ratio": ratio,
                      "outcomes": [asdict(o) for o in outcomes]}))  # fmt: skip
    failed = any(o.error or o.received < o.expected or o.duplicated for o in outcomes)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
