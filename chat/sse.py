"""Hop 4, wire format: Server-Sent Events frames as bytes. No Django imports.

Upstream:   chat/listener.py (live events) and chat/history.py (replayed events).
Downstream: chat/stream.py writes these bytes to every subscriber of the room;
            chat/user_stream.py (``GET /events``) writes untagged frames plus a token.
On failure: nothing to lose; framing is pure.

Each event is framed once and the same ``bytes`` go to every subscriber. ``json.dumps``
escapes newlines, and U+2028, U+2029 and U+0085 are escaped here too, so a message text can
never end a frame early or inject a field, whatever a client counts as a line break.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

from .events import ChatEvent

# JSON may carry these raw, but many clients split lines on them (Python's splitlines, some
# EventSource polyfills, log tools): sent as \u escapes, a data line stays one line.
_LINE_BREAKS_TO_ESCAPES = {0x2028: "\\u2028", 0x2029: "\\u2029", 0x85: "\\u0085"}
RECONNECT_MILLISECONDS = 2000
RETRY = f"retry: {RECONNECT_MILLISECONDS}\n\n".encode()
KEEPALIVE = b": keepalive\n\n"
MAX_CURSOR = 2**63 - 1  # a bigint


class Frame(NamedTuple):
    """An encoded event and its cursor, so a subscriber can drop what it already sent."""

    seq: int
    data: bytes
    event: ChatEvent  # the same object for every subscriber; the CLI prints from it


class InvalidCursor(ValueError):
    """A Last-Event-ID that is not a cursor this server hands out."""


def encode(event: ChatEvent) -> Frame:
    """The SSE frame of one event: ``id``, ``event`` and a one-line JSON ``data``."""
    data = json.dumps(event.message, ensure_ascii=False, separators=(",", ":"))
    data = data.translate(_LINE_BREAKS_TO_ESCAPES)
    frame = f"id: {event.seq}\nevent: {event.name}\ndata: {data}\n\n".encode()
    return Frame(event.seq, frame, event)


def parse_cursor(value: str | None) -> int | None:
    """A Last-Event-ID value as a cursor: None when absent or empty (a browser sends no
    header for an empty ID, per the SSE spec), else a non-negative integer."""
    text = (value or "").strip()
    if not text:
        return None
    if not text.isascii() or not text.isdigit():
        raise InvalidCursor(
            f"Last-Event-ID must be a non-negative integer, got {(value or '')[:40]!r}"
        )
    cursor = int(text)
    if cursor > MAX_CURSOR:
        raise InvalidCursor(f"Last-Event-ID {text[:40]} is out of range")
    return cursor


# -- GET /events: one stream for all of a user's rooms ---------------------------------------


def encode_untagged(name: str, data: dict[str, Any]) -> bytes:
    """An event without ``id:``: a /events stream puts its resume token only on the last
    frame of a batch (``tag``), so one frame's bytes serve every user stream of its room."""
    body = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"event: {name}\ndata: {body}\n\n".encode()


def tag(frame: bytes, token: str) -> bytes:
    """The frame with the resume token as its ``id:`` (a client resumes after it)."""
    return b"id: " + token.encode() + b"\n" + frame


def position_only(token: str) -> bytes:
    """A block with only an ``id:``: it sets the client's Last-Event-ID and dispatches no
    event (the SSE spec's dispatch step); sent when a stream opens."""
    return b"id: " + token.encode() + b"\n\n"
