"""What the benchmark measures besides latency: a server's memory and CPU, and its sessions
in PostgreSQL.

Memory and CPU are summed over the server's whole process tree (psutil): hypercorn runs a
parent and one process per worker, and a figure for one of them would flatter it.
"""

from __future__ import annotations

import contextlib
from typing import Any

import psutil
import psycopg

HARNESS_APPLICATION = "pgchat-bench"  # the prefix of every session the harness opens itself
MEGABYTE = 1024 * 1024


class ProcessTree:
    """A server process and its descendants, read again at each call (workers may come late)."""

    def __init__(self, pid: int) -> None:
        self.root = psutil.Process(pid)

    def _processes(self) -> list[psutil.Process]:
        try:
            return [self.root, *self.root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def rss_bytes(self) -> int:
        total = 0
        for process in self._processes():
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                total += process.memory_info().rss
        return total

    def threads(self) -> int:
        """OS threads over the tree: an asyncio server needs a few, not one per stream."""
        total = 0
        for process in self._processes():
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                total += process.num_threads()
        return total

    def cpu_seconds(self) -> dict[int, float]:
        """User + system CPU per pid, so a window's usage is a difference per process."""
        usage = {}
        for process in self._processes():
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                times = process.cpu_times()
                usage[process.pid] = times.user + times.system
        return usage


def cpu_used(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds spent between two ``cpu_seconds()`` readings (a new process counts whole)."""
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


class Backends:
    """Counts a server's client sessions in the benchmark's database.

    A session is the server's when it is new since ``forget_existing()`` (taken before the
    server starts) and not one of the harness's own (writer, this sampler). Sessions of
    anyone else who connects to the same database mid-run would be counted too: run the
    benchmark on a quiet database.
    """

    _COUNT = """
        SELECT count(*) FROM pg_stat_activity
        WHERE datname = current_database() AND backend_type = 'client backend'
          AND application_name NOT LIKE %s AND NOT (pid = ANY(%s))
    """

    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self.conn = conn
        self._existing: list[int] = []

    @classmethod
    async def connect(cls, conninfo: str) -> Backends:
        conn = await psycopg.AsyncConnection.connect(
            conninfo,
            autocommit=True,  # a sampler idle in a transaction would pin the notify queue
            connect_timeout=10,
            application_name=f"{HARNESS_APPLICATION}-sampler",
        )
        return cls(conn)

    async def forget_existing(self) -> None:
        """Remember who is connected now, so only sessions opened later are counted."""
        cur = await self.conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
        )
        self._existing = [pid for (pid,) in await cur.fetchall()]

    async def count(self) -> int:
        cur = await self.conn.execute(self._COUNT, (f"{HARNESS_APPLICATION}%", self._existing))
        row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def close(self) -> None:
        await self.conn.close()
