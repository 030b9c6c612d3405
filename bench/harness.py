"""One measurement: N subscribers on a running server, a writer at a fixed rate, the numbers.

Sequence (bench/runner.py starts and stops the server around it):

1. the writer process connects (before any subscriber: a per-connection server may use up
   every database session) and waits;
2. N subscribers open ``/rooms/<room>/events`` with the raw asyncio client
   (bench/sse_client.py), at most ``concurrency`` connects in flight, each with a timeout;
3. the window opens: CPU readings, then ``go`` to the writer, which inserts for the duration;
4. the window closes when every open stream has every event, or ``grace`` seconds after the
   last insert, whichever is first; then the books are balanced against the writer's ids.

Every wait has a deadline, so a broken target costs its timeouts, never the whole run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import resource
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

from .probes import MEGABYTE, Backends, ProcessTree, cpu_used
from .report import Result, percentile
from .servers import HOST, PROJECT_DIR, ServerProcess
from .sse_client import SSEClient, SSEError

logger = logging.getLogger("bench.harness")

SAMPLE_SECONDS = 0.5  # how often backends and RSS are sampled during a run
WRITER_READY_SECONDS = 15.0
# Deadline to open all N: generous (pgchat spends ~20 ms of one core per new stream), but
# a bound, so a target that stops accepting costs minutes, not the night.
OPEN_SECONDS_BASE, OPEN_SECONDS_PER_SUBSCRIBER = 60.0, 0.05


@dataclass(frozen=True, slots=True)
class Plan:
    """What one measurement does."""

    target: str
    subscribers: int
    rate: float  # inserts per second
    duration: float  # seconds of inserts, once all N are connected
    grace: float = 5.0  # seconds after the last insert for stragglers
    workers: int = 1
    room: str = "bench"
    concurrency: int = 500  # connects in flight at once
    connect_timeout: float = 30.0  # per subscriber: TCP connect + response head

    @property
    def inserts(self) -> int:
        return max(1, round(self.rate * self.duration))

    @property
    def open_deadline(self) -> float:
        return OPEN_SECONDS_BASE + OPEN_SECONDS_PER_SUBSCRIBER * self.subscribers


@dataclass(slots=True)
class Subscriber:
    """One stream's receipts: message id -> time its event was parsed (first copy)."""

    received: dict[int, float] = field(default_factory=dict)
    duplicated: int = 0
    ended_early: bool = False


class Tally:
    """Counts shared by every subscriber, so the grace period ends as soon as all is in."""

    def __init__(self, inserts: int) -> None:
        self.inserts = inserts  # events each open stream is owed
        self.open_streams = 0
        self.served = 0  # open streams that have had ``inserts`` events
        self.outcomes: Counter[str] = Counter()  # connected / refused / failed
        self.first_errors: dict[str, str] = {}  # one example per outcome
        self.complete = asyncio.Event()  # every open stream has had every event

    def opened(self) -> None:
        self.outcomes["connected"] += 1
        self.open_streams += 1

    def received(self, sub: Subscriber) -> None:
        if len(sub.received) == self.inserts:
            self.served += 1
            self.check()

    def ended(self, sub: Subscriber) -> None:
        self.open_streams -= 1
        if len(sub.received) >= self.inserts:
            self.served -= 1
        self.check()

    def check(self) -> None:
        if self.served >= self.open_streams:
            self.complete.set()


async def measure(plan: Plan, server: ServerProcess, backends: Backends, dsn: str) -> Result:
    """Run ``plan`` against ``server`` (started and healthy); never raises for a bad target."""
    result = Result(
        target=plan.target,
        subscribers=plan.subscribers,
        rate=plan.rate,
        duration_s=plan.duration,
        workers=plan.workers if plan.target == "pgchat" else 1,
        inserts=plan.inserts,
        expected=plan.inserts * plan.subscribers,
    )
    tree = ProcessTree(server.pid)
    await _warm_up(plan, server.port)
    rss_before = tree.rss_bytes()
    peak = {"rss": rss_before, "backends": 0}
    tally = Tally(plan.inserts)
    subscribers = [Subscriber() for _ in range(plan.subscribers)]
    clients: list[SSEClient] = []
    readers: list[asyncio.Task[None]] = []
    writer = await start_writer(plan.room, plan.rate, plan.inserts, dsn)
    sampler = asyncio.create_task(_sample(tree, backends, peak))
    try:
        await wait_ready(writer)
        opened_at = time.monotonic()
        await _open_all(plan, server.port, subscribers, clients, readers, tally)
        _note_connects(result, tally, time.monotonic() - opened_at)

        cpu_before, harness_before = tree.cpu_seconds(), _own_cpu_seconds()
        window_start = time.monotonic()
        commits = await _write(plan, writer, tally)
        result.window_s = time.monotonic() - window_start
        result.server_cpu_s = cpu_used(cpu_before, tree.cpu_seconds())
        result.harness_cpu_s = _own_cpu_seconds() - harness_before

        rss_end = tree.rss_bytes()
        result.server_rss_mb = rss_end / MEGABYTE
        result.server_rss_peak_mb = max(peak["rss"], rss_end) / MEGABYTE
        if result.connected:
            result.kb_per_subscriber = (rss_end - rss_before) / 1024 / result.connected
        result.server_threads = tree.threads()  # streams still open: a thread each would show
        result.pg_backends = peak["backends"]
        _balance(result, subscribers, commits)
    except Exception as exc:  # a broken target is a row with an error, not a crashed run
        logger.exception("%s N=%d failed", plan.target, plan.subscribers)
        result.error = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
    finally:
        sampler.cancel()
        for client in clients:
            client.close()  # the server sees the disconnects and cleans up (pgchat: at once)
        for task in readers:
            task.cancel()
        await asyncio.gather(sampler, *readers, return_exceptions=True)
        await stop_writer(writer)
    return result


def _note_connects(result: Result, tally: Tally, seconds: float) -> None:
    result.connect_s = seconds
    result.connected = tally.outcomes["connected"]
    result.refused = tally.outcomes["refused"]
    result.failed = tally.outcomes["failed"]
    if tally.first_errors:  # one example per kind, for the operator; counts are in the table
        logger.warning("%s N=%d: %s", result.target, result.subscribers, tally.first_errors)
    logger.info(
        "%s: %d of %d connected in %.1f s; inserting",
        result.target, result.connected, result.subscribers, seconds,
    )  # fmt: skip


# -- the writer process --------------------------------------------------------------------


async def start_writer(rooms: str, rate: float, count: int, dsn: str) -> asyncio.subprocess.Process:
    """bench/writer.py in a process of its own; ``rooms``: one slug, or several, commas."""
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.writer",
        "--room", rooms, "--rate", str(rate), "--count", str(count),
        cwd=PROJECT_DIR,
        env={**os.environ, "DATABASE_URL": dsn},
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def wait_ready(writer: asyncio.subprocess.Process) -> None:
    assert writer.stdout is not None
    async with asyncio.timeout(WRITER_READY_SECONDS):
        line = await writer.stdout.readline()
    if line.strip() != b"ready":
        raise RuntimeError(f"the writer did not start (said {line[:200]!r})")


async def _write(plan: Plan, writer: asyncio.subprocess.Process, tally: Tally) -> dict[int, float]:
    """Start the inserts; collect message id -> commit time; return at the end of grace."""
    assert writer.stdin is not None
    assert writer.stdout is not None
    writer.stdin.write(b"go\n")
    await writer.stdin.drain()
    commits: dict[int, float] = {}
    # The writer keeps its own schedule; it can only be late, so allow it twice the duration.
    async with asyncio.timeout(2 * plan.duration + plan.grace + 30):
        while (line := await writer.stdout.readline()) not in (b"done\n", b""):
            message_id, committed_at = line.split()
            commits[int(message_id)] = float(committed_at)
    if len(commits) < plan.inserts:
        raise RuntimeError(f"the writer stopped after {len(commits)} of {plan.inserts} inserts")
    tally.check()  # no stream open at all: nothing to wait for
    with contextlib.suppress(TimeoutError):  # stragglers get the grace period, no more
        await asyncio.wait_for(tally.complete.wait(), plan.grace)
    return commits


async def stop_writer(writer: asyncio.subprocess.Process) -> None:
    if writer.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            writer.kill()  # it is done, or this measurement is abandoned: either way, go
    await writer.wait()


# -- subscribers ---------------------------------------------------------------------------


async def _open_all(
    plan: Plan,
    port: int,
    subscribers: list[Subscriber],
    clients: list[SSEClient],
    readers: list[asyncio.Task[None]],
    tally: Tally,
) -> None:
    """Open every stream, ``plan.concurrency`` at a time; what misses the deadline failed."""
    gate = asyncio.Semaphore(plan.concurrency)
    path = f"/rooms/{plan.room}/events"

    async def open_one(sub: Subscriber) -> None:
        async with gate:
            try:
                client = await SSEClient.open(HOST, port, path, timeout=plan.connect_timeout)
            except SSEError as exc:
                _note(
                    tally,
                    "refused",
                    f"HTTP {exc.status}: {exc.body[:160].decode(errors='replace')}",
                )
                return
            except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
                _note(tally, "failed", f"{type(exc).__name__}: {exc}")
                return
        clients.append(client)
        tally.opened()
        readers.append(asyncio.create_task(_read(client, sub, tally)))

    attempts = [asyncio.create_task(open_one(sub)) for sub in subscribers]
    try:
        async with asyncio.timeout(plan.open_deadline):
            await asyncio.gather(*attempts)
    except TimeoutError:
        late = sum(not task.done() for task in attempts)
        for task in attempts:
            task.cancel()
        await asyncio.gather(*attempts, return_exceptions=True)
        tally.outcomes["failed"] += late
        tally.first_errors.setdefault("failed", f"not open after {plan.open_deadline:.0f} s")


async def _warm_up(plan: Plan, port: int) -> None:
    """One stream opened and closed before the baseline: the first request loads code and
    fills pools once per process, which is no subscriber's cost."""
    with contextlib.suppress(OSError, TimeoutError, SSEError, asyncio.IncompleteReadError):
        client = await SSEClient.open(HOST, port, f"/rooms/{plan.room}/events", timeout=10)
        await client.aclose()


def _note(tally: Tally, outcome: str, error: str) -> None:
    tally.outcomes[outcome] += 1
    tally.first_errors.setdefault(outcome, error)


async def _read(client: SSEClient, sub: Subscriber, tally: Tally) -> None:
    """Record the receipt time of every message event on one stream until it ends."""
    try:
        async for event in client.events():
            if event.name != "message.created":  # the writer only inserts; an edit made by
                continue  # someone else meanwhile must not count as a duplicate
            message_id = json.loads(event.data)["id"]
            if message_id in sub.received:
                sub.duplicated += 1
            else:
                sub.received[message_id] = event.received_at
                tally.received(sub)
    except Exception:  # anything unparseable ends this stream, and its events count as lost
        logger.exception("a stream failed")
    # Here only when the stream ended by itself: at the end the harness cancels this task.
    sub.ended_early = True
    tally.ended(sub)


# -- accounting ----------------------------------------------------------------------------


def _balance(result: Result, subscribers: list[Subscriber], commits: dict[int, float]) -> None:
    """Received, lost, duplicated, latency percentiles and rates, against the writer's ids."""
    latencies: list[float] = []
    for sub in subscribers:
        for message_id, received_at in sub.received.items():
            committed_at = commits.get(message_id)
            if committed_at is not None:  # someone else's insert into the room is not ours
                latencies.append((received_at - committed_at) * 1000)
        result.duplicated += sub.duplicated
        result.ended_early += sub.ended_early
    result.received = len(latencies)
    result.lost = result.expected - result.received
    if latencies:
        latencies.sort()
        result.p50_ms = percentile(latencies, 50)
        result.p95_ms = percentile(latencies, 95)
        result.p99_ms = percentile(latencies, 99)
        result.max_ms = latencies[-1]
    if result.received and result.server_cpu_s is not None:
        result.cpu_us_per_frame = result.server_cpu_s * 1e6 / result.received
    if result.window_s:
        result.frames_per_s = result.received / result.window_s


# -- sampling ------------------------------------------------------------------------------


async def _sample(tree: ProcessTree, backends: Backends, peak: dict[str, int]) -> None:
    """Peak server RSS and database sessions while the measurement runs."""
    while True:
        peak["rss"] = max(peak["rss"], tree.rss_bytes())
        try:
            peak["backends"] = max(peak["backends"], await backends.count())
        except Exception:  # the sampler must never end the measurement
            logger.warning("could not count backends", exc_info=True)
        await asyncio.sleep(SAMPLE_SECONDS)


def _own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
