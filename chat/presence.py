"""Presence, this process's share: which (room, user) pairs its open streams carry, written
to PostgreSQL in batches, kept alive by a heartbeat, and swept when another process dies.

Upstream:   chat/fanout.py calls ``enter`` / ``leave`` as streams open and close (a room
            stream of a signed-in user; each room an /events stream carries).
Downstream: the UNLOGGED tables ``chat_presence_worker`` (this process's heartbeat) and
            ``chat_presence`` (its pairs), migration 0012, whose trigger rings a presence
            bell per room changed; every listener turns those into ``presence.joined`` /
            ``presence.left`` for its streams (chat/conversation_feeds.py).
On failure: a flush that fails is retried on the next tick with everything not yet
            written; a process that dies leaves rows that stop counting when its heartbeat
            expires (readers join live workers only) and are deleted by the next sweep of
            any live worker, which rings the bells for them. If this process's own row was
            swept (it stalled past the expiry), its next heartbeat sees it inserted anew and
            writes every pair again.

The cost does not grow with the number of streams: a row changes only when this process's
count of streams for a (room, user) goes 0 -> 1 or 1 -> 0, and changes are written at most
once per ``flush_seconds`` in one transaction (two statements); while the process holds any
pair, one heartbeat statement per ``expiry / 3`` keeps them alive; a process holding none
writes nothing. bench/presence_cost.py measures it at 10,000 streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from typing import Any

import psycopg

from . import db

logger = logging.getLogger("pgchat.presence")

Pair = tuple[str, int]  # (room, user id)

_HEARTBEAT = """
    INSERT INTO chat_presence_worker AS w (worker, expires_at)
    VALUES (%s, clock_timestamp() + make_interval(secs => %s))
    ON CONFLICT (worker) DO UPDATE SET expires_at = excluded.expires_at
    RETURNING (xmax = 0) AS inserted
"""
_WRITE = """
    WITH gone AS (
        DELETE FROM chat_presence p
        USING unnest(%(drop_rooms)s::text[], %(drop_users)s::bigint[]) AS d(room, usr)
        WHERE p.worker = %(worker)s AND p.room_id = d.room AND p.user_id = d.usr
    )
    INSERT INTO chat_presence (worker, room_id, user_id)
    SELECT %(worker)s, a.room, a.usr
    FROM unnest(%(add_rooms)s::text[], %(add_users)s::bigint[]) AS a(room, usr)
    ON CONFLICT DO NOTHING
"""
_SWEEP = "DELETE FROM chat_presence_worker WHERE expires_at < clock_timestamp()"
_RESIGN = "DELETE FROM chat_presence_worker WHERE worker = %s"
# Who is online in a room: users with a row of a worker whose heartbeat has not expired.
ONLINE = """
    SELECT DISTINCT p.room_id, u.username, u.id
    FROM chat_presence p
    JOIN chat_presence_worker w ON w.worker = p.worker AND w.expires_at > clock_timestamp()
    JOIN auth_user u ON u.id = p.user_id AND u.is_active
    WHERE p.room_id = ANY(%s::text[])
    ORDER BY 1, 2
"""


def worker_name() -> str:
    """This process, unique across hosts and restarts (a pid is reused; a uuid is not)."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


async def online(conn: psycopg.AsyncConnection[Any], rooms: list[str]) -> dict[str, dict[str, int]]:
    """Who is online in each of ``rooms``, across every worker and host: username -> id."""
    found: dict[str, dict[str, int]] = {room: {} for room in rooms}
    cur = await conn.execute(ONLINE, (rooms,))
    for room, username, user_id in await cur.fetchall():
        found[room][username] = user_id
    return found


class Presence:
    """This process's (room, user) stream counts and their rows in PostgreSQL."""

    def __init__(self, *, expiry_seconds: float = 30.0, flush_seconds: float = 1.0) -> None:
        if expiry_seconds <= 0 or flush_seconds <= 0:
            raise ValueError(
                f"presence needs positive times, got {expiry_seconds}, {flush_seconds}"
            )
        self.worker = worker_name()
        self.expiry_seconds = expiry_seconds
        self.heartbeat_seconds = expiry_seconds / 3  # two missed beats still keep it alive
        self.flush_seconds = min(flush_seconds, self.heartbeat_seconds)
        self._counts: dict[Pair, int] = {}  # streams of this process per pair
        self._written: set[Pair] = set()  # pairs with a row in chat_presence
        self._dirty: set[Pair] = set()  # pairs whose count crossed zero since the last flush
        self._last_beat = 0.0  # monotonic time of the last heartbeat written
        self._last_sweep = 0.0
        self._task: asyncio.Task[None] | None = None
        self.statements = 0  # writing statements run, for bench/presence_cost.py
        self.rows = 0  # rows they inserted, updated or deleted

    # -- counting (from the event loop, on every stream open and close) -------------------

    def enter(self, room: str, user: int) -> None:
        pair = (room, user)
        count = self._counts.get(pair, 0) + 1
        self._counts[pair] = count
        if count == 1:
            self._dirty.add(pair)

    def leave(self, room: str, user: int) -> None:
        pair = (room, user)
        count = self._counts.get(pair, 0) - 1
        if count > 0:
            self._counts[pair] = count
            return
        self._counts.pop(pair, None)
        self._dirty.add(pair)

    @property
    def pairs(self) -> int:
        return len(self._counts)

    # -- the writer task --------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="pgchat-presence")

    async def stop(self) -> None:
        """Cancel the writer, then resign: this worker's rows go at once (cascade), and
        every listener rings ``presence.left`` for them."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._written or self._last_beat:
            try:
                async with asyncio.timeout(2.0), db.connection() as conn:
                    await conn.execute(_RESIGN, (self.worker,))
            except Exception as exc:  # the rows expire anyway
                logger.warning("could not remove this worker's presence: %r", exc)
        self._counts.clear()
        self._written.clear()
        self._dirty.clear()

    async def _run(self) -> None:
        failing = False  # log an outage once, and its end, not once per tick
        while True:
            await asyncio.sleep(self.flush_seconds)
            try:
                await self.flush()
            except Exception as exc:  # the database is away: the next tick tries again
                if not failing:
                    logger.warning("presence not written: %r; retrying every tick", exc)
                failing = True
            else:
                if failing:
                    logger.info("presence written again")
                failing = False

    async def flush(self) -> None:
        """Write what changed (with a heartbeat), or only the heartbeat when it is due;
        sweep expired workers once per heartbeat interval."""
        now = time.monotonic()
        changed = self._pending()
        beat_due = bool(self._written) and now - self._last_beat >= self.heartbeat_seconds
        if changed[0] or changed[1] or beat_due:
            await self._write(*changed)
        if now - self._last_sweep >= self.heartbeat_seconds:
            self._last_sweep = now
            async with db.connection() as conn:
                cur = await conn.execute(_SWEEP)
                self.statements += 1
                self.rows += max(cur.rowcount, 0)

    def _pending(self) -> tuple[list[Pair], list[Pair]]:
        add = [pair for pair in self._dirty if pair in self._counts and pair not in self._written]
        drop = [pair for pair in self._dirty if pair not in self._counts and pair in self._written]
        return add, drop

    async def _write(self, add: list[Pair], drop: list[Pair]) -> None:
        dirty, self._dirty = self._dirty, set()  # what changes meanwhile waits for the next
        try:
            async with db.connection() as conn, conn.transaction():
                cur = await conn.execute(_HEARTBEAT, (self.worker, self.expiry_seconds))
                row = await cur.fetchone()
                self.statements += 1
                self.rows += 1
                if row is not None and row[0] and self._written:
                    # Our row had been swept (we stalled past the expiry), and our pairs
                    # with it: write them all again.
                    logger.warning("this worker's presence had expired; writing it again")
                    self._written.clear()
                    add, drop = list(self._counts), []
                if add or drop:
                    cur = await conn.execute(
                        _WRITE,
                        {
                            "worker": self.worker,
                            "add_rooms": [room for room, _ in add],
                            "add_users": [user for _, user in add],
                            "drop_rooms": [room for room, _ in drop],
                            "drop_users": [user for _, user in drop],
                        },
                    )
                    self.statements += 1
                    self.rows += max(cur.rowcount, 0) + len(drop)  # the CTE's deletes: not
        except BaseException:  # counted in rowcount, and each dropped pair had a row
            self._dirty |= dirty
            raise
        self._written.difference_update(drop)
        self._written.update(add)
        self._last_beat = time.monotonic()
