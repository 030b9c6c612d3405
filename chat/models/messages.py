"""Messages and the change log their trigger appends to (the SSE `id:` and resume cursor)."""

from __future__ import annotations

import pgtrigger
from django.conf import settings
from django.db import models
from django.db.models.functions import Length, Now
from django.db.models.lookups import LessThanOrEqual

from .rooms import Room

MESSAGE_MAX_LENGTH = 4000  # characters; the UI, the API and a CHECK constraint agree
REACTION_MAX_LENGTH = 16  # code points; the longest RGI emoji sequence has 10


class ChatMessage(models.Model):
    """A message. Every column but room, author and text has a database default."""

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="messages")
    author = models.CharField(max_length=150)  # not `user`: a reserved word in SQL
    # The account that posted it, which may edit it; rows written from psql have none.
    sender = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    text = models.TextField()  # non-blank and length are CHECK constraints: psql obeys too
    created_at = models.DateTimeField(db_default=Now(), editable=False)
    edited_at = models.DateTimeField(null=True, blank=True, editable=False)  # set by trigger
    deleted_at = models.DateTimeField(null=True, blank=True)  # soft delete

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["room", "-id"], name="chat_message_room_recent")]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(text__regex=r"\S"), name="chat_message_text_not_blank"
            ),
            models.CheckConstraint(
                condition=LessThanOrEqual(Length("text"), MESSAGE_MAX_LENGTH),
                name="chat_message_text_max_4000",
            ),
            models.CheckConstraint(
                condition=models.Q(author__regex=r"\S"), name="chat_message_author_not_blank"
            ),
        ]
        triggers = [
            pgtrigger.Trigger(
                # Moving a message between rooms would need an event in each room's log.
                name="chat_message_fixed_fields",
                when=pgtrigger.Before,
                operation=pgtrigger.Update,
                condition=pgtrigger.AnyChange("id", "room", "created_at"),
                func="""RAISE EXCEPTION 'a chat message''s id, room_id and created_at cannot change'
                        USING ERRCODE = 'check_violation'; RETURN NULL;""",
            ),
            pgtrigger.Trigger(
                # In the database, so an UPDATE typed into psql shows as "edited" too.
                name="chat_message_stamp_edit",
                when=pgtrigger.Before,
                operation=pgtrigger.Update,
                condition=pgtrigger.Q(old__text__df=pgtrigger.F("new__text")),
                func="NEW.edited_at := now(); RETURN NEW;",
            ),
            pgtrigger.Trigger(
                name="chat_message_notify",
                when=pgtrigger.After,  # the row exists; NOTIFY is held until COMMIT
                operation=pgtrigger.Insert | pgtrigger.Update | pgtrigger.Delete,
                # Names are schema-qualified: the trigger runs with the writer's search_path,
                # and a psql session without `public` in it must still be able to write.
                declare=[("m", "public.chat_chatmessage"), ("op", "text"), ("seq", "bigint")],
                func="""
                    IF TG_OP = 'DELETE' THEN  -- hard: announced like a soft delete, text hidden
                        m := OLD; m.deleted_at := coalesce(OLD.deleted_at, now()); op := 'deleted';
                    ELSIF TG_OP = 'INSERT' THEN m := NEW; op := 'created';
                    ELSIF OLD IS NOT DISTINCT FROM NEW THEN RETURN NULL;  -- a no-op UPDATE
                    ELSIF NEW.deleted_at IS NOT NULL THEN m := NEW; op := 'deleted';
                    ELSE m := NEW; op := 'updated';
                    END IF;
                    seq := public.chat_record_change(m.room_id, m.id, op);
                    PERFORM pg_notify('chat', public.chat_message_bell(m.room_id, seq));
                    RETURN NULL;
                """,
            ),
            pgtrigger.Trigger(
                # Keeps chat_livemessage and chat_mention (migration 0007) in step with the
                # message. The name matters: PostgreSQL fires one event's triggers in name
                # order, and a new message's creating change, which chat_message_notify logs,
                # must be there to read ("track" sorts after "notify"; tests check the cursor).
                name="chat_message_track",
                when=pgtrigger.After,
                operation=pgtrigger.Insert | pgtrigger.Update | pgtrigger.Delete,
                func="""
                    IF TG_OP = 'DELETE' THEN
                        DELETE FROM public.chat_mention WHERE message_id = OLD.id;
                        DELETE FROM public.chat_livemessage WHERE message_id = OLD.id;
                    ELSIF TG_OP = 'INSERT' OR OLD.text IS DISTINCT FROM NEW.text
                          OR OLD.deleted_at IS DISTINCT FROM NEW.deleted_at
                          OR OLD.sender_id IS DISTINCT FROM NEW.sender_id THEN
                        PERFORM public.chat_track_message(NEW);
                    END IF;
                    RETURN NULL;
                """,
            ),
        ]

    def __str__(self) -> str:
        return f"{self.author}: {self.text[:50]}"


class MessageChange(models.Model):
    """The log: one row per change of a message, numbered per room in commit order.

    Written only by the trigger (``chat_record_change``); read to replay what a client or
    the listener missed. No foreign keys: the log of a hard-deleted message must survive.
    """

    class Op(models.TextChoices):
        CREATED = "created"
        UPDATED = "updated"
        DELETED = "deleted"
        REACTED = "reacted"  # a reaction added (chat_reaction, migration 0011)
        UNREACTED = "unreacted"  # ... and taken back

    room = models.ForeignKey(
        Room, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )
    seq = models.BigIntegerField()
    message_id = models.BigIntegerField()
    op = models.CharField(max_length=9, choices=Op.choices)
    created_at = models.DateTimeField(db_default=Now())
    # A reaction's change only: which emoji, and who reacted (their username then). Kept in
    # the log itself, so a removal replays after its reaction row is gone. NULL, not "", for
    # a message's change: the SQL readers tell the two kinds apart by it.
    emoji = models.CharField(max_length=REACTION_MAX_LENGTH, null=True, blank=True)  # noqa: DJ001
    reactor = models.CharField(max_length=150, null=True, blank=True)  # noqa: DJ001

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["room", "seq"], name="chat_change_room_seq"),
        ]

    def __str__(self) -> str:
        return f"{self.room_id}#{self.seq} {self.op} message {self.message_id}"
