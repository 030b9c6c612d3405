"""``GET /search`` against a real server and real psql: web-search syntax, paging, snippets
that are plain text, only what the user may read (private rooms, a removed member, deleted
and edited messages), psql writes found at once, every bad input a 4xx, the rate limit, and
``GET /rooms/<slug>/messages?around=<id>`` for opening a result in context.

Every test searches for words made up for it (``word()``), so other tests' messages in the
shared database never answer.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User

from chat.models import Room

from .helpers import running_servers, unique
from .servers import (
    Browserless,
    Server,
    insert_sql,
    psql,
    wait_for_server_backends_gone,
)
from .workspace_clients import logged_in, post_message


@pytest.fixture(scope="module", params=["window-5000", "window-2"])
def server(request: pytest.FixtureRequest, db_url: str) -> Iterator[Server]:
    """Each test twice: with the default window, where the tests' few messages are found
    row by row, and with a window of two, where nearly everything is found through the GIN
    index (chat/search.py ``FIND``, branch 2)."""
    before = running_servers(db_url)
    window = request.param.removeprefix("window-")
    srv = Server(db_url, env={"CHAT_SEARCH_WINDOW": window}).start()
    yield srv
    srv.stop()
    wait_for_server_backends_gone(db_url, running=before)


def word() -> str:
    """A word no other message holds (one token to the text search parser)."""
    return "w" + uuid.uuid4().hex[:12]


async def search(client: httpx.AsyncClient, q: str, **params: Any) -> dict[str, Any]:
    response = await client.get("/search", params={"q": q, **params})
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def found_ids(client: httpx.AsyncClient, q: str, **params: Any) -> list[int]:
    return [result["id"] for result in (await search(client, q, **params))["results"]]


@pytest.fixture
def private_room() -> Room:
    return Room.objects.create(slug=unique("private"), is_private=True)


async def make(make_user: Callable[..., User], prefix: str, **kw: Any) -> User:
    return await sync_to_async(make_user)(prefix, **kw)


# -- the API ---------------------------------------------------------------------------------


async def test_web_search_syntax_newest_first_with_snippets(
    server: Server, alice: Browserless, room: Room
) -> None:
    a, b, c = word(), word(), word()
    texts = [f"{a} {b} first", f"{b} {a} second", f"{a} only", f"{c} alone"]
    posted = [await post_message(alice, room.slug, text) for text in texts]
    ids = [message["id"] for message in posted]
    client = alice.client
    assert await found_ids(client, a) == [ids[2], ids[1], ids[0]]  # newest first
    assert await found_ids(client, f'"{a} {b}"') == [ids[0]]  # a phrase: in that order
    assert await found_ids(client, f"{a} -{b}") == [ids[2]]  # minus
    assert await found_ids(client, f"{a} {b}") == [ids[1], ids[0]]  # all the words
    assert await found_ids(client, f"{b} or {c}") == [ids[3], ids[1], ids[0]]
    assert await found_ids(client, a.upper()) == [ids[2], ids[1], ids[0]]  # case folded
    result = (await search(client, c))["results"][0]
    assert set(result) == {"id", "room", "author", "text", "created_at", "snippet"}
    assert result | {"snippet": None} == {
        "id": ids[3],
        "room": room.slug,
        "author": posted[3]["author"],
        "text": f"{c} alone",
        "created_at": posted[3]["created_at"],
        "snippet": None,
    }
    assert result["snippet"] == [{"text": c, "match": True}, {"text": " alone", "match": False}]
    assert await found_ids(client, a, room=room.slug) == [ids[2], ids[1], ids[0]]


async def test_paging_with_before_and_next_before(alice: Browserless, room: Room) -> None:
    w = word()
    ids = [(await post_message(alice, room.slug, f"{w} number {i}"))["id"] for i in range(5)]
    first = await search(alice.client, w, limit=2)
    assert [r["id"] for r in first["results"]] == [ids[4], ids[3]]
    assert first["next_before"] == ids[3]
    second = await search(alice.client, w, limit=2, before=first["next_before"])
    assert [r["id"] for r in second["results"]] == [ids[2], ids[1]]
    last = await search(alice.client, w, limit=2, before=second["next_before"])
    assert [r["id"] for r in last["results"]] == [ids[0]]
    assert last["next_before"] is None
    exact = await search(alice.client, w, limit=5)
    assert len(exact["results"]) == 5
    assert exact["next_before"] is None


async def test_snippets_are_plain_text_parts(db_url: str, alice: Browserless, room: Room) -> None:
    w, decoy = word(), word()
    # Markup is text to a snippet; the marker characters a message might hold cannot fake
    # a match (psql can write any character).
    await psql(
        db_url,
        "INSERT INTO chat_chatmessage (room_id, author, text) VALUES "
        f"('{room.slug}', 'ops', E'\\x02{decoy}\\x03 says \"{w}\" & <i>x</i> 1 < 2')",
    )
    (result,) = (await search(alice.client, w))["results"]
    parts = result["snippet"]
    assert [part["text"] for part in parts if part["match"]] == [w]
    assert all(set(part) == {"text", "match"} for part in parts)
    joined = "".join(part["text"] for part in parts)
    assert decoy in joined
    assert "\x02" not in joined
    assert "\x03" not in joined
    assert "&" in joined
    assert "&amp;" not in joined
    assert result["text"].startswith("\x02")  # the message itself is as written


async def test_a_long_message_gets_a_short_snippet(alice: Browserless, room: Room) -> None:
    w = word()
    filler = " ".join(f"f{i}" for i in range(200))
    await post_message(alice, room.slug, f"{filler} here is {w} in the middle {filler}")
    (result,) = (await search(alice.client, w))["results"]
    snippet = "".join(part["text"] for part in result["snippet"])
    assert w in snippet
    assert len(snippet.split()) <= 40


# -- only what the user may read -------------------------------------------------------------


async def test_private_rooms_are_searched_by_their_readers_only(
    server: Server, make_user: Callable[..., User], room: Room, private_room: Room
) -> None:
    member, outsider = await make(make_user, "member"), await make(make_user, "outsider")
    staff = await make(make_user, "staff", staff=True)
    await private_room.members.aadd(member)
    w = word()
    async with logged_in(server, member) as as_member:
        secret = await post_message(as_member, private_room.slug, f"{w} secret")
        public = await post_message(as_member, room.slug, f"{w} public")
        assert await found_ids(as_member.client, w) == [public["id"], secret["id"]]
        assert await found_ids(as_member.client, w, room=private_room.slug) == [secret["id"]]
    async with logged_in(server, outsider) as as_outsider:
        answer = await search(as_outsider.client, w)
        assert [r["id"] for r in answer["results"]] == [public["id"]]
        assert answer["next_before"] is None
        assert "secret" not in str(answer)
        # Asking for the room by name: as if it did not exist, like every other route
        refused = await as_outsider.client.get(
            "/search", params={"q": w, "room": private_room.slug}
        )
        nowhere = unique("none")
        missing = await as_outsider.client.get("/search", params={"q": w, "room": nowhere})
        assert (refused.status_code, missing.status_code) == (404, 404)
        said = refused.json()["error"].replace(private_room.slug, "X")
        assert said == missing.json()["error"].replace(nowhere, "X")
    async with logged_in(server, staff) as as_staff:  # staff read every room
        assert await found_ids(as_staff.client, w) == [public["id"], secret["id"]]
    async with Browserless(server.url) as anonymous:  # logged out: the public rooms
        assert await found_ids(anonymous.client, w) == [public["id"]]
        refused = await anonymous.client.get("/search", params={"q": w, "room": private_room.slug})
        assert refused.status_code == 404
        for odd in ("\x00", "a b", "x" * 51, "<script>"):
            response = await anonymous.client.get("/search", params={"q": w, "room": odd})
            assert response.status_code == 404, (odd, response.text)


async def test_a_removed_member_finds_nothing_there_afterwards(
    server: Server, db_url: str, make_user: Callable[..., User], private_room: Room
) -> None:
    member = await make(make_user, "member")
    await private_room.members.aadd(member)
    w = word()
    async with logged_in(server, member) as client:
        posted = await post_message(client, private_room.slug, f"{w} before removal")
        assert await found_ids(client.client, w) == [posted["id"]]
        await psql(
            db_url,
            f"DELETE FROM chat_room_members WHERE room_id = '{private_room.slug}'"
            f" AND user_id = {member.pk}",
        )
        # The same session, at once: the rule is asked at every search
        assert await found_ids(client.client, w) == []
        gone = await client.client.get("/search", params={"q": w, "room": private_room.slug})
        assert gone.status_code == 404
        # A room made private after the fact is also closed to those who are not members
        other = await make(make_user, "other")
    async with logged_in(server, other) as client:
        public = await sync_to_async(Room.objects.create)(slug=unique("room"))
        await post_message(client, public.slug, f"{w} soon private")
        assert len(await found_ids(client.client, w)) == 1
        await psql(db_url, f"UPDATE chat_room SET is_private = true WHERE slug = '{public.slug}'")
        assert await found_ids(client.client, w) == []


async def test_deleted_messages_are_never_found(
    server: Server, db_url: str, alice: Browserless, room: Room
) -> None:
    w = word()
    kept = await post_message(alice, room.slug, f"{w} kept")
    by_api = await post_message(alice, room.slug, f"{w} deleted through the API")
    by_psql = await post_message(alice, room.slug, f"{w} deleted in psql")
    hard = await post_message(alice, room.slug, f"{w} hard deleted")
    assert len(await found_ids(alice.client, w)) == 4
    response = await alice.request("DELETE", f"/rooms/{room.slug}/messages/{by_api['id']}")
    assert response.status_code == 200, response.text
    await psql(
        db_url,
        f"UPDATE chat_chatmessage SET deleted_at = now() WHERE id = {by_psql['id']}",
        f"DELETE FROM chat_chatmessage WHERE id = {hard['id']}",
    )
    assert await found_ids(alice.client, w) == [kept["id"]]
    assert await found_ids(alice.client, f'"{w} deleted"') == []


async def test_an_edited_message_is_found_by_its_new_text_only(
    server: Server, db_url: str, alice: Browserless, room: Room
) -> None:
    old, new, psql_old, psql_new = word(), word(), word(), word()
    message = await post_message(alice, room.slug, f"{old} as first written")
    response = await alice.request(
        "PATCH", f"/rooms/{room.slug}/messages/{message['id']}", json={"text": f"{new} now"}
    )
    assert response.status_code == 200, response.text
    assert await found_ids(alice.client, old) == []
    (result,) = (await search(alice.client, new))["results"]
    assert (result["id"], result["text"]) == (message["id"], f"{new} now")
    other = await post_message(alice, room.slug, f"{psql_old} typed")
    await psql(db_url, f"UPDATE chat_chatmessage SET text = '{psql_new}' WHERE id = {other['id']}")
    assert await found_ids(alice.client, psql_old) == []
    assert await found_ids(alice.client, psql_new) == [other["id"]]


async def test_a_psql_insert_is_found_at_once(
    server: Server, db_url: str, alice: Browserless, room: Room
) -> None:
    w = word()
    await psql(db_url, insert_sql(room.slug, f"typed into psql: {w}"))
    (result,) = (await search(alice.client, w))["results"]
    assert (result["room"], result["author"]) == (room.slug, "ops")


# -- bad input -------------------------------------------------------------------------------


async def test_bad_queries_are_clear_400s(alice: Browserless, room: Room) -> None:
    w = word()
    await post_message(alice, room.slug, f"{w} exists")
    refusals = {
        "": "q is required",
        "   ": "q is required",
        "x" * 10_000: "too long",
        "y" * 257: "too long",
        "!!! ... ---": "no words",
        f"-{w}": "not only words to leave out",
        f"-{w} -other": "not only words to leave out",
        f"{w} or -other": "not only words to leave out",
        f"{w}\x00": "NUL",
    }
    for q, reason in refusals.items():
        response = await alice.client.get("/search", params={"q": q})
        assert response.status_code == 400, (q[:20], response.text)
        assert reason in response.json()["error"], (q[:20], response.json())
    missing = await alice.client.get("/search")
    assert missing.status_code == 400
    assert "q is required" in missing.json()["error"]
    for params in (
        {"limit": "0"},
        {"limit": "51"},
        {"limit": "many"},
        {"before": "0"},
        {"before": "-5"},
        {"before": "1e3"},
        {"before": "9" * 30},
    ):
        response = await alice.client.get("/search", params={"q": w, **params})
        assert response.status_code == 400, (params, response.text)
        assert "error" in response.json()
    wrong = await alice.request("POST", "/search", params={"q": w})
    assert (wrong.status_code, wrong.headers["Allow"]) == (405, "GET")


ABSURD = [
    '"', '""', '"""', "'", "''", "(", ")", "()", "&", "|", "!", "<->", "<2>", ":*", "a:*",
    "a & | b", "!!a", "a <-> <-> b", "or", "or or or", "and", "-", "--", "- -", '"-"',
    '"a or b"', 'a "b -c" or', "\\", "\\'", "%", "%%", "%s", "%(q)s", "{}", "$1", "';--",
    "); DROP TABLE chat_chatmessage; --", "\u200b", "é", "日本語", "🙂", "a\tb\nc", "\x1f",
    "\x02", "\x03", "a" * 256, "- " * 100, '"' * 256,
]  # fmt: skip


async def test_absurd_queries_never_500(alice: Browserless, room: Room) -> None:
    for q in ABSURD:
        response = await alice.client.get("/search", params={"q": q})
        assert response.status_code in (200, 400), (q, response.status_code, response.text)
        body = response.json()
        assert ("results" in body) if response.status_code == 200 else ("error" in body)
    assert await found_ids(alice.client, word()) == []  # and the table is still there


async def test_searches_are_rate_limited(
    make_server: Callable[..., Server], make_user: Callable[..., User]
) -> None:
    limited = make_server(CHAT_RATELIMIT_SEARCHES="2/600")
    user = await make(make_user, "searcher")
    async with logged_in(limited, user) as client:
        statuses = [(await client.client.get("/search", params={"q": "x"})).status_code]
        statuses += [(await client.client.get("/search", params={"q": "y"})).status_code]
        over = await client.client.get("/search", params={"q": "z"})
        assert statuses == [200, 200]
        assert over.status_code == 429
        assert int(over.headers["Retry-After"]) >= 1
        assert "searching too fast" in over.json()["error"]
    async with Browserless(limited.url) as anonymous:  # counted per address
        codes = [(await anonymous.client.get("/search", params={"q": "x"})).status_code]
        codes += [(await anonymous.client.get("/search", params={"q": "x"})).status_code]
        codes += [(await anonymous.client.get("/search", params={"q": "x"})).status_code]
        assert codes == [200, 200, 429]


# -- a result in context ---------------------------------------------------------------------


async def test_messages_around_one(alice: Browserless, room: Room, private_room: Room) -> None:
    ids = [(await post_message(alice, room.slug, f"message {i}"))["id"] for i in range(9)]
    url = f"/rooms/{room.slug}/messages"
    around = (await alice.client.get(url, params={"around": ids[4], "limit": 5})).json()
    assert [m["id"] for m in around["messages"]] == ids[2:7]
    assert (around["room"], around["has_more"], around["has_newer"]) == (room.slug, True, True)
    latest = (await alice.client.get(url)).json()
    assert around["cursor"] == latest["cursor"]  # where a stream opened from here resumes
    assert around["messages"][2] == latest["messages"][4]  # the history's shape
    edge = (await alice.client.get(url, params={"around": ids[0], "limit": 4})).json()
    assert [m["id"] for m in edge["messages"]] == ids[0:2]
    assert (edge["has_more"], edge["has_newer"]) == (False, True)
    end = (await alice.client.get(url, params={"around": ids[8], "limit": 50})).json()
    assert [m["id"] for m in end["messages"]][-9:] == ids
    assert end["has_newer"] is False
    one = (await alice.client.get(url, params={"around": ids[3], "limit": 1})).json()
    assert [m["id"] for m in one["messages"]] == [ids[3]]
    cases: list[tuple[dict[str, Any], int]] = [
        ({"around": 10**12}, 404),  # no such message
        ({"around": "x"}, 400),
        ({"around": ids[0], "before": ids[1]}, 400),
        ({"around": ids[0], "after": 0}, 400),
        ({"around": "0"}, 400),
    ]
    for params, status in cases:
        response = await alice.client.get(url, params=params)
        assert response.status_code == status, (params, response.text)
    other = await sync_to_async(Room.objects.create)(slug=unique("room"))
    elsewhere = await post_message(alice, other.slug, "in another room")
    response = await alice.client.get(url, params={"around": elsewhere["id"]})
    assert response.status_code == 404  # a message of another room is not "around" here
    hidden = await alice.client.get(f"/rooms/{private_room.slug}/messages", params={"around": 1})
    assert hidden.status_code == 404
