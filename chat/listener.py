"""Hop 2: one LISTEN connection per process; its bells become reads of the log.

Upstream:   the triggers' doorbells via NOTIFY (chat/models/, migration 0005): a message
            bell names a room whose log grew; an access bell names what to re-check.
Downstream: chat/relay.py, a batch of bells at a time (chat/bell_batches.py takes them off
            the connection, paced under load), which reads the log for chat/fanout.py,
            re-checks access through chat/gatekeeper.py, and rings chat/user_feeds.py and
            chat/search_feeds.py.
On failure: NOTIFYs sent while the connection is down are gone, so on every (re)connect the
            listener LISTENs first and then has the relay re-check every open stream's
            access, then read, in one query, what each room's subscribers have not been
            given yet (chat/history.py), and publish it. Streams that keep access stay
            open across a reconnect and lose nothing.

This file is the connection: opening it, keeping it (a probe when it is silent, a back-off
when it fails), the heartbeat of every stream, and the subscribers' entry points.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import time
from typing import Any

import psycopg
from psycopg import sql

from . import metrics
from .backoff import Backoff
from .bell_batches import BellBatches
from .conversation_feeds import ConversationFeeds
from .events import CHANNEL
from .fanout import FanOut
from .gatekeeper import Gatekeeper
from .presence import Presence
from .relay import Relay
from .search_feeds import SearchFeeds
from .subscription import Subscription, Viewer
from .user_feeds import UserFeeds

logger = logging.getLogger("pgchat.listener")


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
        recheck_seconds: float = 3600.0,
        presence_expiry_seconds: float = 30.0,
        presence_flush_seconds: float = 1.0,
        read_interval: float = 0.0,
    ) -> None:
        if heartbeat_seconds <= 0:
            raise ValueError(f"heartbeat_seconds must be positive, got {heartbeat_seconds}")
        self.conninfo, self.queue_size = conninfo, queue_size
        self.backoff_initial, self.heartbeat_seconds = backoff_initial, heartbeat_seconds
        self.connected = False  # LISTENing and caught up; /healthz reports it
        self.stats: collections.Counter[str] = collections.Counter()
        # Which signed-in users this process's streams carry in which rooms (issue 13).
        self.presence = Presence(
            expiry_seconds=presence_expiry_seconds, flush_seconds=presence_flush_seconds
        )
        self.fanout = FanOut(queue_size, self._count, self.presence)
        self.users = UserFeeds(queue_size, self._count, self.presence)  # GET /events streams
        self.searches = SearchFeeds(queue_size, self._count)  # GET /search/events streams
        self.conversation = ConversationFeeds(self.fanout, self.users.fanout, self._count)
        # At most one read of the log per read_interval under load (chat/bell_batches.py).
        self.bells = BellBatches(min_interval=read_interval, poll_seconds=self.POLL_SECONDS)
        self.recheck_seconds = recheck_seconds  # the periodic sweep of every stream's access
        self.relay = Relay(
            fanout=self.fanout,
            users=self.users,
            searches=self.searches,
            conversation=self.conversation,
            bells=self.bells,
            count=self._count,
        )
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
            self.presence.start()

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
        self.fanout.close_all()
        self.users.fanout.close_all()
        self.searches.close_all()
        await self.presence.stop()  # this worker's users leave every room at once
        logger.info("listener stopped")

    async def _tick(self) -> None:
        """Every heartbeat, wake the streams that heard nothing since the last one; every
        ``recheck_seconds``, re-check every stream's access."""
        swept = time.monotonic()
        while True:
            # Half the interval: a stream that went quiet just after a tick gets its
            # keepalive within 1.5 heartbeats, not 2.
            await asyncio.sleep(self.heartbeat_seconds / 2)
            self.fanout.heartbeat()
            self.users.fanout.heartbeat()
            self.searches.heartbeat()
            self.conversation.forget_unwatched()
            if time.monotonic() - swept >= self.recheck_seconds:
                swept = time.monotonic()
                try:
                    await self.sweep()
                except Exception as exc:  # the database is away: the next sweep, or the
                    logger.warning("access sweep failed: %r", exc)  # reconnect, re-checks

    # -- subscribers -----------------------------------------------------------------------

    def subscribe(
        self, room: str, seq: int, viewer: Viewer = Viewer.ANONYMOUS, member: int | None = None
    ) -> Subscription:
        return self.fanout.subscribe(room, seq, viewer, member)

    def unsubscribe(self, sub: Subscription, *, fell_behind: bool = False) -> None:
        self.fanout.unsubscribe(sub, fell_behind=fell_behind)

    @property
    def subscriber_count(self) -> int:
        return self.fanout.subscriber_count

    @property
    def gatekeeper(self) -> Gatekeeper:
        """Who may read what, for the streams here and for opens (chat/gatekeeper.py)."""
        return self.relay.gatekeeper

    @property
    def last_lag_seconds(self) -> float | None:
        """Trigger -> fan-out of the last live event (/healthz)."""
        return self.relay.last_lag_seconds

    async def sweep(self) -> None:
        """Re-check every open stream's access now (chat/relay.py)."""
        await self.relay.sweep()

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
                    await self.relay.catch_up(conn)
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

    async def _relay(self, conn: psycopg.AsyncConnection[Any], stopping: asyncio.Event) -> None:
        """Handle notifications as they come, until stop() or a connection error."""
        last_heard = time.monotonic()
        while not stopping.is_set():
            batch = await self.bells.next(conn)
            if batch:
                last_heard = time.monotonic()
                await self.relay.deliver(conn, batch)
            elif time.monotonic() - last_heard > self.PING_SECONDS:
                async with asyncio.timeout(self.PING_SECONDS):  # a hung peer raises here
                    await conn.execute("SELECT 1")
                last_heard = time.monotonic()

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
        recheck_seconds=settings.CHAT_ACCESS_RECHECK_SECONDS,
        presence_expiry_seconds=settings.CHAT_PRESENCE_EXPIRY_SECONDS,
        read_interval=settings.CHAT_LISTENER_READ_INTERVAL,
    )
