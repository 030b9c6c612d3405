"""Hop 1: the tables and the triggers that turn every write into an event.

Upstream:   any writer: the web UI, the Django admin, psql, a batch job.
Downstream: ``pg_notify('chat', ...)`` read by chat/listener.py; the MessageChange log read
            by chat/history.py.
On failure: a trigger error aborts the writer's statement, so the trigger only calls small
            SQL functions (migrations 0002, 0004, 0005, 0014) that cannot fail on valid rows.

A notification is a doorbell, not the message: ``{"kind": "message", "room", "seq", "at"}``.
The listener reads what changed from the log, so a forged NOTIFY (any role that can connect
may send one) can at worst cost a read, and a payload never nears NOTIFY's 8000-byte limit.
Access changes ring too (migration 0005): a member removed, a room made private or deleted,
a session ended, a user's staff/active flags or password changed; the listener then re-checks
the open streams concerned (chat/gatekeeper.py).

Every change of a message appends a MessageChange row numbered per room (``seq``), under a
per-room advisory lock held until COMMIT: a room's writers commit in ``seq`` order, so a
client that has seen ``seq`` N is never later owed a change numbered N or less. That number
is the SSE ``id:`` and the resume cursor.
"""

from .idempotency import IDEMPOTENCY_KEY_MAX_LENGTH, IdempotentPost
from .messages import MESSAGE_MAX_LENGTH, REACTION_MAX_LENGTH, ChatMessage, MessageChange
from .reactions import REACTION_SQL_PATTERN, Reaction
from .rooms import DIRECT_SLUG_REGEX, ROOM_SLUG_MAX_LENGTH, Room
from .workspace import LiveMessage, Mention, ReadState

__all__ = [
    "DIRECT_SLUG_REGEX",
    "IDEMPOTENCY_KEY_MAX_LENGTH",
    "MESSAGE_MAX_LENGTH",
    "REACTION_MAX_LENGTH",
    "REACTION_SQL_PATTERN",
    "ROOM_SLUG_MAX_LENGTH",
    "ChatMessage",
    "IdempotentPost",
    "LiveMessage",
    "Mention",
    "MessageChange",
    "Reaction",
    "ReadState",
    "Room",
]
