"""The schedule: for each plan, a fresh server of its target, one measurement, a clean stop.

A fresh server per (target, N) rather than one per target: memory per subscriber is a
difference of RSS, and a process that already held and freed 1,000 streams would hand the
next 10,000 its free lists and look cheaper than it is. Before each start the previous
server's database sessions must be gone: the per-connection reference needs every slot.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Sequence

import psycopg

from .harness import Plan, measure
from .probes import HARNESS_APPLICATION, Backends
from .report import Result
from .servers import ServerError, ServerProcess, raise_open_files_limit

logger = logging.getLogger("bench.runner")

SESSIONS_GONE_SECONDS = 15.0  # a stopped server's backends exit asynchronously
POLL_SECONDS = 0.1


def database_url() -> str:
    """``DATABASE_URL``, else the project's embedded PostgreSQL (started if needed)."""
    if url := os.environ.get("DATABASE_URL"):
        return url
    from devtools.embedded_pg import EmbeddedPostgres

    cluster = EmbeddedPostgres.from_environment()
    cluster.ensure_running()
    return cluster.url()


async def ensure_room(dsn: str, room: str) -> None:
    """The benchmark's room, created as a psql user would."""
    async with await psycopg.AsyncConnection.connect(
        dsn, autocommit=True, connect_timeout=10, application_name=f"{HARNESS_APPLICATION}-setup"
    ) as conn:
        await conn.execute(
            "INSERT INTO chat_room (slug) VALUES (%s) ON CONFLICT DO NOTHING", (room,)
        )


async def run(
    plans: Sequence[Plan], dsn: str, on_result: Callable[[Result], None] | None = None
) -> list[Result]:
    """Every plan in order; a failed plan is a result with an error, and the next one runs."""
    raise_open_files_limit()  # the harness holds N streams, the writer and the sampler
    for room in sorted({plan.room for plan in plans}):
        await ensure_room(dsn, room)
    backends = await Backends.connect(dsn)  # before any server: it may take every slot
    results = []
    try:
        for plan in plans:
            result = await run_one(plan, dsn, backends)
            results.append(result)
            if on_result is not None:
                on_result(result)
    finally:
        await backends.close()
    return results


async def run_one(plan: Plan, dsn: str, backends: Backends) -> Result:
    logger.info(
        "%s: %d subscribers, %g inserts/s for %g s", plan.target, plan.subscribers, plan.rate,
        plan.duration,
    )  # fmt: skip
    await backends.forget_existing()  # sessions from here on are this server's
    try:
        async with ServerProcess(plan.target, dsn, workers=plan.workers) as server:
            return await measure(plan, server, backends, dsn)
    except ServerError as exc:
        return Result(
            target=plan.target,
            subscribers=plan.subscribers,
            rate=plan.rate,
            duration_s=plan.duration,
            workers=plan.workers,
            error=str(exc).splitlines()[0],
        )
    finally:
        await _sessions_gone(backends)


async def _sessions_gone(backends: Backends) -> None:
    """Wait (with a deadline) until the stopped server's sessions have left PostgreSQL."""
    deadline = time.monotonic() + SESSIONS_GONE_SECONDS
    try:
        while (left := await backends.count()) > 0:
            if time.monotonic() > deadline:
                logger.warning("%d sessions of the stopped server are still open", left)
                return
            await asyncio.sleep(POLL_SECONDS)
    except psycopg.Error:
        logger.warning("could not check for the stopped server's sessions", exc_info=True)
