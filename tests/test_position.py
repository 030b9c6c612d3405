"""The /events resume token (chat/position.py): round trips, garbage refused cleanly, size
bounded by the transactions in flight; and its snapshot logic agrees with PostgreSQL's own
``pg_visible_in_snapshot``."""

from __future__ import annotations

import contextlib
import random

import psycopg
import pytest

from chat.position import (
    MAX_TOKEN_CHARS,
    PREFIX,
    InvalidPosition,
    Position,
    Snapshot,
    decode,
)


def test_round_trip() -> None:
    plain = Position(Snapshot(1000, 1010, (1000, 1003, 1009)))
    partial = Position(Snapshot(5, 9, (6,)), Snapshot(8, 20, (8, 19)), after=123456789)
    idle = Position(Snapshot(826, 826))
    for position in (plain, partial, idle):
        token = position.encode()
        assert token.startswith(PREFIX)
        assert decode(token) == position
    assert len(idle.encode()) < 12  # "p1." and a few bytes


def test_absent_is_none() -> None:
    assert decode(None) is None
    assert decode("") is None
    assert decode("  ") is None


@pytest.mark.parametrize(
    "token",
    [
        "42",
        "p1.",
        "p1.!!!",
        "p2.AAAA",
        "p1.gICAgICAgICAgICAgICAgIAB",  # a varint past 64 bits
        "p1." + "A" * 5,  # not canonical base64
        Position(Snapshot(1, 2)).encode() + "AQ",  # trailing data
        "p1.AQEBAQ",  # xip outside [xmin, xmax)
        "p1.gA",  # truncated varint
        "p1.\u00e9t\u00e9",
        "p1." + "A" * (MAX_TOKEN_CHARS + 1),
    ],
)
def test_garbage_is_refused(token: str) -> None:
    with pytest.raises(InvalidPosition):
        decode(token)


def test_random_bytes_never_crash() -> None:
    rng = random.Random(12)
    for _ in range(3000):
        token = PREFIX + "".join(
            rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
            for _ in range(rng.randrange(0, 40))
        )
        with contextlib.suppress(InvalidPosition):
            decode(token)


def test_size_depends_on_transactions_in_flight_only() -> None:
    # 100 transactions in flight at once, ids in the billions: still far below the limit.
    base = 3_000_000_000
    snap = Snapshot(base, base + 5000, tuple(base + 37 * i for i in range(100)))
    token = Position(snap, snap, after=2**40).encode()
    assert len(token) < 700, len(token)


def test_union_and_visibility() -> None:
    a = Snapshot(10, 20, (10, 15))
    b = Snapshot(12, 25, (12, 22))
    u = a.union(b)
    for t in range(1, 30):
        assert u.visible(t) == (a.visible(t) or b.visible(t)), t
    assert u.covers(a)
    assert u.covers(b)
    assert not a.covers(b)


def test_visibility_agrees_with_postgresql(db_url: str) -> None:
    rng = random.Random(7)
    with psycopg.connect(db_url, autocommit=True) as conn:
        for _ in range(50):
            xmin = rng.randrange(3, 1000)
            xmax = xmin + rng.randrange(0, 30)
            xip = tuple(sorted(rng.sample(range(xmin, xmax), min(5, xmax - xmin))))
            snap = Snapshot(xip[0] if xip else xmax, xmax, xip)
            ids = list(range(max(1, xmin - 3), xmax + 3))
            rows = conn.execute(
                "SELECT t, pg_visible_in_snapshot(t::text::xid8, %s::pg_snapshot) "
                "FROM unnest(%s::bigint[]) AS t",
                (snap.pg(), ids),
            ).fetchall()
            assert {t: seen for t, seen in rows} == {t: snap.visible(t) for t in ids}
            assert Snapshot.from_pg(snap.pg()) == snap
