"""``chat.search.find`` for a phrase whose words are common (FIND's branch 1b, a walk below
the window before the index), on the real test database: the same answers, newest first,
paged, as through the index alone, and the walk chosen only for a phrase the statistics
call dense. Run on a direct connection, with the window shrunk so the walk and the index
both have rows to find (the HTTP tests in tests/test_search.py run every search twice with
a window of 5,000 and of 2)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest

from chat import search

from .helpers import unique


def word() -> str:
    return "p" + uuid.uuid4().hex[:12]


@pytest.fixture
async def conn(db_url: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    async with await psycopg.AsyncConnection.connect(
        db_url, autocommit=True, prepare_threshold=None
    ) as conn:
        yield conn


async def test_a_dense_phrase_walks_and_finds_what_the_index_finds(
    conn: psycopg.AsyncConnection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    room = unique("walk")
    a, b = word(), word()
    await conn.execute(
        "INSERT INTO chat_room (slug, title, is_private) VALUES (%s, 'W', false)", (room,)
    )
    texts = [
        f"{a} {b} one" if n % 3 == 0 else f"{b} {a} not the phrase" if n % 3 == 1 else "other"
        for n in range(60)
    ]
    ids = []
    for text in texts:
        cur = await conn.execute(
            "INSERT INTO chat_chatmessage (room_id, author, text) VALUES (%s, 'ops', %s)"
            " RETURNING id",
            (room, text),
        )
        row = await cur.fetchone()
        assert row is not None
        ids.append(row[0])
    await conn.execute("ANALYZE chat_chatmessage")  # the statistics the choice reads
    expected = [i for i, text in zip(ids, texts, strict=True) if text.endswith("one")][::-1]
    query = f'"{a} {b}"'

    async def pages(window: int) -> tuple[bool, list[int]]:
        wanted = search.Search(query, None, room, limit=4, window=window)
        walk = (await search.check(conn, wanted)).walk
        found: list[int] = []
        before = None
        while True:
            page = await search.find(
                conn, search.Search(query, None, room, before, limit=4, window=window)
            )
            found += [result["id"] for result in page["results"]]
            if (before := page["next_before"]) is None:
                return walk, found

    # A walk of any length counts every phrase dense: each page comes from the window, the
    # walk, or the index below it.
    monkeypatch.setattr(search, "PHRASE_WALK_IDS", 10**12)
    for window in (2, 5, 5000):
        walk, found = await pages(window)
        assert walk
        assert found == expected, window
    # Short walks: their lower edge at every position in the room, so a message at the edge
    # is found once, by the walk or by the index below it.
    monkeypatch.setattr(search, "PHRASE_ADJACENT", 10**-12)
    for length in range(1, 9):
        monkeypatch.setattr(search, "PHRASE_WALK_IDS", length)
        walk, found = await pages(2)
        assert walk
        assert found == expected, length
    # A phrase of words the statistics call rare: straight to the index.
    monkeypatch.setattr(search, "PHRASE_WALK_IDS", 1)
    monkeypatch.setattr(search, "PHRASE_ADJACENT", 10)
    walk, found = await pages(2)
    assert not walk
    assert found == expected
    # A single word is never walked (only phrases: the index is exact for words).
    one = search.Search(a, None, room, window=2)
    monkeypatch.setattr(search, "PHRASE_WALK_IDS", 10**12)
    assert not (await search.check(conn, one)).walk
