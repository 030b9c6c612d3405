"""URLs: the public contract of DESIGN.md ("HTTP")."""

from django.contrib import admin
from django.urls import include, path

from chat import pages, views

handler400 = "chat.views.bad_request"  # JSON, like every other error of the API

urlpatterns = [
    path("", views.index, name="index"),
    path("rooms/", pages.room_list, name="room_list"),
    path("rooms/new/", pages.room_create, name="room_create"),
    path("rooms/<slug:slug>/", views.room_page, name="room"),
    path("rooms/<slug:slug>/events", views.room_events, name="room_events"),
    path("rooms/<slug:slug>/messages", views.room_messages, name="room_messages"),
    path(
        "rooms/<slug:slug>/messages/<int:message_id>",
        views.message_detail,
        name="message_detail",
    ),
    path("healthz", views.healthz, name="healthz"),
    path("metrics", views.metrics_view, name="metrics"),
    path("accounts/signup/", pages.signup, name="signup"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
]
