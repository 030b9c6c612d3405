"""The benchmark's targets as real server processes on free loopback ports.

- ``pgchat``: ``hypercorn config.asgi:application``, as ``make run`` serves it.
- ``per-connection``: bench/per_connection.py under hypercorn (reference 1).
- ``ceiling``: bench/ceiling.py, raw asyncio (reference 2).
- ``hypercorn-floor``: bench/hypercorn_floor.py, the ceiling's fan-out under hypercorn
  (reference 3).

Every target answers ``GET /healthz`` with 200 once it can stream, and serves
``GET /rooms/<slug>/events``. A server is always stopped, its whole process tree with it,
even when a measurement fails (``async with``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

import psutil

PROJECT_DIR = Path(__file__).resolve().parent.parent
LOG_DIR = PROJECT_DIR / "test-output" / "bench"  # git-ignored; one log per server started
HOST = "127.0.0.1"  # loopback only
# hypercorn's default listen backlog is 100: with hundreds of connects in flight the accept
# queue overflows, and each dropped SYN costs its client a 1 s (then 3 s) retransmit.
BACKLOG = 2048
READY_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 10.0  # hypercorn's graceful timeout (3 s) fits inside
POLL_SECONDS = 0.1  # between readiness probes, within READY_TIMEOUT_SECONDS
TARGETS = ("pgchat", "ceiling", "hypercorn-floor", "per-connection")


class ServerError(RuntimeError):
    """A target server did not start, or did not become ready in time."""


def raise_open_files_limit() -> None:
    """Soft RLIMIT_NOFILE up to the hard limit: every stream is a file descriptor."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def command(target: str, port: int, workers: int) -> list[str]:
    """The argv that serves ``target`` on ``port``; the references run one process."""
    bind = ["--bind", f"{HOST}:{port}", "--backlog", str(BACKLOG), "--graceful-timeout", "3"]
    if target == "pgchat":
        app = ["config.asgi:application", "--workers", str(workers)]
        return [sys.executable, "-m", "hypercorn", *app, *bind]
    if target == "per-connection":
        app = ["bench.per_connection:app", "--workers", "1"]
        return [sys.executable, "-m", "hypercorn", *app, *bind]
    if target == "hypercorn-floor":
        app = ["bench.hypercorn_floor:app", "--workers", "1"]
        return [sys.executable, "-m", "hypercorn", *app, *bind]
    if target == "ceiling":
        where = ["--host", HOST, "--port", str(port), "--backlog", str(BACKLOG)]
        return [sys.executable, "-m", "bench.ceiling", *where]
    raise ValueError(f"unknown target {target!r}; choose from {', '.join(TARGETS)}")


async def http_status(port: int, path: str, timeout: float = 2.0) -> int:
    """The status code of one ``GET``; 0 when nothing answers."""
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(HOST, port)
            try:
                request = f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nConnection: close\r\n\r\n"
                writer.write(request.encode())
                status_line = await reader.readline()
            finally:
                writer.close()
        return int(status_line.split()[1])
    except (OSError, TimeoutError, IndexError, ValueError):
        return 0


class ServerProcess:
    """One target server: ``async with ServerProcess(...) as server:`` starts and stops it."""

    def __init__(self, target: str, database_url: str, *, workers: int = 1) -> None:
        self.target, self.workers = target, workers
        self.port = free_port()
        self.argv = command(target, self.port, workers)
        self.env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "PYTHONUNBUFFERED": "1",
        }
        # As `make run` does: prometheus_client's per-worker files, so /metrics adds up workers.
        self.metrics_dir = LOG_DIR / f"metrics-{self.port}"
        if target == "pgchat":
            self.env["PROMETHEUS_MULTIPROC_DIR"] = str(self.metrics_dir)
        self.process: asyncio.subprocess.Process | None = None
        self.log_path = LOG_DIR / f"{target}-{self.port}.log"

    @property
    def pid(self) -> int:
        assert self.process is not None, "server not started"
        return self.process.pid

    async def __aenter__(self) -> ServerProcess:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        with self._open_log() as log:
            self.process = await asyncio.create_subprocess_exec(
                *self.argv,
                cwd=PROJECT_DIR,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stop() can reap every worker
                preexec_fn=raise_open_files_limit,  # 10,000 streams need 10,000 descriptors
            )
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while await http_status(self.port, "/healthz") != 200:
            if self.process.returncode is not None:
                raise ServerError(
                    f"{self.target} exited at start-up (log: {self.log_path})\n{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise ServerError(
                    f"{self.target} not ready after {READY_TIMEOUT_SECONDS} s "
                    f"(log: {self.log_path})\n{self.log_tail()}"
                )
            await asyncio.sleep(POLL_SECONDS)  # readiness probe, bounded by the deadline

    def _open_log(self) -> BinaryIO:
        """The server's log file (a local append: it does not block the loop noticeably)."""
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        if "PROMETHEUS_MULTIPROC_DIR" in self.env:
            self.metrics_dir.mkdir(exist_ok=True)
        return open(self.log_path, "ab")  # closed by start() once the server has it

    async def stop(self) -> None:
        """SIGTERM, as an operator would stop it; SIGKILL to the whole group if it lingers."""
        process, self.process = self.process, None
        if process is None:
            return
        try:
            root = psutil.Process(process.pid)
            tree = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            tree = []
        # hypercorn's parent coordinates its workers' graceful shutdown, so only it is
        # signalled; a signal to the whole group would kill the workers outright.
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), STOP_TIMEOUT_SECONDS)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)  # stragglers in the group, if any
        for child in tree:  # and any that left the group
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
        await process.wait()
        shutil.rmtree(self.metrics_dir, ignore_errors=True)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
