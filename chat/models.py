"""Hop 1: the tables and the triggers that turn every write into an event.

Upstream:   any writer: the web UI, the Django admin, psql, a batch job.
Downstream: ``pg_notify('chat', ...)`` read by chat/listener.py; the MessageChange log read
            by chat/history.py.
On failure: a trigger error aborts the writer's statement, so the trigger only calls small
            SQL functions (migrations 0002, 0004, 0005, 0014) that cannot fail on valid rows.

A notification is a doorbell, not the message: ``{"kind": "message", "room", "seq", "at"}``.
The listener reads what changed from the log, so a forged NOTIFY (any role that can connect
may send one) can at worst cost a read, and a payload never nears NOTIFY's 8000-byte limit.
Access changes ring too (migration 0005): a member removed, a room made private or deleted,
a session ended, a user's staff/active flags or password changed; the listener then re-checks
the open streams concerned (chat/gatekeeper.py).

Every change of a message appends a MessageChange row numbered per room (``seq``), under a
per-room advisory lock held until COMMIT: a room's writers commit in ``seq`` order, so a
client that has seen ``seq`` N is never later owed a change numbered N or less. That number
is the SSE ``id:`` and the resume cursor.
"""

from __future__ import annotations

import pgtrigger
from django.conf import settings
from django.db import models
from django.db.models.functions import Length, Now
from django.db.models.lookups import LessThanOrEqual

MESSAGE_MAX_LENGTH = 4000  # characters; the UI, the API and a CHECK constraint agree
ROOM_SLUG_MAX_LENGTH = 50
REACTION_MAX_LENGTH = 16  # code points; the longest RGI emoji sequence has 10
# What the database accepts as a reaction's emoji (the API is stricter: chat/emoji.py).
REACTION_SQL_PATTERN = r"^[^[:space:][:cntrl:]a-zA-Z]{1,16}$"
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


class Reaction(models.Model):
    """A user's emoji on a message: at most one of each emoji per user and message.

    Written by the API (chat/reactions_api.py) and by psql alike:
    ``INSERT INTO chat_reaction (message_id, user_id, emoji) VALUES (17, 3, '👍')``. The
    trigger ``chat_reaction_notify`` appends ``reacted`` / ``unreacted`` to the message log
    under the room's lock and rings the room's message bell, so reaction events carry
    cursors and replay on resume like edits (``chat_record_reaction``, migration 0011).
    The API accepts only a single emoji (chat/emoji.py); the CHECK below keeps psql from
    storing text, whitespace or anything long.
    """

    # Both keys are declared by migration 0011 with ON DELETE CASCADE (Django's cascade is
    # Python's only), so a hard DELETE from psql works too. DO_NOTHING for the message: the
    # database's cascade runs after the message row is gone, and the trigger then logs
    # nothing for it (the message's delete is the event), where Django's own cascade would
    # delete and announce each reaction first.
    message = models.ForeignKey(
        ChatMessage, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        db_constraint=False,
        related_name="+",
        db_index=False,  # rarely looked up by user; the unique index leads with the message
    )
    emoji = models.CharField(max_length=REACTION_MAX_LENGTH)
    created_at = models.DateTimeField(db_default=Now(), editable=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["message", "user", "emoji"], name="chat_reaction_message_user_emoji"
            ),
            models.CheckConstraint(
                # No letters, whitespace or control characters, and short: an emoji's code
                # points (the longest RGI sequence has 10), not a word or a sentence.
                condition=models.Q(emoji__regex=REACTION_SQL_PATTERN),
                name="chat_reaction_emoji_shape",
            ),
        ]
        triggers = [
            pgtrigger.Trigger(
                name="chat_reaction_notify",
                when=pgtrigger.After,
                operation=pgtrigger.Insert | pgtrigger.Update | pgtrigger.Delete,
                func="""
                    IF TG_OP = 'UPDATE' AND (OLD.message_id, OLD.user_id, OLD.emoji)
                            IS NOT DISTINCT FROM (NEW.message_id, NEW.user_id, NEW.emoji) THEN
                        RETURN NULL;  -- nothing anyone sees changed
                    END IF;
                    IF TG_OP IN ('DELETE', 'UPDATE') THEN
                        PERFORM public.chat_record_reaction(OLD, 'unreacted');
                    END IF;
                    IF TG_OP IN ('INSERT', 'UPDATE') THEN
                        PERFORM public.chat_record_reaction(NEW, 'reacted');
                    END IF;
                    RETURN NULL;
                """,
            )
        ]

    def __str__(self) -> str:
        return f"{self.emoji} by user {self.user_id} on message {self.message_id}"


IDEMPOTENCY_KEY_MAX_LENGTH = 255  # characters; a UUID is 36


class IdempotentPost(models.Model):
    """A message post made with an ``Idempotency-Key``: its first answer, replayed to a retry.

    Unique per (sender, key), so two concurrent requests with one key cannot both claim it:
    the second waits for the first's transaction and then reads its answer (chat/idempotency.py).
    Kept for CHAT_IDEMPOTENCY_SECONDS (24 h), then pruned.
    """

    sender = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=IDEMPOTENCY_KEY_MAX_LENGTH)
    # sha256 of the room and text: the same key sent with another message is refused (422).
    request_hash = models.CharField(max_length=64)
    status = models.SmallIntegerField(null=True)  # null only inside the claiming transaction
    response = models.TextField(db_default="")  # the JSON body, byte for byte as first sent
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["sender", "key"], name="chat_idempotent_post_key"),
        ]
        indexes = [models.Index(fields=["created_at"], name="chat_idempotent_post_age")]

    def __str__(self) -> str:
        return f"{self.key} by user {self.sender_id}"


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
