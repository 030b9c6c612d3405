"""Hop 4's wire format on its own, without I/O: framing and cursor parsing."""

from __future__ import annotations

import pytest

from chat import sse
from chat.events import Bell, ChatEvent, InvalidPayload


def event(**message: object) -> ChatEvent:
    return ChatEvent(room="lobby", seq=42, op="created", message_id=17, message=message)


def test_frame_has_id_event_and_one_data_line() -> None:
    chat_event = event(id=17, text="hi")
    frame = sse.encode(chat_event)
    assert frame.seq == 42
    assert frame.data == b'id: 42\nevent: message.created\ndata: {"id":17,"text":"hi"}\n\n'
    assert frame.event is chat_event


@pytest.mark.parametrize(
    "text",
    ["two\nlines", "carriage\rreturn", "\n\ndata: injected\n\n", "id: 1", "é € 𝄞", "<script>"],
)
def test_text_can_never_break_a_frame(text: str) -> None:
    data = sse.encode(event(text=text)).data.decode()
    assert data.count("\n\n") == 1
    assert data.endswith("\n\n")
    assert len(data.rstrip("\n").split("\n")) == 3  # id, event, data: nothing injected
    assert "\r" not in data


@pytest.mark.parametrize(
    ("value", "cursor"),
    [
        (None, None),
        ("", None),
        (" ", None),
        ("0", 0),
        ("42", 42),
        (" 7 ", 7),
        (str(2**63 - 1), 2**63 - 1),
    ],
)
def test_cursor_parses(value: str | None, cursor: int | None) -> None:
    assert sse.parse_cursor(value) == cursor


@pytest.mark.parametrize("value", ["-1", "1.5", "abc", "١٢", "0x10", str(2**63), "1e3"])
def test_bad_cursor_is_refused(value: str) -> None:
    with pytest.raises(sse.InvalidCursor):
        sse.parse_cursor(value)


@pytest.mark.parametrize(
    "payload",
    [
        "not json",
        "{}",
        "[]",
        '{"kind": "exploded", "room": "r"}',
        '{"kind": "message"}',  # a message bell names its room
        '{"kind": "message", "room": 5}',
        '{"kind": "message", "room": "r", "seq": "x"}',
        '{"kind": "message", "room": "r", "seq": true}',  # a bool is not a cursor
        '{"kind": "user"}',
        # the old payload (the whole row): content from a notification is never taken
        '{"room": "r", "seq": 1, "op": "created", "id": 1, "message": {"text": "forged"}}',
        '{"kind": "message", "room": "' + "r" * 2000 + '"}',  # not ours: too long to parse
    ],
)
def test_foreign_payload_is_refused(payload: str) -> None:
    with pytest.raises(InvalidPayload):
        Bell.from_payload(payload)


@pytest.mark.parametrize(
    ("payload", "bell"),
    [
        ('{"kind": "message", "room": "r", "seq": 3, "at": 1.5}', Bell("message", "r", 3, at=1.5)),
        ('{"kind": "access", "room": "r"}', Bell("access", "r")),
        ('{"kind": "user", "user": 4}', Bell("user", user=4)),
        ('{"kind": "sessions"}', Bell("sessions")),
    ],
)
def test_bells_parse(payload: str, bell: Bell) -> None:
    assert Bell.from_payload(payload) == bell
