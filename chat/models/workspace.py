"""The workspace's tables: read state, the live messages and mentions that /me/rooms counts."""

from __future__ import annotations

import pgtrigger
from django.conf import settings
from django.db import models
from django.db.models.functions import Now

from .messages import ChatMessage
from .rooms import Room


class ReadState(models.Model):
    """How far a user has read a room: every change up to cursor ``last_read``.

    Moves only forward (chat/workspace.py); a join starts it at the room's latest cursor, so
    a room's past is not "unread" to a newcomer (trigger on chat_room_members, migration
    0007). Every move rings ``{"kind": "read", "room", "user"}`` for the user's other
    streams.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="+",
        db_index=False,  # the unique (user, room) index serves lookups by user
    )
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="+")
    last_read = models.BigIntegerField(default=0, db_default=0)
    updated_at = models.DateTimeField(db_default=Now())

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "room"], name="chat_readstate_user_room"),
            models.CheckConstraint(
                condition=models.Q(last_read__gte=0), name="chat_readstate_cursor_not_negative"
            ),
        ]
        triggers = [
            pgtrigger.Trigger(
                name="chat_read_moved",
                when=pgtrigger.After,
                operation=pgtrigger.Insert | pgtrigger.Update,
                func="""
                    IF TG_OP = 'UPDATE' AND OLD.last_read = NEW.last_read THEN
                        RETURN NULL;
                    END IF;
                    PERFORM pg_notify('chat', json_build_object(
                        'kind', 'read', 'room', NEW.room_id, 'user', NEW.user_id
                    )::text);
                    RETURN NULL;
                """,
            )
        ]

    def __str__(self) -> str:
        return f"user {self.user_id} read {self.room_id} to {self.last_read}"


class LiveMessage(models.Model):
    """A message that is not deleted, at the cursor of its creating change, with its sender:
    what unread counts count (chat/workspace.py), on one index, without visiting messages.

    The log numbers changes, not messages, and a message row has no cursor (the notify
    trigger takes it after the row is written); this table pairs the two. Written only by
    the trigger ``chat_message_track`` (``chat_track_message``, migration 0007): a row per
    message inserted, removed when it is deleted (soft or hard), back if it is restored.
    """

    message = models.OneToOneField(
        ChatMessage, on_delete=models.CASCADE, primary_key=True, related_name="+"
    )
    room = models.ForeignKey(  # the message's; copied so the count needs no join
        Room, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+", db_index=False
    )
    seq = models.BigIntegerField()
    # The message's sender, so "not your own" is decided on the index. No constraint: a
    # deleted account leaves an id nobody has, which counts as someone else's, as it should.
    sender = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
        db_index=False,
    )

    class Meta:
        indexes = [
            models.Index(fields=["room", "seq"], include=["sender"], name="chat_live_room_seq"),
        ]

    def __str__(self) -> str:
        return f"message {self.message_id} at {self.room_id}#{self.seq}"


class Mention(models.Model):
    """``@username`` in a message, found by the database (``chat_mentioned_names``,
    migration 0007) whoever wrote it, psql included.

    Written only by the trigger ``chat_message_track`` (``chat_track_message``): on insert,
    and again when the text changes; a deleted message has none. ``seq`` is the cursor of
    the message's creating change, so "unread mentions" is ``seq > last_read`` on one index.
    A user's own message never mentions them. A mention of a user who may not read the room
    is kept but counts nowhere: /me/rooms lists only rooms the user may read.
    """

    message = models.ForeignKey(ChatMessage, on_delete=models.CASCADE, related_name="+")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    # The message's room, copied so the count needs no join; the message's foreign key
    # already ties it to a room, so none here (a room's messages go, and theirs with them).
    room = models.ForeignKey(
        Room, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+", db_index=False
    )
    seq = models.BigIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["message", "user"], name="chat_mention_message_user"),
        ]
        indexes = [
            models.Index(fields=["user", "room", "seq"], name="chat_mention_user_room_seq"),
        ]

    def __str__(self) -> str:
        return f"user {self.user_id} in message {self.message_id}"
