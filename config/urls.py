"""URLs: the public contract of docs/contract.md ("HTTP")."""

from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import URLPattern, URLResolver, include, path

from chat import (
    conversation_api,
    members_api,
    messages_api,
    operations,
    pages,
    reactions_api,
    search_api,
    workspace_api,
)

# The project's own error answers: JSON for the API and streams, a styled page for pages.
handler400 = "chat.error_views.bad_request"
handler403 = "chat.error_views.permission_denied"
handler404 = "chat.error_views.page_not_found"
handler500 = "chat.error_views.server_error"

# Django's auth views, without password reset unless mail is configured: a reset form that
# can send no mail would accept addresses and deliver nothing (and 500 on an SMTP error).
accounts: list[URLPattern | URLResolver] = [
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("password_change/", auth_views.PasswordChangeView.as_view(), name="password_change"),
    path(
        "password_change/done/",
        auth_views.PasswordChangeDoneView.as_view(),
        name="password_change_done",
    ),
]
if settings.EMAIL_HOST:
    accounts.append(path("", include("django.contrib.auth.urls")))  # the reset views too

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
    path("search", search_api.search_view, name="search"),
    path("healthz", operations.healthz, name="healthz"),
    path("metrics", operations.metrics_view, name="metrics"),
    path("accounts/signup/", pages.signup, name="signup"),
    path("accounts/", include(accounts)),
    path("admin/", admin.site.urls),
]
