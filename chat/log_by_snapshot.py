"""The log read by snapshot: what a token stream (``GET /events``, ``GET /search/events``)
has not been given, whole transactions in delivery order.

Upstream:   the MessageChange log with each entry's transaction id (migration 0008) and the
            client's resume position (chat/position.py).
Downstream: chat/user_stream.py and chat/search_stream.py (a replay, page by page) and
            chat/user_feeds.py (the listener's live batches), through chat/fanout.py.
On failure: a query error ends that replay or listener batch; the log still holds it all,
            so the client's next resume (or the listener's next batch) reads it again.

A room's cursor orders that room; rooms commit out of order relative to each other, so
"after position P" is a question about transactions: which ones P's snapshot had not seen
finish. chat/history.py holds the per-room reads.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import psycopg

from .events import ChatEvent
from .history import event_of
from .position import Snapshot

# The entries of ``rooms`` whose transaction ``since`` had not seen finish and ``target`` has
# (``target`` NULL: this statement's own snapshot, returned with the rows, so the position
# and the rows agree). Not visible in ``since`` means begun at or after its xmax, or in
# flight then: two index scans on txid, however old a transaction still open keeps xmin.
# Transactions come whole, ordered by their highest cursor in these rooms: two that share a
# room are in commit order (the later one took its cursor there after the first committed,
# above all of the first's), so each room's order holds across transactions and pages.
_CHANGES_SINCE = """
    WITH snap AS (
        SELECT coalesce(%(target)s::pg_snapshot, pg_current_snapshot()) AS target
    ), new AS (
        SELECT c.* FROM chat_messagechange c, snap
        WHERE (c.txid >= %(xmax)s::xid8 OR c.txid = ANY(%(xip)s::xid8[]))
          AND c.room_id = ANY(%(rooms)s::text[])
          AND pg_visible_in_snapshot(c.txid, snap.target)
    ), txns AS (
        SELECT txid, max(seq) AS top FROM new GROUP BY txid
        HAVING max(seq) > %(after)s ORDER BY top LIMIT %(limit)s
    )
    SELECT snap.target::text, t.top, c.txid::text, c.room_id, c.seq, c.op, c.message_id,
           chat_message_json(m)::text, chat_iso(c.created_at), c.emoji, c.reactor
    FROM snap
    LEFT JOIN (txns t JOIN new c ON c.txid = t.txid) ON true
    LEFT JOIN chat_chatmessage m ON m.id = c.message_id
    ORDER BY t.top, c.seq
"""

REPLAY_TRANSACTIONS = 200  # transactions per page of a /events replay


class Transaction(NamedTuple):
    """One committed transaction's changes in the reader's rooms, in cursor order."""

    txid: int
    top: int  # its highest cursor among them: the order transactions are delivered in
    events: list[ChatEvent]


class Window(NamedTuple):
    """What became visible between two snapshots, whole transactions in delivery order."""

    target: Snapshot
    transactions: list[Transaction]
    has_more: bool  # the page was cut at ``limit`` transactions


async def changes_since(
    conn: psycopg.AsyncConnection[Any],
    since: Snapshot,
    rooms: list[str],
    *,
    target: Snapshot | None = None,
    after: int = 0,
    limit: int | None = None,
) -> Window:
    """The log entries of ``rooms`` that became visible after ``since`` up to ``target``
    (default: now, in this same statement), grouped by transaction."""
    params = {
        "target": target.pg() if target is not None else None,
        "xmax": str(since.xmax),
        "xip": [str(txid) for txid in since.xip],
        "rooms": rooms,
        "after": after,
        "limit": limit,
    }
    cur = await conn.execute(_CHANGES_SINCE, params)
    rows = await cur.fetchall()
    reached = Snapshot.from_pg(rows[0][0])
    transactions: list[Transaction] = []
    for _, top, txid, *row in rows:
        if txid is None:
            continue
        if not transactions or transactions[-1].txid != int(txid):
            transactions.append(Transaction(int(txid), top, []))
        event = event_of(*row)
        if event is not None:
            transactions[-1].events.append(event)
    has_more = limit is not None and len(transactions) >= limit
    return Window(reached, transactions, has_more)
