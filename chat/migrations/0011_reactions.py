"""Reactions (issue 13): a table of (message, user, emoji), logged like message changes.

- ``chat_reaction``: unique per (message, user, emoji); a CHECK keeps psql writers to
  something emoji-shaped (the API checks for exactly one emoji: chat/emoji.py).
- The log (``chat_messagechange``) takes two more ops, ``reacted`` and ``unreacted``, and two
  columns, ``emoji`` and ``reactor`` (the username when it happened), so a removal replays
  after its row is gone.
- ``chat_record_reaction``: the trigger ``chat_reaction_notify``'s work. The same per-room
  advisory lock and sequence as ``chat_record_change`` (migration 0004), so a reaction's
  cursor is in the room's commit order with its messages' changes; then the room's usual
  message bell (the listener reads the entry from the log). A reaction removed because its
  message is being deleted (the foreign key's cascade) is not logged: the message's own
  delete says it.
- ``chat_message_reactions``: a message's reactions for history, per emoji: count and the
  first users who reacted (bounded).
"""

import django.db.models.deletion
import django.db.models.functions.datetime
import pgtrigger.compiler
import pgtrigger.migrations
from django.conf import settings
from django.db import migrations, models

PINNED = "SET search_path = public, pg_temp"

FUNCTIONS = f"""
CREATE FUNCTION chat_record_reaction(r chat_reaction, op text) RETURNS void
LANGUAGE plpgsql VOLATILE {PINNED} AS $$
DECLARE
    room text;
    next_seq bigint;
BEGIN
    SELECT m.room_id INTO room FROM chat_chatmessage m WHERE m.id = r.message_id;
    IF room IS NULL THEN
        RETURN;  -- its message is being deleted: that delete is the event
    END IF;
    -- chat_record_change's lock: the room's cursors stay in commit order.
    PERFORM pg_advisory_xact_lock(1667785076, hashtext(room));  -- 1667785076 = 'chat'
    INSERT INTO chat_messagechange (room_id, seq, message_id, op, emoji, reactor)
        VALUES (room, nextval('chat_change_seq'), r.message_id, op, r.emoji,
                (SELECT u.username FROM auth_user u WHERE u.id = r.user_id))
        RETURNING seq INTO next_seq;
    PERFORM pg_notify('chat', chat_message_bell(room, next_seq));
END
$$;

-- [{{"emoji", "count", "users": [the first `shown` usernames]}}], by first reaction.
CREATE FUNCTION chat_message_reactions(message bigint, shown integer) RETURNS json
LANGUAGE sql STABLE PARALLEL SAFE {PINNED} AS $$
    SELECT coalesce(json_agg(json_build_object(
        'emoji', e.emoji, 'count', e.n, 'users', e.users) ORDER BY e.first), '[]'::json)
    FROM (
        SELECT r.emoji, count(*) AS n, min(r.id) AS first,
               (array_agg(u.username ORDER BY r.id))[1:shown] AS users
        FROM chat_reaction r JOIN auth_user u ON u.id = r.user_id
        WHERE r.message_id = message
        GROUP BY r.emoji
    ) AS e
$$;
"""

# Django's foreign keys cascade in Python only; psql's DELETE must cascade too, so the
# model declares them db_constraint=False and they are made here.
CASCADES = """
ALTER TABLE chat_reaction
    ADD CONSTRAINT chat_reaction_message_fk FOREIGN KEY (message_id)
        REFERENCES chat_chatmessage (id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
    ADD CONSTRAINT chat_reaction_user_fk FOREIGN KEY (user_id)
        REFERENCES auth_user (id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED;
"""
UNDO_CASCADES = """
ALTER TABLE chat_reaction DROP CONSTRAINT IF EXISTS chat_reaction_message_fk,
    DROP CONSTRAINT IF EXISTS chat_reaction_user_fk;
"""

UNDO_FUNCTIONS = """
DROP FUNCTION IF EXISTS chat_message_reactions(bigint, integer);
DROP FUNCTION IF EXISTS chat_record_reaction(chat_reaction, text);
"""


class Migration(migrations.Migration):
    dependencies = [
        ("chat", "0010_lock_timeout"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="messagechange",
            name="emoji",
            field=models.CharField(blank=True, max_length=16, null=True),
        ),
        migrations.AddField(
            model_name="messagechange",
            name="reactor",
            field=models.CharField(blank=True, max_length=150, null=True),
        ),
        migrations.AlterField(
            model_name="messagechange",
            name="op",
            field=models.CharField(
                choices=[
                    ("created", "Created"),
                    ("updated", "Updated"),
                    ("deleted", "Deleted"),
                    ("reacted", "Reacted"),
                    ("unreacted", "Unreacted"),
                ],
                max_length=9,
            ),
        ),
        migrations.CreateModel(
            name="Reaction",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("emoji", models.CharField(max_length=16)),
                (
                    "created_at",
                    models.DateTimeField(
                        db_default=django.db.models.functions.datetime.Now(), editable=False
                    ),
                ),
                (
                    "message",
                    models.ForeignKey(
                        db_constraint=False,
                        on_delete=django.db.models.deletion.DO_NOTHING,
                        related_name="+",
                        to="chat.chatmessage",
                    ),
                ),
                (
                    "user",
                    models.ForeignKey(
                        db_constraint=False,
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(
                        fields=("message", "user", "emoji"), name="chat_reaction_message_user_emoji"
                    ),
                    models.CheckConstraint(
                        condition=models.Q(("emoji__regex", "^[^[:space:][:cntrl:]a-zA-Z]{1,16}$")),
                        name="chat_reaction_emoji_shape",
                    ),
                ],
            },
        ),
        migrations.RunSQL(CASCADES, UNDO_CASCADES),
        migrations.RunSQL(FUNCTIONS, UNDO_FUNCTIONS),
        pgtrigger.migrations.AddTrigger(
            model_name="reaction",
            trigger=pgtrigger.compiler.Trigger(
                name="chat_reaction_notify",
                sql=pgtrigger.compiler.UpsertTriggerSql(
                    func="\n                    IF TG_OP = 'UPDATE' AND (OLD.message_id, OLD.user_id, OLD.emoji)\n                            IS NOT DISTINCT FROM (NEW.message_id, NEW.user_id, NEW.emoji) THEN\n                        RETURN NULL;  -- nothing anyone sees changed\n                    END IF;\n                    IF TG_OP IN ('DELETE', 'UPDATE') THEN\n                        PERFORM public.chat_record_reaction(OLD, 'unreacted');\n                    END IF;\n                    IF TG_OP IN ('INSERT', 'UPDATE') THEN\n                        PERFORM public.chat_record_reaction(NEW, 'reacted');\n                    END IF;\n                    RETURN NULL;\n                ",
                    hash="7894242e685d5991e9dec868d2cda7150bf60789",
                    operation="INSERT OR UPDATE OR DELETE",
                    pgid="pgtrigger_chat_reaction_notify_52505",
                    table="chat_reaction",
                    when="AFTER",
                ),
            ),
        ),
    ]
