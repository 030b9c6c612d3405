"""Middleware: a Content-Security-Policy on every response, and Django's stock middleware
running its hooks on the event loop instead of a thread per hook."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.contrib.auth import middleware as auth
from django.contrib.messages import middleware as messages
from django.contrib.sessions import middleware as sessions
from django.http import HttpRequest, HttpResponseBase
from django.middleware import clickjacking, common, csrf, security

SAFE_METHODS = ("GET", "HEAD", "OPTIONS", "TRACE")  # as CsrfViewMiddleware has them

POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; "
    "frame-ancestors 'none'"
)


class ContentSecurityPolicyMiddleware:
    """Adds the header without a thread hop: it is async-native, unlike MiddlewareMixin."""

    async_capable = True
    sync_capable = True

    def __init__(
        self, get_response: Callable[[HttpRequest], HttpResponseBase | Awaitable[HttpResponseBase]]
    ) -> None:
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest):  # type: ignore[no-untyped-def]
        if iscoroutinefunction(self):
            return self._acall(request)
        response = self.get_response(request)
        response.setdefault("Content-Security-Policy", POLICY)  # type: ignore[union-attr]
        return response

    async def _acall(self, request: HttpRequest) -> HttpResponseBase:
        response = await self.get_response(request)  # type: ignore[misc]
        response.setdefault("Content-Security-Policy", POLICY)
        return response


# -- Django's stock middleware, without a thread hop per hook ------------------------------


class OnTheLoop:
    """Mixin for a stock ``MiddlewareMixin``: its hooks run on the event loop, not a thread.

    In an async stack, ``MiddlewareMixin`` sends each ``process_request`` and
    ``process_response`` through ``sync_to_async``: a hop to the request's own thread
    (asgiref gives each request one) and back. The stock list below made 13 hops per
    request; under a reconnect storm, 500 requests in flight meant 500 threads taking turns
    at the GIL, and opening 10,000 event streams took 104 s where the bare hypercorn app
    took 9 s. Most hooks do no I/O at all (they read cookies, set headers and attributes),
    so here they run on the loop. A hook that might touch the database or parse a body
    still gets its thread, decided per request by the two ``*_needs_thread`` methods.

    Sound for this project's settings (sessions in the database, the CSRF token in a
    cookie): a subclass says what, in its hooks, may block.
    """

    get_response: Callable[[HttpRequest], Awaitable[HttpResponseBase]]

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
        response = response or await self.get_response(request)
        if hasattr(self, "process_response"):
            response = await _hook(
                self.process_response, self.response_needs_thread(request), request, response
            )
        return response


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

    async def process_view(  # type: ignore[override]
        self, request: HttpRequest, callback: Any, args: Any, kwargs: Any
    ) -> HttpResponseBase | None:
        in_thread = request.method not in SAFE_METHODS or settings.CSRF_USE_SESSIONS
        return await _hook(super().process_view, in_thread, request, callback, args, kwargs)
