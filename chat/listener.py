"""Hops 2-3: one LISTEN connection per process, fanned out to per-stream bounded buffers.

Upstream:   trigger ``chat_message_notify`` on ChatMessage (chat/models.py), via NOTIFY.
Downstream: chat/feed.py, one Subscription per open stream (chat/stream.py) or ``chat tail``.
On failure: NOTIFYs sent while the connection is down are gone, so on every (re)connect the
            listener LISTENs first and then reads, in one query, what each room's
            subscribers have not been given yet (chat/history.py), and publishes it. Streams
            stay open across a reconnect and lose nothing.

Ordering: PostgreSQL delivers notifications in commit order and the trigger numbers a room's
changes in commit order, so each room's events reach a Subscription with rising ``seq``. A
Subscription remembers the highest ``seq`` it was given and ignores anything at or below it,
which makes the seams (catch-up vs. live, replay vs. live) free of duplicates.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import random
import time
from typing import Any

import psycopg
from psycopg import sql

from . import history, metrics, sse
from .events import CHANNEL, ChatEvent, InvalidPayload
from .subscription import Subscription, Viewer

logger = logging.getLogger("pgchat.listener")


class Backoff:
    """Delay before the next reconnect: exponential, capped, jittered."""

    FACTOR, CAP = 2.0, 30.0  # CAP in seconds
    JITTER = 0.1  # +/-10%, so N hypercorn workers don't reconnect in lockstep

    def __init__(self, initial: float = 0.5) -> None:
        if initial <= 0:
            raise ValueError(f"initial backoff must be positive, got {initial}")
        self.initial = initial
        self._delay = 0.0

    def next_delay(self) -> float:
        self._delay = min(self.CAP, self._delay * self.FACTOR or self.initial)
        return self._delay * random.uniform(1 - self.JITTER, 1 + self.JITTER)


class Listener:
    """The process's single LISTEN connection and its room -> subscribers fan-out."""

    PING_SECONDS = 10.0  # a silent connection is probed this often, to notice a dead peer
    POLL_SECONDS = 1.0  # how often the notifies wait wakes up to notice stop()

    def __init__(
        self,
        conninfo: str,
        *,
        queue_size: int = 256,
        backoff_initial: float = 0.5,
        heartbeat_seconds: float = 15.0,
    ) -> None:
        if queue_size < 1:
            raise ValueError(f"queue_size must be at least 1, got {queue_size}")
        if heartbeat_seconds <= 0:
            raise ValueError(f"heartbeat_seconds must be positive, got {heartbeat_seconds}")
        self.conninfo, self.queue_size = conninfo, queue_size
        self.backoff_initial, self.heartbeat_seconds = backoff_initial, heartbeat_seconds
        self.connected = False  # LISTENing and caught up; /healthz reports it
        self.last_lag_seconds: float | None = None  # trigger -> fan-out of the last live event
        self.stats: collections.Counter[str] = collections.Counter()
        self._rooms: dict[str, set[Subscription]] = {}  # room slug -> its open streams
        self._published: dict[str, int] = {}  # room slug -> highest seq published
        # Made in start(), not here: asyncio objects must belong to the running loop.
        self._task: asyncio.Task[None] | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._stopping: asyncio.Event | None = None
        self._ready: asyncio.Event | None = None

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        if self._task is None:  # idempotent, like AsyncConnectionPool.open()
            self._stopping = asyncio.Event()
            self._ready = asyncio.Event()
            self._task = asyncio.create_task(self._run(self._stopping), name="pgchat-listener")
            self._ticker = asyncio.create_task(self._tick(), name="pgchat-heartbeat")

    async def wait_connected(self, timeout: float) -> bool:
        """True once the first LISTEN is up (used at start-up, so /healthz is honest)."""
        if self._ready is None:
            return False
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._ready.wait()
        return self._ready.is_set()

    async def stop(self, timeout: float = 5.0) -> None:
        task, self._task = self._task, None
        if task is None or self._stopping is None:
            return
        if self._ticker is not None:
            self._ticker.cancel()
        self._stopping.set()
        try:
            await asyncio.wait_for(task, timeout)  # cancels the task on timeout
        except TimeoutError:
            logger.warning("listener did not stop within %s s; cancelled", timeout)
        for room, subs in self._rooms.items():
            for sub in subs:
                sub.close()  # each view ends its stream; browsers reconnect elsewhere
            metrics.SUBSCRIBERS.labels(room).dec(len(subs))
        self._rooms.clear()
        self._published.clear()
        logger.info("listener stopped")

    async def _tick(self) -> None:
        """Every heartbeat, wake the streams that heard nothing since the last one."""
        while True:
            # Half the interval: a stream that went quiet just after a tick gets its
            # keepalive within 1.5 heartbeats, not 2.
            await asyncio.sleep(self.heartbeat_seconds / 2)
            for subs in self._rooms.values():
                for sub in subs:
                    sub.heartbeat()

    # -- subscribers -----------------------------------------------------------------------

    def subscribe(self, room: str, seq: int, viewer: Viewer = Viewer.ANONYMOUS) -> Subscription:
        """A buffer for a new stream, held by ``viewer``, given everything up to ``seq``."""
        sub = Subscription(room, seq, self.queue_size, viewer)
        self._rooms.setdefault(room, set()).add(sub)
        metrics.SUBSCRIBERS.labels(room).inc()
        return sub

    def unsubscribe(self, sub: Subscription, *, fell_behind: bool = False) -> None:
        """Close and forget a subscription; idempotent (the listener may have dropped it)."""
        sub.close(fell_behind=fell_behind)
        subs = self._rooms.get(sub.room)
        if subs is not None and sub in subs:
            subs.remove(sub)
            metrics.SUBSCRIBERS.labels(sub.room).dec()
            if not subs:
                del self._rooms[sub.room]
                self._published.pop(sub.room, None)

    @property
    def subscriber_count(self) -> int:
        return sum(len(subs) for subs in self._rooms.values())

    # -- the connection --------------------------------------------------------------------

    async def _run(self, stopping: asyncio.Event) -> None:
        backoff = Backoff(self.backoff_initial)
        while not stopping.is_set():
            try:
                async with await psycopg.AsyncConnection.connect(
                    self.conninfo,
                    autocommit=True,  # idle in no transaction: a listener in one gets nothing
                    application_name="pgchat-listener",
                    # A cut network sends no RST: let TCP notice (no effect on Unix sockets).
                    keepalives=1,
                    keepalives_idle=10,
                    keepalives_interval=5,
                    keepalives_count=3,
                ) as conn:
                    await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(CHANNEL)))
                    # LISTEN is live before we look back, so nothing falls between the two.
                    await self._catch_up(conn)
                    backoff = Backoff(self.backoff_initial)
                    self._set_connected(True)
                    await self._relay(conn, stopping)
            except Exception as exc:  # survive, like psycopg_pool's worker(); CancelledError
                self._set_connected(False, quietly=stopping.is_set())  # CancelledError is not
                if stopping.is_set():  # an Exception, so stop() still works
                    break
                delay = backoff.next_delay()
                bug = not isinstance(exc, psycopg.OperationalError | TimeoutError)  # bugs get
                # a traceback; a lost connection or an unanswered probe does not
                self._count("reconnects")
                logger.warning(
                    "listener down: %r; reconnecting in %.2f s", exc, delay, exc_info=bug
                )
                with contextlib.suppress(TimeoutError):  # wake early if stop() is called
                    await asyncio.wait_for(stopping.wait(), delay)
        self._set_connected(False, quietly=True)

    def _set_connected(self, connected: bool, *, quietly: bool = False) -> None:
        if connected == self.connected:
            return
        self.connected = connected
        metrics.LISTENERS_CONNECTED.set(1 if connected else 0)
        if connected:
            assert self._ready is not None
            self._ready.set()
            logger.info("listener connected: LISTEN %s, caught up", CHANNEL)
        elif not quietly:
            logger.warning("listener disconnected")

    async def _catch_up(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Publish what each room's subscribers missed while there was no LISTEN."""
        # Everything at or below _published was offered to the room's current streams or
        # is covered by their own replay, so catch-up never needs to start lower.
        positions = {
            room: max(min(sub.seq for sub in subs), self._published.get(room, 0))
            for room, subs in self._rooms.items()
            if subs
        }
        events = await history.changes_after_each(conn, positions)
        for event in events:
            self._publish(event)
        if events:
            logger.info("caught up %d events in %d rooms", len(events), len(positions))

    async def _relay(self, conn: psycopg.AsyncConnection[Any], stopping: asyncio.Event) -> None:
        """Publish notifications as they come, until stop() or a connection error."""
        last_heard = time.monotonic()
        while not stopping.is_set():
            # notifies() holds the connection's lock, so a stub can't be read inside it, and
            # leaving it early drops the rest of the packet it has read. With stop_after=1
            # it ends between packets, having yielded the whole batch; psycopg (>= 3.2.4)
            # keeps what arrives while no notifies() runs, and yields that first next time.
            batch = [
                notify.payload
                async for notify in conn.notifies(timeout=self.POLL_SECONDS, stop_after=1)
            ]
            if batch:
                last_heard = time.monotonic()
                await self._deliver(conn, batch)
            elif time.monotonic() - last_heard > self.PING_SECONDS:
                async with asyncio.timeout(self.PING_SECONDS):  # a hung peer raises here
                    await conn.execute("SELECT 1")
                last_heard = time.monotonic()

    async def _deliver(self, conn: psycopg.AsyncConnection[Any], payloads: list[str]) -> None:
        """Parse a batch, complete its stubs with one read, publish in arrival order."""
        events = [event for payload in payloads if (event := self._parse(payload)) is not None]
        stub_ids = [event.message_id for event in events if event.is_stub]
        messages = {}
        if stub_ids:  # read once for every subscriber, and once for the whole batch
            self._count("stub_reads")
            messages = await history.fetch_messages(conn, stub_ids)
        for event in events:
            if event.is_stub:
                message = messages.get(event.message_id)
                if message is None:
                    continue  # hard-deleted since: its delete event follows
                event = event.completed(message)
            self._publish(event)

    def _parse(self, payload: str) -> ChatEvent | None:
        try:
            return ChatEvent.from_payload(payload)
        except InvalidPayload as exc:
            self._count("invalid_payloads")
            logger.warning("ignored a notification on %r: %s", CHANNEL, exc)
            return None

    def _publish(self, event: ChatEvent) -> None:
        """Frame once; offer the same bytes to every subscriber of the room."""
        subs = self._rooms.get(event.room)
        if not subs or event.seq <= self._published.get(event.room, 0):
            return
        self._count("events")
        self._published[event.room] = event.seq
        frame = sse.encode(event)
        self._count("frames", len(subs))
        # No copy of the set per event: the (rare) full buffers are collected, then dropped.
        full = [sub for sub in subs if not sub.offer(frame)]
        for sub in full:  # a stuck client must not stall the only listener: its buffer is
            self.unsubscribe(sub, fell_behind=True)  # freed now, and the view catches up
            self._count("slow_drops")  # from the table when it can write again
            logger.info("dropped a slow subscriber of %r (buffer full)", event.room)
        if event.sent_at is not None:  # live (not caught up): how long since the trigger ran
            self.last_lag_seconds = time.time() - event.sent_at
            metrics.NOTIFY_TO_SEND.observe(self.last_lag_seconds)

    def _count(self, name: str, amount: int = 1) -> None:
        self.stats[name] += amount  # this process's, for /healthz
        metrics.COUNTERS[name].inc(amount)  # every worker's, for /metrics


@functools.cache
def get_listener() -> Listener:
    """This process's listener, configured from settings on first use."""
    from django.conf import settings

    return Listener(
        settings.CHAT_LISTEN_DATABASE_URL,
        queue_size=settings.CHAT_SUBSCRIBER_QUEUE_SIZE,
        backoff_initial=settings.CHAT_LISTENER_BACKOFF,
        heartbeat_seconds=settings.CHAT_SSE_HEARTBEAT,
    )
