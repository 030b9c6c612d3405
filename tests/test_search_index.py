"""The search index's text search configuration: ``manage.py search_reindex`` switches it to
``CHAT_SEARCH_CONFIG`` (the column, its index and ``chat_search_config()`` together), on a
scratch database so the shared test database keeps ``simple``; a real server then finds
by stems, and a psql write is found at once with the new configuration."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator

import httpx
import psycopg
import pytest

from bench.workspace_queries import create_scratch, drop_scratch

from .servers import PROJECT_DIR, Server, insert_sql


@pytest.fixture
def scratch(db_url: str) -> Iterator[str]:
    url = create_scratch(db_url)  # a new database, migrated: the index built with simple
    yield url
    drop_scratch(db_url, url)


def reindex(url: str, config: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", "search_reindex", *args],
        cwd=PROJECT_DIR,
        env={**os.environ, "DATABASE_URL": url, "CHAT_SEARCH_CONFIG": config},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )


def matches(url: str, q: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM chat_chatmessage"
            " WHERE search_vector @@ websearch_to_tsquery(chat_search_config(), %s)",
            (q,),
        ).fetchone()
    assert row is not None
    return int(row[0])


def config_of(url: str) -> str:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT chat_search_config()::text").fetchone()
    assert row is not None
    return str(row[0])


@pytest.mark.slow
def test_switching_the_configuration_is_a_reindex(
    scratch: str, make_server: Callable[..., Server]
) -> None:
    with psycopg.connect(scratch, autocommit=True) as conn:
        conn.execute("INSERT INTO chat_room (slug) VALUES ('stems')")
        conn.execute(insert_sql("stems", "the cats were running"))
    assert config_of(scratch) == "simple"
    assert (matches(scratch, "cats"), matches(scratch, "run")) == (1, 0)  # words as written

    check = reindex(scratch, "english", "--check")
    assert check.returncode == 1
    assert "uses simple; CHAT_SEARCH_CONFIG is english" in check.stderr

    switched = reindex(scratch, "english")
    assert switched.returncode == 0, switched.stderr
    assert "now uses english (it used simple)" in switched.stdout
    assert config_of(scratch) == "english"
    assert (matches(scratch, "run"), matches(scratch, "cat")) == (1, 1)  # stemmed

    with psycopg.connect(scratch, autocommit=True) as conn:  # a psql write, found at once
        conn.execute(insert_sql("stems", "she jumped"))
    assert matches(scratch, "jumps") == 1

    server = make_server(scratch)
    answer = httpx.get(f"{server.url}/search", params={"q": "running cat"}, timeout=30)
    assert answer.status_code == 200, answer.text
    assert [r["text"] for r in answer.json()["results"]] == ["the cats were running"]

    unknown = reindex(scratch, "klingon")
    assert unknown.returncode != 0
    assert 'text search configuration "klingon" does not exist' in unknown.stderr
    assert config_of(scratch) == "english"  # nothing changed
    again = reindex(scratch, "english")
    assert (again.returncode, again.stdout.strip()) == (
        0,
        "the search index uses english, as configured",
    )
