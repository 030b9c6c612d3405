"""Property-based fuzzing of what a client can send: never a 500, every API error is JSON, and
a refused write writes nothing.

``ONCE_FAILING`` lists the inputs that gave a 500 before issue 11 was fixed; each is replayed
as an explicit example, against a server with DEBUG off and one with DEBUG on (whose debug
page once failed on its own).
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator

import httpx
import pytest
from django.contrib.auth import get_user_model
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from chat.models import ChatMessage, Room

from .helpers import DEADLINE, PASSWORD, running_servers, session_cookies, unique
from .servers import Server, wait_for_server_backends_gone

FUZZ = settings(
    max_examples=120,
    deadline=None,  # a real server over HTTP: timing varies, correctness doesn't
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
# Any code point, lone surrogates included (JSON can carry them as \\udXXX escapes).
any_text = st.text(alphabet=st.characters(exclude_categories=()), max_size=4100)
junk = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), any_text,
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5), st.integers()),
)  # fmt: skip


@pytest.fixture(scope="module")
def debug_server(db_url: str) -> Iterator[Server]:
    """A second server with DEBUG=true: a developer's, still never a 500 for a client."""
    before = running_servers(db_url)  # other servers' (as make_server counts)
    srv = Server(db_url, env={"DEBUG": "true"}).start()
    yield srv
    srv.stop()
    wait_for_server_backends_gone(db_url, running=before)


@pytest.fixture(scope="module")
def fuzz_room(server: Server) -> Room:
    return Room.objects.create(slug=unique("fuzz"))


@pytest.fixture(scope="module")
def logged_in(server: Server) -> Iterator[httpx.Client]:
    name = unique("fuzzer")
    get_user_model().objects.create_user(name, password=PASSWORD)
    cookies = asyncio.run(session_cookies(server.url, name))  # a sync fixture: no loop runs
    with httpx.Client(base_url=server.url, timeout=DEADLINE, cookies=cookies) as client:
        client.headers["X-CSRFToken"] = cookies["csrftoken"]
        yield client


def assert_clean(response: httpx.Response) -> None:
    assert response.status_code < 500, response.text[:500]
    if response.status_code >= 400:
        assert "error" in response.json(), response.text[:500]


@FUZZ
@given(text=junk)
def test_post_any_json_text(logged_in: httpx.Client, fuzz_room: Room, text: object) -> None:
    before = ChatMessage.objects.filter(room=fuzz_room).count()
    body = json.dumps({"text": text}, ensure_ascii=True)  # lone surrogates as \\ud800
    response = logged_in.post(
        f"/rooms/{fuzz_room.slug}/messages",
        content=body,
        headers={"Content-Type": "application/json"},
    )
    assert_clean(response)
    after = ChatMessage.objects.filter(room=fuzz_room).count()
    assert after == before + (1 if response.status_code == 201 else 0)  # no half-writes
    if response.status_code == 201:
        assert response.json()["text"] == text


@FUZZ
@given(
    body=st.one_of(
        st.binary(max_size=300),
        # Deeply nested JSON: "[[[[..." once raised RecursionError out of the parser.
        st.tuples(st.sampled_from(["[", '{"a":', '[{"text":']), st.integers(1, 60_000)).map(
            lambda t: (t[0] * t[1]).encode()
        ),
    ),
    content_type=st.sampled_from(
        [
            "application/json",
            "application/x-www-form-urlencoded",
            "application/x-www-form-urlencoded; charset=latin-1",
            "application/x-www-form-urlencoded; charset=utf-16",
            "application/x-www-form-urlencoded; charset=no-such-charset",
            "application/json; charset=latin-1",
            "text/plain",
            "multipart/form-data",
            "multipart/form-data; boundary=x; charset=latin-1",
        ]
    ),
)
@example(body=b"[" * 50_000, content_type="application/json")
@example(body=b"text=caf\xe9", content_type="application/x-www-form-urlencoded; charset=latin-1")
def test_post_any_body(
    logged_in: httpx.Client, fuzz_room: Room, body: bytes, content_type: str
) -> None:
    response = logged_in.post(
        f"/rooms/{fuzz_room.slug}/messages", content=body, headers={"Content-Type": content_type}
    )
    assert_clean(response)


@FUZZ
@given(
    after=st.one_of(st.none(), st.text(max_size=25), st.integers(-5, 2**70).map(str)),
    before=st.one_of(st.none(), st.text(max_size=25), st.integers(-5, 2**70).map(str)),
    limit=st.one_of(st.none(), st.text(max_size=10), st.integers(-5, 10**6).map(str)),
)
def test_history_any_parameters(
    logged_in: httpx.Client,
    fuzz_room: Room,
    after: str | None,
    before: str | None,
    limit: str | None,
) -> None:
    params = {
        k: v for k, v in {"after": after, "before": before, "limit": limit}.items() if v is not None
    }
    response = logged_in.get(f"/rooms/{fuzz_room.slug}/messages", params=params)
    assert_clean(response)


@FUZZ
@given(message_id=st.integers(0, 2**63), text=junk, method=st.sampled_from(["PATCH", "DELETE"]))
def test_edit_and_delete_any_message(
    logged_in: httpx.Client, fuzz_room: Room, message_id: int, text: object, method: str
) -> None:
    response = logged_in.request(
        method,
        f"/rooms/{fuzz_room.slug}/messages/{message_id}",
        content=json.dumps({"text": text}),
        headers={"Content-Type": "application/json"},
    )
    assert_clean(response)


# Bytes HTTP allows in a header value (tab, visible ASCII, obs-text); anything else is
# refused by hypercorn's parser before the application sees it.
header_value = st.lists(
    st.sampled_from([9, *range(0x20, 0x7F), *range(0x80, 0x100)]), max_size=40
).map(bytes)


@FUZZ
@given(value=header_value)
def test_stream_any_last_event_id(server: Server, fuzz_room: Room, value: bytes) -> None:
    """Raw socket: the header goes on the wire exactly as generated, bytes and all."""
    request = (
        f"GET /rooms/{fuzz_room.slug}/events HTTP/1.1\r\nHost: {server.host}\r\n".encode()
        + b"Last-Event-ID: " + value + b"\r\nConnection: close\r\n\r\n"
    )  # fmt: skip
    with socket.create_connection((server.host, server.port), timeout=DEADLINE) as sock:
        sock.sendall(request)
        head = sock.recv(65536)
    status = int(head.split(b" ", 2)[1])
    assert status in (200, 400), head[:300]
    if status == 400:
        assert b"application/json" in head


# -- the inputs that once gave a 500 (issue 11), and paths of their kind ---------------------

# (method, path, content type or None, body), each sent anonymously with only a CSRF cookie
ONCE_FAILING: list[tuple[str, str, str | None, bytes]] = [
    # RecursionError escaped the JSON parser; anonymous, with only a CSRF cookie.
    ("POST", "/rooms/lobby/messages", "application/json", b"[" * 50_000),
    # A form declaring a charset: Django refuses it (BadRequest), then under DEBUG its debug
    # page read the body again and failed with a bare 500.
    ("POST", "/rooms/lobby/messages", "application/x-www-form-urlencoded; charset=latin-1",
     b"text=caf\xe9"),
    ("POST", "/accounts/login/", "application/x-www-form-urlencoded; charset=latin-1",
     b"username=a&password=b"),
    # Path traversal below /static/: SuspiciousFileOperation from Django's static handler.
    ("GET", "/static/%2e%2e/%2e%2e/config/settings.py", None, b""),
    ("GET", "/static/..%2f..%2fconfig/settings.py", None, b""),
    ("GET", "/static/..%2f..%2f..%2f..%2fetc/passwd", None, b""),
    ("GET", "/static/chat/..%2f..%2f..%2fsettings.py", None, b""),
]  # fmt: skip


@pytest.mark.parametrize("debug", [False, True], ids=["debug-off", "debug-on"])
@pytest.mark.parametrize(("method", "path", "content_type", "body"), ONCE_FAILING)
def test_once_failing_inputs(
    request: pytest.FixtureRequest,
    debug: bool,
    method: str,
    path: str,
    content_type: str | None,
    body: bytes,
) -> None:
    target: Server = request.getfixturevalue("debug_server" if debug else "server")
    with httpx.Client(base_url=target.url, timeout=DEADLINE) as anonymous:
        anonymous.get("/accounts/login/")  # the CSRF cookie, and nothing else
        headers = {"X-CSRFToken": anonymous.cookies.get("csrftoken") or ""}
        if content_type:
            headers["Content-Type"] = content_type
        response = anonymous.request(method, path, content=body, headers=headers)
    assert response.status_code < 500, response.text[:300]
    if path.startswith("/static/"):
        assert response.status_code == 404
        assert "SECRET_KEY" not in response.text
        assert "root:" not in response.text


traversal_segment = st.sampled_from(
    ["..", "%2e%2e", ".%2e", "%2e.", "..%2f", "..%5c", "%2f", "%00", ".", "chat", "admin",
     "%252e%252e", "\\", "settings.py", "chat.js", "%c0%ae%c0%ae", ""]
)  # fmt: skip


@FUZZ
@given(segments=st.lists(traversal_segment, min_size=1, max_size=8))
def test_static_any_path(server: Server, segments: list[str]) -> None:
    """Whatever a /static/ path holds, it is a file WhiteNoise indexed, or a 404."""
    path = "/static/" + "/".join(segments)
    with socket.create_connection((server.host, server.port), timeout=DEADLINE) as sock:
        sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: {server.host}\r\nConnection: close\r\n\r\n".encode()
        )
        head = sock.recv(65536)
    status = int(head.split(b" ", 2)[1])
    assert status in (200, 301, 304, 400, 404), head[:300]
