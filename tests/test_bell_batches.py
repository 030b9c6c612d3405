"""The listener's intake (chat/bell_batches.py) on a real LISTEN connection: bells are taken
at once until the listener reads the log; a batch that comes within the interval after a
read waits its turn, and the bells that come meanwhile share it, so one read serves them."""

from __future__ import annotations

import asyncio
import uuid

import psycopg
import pytest

from chat.bell_batches import BellBatches

from .helpers import DEADLINE, wait_until_async


async def test_only_a_batch_right_after_a_read_waits_and_it_takes_what_comes_meanwhile(
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

        for payload in ("a", "b"):  # bells that needed no read of the log: no waiting
            await ring(payload)
            async with asyncio.timeout(DEADLINE):
                assert await batches.next(listening) == [payload]
        assert batches.paced == 0
        batches.read()  # the listener read the log for "b"

        busy = asyncio.create_task(batches.next(listening))
        await ring("c")
        # "c" was taken and its batch now waits for its turn: without pacing it would have
        # been handed over alone, and this would never hold.
        await wait_until_async(lambda: batches.pacing, what="the batch waits for its turn")
        await ring("d")  # comes while "c" waits: the same batch
        async with asyncio.timeout(DEADLINE):
            assert await busy == ["c", "d"]
        assert batches.paced == 1


def test_a_negative_interval_is_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        BellBatches(min_interval=-1, poll_seconds=1)
