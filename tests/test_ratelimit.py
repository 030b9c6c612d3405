"""Rate limits and log-in lockout, held across two worker processes (issue 11, point 5).

Every test starts its own hypercorn with two workers and a tight limit, sends real concurrent
requests over separate connections (so both processes serve them), and checks the exact
outcome in PostgreSQL. Clients come from distinct loopback addresses (127.77.x.y: all of
127/8 is loopback on Linux), so "per address" is tested with real socket addresses; the
proxy header is tested only where the server is told to trust it.

Windows are aligned to multiples of their length on the database's clock (chat/ratelimit.py):
the tests use windows of months, so no test can straddle a boundary and see a fresh budget.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.db import connection
from django.test import RequestFactory, override_settings

from chat import ratelimit
from chat.client_address import limited_address
from chat.models import ChatMessage, Room

from .helpers import PASSWORD, unique
from .servers import Browserless, Server

LONG = 10_000_000  # seconds (about 4 months): no window boundary falls inside a test
_addresses = itertools.count(1)
MakeServer = Callable[..., Server]


def fresh_address() -> str:
    """A loopback address no other test of this run uses."""
    n = next(_addresses)
    return f"127.77.{os.getpid() % 200}.{n}"


class Visitor(Browserless):
    """Browserless from its own source address, as a distinct client machine would be."""

    def __init__(self, base_url: str, address: str) -> None:
        self.address = address
        self.client = httpx.AsyncClient(
            base_url=base_url,
            timeout=30,
            follow_redirects=False,
            transport=httpx.AsyncHTTPTransport(local_address=address),
        )

    async def try_login(
        self, username: str, password: str, forwarded_for: str | None = None
    ) -> httpx.Response:
        headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
        return await self.request(
            "POST", "/accounts/login/", data={"username": username, "password": password},
            headers=headers,
        )  # fmt: skip


@pytest.fixture
async def visitors() -> AsyncIterator[Callable[..., Visitor]]:
    """Make clients, each from a fresh loopback address unless given one; closed after."""
    opened: list[Visitor] = []

    def visitor(srv: Server, address: str | None = None) -> Visitor:
        opened.append(Visitor(srv.url, address or fresh_address()))
        return opened[-1]

    yield visitor
    for v in opened:
        await v.client.aclose()


async def assert_both_workers_serve(srv: Server) -> None:
    """Concurrent connections reach both processes, so a limit kept in one process's memory
    would let through up to twice its count in the tests below."""
    seen: set[int] = set()
    for _ in range(20):
        clients = [httpx.AsyncClient(base_url=srv.url, timeout=10) for _ in range(8)]
        try:
            answers = await asyncio.gather(*(c.get("/healthz") for c in clients))
        finally:
            await asyncio.gather(*(c.aclose() for c in clients))
        seen |= {a.json()["worker"] for a in answers}
        if len(seen) == 2:
            return
    raise AssertionError(f"only worker(s) {seen} answered 160 concurrent connections")


async def new_user(make_user: Callable[..., Any], prefix: str) -> Any:
    return await sync_to_async(make_user)(prefix)  # the ORM is sync-only


def assert_limited_json(response: httpx.Response, window: int) -> None:
    assert response.status_code == 429, response.text[:300]
    assert 1 <= int(response.headers["Retry-After"]) <= window
    assert response.headers["Content-Type"] == "application/json"
    assert "too fast" in response.json()["error"]


def assert_limited_page(response: httpx.Response, window: int, reason: str) -> None:
    assert response.status_code == 429, response.text[:300]
    assert 1 <= int(response.headers["Retry-After"]) <= window
    assert response.headers["Content-Type"].startswith("text/html")
    assert reason in response.text
    assert '<form method="post"' in response.text  # the form again, not a dead end


# -- posting, per user ----------------------------------------------------------------------


async def test_posting_limit_holds_across_two_workers(
    make_server: MakeServer,
    visitors: Callable[..., Visitor],
    make_user: Callable[..., User],
    room: Room,
) -> None:
    """One user floods a room: exactly the limit's worth of posts land, however the
    concurrent requests are spread over the processes; the rest get 429 and Retry-After."""
    limit = 5
    srv = make_server(workers=2, CHAT_RATELIMIT_MESSAGES=f"{limit}/{LONG}")
    await assert_both_workers_serve(srv)
    alice = await new_user(make_user, "alice")
    client = visitors(srv)
    await client.login(alice.username, PASSWORD)

    url = f"/rooms/{room.slug}/messages"
    responses = await asyncio.gather(
        *(client.request("POST", url, json={"text": f"flood {i}"}) for i in range(4 * limit))
    )

    assert Counter(r.status_code for r in responses) == {201: limit, 429: 3 * limit}
    for response in responses:
        if response.status_code == 429:
            assert_limited_json(response, LONG)
    assert await ChatMessage.objects.filter(room=room).acount() == limit


async def test_every_json_write_counts_against_one_budget_per_user(
    make_server: MakeServer,
    visitors: Callable[..., Visitor],
    make_user: Callable[..., User],
    room: Room,
) -> None:
    """Reactions, joins, read positions, DMs: any write a user can repeat gets a 429."""
    srv = make_server(CHAT_RATELIMIT_WRITES=f"3/{LONG}")
    alice, bob = visitors(srv), visitors(srv)
    await alice.login((await new_user(make_user, "alice")).username, PASSWORD)
    await bob.login((await new_user(make_user, "bob")).username, PASSWORD)
    for path in ("join", "read", "leave"):
        response = await alice.request("POST", f"/rooms/{room.slug}/{path}", json={"cursor": 0})
        assert response.status_code < 400, response.text
    assert_limited_json(await alice.request("POST", f"/rooms/{room.slug}/join"), LONG)
    assert (await alice.client.get("/me/rooms")).status_code == 200  # reads are not counted
    assert (await bob.request("POST", f"/rooms/{room.slug}/join")).status_code in (200, 201)


async def test_posting_limit_is_per_user(
    make_server: MakeServer,
    visitors: Callable[..., Visitor],
    make_user: Callable[..., User],
    room: Room,
) -> None:
    srv = make_server(CHAT_RATELIMIT_MESSAGES=f"2/{LONG}")
    alice, bob = visitors(srv), visitors(srv)
    await alice.login((await new_user(make_user, "alice")).username, PASSWORD)
    await bob.login((await new_user(make_user, "bob")).username, PASSWORD)
    url = f"/rooms/{room.slug}/messages"
    for _ in range(2):
        assert (await alice.request("POST", url, json={"text": "a"})).status_code == 201
    assert_limited_json(await alice.request("POST", url, json={"text": "a"}), LONG)
    assert (await bob.request("POST", url, json={"text": "b"})).status_code == 201


# -- room creation, per user ----------------------------------------------------------------


async def test_room_creation_limit_holds_across_two_workers(
    make_server: MakeServer, visitors: Callable[..., Visitor], make_user: Callable[..., User]
) -> None:
    limit = 3
    srv = make_server(workers=2, CHAT_RATELIMIT_ROOMS=f"{limit}/{LONG}")
    await assert_both_workers_serve(srv)
    client = visitors(srv)
    await client.login((await new_user(make_user, "builder")).username, PASSWORD)
    prefix = unique("burst")

    responses = await asyncio.gather(
        *(
            client.request("POST", "/rooms/new/", data={"slug": f"{prefix}-{i}", "title": "t"})
            for i in range(3 * limit)
        )
    )

    assert Counter(r.status_code for r in responses) == {302: limit, 429: 2 * limit}
    for response in responses:
        if response.status_code == 429:
            assert_limited_page(response, LONG, "You have created rooms too fast.")
    assert await Room.objects.filter(slug__startswith=prefix).acount() == limit


# -- sign-up, per address -------------------------------------------------------------------


def signup_form(username: str) -> dict[str, str]:
    return {"username": username, "password1": PASSWORD, "password2": PASSWORD}


async def test_signup_limit_per_address_holds_across_two_workers(
    make_server: MakeServer, visitors: Callable[..., Visitor]
) -> None:
    limit = 3
    srv = make_server(workers=2, CHAT_RATELIMIT_SIGNUPS=f"{limit}/{LONG}")
    await assert_both_workers_serve(srv)
    address = fresh_address()
    names = [unique("newcomer") for _ in range(3 * limit)]

    async def sign_up(name: str) -> httpx.Response:
        client = visitors(srv, address)  # each its own connection and session, one address
        return await client.request("POST", "/accounts/signup/", data=signup_form(name))

    responses = await asyncio.gather(*(sign_up(name) for name in names))

    assert Counter(r.status_code for r in responses) == {302: limit, 429: 2 * limit}
    for response in responses:
        if response.status_code == 429:
            assert_limited_page(response, LONG, "Too many sign-ups from your address.")
    users = get_user_model().objects.filter(username__in=names)
    assert await users.acount() == limit
    # Another address still may.
    other = visitors(srv)
    response = await other.request("POST", "/accounts/signup/", data=signup_form(unique("n")))
    assert response.status_code == 302


async def test_signup_limit_ignores_a_forwarded_for_header_unless_trusted(
    make_server: MakeServer, visitors: Callable[..., Visitor]
) -> None:
    """A client that invents an X-Forwarded-For per request is still one address."""
    srv = make_server(CHAT_RATELIMIT_SIGNUPS=f"2/{LONG}")
    client = visitors(srv)
    statuses = [
        (
            await client.request(
                "POST",
                "/accounts/signup/",
                data=signup_form(unique("spoof")),
                headers={"X-Forwarded-For": f"198.51.100.{i}"},
            )
        ).status_code
        for i in range(4)
    ]
    assert statuses == [302, 302, 429, 429]


async def test_signup_limit_counts_the_trusted_proxys_address(
    make_server: MakeServer, visitors: Callable[..., Visitor]
) -> None:
    """Behind one trusted proxy, the client is the header's right-most entry: what the client
    itself wrote further left does not matter, and two clients behind it are two budgets."""
    srv = make_server(
        CHAT_RATELIMIT_SIGNUPS=f"2/{LONG}",
        CHAT_CLIENT_ADDRESS_HEADER="X-Forwarded-For",
        CHAT_TRUSTED_PROXY_COUNT="1",
    )
    proxy = fresh_address()  # every request comes from the one proxy's socket

    async def sign_up(forwarded_for: str) -> int:
        client = visitors(srv, proxy)
        response = await client.request(
            "POST",
            "/accounts/signup/",
            data=signup_form(unique("behind")),
            headers={"X-Forwarded-For": forwarded_for},
        )
        return response.status_code

    first, second = f"203.0.113.{next(_addresses) % 250}", "2001:db8:77::1"
    assert [await sign_up(f"10.0.0.{i}, {first}") for i in range(3)] == [302, 302, 429]
    # The same IPv6 /64 is one budget; the proxy's own address was never counted.
    assert await sign_up(second) == 302
    assert await sign_up("2001:db8:77::2") == 302
    assert await sign_up("2001:db8:77::3") == 429


# -- log-in lockout (django-axes), per username and per address -----------------------------


async def test_login_lockout_per_username_from_two_addresses(
    make_server: MakeServer, visitors: Callable[..., Visitor], make_user: Callable[..., User]
) -> None:
    """Wrong passwords for one account, concurrently from two addresses: the account is
    locked (its right password refused too, from a third address), and neither address is,
    since each stayed under the limit on its own."""
    limit = 4
    srv = make_server(workers=2, CHAT_LOGIN_FAILURE_LIMIT=f"{limit}/{LONG}")
    await assert_both_workers_serve(srv)
    alice, bob = await new_user(make_user, "alice"), await new_user(make_user, "bob")
    a, b = fresh_address(), fresh_address()

    attempts = [visitors(srv, address) for address in (a, b) for _ in range(limit - 1)]
    responses = await asyncio.gather(*(v.try_login(alice.username, "wrong") for v in attempts))
    assert {r.status_code for r in responses} <= {200, 429}  # never logged in

    locked = await visitors(srv).try_login(alice.username, PASSWORD)
    assert_lockout_page(locked)
    bob_from_a = await visitors(srv, a).try_login(bob.username, PASSWORD)
    assert bob_from_a.status_code == 302


async def test_login_lockout_per_address_across_usernames(
    make_server: MakeServer, visitors: Callable[..., Visitor], make_user: Callable[..., User]
) -> None:
    limit = 4
    srv = make_server(workers=2, CHAT_LOGIN_FAILURE_LIMIT=f"{limit}/{LONG}")
    await assert_both_workers_serve(srv)
    carol = await new_user(make_user, "carol")
    a = fresh_address()
    names = [unique("guess") for _ in range(limit)]
    await asyncio.gather(*(visitors(srv, a).try_login(name, "wrong") for name in names))

    assert_lockout_page(await visitors(srv, a).try_login(carol.username, PASSWORD))
    assert (await visitors(srv).try_login(carol.username, PASSWORD)).status_code == 302


async def test_login_lockout_uses_the_header_only_when_trusted(
    make_server: MakeServer, visitors: Callable[..., Visitor], make_user: Callable[..., User]
) -> None:
    """Untrusted, a rotating X-Forwarded-For does not escape the per-address lockout; trusted
    (one proxy), the header's address is the one locked out, and another client behind the
    same proxy is not."""
    limit = 3
    carol = await new_user(make_user, "carol")

    plain = make_server(CHAT_LOGIN_FAILURE_LIMIT=f"{limit}/{LONG}")
    a = fresh_address()
    for i in range(limit):
        await visitors(plain, a).try_login(unique("g"), "wrong", forwarded_for=f"192.0.2.{i}")
    rotated = await visitors(plain, a).try_login(
        carol.username, PASSWORD, forwarded_for="192.0.2.99"
    )
    assert_lockout_page(rotated)

    proxied = make_server(
        CHAT_LOGIN_FAILURE_LIMIT=f"{limit}/{LONG}",
        CHAT_CLIENT_ADDRESS_HEADER="X-Forwarded-For",
    )
    proxy = fresh_address()
    attacker, neighbour = "198.51.100.7", "198.51.100.8"
    for _ in range(limit):
        await visitors(proxied, proxy).try_login(
            unique("g"), "wrong", forwarded_for=f"1.2.3.4, {attacker}"
        )
    locked = await visitors(proxied, proxy).try_login(
        carol.username, PASSWORD, forwarded_for=attacker
    )
    assert_lockout_page(locked)
    fine = await visitors(proxied, proxy).try_login(
        carol.username, PASSWORD, forwarded_for=neighbour
    )
    assert fine.status_code == 302


def assert_lockout_page(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text[:300]
    assert 1 <= int(response.headers["Retry-After"]) <= LONG
    assert "Too many failed log-ins" in response.text
    assert 'name="username"' in response.text  # the log-in form, styled, not a bare 403
    assert "sessionid" not in response.cookies


# -- the pieces, without a server -------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "proxies", "remote", "sent", "counted"),
    [
        ("", 1, "192.0.2.1", "198.51.100.1", "192.0.2.1"),  # not trusted: the socket
        ("X-Forwarded-For", 1, "10.0.0.1", "6.6.6.6, 198.51.100.1", "198.51.100.1"),
        ("X-Forwarded-For", 2, "10.0.0.1", "6.6.6.6, 198.51.100.1, 10.0.0.2", "198.51.100.1"),
        ("X-Forwarded-For", 2, "10.0.0.1", "198.51.100.1", "198.51.100.1"),  # fewer entries
        ("X-Forwarded-For", 1, "10.0.0.1", "", "10.0.0.1"),  # the proxy did not set it
        ("X-Forwarded-For", 1, "10.0.0.1", "not-an-address", "10.0.0.1"),
        ("X-Real-IP", 1, "10.0.0.1", "198.51.100.1", "198.51.100.1"),
        ("", 1, "2001:db8:1:2:3:4:5:6", "", "2001:db8:1:2::"),  # IPv6: its /64
        ("", 1, "::ffff:192.0.2.9", "", "192.0.2.9"),
        ("", 1, "", "", "0.0.0.0"),  # no peer (a Unix socket)
    ],
)
def test_limited_address(header: str, proxies: int, remote: str, sent: str, counted: str) -> None:
    request = RequestFactory().get("/", REMOTE_ADDR=remote)
    if sent and header:
        request.META["HTTP_" + header.upper().replace("-", "_")] = sent
    elif sent:
        request.META["HTTP_X_FORWARDED_FOR"] = sent
    with override_settings(CHAT_CLIENT_ADDRESS_HEADER=header, CHAT_TRUSTED_PROXY_COUNT=proxies):
        assert limited_address(request) == counted


def test_ended_windows_are_pruned() -> None:
    ended, current = unique("ended"), unique("current")
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO chat_ratelimit VALUES (%s, now() - interval '2 min',"
            " now() - interval '1 min', 3)",
            [ended],
        )
    assert ratelimit.hit(current, ratelimit.Rate(1, LONG)) is None
    assert ratelimit.prune() >= 1
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM chat_ratelimit WHERE bucket = %s", [ended])
        assert cursor.fetchone() is None
        cursor.execute("SELECT hits FROM chat_ratelimit WHERE bucket = %s", [f"{current}/{LONG}"])
        assert cursor.fetchone() == (1,)


def test_a_rate_must_be_positive() -> None:
    with pytest.raises(ValueError, match="1 or more"):
        ratelimit.Rate(0, 10)
