"""Reactions: (message, user, emoji), logged in the room's change log like edits."""

from __future__ import annotations

import pgtrigger
from django.conf import settings
from django.db import models
from django.db.models.functions import Now

from .messages import REACTION_MAX_LENGTH, ChatMessage

# What the database accepts as a reaction's emoji (the API is stricter: chat/reaction_emoji.py).
REACTION_SQL_PATTERN = r"^[^[:space:][:cntrl:]a-zA-Z]{1,16}$"


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
