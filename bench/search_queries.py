"""``python -m bench.search_queries``: how fast ``GET /search`` answers at a million messages,
how big its index is, and what the index costs writers.

Creates a scratch database next to the project's (``DATABASE_URL``, else the embedded
cluster), migrates it, and loads ``--rooms`` rooms (every fourth private) holding
``--messages`` messages with plain SQL (``generate_series``): each message 4 to 15 words
drawn from a made-up vocabulary of ``--vocabulary`` words with a Zipf-like distribution
(word of rank r with probability about ln(1 + 1/r) / ln V: the commonest in about 7 % of
draws, half the vocabulary seen a few dozen times). One in fifty is deleted. The measured
user may read the public rooms only (150 of 200); each private room has other members.

Then it times ``chat.search.find`` (what the view runs: the query check and the finding
statement with its snippets) on a connection set up like the server's read pool (no prepared
statements, so each run is planned), for ``--samples`` queries of four kinds in turn:

- ``common``: one of the 25 commonest words;
- ``rare``: the rarest word of a message picked at random (a word someone remembers);
- ``phrase``: two adjacent words of a message picked at random, quoted;
- ``minus``: a common word without another (``a -b``).

It reports p50/p95 per kind and overall, the results each kind found, and any result from a
room the user may not read (``leaks``; must be 0). It reports the index's size (the GIN
index and the stored vectors), and the insert throughput through the real triggers with the
search column and index and without them (both dropped), in alternating rounds (with,
without, with, without: the column and index are built again in between), each round after
a CHECKPOINT: single-row INSERTs each its own transaction (as the web writes; mostly the
commit's flush), then as many in one transaction (the CPU a row costs). The GIN index's
pending list is flushed inside the timing (``gin_clean_pending_list``), so its deferred cost
is counted. ``--explain`` prints ``EXPLAIN (ANALYZE, BUFFERS)`` of one query per kind to stderr.

The bulk load runs with the message triggers off and writes the log and live messages the
way the triggers would (see bench/workspace_queries.py: a million NOTIFYs in one transaction
would only measure the notification queue); the GIN index is built after the load, as
``CREATE INDEX`` does it faster than a million inserts. Prints a table, then ONE line of
JSON as the last line of stdout. Targets (issue 14): p95 <= 50 ms; the index costs writers
at most 15 %.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import psycopg

from chat import search, search_index

from .report import columns_table
from .runner import database_url
from .workspace_queries import AS_THE_TRIGGERS_WOULD, create_scratch, drop_scratch

USER = "bench-searcher"
AUTHORS = 20
TARGET_P95_MS = 50.0
TARGET_WRITER_COST = 0.15
WARM_UP_RUNS = 5
KINDS = ("common", "rare", "phrase", "minus")
SYLLABLES = [
    "ka", "lo", "mi", "ne", "su", "ta", "ri", "po", "da", "fe", "gu", "hi", "jo", "ku", "la",
    "me", "no", "pa", "qu", "ro", "se", "ti", "vo", "wa", "xe", "yu", "zo", "be", "ci", "du",
    "ga", "he",
]  # fmt: skip
assert len(set(SYLLABLES)) == len(SYLLABLES) == 32  # two letters each: words are unique

SETUP = [
    "DELETE FROM chat_room WHERE slug = 'lobby'",
    """INSERT INTO auth_user (username, password, is_superuser, first_name, last_name, email,
                              is_staff, is_active, date_joined)
       SELECT name, '!', false, '', '', '', false, true, now()
       FROM (SELECT %(user)s UNION ALL
             SELECT 'bench-author-' || i FROM generate_series(1, %(authors)s) AS i) AS u(name)""",
    """INSERT INTO chat_room (slug, title, is_private)
       SELECT 'room-' || i, 'Room ' || i, i %% 4 = 0 FROM generate_series(1, %(rooms)s) AS i""",
    # The user joins the public rooms; the private ones have two authors each, not the user.
    """INSERT INTO chat_room_members (room_id, user_id)
       SELECT r.slug, u.id FROM chat_room r JOIN auth_user u
         ON CASE WHEN r.is_private
                 THEN u.username IN ('bench-author-' || (1 + (hashtext(r.slug) & 15)),
                                     'bench-author-' || (17 + (hashtext(r.slug) & 3)))
                 ELSE u.username = %(user)s END""",
    # Word of rank r (1 = commonest): its base-32 digits as syllables, at least two.
    """CREATE TABLE bench_vocab AS
       SELECT r AS rank, (SELECT string_agg(
                 (%(syllables)s::text[])[1 + (r / (32 ^ d)::int) %% 32], '' ORDER BY d)
              FROM generate_series(0, greatest(1, floor(log(32, r))::int)) AS d) AS word
       FROM generate_series(1, %(vocabulary)s) AS r""",
    "SELECT setseed(0.1402)",  # the same messages at each size, run after run
    # Message i is the (i / rooms)-th of room 1 + i %% rooms; its k-th word has rank
    # floor(V ^ random()): P(r) = ln(1 + 1/r) / ln V, a Zipf law of exponent 1.
    """INSERT INTO chat_chatmessage (room_id, author, sender_id, text, deleted_at)
       SELECT 'room-' || (1 + i %% %(rooms)s), u.username, u.id,
              -- k in the argument: an aggregate of outer columns only would be the outer's
              (SELECT string_agg(v.words[least(%(vocabulary)s,
                                               k * 0 + floor(%(vocabulary)s ^ random())::int)],
                                 ' ' ORDER BY k)
               FROM generate_series(1, 4 + (i * 7) %% 12) AS k),
              CASE WHEN i %% 50 = 3 THEN now() END
       FROM generate_series(1, %(messages)s) AS i
       CROSS JOIN (SELECT array_agg(word ORDER BY rank) AS words FROM bench_vocab) AS v
       JOIN auth_user u ON u.username = 'bench-author-' || (1 + i %% %(authors)s)
       ORDER BY i""",
]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.search_queries",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--rooms", type=int, default=200, help="rooms (every fourth private, not readable)")
    add("--messages", type=int, default=1_000_000, help="messages in those rooms, in all")
    add("--vocabulary", type=int, default=20_000, help="distinct words")
    add("--samples", type=int, default=200, help="timed queries, the four kinds in turn")
    add("--inserts", type=int, default=2000, help="timed single-row INSERTs per state")
    add("--explain", action="store_true", help="EXPLAIN (ANALYZE, BUFFERS) to stderr")
    add("--keep", action="store_true", help="keep the scratch database")
    args = parser.parse_args(argv)
    if min(args.rooms, args.messages, args.samples, args.inserts) < 1 or args.rooms < 4:
        parser.error("--rooms must be 4 or more; the other sizes positive")
    if args.vocabulary < 100:
        parser.error("--vocabulary must be 100 or more")
    return args


def load(scratch: str, args: argparse.Namespace) -> int:
    """Fill the scratch database; returns the measured user's id."""
    params = {
        "user": USER,
        "authors": AUTHORS,
        "rooms": args.rooms,
        "messages": args.messages,
        "vocabulary": args.vocabulary,
        "syllables": SYLLABLES,
    }
    off, on = (f"ALTER TABLE chat_chatmessage {how} TRIGGER USER" for how in ("DISABLE", "ENABLE"))
    with psycopg.connect(scratch, autocommit=True) as conn:  # each statement commits
        conn.execute(f"DROP INDEX {search_index.INDEX}")
        conn.execute(off)
        for statement in SETUP:
            conn.execute(statement, params)
        conn.execute(on)
        for statement in AS_THE_TRIGGERS_WOULD:
            conn.execute(statement, params)
        conn.execute("SET maintenance_work_mem = '256MB'")
        conn.execute(
            f"CREATE INDEX {search_index.INDEX} ON chat_chatmessage"
            f" USING gin ({search_index.COLUMN}) WHERE deleted_at IS NULL"
        )
        conn.execute("VACUUM ANALYZE")  # as autovacuum would, in time: visibility map, stats
        row = conn.execute("SELECT id FROM auth_user WHERE username = %s", (USER,)).fetchone()
    assert row is not None
    return int(row[0])


def vocabulary(scratch: str) -> list[str]:
    with psycopg.connect(scratch) as conn:
        return [word for (word,) in conn.execute("SELECT word FROM bench_vocab ORDER BY rank")]


def queries(
    scratch: str, words: list[str], readable: set[str], samples: int
) -> list[tuple[str, str]]:
    """``samples`` (kind, query) pairs, the kinds in turn, from words and from messages the
    user may read (what someone remembers having seen)."""
    rank = {word: r for r, word in enumerate(words, start=1)}
    picker = random.Random(14)
    with psycopg.connect(scratch) as conn:
        texts = [
            text
            for (text,) in conn.execute(
                "SELECT text FROM chat_chatmessage WHERE deleted_at IS NULL"
                " AND room_id = ANY(%s) AND id %% 97 = 5 ORDER BY id LIMIT %s",
                (sorted(readable), samples * 2),
            )
        ]
    chosen: list[tuple[str, str]] = []
    for n in range(samples):
        kind = KINDS[n % len(KINDS)]
        message = texts[n % len(texts)].split()
        if kind == "common":
            query = words[n % 25]
        elif kind == "rare":
            query = max(message, key=rank.__getitem__)
        elif kind == "phrase":
            at = picker.randrange(len(message) - 1)
            query = f'"{message[at]} {message[at + 1]}"'
        else:
            query = f"{words[n % 25]} -{words[(n + 1) % 5]}"
        chosen.append((kind, query))
    return chosen


async def measure(
    scratch: str, user_id: int, readable: set[str], chosen: list[tuple[str, str]], explain: bool
) -> list[dict[str, Any]]:
    async with await psycopg.AsyncConnection.connect(
        scratch,
        autocommit=True,
        prepare_threshold=None,  # as the read pool (chat/db.py)
    ) as conn:
        for _, query in chosen[:WARM_UP_RUNS]:
            await search.find(conn, search.Search(query, user_id))
        timings: dict[str, list[float]] = {kind: [] for kind in KINDS}
        found: dict[str, list[int]] = {kind: [] for kind in KINDS}
        leaks = 0
        for kind, query in chosen:
            start = time.perf_counter()
            answer = await search.find(conn, search.Search(query, user_id))
            timings[kind].append((time.perf_counter() - start) * 1000)
            found[kind].append(len(answer["results"]))
            leaks += sum(result["room"] not in readable for result in answer["results"])
        if explain:
            for kind in KINDS:
                query = next(q for k, q in chosen if k == kind)
                wanted = search.Search(query, user_id)
                walk = (await search.check(conn, wanted)).walk
                params = search.params(wanted, sorted(readable), walk)
                cur = await conn.execute("EXPLAIN (ANALYZE, BUFFERS) " + search.FIND, params)
                plan = "\n".join(row[0] for row in await cur.fetchall())
                print(f"--- {kind}: {query} ---\n{plan}", file=sys.stderr)
    rows = [summary(kind, timings[kind], found[kind]) for kind in KINDS if timings[kind]]
    every = [t for kind in KINDS for t in timings[kind]]
    rows.append(summary("all", every, [n for kind in KINDS for n in found[kind]]))
    rows[-1]["leaks"] = leaks
    return rows


def summary(kind: str, timings: list[float], found: list[int]) -> dict[str, Any]:
    timings = sorted(timings)
    return {
        "kind": kind,
        "queries": len(timings),
        "mean_results": round(statistics.mean(found), 1),
        "p50_ms": round(statistics.median(timings), 2),
        "p95_ms": round(timings[max(0, math.ceil(0.95 * len(timings)) - 1)], 2),
        "max_ms": round(timings[-1], 2),
    }


def sizes(scratch: str) -> dict[str, Any]:
    with psycopg.connect(scratch) as conn:
        row = conn.execute(
            f"""SELECT pg_relation_size('{search_index.INDEX}'),
                       (SELECT sum(pg_column_size({search_index.COLUMN})) FROM chat_chatmessage),
                       pg_table_size('chat_chatmessage'),
                       (SELECT sum(octet_length(text)) FROM chat_chatmessage)"""
        ).fetchone()
    assert row is not None
    mib = [round(int(value or 0) / 2**20, 1) for value in row]
    return dict(zip(["gin_index_mib", "vectors_mib", "table_mib", "texts_mib"], mib, strict=True))


class Cost(NamedTuple):
    """What a batch of inserts cost: wall-clock seconds, the server process's CPU seconds
    (from /proc, so the machine's other load hardly counts; 0 when the server is on another
    host), and WAL bytes written."""

    seconds: float
    cpu_seconds: float
    wal_bytes: int


def backend_cpu(pid: int) -> float:
    """User + system CPU seconds of a local server process (0.0 if not readable)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def insert_batch(
    scratch: str, texts: list[str], rooms: int, with_index: bool, *, one_transaction: bool
) -> Cost:
    """One INSERT statement a message, through every trigger, after a CHECKPOINT (so no
    checkpoint of earlier work runs meanwhile): each its own transaction (as the web
    writes: mostly the commit's flush), or all in one."""
    with psycopg.connect(scratch, autocommit=True) as conn:
        row = conn.execute(
            "SELECT id, pg_backend_pid() FROM auth_user WHERE username = 'bench-author-1'"
        ).fetchone()
        assert row is not None
        sender, pid = row
        conn.execute("CHECKPOINT")
        lsn = conn.execute("SELECT pg_current_wal_insert_lsn()").fetchone()
        cpu, start = backend_cpu(pid), time.perf_counter()
        with conn.transaction() if one_transaction else contextlib.nullcontext():
            for n, text in enumerate(texts):
                conn.execute(
                    "INSERT INTO chat_chatmessage (room_id, author, sender_id, text)"
                    " VALUES (%s, 'bench-author-1', %s, %s)",
                    (f"room-{1 + n % rooms}", sender, text),
                )
        if with_index:  # the deferred part of the index's cost, paid here
            conn.execute(f"SELECT gin_clean_pending_list('{search_index.INDEX}')")
        seconds, cpu = time.perf_counter() - start, backend_cpu(pid) - cpu
        wal = conn.execute(
            "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), %s)", (lsn[0] if lsn else None,)
        ).fetchone()
    return Cost(seconds, cpu, int(wal[0]) if wal else 0)


def set_index(scratch: str, present: bool) -> None:
    """Drop the search column and index, or build them again (a table rewrite)."""
    with psycopg.connect(scratch, autocommit=True) as conn:
        if present:
            conn.execute("SET maintenance_work_mem = '256MB'")
            conn.execute("DROP FUNCTION chat_search_config()")
            conn.execute(search_index.create_sql("simple"))
        else:
            conn.execute(f"DROP INDEX {search_index.INDEX}")
            conn.execute(f"ALTER TABLE chat_chatmessage DROP COLUMN {search_index.COLUMN}")


def writer_cost(scratch: str, words: list[str], args: argparse.Namespace) -> dict[str, Any]:
    """What the column and index cost writers: the same inserts with them and without them,
    in two rounds each, alternating (with, without, with, without), so a slow spell of a
    shared machine does not land on one side only; each round inserts ``--inserts`` / 2
    committed one by one, then as many in one transaction. Throughput is wall-clock; the
    server's CPU and WAL per insert are what the index adds to each write whatever else
    the machine does. Totals over the rounds."""
    picker = random.Random(15)
    weights = [math.log1p(1 / r) for r in range(1, len(words) + 1)]
    half = max(1, args.inserts // 2)

    def batch() -> list[str]:
        return [
            " ".join(picker.choices(words, weights, k=picker.randrange(4, 16))) for _ in range(half)
        ]

    totals: dict[tuple[bool, bool], list[float]] = {}
    rounds: list[dict[str, Any]] = []
    for n in range(4):
        present = n % 2 == 0
        if n:
            set_index(scratch, present)
        for together in (False, True):
            cost = insert_batch(scratch, batch(), args.rooms, present, one_transaction=together)
            total = totals.setdefault((present, together), [0.0, 0.0, 0.0])
            for i, value in enumerate(cost):
                total[i] += value
            rounds.append(
                {"index": present, "one_transaction": together, "per_s": round(half / cost[0], 1)}
            )
    result: dict[str, Any] = {"inserts_per_round": half}
    count = 2 * half
    for together, name in ((False, "committed_each"), (True, "one_transaction")):
        (s_with, cpu_with, wal_with), (s_without, cpu_without, wal_without) = (
            totals[True, together],
            totals[False, together],
        )
        result[name] = {
            "per_s_with_index": round(count / s_with, 1),
            "per_s_without": round(count / s_without, 1),
            "throughput_cost": round(1 - s_without / s_with, 3),
            "cpu_ms_with_index": round(1000 * cpu_with / count, 3),
            "cpu_ms_without": round(1000 * cpu_without / count, 3),
            "cpu_cost": round(cpu_with / cpu_without - 1, 3) if cpu_without else None,
            "wal_bytes_with_index": round(wal_with / count),
            "wal_bytes_without": round(wal_without / count),
        }
    cpu_cost = result["committed_each"]["cpu_cost"]
    result["within_writer_target"] = cpu_cost is not None and cpu_cost <= TARGET_WRITER_COST
    result["rounds"] = rounds
    return result


def table(rows: list[dict[str, Any]]) -> str:
    return columns_table(rows, ["kind", "queries", "mean_results", "p50_ms", "p95_ms", "max_ms"])


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    base = database_url()
    started = time.monotonic()
    scratch = create_scratch(base)
    try:
        user_id = load(scratch, args)
        print(
            f"loaded {args.rooms} rooms, {args.messages} messages"
            f" in {time.monotonic() - started:.0f} s",
            file=sys.stderr,
        )
        readable = {f"room-{i}" for i in range(1, args.rooms + 1) if i % 4}
        words = vocabulary(scratch)
        chosen = queries(scratch, words, readable, args.samples)
        rows = asyncio.run(measure(scratch, user_id, readable, chosen, args.explain))
        index = sizes(scratch)
        writers = writer_cost(scratch, words, args)
    finally:
        if args.keep:
            print(f"kept the scratch database: {scratch}", file=sys.stderr)
        else:
            drop_scratch(base, scratch)
    print(table(rows))
    print(", ".join(f"{k} {v}" for k, v in index.items()))
    for mode in ("committed_each", "one_transaction"):
        print(f"inserts, {mode.replace('_', ' ')}: " + ", ".join(
            f"{k} {v}" for k, v in writers[mode].items()))  # fmt: skip
    result = {
        "scenario": "search-queries",
        "rooms": args.rooms,
        "readable_rooms": len(readable),
        "messages": args.messages,
        "vocabulary": args.vocabulary,
        "samples": args.samples,
        "target_p95_ms": TARGET_P95_MS,
        "within_target": all(row["p95_ms"] <= TARGET_P95_MS for row in rows),
        "leaks": rows[-1]["leaks"],
        "results": rows,
        "index": index,
        "writers": writers,
    }
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
