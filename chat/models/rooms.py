"""Rooms: public, private (members and an owner), or the direct conversation of two."""

from __future__ import annotations

import pgtrigger
from django.conf import settings
from django.db import models
from django.db.models.functions import Now

ROOM_SLUG_MAX_LENGTH = 50
# A direct conversation's slug names its two users, lower id first (chat/membership.py);
# no other room may take that shape, so the slug alone decides "the DM of these two".
DIRECT_SLUG_REGEX = r"^dm-[0-9]+-[0-9]+$"


class Room(models.Model):
    """A chat room, addressed by its slug (``INSERT ... VALUES ('lobby', ...)`` works)."""

    slug = models.SlugField(primary_key=True, max_length=ROOM_SLUG_MAX_LENGTH)
    title = models.CharField(max_length=100, blank=True, default="", db_default="")
    is_private = models.BooleanField(
        default=False, db_default=False, help_text="Only members and staff can see it."
    )
    # The users who joined it: for a private room, who may read it (with staff); for a public
    # room, whose workspace lists it (anyone may read it anyway). Inserts and deletes ring
    # "joined" / "left" bells (migration 0007).
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL, blank=True, related_name="chat_rooms"
    )
    # Who manages its members (with staff): its creator. None for rooms made in psql, the
    # admin, or before owners existed, and for direct conversations.
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    is_direct = models.BooleanField(
        default=False,
        db_default=False,
        editable=False,
        help_text="A direct conversation of two users: private, its members fixed.",
    )
    created_at = models.DateTimeField(db_default=Now(), editable=False)

    class Meta:
        ordering = ["slug"]
        constraints = [
            models.CheckConstraint(  # what SlugField validates, enforced for psql too
                condition=models.Q(slug__regex=r"^[-a-zA-Z0-9_]+$"), name="chat_room_slug_valid"
            ),
            models.CheckConstraint(  # "dm-<id>-<id>" is a DM's slug and only a DM's
                condition=models.Q(is_direct=True, is_private=True, slug__regex=DIRECT_SLUG_REGEX)
                | (models.Q(is_direct=False) & ~models.Q(slug__regex=DIRECT_SLUG_REGEX)),
                name="chat_room_direct_shape",
                violation_error_message="Addresses like dm-1-2 are kept for direct messages.",
            ),
        ]
        triggers = [
            pgtrigger.Trigger(
                # The log has no foreign key (a hard-deleted message keeps its entries), so
                # the room's entries go with the room; a new room of that slug starts at 1.
                name="chat_room_drop_log",
                when=pgtrigger.After,
                operation=pgtrigger.Delete,
                func="DELETE FROM public.chat_messagechange WHERE room_id = OLD.slug; RETURN NULL;",
            )
        ]

    def __str__(self) -> str:
        return self.title or self.slug

    @property
    def display_name(self) -> str:
        return self.title or f"#{self.slug}"
