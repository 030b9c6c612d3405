"""The embedded PostgreSQL: shared by many processes, recovered after crashes, clean stops,
unprivileged when we are root, and out of the way when DATABASE_URL is set."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest

from devtools.embedded_pg import PORT_RANGE, SERVICE_USER, EmbeddedPostgres

from .conftest import SCRATCH
from .helpers import DEADLINE
from .servers import (
    PROJECT_DIR,
    Server,
    collect,
    insert_sql,
    psql,
    wait_for_server_backends_gone,
)


@pytest.fixture(scope="module")
def cluster(scratch_cluster: EmbeddedPostgres) -> EmbeddedPostgres:
    return scratch_cluster


def start_in_subprocess(state: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "devtools.embedded_pg", "url"],
        cwd=PROJECT_DIR,
        env={**os.environ, "CHAT_EMBEDDED_PG_DIR": str(state)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def postmaster_pid(pg: EmbeddedPostgres) -> int:
    return int((pg.data_dir / "postmaster.pid").read_text().split()[0])


def test_concurrent_first_starts_share_one_cluster(cluster: EmbeddedPostgres) -> None:
    starters = [start_in_subprocess(cluster.state_dir) for _ in range(4)]
    outputs = [p.communicate(timeout=DEADLINE * 4) for p in starters]  # initdb, then start
    assert [p.returncode for p in starters] == [0, 0, 0, 0], outputs
    assert len({out.strip() for out, _ in outputs}) == 1  # one URL: one cluster, one port
    assert cluster.is_running()
    log = cluster.log_file.read_text()
    assert log.count("database system is ready to accept connections") == 1


def test_port_is_outside_the_ephemeral_range(cluster: EmbeddedPostgres) -> None:
    cluster.ensure_running()
    assert PORT_RANGE[0] <= cluster.port() < PORT_RANGE[1] < 32768


def test_tcp_needs_the_password_and_the_socket_is_in_the_project(
    cluster: EmbeddedPostgres,
) -> None:
    cluster.ensure_running()
    with psycopg.connect(cluster.tcp_url()) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    wrong = f"postgresql://postgres:wrong@127.0.0.1:{cluster.port()}/pgchat"
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(wrong, connect_timeout=5)
    assert str(cluster.socket_dir).startswith(str(PROJECT_DIR))


@pytest.mark.skipif(os.geteuid() != 0, reason="only root hands the server to a service user")
def test_as_root_the_server_runs_as_an_unprivileged_user(cluster: EmbeddedPostgres) -> None:
    cluster.ensure_running()
    status = Path(f"/proc/{postmaster_pid(cluster)}/status").read_text()
    uid = int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])
    import pwd

    assert pwd.getpwuid(uid).pw_name == SERVICE_USER
    assert uid != 0


def test_killed_server_is_recovered_on_next_use(cluster: EmbeddedPostgres) -> None:
    cluster.ensure_running()
    os.kill(postmaster_pid(cluster), signal.SIGKILL)  # a crash: stale postmaster.pid left
    cluster.ensure_running()
    assert cluster.is_running()


def test_pid_file_of_a_foreign_process_is_recovered(cluster: EmbeddedPostgres) -> None:
    cluster.stop()
    pid_file = cluster.data_dir / "postmaster.pid"
    sleeper = subprocess.Popen(["sleep", "60"])  # a live pid that is not postgres
    try:
        pid_file.write_text(f"{sleeper.pid}\n{cluster.data_dir}\n")
        if os.geteuid() == 0:
            shutil.chown(pid_file, SERVICE_USER, SERVICE_USER)
        cluster.ensure_running()
        assert cluster.is_running()
    finally:
        sleeper.kill()


def test_stop_is_clean_and_idempotent(cluster: EmbeddedPostgres) -> None:
    cluster.ensure_running()
    cluster.stop()
    assert not cluster.is_running()
    assert not (cluster.data_dir / "postmaster.pid").exists()
    cluster.stop()  # already stopped: no error
    cluster.ensure_running()  # and it starts again
    assert cluster.is_running()


def test_with_database_url_nothing_embedded_starts(cluster: EmbeddedPostgres) -> None:
    cluster.ensure_running()
    untouched = SCRATCH / f"never-{uuid.uuid4().hex[:8]}"
    result = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--no-input", "-v0"],
        cwd=PROJECT_DIR,
        env={**os.environ, "DATABASE_URL": cluster.url(), "CHAT_EMBEDDED_PG_DIR": str(untouched)},
        capture_output=True,
        text=True,
        timeout=DEADLINE * 4,  # a whole process: start, connect, migrate every app
    )
    assert result.returncode == 0, result.stderr
    assert not untouched.exists()


async def test_full_path_on_a_separately_started_server(cluster: EmbeddedPostgres) -> None:
    """DATABASE_URL pointing at another server: migrate, serve, stream, psql insert."""
    cluster.ensure_running()
    url = cluster.url()
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--no-input", "-v0"],
        cwd=PROJECT_DIR,
        env={**os.environ, "DATABASE_URL": url},
        check=True,
        timeout=DEADLINE * 4,  # a whole process: start, connect, migrate every app
    )
    server = await asyncio.to_thread(Server(url).start)
    try:
        stream = await server.stream("lobby")
        await psql(
            url,
            insert_sql("lobby", "other db"),
        )
        [event] = await collect(stream, 1)
        assert event.json()["text"] == "other db"
        await stream.aclose()
    finally:
        server.stop()
        wait_for_server_backends_gone(url)


def test_dbshell_works_with_the_wheels_psql_when_the_machine_has_none(
    db_url: str, tmp_path: Path
) -> None:
    """This machine happens to have Debian's psql; a user's may not. With a PATH that has
    no psql at all, `manage.py dbshell` still finds the one the server wheel ships."""
    result = subprocess.run(
        [sys.executable, "manage.py", "dbshell", "--", "-Atc", "SELECT 6 * 7"],
        cwd=PROJECT_DIR,
        env={**os.environ, "PATH": str(tmp_path), "DATABASE_URL": db_url},
        capture_output=True,
        text=True,
        timeout=DEADLINE * 2,  # a whole process: start Django, run psql
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "42"


def test_make_psql_opens_the_projects_database() -> None:
    result = subprocess.run(
        ["make", "-s", "psql"],
        cwd=PROJECT_DIR,
        input="SELECT 'on ' || current_database();\n",  # not migrated in a fresh clone
        capture_output=True,
        text=True,
        timeout=DEADLINE * 4,  # make: its checks, start the database, psql
        env={k: v for k, v in os.environ.items() if k != "DATABASE_URL"},
    )
    assert result.returncode == 0, result.stderr
    assert "on pgchat" in result.stdout
