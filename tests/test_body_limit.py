"""Issue 11, point 4: request bodies are bounded in size and in time (chat/body_limit.py).

Raw sockets, so the test decides exactly what is sent and when: headers without their body,
a chunked body that outgrows the limit, a body that stops half-way.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable

import httpx
import pytest

from .helpers import DEADLINE
from .servers import Server

LIMIT = 10_000  # bytes, for the server of these tests
TIMEOUT = 1.0  # seconds a body may take, for the same server


@pytest.fixture
def small_server(make_server: Callable[..., Server]) -> Server:
    return make_server(CHAT_MAX_BODY_BYTES=str(LIMIT), CHAT_BODY_TIMEOUT_SECONDS=str(TIMEOUT))


def exchange(server: Server, head: str, body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    """Send ``head`` (request line and headers) and ``body``, then read the whole answer
    (the guard closes the connection after a refusal)."""
    with socket.create_connection((server.host, server.port), timeout=DEADLINE) as sock:
        sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
        answer = b""
        while b"\r\n\r\n" not in answer or not _complete(answer):
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    header_block, _, content = rest.partition(b"\r\n\r\n")
    headers = {}
    for line in header_block.decode().split("\r\n"):
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, content


def _complete(answer: bytes) -> bool:
    head, _, content = answer.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(content) >= int(line.split(b":")[1])
    return False


def request_head(server: Server, path: str, headers: dict[str, str]) -> str:
    lines = [f"POST {path} HTTP/1.1", f"Host: {server.host}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return "\n".join(lines) + "\n"


def test_a_300_mb_declared_body_is_refused_before_it_is_read(server: Server) -> None:
    """Only the headers are sent: the answer comes without the server waiting for the body
    (before: it read all of it to a temporary file, then answered 403)."""
    started = time.monotonic()
    head = request_head(
        server,
        "/healthz",
        {"Content-Length": str(300 * 1024 * 1024), "Content-Type": "application/json"},
    )
    status, headers, content = exchange(server, head)
    assert status == 413
    assert headers["content-type"] == "application/json"
    assert "too large" in json.loads(content)["error"]
    assert time.monotonic() - started < DEADLINE / 3  # answered at once, not timed out


def test_a_chunked_body_over_the_limit_is_refused(small_server: Server) -> None:
    """No Content-Length: the guard counts what arrives and stops at the limit."""
    head = request_head(
        small_server,
        "/rooms/lobby/messages",
        {"Transfer-Encoding": "chunked", "Content-Type": "application/json"},
    )
    chunk = b"x" * 4096
    body = (b"%x\r\n" % len(chunk) + chunk + b"\r\n") * 3 + b"0\r\n\r\n"  # 12,288 bytes
    status, _, content = exchange(small_server, head, body)
    assert status == 413
    assert "too large" in json.loads(content)["error"]


def test_a_chunked_body_under_the_limit_reaches_django(small_server: Server) -> None:
    head = request_head(
        small_server,
        "/rooms/lobby/messages",
        {"Transfer-Encoding": "chunked", "Content-Type": "application/json"},
    )
    body = b'{"text": "hi"}'
    status, _, content = exchange(small_server, head, b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
    assert status == 403  # Django's answer (no CSRF token): the guard let it through
    assert "CSRF" in json.loads(content)["error"]


@pytest.mark.parametrize("path", ["/rooms/new/", "/accounts/login/", "/rooms/lobby/messages"])
def test_a_form_body_over_the_limit_is_413(small_server: Server, path: str) -> None:
    """Before: Django's RequestDataTooBig for a form answered 400."""
    response = httpx.post(
        f"{small_server.url}{path}", data={"text": "x" * (LIMIT + 1)}, timeout=DEADLINE
    )
    assert response.status_code == 413
    assert "too large" in response.json()["error"]


def test_an_unfinished_body_times_out(small_server: Server) -> None:
    """100 bytes announced, 10 sent: after CHAT_BODY_TIMEOUT_SECONDS the answer is 408
    (before: the connection and its buffer were held with no limit)."""
    head = request_head(
        small_server,
        "/rooms/lobby/messages",
        {"Content-Length": "100", "Content-Type": "application/json"},
    )
    started = time.monotonic()
    status, _, content = exchange(small_server, head, b'{"text": "')
    waited = time.monotonic() - started
    assert status == 408
    assert "in time" in json.loads(content)["error"]
    assert TIMEOUT * 0.9 <= waited < DEADLINE / 3
