"""Django's stock middleware, with its hooks run on the event loop rather than a thread each.

In an async stack, ``MiddlewareMixin`` sends every ``process_request`` and
``process_response`` through ``sync_to_async``: a hop to a thread asgiref starts for the
request, and back. Most stock hooks do no I/O (they read cookies, set headers and lazy
attributes), so here they run on the loop; a hook that may touch the database or parse a
body keeps its thread, decided per request by the ``*_needs_thread`` methods. The rules
follow Django 5.2's hook bodies (pinned in requirements.txt): recheck them on an upgrade,
or when turning on CSRF_USE_SESSIONS.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, cast

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth import middleware as auth
from django.contrib.messages import middleware as messages
from django.contrib.sessions import middleware as sessions
from django.http import HttpRequest, HttpResponseBase
from django.middleware import clickjacking, common, csrf, security

SAFE_METHODS = ("GET", "HEAD", "OPTIONS", "TRACE")  # as CsrfViewMiddleware has them


class OnTheLoop:
    """Mixin for a stock ``MiddlewareMixin``: hooks on the loop unless they may block.

    A subclass says, per request, which of its hooks may block (``*_needs_thread``).
    """

    # As MiddlewareMixin declares it; __acall__ runs only in an async stack, where it is async.
    get_response: Callable[[HttpRequest], HttpResponseBase | Awaitable[HttpResponseBase]]

    def request_needs_thread(self, request: HttpRequest) -> bool:
        return False

    def response_needs_thread(self, request: HttpRequest) -> bool:
        return False

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        # MiddlewareMixin.__call__ runs this in an async stack, in place of its own.
        response = None
        if hasattr(self, "process_request"):
            response = await _hook(
                self.process_request, self.request_needs_thread(request), request
            )
        response = response or await cast(Awaitable[HttpResponseBase], self.get_response(request))
        if hasattr(self, "process_response"):
            response = await _hook(
                self.process_response, self.response_needs_thread(request), request, response
            )
        return cast(HttpResponseBase, response)


async def _hook(method: Callable[..., Any], in_thread: bool, *args: Any) -> Any:
    if in_thread:
        return await sync_to_async(method, thread_sensitive=True)(*args)
    return method(*args)


class SecurityMiddleware(OnTheLoop, security.SecurityMiddleware):
    """Headers and redirects from settings: no I/O."""


class CommonMiddleware(OnTheLoop, common.CommonMiddleware):
    """User-agent checks and APPEND_SLASH redirects (URL resolving): no I/O."""


class XFrameOptionsMiddleware(OnTheLoop, clickjacking.XFrameOptionsMiddleware):
    """One header: no I/O."""


class AuthenticationMiddleware(OnTheLoop, auth.AuthenticationMiddleware):
    """Sets ``request.user`` lazily: the user is read only when a view asks for it."""


class SessionMiddleware(OnTheLoop, sessions.SessionMiddleware):
    """Opening a session reads nothing; saving one writes to the database (in a thread)."""

    def response_needs_thread(self, request: HttpRequest) -> bool:
        session = getattr(request, "session", None)
        return settings.SESSION_SAVE_EVERY_REQUEST or bool(getattr(session, "modified", True))


class MessageMiddleware(OnTheLoop, messages.MessageMiddleware):
    """Storing flash messages may load the session from the database (in a thread)."""

    def response_needs_thread(self, request: HttpRequest) -> bool:
        storage = getattr(request, "_messages", None)
        return storage is None or bool(storage.used or storage.added_new)


class CsrfViewMiddleware(OnTheLoop, csrf.CsrfViewMiddleware):
    """The token is a cookie; an unsafe method's check may parse the body (in a thread)."""

    def request_needs_thread(self, request: HttpRequest) -> bool:
        return bool(settings.CSRF_USE_SESSIONS)  # the token would live in the session

    def response_needs_thread(self, request: HttpRequest) -> bool:
        return bool(settings.CSRF_USE_SESSIONS)

    # [override]: async where Django's is sync, on purpose: the handler awaits a coroutine
    # process_view as it is (BaseHandler.adapt_method_mode), so safe methods stay on the loop.
    async def process_view(  # type: ignore[override]
        self, request: HttpRequest, callback: Any, args: Any, kwargs: Any
    ) -> HttpResponseBase | None:
        in_thread = request.method not in SAFE_METHODS or settings.CSRF_USE_SESSIONS
        response = await _hook(super().process_view, in_thread, request, callback, args, kwargs)
        return cast(HttpResponseBase | None, response)
