"""``python -m bench.saved_search_cost``: what live saved searches (``GET /search/events``)
cost the process that matches them: ``--searches`` (1,000) open saved searches while a
writer inserts ``--rate`` (10) messages a second.

In a scratch database next to the project's (``DATABASE_URL``, else the embedded cluster),
loaded as bench/search_queries.py loads it (``--rooms`` rooms, every fourth private; a
Zipf vocabulary; ``--messages`` messages), this process runs the server's own listener
(chat/listener.py, with chat/search_feeds.py) and registers the saved searches with it
directly, as ``GET /search/events`` does after its checks (no HTTP: the SSE writing is the
same for any stream, and is not matching). The queries are the four kinds of the search
bench in turn, from a vocabulary of 20,000 words: a word of the 200 commonest, a rarer
word, a two-word phrase, ``word -other``; every tenth limited to one room. A writer in
another process inserts the messages through the real triggers (real bells), each its
own transaction, words drawn from the same distribution, into every room.

Three phases of ``--seconds`` each, the same writer rate:

- ``none``: no saved search open (the listener only hears the bells): the baseline;
- ``unnest``: the shipped design, one statement per batch of bells for every saved search
  (``search_feeds.MATCHES``);
- ``per-query``: the alternative, one statement per distinct saved query per batch
  (``SELECT id ... WHERE id = ANY(new ids) AND search_vector @@ query``), patched in for
  this phase only, and cheaper than it would be in the server (no read rule, no snippet):
  a lower bound of its cost.

For each: this process's CPU (user + system, ``/proc/self``) per second of wall time,
the CPU spent in the saved searches' per-batch work (``SearchFeeds._read``: the statement,
parsing its rows, framing, buffering; thread CPU time), and the listener's PostgreSQL
backend's CPU (``/proc/<pid>``) per second; matches delivered; batches. The target
(issue 14): matching costs at most 20 % of the process's CPU, i.e. of the one core a
Python process's event loop can use. Prints a table, then ONE line of JSON as the last
line of stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import sys
import time
from collections.abc import Sequence
from typing import Any

import psycopg

from .runner import database_url
from .search_queries import backend_cpu, load, vocabulary
from .workspace_queries import create_scratch, drop_scratch

TARGET_SHARE = 0.20
PHASES = ("none", "unnest", "per-query")
PER_QUERY_FOUND = [0]  # matches the per-query phase found (it delivers none)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.saved_search_cost",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--searches", type=int, default=1000, help="open saved searches")
    add("--rate", type=float, default=10.0, help="inserts per second")
    add("--seconds", type=float, default=30.0, help="length of each phase")
    add("--rooms", type=int, default=200, help="rooms (every fourth private)")
    add("--messages", type=int, default=20_000, help="messages loaded before")
    add("--vocabulary", type=int, default=20_000, help="distinct words")
    add("--keep", action="store_true", help="keep the scratch database")
    add("--write", metavar="CONNINFO", help=argparse.SUPPRESS)  # the writer process
    args = parser.parse_args(argv)
    if min(args.searches, args.rate, args.seconds, args.messages) <= 0 or args.rooms < 4:
        parser.error("--rooms must be 4 or more; the other sizes positive")
    return args


def zipf_word(words: list[str], rng: random.Random) -> str:
    """Rank floor(V ^ u), u uniform: P(r) about ln(1 + 1/r) / ln V, as the load draws."""
    return words[min(len(words), math.floor(math.pow(len(words), rng.random()))) - 1]


def saved_queries(words: list[str], count: int, rooms: int) -> list[tuple[str, str | None]]:
    """``count`` (query, room or None) pairs, the four kinds in turn."""
    rng = random.Random(6)
    chosen: list[tuple[str, str | None]] = []
    for n in range(count):
        kind = n % 4
        if kind == 0:
            query = words[rng.randrange(200)]
        elif kind == 1:
            query = words[rng.randrange(200, len(words))]
        elif kind == 2:
            query = f'"{zipf_word(words, rng)} {zipf_word(words, rng)}"'
        else:
            query = f"{words[rng.randrange(200)]} -{words[rng.randrange(25)]}"
        room = f"room-{1 + rng.randrange(rooms)}" if n % 10 == 9 else None
        chosen.append((query, room))
    return chosen


def write(conninfo: str, rate: float, seconds: float, rooms: int) -> int:
    """The writer process: ``rate`` inserts a second for ``seconds``, through the triggers."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        words = [w for (w,) in conn.execute("SELECT word FROM bench_vocab ORDER BY rank")]
        row = conn.execute("SELECT id FROM auth_user WHERE username = 'bench-author-1'").fetchone()
        assert row is not None
        rng = random.Random(10)
        start = time.monotonic()
        n = 0
        while (due := start + n / rate) < start + seconds:
            time.sleep(max(0.0, due - time.monotonic()))
            text = " ".join(zipf_word(words, rng) for _ in range(4 + n % 12))
            conn.execute(
                "INSERT INTO chat_chatmessage (room_id, author, sender_id, text)"
                " VALUES (%s, 'bench-author-1', %s, %s)",
                (f"room-{1 + rng.randrange(rooms)}", row[0], text),
            )
            n += 1
    print(n, flush=True)
    return 0


def process_cpu() -> float:
    times = os.times()
    return times.user + times.system


async def matches_per_query(
    conn: psycopg.AsyncConnection[Any], since: Any, subs: Sequence[Any], **_: Any
) -> tuple[Any, list[tuple[int, int, int, bytes]]]:
    """The alternative design, for the ``per-query`` phase: the new creations (one
    statement), then one statement per distinct query. No read rule, no snippet."""
    from chat.position import Snapshot

    cur = await conn.execute(
        """SELECT pg_current_snapshot()::text,
                  array(SELECT c.message_id FROM chat_messagechange c
                        WHERE (c.txid >= %s::xid8 OR c.txid = ANY(%s::xid8[]))
                          AND c.op = 'created'
                          AND pg_visible_in_snapshot(c.txid, pg_current_snapshot()))""",
        (str(since.xmax), [str(t) for t in since.xip]),
    )
    row = await cur.fetchone()
    assert row is not None
    reached, ids = Snapshot.from_pg(row[0]), row[1]
    if ids:
        for query in sorted({sub.query for sub in subs}):
            cur = await conn.execute(
                "SELECT id FROM chat_chatmessage WHERE id = ANY(%s) AND deleted_at IS NULL"
                " AND search_vector @@ websearch_to_tsquery(chat_search_config(), %s)",
                (ids, query),
            )
            PER_QUERY_FOUND[0] += len(await cur.fetchall())
    return reached, []  # counted, not delivered: a lower bound of the design's cost


async def run_phase(
    phase: str, scratch: str, user_id: int, chosen: list[tuple[str, str | None]], args: Any
) -> dict[str, Any]:
    from chat import search_feeds
    from chat.listener import Listener
    from chat.subscription import Viewer

    listener = Listener(scratch, queue_size=10_000_000, heartbeat_seconds=15.0)
    spent = [0.0, 0]  # thread CPU seconds in SearchFeeds._read, batches
    original_read = search_feeds.SearchFeeds._read
    original_matches = search_feeds.matches

    async def timed_read(self: Any, conn: Any) -> None:
        start = time.thread_time()
        try:
            await original_read(self, conn)
        finally:
            spent[0] += time.thread_time() - start
            spent[1] += 1

    search_feeds.SearchFeeds._read = timed_read  # type: ignore[method-assign]
    if phase == "per-query":
        search_feeds.matches = matches_per_query
    try:
        await listener.start()
        assert await listener.wait_connected(10.0)
        subs = []
        if phase != "none":
            for query, room in chosen:
                sub, _ = await listener.searches.register(Viewer(user_id, None), query, room, None)
                subs.append(sub)
        async with await psycopg.AsyncConnection.connect(scratch, autocommit=True) as conn:
            cur = await conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = 'pgchat-listener'"
                " AND datname = current_database()"
            )
            row = await cur.fetchone()
        assert row is not None
        backend = int(row[0])
        writer = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.saved_search_cost", "--write", scratch,
            "--rate", str(args.rate), "--seconds", str(args.seconds), "--rooms", str(args.rooms),
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        spent[:] = [0.0, 0]
        PER_QUERY_FOUND[0] = 0
        cpu, db_cpu, wall = process_cpu(), backend_cpu(backend), time.monotonic()
        out, _ = await writer.communicate()
        await asyncio.sleep(1.0)  # the last bells
        wall = time.monotonic() - wall
        cpu, db_cpu = process_cpu() - cpu, backend_cpu(backend) - db_cpu
        inserted = int(out.decode().strip() or 0)
        matched = sum(len(sub._frames) for sub in subs) + PER_QUERY_FOUND[0]
    finally:
        search_feeds.SearchFeeds._read = original_read  # type: ignore[method-assign]
        search_feeds.matches = original_matches
        await listener.stop()
    return {
        "phase": phase,
        "searches": len(subs),
        "inserts": inserted,
        "seconds": round(wall, 1),
        "process_cpu_share": round(cpu / wall, 4),
        "matching_cpu_share": round(spent[0] / wall, 4),
        "matching_ms_per_batch": round(1000 * spent[0] / max(1, spent[1]), 2),
        "batches": spent[1],
        "db_backend_cpu_share": round(db_cpu / wall, 4),
        "matches_delivered": matched,
    }


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        f"{'phase':<10} {'searches':>8} {'inserts':>7} {'process CPU':>11} {'matching CPU':>12}"
        f" {'ms/batch':>8} {'DB backend CPU':>14} {'matches':>8}"
    )
    lines = [head]
    for r in rows:
        lines.append(
            f"{r['phase']:<10} {r['searches']:>8} {r['inserts']:>7}"
            f" {r['process_cpu_share']:>10.1%} {r['matching_cpu_share']:>12.1%}"
            f" {r['matching_ms_per_batch']:>8.2f} {r['db_backend_cpu_share']:>14.1%}"
            f" {r['matches_delivered']:>8}"
        )
    return "\n".join(lines)


async def measure(scratch: str, user_id: int, args: argparse.Namespace) -> list[dict[str, Any]]:
    from chat import db

    await db.open_pool(scratch)
    try:
        chosen = saved_queries(vocabulary(scratch), args.searches, args.rooms)
        return [await run_phase(phase, scratch, user_id, chosen, args) for phase in PHASES]
    finally:
        await db.close_pool()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.write:
        return write(args.write, args.rate, args.seconds, args.rooms)
    base = database_url()
    scratch = create_scratch(base, "saved_search")
    try:
        os.environ["DATABASE_URL"] = scratch
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
        import django

        django.setup()
        user_id = load(scratch, args)
        rows = asyncio.run(measure(scratch, user_id, args))
    finally:
        if args.keep:
            print(f"kept the scratch database: {scratch}", file=sys.stderr)
        else:
            drop_scratch(base, scratch)
    print(table(rows))
    shipped = next(r for r in rows if r["phase"] == "unnest")
    result = {
        "scenario": "saved-search-cost",
        "searches": args.searches,
        "rate": args.rate,
        "target_matching_cpu_share": TARGET_SHARE,
        "within_target": shipped["matching_cpu_share"] <= TARGET_SHARE,
        "results": rows,
    }
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
