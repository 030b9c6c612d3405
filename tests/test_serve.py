"""``make run``'s launcher (devtools/serve.py): set-up mistakes in one line, then hypercorn.

Real processes on real loopback ports: the launcher as ``make run`` starts it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .helpers import POLL_SECONDS, running_servers, wait_until
from .servers import (
    PROJECT_DIR,
    free_port,
    wait_for_server_backends_gone,
)

DEADLINE = 30.0  # seconds for the launcher to answer or a server to come up


def launcher(host: str, port: int, *args: str) -> list[str]:
    return [sys.executable, "-m", "devtools.serve", host, str(port), *args]


def run_launcher(argv: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    """Run it to its end: a refusal must end the process, not start a server."""
    environ = {k: v for k, v in os.environ.items() if k != "ALLOWED_HOSTS"}
    return subprocess.run(
        argv,
        cwd=PROJECT_DIR,
        env={**environ, **env},
        capture_output=True,
        text=True,
        timeout=DEADLINE,  # a server that started anyway would hang here: fail, don't hang
        check=False,
    )


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A loopback port held by another listener, opened as hypercorn opens its own when it
    runs several workers (SO_REUSEPORT), so a second such server could share it silently."""
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


@pytest.mark.parametrize("workers", [1, 2])
def test_busy_port_is_refused_in_one_line(busy_port: int, workers: int) -> None:
    result = run_launcher(launcher("127.0.0.1", busy_port, "--workers", str(workers)))

    assert result.returncode == 1, result
    assert result.stdout == ""  # not even "serving on"
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr  # no traceback
    assert f"port {busy_port} on 127.0.0.1 is already in use" in lines[0]
    assert f"PORT={busy_port + 1} make run" in lines[0]  # says what to do instead


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "[::]"])
def test_all_interfaces_without_allowed_hosts_says_what_to_set(host: str) -> None:
    port = free_port()
    result = run_launcher(launcher(host, port))

    assert result.returncode == 2, result
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert f"HOST={host} lets other machines connect" in lines[0]
    assert f"ALLOWED_HOSTS={socket.gethostname()}," in lines[0]  # an example to copy
    with socket.socket() as probe:  # and it left the port alone
        probe.bind(("127.0.0.1", port))


def test_empty_allowed_hosts_counts_as_unset() -> None:
    result = run_launcher(launcher("0.0.0.0", free_port()), ALLOWED_HOSTS=" ")
    assert result.returncode == 2, result
    assert "ALLOWED_HOSTS=" in result.stderr


def test_serves_on_the_socket_it_checked(db_url: str, tmp_path: Path) -> None:
    """HOST=0.0.0.0 with ALLOWED_HOSTS, two workers: hypercorn serves the launcher's socket,
    and Django answers a page (not DisallowedHost) for an allowed name."""
    port = free_port()
    before = running_servers(db_url)
    env = {
        **os.environ,
        "DATABASE_URL": db_url,
        "ALLOWED_HOSTS": "127.0.0.1",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
        "PYTHONUNBUFFERED": "1",
    }
    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            launcher("0.0.0.0", port, "--workers", "2", "--", "--graceful-timeout", "3"),
            cwd=PROJECT_DIR,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        status = 0
        deadline = time.monotonic() + DEADLINE
        while status != 200:
            assert process.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, f"never served: {log_path.read_text()}"
            try:
                status = httpx.get(f"http://127.0.0.1:{port}/rooms/", timeout=5).status_code
            except httpx.TransportError:
                time.sleep(POLL_SECONDS)  # not listening yet
        # One worker answering says nothing of the other: on a loaded machine it may still be
        # starting. Both announce themselves before the server is stopped.
        running = f"Running on http://0.0.0.0:{port}"
        wait_until(lambda: log_path.read_text().count(running) == 2, what="both workers up")
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(DEADLINE)
        wait_for_server_backends_gone(db_url, running=before)
    output = log_path.read_text()
    assert output.startswith(f"pgchat: serving on http://0.0.0.0:{port}/  (2 worker(s);"), output
    assert output.count(running) == 2  # both workers, one socket
