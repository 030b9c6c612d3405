"""URLs: the public contract of docs/contract.md ("HTTP")."""

from django.contrib import admin
from django.urls import include, path

from chat import (
    conversation_api,
    members_api,
    messages_api,
    operations,
    pages,
    reactions_api,
    workspace_api,
)

handler400 = "chat.error_views.bad_request"  # JSON, like every other error of the API

urlpatterns = [
    path("", pages.index, name="index"),
    path("rooms/", pages.room_list, name="room_list"),
    path("rooms/new/", pages.room_create, name="room_create"),
    path("rooms/<slug:slug>/", pages.room_page, name="room"),
    path("rooms/<slug:slug>/messages", messages_api.room_messages, name="room_messages"),
    path(
        "rooms/<slug:slug>/messages/<int:message_id>",
        messages_api.message_detail,
        name="message_detail",
    ),
    path(
        "rooms/<slug:slug>/messages/<int:message_id>/reactions",
        reactions_api.message_reactions,
        name="message_reactions",
    ),
    path(
        "rooms/<slug:slug>/messages/<int:message_id>/reactions/<str:emoji>",
        reactions_api.reaction_detail,
        name="reaction_detail",
    ),
    path("rooms/<slug:slug>/typing", conversation_api.room_typing, name="room_typing"),
    path("rooms/<slug:slug>/presence", conversation_api.room_presence, name="room_presence"),
    path("rooms/<slug:slug>/join", members_api.room_join, name="room_join"),
    path("rooms/<slug:slug>/leave", members_api.room_leave, name="room_leave"),
    path("rooms/<slug:slug>/members", members_api.room_members, name="room_members"),
    path(
        "rooms/<slug:slug>/members/<str:username>",
        members_api.member_detail,
        name="member_detail",
    ),
    path("rooms/<slug:slug>/read", workspace_api.room_read, name="room_read"),
    path("dm/<str:username>", members_api.direct_room, name="direct_room"),
    path("me/rooms", workspace_api.my_rooms, name="my_rooms"),
    path("healthz", operations.healthz, name="healthz"),
    path("metrics", operations.metrics_view, name="metrics"),
    path("accounts/signup/", pages.signup, name="signup"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
]
