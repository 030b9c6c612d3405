"""``python -m bench.workspace_queries`` at a tiny size, so the /me/rooms benchmark cannot
rot: it runs, lists every room, and its bulk load (the triggers off, their rows written in
bulk) gives exactly the answers of a load through the real triggers. Timings are not
asserted: they depend on the machine (`make bench` reports them)."""

from __future__ import annotations

from typing import Any

from .servers import run_bench

ROOMS, MESSAGES = 4, 1000  # 250 a room: more unread than the cap of 100


def workspace_bench(db_url: str, *extra: str) -> dict[str, Any]:
    argv = ["--rooms", str(ROOMS), "--messages", str(MESSAGES), "--samples", "3", *extra]
    summary: dict[str, Any] = run_bench(db_url, "bench.workspace_queries", *argv)
    return summary


def answers(summary: dict[str, Any]) -> dict[str, tuple[Any, ...]]:
    return {
        row["reading"]: (
            row["rooms_listed"],
            row["unread_total"],
            row["mentions_total"],
            row["answers_digest"],
        )
        for row in summary["results"]
    }


def test_the_workspace_bench_runs_and_its_load_matches_the_triggers(db_url: str) -> None:
    bulk = workspace_bench(db_url)
    through_triggers = workspace_bench(db_url, "--via-triggers")
    assert answers(bulk) == answers(through_triggers)
    by_reading = answers(bulk)
    assert by_reading["behind"][:2] == (ROOMS, ROOMS * 100)  # every room counts to the cap
    assert by_reading["behind"][2] > 0  # and has mentions
    assert 0 < by_reading["caught-up"][1] <= ROOMS * 20
    assert {row["p95_ms"] > 0 for row in bulk["results"]} == {True}
