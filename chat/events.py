"""The event vocabulary shared by every hop: what a NOTIFY payload and a log row mean.

Upstream:   ``chat_event_payload()`` / ``chat_message_json()`` (migration 0002).
Downstream: chat/sse.py frames a ChatEvent; chat/static/chat/chat.js reads its fields.
On failure: a payload that does not parse is logged and skipped by the listener; nothing is
            lost, because the next reconnect or resume replays from the log.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any, Literal, get_args

CHANNEL = "chat"  # the pg_notify channel the trigger sends on
Op = Literal["created", "updated", "deleted"]
OPS: tuple[Op, ...] = get_args(Op)
# The fields of a message as the browser sees it; tests pin this against the SQL function
# and against chat.js.
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
    """A NOTIFY payload that is not a chat event."""


@dataclass(frozen=True, slots=True)
class ChatEvent:
    """One change of one message, numbered ``seq`` in its room's commit order."""

    room: str
    seq: int
    op: Op
    message_id: int
    message: dict[str, Any] | None  # None for a stub: the row was too large for NOTIFY
    sent_at: float | None = None  # epoch seconds when the trigger ran; None when replayed

    @property
    def name(self) -> str:
        """The SSE ``event:`` name."""
        return f"message.{self.op}"

    @property
    def is_stub(self) -> bool:
        return self.message is None

    def completed(self, message: dict[str, Any]) -> ChatEvent:
        """This event with the message read from the table (for a stub)."""
        return replace(self, message=message)

    @classmethod
    def from_payload(cls, payload: str) -> ChatEvent:
        """Parse the trigger's JSON payload (``chat_event_payload``)."""
        try:
            data = json.loads(payload)
            op = data["op"]
            if op not in OPS:
                raise InvalidPayload(f"unknown op {op!r}")
            message = data.get("message")
            if message is None and not data.get("truncated"):
                raise InvalidPayload("payload has neither a message nor truncated=true")
            return cls(
                room=str(data["room"]),
                seq=int(data["seq"]),
                op=op,
                message_id=int(data["id"]),
                message=message,
                sent_at=float(data["at"]) if data.get("at") is not None else None,
            )
        except (ValueError, KeyError, TypeError) as exc:
            if isinstance(exc, InvalidPayload):
                raise
            raise InvalidPayload(f"not a chat event payload: {exc}") from exc
