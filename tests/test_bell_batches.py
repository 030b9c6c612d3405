"""The listener's intake (chat/bell_batches.py) on a real LISTEN connection: a quiet
listener's first bell goes out at once; bells that come while it is busy wait their turn and
share one batch, so one read of the log serves them all."""

from __future__ import annotations

import asyncio
import uuid

import psycopg
import pytest

from chat.bell_batches import BellBatches

from .helpers import DEADLINE, wait_until_async


async def test_a_quiet_listener_is_not_paced_and_a_busy_one_batches_what_comes_meanwhile(
    db_url: str,
) -> None:
    channel = f"bells_{uuid.uuid4().hex[:12]}"
    # Long enough for the third bell to be rung within it, on a loaded machine too.
    batches = BellBatches(min_interval=3.0, poll_seconds=DEADLINE)
    async with (
        await psycopg.AsyncConnection.connect(db_url, autocommit=True) as listening,
        await psycopg.AsyncConnection.connect(db_url, autocommit=True) as ringing,
    ):
        await listening.execute(f"LISTEN {channel}")

        async def ring(payload: str) -> None:  # each in a transaction of its own
            await ringing.execute("SELECT pg_notify(%s, %s)", (channel, payload))

        await ring("a")
        async with asyncio.timeout(DEADLINE):
            assert await batches.next(listening) == ["a"]
        assert batches.paced == 0  # the first read after a quiet spell does not wait

        busy = asyncio.create_task(batches.next(listening))
        await ring("b")
        # "b" was read and its batch now waits for its turn: without pacing it would have
        # been handed over alone, and this would never hold.
        await wait_until_async(lambda: batches.pacing, what="the batch waits for its turn")
        await ring("c")  # comes while "b" waits: the same batch
        async with asyncio.timeout(DEADLINE):
            assert await busy == ["b", "c"]
        assert batches.paced == 1


def test_a_negative_interval_is_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        BellBatches(min_interval=-1, poll_seconds=1)
