"""Django's stock middleware, run on the event loop (chat/stock_middleware.py): no thread hop for a
plain GET (every event stream's open), a thread still for what may block, and the same
headers and refusals as the stock classes give."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import django
from asgiref.sync import SyncToAsync, ThreadSensitiveContext
from django.conf import settings
from django.contrib.sessions.backends.db import SessionStore
from django.core.handlers.base import BaseHandler
from django.http import HttpRequest, HttpResponse
from django.test import RequestFactory, override_settings
from django.urls import path
from django.utils.module_loading import import_string

from chat import stock_middleware

from .servers import PROJECT_DIR

OURS = [import_string(name) for name in settings.MIDDLEWARE]
# The stock class each of ours extends, in the same order (the CSP one is ours alone).
STOCK = [cls.__mro__[2] if issubclass(cls, stock_middleware.OnTheLoop) else cls for cls in OURS]


def dotted(classes: list[type]) -> list[str]:
    return [f"{cls.__module__}.{cls.__qualname__}" for cls in classes]


async def ok(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


async def remember(request: HttpRequest) -> HttpResponse:
    await request.session.aset("seen", 1)
    return HttpResponse("ok")


async def peek(request: HttpRequest) -> HttpResponse:
    await request.session.aget("seen")  # read, not written: Vary: Cookie, no save
    return HttpResponse("ok")


urlpatterns = [path("ok", ok), path("remember", remember), path("peek", peek)]  # the urlconf


async def run(request: HttpRequest, classes: list[type]) -> tuple[Any, bool]:
    """The response of Django's own handler with ``classes`` as MIDDLEWARE, and whether any
    hook took the request's thread.

    As Django's ASGI handler does, the request runs in a ThreadSensitiveContext: asgiref
    starts the request's own thread at its first sync hop, and only then.
    """
    request.urlconf = __name__
    with override_settings(MIDDLEWARE=dotted(classes)):
        handler = BaseHandler()
        handler.load_middleware(is_async=True)
    async with ThreadSensitiveContext():
        context = SyncToAsync.thread_sensitive_context.get()
        response = await handler.get_response_async(request)
        hopped = context in SyncToAsync.context_to_thread_executor
    return response, hopped


def test_ours_extend_the_stock_classes_one_for_one() -> None:
    # django-axes' middleware comes last, as it asks; it is async-capable, so the no-thread
    # tests below hold with it in the chain.
    assert [cls.__module__.split(".")[0] for cls in STOCK] == ["django"] * 7 + ["chat", "axes"]
    assert all(issubclass(ours, stock) for ours, stock in zip(OURS, STOCK, strict=True))


async def test_a_get_takes_no_thread_and_gets_the_stock_headers() -> None:
    response, hopped = await run(RequestFactory().get("/ok"), OURS)
    assert not hopped
    stock_response, stock_hopped = await run(RequestFactory().get("/ok"), STOCK)
    assert stock_hopped  # what the stock classes do: the check above can fail
    assert response.status_code == stock_response.status_code == 200
    assert dict(response.headers) == dict(stock_response.headers)
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"


async def test_a_post_without_a_token_is_refused_as_by_the_stock_classes() -> None:
    response, hopped = await run(RequestFactory().post("/ok"), OURS)
    assert hopped  # the check may parse the body: in the thread
    stock_response, _ = await run(RequestFactory().post("/ok"), STOCK)
    assert response.status_code == stock_response.status_code == 403
    assert response.content == stock_response.content
    assert b"CSRF" in response.content


async def test_a_session_read_but_not_written_varies_on_cookie_as_stock() -> None:
    factory = RequestFactory()
    response, _ = await run(factory.get("/peek", HTTP_COOKIE="sessionid=nosuch"), OURS)
    stock_response, _ = await run(factory.get("/peek", HTTP_COOKIE="sessionid=nosuch"), STOCK)
    assert response["Vary"] == stock_response["Vary"] == "Cookie"
    assert dict(response.cookies) == dict(stock_response.cookies)


async def test_a_modified_session_is_saved_in_a_thread() -> None:
    response, hopped = await run(RequestFactory().get("/remember"), OURS)
    assert hopped
    key = response.cookies[settings.SESSION_COOKIE_NAME].value
    assert await SessionStore(key).aget("seen") == 1  # written to the database


def test_config_asgi_leaves_request_started_no_sync_receiver() -> None:
    """Each sync receiver would start the request's thread before the first middleware; under
    ASGI, Django's two have nothing to do there (tests the real module, in a process of its
    own, since importing it changes the signals)."""
    code = (
        "import json, config.asgi\n"
        "from django.core import signals\n"
        "from django.core.handlers.asgi import ASGIHandler as H\n"
        "def names(signal):\n"
        "    sync, asyncs = signal._live_receivers(H)\n"
        "    return [f.__name__ for f in sync]\n"
        "print(json.dumps([names(signals.request_started), names(signals.request_finished)]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    started, finished = json.loads(result.stdout.splitlines()[-1])
    assert started == []
    assert "close_old_connections" in finished  # the request's connections are still closed


def test_the_rules_were_checked_against_this_django() -> None:
    """chat/stock_middleware.py says which stock hooks may block from Django 5.2's source;
    another Django must have its hooks read again before this is raised."""
    assert django.VERSION[:2] == (5, 2)
