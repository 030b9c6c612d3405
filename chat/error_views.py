"""Django's error hooks (handler400/403/404/500, CSRF_FAILURE_VIEW): the project's own pages.

API and stream URLs get the API's one error shape, ``{"error": "..."}`` (chat/jsonapi.py);
pages get a styled HTML page (templates/error.html, which extends base.html). A 404 shown to
an anonymous visitor offers to log in: a private room answers exactly as a room that does not
exist, and its members may simply not be logged in yet.
"""

from __future__ import annotations

import logging
import re

from django.http import Http404, HttpRequest, HttpResponse
from django.template.loader import render_to_string

from .jsonapi import error

logger = logging.getLogger("pgchat.errors")

# What answers JSON: anything below a room other than its page, the per-user stream, the
# workspace and DM API, operations and search. Everything else is a page.
_API_PATH = re.compile(r"/(rooms/[^/]+/.|events\b|me/|dm/|healthz\b|metrics\b|search\b)")

TITLES = {
    400: "Bad request",
    403: "Not allowed",
    404: "Not found",
    408: "Request timeout",
    413: "Too large",
    500: "Something went wrong",
}


def is_api_path(path: str) -> bool:
    return _API_PATH.match(path) is not None


def respond(request: HttpRequest | None, status: int, message: str) -> HttpResponse:
    """The error answer for ``request``'s URL: JSON for the API, else a styled page."""
    if request is None or is_api_path(request.path_info):
        return error(status, message)
    context = {
        "status": status,
        "title": TITLES.get(status, "Error"),
        "message": message,
        "offer_login": status == 404 and not _logged_in(request),
    }
    try:
        # A 500 may come from the database being away: render without the request's context
        # (no session or user to look up) so the page itself cannot fail the same way.
        html: str = render_to_string("error.html", context, None if status >= 500 else request)
    except Exception:
        logger.exception("the error page for %s failed to render", status)
        html = f"<!doctype html><title>{status}</title><h1>{TITLES.get(status, 'Error')}</h1>"
    return HttpResponse(html, status=status)


def _logged_in(request: HttpRequest) -> bool:
    user = getattr(request, "user", None)
    return bool(user is not None and user.is_authenticated)


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """Django's own 400s (a malformed multipart body, a bad Host header)."""
    return respond(request, 400, f"bad request: {exception or 'malformed'}".splitlines()[0][:200])


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return respond(request, 403, "You are not allowed to do this.")


def page_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    # Http404's message is ours (rooms.RoomNotFound's), never a path resolver's dump.
    message = str(exception) if isinstance(exception, Http404) else ""
    if not message or message.startswith("{"):  # the resolver's {"path": ..., "tried": ...}
        message = "There is nothing at this address."
    return respond(request, 404, message)


def server_error(request: HttpRequest) -> HttpResponse:
    """Django has logged the traceback (LOGGING, "django.request"); the client gets none."""
    return respond(request, 500, "The server failed to answer. It has been logged.")


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """CSRF refusals: the API's JSON error, or a page saying to reload the form."""
    if is_api_path(request.path_info):
        return error(403, f"CSRF verification failed: {reason}")
    return respond(
        request, 403, "The form expired or came from another site. Reload the page and try again."
    )
