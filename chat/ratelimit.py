"""Rate limits that hold across workers and hosts: one atomic counter per key in PostgreSQL.

Upstream:   chat/limits.py, on each request that a limit covers (posting, room creation,
            sign-up).
Downstream: the UNLOGGED table ``chat_ratelimit`` (migration 0006): one row per key, holding
            the current window's start and hit count.
On failure: the counter is one statement in autocommit, so a crash loses nothing but the
            hit being counted; if PostgreSQL crashes, an UNLOGGED table comes back empty
            (every budget refills), which is the price of writing no WAL per request.

A fixed window: every key's budget refills at the multiples of its window length, on the
database's clock (one clock for all hosts). A client may so spend two budgets across one
boundary; a sliding window would not allow that, at the cost of a second row per key.

Why not a library: django-ratelimit keeps its counts in Django's cache, and the only cache
shared by processes and hosts without a new server is DatabaseCache, whose ``incr`` is
BaseCache's read, then write: concurrent requests read the same count and all pass
(undercounting exactly when it matters). ``limits`` stores its counters in memory, Redis,
Memcached or MongoDB, not in PostgreSQL. The counter here is one
``INSERT ... ON CONFLICT DO UPDATE SET hits = hits + 1 RETURNING`` statement: PostgreSQL
locks the key's row for it, so N concurrent hits get N distinct counts.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from django.db import connection

PRUNE_ONE_IN = 200  # hits: expired windows are deleted on about one hit in this many

_HIT = """
WITH w AS (
    SELECT to_timestamp(floor(extract(epoch FROM clock_timestamp()) / %(seconds)s)
                        * %(seconds)s) AS start
)
INSERT INTO chat_ratelimit AS r (bucket, window_start, window_end, hits)
SELECT %(bucket)s, w.start, w.start + make_interval(secs => %(seconds)s), 1 FROM w
ON CONFLICT (bucket) DO UPDATE SET
    -- A hit computed just before a boundary may commit just after one: never go back.
    hits = CASE WHEN r.window_start >= excluded.window_start THEN r.hits + 1 ELSE 1 END,
    window_start = greatest(r.window_start, excluded.window_start),
    window_end = greatest(r.window_end, excluded.window_end)
RETURNING hits, extract(epoch FROM window_end - clock_timestamp())::float8
"""

_PRUNE = "DELETE FROM chat_ratelimit WHERE window_end < clock_timestamp()"


@dataclass(frozen=True)
class Rate:
    """At most ``count`` hits per key in each window of ``seconds``."""

    count: int
    seconds: int

    def __post_init__(self) -> None:
        if self.count < 1 or self.seconds < 1:
            raise ValueError(f"a rate needs a count and seconds of 1 or more, got {self}")

    def __str__(self) -> str:
        return f"{self.count} every {self.seconds} s"


class RateLimited(Exception):
    """Over a limit: answered 429 with ``Retry-After: retry_after``."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def hit(bucket: str, rate: Rate) -> int | None:
    """Count one hit on ``bucket``; None if within ``rate``, else the seconds (at least 1)
    until its window ends. Call it outside a transaction, so the hit commits at once: inside
    one, the key's row stays locked until it ends, and a rollback takes the hit back."""
    with connection.cursor() as cursor:
        if random.randrange(PRUNE_ONE_IN) == 0:
            cursor.execute(_PRUNE)
        # The window's length is part of the key: two configurations (a rolling deploy that
        # changes a rate) each keep their own count instead of corrupting one.
        key = f"{bucket}/{rate.seconds}"
        cursor.execute(_HIT, {"bucket": key, "seconds": rate.seconds})
        hits, remaining = cursor.fetchone()
    if int(hits) <= rate.count:
        return None
    return max(1, math.ceil(float(remaining)))


def prune() -> int:
    """Delete the rows of windows that have ended; returns how many."""
    with connection.cursor() as cursor:
        cursor.execute(_PRUNE)
        return int(cursor.rowcount)
