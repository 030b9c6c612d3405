"""The workspace (issue 12): owners, direct conversations, read state, mentions, and bells
for joins, leaves and reads.

- ``chat_room_members`` now means "the rooms a user joined": access for a private room, a
  place in the workspace for a public one. A row inserted rings ``{"kind": "joined", "room",
  "user"}``; a row deleted rings ``{"kind": "left", ...}`` besides migration 0005's access
  bell (``chat_member_removed``). A join also starts the user's read state at the room's
  newest cursor, so a room's past is not "unread" to a newcomer.
- ``chat_readstate``: how far each user has read each room; a move rings ``{"kind": "read",
  "room", "user"}`` (pgtrigger ``chat_read_moved``).
- ``chat_livemessage``: each message not deleted, at the cursor of its creating change, with
  its sender: unread counts read one index, never the messages.
- ``chat_mention``: ``@username`` found by the database (``chat_mentioned_names``).
  Both are kept by pgtrigger ``chat_message_track`` (``chat_track_message``) on insert and on
  every change of a message's text, deleted_at or sender, so psql-written messages count.
- Every new account joins ``lobby`` (a trigger on auth_user: sign-up, the admin,
  createsuperuser and psql alike). Backfilled: every existing account joins it, existing
  members start reading at their rooms' newest cursor, live messages are listed.
- Functions pin ``search_path`` and name ``public.`` objects (see migration 0005).
"""

import django.db.models.deletion
import django.db.models.functions.datetime
import pgtrigger.compiler
import pgtrigger.migrations
from django.conf import settings
from django.db import migrations, models

PINNED = "SET search_path = public, pg_temp"

FUNCTIONS = rf"""
-- The names a text mentions: "@name" at the start or after a character that cannot be part
-- of a username (so "ann@example.com" mentions no one), each also without trailing
-- punctuation ("@alice," or "@alice." mention alice). Django's usernames are [\w.@+-]+.
CREATE FUNCTION chat_mentioned_names(body text) RETURNS SETOF text
LANGUAGE sql IMMUTABLE PARALLEL SAFE {PINNED} AS $$
    SELECT DISTINCT candidate.name
    FROM regexp_matches(body, '(?:^|[^\w.@+-])@([\w.@+-]+)', 'g') AS found(parts),
         LATERAL (VALUES (found.parts[1]), (regexp_replace(found.parts[1], '[.@+-]+$', '')))
             AS candidate(name)
    WHERE candidate.name <> ''
$$;

-- Message m was inserted or its text, deleted_at or sender changed: bring its live row and
-- its mentions in line. Called by the trigger chat_message_track (chat/models/messages.py).
CREATE FUNCTION chat_track_message(m chat_chatmessage) RETURNS void
LANGUAGE plpgsql VOLATILE {PINNED} AS $$
DECLARE
    created bigint;
BEGIN
    -- The cursor of m's creating change: kept in its live row; else (a new message, or one
    -- restored after a delete) read from the log. chat_message_notify has logged a new
    -- message's change before this runs, under the room's lock: the room's newest entry.
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
        -- Existing accounts, names compared as Django stores them; never m's own sender.
        INSERT INTO chat_mention (message_id, user_id, room_id, seq)
        SELECT m.id, u.id, m.room_id, created FROM auth_user u
        WHERE u.username IN (SELECT chat_mentioned_names(m.text))
          AND u.id IS DISTINCT FROM m.sender_id
        ON CONFLICT (message_id, user_id) DO NOTHING;
    END IF;
END
$$;
"""

UNDO_FUNCTIONS = """
DROP FUNCTION IF EXISTS chat_track_message(chat_chatmessage);
DROP FUNCTION IF EXISTS chat_mentioned_names(text);
"""

# Plain SQL triggers: chat_room_members is the auto-created table and auth_user is Django's,
# neither has a Meta of ours (as in migration 0005). The joined bell goes out before the
# read state's own bell, in the order the lead's listener wants them: join, then position.
BELLS = f"""
CREATE FUNCTION chat_ring_membership() RETURNS trigger
LANGUAGE plpgsql {PINNED} AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        PERFORM pg_notify('chat', json_build_object(
            'kind', 'left', 'room', OLD.room_id, 'user', OLD.user_id
        )::text);
    END IF;
    IF TG_OP <> 'DELETE' THEN
        PERFORM pg_notify('chat', json_build_object(
            'kind', 'joined', 'room', NEW.room_id, 'user', NEW.user_id
        )::text);
        -- A join starts reading at the room's newest change (a rejoin moves it there too).
        INSERT INTO public.chat_readstate AS rs (user_id, room_id, last_read)
        SELECT NEW.user_id, NEW.room_id, coalesce(max(c.seq), 0)
        FROM public.chat_messagechange c WHERE c.room_id = NEW.room_id
        ON CONFLICT (user_id, room_id) DO UPDATE
            SET last_read = EXCLUDED.last_read, updated_at = now()
            WHERE rs.last_read < EXCLUDED.last_read;
    END IF;
    RETURN NULL;
END
$$;

CREATE FUNCTION chat_join_lobby() RETURNS trigger
LANGUAGE plpgsql {PINNED} AS $$
BEGIN
    INSERT INTO public.chat_room_members (room_id, user_id)
    SELECT r.slug, NEW.id FROM public.chat_room r WHERE r.slug = 'lobby' AND NOT r.is_private
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END
$$;

CREATE TRIGGER chat_member_joined_or_left AFTER INSERT OR UPDATE OR DELETE ON chat_room_members
    FOR EACH ROW EXECUTE FUNCTION chat_ring_membership();
CREATE TRIGGER chat_user_joins_lobby AFTER INSERT ON auth_user
    FOR EACH ROW EXECUTE FUNCTION chat_join_lobby();
"""

UNDO_BELLS = """
DROP TRIGGER IF EXISTS chat_user_joins_lobby ON auth_user;
DROP TRIGGER IF EXISTS chat_member_joined_or_left ON chat_room_members;
DROP FUNCTION IF EXISTS chat_join_lobby();
DROP FUNCTION IF EXISTS chat_ring_membership();
"""

# What already exists: live messages at their creating change; a read state at the room's
# newest cursor for every membership (the past is not unread); everyone in the lobby. Older
# mentions are not searched for: every one of them is behind its reader's position.
BACKFILL = """
INSERT INTO chat_livemessage (message_id, room_id, seq, sender_id)
SELECT m.id, m.room_id, c.seq, m.sender_id
FROM chat_chatmessage m
JOIN chat_messagechange c ON c.room_id = m.room_id AND c.message_id = m.id AND c.op = 'created'
WHERE m.deleted_at IS NULL
ON CONFLICT (message_id) DO NOTHING;

INSERT INTO chat_readstate (user_id, room_id, last_read)
SELECT mine.user_id, mine.room_id,
       (SELECT coalesce(max(c.seq), 0) FROM chat_messagechange c WHERE c.room_id = mine.room_id)
FROM chat_room_members mine
ON CONFLICT (user_id, room_id) DO NOTHING;

INSERT INTO chat_room_members (room_id, user_id)
SELECT r.slug, u.id FROM chat_room r CROSS JOIN auth_user u
WHERE r.slug = 'lobby' AND NOT r.is_private
ON CONFLICT DO NOTHING;
"""


class Migration(migrations.Migration):
    dependencies = [
        ("chat", "0006_ratelimit_idempotency"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="LiveMessage",
            fields=[
                (
                    "message",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        primary_key=True,
                        related_name="+",
                        serialize=False,
                        to="chat.chatmessage",
                    ),
                ),
                ("seq", models.BigIntegerField()),
            ],
        ),
        migrations.CreateModel(
            name="Mention",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("seq", models.BigIntegerField()),
            ],
        ),
        migrations.CreateModel(
            name="ReadState",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("last_read", models.BigIntegerField(db_default=0, default=0)),
                (
                    "updated_at",
                    models.DateTimeField(db_default=django.db.models.functions.datetime.Now()),
                ),
            ],
        ),
        migrations.AddField(
            model_name="room",
            name="is_direct",
            field=models.BooleanField(
                db_default=False,
                default=False,
                editable=False,
                help_text="A direct conversation of two users: private, its members fixed.",
            ),
        ),
        migrations.AddField(
            model_name="room",
            name="owner",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AddConstraint(
            model_name="room",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(
                        ("is_direct", True),
                        ("is_private", True),
                        ("slug__regex", "^dm-[0-9]+-[0-9]+$"),
                    ),
                    models.Q(
                        ("is_direct", False),
                        models.Q(("slug__regex", "^dm-[0-9]+-[0-9]+$"), _negated=True),
                    ),
                    _connector="OR",
                ),
                name="chat_room_direct_shape",
                violation_error_message="Addresses like dm-1-2 are kept for direct messages.",
            ),
        ),
        migrations.AddField(
            model_name="livemessage",
            name="room",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.DO_NOTHING,
                related_name="+",
                to="chat.room",
            ),
        ),
        migrations.AddField(
            model_name="livemessage",
            name="sender",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.DO_NOTHING,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AddField(
            model_name="mention",
            name="message",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE, related_name="+", to="chat.chatmessage"
            ),
        ),
        migrations.AddField(
            model_name="mention",
            name="room",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.DO_NOTHING,
                related_name="+",
                to="chat.room",
            ),
        ),
        migrations.AddField(
            model_name="mention",
            name="user",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AddField(
            model_name="readstate",
            name="room",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE, related_name="+", to="chat.room"
            ),
        ),
        migrations.AddField(
            model_name="readstate",
            name="user",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AddIndex(
            model_name="livemessage",
            index=models.Index(
                fields=["room", "seq"], include=("sender",), name="chat_live_room_seq"
            ),
        ),
        migrations.AddIndex(
            model_name="mention",
            index=models.Index(fields=["user", "room", "seq"], name="chat_mention_user_room_seq"),
        ),
        migrations.AddConstraint(
            model_name="mention",
            constraint=models.UniqueConstraint(
                fields=("message", "user"), name="chat_mention_message_user"
            ),
        ),
        migrations.AddConstraint(
            model_name="readstate",
            constraint=models.UniqueConstraint(
                fields=("user", "room"), name="chat_readstate_user_room"
            ),
        ),
        migrations.AddConstraint(
            model_name="readstate",
            constraint=models.CheckConstraint(
                condition=models.Q(("last_read__gte", 0)), name="chat_readstate_cursor_not_negative"
            ),
        ),
        pgtrigger.migrations.AddTrigger(
            model_name="readstate",
            trigger=pgtrigger.compiler.Trigger(
                name="chat_read_moved",
                sql=pgtrigger.compiler.UpsertTriggerSql(
                    func="\n                    IF TG_OP = 'UPDATE' AND OLD.last_read = NEW.last_read THEN\n                        RETURN NULL;\n                    END IF;\n                    PERFORM pg_notify('chat', json_build_object(\n                        'kind', 'read', 'room', NEW.room_id, 'user', NEW.user_id\n                    )::text);\n                    RETURN NULL;\n                ",
                    hash="0cadee767bd53107f11693ac55c1c461ec46d2d2",
                    operation="INSERT OR UPDATE",
                    pgid="pgtrigger_chat_read_moved_23249",
                    table="chat_readstate",
                    when="AFTER",
                ),
            ),
        ),
        migrations.RunSQL(FUNCTIONS, UNDO_FUNCTIONS),
        migrations.RunSQL(BELLS, UNDO_BELLS),
        migrations.RunSQL(BACKFILL, migrations.RunSQL.noop),
        pgtrigger.migrations.AddTrigger(
            model_name="chatmessage",
            trigger=pgtrigger.compiler.Trigger(
                name="chat_message_track",
                sql=pgtrigger.compiler.UpsertTriggerSql(
                    func="\n                    IF TG_OP = 'DELETE' THEN\n                        DELETE FROM public.chat_mention WHERE message_id = OLD.id;\n                        DELETE FROM public.chat_livemessage WHERE message_id = OLD.id;\n                    ELSIF TG_OP = 'INSERT' OR OLD.text IS DISTINCT FROM NEW.text\n                          OR OLD.deleted_at IS DISTINCT FROM NEW.deleted_at\n                          OR OLD.sender_id IS DISTINCT FROM NEW.sender_id THEN\n                        PERFORM public.chat_track_message(NEW);\n                    END IF;\n                    RETURN NULL;\n                ",
                    hash="6ee5e06a2f1974e72627f6955b951e695e60b16b",
                    operation="INSERT OR UPDATE OR DELETE",
                    pgid="pgtrigger_chat_message_track_714cf",
                    table="chat_chatmessage",
                    when="AFTER",
                ),
            ),
        ),
    ]
