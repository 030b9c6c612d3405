"""The references' side of pgchat's doorbells: a notification names a room; the change is read
from the log (chat/history.py), as pgchat's listener reads it.

The trigger sends ``{"kind": "message", "room", "seq", "at"}``, not the row, so every design
under test pays for one read of the log per batch of bells: the references read with the
same query pgchat uses, and a comparison stays one of fan-out designs, not of payloads.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import psycopg

from chat import history
from chat.events import Bell, ChatEvent, InvalidPayload


class LogReader:
    """Tracks, per room, how far the log has been read."""

    def __init__(self) -> None:
        self.positions: dict[str, int] = {}

    async def read(
        self, conn: psycopg.AsyncConnection[Any], payloads: Iterable[str], wanted: Iterable[str]
    ) -> list[ChatEvent]:
        """The changes the batch's message bells point to, in the rooms ``wanted``."""
        want = set(wanted)
        rung: dict[str, int] = {}
        for payload in payloads:
            try:
                bell = Bell.from_payload(payload)
            except InvalidPayload:
                continue
            if bell.kind != "message" or bell.room not in want or bell.seq is None:
                continue
            # A room read for the first time starts just below its first bell (the
            # benchmark's clients subscribe before it inserts).
            start = self.positions.get(bell.room, bell.seq - 1)
            rung[bell.room] = min(rung.get(bell.room, start), start)
        if not rung:
            return []
        events = await history.changes_after_each(conn, rung)
        for event in events:
            self.positions[event.room] = max(self.positions.get(event.room, 0), event.seq)
        return events
