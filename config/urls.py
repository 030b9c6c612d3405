"""URLs: the public contract of DESIGN.md ("HTTP")."""

from django.contrib import admin
from django.urls import include, path

from chat import messages_api, operations, pages

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
    path("healthz", operations.healthz, name="healthz"),
    path("metrics", operations.metrics_view, name="metrics"),
    path("accounts/signup/", pages.signup, name="signup"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
]
