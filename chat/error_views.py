"""Django's own error hooks (``handler400``, ``CSRF_FAILURE_VIEW``) in the API's shape."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse

from .jsonapi import error


def bad_request(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    """Django's own 400s (a malformed multipart body, a bad Host header) as JSON errors."""
    return error(400, f"bad request: {exception or 'malformed'}".splitlines()[0][:200])


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """CSRF refusals as the API's JSON error (a page form still gets a readable message)."""
    return error(403, f"CSRF verification failed: {reason}")
