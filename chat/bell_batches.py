"""Hop 2's intake: the listener connection's notifications, taken in batches, paced when busy.

Upstream:   the LISTEN connection of chat/listener.py (PostgreSQL's NotificationResponses).
Downstream: chat/relay.py, which reads the log once per batch for every room it rang,
            and says so (``read``).
On failure: a batch waiting for its turn holds bells already taken off the connection; if
            the connection fails then, they go with it, like any bell sent while the
            listener is away. The listener's reconnect covers both: it reads the log for
            every room its streams carry and re-checks every stream's access with every
            session resolved again, so what those bells pointed to is found anyway.

Why pace. Each batch costs the listener a read of the log on the database, whatever its
size, and busy rooms send a bell per message: at 2,000 messages a second the listener's
session spent 376 µs of database CPU per message, on the cores the writers commit on. A
batch that comes within ``min_interval`` of the listener's previous read of the log waits
out the rest of that interval, gathering the bells that come meanwhile, so under load the
listener takes at most one batch per interval (81 µs per message, measured at 5 ms); after
a quiet spell, or after bells that needed no read (other workers' rooms, typing), a bell
is taken at once. The cost is at most ``min_interval`` of latency, only under load
(README, "Writers").
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import psycopg


class BellBatches:
    """The payloads of one LISTEN connection's notifications, a batch at a time."""

    def __init__(self, *, min_interval: float, poll_seconds: float) -> None:
        if min_interval < 0:
            raise ValueError(f"min_interval must not be negative, got {min_interval}")
        self.min_interval, self.poll_seconds = min_interval, poll_seconds
        self.paced = 0  # batches that waited for their turn (for tests)
        self.pacing = False  # a batch is waiting for its turn now
        self._next_at = 0.0

    def read(self) -> None:
        """The listener read the log for a batch: the next batch waits its turn."""
        self._next_at = time.monotonic() + self.min_interval

    async def next(self, conn: psycopg.AsyncConnection[Any]) -> list[str]:
        """The next batch, or [] after ``poll_seconds`` of silence.

        notifies() holds the connection's lock, so the log can't be read inside it, and
        leaving it early drops the rest of the packet it has read. With stop_after=1 it
        ends between packets, having yielded the whole packet; psycopg (>= 3.2.4) keeps
        what arrives while no notifies() runs, and yields that first next time."""
        batch = [n.payload async for n in conn.notifies(timeout=self.poll_seconds, stop_after=1)]
        if not batch:
            return batch
        wait = self._next_at - time.monotonic()
        if wait > 0:  # busy: one read of the log will serve what comes meanwhile too
            self.paced += 1
            self.pacing = True
            try:
                await asyncio.sleep(wait)
            finally:
                self.pacing = False
            # What came meanwhile: psycopg's backlog if any, else one look at the socket.
            batch += [n.payload async for n in conn.notifies(timeout=0)]
        return batch
