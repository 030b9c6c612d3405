"""Issue 11, point 1: no debug page for a client, and the project's own error answers.

Each test runs a real hypercorn (tests/servers.py) with tests/fault_settings.py, whose
URLs /boom/ (a page) and /me/boom (an API URL) raise: a real server error, seen over HTTP
and in the server's log.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import quote

import httpx
import psycopg.conninfo
import pytest
from django.contrib.auth.models import AbstractUser

from chat.models import Room

from .helpers import DEADLINE, unique, wait_until
from .servers import Browserless, Server

FAULTS = {"DJANGO_SETTINGS_MODULE": "tests.fault_settings"}
URL_PASSWORD = "url-password-must-not-show"  # tests/fault_settings.py's example URL's


def with_password(db_url: str) -> tuple[str, str, str]:
    """The test database as a conninfo and as a URL, both carrying a password: its own, or
    (a server that does not check passwords, as the embedded one on its socket) a made-up
    one. Returns (conninfo, url, password)."""
    params = psycopg.conninfo.conninfo_to_dict(db_url)
    password = str(params.pop("password", None) or "db-password-must-not-show")
    conninfo = psycopg.conninfo.make_conninfo(db_url, password=password)
    user, dbname = quote(str(params.pop("user", "postgres"))), quote(str(params.pop("dbname")))
    query = "&".join(f"{k}={quote(str(v))}" for k, v in params.items())
    return conninfo, f"postgresql://{user}:{quote(password)}@/{dbname}?{query}", password


def test_debug_page_masks_every_credential(make_server: Callable[..., Server], db_url: str) -> None:
    """DEBUG=true is a developer's choice, yet the page it shows for a server error must not
    carry the database's password (Django masks only setting *names* like PASSWORD)."""
    conninfo, url, password = with_password(db_url)
    server = make_server(
        conninfo, DEBUG="true", CHAT_LISTEN_DATABASE_URL=url, **FAULTS
    )  # DATABASE_URL: a conninfo with password=; the listener's: a URL with one
    response = httpx.get(f"{server.url}/boom/", timeout=DEADLINE)
    assert response.status_code == 500
    page = response.text
    assert "an error no client may see" in page, "not the debug page: the test proves nothing"
    assert "CHAT_LISTEN_DATABASE_URL" in page
    assert "CHAT_EXAMPLE_SERVICE_URL" in page
    for secret in (password, quote(password), URL_PASSWORD):
        assert secret not in page


def test_debug_is_off_by_default_and_errors_are_logged(
    make_server: Callable[..., Server], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DEBUG", raising=False)
    server = make_server(**FAULTS)  # no DEBUG in the environment
    page = httpx.get(f"{server.url}/boom/", timeout=DEADLINE)
    assert page.status_code == 500
    assert page.headers["content-type"].startswith("text/html")
    assert 'class="topbar"' in page.text  # the project's layout (base.html)
    assert "Something went wrong" in page.text
    assert "an error no client may see" not in page.text
    assert "Traceback" not in page.text

    api = httpx.get(f"{server.url}/me/boom", timeout=DEADLINE)
    assert (api.status_code, api.headers["content-type"]) == (500, "application/json")
    assert set(api.json()) == {"error"}
    assert "Traceback" not in api.text

    # Both failures are in the log, each with its traceback.
    def logged() -> bool:
        log = server.log_path.read_text(errors="replace")
        return len(re.findall(r"Traceback \(most recent call last\)", log)) >= 2 and (
            "tests.fault_urls.Boom: an error no client may see" in log
        )

    wait_until(logged, what="two tracebacks in the server's log")


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/no/such/page/", "html"),
        ("/rooms/no-such-room-anywhere/", "html"),
        ("/rooms/no-such-room-anywhere/messages", "json"),
        ("/rooms/no-such-room-anywhere/messages/1/x", "json"),
        ("/me/nothing", "json"),
        ("/dm/", "json"),
        ("/events/x", "json"),
        ("/healthz/more", "json"),
        ("/search/x", "json"),
    ],
)
def test_not_found_is_json_for_the_api_and_a_page_for_pages(
    server: Server, path: str, kind: str
) -> None:
    response = httpx.get(f"{server.url}{path}", timeout=DEADLINE)
    assert response.status_code == 404
    if kind == "json":
        assert response.headers["content-type"] == "application/json"
        assert set(response.json()) == {"error"}
    else:
        assert response.headers["content-type"].startswith("text/html")
        assert 'class="topbar"' in response.text
        assert "Not found" in response.text


async def test_private_room_page_is_the_unknown_rooms_styled_404_offering_log_in(
    server: Server, alice: Browserless, make_user: Callable[..., AbstractUser]
) -> None:
    room = await Room.objects.acreate(slug=unique("secret"), title="Secret", is_private=True)
    missing = unique("missing")
    async with httpx.AsyncClient(base_url=server.url, timeout=DEADLINE) as anonymous:
        private = await anonymous.get(f"/rooms/{room.slug}/")
        unknown = await anonymous.get(f"/rooms/{missing}/")
    assert private.status_code == unknown.status_code == 404
    assert private.headers["content-type"].startswith("text/html")
    assert private.text.replace(room.slug, "X") == unknown.text.replace(missing, "X")
    assert f'href="/accounts/login/?next=/rooms/{room.slug}/"' in private.text
    assert "log in</a> to see it" in private.text
    # Logged in and not a member: the same 404, with no offer to log in.
    stranger = await alice.client.get(f"/rooms/{room.slug}/")
    assert stranger.status_code == 404
    assert "log in</a> to see it" not in stranger.text


async def test_csrf_failure_and_bad_host_are_a_page_or_json(
    server: Server, alice: Browserless
) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=DEADLINE) as fresh:
        login = await fresh.post("/accounts/login/", data={"username": "x", "password": "y"})
    assert login.status_code == 403
    assert login.headers["content-type"].startswith("text/html")
    assert "Reload the page" in login.text
    assert 'class="topbar"' in login.text

    api = await alice.client.post("/rooms/lobby/messages", json={"text": "no token"})
    assert api.status_code == 403
    assert "CSRF" in api.json()["error"]

    evil = {"Host": "evil.invalid"}
    page = httpx.get(f"{server.url}/rooms/", headers=evil, timeout=DEADLINE)
    assert page.status_code == 400
    assert 'class="topbar"' in page.text
    health = httpx.get(f"{server.url}/healthz", headers=evil, timeout=DEADLINE)
    assert health.status_code == 400
    assert set(health.json()) == {"error"}


def test_password_reset_is_not_routed_without_mail(server: Server) -> None:
    for path in ("/accounts/password_reset/", "/accounts/reset/done/"):
        response = httpx.get(f"{server.url}{path}", timeout=DEADLINE)
        assert response.status_code == 404, path
