"""The event vocabulary shared by every hop: what a NOTIFY payload and a log row mean.

Upstream:   the triggers' doorbells (``chat_message_bell``, ``chat_ring_access``: migration
            0005; ``chat_ring_membership``, ``chat_read_moved``: migration 0007;
            ``chat_record_reaction``: 0011; ``chat_ring_typing``, ``chat_ring_presence``:
            0012) and ``chat_message_json()`` (migration 0002) for a message's fields.
Downstream: chat/relay.py parses bells; chat/sse.py frames a ChatEvent;
            chat/static/chat/messages.js reads its fields.
On failure: a payload that does not parse is logged and skipped by the listener; nothing is
            lost: a bell carries no content, and what it points to is in the log.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal, get_args

CHANNEL = "chat"  # the pg_notify channel the trigger sends on
Op = Literal["created", "updated", "deleted", "reacted", "unreacted"]
OPS: tuple[Op, ...] = get_args(Op)
REACTION_OPS: tuple[Op, ...] = ("reacted", "unreacted")
# The SSE ``event:`` name of each op in the log.
EVENT_NAMES: dict[Op, str] = {
    "created": "message.created",
    "updated": "message.updated",
    "deleted": "message.deleted",
    "reacted": "reaction.added",
    "unreacted": "reaction.removed",
}
# The data of a reaction event (issue 13).
REACTION_FIELDS = ("room", "message_id", "emoji", "user")
# The fields of a message as the browser sees it; tests pin this against the SQL function
# and against chat/static/chat/messages.js.
MESSAGE_FIELDS = (
    "id",
    "room",
    "author",
    "sender_id",
    "text",
    "created_at",
    "edited_at",
    "deleted_at",
)


class InvalidPayload(ValueError):
    """A NOTIFY payload that is not one of our doorbells."""


BellKind = Literal[
    "message", "access", "user", "sessions", "joined", "left", "read", "typing", "presence"
]
BELL_KINDS: tuple[BellKind, ...] = get_args(BellKind)
# Ephemeral signals (issue 13), never in the log: chat/conversation_feeds.py checks them.
EPHEMERAL_KINDS: tuple[BellKind, ...] = ("typing", "presence")
# Bells about one user's rooms, for that user's /events streams (not an access change).
USER_ROOM_KINDS: tuple[BellKind, ...] = ("joined", "left", "read")
MAX_BELL_BYTES = 1000  # ours are under 150; anything larger is not ours, and is not parsed


@dataclass(frozen=True, slots=True)
class Bell:
    """A notification: something changed; what changed is read from the tables.

    Untrusted (any role that can connect may NOTIFY): a bell only says where to look.
    ``message``: a change was logged in ``room`` (``seq`` is a hint, never a cursor);
    ``access``: who may read ``room`` may have changed; ``user``: that user's staff/active
    flags or password changed; ``sessions``: sessions were deleted (log-out, the admin).
    One user's workspace (issue 12): ``joined`` / ``left``: ``user`` joined or left ``room``
    (chat_room_members; a removal rings an ``access`` bell too);
    ``read``: ``user``'s read position in ``room`` moved (chat_readstate).
    The conversation (issue 13): ``typing``: ``user`` typed in ``room`` (chat_typing; only
    believed if that row is fresh); ``presence``: who is online in ``room`` may have
    changed (chat_presence; the listener reads who).
    """

    kind: BellKind
    room: str | None = None
    seq: int | None = None
    user: int | None = None
    at: float | None = None  # epoch seconds when the trigger ran (for the latency metric)

    @classmethod
    def from_payload(cls, payload: str) -> Bell:
        if len(payload) > MAX_BELL_BYTES:
            raise InvalidPayload(f"payload of {len(payload)} characters is not a bell")
        try:
            data = json.loads(payload)
            if not isinstance(data, dict):
                raise InvalidPayload("payload is not a JSON object")
            kind = data.get("kind")
            if kind not in BELL_KINDS:
                raise InvalidPayload(f"unknown kind {kind!r}")
            room, seq, user, at = (data.get(k) for k in ("room", "seq", "user", "at"))
            bell = cls(
                kind=kind,
                room=_typed(room, str),
                seq=_typed(seq, int),
                user=_typed(user, int),
                at=float(at) if isinstance(at, int | float) else None,
            )
        except (ValueError, TypeError) as exc:
            if isinstance(exc, InvalidPayload):
                raise
            raise InvalidPayload(f"not a bell: {exc}") from exc
        if kind in ("message", "access") and bell.room is None:
            raise InvalidPayload(f"a {kind} bell needs a room")
        if kind == "user" and bell.user is None:
            raise InvalidPayload("a user bell needs a user")
        if kind == "presence" and bell.room is None:
            raise InvalidPayload("a presence bell needs a room")
        if kind in (*USER_ROOM_KINDS, "typing") and (bell.room is None or bell.user is None):
            raise InvalidPayload(f"a {kind} bell needs a room and a user")
        return bell


def _typed(value: Any, kind: type[Any]) -> Any:
    if value is None:
        return None
    if type(value) is not kind:  # bool is an int: refuse it as exactly as a string
        raise InvalidPayload(f"expected {kind.__name__}, got {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class ChatEvent:
    """One change of one message (its text, or its reactions), numbered ``seq`` in its
    room's commit order; read from the log (chat/history.py), never taken from a
    notification. ``message`` is the event's data: the message as the browser sees it, or
    for a reaction ``{"room", "message_id", "emoji", "user"}``."""

    room: str
    seq: int
    op: Op
    message_id: int
    message: dict[str, Any]

    @property
    def name(self) -> str:
        """The SSE ``event:`` name."""
        return EVENT_NAMES[self.op]
