"""URLs: the public contract of docs/contract.md ("HTTP")."""

from django.contrib import admin
from django.urls import include, path

from chat import members_api, messages_api, operations, pages, search_api, workspace_api

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
    path("search", search_api.search_view, name="search"),
    path("healthz", operations.healthz, name="healthz"),
    path("metrics", operations.metrics_view, name="metrics"),
    path("accounts/signup/", pages.signup, name="signup"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
]
