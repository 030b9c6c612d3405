"""JSON plumbing shared by the API views: the one error shape, method routing, body parsing.

Every API error is ``{"error": "..."}`` with a 4xx status (503 when the database is away):
a client never sees a 500 or a traceback for anything it sent.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
from asgiref.sync import sync_to_async
from django.core.exceptions import BadRequest, RequestDataTooBig, ValidationError
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponseBase, JsonResponse, QueryDict
from django.http.multipartparser import MultiPartParserError
from psycopg_pool import PoolTimeout

from . import limits, ratelimit, rooms, sse

logger = logging.getLogger("pgchat.api")
View = Callable[..., Awaitable[HttpResponseBase]]


def error(status: int, message: str, **headers: str) -> JsonResponse:
    """The one error shape of the API: ``{"error": "..."}``."""
    response = JsonResponse({"error": message}, status=status)
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response


async def dispatch(request: HttpRequest, handlers: dict[str, View], *args: Any) -> HttpResponseBase:
    """Route by method, answering a JSON 405 with an Allow header for the others; map the
    errors of chat/rooms.py to 404, 403 and 400, a rate limit to 429 with Retry-After,
    and an unreachable database to 503."""
    handler = handlers.get(request.method or "")
    if handler is None:
        allowed = ", ".join(sorted(handlers))
        return error(405, f"method {request.method} not allowed; use {allowed}", Allow=allowed)
    try:
        if request.method not in ("GET", "HEAD"):
            await sync_to_async(limits.check_writes)(request.user)
        return await handler(request, *args)
    except rooms.RoomNotFound as exc:
        return error(404, str(exc))
    except rooms.NotAllowed as exc:
        return error(403, str(exc))
    except ratelimit.RateLimited as exc:
        return error(429, str(exc), Retry_After=str(exc.retry_after))
    except rooms.InvalidChange as exc:
        return error(400, str(exc))
    except (DatabaseError, psycopg.Error, PoolTimeout) as exc:  # down, restarting, saturated
        logger.warning("database unavailable for %s %s: %r", request.method, request.path, exc)
        return error(503, "the database is unavailable; retry shortly", Retry_After="2")


def invalid(exc: RequestDataTooBig | ValidationError) -> JsonResponse:
    """413 for too long (the text, or the whole body), 400 for anything else."""
    if isinstance(exc, RequestDataTooBig):
        return error(413, "request body too large")
    return error(413 if exc.code == "max_length" else 400, exc.messages[0])


def request_data(request: HttpRequest) -> dict[str, Any]:
    """A JSON object body, or form fields; raises ValidationError on anything else."""
    if request.content_type == "application/json":
        try:
            data = json.loads(request.body or b"null")
        except (ValueError, UnicodeDecodeError) as exc:
            raise ValidationError(f"body is not valid JSON: {exc}", code="invalid") from exc
        except RecursionError:  # "[[[[..." nested deeper than the parser's stack
            raise ValidationError(
                "body is not valid JSON: nested too deep", code="invalid"
            ) from None
        if not isinstance(data, dict):
            raise ValidationError("JSON body must be an object", code="invalid")
        return data
    if request.method == "POST":
        try:
            return request.POST.dict()
        # A multipart body without a boundary; a form declaring a charset other than UTF-8
        # (Django refuses it: RFC 1866 forms are UTF-8).
        except (MultiPartParserError, BadRequest) as exc:
            raise ValidationError(f"malformed form body: {exc}", code="invalid") from exc
    # Django parses form bodies for POST only; PATCH with a form body is parsed here, as
    # UTF-8 whatever charset it declares, as Django does for POST.
    return QueryDict(request.body, encoding="utf-8").dict()


def int_param(
    request: HttpRequest, name: str, *, minimum: int, maximum: int = sse.MAX_CURSOR
) -> int | None:
    raw = request.GET.get(name)
    if raw is None or raw == "":
        return None
    if not raw.isascii() or not raw.isdigit() or not minimum <= int(raw) <= maximum:
        raise ValueError(f"{name} must be an integer from {minimum} to {maximum}, got {raw!r}")
    return int(raw)
