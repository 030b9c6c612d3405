"""Log-in lockout, answered: django-axes' ``AXES_LOCKOUT_CALLABLE``.

Why django-axes: it is the maintained Django app for exactly this, it keeps its counts in
the database (so every worker and host sees them, with no new server), it counts per
username and per address on their own (``AXES_LOCKOUT_PARAMETERS``), its authentication
backend refuses a locked-out log-in *before* any password is hashed (a wrong log-in costs
the hasher's full ~300 ms of CPU), and its admin pages let staff lift a lockout. Its update
of a count is ``SELECT ... FOR UPDATE`` then ``failures + 1`` on a row unique per
(username, address, user agent), so concurrent failures are all counted.

It reads the client address through chat/client_address.py, like every other limit here.
"""

from __future__ import annotations

import math
from typing import Any

from axes.handlers.proxy import AxesProxyHandler
from axes.helpers import get_cool_off, get_failure_limit
from django.contrib.auth.forms import AuthenticationForm
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from .limits import limited_page, wait_text


def lockout_response(request: HttpRequest, *_ignored: Any) -> HttpResponse:
    """The log-in page again, answering 429 with the reason and ``Retry-After``.

    The arguments after the request are ignored: django-axes passes (response, credentials)
    from its sync middleware but (credentials,) from its async one; the credentials it
    matched are on the request either way.
    """
    credentials = getattr(request, "axes_credentials", None) or {}
    username = credentials.get("username") or request.POST.get("username", "")
    retry_after = seconds_until_unlocked(request, credentials)
    form = AuthenticationForm(request, initial={"username": username})
    reason = (
        "Too many failed log-ins for this account or from your address. "
        f"Please try again {wait_text(retry_after)}."
    )
    next_url = request.POST.get("next") or request.GET.get("next", "")
    context = {"form": form, "next": next_url}
    return limited_page(request, "registration/login.html", context, reason, retry_after)


def seconds_until_unlocked(request: HttpRequest, credentials: dict[str, Any]) -> int:
    """When the failures still counted drop below the limit, for every lockout that holds
    (by username, by address): each attempt row leaves the count a cool-off after its last
    failure, oldest first."""
    cool_off = get_cool_off(request)
    if cool_off is None:  # AXES_COOLOFF_TIME unset: locked until staff lift it
        return 24 * 3600
    limit = get_failure_limit(request, credentials)
    handler = AxesProxyHandler.get_implementation()
    attempts: list[QuerySet[Any]] = handler.get_user_attempts(request, credentials)
    now, unlocked_at = timezone.now(), timezone.now()
    for counted in attempts:
        rows = sorted(counted.values_list("attempt_time", "failures_since_start"))
        remaining = sum(failures for _, failures in rows)
        for attempt_time, failures in rows:
            if remaining < limit:
                break
            remaining -= failures
            unlocked_at = max(unlocked_at, attempt_time + cool_off)
    return max(1, math.ceil((unlocked_at - now).total_seconds()))
