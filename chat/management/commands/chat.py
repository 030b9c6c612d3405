"""``manage.py chat``: the operator's tools. ``post`` writes a message, ``tail`` follows a room
live, ``rooms`` lists rooms.

``tail`` runs the server's own code path in the terminal: a Listener (one LISTEN connection)
and a Feed (replay from the log, then live, with the same seams), so what it prints is what a
browser would receive.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import signal
from argparse import ArgumentParser
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError
from django.db.models import Count

from chat import db
from chat.events import ChatEvent
from chat.feed import CursorAhead, Feed
from chat.forms import message_text
from chat.listener import Listener
from chat.models import ChatMessage, Room
from chat.sse import InvalidCursor, parse_cursor


class Command(BaseCommand):
    help = "Operate pgchat from a terminal: post, tail, rooms."

    def add_arguments(self, parser: ArgumentParser) -> None:
        commands = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        post = commands.add_parser("post", help="write a message (same rules as the web)")
        post.add_argument("room", help="room slug, e.g. lobby")
        post.add_argument("text", help="the message text")
        post.add_argument("--author", default=None, help="author name (default: $USER)")
        tail = commands.add_parser("tail", help="print a room's events live; Ctrl-C to stop")
        tail.add_argument("room", help="room slug")
        tail.add_argument("--since", default=None, help="replay changes after this cursor")
        tail.add_argument("--count", type=int, default=None, help="exit after N events")
        commands.add_parser("rooms", help="rooms with message and subscriber counts")

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        if action == "post":
            self._post(options["room"], options["text"], options["author"])
        elif action == "tail":
            self._tail(options["room"], options["since"], options["count"])
        else:
            self._rooms()

    # -- post ----------------------------------------------------------------------------

    def _post(self, slug: str, text: str, author: str | None) -> None:
        try:
            text = message_text({"text": text})
        except ValidationError as exc:
            raise CommandError(exc.messages[0]) from None
        author = (author if author is not None else getpass.getuser()).strip()
        if not author:
            raise CommandError("--author must not be empty")
        room = self._room(slug)
        try:
            message = ChatMessage.objects.create(room=room, author=author[:150], text=text)
        except DatabaseError as exc:
            raise CommandError(f"the database refused it: {exc}".splitlines()[0]) from None
        self.stdout.write(f"posted message {message.pk} to {room.slug}")

    # -- tail ----------------------------------------------------------------------------

    def _tail(self, slug: str, since: str | None, count: int | None) -> None:
        room = self._room(slug)
        try:
            cursor = parse_cursor(since)
        except InvalidCursor as exc:
            raise CommandError(str(exc)) from None
        try:
            asyncio.run(self._follow(room.slug, cursor, count))
        except CursorAhead as exc:
            raise CommandError(str(exc)) from None

    async def _follow(self, room: str, since: int | None, count: int | None) -> None:
        listener = Listener(settings.CHAT_LISTEN_DATABASE_URL)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):  # Ctrl-C ends cleanly, no traceback
            loop.add_signal_handler(sig, stop.set)
        await listener.start()
        try:
            if not await listener.wait_connected(10):
                raise CommandError("could not LISTEN: is the database reachable?")
            feed = await Feed.open(listener, room, since)
            where = "now" if since is None else f"cursor {since}"
            self.stderr.write(f"following {room} from {where} (Ctrl-C to stop)")
            await self._print(feed, stop, count)
        finally:
            await listener.stop()
            await db.close_pool()

    async def _print(self, feed: Feed, stop: asyncio.Event, count: int | None) -> None:
        printed = 0
        batches = feed.batches()
        stopping = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                step = asyncio.ensure_future(anext(batches))
                done, _ = await asyncio.wait({step, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if step not in done:
                    step.cancel()
                    with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                        await step
                    break
                batch = step.result()
                for frame in batch or ():
                    if frame.event is None:  # typing, presence: not changes of the room
                        continue
                    self.stdout.write(describe(frame.event))
                    printed += 1
                    if count is not None and printed >= count:
                        return
                self.stdout.flush()
        except StopAsyncIteration:
            return
        finally:
            stopping.cancel()
            await batches.aclose()

    # -- rooms ---------------------------------------------------------------------------

    def _rooms(self) -> None:
        from chat.metrics import subscribers_by_room

        online = subscribers_by_room()
        rows = Room.objects.annotate(messages_count=Count("messages")).order_by("slug")
        self.stdout.write(f"{'room':<30} {'private':<8} {'messages':>9} {'subscribers':>12}")
        for room in rows:
            watching = "-" if online is None else str(online.get(room.slug, 0))
            private = "yes" if room.is_private else ""
            self.stdout.write(
                f"{room.slug:<30} {private:<8} {room.messages_count:>9} {watching:>12}"
            )
        if online is None:
            self.stderr.write(
                "subscribers: unknown (no running server shares PROMETHEUS_MULTIPROC_DIR)"
            )

    def _room(self, slug: str) -> Room:
        try:
            return Room.objects.get(slug=slug)
        except Room.DoesNotExist:
            raise CommandError(f"no room {slug!r} (see: manage.py chat rooms)") from None


def describe(event: ChatEvent) -> str:
    """One line per event: cursor, local time, author, what happened."""
    message = event.message or {}
    stamp = message.get("edited_at") or message.get("created_at") or message.get("deleted_at")
    when = datetime.fromisoformat(stamp).astimezone().strftime("%H:%M:%S") if stamp else "--:--:--"
    author = message.get("author") or "?"
    if event.op in ("reacted", "unreacted"):
        author = message.get("user") or "?"
        verb = "reacted" if event.op == "reacted" else "took back"
        what = f"{verb} {message.get('emoji')} on message {event.message_id}"
    elif event.op == "deleted":
        what = f"deleted message {event.message_id}"
    elif event.op == "updated":
        what = f"edited message {event.message_id}: {message.get('text', '')}"
    else:
        what = message.get("text", "")
    line = f"[{event.seq}] {when} {author}: {what}".replace("\n", "\n    ")
    # Text from the database is anyone's: no escape sequence reaches the operator's terminal.
    return "".join(ch if ch.isprintable() or ch == "\n" else "\ufffd" for ch in line)
