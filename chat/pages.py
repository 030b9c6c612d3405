"""The HTML pages: a room's chat page, the room list, creating a room, signing up.

The room page renders history up to cursor N and hands N to chat.js, which opens the stream
from exactly there (chat/stream.py); the rest are ordinary Django views.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.db import IntegrityError, transaction
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_http_methods

from . import db, history, metrics, rooms, stream
from .forms import RoomForm, SignUpForm
from .jsonapi import dispatch
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


@ensure_csrf_cookie  # chat.js reads the token from the cookie for its fetch() calls
async def room_page(request: HttpRequest, slug: str) -> HttpResponseBase:
    """History up to cursor N, rendered with N, so the page's stream starts exactly there."""

    async def show(request: HttpRequest, slug: str) -> HttpResponse:
        try:
            room = await rooms.run_and_release(rooms.readable_room, request.user, slug)
        except rooms.RoomNotFound as exc:  # a page: the styled 404 (chat/error_views.py)
            raise Http404(str(exc)) from None
        async with db.connection() as conn:
            page = await history.recent_messages(
                conn, room.slug, before=None, limit=HISTORY_LIMIT_DEFAULT
            )
        # Rendered in the request's thread: the template reads the lazy user, the session
        # and flash messages, all of which may query the database.
        return await rooms.run_and_release(_render_room, request, room, page)

    return await dispatch(request, {"GET": show}, slug)


def _render_room(request: HttpRequest, room: Room, page: history.Page) -> HttpResponse:
    user = request.user
    boot = {
        "room": room.slug,
        "cursor": page.cursor,
        "messages": page.rows,
        "has_more": page.has_more,
        "user": {"id": user.pk, "name": user.get_username(), "is_staff": bool(user.is_staff)}
        if user.is_authenticated
        else None,
        "urls": {
            "events": stream.room_events_url(room.slug),
            "messages": reverse("room_messages", args=[room.slug]),
        },
    }
    return render(request, "chat/room.html", {"room": room, "boot": boot})
