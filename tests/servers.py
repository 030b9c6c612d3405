"""Real processes for the tests: a hypercorn server, psql, and logged-in HTTP clients.

Waiting, PostgreSQL's sessions and logging in are tests/helpers.py's.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
from django.db import connection
from psycopg.conninfo import make_conninfo

from bench.sse_client import Event, SSEClient
from devtools.embedded_pg import binaries_dir

from .helpers import (
    DEADLINE,
    LISTENER,
    PASSWORD,
    SERVER_SESSIONS,
    log_in,
    sessions,
    terminate,
    wait_until,
)

PROJECT_DIR = Path(__file__).resolve().parent.parent
OUTPUT_DIR = PROJECT_DIR / "test-output"  # git-ignored: server logs, screenshots
# The suite posts, logs in (wrongly too) and signs up from 127.0.0.1 far faster than a person,
# across many tests: test servers get limits it never reaches, and tests/test_ratelimit.py
# starts servers with tight ones (env=...). A lockout shared by the whole run would fail
# unrelated tests in whatever order they happen to run.
GENEROUS_LIMITS = {
    "CHAT_RATELIMIT_MESSAGES": "100000/60",
    "CHAT_RATELIMIT_ROOMS": "100000/60",
    "CHAT_RATELIMIT_SIGNUPS": "100000/60",
    "CHAT_RATELIMIT_SEARCHES": "100000/60",
    "CHAT_RATELIMIT_WRITES": "100000/60",
    "CHAT_LOGIN_FAILURE_LIMIT": "100000/60",
}


def database_url(dbname: str | None = None) -> str:
    """libpq conninfo of the database Django is using now (the test database in a test)."""
    s = connection.settings_dict
    params: dict[str, Any] = {
        "dbname": dbname or s["NAME"],
        "user": s["USER"] or None,
        "password": s["PASSWORD"] or None,
        "host": s["HOST"] or None,
        "port": str(s["PORT"]) if s["PORT"] else None,
        **{k: v for k, v in s["OPTIONS"].items() if isinstance(v, str | int)},
    }
    return make_conninfo("", **{k: v for k, v in params.items() if v is not None})


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Server:
    """``hypercorn config.asgi:application`` in a subprocess on a free loopback port."""

    def __init__(self, db_url: str, *, workers: int = 1, env: dict[str, str] | None = None):
        self.db_url, self.workers = db_url, workers
        self.port = free_port()
        self.host = "127.0.0.1"
        self.extra_env = env or {}
        self.process: subprocess.Popen[bytes] | None = None
        OUTPUT_DIR.mkdir(exist_ok=True)
        self.log_path = OUTPUT_DIR / f"hypercorn-{self.port}.log"
        # A new server's log starts empty: ports come round again within a run (and across
        # runs), and tests read the whole log. A restart of this one appends (start()).
        self.log_path.write_bytes(b"")

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> Server:
        self.start_without_waiting()
        self.wait_healthy()
        return self

    def start_without_waiting(self) -> None:
        """Spawn the server; for tests of a server that is not meant to become healthy."""
        metrics_dir = OUTPUT_DIR / f"metrics-{self.port}"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
        env = {
            **os.environ,
            "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),  # as `make run` does
            "DATABASE_URL": self.db_url,
            "CHAT_SSE_HEARTBEAT": "1",
            "CHAT_FAST_PASSWORD_HASHER": "1",  # the test process hashes the same way
            "PYTHONUNBUFFERED": "1",
            **GENEROUS_LIMITS,
            **self.extra_env,
        }
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable, "-m", "hypercorn", "config.asgi:application",
                    "--bind", f"{self.host}:{self.port}", "--workers", str(self.workers),
                    "--graceful-timeout", "3",
                ],
                cwd=PROJECT_DIR,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # signals go to hypercorn's worker processes too
            )  # fmt: skip

    def health(self) -> tuple[int, dict[str, Any]]:
        try:
            response = httpx.get(f"{self.url}/healthz", timeout=DEADLINE)
            return response.status_code, response.json()
        except (httpx.HTTPError, ValueError):
            return 0, {}

    def wait_healthy(self) -> dict[str, Any]:
        return self.wait_health(200)

    def wait_health(self, status: int) -> dict[str, Any]:
        """Poll /healthz until it answers ``status`` (a server that is starting answers
        nothing yet); its body."""

        def answered() -> dict[str, Any] | None:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_tail()}")
            code, body = self.health()
            return body if code == status else None

        try:
            return wait_until(answered, what=f"/healthz answers {status}")
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}\n{self.log_tail()}") from None

    def metrics(self) -> dict[str, float]:
        """/metrics parsed as Prometheus text (it raises if malformed): sample
        ``name{label=value,...}`` -> value, every worker's added up."""
        from prometheus_client.parser import text_string_to_metric_families

        response = httpx.get(f"{self.url}/metrics", timeout=DEADLINE)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        samples = {}
        for family in text_string_to_metric_families(response.text):
            for sample in family.samples:
                labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
        return samples

    def room_subscribers(self, room: str) -> int:
        """Open streams of one room, all workers: a count no other test's streams touch
        (each test has rooms of its own), unlike /healthz's process-wide ``subscribers``."""
        return int(self.metrics().get(f"pgchat_subscribers{{room={room}}}", 0))

    async def health_async(self) -> tuple[int, dict[str, Any]]:
        """``health()`` off the event loop (streams are being read meanwhile)."""
        return await asyncio.to_thread(self.health)

    async def wait_health_async(self, status: int) -> dict[str, Any]:
        return await asyncio.to_thread(self.wait_health, status)

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            # hypercorn's parent coordinates its workers' graceful shutdown (lifespan
            # included); signalling the whole group would kill the workers outright.
            if sig == signal.SIGKILL:
                os.killpg(self.process.pid, sig)
            else:
                self.process.send_signal(sig)
            try:
                self.process.wait(DEADLINE)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(DEADLINE)
        code = self.process.returncode
        self.process = None
        return code

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    async def stream(self, room: str, query: str = "", **kwargs: Any) -> SSEClient:
        """Open the room's event stream (``query``: e.g. "?last_event_id=7")."""
        kwargs.setdefault("timeout", DEADLINE)  # a loaded machine answers slowly, not never
        path = f"/rooms/{room}/events{query}"
        return await SSEClient.open(self.host, self.port, path, **kwargs)


def insert_sql(room: str, text: str, author: str = "ops") -> str:
    """The INSERT a person types into psql: only room, author and text."""

    def quote(value: str) -> str:
        return "'" + value.replace("'", "''") + "'"

    return (
        "INSERT INTO chat_chatmessage (room_id, author, text) "
        f"VALUES ({quote(room)}, {quote(author)}, {quote(text)})"
    )


def psql_argv(db_url: str, *sql: str) -> list[str]:
    """A real psql (the one the server wheel ships) running each statement."""
    argv = [str(binaries_dir() / "psql"), db_url, "-X", "-q", "-v", "ON_ERROR_STOP=1"]
    for statement in sql:
        argv += ["-c", statement]
    return argv


async def psql(db_url: str, *sql: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run psql without blocking the event loop (streams are being read meanwhile)."""
    argv = psql_argv(db_url, *sql)
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL
    )
    out, err = await proc.communicate()
    result = subprocess.CompletedProcess(argv, proc.returncode or 0, out.decode(), err.decode())
    if check and result.returncode != 0:
        raise AssertionError(f"psql failed: {result.stderr}")
    return result


class Browserless:
    """An httpx client that logs in like a browser: cookies, CSRF token, form post."""

    def __init__(self, base_url: str) -> None:
        self.client = httpx.AsyncClient(base_url=base_url, timeout=DEADLINE, follow_redirects=False)

    async def __aenter__(self) -> Browserless:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.aclose()

    @property
    def csrf_token(self) -> str:
        return self.client.cookies.get("csrftoken") or ""

    async def login(self, username: str, password: str = PASSWORD) -> None:
        await log_in(self.client, username, password)

    async def get_token(self) -> str:
        """Visit a page once, as a browser would, so the CSRF cookie is set."""
        if not self.csrf_token:
            await self.client.get("/accounts/login/")  # a page with a form sets the cookie
        return self.csrf_token

    async def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        headers = {"X-CSRFToken": await self.get_token(), **kwargs.pop("headers", {})}
        return await self.client.request(method, url, headers=headers, **kwargs)


async def admin_save_message(staff: Browserless, url: str, **fields: str) -> None:
    """Fill and submit the Django admin's message form at ``url`` (add or change)."""
    form = await staff.client.get(url)
    assert form.status_code == 200, form.status_code
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text)
    assert match, "no CSRF token in the admin form"
    data = {"sender": "", "deleted_at_0": "", "deleted_at_1": "", **fields}
    response = await staff.client.post(url, data={"csrfmiddlewaretoken": match.group(1), **data})
    assert response.status_code == 302, response.text[:2000]  # saved: redirected to the list


async def collect(client: SSEClient, count: int, deadline: float = DEADLINE) -> list[Event]:
    """The next ``count`` events, within one deadline for all of them."""
    events: list[Event] = []
    async with asyncio.timeout(deadline):
        while len(events) < count:
            events.append(await client.next_event())
    return events


# Events that come on their own clock, not the test's: a worker flushes presence once a
# second (chat/presence.py), so a signed-in stream's own arrival lands anywhere among the
# events that follow; and a join written from psql rings room.joined and room.read, which
# may reach a /events stream that opened after the join's commit but before its bells.
ON_THEIR_OWN_CLOCK = ("presence.", "room.")


async def until_text(
    stream: SSEClient, text: str, room: str, *, skip: tuple[str, ...] = ()
) -> list[Event]:
    """The stream's events of ``room`` up to the message.created of ``text`` (the marker
    that proves nothing else of that room came before it), but for those whose name starts
    with one of ``skip`` (ON_THEIR_OWN_CLOCK, for tests about something else)."""
    seen: list[Event] = []
    async with asyncio.timeout(DEADLINE):
        while True:
            event = await stream.next_event()
            if event.json().get("room") != room:
                continue
            if event.name.startswith(skip):
                continue
            seen.append(event)
            if event.name == "message.created" and event.json()["text"] == text:
                return seen


async def conversation_until(stream: SSEClient, text: str, room: str) -> list[Event]:
    """``until_text`` but for the events that come on their own clock (ON_THEIR_OWN_CLOCK):
    for tests of typing, reactions and the like on streams of signed-in users."""
    return await until_text(stream, text, room, skip=ON_THEIR_OWN_CLOCK)


def wait_for_server_backends_gone(db_url: str, *, running: int = 0) -> None:
    """Wait until stopped servers' sessions are gone (backends exit asynchronously), but
    for those of the ``running`` servers (``running_servers()`` before this one started).

    With none running, every server session must go. With some, a stopped server is gone
    when its processes' listeners are: a process that has exited holds no socket, and
    the others' read pools may have grown meanwhile, so they cannot be counted on."""
    import psycopg

    try:
        psycopg.connect(db_url, connect_timeout=5).close()
    except psycopg.OperationalError:
        return  # the database itself is down: no session of anyone's is left
    names = SERVER_SESSIONS if running == 0 else LISTENER
    try:
        wait_until(lambda: len(sessions(db_url, names)) <= running)
    except TimeoutError:
        raise TimeoutError(
            f"the server's database sessions outlived it: {sessions(db_url, SERVER_SESSIONS)}"
        ) from None


async def logged_seqs(room: str) -> list[int]:
    """The room's change log, in order: exactly what each subscriber must receive.
    (Cursors come from one sequence for all rooms, so a room's are increasing, not 1, 2, 3.)"""
    from chat.models import MessageChange

    changes = MessageChange.objects.filter(room_id=room).order_by("seq")
    return [seq async for seq in changes.values_list("seq", flat=True)]


async def kill_listeners(db_url: str) -> int:
    """pg_terminate_backend() on every pgchat LISTEN connection to this test's database."""
    return await asyncio.to_thread(terminate, db_url, LISTENER)


def run_bench(db_url: str, *argv: str, timeout: float = DEADLINE * 6) -> Any:
    """``python -m <argv>`` (a benchmark module) in the project against ``db_url``; fails the
    test unless it exits 0; returns the JSON of its last line of output, every benchmark's
    summary. The timeout makes a hung run fail its test instead of the whole suite."""
    completed = subprocess.run(
        [sys.executable, "-m", *argv],
        cwd=PROJECT_DIR,
        env={**os.environ, "DATABASE_URL": db_url},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr[-4000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])
