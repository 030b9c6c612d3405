"""Issue 11, point 9: text that could pass for something it is not.

- SSE data lines escape U+2028, U+2029 and U+0085, which many clients treat as line breaks
  (read here with a raw socket, as the bytes go on the wire).
- Sign-up normalises a name (NFKC) and refuses one mixing scripts with look-alike letters.
(The browser's side, bidirectional isolation, is tests/test_browser.py's.)
"""

from __future__ import annotations

import json
import re
import socket

import httpx
from django.contrib.auth import get_user_model

from chat.models import Room

from .helpers import DEADLINE, PASSWORD, unique
from .servers import Server, insert_sql, psql

TRICKY = "one\u2028two\u2029three\u0085four"


async def test_sse_data_lines_escape_unicode_line_breaks(
    server: Server, room: Room, db_url: str
) -> None:
    marker = unique("marker")
    with socket.create_connection((server.host, server.port), timeout=DEADLINE) as sock:
        sock.sendall(
            f"GET /rooms/{room.slug}/events HTTP/1.1\r\nHost: {server.host}\r\n\r\n".encode()
        )
        received = sock.recv(65536)
        assert received.startswith(b"HTTP/1.1 200")
        await psql(db_url, insert_sql(room.slug, f"{TRICKY} {marker}"))
        while b"\n\n" not in received.partition(marker.encode())[2]:  # to the frame's end
            more = sock.recv(65536)
            assert more, "the stream ended"
            received += more
    for raw in ("\u2028", "\u2029", "\u0085"):
        assert raw.encode() not in received
    # Split as the strictest clients do: the data line is still one line, and whole.
    lines = received.decode().splitlines()
    (data,) = [line for line in lines if line.startswith("data: ") and marker in line]
    assert json.loads(data.removeprefix("data: "))["text"] == f"{TRICKY} {marker}"


def sign_up(server: Server, username: str) -> httpx.Response:
    with httpx.Client(base_url=server.url, timeout=DEADLINE) as client:
        client.get("/accounts/signup/")
        return client.post(
            "/accounts/signup/",
            data={
                "username": username,
                "password1": PASSWORD,
                "password2": PASSWORD,
                "csrfmiddlewaretoken": client.cookies.get("csrftoken") or "",
            },
        )


def test_sign_up_refuses_mixed_script_look_alikes(server: Server) -> None:
    suffix = unique("").replace("-", "_")  # digits only: no Latin letter in the Cyrillic name
    latin = f"alice_{suffix}"
    look_alike = "\u0430" + latin[1:]  # a Cyrillic a (U+0430) in front
    refused = sign_up(server, look_alike)
    assert refused.status_code == 200  # the form again, with the error
    assert "mixes alphabets" in refused.text
    users = get_user_model().objects
    assert not users.filter(username=look_alike).exists()
    # A name in one script, even a non-Latin one, is fine.
    cyrillic = f"иван_{suffix}"
    assert sign_up(server, cyrillic).status_code == 302
    assert users.filter(username=cyrillic).exists()


def test_sign_up_normalises_names(server: Server) -> None:
    suffix = unique("").replace("-", "_")
    response = sign_up(server, f"\uff21da_{suffix}")  # a full-width A
    assert response.status_code == 302
    assert get_user_model().objects.filter(username=f"Ada_{suffix}").exists()
    # And the same name again, written plainly, is taken.
    again = sign_up(server, f"ada_{suffix}")
    assert again.status_code == 200
    assert re.search("already exists", again.text)
