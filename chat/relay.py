"""Hop 2's work: what a batch of bells does, in commit order.

Upstream:   chat/listener.py: each batch of payloads its LISTEN connection took
            (chat/bell_batches.py), and that connection to read with; after every
            (re)connect, ``catch_up``; every sweep interval, ``sweep``.
Downstream: chat/fanout.py (what the log holds past each room's streams, read once per
            batch for every room rung); chat/gatekeeper.py (the access re-checks, before
            anything later is published); chat/user_feeds.py and chat/search_feeds.py
            (every bell, for ``GET /events`` and ``GET /search/events``, first);
            chat/conversation_feeds.py (typing and presence, never in the log).
On failure: a read or a re-check that fails raises to the listener, which drops the
            connection and, once it is back, calls ``catch_up``: it re-checks every stream
            with every session resolved again, then reads the log for every room its
            streams carry, so what the lost batch pointed to is found anyway.

A payload is untrusted input (any role that can connect may NOTIFY): a bell is a doorbell.
Content and cursors come only from the log; a forged bell costs at most one read or one
re-check, and its seq hint only ever saves a read.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import psycopg

from . import db, history, metrics
from .bell_batches import BellBatches
from .conversation_feeds import ConversationFeeds
from .events import CHANNEL, EPHEMERAL_KINDS, USER_ROOM_KINDS, Bell, InvalidPayload
from .fanout import FanOut
from .gatekeeper import Gatekeeper
from .search_feeds import SearchFeeds
from .subscription import Subscription
from .user_feeds import UserFeeds

logger = logging.getLogger("pgchat.listener")  # one logger for the hop, as operators see it


class Relay:
    """Turns bells into reads of the log, re-checks of access and ephemeral frames."""

    def __init__(
        self,
        *,
        fanout: FanOut,
        users: UserFeeds,
        searches: SearchFeeds,
        conversation: ConversationFeeds,
        bells: BellBatches,
        count: Callable[..., None],
    ) -> None:
        self.fanout, self.users, self.searches = fanout, users, searches
        self.conversation, self.bells, self._count = conversation, bells, count
        self.gatekeeper = Gatekeeper()
        self.last_lag_seconds: float | None = None  # trigger -> fan-out of the last live event

    async def catch_up(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """After (re)connecting: every open stream's access again (access bells may have
        been missed, a user's among them: every session is resolved again), then what each
        room's remaining subscribers missed while there was no LISTEN.

        Access first: what was missed may hold an access change and messages after it,
        in an order this read cannot tell, so a stream that lost access ends before anything
        of the outage is handed out. All it misses is what came before its change, which
        it could not have resumed anyway (a reopen is refused)."""
        self.gatekeeper.forget_all()
        # What the log held before the re-check is all that is read here: a change after
        # it rang a bell (LISTEN is up), handled in commit order with any access bell.
        upto: dict[str, int | None] = dict(await history.cursors(conn, self.fanout.rooms))
        await self._recheck(conn, self.fanout.subscriptions())
        events = await self._read_and_publish(conn, upto)
        if events:
            logger.info("caught up %d events", events)
        await self.users.catch_up(conn)
        await self.searches.catch_up(conn)
        await self.conversation.catch_up(conn)

    async def deliver(self, conn: psycopg.AsyncConnection[Any], payloads: list[str]) -> None:
        """Ring the batch's bells in commit order: message bells gather the rooms to read
        from the log (one query for all of them), each up to the highest seq its bells
        rang; an access bell first publishes what was gathered (committed before the
        change, so still theirs to see), then re-checks the streams it concerns before
        anything later is published. Reading no further than the bells is what keeps a
        change committed after an access change, and read before its bell was handled,
        from reaching a stream that lost access."""
        bells = [bell for payload in payloads if (bell := self._parse(payload)) is not None]
        await self.users.on_batch(conn, bells)  # GET /events: chat/user_feeds.py
        await self.searches.on_batch(conn, bells)  # GET /search/events: chat/search_feeds.py
        rooms: dict[str, int | None] = {}  # room -> up to where to read (None: no limit)
        ephemeral: list[Bell] = []  # typing and presence bells since the last message bell
        latest_at: float | None = None
        for bell in bells:
            if bell.kind in USER_ROOM_KINDS:  # for /events (issue 12), not
                continue  # an access change: a removal rings its own access bell
            if bell.kind in EPHEMERAL_KINDS:  # never in the log: chat/conversation_feeds.py
                if rooms:  # in commit order with the messages around them
                    await self._read_and_publish(conn, rooms)
                    rooms.clear()
                ephemeral.append(bell)
                continue
            if ephemeral:
                await self.conversation.on_batch(conn, ephemeral)
                ephemeral = []
            if bell.kind == "message":
                assert bell.room is not None  # Bell.from_payload checks it
                # The seq hint only ever saves a read; a forged one can't skip a real bell.
                if self.fanout.wants(bell.room, bell.seq):
                    # Up to the highest seq the room's bells rang; a bell without one (not
                    # one of our triggers') reads to the end.
                    if bell.seq is None or (bell.room in rooms and rooms[bell.room] is None):
                        rooms[bell.room] = None
                    else:
                        rooms[bell.room] = max(rooms.get(bell.room) or 0, bell.seq)
                    latest_at = bell.at if bell.at is not None else latest_at
                continue
            await self._read_and_publish(conn, rooms)
            rooms.clear()
            await self._recheck(conn, self.gatekeeper.concerned(bell, self.fanout.subscriptions))
        if rooms:
            await self._read_and_publish(conn, rooms)
            self._observe_lag(latest_at)
        if ephemeral:
            await self.conversation.on_batch(conn, ephemeral)

    async def sweep(self) -> None:
        """Re-check every open stream against the rule now (the periodic sweep): whatever a
        missed bell or an expired session left open, closes here."""
        self.gatekeeper.forget_all()
        async with db.connection() as conn:
            await self._recheck(conn, self.fanout.subscriptions())
            await self.users.catch_up(conn)
            await self.searches.catch_up(conn)
        self.gatekeeper.forget_sessions_except(
            key for sub in self.fanout.subscriptions() if (key := sub.viewer.session_key)
        )

    async def _read_and_publish(
        self, conn: psycopg.AsyncConnection[Any], upto: dict[str, int | None]
    ) -> int:
        """Read what the log holds past what each room's streams were given, up to
        ``upto[room]``; publish it."""
        positions = self.fanout.positions(list(upto))
        if not positions:
            return 0
        self._count("log_reads")
        self.bells.read()  # under load, the next batch waits its turn (chat/bell_batches.py)
        events = await history.changes_after_each(conn, positions, upto)
        for event in events:
            self.fanout.publish(event)
        return len(events)

    async def _recheck(self, conn: psycopg.AsyncConnection[Any], subs: list[Subscription]) -> None:
        if not subs:
            return
        self._count("access_checks")
        for sub in await self.gatekeeper.refused(conn, subs):
            self.fanout.unsubscribe(sub)  # its stream ends; a reconnect is refused at open
            self._count("revoked")
            logger.info("ended a stream of %r: its viewer may no longer read it", sub.room)

    def _parse(self, payload: str) -> Bell | None:
        try:
            return Bell.from_payload(payload)
        except InvalidPayload as exc:
            self._count("invalid_payloads")
            logger.warning("ignored a notification on %r: %s", CHANNEL, exc)
            return None

    def _observe_lag(self, at: float | None) -> None:
        """Trigger -> every subscriber's buffer, for the last bell of a batch. ``at`` comes
        from a notification, so it is only believed within a day of now."""
        if at is None:
            return
        lag = time.time() - at
        if 0 <= lag < 86400:
            self.last_lag_seconds = lag
            metrics.NOTIFY_TO_SEND.observe(lag)
