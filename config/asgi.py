"""Process wiring: the ASGI application hypercorn serves.

- ``lifespan``: starts and stops the listener and the read pool (Django answers only
  ``http``). Each hypercorn worker process runs it once: one listener, one pool per process.
- ``http``: the event streams go to their own small ASGI endpoints (``ROUTES``; chat/stream.py
  says why); every other path goes to Django, behind chat/body_limit.py's guard (bodies
  bounded in size and time before Django reads them).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# get_asgi_application() sets Django up, so it comes before the imports below. Static files
# are WhiteNoise's, as Django middleware (chat/static_files.py).
_django = get_asgi_application()

from django.conf import settings  # noqa: E402

from chat import (  # noqa: E402
    db,
    heap,
    metrics,
    search_stream,
    shutdown_noise,
    stream,
    user_stream,
)
from chat.body_limit import BodyLimit  # noqa: E402
from chat.listener import get_listener  # noqa: E402

# Bodies are bounded in size and time before Django reads them (chat/body_limit.py).
django_application = BodyLimit(_django)  # type: ignore[arg-type]  # Mapping vs dict

logger = logging.getLogger("pgchat.asgi")
Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[Mapping[str, Any]], Awaitable[None]]
Endpoint = Callable[..., Awaitable[None]]  # (scope, receive, send, **the path's groups)
STARTUP_WAIT_SECONDS = 10.0  # serve only once LISTEN is up, unless the database is down

# Paths served beside Django, each by an ASGI endpoint; a path's named groups become its
# keyword arguments. Slugs as Django's <slug:...> converter matches them.
ROUTES: list[tuple[re.Pattern[str], Endpoint]] = [
    (re.compile(r"/rooms/(?P<slug>[-a-zA-Z0-9_]+)/events"), stream.room_events),
    (re.compile(r"/events"), user_stream.user_events),
    (re.compile(r"/search/events"), search_stream.search_events),
]


async def application(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "http":
        path = scope["path"]
        root_path = scope.get("root_path", "")  # mounted under a prefix: routes are below it
        if root_path and path.startswith(root_path):
            path = path[len(root_path) :]
        for pattern, endpoint in ROUTES:
            if match := pattern.fullmatch(path):
                await endpoint(scope, receive, send, **match.groupdict())
                return
        await django_application(scope, receive, send)
    elif scope["type"] == "lifespan":
        await _lifespan(receive, send)
    elif scope["type"] == "websocket":  # Django would raise on it; events are SSE here
        await receive()  # websocket.connect
        await send({"type": "websocket.close", "code": 1003})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            try:
                await db.open_pool(settings.DATABASE_URL)
                listener = get_listener()
                await listener.start()
                # A down database must not stop the server: the listener keeps retrying
                # and /healthz says 503 meanwhile.
                if not await listener.wait_connected(STARTUP_WAIT_SECONDS):
                    logger.warning("serving before the listener could connect")
            except Exception as exc:
                logger.exception("start-up failed")
                await send({"type": "lifespan.startup.failed", "message": repr(exc)})
                return
            heap.settle()  # full collections pause every stream: make them rare and small
            shutdown_noise.silence_cut_connections()  # Ctrl-C with streams open: no tracebacks
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            # hypercorn has already cancelled the streams still open (after graceful_timeout);
            # this closes the listener's connection and the pool.
            await get_listener().stop()
            await db.close_pool()
            metrics.forget_this_process()
            await send({"type": "lifespan.shutdown.complete"})
            return
