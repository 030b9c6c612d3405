"""The benchmark's writer: plain SQL INSERTs at a fixed rate, each stamped right after COMMIT.

Run by bench/harness.py as ``python -m bench.writer`` (``DATABASE_URL`` in the environment).
A process of its own, not a task or a thread in the harness: the harness's event loop is busy
reading thousands of streams, and a commit stamped whenever that loop (or the GIL) gets round
to it would be late, which would make every latency look shorter than it is.

Protocol on stdout, one line each: ``ready`` once connected; after ``go`` arrives on stdin,
``<message id> <commit time, epoch seconds>`` per insert; ``done`` at the end. EOF on stdin
before ``go`` ends the process quietly (the harness gave up on this measurement).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence

import psycopg

CONNECT_TIMEOUT_SECONDS = 10
INSERT = "INSERT INTO chat_chatmessage (room_id, author, text) VALUES (%s, %s, %s) RETURNING id"


def write(conninfo: str, rooms: Sequence[str], rate: float, count: int) -> None:
    """Insert ``count`` rows at ``rate`` per second on an absolute schedule (no drift),
    round-robin over ``rooms``."""
    with psycopg.connect(
        conninfo,
        autocommit=True,  # each INSERT is its own transaction: the NOTIFY goes out at its COMMIT
        connect_timeout=CONNECT_TIMEOUT_SECONDS,
        application_name="pgchat-bench-writer",  # the harness leaves its own sessions uncounted
    ) as conn:
        print("ready", flush=True)
        if sys.stdin.readline().strip() != "go":
            return
        start = time.monotonic()
        for i in range(count):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            room = rooms[i % len(rooms)]
            row = conn.execute(INSERT, (room, "bench", f"bench message {i + 1} of {count}"))
            committed_at = time.time()  # autocommit: execute() returns after COMMIT
            inserted = row.fetchone()
            assert inserted is not None  # INSERT ... RETURNING: one row
            message_id = inserted[0]
            print(f"{message_id} {committed_at:.6f}", flush=True)
    print("done", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.writer", description=__doc__)
    parser.add_argument("--room", required=True, help="a room, or several: a,b,c (in turn)")
    parser.add_argument("--rate", type=float, required=True, help="inserts per second")
    parser.add_argument("--count", type=int, required=True, help="how many inserts")
    args = parser.parse_args(argv)
    if args.rate <= 0 or args.count < 0:
        parser.error(f"need rate > 0 and count >= 0, got {args.rate} and {args.count}")
    write(os.environ["DATABASE_URL"], args.room.split(","), args.rate, args.count)
    return 0


if __name__ == "__main__":
    sys.exit(main())
