"""``python -m bench`` (``make bench``): the fan-out benchmark's command line.

Starts each target server in turn (pgchat, the ceiling, the hypercorn floor, the
per-connection reference), opens N SSE subscribers to one room, inserts at a fixed rate from
psql's point of view, and prints an aligned table, then ONE line of JSON (a list of result
objects) as the last line of stdout. Progress and warnings go to stderr.

The default schedule is the issue's: 10 inserts/s up to 1,000 subscribers and 1 insert/s
above (10,000 subscribers at 10 inserts/s is 100,000 frames/s, past what one client process
on this box can read). ``--rate`` sets one rate for every size.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence

from . import report, runner
from .harness import Plan
from .servers import TARGETS

DEFAULT_SIZES = "10,100,1000,10000"
LOW_RATE_ABOVE = 1000  # subscribers; the default rate drops from 10 to 1 inserts/s above


def _int_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected numbers separated by commas, got {text!r}"
        ) from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"sizes must be positive, got {text!r}")
    return values


def _target_list(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = sorted(set(names) - set(TARGETS))
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown target(s) {unknown}; choose from {TARGETS}")
    return names


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--sizes", type=_int_list, default=_int_list(DEFAULT_SIZES), help="subscriber counts")
    add("--rate", type=float, help="inserts/s at every size (default: 10, or 1 above 1,000)")
    add("--duration", type=float, default=10.0, help="seconds of inserts per measurement")
    add("--grace", type=float, default=5.0, help="seconds to wait for stragglers")
    add("--targets", type=_target_list, default=list(TARGETS), help=",".join(TARGETS))
    add(
        "--workers",
        type=int,
        default=int(os.environ.get("WORKERS") or 1),
        help="pgchat's hypercorn workers (default: $WORKERS or 1)",
    )
    add(
        "--per-connection-max",
        type=int,
        default=300,
        help="run the per-connection reference only up to this many subscribers",
    )
    add("--concurrency", type=int, default=500, help="subscriber connects in flight at once")
    add("--connect-timeout", type=float, default=30.0, help="seconds per subscriber connect")
    add("--room", default="bench")
    args = parser.parse_args(argv)
    if args.rate is not None and args.rate <= 0:
        parser.error(f"--rate must be positive, got {args.rate}")
    if args.duration <= 0 or args.grace < 0 or args.workers < 1 or args.concurrency < 1:
        parser.error("--duration, --workers and --concurrency must be positive, --grace >= 0")
    return args


def plans(args: argparse.Namespace) -> list[Plan]:
    """One plan per target and size, the per-connection reference only up to its cap."""
    schedule = []
    for target in args.targets:
        for size in args.sizes:
            if target == "per-connection" and size > args.per_connection_max:
                logging.info("per-connection: skipping N=%d (over --per-connection-max)", size)
                continue
            rate = args.rate or (10.0 if size <= LOW_RATE_ABOVE else 1.0)
            schedule.append(
                Plan(
                    target=target,
                    subscribers=size,
                    rate=rate,
                    duration=args.duration,
                    grace=args.grace,
                    workers=args.workers,
                    room=args.room,
                    concurrency=args.concurrency,
                    connect_timeout=args.connect_timeout,
                )
            )
    return schedule


async def _main(args: argparse.Namespace, results: list[report.Result]) -> None:
    # SIGTERM cancels the run like Ctrl-C does, so every server is still stopped (finally).
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)

    def finished(result: report.Result) -> None:
        results.append(result)
        print(report.summary(result), file=sys.stderr, flush=True)

    await runner.run(plans(args), runner.database_url(), on_result=finished)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s: %(message)s"
    )
    args = parse_args(argv)
    results: list[report.Result] = []
    try:
        asyncio.run(_main(args, results))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted: servers stopped; results so far follow", file=sys.stderr)
        status = 130
    else:
        status = 0 if results and not any(result.error for result in results) else 1
    print(report.table(results))
    print(report.json_line(results), flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
