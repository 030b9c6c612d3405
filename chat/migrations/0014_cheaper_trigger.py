"""A cheaper message INSERT: what a writer pays for in its transaction (issue 15).

Measured by ``EXPLAIN (ANALYZE)`` on an INSERT and pgbench (README, "Writers"), an INSERT ran
two triggers, six statements in three functions, each function call with ``SET`` clauses,
and wrote four indexes nobody read. Now, with the same rows, cursors and bells:

- ``chat_message_notify`` does an INSERT's whole job: log the change (``chat_record_change``,
  unchanged: its per-room lock and its ``SET lock_timeout`` from migration 0010 stay), ring,
  then write the live row and (only if the text has an ``@``) the mentions at the cursor it
  just took. ``chat_message_track`` keeps edits and deletes only: for a new message it used
  to read the live row and the log back to find that cursor, and delete mentions that cannot
  exist yet.
- ``chat_track_mentions``: the mention insert, shared by both paths.
- ``chat_message_bell`` builds the same JSON by concatenation, as an SQL function with no
  ``SET`` clause, so the planner inlines it into the trigger's expression (a function call
  with ``SET`` saves and restores settings each time). It names only ``pg_catalog``
  objects, which every search_path resolves (a psql session with ``search_path =
  pg_catalog`` still rings: tests/test_untrusted_notifications.py).
- Four indexes go: ``chat_chatmessage (room_id)`` and ``chat_messagechange (room_id)``, each
  with its ``varchar_pattern_ops`` twin; ``chat_message_room_recent (room_id, id)`` and
  ``chat_change_room_seq (room_id, seq)`` serve every lookup by room.
"""

import django.db.models.deletion
import pgtrigger.compiler
import pgtrigger.migrations
from django.db import migrations, models

PINNED = "SET search_path = public, pg_temp"

FUNCTIONS = rf"""
-- The mentions of a message (its id), at cursor seq: existing accounts, names compared as
-- Django stores them, never the sender's own (migration 0007's rule). Parameter names are
-- none of auth_user's columns: in an SQL function a column would win over a parameter.
CREATE FUNCTION chat_track_mentions(
    message bigint, room text, seq bigint, sender integer, body text
) RETURNS void
LANGUAGE sql VOLATILE {PINNED} AS $$
    INSERT INTO chat_mention (message_id, user_id, room_id, seq)
    SELECT message, u.id, room, seq FROM auth_user u
    WHERE u.username IN (SELECT chat_mentioned_names(body))
      AND u.id IS DISTINCT FROM sender
    ON CONFLICT (message_id, user_id) DO NOTHING
$$;

-- Migration 0007's, its mention insert now chat_track_mentions.
CREATE OR REPLACE FUNCTION chat_track_message(m chat_chatmessage) RETURNS void
LANGUAGE plpgsql VOLATILE {PINNED} AS $$
DECLARE
    created bigint;
BEGIN
    SELECT lm.seq INTO created FROM chat_livemessage lm WHERE lm.message_id = m.id;
    IF created IS NULL THEN
        SELECT c.seq INTO created FROM chat_messagechange c
        WHERE c.room_id = m.room_id AND c.message_id = m.id AND c.op = 'created'
        ORDER BY c.seq DESC LIMIT 1;
    END IF;
    DELETE FROM chat_mention WHERE message_id = m.id;
    IF m.deleted_at IS NOT NULL OR created IS NULL THEN  -- deleted: counts no more
        DELETE FROM chat_livemessage WHERE message_id = m.id;
        RETURN;
    END IF;
    INSERT INTO chat_livemessage (message_id, room_id, seq, sender_id)
    VALUES (m.id, m.room_id, created, m.sender_id)
    ON CONFLICT (message_id) DO UPDATE SET sender_id = EXCLUDED.sender_id;
    IF strpos(m.text, '@') > 0 THEN
        PERFORM chat_track_mentions(m.id, m.room_id, created, m.sender_id, m.text);
    END IF;
END
$$;

-- Migration 0005's bell, same keys and values: inlinable (no SET clause; pg_catalog only).
CREATE OR REPLACE FUNCTION chat_message_bell(room text, seq bigint) RETURNS text
LANGUAGE sql VOLATILE AS $$
    SELECT '{{"kind":"message","room":' || pg_catalog.to_json(room)::text
        || ',"seq":' || seq::text
        || ',"at":' || pg_catalog.extract('epoch', pg_catalog.clock_timestamp())::text || '}}'
$$;
"""

UNDO_FUNCTIONS = rf"""
CREATE OR REPLACE FUNCTION chat_message_bell(room text, seq bigint) RETURNS text
LANGUAGE sql VOLATILE {PINNED} AS $$
    SELECT json_build_object(
        'kind', 'message', 'room', room, 'seq', seq, 'at', extract(epoch FROM clock_timestamp())
    )::text
$$;

CREATE OR REPLACE FUNCTION chat_track_message(m chat_chatmessage) RETURNS void
LANGUAGE plpgsql VOLATILE {PINNED} AS $$
DECLARE
    created bigint;
BEGIN
    SELECT lm.seq INTO created FROM chat_livemessage lm WHERE lm.message_id = m.id;
    IF created IS NULL THEN
        SELECT c.seq INTO created FROM chat_messagechange c
        WHERE c.room_id = m.room_id AND c.message_id = m.id AND c.op = 'created'
        ORDER BY c.seq DESC LIMIT 1;
    END IF;
    DELETE FROM chat_mention WHERE message_id = m.id;
    IF m.deleted_at IS NOT NULL OR created IS NULL THEN
        DELETE FROM chat_livemessage WHERE message_id = m.id;
        RETURN;
    END IF;
    INSERT INTO chat_livemessage (message_id, room_id, seq, sender_id)
    VALUES (m.id, m.room_id, created, m.sender_id)
    ON CONFLICT (message_id) DO UPDATE SET sender_id = EXCLUDED.sender_id;
    IF strpos(m.text, '@') > 0 THEN
        INSERT INTO chat_mention (message_id, user_id, room_id, seq)
        SELECT m.id, u.id, m.room_id, created FROM auth_user u
        WHERE u.username IN (SELECT chat_mentioned_names(m.text))
          AND u.id IS DISTINCT FROM m.sender_id
        ON CONFLICT (message_id, user_id) DO NOTHING;
    END IF;
END
$$;

DROP FUNCTION IF EXISTS chat_track_mentions(bigint, text, bigint, integer, text);
"""


class Migration(migrations.Migration):
    dependencies = [
        ("chat", "0013_search"),
    ]

    operations = [
        migrations.RunSQL(FUNCTIONS, UNDO_FUNCTIONS),
        pgtrigger.migrations.RemoveTrigger(
            model_name="chatmessage",
            name="chat_message_notify",
        ),
        pgtrigger.migrations.RemoveTrigger(
            model_name="chatmessage",
            name="chat_message_track",
        ),
        migrations.AlterField(
            model_name="chatmessage",
            name="room",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="messages",
                to="chat.room",
            ),
        ),
        migrations.AlterField(
            model_name="messagechange",
            name="room",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.DO_NOTHING,
                related_name="+",
                to="chat.room",
            ),
        ),
        pgtrigger.migrations.AddTrigger(
            model_name="chatmessage",
            trigger=pgtrigger.compiler.Trigger(
                name="chat_message_notify",
                sql=pgtrigger.compiler.UpsertTriggerSql(
                    declare="DECLARE m public.chat_chatmessage; op text; seq bigint;",
                    func="\n                    IF TG_OP = 'INSERT' THEN\n                        seq := public.chat_record_change(NEW.room_id, NEW.id, 'created');\n                        PERFORM pg_notify('chat', public.chat_message_bell(NEW.room_id, seq));\n                        IF NEW.deleted_at IS NULL THEN\n                            INSERT INTO public.chat_livemessage\n                                (message_id, room_id, seq, sender_id)\n                            VALUES (NEW.id, NEW.room_id, seq, NEW.sender_id)\n                            ON CONFLICT (message_id) DO UPDATE SET sender_id = NEW.sender_id;\n                            IF strpos(NEW.text, '@') > 0 THEN\n                                PERFORM public.chat_track_mentions(NEW.id, NEW.room_id, seq,\n                                                                   NEW.sender_id, NEW.text);\n                            END IF;\n                        END IF;\n                        RETURN NULL;\n                    END IF;\n                    IF TG_OP = 'DELETE' THEN  -- hard: announced like a soft delete, text hidden\n                        m := OLD; m.deleted_at := coalesce(OLD.deleted_at, now()); op := 'deleted';\n                    ELSIF OLD IS NOT DISTINCT FROM NEW THEN RETURN NULL;  -- a no-op UPDATE\n                    ELSIF NEW.deleted_at IS NOT NULL THEN m := NEW; op := 'deleted';\n                    ELSE m := NEW; op := 'updated';\n                    END IF;\n                    seq := public.chat_record_change(m.room_id, m.id, op);\n                    PERFORM pg_notify('chat', public.chat_message_bell(m.room_id, seq));\n                    RETURN NULL;\n                ",
                    hash="c146aec42ca965f4a41a5a1de10dc2f93f5d2a94",
                    operation="INSERT OR UPDATE OR DELETE",
                    pgid="pgtrigger_chat_message_notify_4bb22",
                    table="chat_chatmessage",
                    when="AFTER",
                ),
            ),
        ),
        pgtrigger.migrations.AddTrigger(
            model_name="chatmessage",
            trigger=pgtrigger.compiler.Trigger(
                name="chat_message_track",
                sql=pgtrigger.compiler.UpsertTriggerSql(
                    func="\n                    IF TG_OP = 'DELETE' THEN\n                        DELETE FROM public.chat_mention WHERE message_id = OLD.id;\n                        DELETE FROM public.chat_livemessage WHERE message_id = OLD.id;\n                    ELSIF OLD.text IS DISTINCT FROM NEW.text\n                          OR OLD.deleted_at IS DISTINCT FROM NEW.deleted_at\n                          OR OLD.sender_id IS DISTINCT FROM NEW.sender_id THEN\n                        PERFORM public.chat_track_message(NEW);\n                    END IF;\n                    RETURN NULL;\n                ",
                    hash="4966ee43b8dbc871cd46a2b68d77eeb4b54fbd11",
                    operation="UPDATE OR DELETE",
                    pgid="pgtrigger_chat_message_track_714cf",
                    table="chat_chatmessage",
                    when="AFTER",
                ),
            ),
        ),
    ]
