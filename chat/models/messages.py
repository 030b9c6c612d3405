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

    # No index of its own (migration 0014): chat_message_room_recent (room_id, id) serves
    # every lookup by room, and each index is one more write per message.
    room = models.ForeignKey(
        Room, on_delete=models.CASCADE, related_name="messages", db_index=False
    )
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
                # An INSERT, the writers' hot path, is done here in one trigger (migration
                # 0014): log, bell, then the live row and mentions at the cursor just taken,
                # as chat_track_message would (a new id has neither yet, so nothing to read
                # or delete first). No row copy, no second trigger. Edits and deletes keep
                # the general path below and chat_message_track.
                func="""
                    IF TG_OP = 'INSERT' THEN
                        seq := public.chat_record_change(NEW.room_id, NEW.id, 'created');
                        PERFORM pg_notify('chat', public.chat_message_bell(NEW.room_id, seq));
                        IF NEW.deleted_at IS NULL THEN
                            INSERT INTO public.chat_livemessage
                                (message_id, room_id, seq, sender_id)
                            VALUES (NEW.id, NEW.room_id, seq, NEW.sender_id)
                            ON CONFLICT (message_id) DO UPDATE SET sender_id = NEW.sender_id;
                            IF strpos(NEW.text, '@') > 0 THEN
                                PERFORM public.chat_track_mentions(NEW.id, NEW.room_id, seq,
                                                                   NEW.sender_id, NEW.text);
                            END IF;
                        END IF;
                        RETURN NULL;
                    END IF;
                    IF TG_OP = 'DELETE' THEN  -- hard: announced like a soft delete, text hidden
                        m := OLD; m.deleted_at := coalesce(OLD.deleted_at, now()); op := 'deleted';
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
                # An INSERT is tracked by chat_message_notify itself (migration 0014).
                name="chat_message_track",
                when=pgtrigger.After,
                operation=pgtrigger.Update | pgtrigger.Delete,
                func="""
                    IF TG_OP = 'DELETE' THEN
                        DELETE FROM public.chat_mention WHERE message_id = OLD.id;
                        DELETE FROM public.chat_livemessage WHERE message_id = OLD.id;
                    ELSIF OLD.text IS DISTINCT FROM NEW.text
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

    # No index of its own (migration 0014): chat_change_room_seq (room_id, seq) serves it.
    room = models.ForeignKey(
        Room, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+", db_index=False
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
