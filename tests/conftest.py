"""Fixtures: a real PostgreSQL (pytest-django's test database on the embedded cluster, or on
DATABASE_URL), a real hypercorn subprocess serving it, real SSE clients and real psql."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.db import connection
from pytest_django import DjangoDbBlocker

from bench.sse_client import SSEClient
from chat import db
from chat.models import Room
from devtools.embedded_pg import EmbeddedPostgres

from .helpers import DEADLINE, PASSWORD, running_servers, terminate, unique, wait_until
from .servers import PROJECT_DIR, Browserless, Server, database_url, wait_for_server_backends_gone

# Scratch clusters live inside the project, not /tmp: as root the server runs as the
# service user, which must be able to reach them.
SCRATCH = PROJECT_DIR / ".pgchat" / "test-clusters"


def pytest_configure(config: pytest.Config) -> None:
    # The default hasher takes ~0.5 s per hash by design; the suite creates many users.
    # Test servers get CHAT_FAST_PASSWORD_HASHER=1 (tests/servers.py), so both agree.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(scope="session")
def django_db_setup(
    django_test_environment: None, django_db_blocker: DjangoDbBlocker
) -> Iterator[None]:
    """Create and migrate the test database (``test_<name>``) once for the session.

    pytest-django's own version only sets up databases that ``django_db``-marked tests ask
    for; ours are unmarked (see _live_database), so the default database is named here.
    """
    from django.test.utils import setup_databases, teardown_databases

    # One database per run (test_pgchat_<pid>), so two runs on one cluster can't collide.
    base = connection.settings_dict["NAME"]
    connection.settings_dict["TEST"]["NAME"] = f"test_{base}_{os.getpid()}"
    with django_db_blocker.unblock():
        _drop_databases_of_dead_runs(f"test_{base}_")
        # [arg-type]: django-stubs wants a Mapping, but Django only iterates the names and
        # tests membership; pytest-django passes a set too.
        config = setup_databases(
            verbosity=0,
            interactive=False,
            aliases={"default"},  # type: ignore[arg-type]
        )
    yield
    with django_db_blocker.unblock():
        # Async tests reach the ORM through sync_to_async's worker thread, whose connection
        # only that thread could close; end every other session so DROP DATABASE works.
        terminate(database_url())
        connection.close()
        teardown_databases(config, verbosity=0)


def _drop_databases_of_dead_runs(prefix: str) -> None:
    """A run killed before its teardown leaves its database behind: drop those."""
    with connection._nodb_cursor() as cursor:
        cursor.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", [prefix + "%"])
        for (name,) in cursor.fetchall():
            pid = name.removeprefix(prefix)
            if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
                cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session", autouse=True)
def _live_database(django_db_setup: None, django_db_blocker: DjangoDbBlocker) -> Iterator[None]:
    """Every write commits and stays: no wrapping transaction, no flush between tests.

    The tests talk to a real server process sharing the database. NOTIFY needs COMMIT, and a
    flush would also empty django_content_type under the server's cached ids. Tests isolate
    themselves instead: each uses fresh rooms and uniquely named users.
    """
    with django_db_blocker.unblock():
        yield


@pytest.fixture(scope="session")
def db_url(django_db_setup: None, django_db_blocker: DjangoDbBlocker) -> str:
    """The test database's conninfo, for the server subprocess and psql."""
    with django_db_blocker.unblock():
        return database_url()


@pytest.fixture(scope="session")
def server(db_url: str) -> Iterator[Server]:
    """One hypercorn process for the session; fault tests start their own."""
    srv = Server(db_url).start()
    yield srv
    srv.stop()
    wait_for_server_backends_gone(db_url)  # so pytest-django can DROP the test database


@pytest.fixture(scope="module")
def scratch_cluster() -> Iterator[EmbeddedPostgres]:
    """A second, separately started PostgreSQL (not started yet), removed afterwards."""
    state = SCRATCH / uuid.uuid4().hex[:8]
    cluster = EmbeddedPostgres(state)
    yield cluster
    cluster.stop()
    shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(scope="module")
def restartable(scratch_cluster: EmbeddedPostgres) -> EmbeddedPostgres:
    """A cluster of its own to stop and start, migrated."""
    scratch_cluster.ensure_running()
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--no-input", "-v0"],
        cwd=PROJECT_DIR,
        env={**os.environ, "DATABASE_URL": scratch_cluster.url()},
        check=True,
        timeout=DEADLINE * 4,  # a whole process: start, connect, migrate every app
    )
    return scratch_cluster


@pytest.fixture
def make_server(db_url: str) -> Iterator[Callable[..., Server]]:
    """Start extra servers with their own settings (env); all stopped afterwards."""
    started: list[tuple[Server, int]] = []

    def make(url: str | None = None, *, workers: int = 1, **env: str) -> Server:
        before = running_servers(url or db_url)
        server = Server(url or db_url, workers=workers, env=env).start()
        started.append((server, before))
        return server

    yield make
    for server, before in reversed(started):
        server.stop()
        wait_for_server_backends_gone(server.db_url, running=before)


@pytest.fixture
def listeners_back(db_url: str) -> Iterator[None]:
    """For tests that kill every server's listener (tests/servers.py kill_listeners): the
    servers that ran before the test (the session's, a module's) are listening again when
    it ends, so the next test's count of running servers starts from all of them."""
    before = running_servers(db_url)
    yield
    wait_until(lambda: running_servers(db_url) >= before, what="the listeners are back")


@pytest.fixture
async def read_pool(db_url: str) -> AsyncIterator[None]:
    """chat/db.py's read pool on the test database, for code under test in this process
    (a server opens its own from settings; here settings name the development database)."""
    pool = await db.open_pool(db_url)
    assert pool.conninfo == db_url, "a pool from an earlier test was left open"
    yield
    await db.close_pool()


@pytest.fixture
def room() -> Room:
    """A fresh public room per test, so no test sees another's events."""
    return Room.objects.create(slug=unique("room"), title="Test")


@pytest.fixture
def make_user() -> Callable[..., User]:
    def make(prefix: str, *, staff: bool = False) -> User:
        user = get_user_model().objects.create_user(unique(prefix), password=PASSWORD)
        if staff:
            user.is_staff = user.is_superuser = True
            user.save()
        assert isinstance(user, User)
        return user

    return make


@pytest.fixture
async def room_stream(server: Server, room: Room) -> AsyncIterator[SSEClient]:
    """A real SSE connection to the test room, opened 'from now'."""
    client = await server.stream(room.slug)
    yield client
    await client.aclose()


@pytest.fixture
def alice_user(make_user: Callable[..., User]) -> User:
    return make_user("alice")


@pytest.fixture
async def alice(server: Server, alice_user: User) -> AsyncIterator[Browserless]:
    async with Browserless(server.url) as client:
        await client.login(alice_user.username)
        yield client
