"""``python -m bench.writers``: what NOTIFY costs the writers, side by side in one run.

Issue 15's writers scenario. Every notifying transaction takes one cluster-wide lock at
commit, so it is the one limit the design cannot scale out of; this measures how close
pgchat's trigger gets to that floor. In a scratch database (created, migrated, dropped),
with a pgchat server running on it (its listener attached) and ``--subscribers`` streams
open over the rooms, pgbench (the wheel's) runs each variant for ``--seconds`` at each
writer count, one transaction per INSERT:

- ``plain``: INSERT into a table like the message table, no trigger: the ceiling;
- ``notify``: the same, plus a bare ``pg_notify`` per row (a unique payload, so nothing is
  folded): the NOTIFY floor;
- ``pgchat-1``: INSERT into ``chat_chatmessage``, one room (its writers serialise on the
  room's lock, by design: cursors in commit order);
- ``pgchat-64``: the same, over 64 rooms, each INSERT into a random one.

Figures: commits/s, commit latency p50/p99 (pgbench's per-transaction log), and pgchat-64
as a share of ``notify``. Prints a table, then ONE line of JSON as the last line.

``--no-server`` runs the cells with no pgchat server nor subscribers: what the trigger
costs the writers alone, with nobody listening.

``--listeners 1,8,32`` repeats every cell with that many more listening sessions attached
(bench/listeners.py: plain ``LISTEN chat`` connections reading every notification, standing
in for that many app processes): what many hosts' listeners cost the writers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from devtools.embedded_pg.tools import binaries_dir

from .report import percentile
from .runner import database_url
from .servers import HOST, ServerProcess, raise_open_files_limit
from .sse_client import SSEClient
from .workspace_queries import create_scratch, drop_scratch

ROOMS = 64
TARGET_SHARE = 0.80  # issue 15: pgchat over 64 rooms reaches 80% of the bare-NOTIFY floor

SETUP = [
    """CREATE TABLE bench_plain (
           id bigserial PRIMARY KEY, room_id varchar(64) NOT NULL, author varchar(150) NOT NULL,
           text text NOT NULL, created_at timestamptz NOT NULL DEFAULT now())""",
    "CREATE TABLE bench_notify (LIKE bench_plain INCLUDING ALL)",
    "CREATE SEQUENCE bench_notify_id_seq OWNED BY bench_notify.id",
    "ALTER TABLE bench_notify ALTER id SET DEFAULT nextval('bench_notify_id_seq')",
    """CREATE FUNCTION bench_notify_row() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN PERFORM pg_notify('bench_floor', NEW.id::text); RETURN NULL; END $$""",
    """CREATE TRIGGER bench_notify_row AFTER INSERT ON bench_notify
       FOR EACH ROW EXECUTE FUNCTION bench_notify_row()""",
    """INSERT INTO chat_room (slug, title)
       SELECT 'w-' || i, 'Writers ' || i FROM generate_series(0, 63) AS i""",
]

SCRIPTS = {
    "plain": "INSERT INTO bench_plain (room_id, author, text) VALUES ('w-0', 'bench', 'x');",
    "notify": "INSERT INTO bench_notify (room_id, author, text) VALUES ('w-0', 'bench', 'x');",
    "pgchat-1": "INSERT INTO chat_chatmessage (room_id, author, text) "
    "VALUES ('w-0', 'bench', 'x');",
    "pgchat-64": "\\set r random(0, 63)\n"
    "INSERT INTO chat_chatmessage (room_id, author, text) VALUES ('w-' || :r, 'bench', 'x');",
}


@dataclass(slots=True)
class Cell:
    variant: str
    writers: int
    listeners: int = 0  # listening sessions besides the pgchat server's own
    commits_per_s: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    error: str | None = None


def pgbench(dsn: str, variant: str, writers: int, seconds: float, scratch_dir: Path) -> Cell:
    """One pgbench run; commits/s and latency percentiles from its per-transaction log."""
    cell = Cell(variant, writers)
    script = scratch_dir / f"{variant}.sql"
    script.write_text(SCRIPTS[variant] + "\n")
    prefix = scratch_dir / f"log-{variant}-{writers}"
    argv = [
        str(binaries_dir() / "pgbench"), "--no-vacuum", "--protocol=prepared",
        f"--client={writers}", f"--jobs={min(writers, 4)}", f"--time={max(1, round(seconds))}",
        f"--file={script}", "--log", f"--log-prefix={prefix}", dsn,
    ]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        cell.error = (done.stderr or done.stdout).strip().splitlines()[-1][:300]
        return cell
    latencies: list[float] = []
    for log in scratch_dir.glob(f"{prefix.name}.*"):
        for line in log.read_text().splitlines():
            latencies.append(int(line.split()[2]) / 1000)  # client tx_no latency_us ...
        log.unlink()
    if latencies:
        latencies.sort()
        cell.p50_ms, cell.p99_ms = percentile(latencies, 50), percentile(latencies, 99)
    for line in done.stdout.splitlines():
        if line.startswith("tps = "):
            cell.commits_per_s = float(line.split()[2])
    return cell


async def with_subscribers(port: int, count: int) -> list[SSEClient]:
    """``count`` streams over the rooms, so the listener reads the log for every room."""
    paths = [f"/rooms/w-{i % ROOMS}/events" for i in range(count)]
    return list(await asyncio.gather(*(SSEClient.open(HOST, port, p, timeout=30) for p in paths)))


@contextlib.asynccontextmanager
async def listening(dsn: str, count: int) -> AsyncIterator[list[int]]:
    """``count`` LISTEN sessions in a process of their own (bench/listeners.py); the list
    yielded is filled, on the way out, with how many notifications each received."""
    received: list[int] = []
    if count == 0:
        yield received
        return
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.listeners", dsn, str(count),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdin is not None
    assert proc.stdout is not None
    try:
        ready = await asyncio.wait_for(proc.stdout.readline(), timeout=60)
        if ready.strip() != b"ready":
            raise RuntimeError(f"bench.listeners did not start: {ready!r}")
        yield received
    finally:
        proc.stdin.close()
        out, _ = await proc.communicate()
    received += json.loads(out.decode().strip().splitlines()[-1])["received"]


async def run_all(scratch: str, args: argparse.Namespace) -> tuple[list[Cell], dict[int, int]]:
    """The cells, and per listener count the fewest notifications one listener received."""
    cells = []
    fewest: dict[int, int] = {}
    async with contextlib.AsyncExitStack() as stack:
        clients: list[SSEClient] = []
        if not args.no_server:
            server = await stack.enter_async_context(ServerProcess("pgchat", scratch))
            clients = await with_subscribers(server.port, args.subscribers)
        drains = [asyncio.create_task(_drain(client)) for client in clients]
        try:
            with tempfile.TemporaryDirectory(prefix="pgchat-writers-") as folder:
                for writers in args.writers:
                    for variant in args.variants:
                        # Listener counts innermost: the cells compared are run one after
                        # another, so a noisy machine's drift falls between rows, not in them.
                        for listeners in args.listeners:
                            async with listening(scratch, listeners) as received:
                                run = asyncio.to_thread(
                                    pgbench, scratch, variant, writers, args.seconds, Path(folder)
                                )
                                cells.append(await run)
                                cells[-1].listeners = listeners
                            print(row(cells[-1]), flush=True)
                            if received and variant.startswith("pgchat"):  # notifies `chat`
                                fewest[listeners] = min(fewest.get(listeners, 1 << 62), *received)
        finally:
            for client in clients:
                client.close()
            for task in drains:
                task.cancel()
            await asyncio.gather(*drains, return_exceptions=True)
    return cells, fewest


async def _drain(client: SSEClient) -> None:
    """Read the stream as a browser would, so the server's buffers never fill."""
    async for _ in client.events():
        pass


HEADER = (
    f"{'variant':<10} {'listeners':>9} {'writers':>7} {'commits/s':>10} {'p50 ms':>7} {'p99 ms':>7}"
)


def row(cell: Cell) -> str:
    def num(value: float | None, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    return (
        f"{cell.variant:<10} {cell.listeners:>9} {cell.writers:>7} "
        f"{num(cell.commits_per_s, ',.0f'):>10} "
        f"{num(cell.p50_ms, '.2f'):>7} {num(cell.p99_ms, '.2f'):>7}"
        + (f"  ERROR {cell.error}" if cell.error else "")
    )


def shares(cells: Sequence[Cell]) -> dict[int, float]:
    """pgchat-64's commits/s as a share of the bare-NOTIFY floor's, per writer count (with
    the first listener count asked for)."""
    first = cells[0].listeners if cells else 0
    by = {(c.variant, c.writers): c.commits_per_s for c in cells if c.listeners == first}
    out = {}
    for writers in sorted({c.writers for c in cells}):
        ours, floor = by.get(("pgchat-64", writers)), by.get(("notify", writers))
        if ours and floor:
            out[writers] = ours / floor
    return out


def by_listeners(cells: Sequence[Cell]) -> dict[int, dict[str, dict[int, float | None]]]:
    """commits/s per listener count, variant and writer count: the listener-count table."""
    out: dict[int, dict[str, dict[int, float | None]]] = {}
    for c in cells:
        out.setdefault(c.listeners, {}).setdefault(c.variant, {})[c.writers] = c.commits_per_s
    return out


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.writers", description=__doc__)
    parser.add_argument("--writers", default="1,8,32,64", help="writer counts, commas")
    parser.add_argument("--variants", default=",".join(SCRIPTS))
    parser.add_argument("--seconds", type=float, default=8.0, help="per cell")
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument(
        "--listeners", default="0", help="extra LISTEN sessions per run, commas (e.g. 1,8,32)"
    )
    parser.add_argument(
        "--no-server",
        action="store_true",
        help="no pgchat server (nor subscribers): what the trigger costs the writers alone",
    )
    args = parser.parse_args(argv)
    try:
        args.writers = [int(w) for w in args.writers.split(",")]
        args.listeners = [int(n) for n in args.listeners.split(",")]
    except ValueError:
        parser.error(f"--writers, --listeners: whole numbers, commas: {args.writers!r}")
    if min(args.listeners) < 0:
        parser.error("listeners >= 0")
    args.variants = args.variants.split(",")
    if unknown := set(args.variants) - set(SCRIPTS):
        parser.error(f"unknown variants {sorted(unknown)}; known: {', '.join(SCRIPTS)}")
    if min(args.writers) < 1 or args.seconds <= 0 or args.subscribers < 0:
        parser.error("writers >= 1, seconds > 0, subscribers >= 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    raise_open_files_limit()
    base = database_url()
    scratch = create_scratch(base, "writers")
    try:
        with psycopg.connect(scratch, autocommit=True) as conn:
            for statement in SETUP:
                conn.execute(statement)
        password = conninfo_to_dict(scratch).get("password")
        dsn = make_conninfo(scratch, password=password) if password else scratch
        print(HEADER, flush=True)
        cells, fewest = asyncio.run(run_all(dsn, args))
    finally:
        with contextlib.suppress(psycopg.Error):
            drop_scratch(base, scratch)
    share = shares(cells)
    for writers, value in share.items():
        verdict = "meets" if value >= TARGET_SHARE else "below"
        print(f"pgchat-64 at {writers} writers: {value:.0%} of bare NOTIFY ({verdict} 80%)")
    summary = {
        "bench": "writers",
        "seconds": args.seconds,
        "subscribers": 0 if args.no_server else args.subscribers,
        "server": not args.no_server,
        "median_share": statistics.median(share.values()) if share else None,
        "share_of_notify": share,
        "listeners": args.listeners,
        "commits_by_listeners": by_listeners(cells),
        "fewest_received_by_listeners": fewest,
        "cells": [asdict(c) for c in cells],
    }
    print(json.dumps(summary))
    return 1 if any(c.error for c in cells) else 0


if __name__ == "__main__":
    sys.exit(main())
