"""``python -m bench.workspace_queries``: how fast ``GET /me/rooms`` answers for a big workspace.

Creates a scratch database next to the project's (``DATABASE_URL``, else the embedded
cluster), migrates it, loads one user in ``--rooms`` rooms (every fourth private) holding
``--messages`` messages between them with plain SQL (``generate_series``): a tenth the user's
own, one in fifty deleted, one in a hundred mentioning the user. Then it times the very
statement the view runs (chat/workspace.py ``my_rooms``, on a connection configured like the
server's read pool: no prepared statements, so each run is planned) in two states:

- ``caught-up``: the user has read each room up to 0-20 messages from its end;
- ``behind``: the user has read nothing, so every room counts to the cap (100).

Prints a table, then ONE line of JSON as the last line of stdout. ``--explain`` prints
``EXPLAIN (ANALYZE, BUFFERS)`` of each state to stderr. The scratch database is dropped at
the end (``--keep`` keeps it). Target (issue 12): p95 <= 20 ms at 200 rooms x 1,000,000.

The load writes the log, the live messages and the mentions the way the triggers would, with
the message triggers off: a million NOTIFYs in one transaction would only measure the
notification queue. ``--via-triggers`` loads through the triggers instead, and
tests/test_workspace_bench.py checks that both loads give the same answers.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from chat import workspace

from .report import columns_table
from .runner import database_url
from .servers import PROJECT_DIR

USER = "bench-me"
AUTHORS = 20  # other users who write
TARGET_P95_MS = 20.0
WARM_UP_RUNS = 3

SETUP = [
    # The measured user is in exactly --rooms rooms: not in the lobby every account joins.
    "DELETE FROM chat_room WHERE slug = 'lobby'",
    """INSERT INTO auth_user (username, password, is_superuser, first_name, last_name, email,
                              is_staff, is_active, date_joined)
       SELECT name, '!', false, '', '', '', false, true, now()
       FROM (SELECT %(user)s UNION ALL
             SELECT 'bench-author-' || i FROM generate_series(1, %(authors)s) AS i) AS u(name)""",
    """INSERT INTO chat_room (slug, title, is_private)
       SELECT 'room-' || i, 'Room ' || i, i %% 4 = 0 FROM generate_series(1, %(rooms)s) AS i""",
    # Joined while empty: the join trigger starts each read state at 0.
    """INSERT INTO chat_room_members (room_id, user_id)
       SELECT r.slug, u.id FROM chat_room r, auth_user u WHERE u.username = %(user)s""",
]
# Message i is the (i / rooms)-th of room 1 + i %% rooms: rooms take turns, as live rooms
# interleave, and each room gets its share of own, deleted and mentioning messages. Inserted
# in i order, so ids, and the log's cursors, follow i.
MESSAGES = """
    INSERT INTO chat_chatmessage (room_id, author, sender_id, text, deleted_at)
    SELECT 'room-' || (1 + i %% %(rooms)s), u.username, u.id,
           CASE WHEN n %% 100 = 7 THEN '@' || %(user)s || ' have a look' ELSE 'message ' || i END,
           CASE WHEN n %% 50 = 3 THEN now() END
    FROM generate_series(1, %(messages)s) AS i, LATERAL (SELECT i / %(rooms)s AS n) AS nth
    JOIN auth_user u ON u.username = CASE WHEN n %% 10 = 0 THEN %(user)s
                                          ELSE 'bench-author-' || (1 + n %% %(authors)s) END
    ORDER BY i
"""
# What the triggers write for those messages, written in bulk: a created entry each (a message
# inserted deleted gets no other), in id order; a live row each but the deleted; mentions.
AS_THE_TRIGGERS_WOULD = [
    """INSERT INTO chat_messagechange (room_id, seq, message_id, op)
       SELECT room_id, nextval('chat_change_seq'), id, 'created'
       FROM chat_chatmessage ORDER BY id""",
    """INSERT INTO chat_livemessage (message_id, room_id, seq, sender_id)
       SELECT m.id, m.room_id, c.seq, m.sender_id
       FROM chat_chatmessage m
       JOIN chat_messagechange c ON c.message_id = m.id AND c.op = 'created'
       WHERE m.deleted_at IS NULL""",
    """INSERT INTO chat_mention (message_id, user_id, room_id, seq)
       SELECT lm.message_id, u.id, lm.room_id, lm.seq
       FROM chat_livemessage lm
       JOIN chat_chatmessage m ON m.id = lm.message_id
       JOIN auth_user u ON u.username = %(user)s
       WHERE m.text LIKE '@%%' AND lm.sender_id IS DISTINCT FROM u.id""",
]


def load_statements(via_triggers: bool) -> list[str]:
    if via_triggers:  # the real path, for small sizes: tests compare the two loads
        return [*SETUP, MESSAGES]
    off, on = (f"ALTER TABLE chat_chatmessage {how} TRIGGER USER" for how in ("DISABLE", "ENABLE"))
    return [*SETUP, off, MESSAGES, on, *AS_THE_TRIGGERS_WOULD]


READING = {
    # k = 0..20 created entries after the read position, chosen per room
    "caught-up": """
        WITH ranked AS (
            SELECT room_id, seq, row_number() OVER (PARTITION BY room_id ORDER BY seq DESC) AS back
            FROM chat_messagechange WHERE op = 'created'
        )
        UPDATE chat_readstate rs SET last_read = ranked.seq
        FROM ranked, auth_user u
        WHERE u.username = %(user)s AND rs.user_id = u.id AND ranked.room_id = rs.room_id
          AND ranked.back = 1 + (hashtext(rs.room_id) & 2147483647) %% 21""",
    "behind": "UPDATE chat_readstate SET last_read = 0",
}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.workspace_queries",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--rooms", type=int, default=200, help="rooms the user joined")
    add("--messages", type=int, default=1_000_000, help="messages in those rooms, in all")
    add("--samples", type=int, default=200, help="timed runs of the query per state")
    add("--explain", action="store_true", help="EXPLAIN (ANALYZE, BUFFERS) to stderr")
    add("--keep", action="store_true", help="keep the scratch database")
    add(
        "--via-triggers",
        action="store_true",
        help="load messages through the real triggers (slow: for small sizes and tests)",
    )
    args = parser.parse_args(argv)
    if min(args.rooms, args.messages, args.samples) < 1:
        parser.error("--rooms, --messages and --samples must be positive")
    return args


def create_scratch(base: str, label: str = "workspace") -> str:
    """A new, migrated database on the same server; returns its conninfo."""
    name = f"pgchat_bench_{label}_{os.getpid()}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(str(name)))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(str(name))))
    scratch = make_conninfo(base, dbname=name)
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"],
        cwd=PROJECT_DIR,
        env={**os.environ, "DATABASE_URL": scratch},
        check=True,
        stdin=subprocess.DEVNULL,
    )
    return scratch


def drop_scratch(base: str, scratch: str) -> None:
    name = conninfo_to_dict(scratch)["dbname"]
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(str(name)))
        )


def load(scratch: str, args: argparse.Namespace) -> int:
    """Fill the scratch database; returns the measured user's id."""
    params = {"user": USER, "authors": AUTHORS, "rooms": args.rooms, "messages": args.messages}
    with psycopg.connect(scratch, autocommit=True) as conn:  # each statement commits
        for statement in load_statements(args.via_triggers):
            conn.execute(statement, params)
        conn.execute("VACUUM ANALYZE")  # as autovacuum would, in time: visibility map, stats
        row = conn.execute("SELECT id FROM auth_user WHERE username = %s", (USER,)).fetchone()
    assert row is not None
    return int(row[0])


async def measure(
    scratch: str, user_id: int, reading: str, args: argparse.Namespace
) -> dict[str, Any]:
    async with await psycopg.AsyncConnection.connect(
        scratch,
        autocommit=True,
        prepare_threshold=None,  # as the read pool (chat/db.py)
    ) as conn:
        await conn.execute(READING[reading], {"user": USER})
        await conn.execute("VACUUM ANALYZE chat_readstate")
        for _ in range(WARM_UP_RUNS):
            rooms = await workspace.my_rooms(conn, user_id)
        timings = []
        for _ in range(args.samples):
            start = time.perf_counter()
            rooms = await workspace.my_rooms(conn, user_id)
            timings.append((time.perf_counter() - start) * 1000)
        if args.explain:
            query = "EXPLAIN (ANALYZE, BUFFERS) " + workspace.MY_ROOMS
            cur = await conn.execute(query, {"user": user_id})
            plan = "\n".join(row[0] for row in await cur.fetchall())
            print(f"--- {reading} ---\n{plan}", file=sys.stderr)
    timings.sort()
    return {
        "reading": reading,
        "rooms_listed": len(rooms),
        "unread_total": sum(room.unread for room in rooms),
        "mentions_total": sum(room.mentions for room in rooms),
        # every room's answer, so two loads of one size can be compared (tests do)
        "answers_digest": hashlib.sha256(repr(rooms).encode()).hexdigest()[:16],
        "p50_ms": round(statistics.median(timings), 2),
        "p95_ms": round(timings[max(0, round(0.95 * len(timings)) - 1)], 2),
        "max_ms": round(timings[-1], 2),
    }


def table(rows: list[dict[str, Any]]) -> str:
    columns = ["reading", "rooms_listed", "unread_total", "mentions_total", "p50_ms", "p95_ms"]
    return columns_table(rows, [*columns, "max_ms"])


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    base = database_url()
    started = time.monotonic()
    scratch = create_scratch(base)
    try:
        user_id = load(scratch, args)
        loaded_s = time.monotonic() - started
        print(f"loaded {args.rooms} rooms, {args.messages} messages in {loaded_s:.0f} s",
              file=sys.stderr)  # fmt: skip
        rows = [asyncio.run(measure(scratch, user_id, reading, args)) for reading in READING]
    finally:
        if args.keep:
            print(f"kept the scratch database: {scratch}", file=sys.stderr)
        else:
            drop_scratch(base, scratch)
    print(table(rows))
    summary = {
        "scenario": "workspace-queries",
        "rooms": args.rooms,
        "messages": args.messages,
        "samples": args.samples,
        "target_p95_ms": TARGET_P95_MS,
        "within_target": all(row["p95_ms"] <= TARGET_P95_MS for row in rows),
        "results": rows,
    }
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
