"""The listener's reconnect delay: exponential, capped, jittered (as psycopg_pool's
``AttemptWithBackoff``), so N workers don't reconnect to a restarted database in lockstep."""

from __future__ import annotations

import random


class Backoff:
    """Delay before the next reconnect: exponential, capped, jittered."""

    FACTOR, CAP = 2.0, 30.0  # CAP in seconds
    JITTER = 0.1  # +/-10%, so N hypercorn workers don't reconnect in lockstep

    def __init__(self, initial: float = 0.5) -> None:
        if initial <= 0:
            raise ValueError(f"initial backoff must be positive, got {initial}")
        self.initial = initial
        self._delay = 0.0

    def next_delay(self) -> float:
        self._delay = min(self.CAP, self._delay * self.FACTOR or self.initial)
        return self._delay * random.uniform(1 - self.JITTER, 1 + self.JITTER)
