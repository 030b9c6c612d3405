"""Hop 3, access: when who-may-read-what changes, re-check the open streams it concerns.

Upstream:   chat/relay.py, for each access bell (a room made private or deleted, a member
            removed, a user's flags or password changed, sessions deleted), in commit order
            with the message bells, and for the periodic sweep of every open stream.
Downstream: the Subscriptions (chat/subscription.py) whose viewer may no longer read their
            room are closed: their streams end, and the browser's reconnect is refused at
            open (404), so nothing committed after the change reaches them.
On failure: a re-check that cannot run (the database went away) is retried with the
            listener's reconnect, which re-checks every open stream before trusting
            notifications again; the periodic sweep (``CHAT_ACCESS_RECHECK_SECONDS``, hourly
            by default) bounds how long any missed signal can last.

The rule is not here: it is ``chat_room_readable`` in SQL, reached through chat/rooms.py.
Here is only which streams to ask about, and who their viewers are now: a stream on a room
anyone may read needs no user at all; for the others, the session that opened the stream is
resolved once through Django's own session store and auth backend, then cached per session
key (a key never changes hands; log-in cycles it, log-out deletes it).

Opens ask here too (``admit``), once subscribed (chat/feed.py). A room the rule let anyone
read is remembered until the next access bell, reconnect or sweep, so an open storm on a
public room costs no query. That is safe because of the order: a remembered answer was
read after its open subscribed, and is kept only if no access bell was handled meanwhile;
the bell of any later change finds every stream subscribed until it is handled, the ones
admitted from memory included, and forgets the room before any later open is admitted. A
bell missed while the listener was away is covered by the reconnect, which forgets
everything and re-checks every stream before it hands out anything.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from asgiref.sync import sync_to_async

from . import rooms
from .events import Bell
from .subscription import Subscription

logger = logging.getLogger("pgchat.gatekeeper")


class Gatekeeper:
    """Re-checks subscriptions against the read rule; remembers who each session is."""

    def __init__(self) -> None:
        self._session_users: dict[str, int | None] = {}  # session key -> user id (None: anon)
        self._public: set[str] = set()  # rooms the rule let anyone read, as an open found
        self._forgotten = 0  # how many times _public was forgotten (every access change)

    def concerned(
        self, bell: Bell, subscriptions: Callable[..., list[Subscription]]
    ) -> list[Subscription]:
        """The open streams whose access an access bell may have changed, of those
        ``subscriptions(room)`` (or ``subscriptions()``, every room's) lists."""
        self._forget_public()  # in the tick that lists the streams: later opens ask again
        if bell.kind == "access":
            return subscriptions(bell.room or "")
        if bell.kind == "user" and bell.user is not None:
            self.forget_user(bell.user)
        # A user's flags or sessions: any signed-in stream may be theirs. Streams on rooms
        # anyone may read are cleared by refused() with one query, without a user.
        return [sub for sub in subscriptions() if sub.viewer.session_key is not None]

    def forget_user(self, user_id: int) -> None:
        """That user's flags or password changed: resolve their sessions again."""
        for key in [k for k, uid in self._session_users.items() if uid == user_id]:
            del self._session_users[key]

    def forget_all(self) -> None:
        """For the periodic sweep and a reconnect: resolve every session again (expiry, a
        missed bell), and ask the rule again for every room."""
        self._session_users.clear()
        self._forget_public()

    def _forget_public(self) -> None:
        self._public.clear()
        self._forgotten += 1

    async def admit(self, user: rooms.AnyUser, slug: str, *, remembered: bool = True) -> None:
        """An open's access check, awaited once its stream is subscribed (chat/feed.py);
        raises rooms.RoomNotFound. A room anyone may read is asked about once until the
        next access change (see the module's docstring for why that is safe), for opens
        that read no messages (``remembered``): an open that replays reads the log itself,
        before any bell could end it, and its pages ask the rule in their own snapshot."""
        if remembered and slug in self._public:
            return
        forgotten = self._forgotten
        anyone = await rooms.readable_by(user, slug)
        if anyone and forgotten == self._forgotten:  # no access bell handled meanwhile
            self._public.add(slug)

    def forget_sessions_except(self, live: Iterable[str]) -> None:
        """Drop cached sessions no open stream holds any more (keeps the cache bounded)."""
        keep = set(live)
        self._session_users = {k: v for k, v in self._session_users.items() if k in keep}

    async def refused(self, conn: Any, subs: Iterable[Subscription]) -> list[Subscription]:
        """Of these subscriptions, those whose viewer may no longer read their room."""
        candidates = list(subs)
        if not candidates:
            return []
        public = await rooms.anyone_may_read(conn, sorted({sub.room for sub in candidates}))
        to_check = [sub for sub in candidates if sub.room not in public]
        if not to_check:
            return []
        unknown = sorted(
            {
                key
                for sub in to_check
                if (key := sub.viewer.session_key) is not None
                and sub.viewer.user_id is None
                and key not in self._session_users
            }
        )
        if unknown:
            self._session_users.update(await sync_to_async(rooms.session_users)(unknown))
        checks = [(sub.room, self._viewer_id(sub), sub.viewer.session_key) for sub in to_check]
        refused = await rooms.unreadable(conn, checks)
        return [to_check[i] for i in sorted(refused)]

    def _viewer_id(self, sub: Subscription) -> int | None:
        viewer = sub.viewer
        if viewer.user_id is not None:
            return viewer.user_id
        if viewer.session_key is None:
            return None
        return self._session_users.get(viewer.session_key)
