"""What every test waits and looks with: one deadline, one poll, one look at PostgreSQL's
sessions, one login. (tests/servers.py holds the processes: hypercorn, psql.)

Why one of each: a test that waits "long enough" by its own measure flakes on a loaded
machine, and five copies of a poll loop drift apart. A deadline here is only the point at
which a test gives up on a condition that should hold; a passing run never waits for it,
so it is generous, and it is never used to prove that something did *not* happen (a later
marker event does that: see ``tests/test_stream_e2e.py``).
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import json
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NamedTuple, TypeVar, overload

import httpx
import psycopg

DEADLINE = 30.0  # seconds any awaited condition may take before the test fails; typical: ms
POLL_SECONDS = 0.02  # between two looks at a condition
PASSWORD = "correct-horse-battery-staple"  # every test user's

LISTENER = "pgchat-listener"  # application_name of a server process's LISTEN connection
READER = "pgchat-reader"  # ... and of its read pool's connections (chat/db.py)
SERVER_SESSIONS = (LISTENER, READER)  # what a pgchat server holds while it runs

T = TypeVar("T")
_numbers = itertools.count(1)


def unique(prefix: str) -> str:
    """A name no other test (or run sharing the cluster) uses: rooms, users."""
    return f"{prefix}-{os.getpid()}-{next(_numbers)}"


# -- waiting ---------------------------------------------------------------------------------


def wait_until(
    predicate: Callable[[], T | None], *, deadline: float = DEADLINE, what: str = ""
) -> T:
    """Poll ``predicate`` until it returns something truthy, and return that.

    Raises TimeoutError naming ``what`` (or the predicate) after ``deadline`` seconds.
    For sync tests and threads; in a coroutine use ``wait_until_async``.
    """
    give_up = time.monotonic() + deadline
    while not (value := predicate()):
        if time.monotonic() >= give_up:
            raise TimeoutError(f"not so within {deadline} s: {what or _name(predicate)}")
        time.sleep(POLL_SECONDS)
    return value


@overload
async def wait_until_async(
    predicate: Callable[[], Awaitable[T | None]], *, deadline: float = ..., what: str = ...
) -> T: ...
@overload
async def wait_until_async(
    predicate: Callable[[], T | None], *, deadline: float = ..., what: str = ...
) -> T: ...
async def wait_until_async(
    predicate: Callable[[], Any], *, deadline: float = DEADLINE, what: str = ""
) -> Any:
    """``wait_until`` for coroutines: the predicate may be sync (run on the loop, so keep it
    cheap) or async (awaited). A predicate that hangs is cut by the same deadline."""
    timeout = asyncio.timeout(deadline)
    try:
        async with timeout:
            while True:
                value = predicate()
                if inspect.isawaitable(value):
                    value = await value
                if value:
                    return value
                await asyncio.sleep(POLL_SECONDS)
    except TimeoutError:
        if not timeout.expired():
            raise  # the predicate's own timeout: not ours to rename
        raise TimeoutError(f"not so within {deadline} s: {what or _name(predicate)}") from None


def _name(predicate: Callable[..., object]) -> str:
    code = getattr(predicate, "__code__", None)
    where = f" ({code.co_filename.rsplit('/', 1)[-1]}:{code.co_firstlineno})" if code else ""
    return f"{getattr(predicate, '__qualname__', repr(predicate))}{where}"


# -- PostgreSQL's sessions -------------------------------------------------------------------


class Session(NamedTuple):
    pid: int
    application_name: str
    state: str | None
    query: str


_SESSIONS = """
    SELECT pid, application_name, state, query FROM pg_stat_activity
    WHERE datname = current_database() AND backend_type = 'client backend'
      AND pid <> pg_backend_pid()
      AND (%(names)s::text[] IS NULL OR application_name = ANY(%(names)s))
    ORDER BY pid
"""


def sessions(db_url: str, names: str | Sequence[str] | None = None) -> list[Session]:
    """The client sessions on ``db_url``'s database (this look's own excluded), those with
    an application_name in ``names`` only if given: pg_stat_activity, in one place.

    On a database other tests share, count with deltas (before/after), never absolutely:
    a server stopped by the previous test may still be ending its sessions.
    """
    wanted = [names] if isinstance(names, str) else None if names is None else list(names)
    with psycopg.connect(db_url, autocommit=True) as conn:
        rows = conn.execute(_SESSIONS, {"names": wanted}).fetchall()
    return [Session(*row) for row in rows]


def running_servers(db_url: str) -> int:
    """How many pgchat server processes hold sessions on ``db_url``: one LISTEN each.

    Count a test's own server by this, not by all of SERVER_SESSIONS: the read pools of
    servers still running grow with their load (a presence sweep, two opens at once), so
    their sessions are no fixed baseline; a process's one listener is."""
    return len(sessions(db_url, LISTENER))


def terminate(db_url: str, names: str | Sequence[str] | None = None) -> int:
    """pg_terminate_backend() on those sessions (all but this one's, without ``names``);
    how many were ended."""
    pids = [session.pid for session in sessions(db_url, names)]
    with psycopg.connect(db_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM unnest(%s::int[]) pid",
            (pids,),
        ).fetchone()
    return int(row[0]) if row else 0


# -- logging in ------------------------------------------------------------------------------


async def log_in(client: httpx.AsyncClient, username: str, password: str = PASSWORD) -> None:
    """Log ``client`` in through the real login form, as a browser does: GET the form (it
    sets the CSRF cookie), POST it back; Django answers a redirect when it worked."""
    await client.get("/accounts/login/")
    response = await client.post(
        "/accounts/login/",
        data={
            "username": username,
            "password": password,
            "csrfmiddlewaretoken": client.cookies.get("csrftoken", ""),
        },
    )
    assert response.status_code == 302, f"login of {username} failed: {response.status_code}"


async def session_cookies(base_url: str, username: str) -> dict[str, str]:
    """The cookies of a fresh login (session and CSRF token), for a client of another kind
    (Chromium, a sync httpx.Client) to use as its own."""
    async with httpx.AsyncClient(base_url=base_url, timeout=DEADLINE) as client:
        await log_in(client, username)
        return dict(client.cookies.items())


async def bells_rung(
    db_url: str, statements: Sequence[str], keep: Callable[[dict[str, Any]], bool]
) -> list[str]:
    """Run each statement in its own transaction; the payloads of the bells they rang that
    ``keep`` keeps, heard on a LISTEN of our own (the triggers' own bells), in commit order,
    up to the message bell of the last INSERT among them."""
    inserts = sum(statement.lstrip().upper().startswith("INSERT") for statement in statements)
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as listening:
        await listening.execute("LISTEN chat")
        async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as writer:
            for statement in statements:
                await writer.execute(statement)
        kept: list[str] = []
        messages = 0
        async with asyncio.timeout(DEADLINE):
            async for notify in listening.notifies():
                bell = json.loads(notify.payload)
                if keep(bell):
                    kept.append(notify.payload)
                    messages += bell.get("kind") == "message"
                if messages == inserts:
                    return kept
    raise AssertionError("unreachable: notifies() ends only with its connection")
