"""Process wiring: Django's ASGI app, plus the lifespan that starts and stops the listener.

Django answers only ``http`` scopes, so this wrapper answers ``lifespan`` itself. Each
hypercorn worker process runs it once: one listener and one read pool per process.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# get_asgi_application() sets Django up, so it comes before the imports below. Hypercorn
# serves no static files; Django's handler serves our two and the admin's (a CDN or
# `collectstatic` behind a proxy would take over in a large deployment).
django_application = ASGIStaticFilesHandler(get_asgi_application())

from django.conf import settings  # noqa: E402
from django.core import signals  # noqa: E402
from django.db import close_old_connections, reset_queries  # noqa: E402

from chat import db, heap, metrics  # noqa: E402
from chat.listener import get_listener  # noqa: E402
from chat.stream import ASGI_SEND  # noqa: E402

# Django's two sync receivers of request_started are no-ops under ASGI: they run in the
# request's own thread, which asgiref starts for that very call and which has no database
# connection yet (connections are thread-local). Starting that thread was the one thread hop
# left in opening an event stream (chat/stock_middleware.py took out the others), and under a
# reconnect storm, hundreds of threads at once. request_finished keeps its receiver: by
# then the request may have used connections, in its thread, that must be closed.
signals.request_started.disconnect(close_old_connections)
signals.request_started.disconnect(reset_queries)

logger = logging.getLogger("pgchat.asgi")
Scope = dict[str, Any]
STARTUP_WAIT_SECONDS = 10.0  # serve only once LISTEN is up, unless the database is down


async def application(scope: Scope, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
    elif scope["type"] == "websocket":  # Django would raise on it; events are SSE here
        await receive()  # websocket.connect
        await send({"type": "websocket.close", "code": 1003})
    else:
        # Event streams write their frames with the server's send, past Django's per-part
        # loop (chat/stream.py, _frames); Django still sends the headers and the first part.
        scope[ASGI_SEND] = send
        await django_application(scope, receive, send)


async def _lifespan(receive: Any, send: Any) -> None:
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
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            # hypercorn has already ended open streams (after graceful_timeout); this closes
            # any left and the listener's connection.
            await get_listener().stop()
            await db.close_pool()
            metrics.forget_this_process()
            await send({"type": "lifespan.shutdown.complete"})
            return
