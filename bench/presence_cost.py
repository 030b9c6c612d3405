"""``python -m bench.presence_cost``: what presence costs PostgreSQL at 10,000 open streams.

Drives one process's presence writer (chat/presence.py) the way the fan-out does, without
HTTP: ``--streams`` streams of ``--users`` users spread over ``--rooms`` rooms (each user
holds several streams, some on the same room: a second tab), against the project's database
(``DATABASE_URL``, else the embedded cluster; run ``make migrate`` first). It counts the
writing statements and the rows they touch, by phase:

- ``open``: every stream opens (one flush: one row per (room, user) pair, not per stream);
- ``heartbeat``: nothing changes for ``--beats`` heartbeats (one row each);
- ``churn``: ``--churn`` of the streams close and open again within one flush interval
  (a reconnect or a page reload: no transition, nothing to write);
- ``leave``: a tenth of the users close all their streams (one row per pair left);
- ``close``: the worker resigns (its row; the rest go by cascade).

Each phase's statements and rows come from the writer's own counters; their total (plus the
rows the resignation's cascade deletes) is checked against ``pg_stat_user_tables`` (inserted
+ updated + deleted on the two tables; an idle backend reports them within ~10 s, so only
the total is compared). Prints a table, then ONE line of JSON as the last line of stdout.
Each presence row written also rings a bell, but identical payloads in one transaction are
folded: a flush rings at most one notification per room it changed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
from collections.abc import Sequence
from typing import Any

STAT = """
    SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0)::bigint
    FROM pg_stat_user_tables WHERE relname IN ('chat_presence', 'chat_presence_worker')
"""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.presence_cost", description=__doc__)
    parser.add_argument("--streams", type=int, default=10_000)
    parser.add_argument("--users", type=int, default=2_500)
    parser.add_argument("--rooms", type=int, default=200)
    parser.add_argument("--beats", type=int, default=5)
    parser.add_argument("--churn", type=float, default=0.05, help="share of streams reopened")
    return parser.parse_args(argv)


async def stat_rows(conn: Any) -> int:
    cur = await conn.execute(STAT)
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def stat_reaches(conn: Any, expected: int, patience: float = 20.0) -> int:
    """pg_stat's count once it reaches ``expected`` (idle backends report late), or as it
    is after ``patience`` seconds."""
    give_up = time.monotonic() + patience
    while True:
        seen = await stat_rows(conn)
        if seen >= expected or time.monotonic() >= give_up:
            return seen
        await asyncio.sleep(0.5)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    import psycopg
    from django.conf import settings

    from chat import db
    from chat.presence import Presence

    await db.open_pool(settings.DATABASE_URL)
    stats = await psycopg.AsyncConnection.connect(settings.DATABASE_URL, autocommit=True)
    presence = Presence(expiry_seconds=30.0, flush_seconds=1.0)
    rng = random.Random(13)
    room_names = [f"bench-presence-{i}" for i in range(args.rooms)]
    streams = [
        (rng.choice(room_names), 10_000_000 + rng.randrange(args.users))
        for _ in range(args.streams)
    ]
    phases: list[dict[str, Any]] = []

    async def phase(name: str, act: Any, flushes: int = 1) -> None:
        before_stmts, before_rows = presence.statements, presence.rows
        started = time.perf_counter()
        act()
        for _ in range(flushes):
            presence._last_beat -= presence.heartbeat_seconds  # a heartbeat is due
            presence._last_sweep -= presence.heartbeat_seconds  # so is a sweep
            await presence.flush()
        elapsed = time.perf_counter() - started
        rows = presence.rows - before_rows
        phases.append(
            {
                "phase": name,
                "flushes": flushes,
                "statements": presence.statements - before_stmts,
                "rows": rows,
                "pairs": presence.pairs,
                "ms_per_flush": round(elapsed * 1000 / flushes, 1),
            }
        )

    def open_all() -> None:
        for room, user in streams:
            presence.enter(room, user)

    def churn() -> None:
        for room, user in rng.sample(streams, int(len(streams) * args.churn)):
            presence.leave(room, user)
            presence.enter(room, user)

    leaving = set(rng.sample(range(10_000_000, 10_000_000 + args.users), args.users // 10))

    def leave() -> None:
        for room, user in streams:
            if user in leaving:
                presence.leave(room, user)

    stat_start = await stat_rows(stats)
    try:
        await phase("open", open_all)
        await phase("heartbeat", lambda: None, flushes=args.beats)
        await phase("churn", churn)
        await phase("leave", leave)
    finally:
        pairs = presence.pairs
        await presence.stop()  # one DELETE of the worker's row; its pairs go by cascade
        phases.append(
            {"phase": "close", "flushes": 1, "statements": 1, "rows": 1 + pairs, "pairs": 0,
             "ms_per_flush": None}
        )  # fmt: skip
        expected = sum(p["rows"] for p in phases)
        pg_stat = await stat_reaches(stats, stat_start + expected) - stat_start
        await stats.close()
        await db.close_pool()
    beat = next(p for p in phases if p["phase"] == "heartbeat")
    return {
        "benchmark": "presence_cost",
        "streams": args.streams,
        "users": args.users,
        "rooms": args.rooms,
        "heartbeat_seconds": presence.heartbeat_seconds,
        "statements_per_heartbeat": beat["statements"] / beat["flushes"],
        "rows_per_heartbeat": beat["rows"] / beat["flushes"],
        "rows_total": expected,
        "rows_total_pg_stat": pg_stat,
        "phases": phases,
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    summary = asyncio.run(run(args))
    print(f"{'phase':<10} {'flushes':>7} {'statements':>10} {'rows':>7} {'pairs':>6} "
          f"{'ms/flush':>9}")  # fmt: skip
    for p in summary["phases"]:
        ms = "-" if p["ms_per_flush"] is None else f"{p['ms_per_flush']:.1f}"
        print(
            f"{p['phase']:<10} {p['flushes']:>7} {p['statements']:>10} {p['rows']:>7} "
            f"{p['pairs']:>6} {ms:>9}"
        )
    print(f"rows written: {summary['rows_total']}; pg_stat_user_tables: "
          f"{summary['rows_total_pg_stat']}")  # fmt: skip
    print(json.dumps(summary, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
