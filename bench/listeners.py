"""``python -m bench.listeners DSN COUNT``: COUNT plain LISTEN sessions, standing in for
COUNT app processes' listeners while bench/writers.py measures the writers (issue 15.4).

Each session is a psycopg connection in autocommit that runs ``LISTEN chat`` and reads
every notification, as a pgchat listener does (without the log reads a real one makes:
this isolates what listeners cost the *writers*, whose commits signal every listening
backend). One process holds all COUNT connections: PostgreSQL sees COUNT listening
backends either way, and 32 Python processes would take the CPU the writers are measured
on. Prints ``ready`` once all listen; when its stdin closes, one line of JSON with how many
notifications each session received, then exits.
"""

from __future__ import annotations

import asyncio
import json
import sys

import psycopg

APPLICATION_NAME = "bench-listener"


async def listen(dsn: str, count: int) -> list[int]:
    conns = [
        await psycopg.AsyncConnection.connect(
            dsn, autocommit=True, application_name=APPLICATION_NAME
        )
        for _ in range(count)
    ]
    received = [0] * count

    async def drain(index: int, conn: psycopg.AsyncConnection[object]) -> None:
        async for _ in conn.notifies():
            received[index] += 1

    try:
        for conn in conns:
            await conn.execute("LISTEN chat")
        tasks = [asyncio.create_task(drain(i, conn)) for i, conn in enumerate(conns)]
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        for conn in conns:
            await conn.close()
    return received


def main() -> int:
    dsn, count = sys.argv[1], int(sys.argv[2])
    print(json.dumps({"received": asyncio.run(listen(dsn, count))}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
