"""Stopping a server with streams open prints no tracebacks.

At shutdown hypercorn gives open connections ``graceful_timeout`` seconds to finish, then
cancels them, and an event stream never finishes on its own (no ASGI event tells an app that
the server is stopping before then: the lifespan's ``shutdown`` comes after). A cancelled
connection is what a shutdown is, but the CPython we run (3.11.7) reports each one, from
asyncio's stream server, as "Exception in callback ... CancelledError" with a traceback: a bug
fixed upstream by gh-113538 (in 3.12.2 and 3.13). With 1,000 streams open, Ctrl-C printed
1,000 tracebacks.

``silence_cut_connections`` installs a loop exception handler (asyncio's public API) that
drops reports whose exception is a CancelledError, never an error, and passes every other
report on as before. tests/test_shutdown.py proves the server is quiet; it also fails once
the running CPython no longer has the bug, so this module goes when the bug does.
"""

from __future__ import annotations

import asyncio
from typing import Any


def silence_cut_connections() -> None:
    """Install the filter on the running loop (once per worker, at start-up)."""
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if isinstance(context.get("exception"), asyncio.CancelledError):
            return  # a connection cancelled at shutdown: see above
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)
