"""The resume token of ``GET /events``: a position in PostgreSQL's commit order, not cursors.

Upstream:   ``pg_current_snapshot()`` taken by the statement that read the log
            (chat/history.py), and the ``Last-Event-ID`` a client sends back.
Downstream: chat/user_subscription.py and chat/user_stream.py put ``encode()`` on the last
            frame of each batch; chat/history.py reads the log after a ``Position``.
On failure: nothing is stored here; a token that does not decode is refused (400) and the
            client opens from now.

A ``Snapshot`` (xmin, xmax, the transactions in flight) says which transactions had finished
when a stream read the log: everything of the user's rooms visible in it was delivered. The
changes after it are the log entries whose transaction is not visible in it and is visible
in a newer snapshot. Rooms that commit out of order relative to each other need nothing
special, and the token's size depends only on how many transactions were in flight at that
moment, never on how many rooms the user has.

A replay too long for one page is cut between transactions: ``Position(done, target,
after)`` is "everything visible in ``done``, and of what ``target`` made visible, the
transactions whose last change in the reader's rooms has a cursor up to ``after``".

Wire form: ``p1.`` + urlsafe base64 (no padding) of unsigned LEB128 varints: xmin,
xmax - xmin, the number of in-flight ids, each as the gap from the previous (from xmin);
then, for a partial position only, the same for ``target`` and ``after``.
"""

from __future__ import annotations

import base64
import binascii
import functools
from dataclasses import dataclass

PREFIX = "p1."
MAX_TOKEN_CHARS = 2048  # a token longer than this is refused before decoding
MAX_XIP = 1000  # in-flight ids in one snapshot (max_connections bounds the real count)
MAX_XID = 2**63 - 1  # xid8 is a 64-bit counter; PostgreSQL's reach ends far below


class InvalidPosition(ValueError):
    """A Last-Event-ID that is not a token this server hands out (400)."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """``pg_snapshot``: ids below xmin finished; ids from xmax on had not begun; in between,
    finished unless listed in ``xip`` (in flight)."""

    xmin: int
    xmax: int
    xip: tuple[int, ...] = ()

    def visible(self, txid: int) -> bool:
        """As ``pg_visible_in_snapshot``: the transaction had finished at this snapshot."""
        return txid < self.xmin or (txid < self.xmax and txid not in self.xip)

    def union(self, other: Snapshot) -> Snapshot:
        """The snapshot where what either counts as finished is finished: a transaction is
        still in flight only if it is in flight (or not begun) in both."""
        xmax = max(self.xmax, other.xmax)
        xip = tuple(
            sorted(
                t
                for t in set(self.xip) | set(other.xip)
                if not self.visible(t) and not other.visible(t)
            )
        )
        return Snapshot(xip[0] if xip else xmax, xmax, xip)

    def covers(self, other: Snapshot) -> bool:
        """Everything finished in ``other`` is finished here."""
        return self.union(other) == self

    def pg(self) -> str:
        """The ``pg_snapshot`` text form, ``xmin:xmax:xip,...``."""
        return f"{self.xmin}:{self.xmax}:{','.join(map(str, self.xip))}"

    @classmethod
    def from_pg(cls, text: str) -> Snapshot:
        xmin, xmax, xip = text.split(":")
        return cls(int(xmin), int(xmax), tuple(int(t) for t in xip.split(",") if t))


@dataclass(frozen=True, slots=True)
class Position:
    """Where a user stream stands: ``done``, or part way from ``done`` to ``target``."""

    done: Snapshot
    target: Snapshot | None = None
    after: int = 0  # with a target: the last delivered transaction's highest cursor

    def encode(self) -> str:
        numbers = _snapshot_numbers(self.done)
        if self.target is not None:
            numbers += [*_snapshot_numbers(self.target), self.after]
        raw = b"".join(_varint(n) for n in numbers)
        return PREFIX + base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    @property
    def whole(self) -> Snapshot:
        """Where this position ends up once its partial replay is finished."""
        return self.done if self.target is None else self.done.union(self.target)


@functools.lru_cache(maxsize=256)
def token_of(snapshot: Snapshot) -> str:
    """A snapshot's token; cached, since the streams of a process mostly share one."""
    return Position(snapshot).encode()


def decode(token: str | None) -> Position | None:
    """A Last-Event-ID as a position: None when absent or empty; InvalidPosition otherwise."""
    text = (token or "").strip()
    if not text:
        return None
    if len(text) > MAX_TOKEN_CHARS:
        raise InvalidPosition(f"Last-Event-ID is too long ({len(text)} characters)")
    if not text.startswith(PREFIX) or not text.isascii():
        raise InvalidPosition(f"Last-Event-ID is not an /events token: {text[:40]!r}")
    body = text[len(PREFIX) :]
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except (binascii.Error, ValueError):
        raise InvalidPosition("Last-Event-ID is not valid base64") from None
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode() != body:
        raise InvalidPosition("Last-Event-ID is not in canonical form")
    numbers = _read_varints(raw)
    done, rest = _snapshot(numbers)
    if not rest:
        return Position(done)
    target, rest = _snapshot(rest)
    if len(rest) != 1:
        raise InvalidPosition("Last-Event-ID has trailing data")
    return Position(done, target, rest[0])


def _snapshot_numbers(snap: Snapshot) -> list[int]:
    numbers = [snap.xmin, snap.xmax - snap.xmin, len(snap.xip)]
    previous = snap.xmin
    for txid in snap.xip:
        numbers.append(txid - previous)
        previous = txid
    return numbers


def _snapshot(numbers: list[int]) -> tuple[Snapshot, list[int]]:
    """One snapshot from the front of ``numbers``, checked as PostgreSQL would form it."""
    if len(numbers) < 3:
        raise InvalidPosition("Last-Event-ID is truncated")
    xmin, span, count = numbers[:3]
    if count > MAX_XIP or len(numbers) < 3 + count:
        raise InvalidPosition("Last-Event-ID has a bad in-flight list")
    xip: list[int] = []
    previous = xmin
    for gap in numbers[3 : 3 + count]:
        if xip and gap == 0:
            raise InvalidPosition("Last-Event-ID lists a transaction twice")
        previous += gap
        xip.append(previous)
    xmax = xmin + span
    if xmin < 1 or xmax > MAX_XID or (xip and xip[-1] >= xmax):
        raise InvalidPosition("Last-Event-ID is out of range")
    return Snapshot(xmin, xmax, tuple(xip)), numbers[3 + count :]


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _read_varints(raw: bytes) -> list[int]:
    numbers, value, shift = [], 0, 0
    for byte in raw:
        if shift > 63:
            raise InvalidPosition("Last-Event-ID has a number out of range")
        value |= (byte & 0x7F) << shift
        if byte & 0x80:
            shift += 7
            continue
        numbers.append(value)
        value, shift = 0, 0
    if shift:
        raise InvalidPosition("Last-Event-ID is truncated")
    return numbers
