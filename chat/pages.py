"""The HTML pages: a room's chat page, the room list, creating a room, signing up.

The room page renders history up to cursor N and hands N to the browser (chat/static/chat/
app.js), which reads on from exactly there (chat/stream.py, or the user's /events stream and
the history API); the rest are ordinary Django views.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.db import IntegrityError, transaction
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.templatetags.static import static
from django.urls import reverse
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_http_methods

from . import history, metrics, replica, rooms, stream, user_stream
from .forms import RoomForm, SignUpForm
from .jsonapi import dispatch, int_param
from .limits import limit_form_posts
from .messages_api import HISTORY_LIMIT_DEFAULT
from .models import Room


@require_http_methods(["GET"])
def room_list(request: HttpRequest) -> HttpResponse:
    visible = rooms.visible_rooms(request.user).filter(is_direct=False)  # DMs: /me/rooms
    # Every worker's streams, as /metrics counts them (a sync view: read off the loop).
    online = metrics.open_streams_by_room()
    return render(
        request,
        "chat/room_list.html",
        {"rooms": [(room, online.get(room.slug, 0)) for room in visible], "form": RoomForm()},
    )


@login_required
@require_http_methods(["GET", "POST"])
@limit_form_posts(
    "rooms",
    "CHAT_RATELIMIT_ROOMS",
    per="user",
    form_class=RoomForm,
    template="chat/room_create.html",
    message="You have created rooms too fast.",
)
def room_create(request: HttpRequest) -> HttpResponse:
    form = RoomForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        room = form.save(commit=False)
        room.owner = request.user  # who manages its members (with staff)
        try:
            with transaction.atomic():
                # An INSERT, never an UPDATE: the slug is the primary key, so a plain save()
                # of a slug someone created since the form checked it overwrote *their* room.
                room.save(force_insert=True)
                room.members.add(request.user)  # in the creator's workspace; a private reader
        except IntegrityError:  # that race: the database decided, the other was first
            form.add_error("slug", RoomForm.TAKEN)
        else:
            messages.success(request, f"Room {room.display_name} created.")
            return redirect("room", slug=room.slug)
    return render(request, "chat/room_create.html", {"form": form})


@require_http_methods(["GET", "POST"])
@limit_form_posts(
    "signups",
    "CHAT_RATELIMIT_SIGNUPS",
    per="address",
    form_class=SignUpForm,
    template="registration/signup.html",
    message="Too many sign-ups from your address.",
)
def signup(request: HttpRequest) -> HttpResponse:
    form = SignUpForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        messages.success(request, f"Welcome, {user.get_username()}!")
        return redirect("/")
    return render(request, "registration/signup.html", {"form": form})


# -- the room page -----------------------------------------------------------------------


async def index(request: HttpRequest) -> HttpResponse:
    return HttpResponseRedirect(reverse("room", args=["lobby"]))


@ensure_csrf_cookie  # api.js reads the token from the cookie for its fetch() calls
async def room_page(request: HttpRequest, slug: str) -> HttpResponseBase:
    """History up to cursor N, rendered with N, so the page's stream starts exactly there."""

    async def show(request: HttpRequest, slug: str) -> HttpResponse:
        try:
            room = await rooms.run_and_release(rooms.readable_room, request.user, slug)
        except rooms.RoomNotFound as exc:  # a page: the styled 404 (chat/error_views.py)
            raise Http404(str(exc)) from None
        around = _around(request)
        # History as of a moment, with its cursor: the page's stream replays from that cursor
        # (fenced), so a replica a little behind shows nothing less in the end.
        async with replica.reading(stale_ok=True) as conn:
            near = around and await history.messages_around(
                conn, room.slug, around, HISTORY_LIMIT_DEFAULT
            )
            if near:  # opened from a search result: that message, with its neighbours
                page = history.Page(near.cursor, near.rows, near.has_more)
                opened = {"around": around, "has_newer": near.has_newer}
            else:  # no such message here (deleted since, a bad link): the room as usual
                page = await history.recent_messages(
                    conn, room.slug, before=None, limit=HISTORY_LIMIT_DEFAULT
                )
                opened = {"around": None, "has_newer": False}
        # Rendered in the request's thread: the template reads the lazy user, the session
        # and flash messages, all of which may query the database.
        return await rooms.run_and_release(_render_room, request, room, page, opened)

    return await dispatch(request, {"GET": show}, slug)


def _around(request: HttpRequest) -> int | None:
    """``?around=<id>``, the message a search result opens the room at; None if absent or
    not an id (a page shows the room rather than an error for a mangled link)."""
    try:
        return int_param(request, "around", minimum=1)
    except ValueError:
        return None


def _render_room(
    request: HttpRequest, room: Room, page: history.Page, opened: dict[str, Any]
) -> HttpResponse:
    user = request.user
    name = _room_name(user, room)
    boot = {
        "room": {
            "slug": room.slug,
            "title": name,
            "is_private": room.is_private,
            "is_direct": room.is_direct,
            "joined": user.is_authenticated and rooms.is_member(user, room),
        },
        "cursor": page.cursor,
        "messages": page.rows,
        "has_more": page.has_more,
        "user": {"id": user.pk, "name": user.get_username(), "is_staff": bool(user.is_staff)}
        if user.is_authenticated
        else None,
        # The newest public rooms, for the sidebar's "Browse rooms" (it leaves out the
        # joined ones).
        "public_rooms": [
            {"slug": slug, "title": title}
            for slug, title in Room.objects.filter(is_private=False, is_direct=False)
            .order_by("-created_at", "slug")
            .values_list("slug", "title")[:PUBLIC_ROOMS_LISTED]
        ]
        if user.is_authenticated
        else [],
        "urls": {
            "events": stream.room_events_url(room.slug),
            "messages": reverse("room_messages", args=[room.slug]),
            "user_events": user_stream.user_events_url() if user.is_authenticated else None,
            "worker": static("chat/shared-worker.js"),
            "room": reverse("room", args=[room.slug]),
            "search": reverse("search"),
        },
    } | opened
    return render(request, "chat/room.html", {"room": room, "room_name": name, "boot": boot})


PUBLIC_ROOMS_LISTED = 200


def _room_name(user: rooms.AnyUser, room: Room) -> str:
    """A DM is named by the other person; any other room by its title (or #slug)."""
    if room.is_direct and user.is_authenticated:
        other = room.members.exclude(pk=user.pk).values_list("username", flat=True).first()
        if other:
            return str(other)
    return room.display_name
