"""The Django admin for moderators. Its writes go through the same triggers, so an edit or a
delete here reaches every open browser like any other write."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from .models import ChatMessage, Room


# [type-arg] below: ModelAdmin is generic in django-stubs only. ModelAdmin[Room] would fail at
# runtime without django-stubs-ext's monkeypatch, a runtime dependency for the types alone.
@admin.register(Room)
class RoomAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["slug", "title", "is_private", "is_direct", "owner", "created_at"]
    list_filter = ["is_private", "is_direct"]
    search_fields = ["slug", "title"]
    filter_horizontal = ["members"]
    raw_id_fields = ["owner"]

    def get_readonly_fields(self, request: HttpRequest, obj: Room | None = None) -> list[str]:
        return ["slug"] if obj else []  # messages refer to the slug


@admin.register(ChatMessage)
class ChatMessageAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["id", "room", "author", "excerpt", "created_at", "edited_at", "deleted_at"]
    list_filter = ["room", ("deleted_at", admin.EmptyFieldListFilter), "created_at"]
    search_fields = ["text", "author"]
    readonly_fields = ["created_at", "edited_at"]
    raw_id_fields = ["sender"]
    date_hierarchy = "created_at"
    actions = ["soft_delete"]

    def get_readonly_fields(
        self, request: HttpRequest, obj: ChatMessage | None = None
    ) -> list[str]:
        # A message cannot move between rooms (a trigger refuses it), so don't offer it.
        return [*self.readonly_fields, "room"] if obj else list(self.readonly_fields)

    @admin.display(description="text")
    def excerpt(self, message: ChatMessage) -> str:
        return message.text if len(message.text) <= 60 else message.text[:59] + "…"

    @admin.action(description="Delete selected messages (soft: the text stays here)")
    def soft_delete(self, request: HttpRequest, queryset: QuerySet[ChatMessage]) -> None:
        # One bulk UPDATE; the trigger is FOR EACH ROW, so each message gets its own event.
        changed = queryset.filter(deleted_at__isnull=True).update(deleted_at=timezone.now())
        self.message_user(request, f"{changed} message(s) deleted.")
