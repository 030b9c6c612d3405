"""The /events fan-out without I/O (chat/user_fanout.py ``UserFanOut``): what a batch offers each
user stream, where its token goes, a client token from a worker further ahead, overflow."""

from __future__ import annotations

import collections

from chat import sse
from chat.events import ChatEvent
from chat.log_by_snapshot import Transaction, Window
from chat.position import Snapshot, decode
from chat.subscription import Subscription, Viewer
from chat.user_fanout import UserFanOut


def event(room: str, seq: int, text: str) -> ChatEvent:
    return ChatEvent(room, seq, "created", seq, {"id": seq, "room": room, "text": text})


def frames_of(sub_frames: list[bytes]) -> list[tuple[str | None, str]]:
    """(id, event) of each frame: the id only where the frame carries one."""
    out = []
    for frame in sub_frames:
        fields = dict(line.split(": ", 1) for line in frame.decode().strip().split("\n"))
        out.append((fields.get("id"), fields["data"]))
    return out


async def test_a_batch_carries_its_rooms_and_one_token_on_its_last_frame() -> None:
    counts: collections.Counter[str] = collections.Counter()
    fanout = UserFanOut(16, lambda name, n: counts.update({name: n}))
    start = Snapshot(100, 100)
    mine = fanout.subscribe_user(Viewer(1, "k1"), {"a", "b"}, start)
    other = fanout.subscribe_user(Viewer(2, "k2"), {"c"}, start)
    target = Snapshot(105, 105)
    window = Window(
        target,
        [
            Transaction(101, 11, [event("a", 10, "a1"), event("b", 11, "b1")]),
            Transaction(103, 12, [event("c", 12, "c1")]),
        ],
        False,
    )
    fanout.publish_window(window, start)
    got = frames_of(await mine.next_frames() or [])
    assert [data for _, data in got] == [
        '{"id":10,"room":"a","text":"a1"}',
        '{"id":11,"room":"b","text":"b1"}',
    ]
    assert got[0][0] is None
    last = decode(got[-1][0])
    assert last is not None
    assert last.done == target
    assert mine.delivered is target  # streams at the listener's position share its snapshot
    assert other.delivered is target
    assert len(frames_of(await other.next_frames() or [])) == 1


async def test_a_token_from_further_ahead_is_not_given_again() -> None:
    """A client resumed here with a token from a worker whose listener was further on: what
    that token already holds is skipped, the rest is given."""
    fanout = UserFanOut(16, lambda name, n: None)
    listener_at = Snapshot(100, 100)
    client_token = Snapshot(100, 104, (102,))  # 100, 101, 103 done there; 102 in flight
    sub = fanout.subscribe_user(Viewer(1, "k"), {"a"}, listener_at.union(client_token))
    window = Window(
        Snapshot(105, 105),
        [Transaction(t, 10 + t, [event("a", 10 + t, f"t{t}")]) for t in (101, 102, 103, 104)],
        False,
    )
    fanout.publish_window(window, listener_at)
    got = frames_of(await sub.next_frames() or [])
    assert [data for _, data in got] == [
        '{"id":112,"room":"a","text":"t102"}',
        '{"id":114,"room":"a","text":"t104"}',
    ]


async def test_a_full_buffer_ends_the_stream() -> None:
    counts: collections.Counter[str] = collections.Counter()
    fanout = UserFanOut(2, lambda name, n: counts.update({name: n}))
    start = Snapshot(10, 10)
    sub = fanout.subscribe_user(Viewer(1, "k"), {"a"}, start)
    window = Window(
        Snapshot(20, 20), [Transaction(11, 1, [event("a", s, "x") for s in (1, 2, 3)])], False
    )
    fanout.publish_window(window, start)
    assert await sub.next_frames() is None
    assert sub.fell_behind
    assert counts["slow_drops"] == 1
    assert fanout.count == 0
    assert fanout.rooms == []


async def test_rooms_added_and_removed() -> None:
    fanout = UserFanOut(16, lambda name, n: None)
    start = Snapshot(10, 10)
    sub = fanout.subscribe_user(Viewer(1, "k"), {"a"}, start)
    fanout.add_room(sub, "b")
    fanout.remove_room(sub, "a")
    assert fanout.rooms == ["b"]
    window = Window(
        Snapshot(20, 20),
        [Transaction(11, 1, [event("a", 1, "gone")]), Transaction(12, 2, [event("b", 2, "new")])],
        False,
    )
    fanout.publish_window(window, start)
    got = frames_of(await sub.next_frames() or [])
    assert [data for _, data in got] == ['{"id":2,"room":"b","text":"new"}']
    fanout.unsubscribe_user(sub)
    fanout.unsubscribe_user(sub)  # idempotent
    assert fanout.rooms == []


async def test_ephemeral_frames_are_dropped_past_half_the_buffer_never_the_stream() -> None:
    """An open storm makes presence frames by the hundred thousand (300 users in 10 rooms
    each: 98,623 of them): they are best effort, so a full buffer of them must not end the
    stream (it once ended all 300), and a batch of the log still gets through after them."""
    counts: collections.Counter[str] = collections.Counter()
    fanout = UserFanOut(8, lambda name, n: counts.update({name: n}))
    start = Snapshot(10, 10)
    user_sub = fanout.subscribe_user(Viewer(1, "k"), {"a"}, start)
    room_sub = Subscription("a", 0, 8)
    presence = sse.ephemeral("presence.joined", {"room": "a", "user": "ann"})
    for _ in range(100):
        fanout.offer_ephemeral(user_sub, presence.data)
        assert room_sub.offer_ephemeral(presence)
    window = Window(Snapshot(20, 20), [Transaction(11, 1, [event("a", 1, "kept")])], False)
    fanout.publish_window(window, start)
    assert fanout.count == 1
    assert counts["slow_drops"] == 0
    frames = await user_sub.next_frames()
    assert frames is not None
    assert len(frames) == 4 + 1  # half the buffer of presence, then the message
    assert "kept" in frames_of(frames)[-1][1]
    room_frames = await room_sub.next_frames()
    assert room_frames is not None
    assert len(room_frames) == 4
    assert room_sub.offer(sse.Frame(5, b"data: kept\n\n", None))
