"""Plain HTML pages around the chat: the room list, creating a room, signing up.

Kept apart from chat/views.py, which is the data path; these are ordinary Django views.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from . import rooms
from .forms import RoomForm, SignUpForm
from .listener import get_listener


@require_http_methods(["GET"])
def room_list(request: HttpRequest) -> HttpResponse:
    visible = rooms.visible_rooms(request.user)
    online = get_listener().subscribers_by_room()
    return render(
        request,
        "chat/room_list.html",
        {"rooms": [(room, online.get(room.slug, 0)) for room in visible], "form": RoomForm()},
    )


@login_required
@require_http_methods(["GET", "POST"])
def room_create(request: HttpRequest) -> HttpResponse:
    form = RoomForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        with transaction.atomic():
            room = form.save()
            if room.is_private:
                room.members.add(request.user)  # the creator can enter their own room
        messages.success(request, f"Room {room.display_name} created.")
        return redirect("room", slug=room.slug)
    return render(request, "chat/room_create.html", {"form": form})


@require_http_methods(["GET", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    form = SignUpForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user)
        messages.success(request, f"Welcome, {user.get_username()}!")
        return redirect("/")
    return render(request, "registration/signup.html", {"form": form})
