"""The limits themselves: who is counted, against which setting, and what they are told.

The counting is chat/ratelimit.py's (PostgreSQL, shared by every worker and host); log-in
lockout is django-axes' (chat/login_lockout.py). Over a limit, the API answers 429 JSON
(chat/jsonapi.py turns ``RateLimited`` into it) and a page answers 429 with its form again,
the visitor's input kept and the reason shown; both carry ``Retry-After``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Literal

from django import forms
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from . import ratelimit
from .client_address import limited_address

Per = Literal["user", "address"]


def configured(setting: str) -> ratelimit.Rate:
    count, seconds = getattr(settings, setting)
    return ratelimit.Rate(count, seconds)


def wait_text(seconds: int) -> str:
    """'in 42 s', 'in 15 min', 'in 2 h': how long, said as a person would."""
    if seconds < 120:
        return f"in {seconds} s"
    if seconds < 2 * 3600:
        return f"in {-(-seconds // 60)} min"
    return f"in {-(-seconds // 3600)} h"


def _count(key: str, setting: str, too_fast: Callable[[ratelimit.Rate], str]) -> None:
    """Count one hit of ``key`` against ``setting``; over it, raise RateLimited saying
    ``too_fast(rate)`` and when to try again (the API answers 429 with it)."""
    rate = configured(setting)
    retry_after = ratelimit.hit(key, rate)
    if retry_after is not None:
        raise ratelimit.RateLimited(
            f"{too_fast(rate)}; try again {wait_text(retry_after)}", retry_after
        )


def check_messages(user: AbstractBaseUser | AnonymousUser) -> None:
    """Count a post by ``user``; raises RateLimited over CHAT_RATELIMIT_MESSAGES."""
    _count(
        f"messages:user:{user.pk}",
        "CHAT_RATELIMIT_MESSAGES",
        lambda r: f"you are sending too fast (at most {r.count} messages every {r.seconds} s)",
    )


def check_writes(user: AbstractBaseUser | AnonymousUser) -> None:
    """Count one write through the JSON API by a signed-in ``user`` (reactions, join and
    leave, members, read position, DMs, edits; posting also has its own limit); raises
    RateLimited over CHAT_RATELIMIT_WRITES. One budget in chat/jsonapi.py ``dispatch``
    rather than a check in each view, so no write endpoint can be repeated without one.
    Anonymous writes are refused by the views themselves."""
    if not user.is_authenticated:
        return
    _count(
        f"writes:user:{user.pk}",
        "CHAT_RATELIMIT_WRITES",
        lambda r: f"you are changing things too fast (at most {r.count} every {r.seconds} s)",
    )


def check_typing(user: AbstractBaseUser | AnonymousUser) -> None:
    """Count a typing signal by ``user``; raises RateLimited over CHAT_RATELIMIT_TYPING (a
    browser sends one every 3 s at most while its user types; a script sending 100/s is
    refused before it reaches the throttle)."""
    _count(
        f"typing:user:{user.pk}",
        "CHAT_RATELIMIT_TYPING",
        lambda r: f"too many typing signals (at most {r.count} every {r.seconds} s)",
    )


def check_searches(request: HttpRequest) -> None:
    """Count a search, per user, or per client address when logged out; raises RateLimited
    over CHAT_RATELIMIT_SEARCHES."""
    user = request.user
    who = f"user:{user.pk}" if user.is_authenticated else limited_address(request)
    _count(
        f"searches:{who}",
        "CHAT_RATELIMIT_SEARCHES",
        lambda r: f"you are searching too fast (at most {r.count} searches every {r.seconds} s)",
    )


def limit_form_posts(
    scope: str,
    setting: str,
    *,
    per: Per,
    form_class: type[forms.BaseForm],
    template: str,
    message: str,
) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """Count each POST to a form view, per user or per client address; over the limit,
    answer 429 with the form again (unbound, the visitor's input as initial values, so no
    validation runs) and ``message`` plus when to try again."""

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @functools.wraps(view)
        def limited_view(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if request.method == "POST":
                who = f"user:{request.user.pk}" if per == "user" else limited_address(request)
                retry_after = ratelimit.hit(f"{scope}:{who}", configured(setting))
                if retry_after is not None:
                    initial = {k: v for k, v in request.POST.items() if "password" not in k}
                    return limited_page(
                        request,
                        template,
                        {"form": form_class(initial=initial)},
                        f"{message} Please try again {wait_text(retry_after)}.",
                        retry_after,
                    )
            return view(request, *args, **kwargs)

        return limited_view

    return decorator


def limited_page(
    request: HttpRequest, template: str, context: dict[str, Any], reason: str, retry_after: int
) -> HttpResponse:
    """A page's 429: its own template, with ``limited`` (the reason) shown as an alert."""
    response = render(request, template, {**context, "limited": reason}, status=429)
    response["Retry-After"] = str(retry_after)
    return response
