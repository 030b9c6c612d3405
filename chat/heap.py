"""The cyclic garbage collector, tuned for a process that holds thousands of open streams.

Each open stream holds about 200 GC-tracked objects, so at 10,000 streams a full collection
walks 2 million objects and pauses every stream for about a second. With CPython's default
thresholds (700, 10, 10) a young collection runs every 700 net allocations, many times in
each fan-out, and each promotes the writes then in flight to the old generation, where they
add up to a full collection. The README's benchmark section has the figures.
"""

from __future__ import annotations

import gc

# Young collections every 50,000 net allocations, not 700: a fan-out's objects die before
# one runs, so few reach the old generation and full collections come seldom. The other
# two thresholds are 1, not 10: a closed stream leaves reference cycles (hypercorn's
# connection objects) in the old generation that only a full collection frees, and with
# high thresholds there the garbage grew without bound as streams came and went
# (measured: +156 MB after 10,000 reconnects with (50,000, 20, 20); +52 MB, then flat,
# with these). Full collections still wait for CPython's own rule: the old generation must
# have grown by a quarter since the last one.
THRESHOLDS = (50_000, 1, 1)


def settle() -> None:
    """Freeze start-up's objects out of every later collection, then set the thresholds.

    Call once start-up is done. Streams are not frozen: a frozen cycle is never freed.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
