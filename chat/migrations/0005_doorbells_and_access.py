"""Notifications become doorbells; access changes ring them too; the read rule lives in SQL.

- ``chat_message_bell``: the message trigger's payload is now ``{"kind": "message", "room",
  "seq", "at"}``; the listener reads the change itself from the log, so a forged NOTIFY can
  never deliver content the log does not hold, nor move a cursor (issue: untrusted
  notifications). The old ``chat_event_payload`` (the whole row, or a stub) goes.
- ``chat_room_readable(room, viewer)``: who may read a room, written once. chat/rooms.py
  calls it for pages, the API and stream opens; the listener calls it to re-check open
  streams. Assumes django.contrib.auth's user table (``auth_user``).
- Access bells (``chat_ring_access``): a room made private or deleted, a member removed, a
  user's staff/active flag or password changed, sessions deleted (log-out, the admin,
  clearsessions). Plain SQL triggers rather than pgtrigger's ``Meta.triggers`` because the
  tables are Django's own (auth, sessions) or the auto-created members table, which have no
  Meta of ours.
- Every function pins ``search_path``, and the triggers name ``public.`` objects, so a psql
  session whose search_path lacks ``public`` can still write.
"""

import pgtrigger.compiler
import pgtrigger.migrations
from django.db import migrations

PINNED = "SET search_path = public, pg_temp"

FUNCTIONS = f"""
CREATE FUNCTION chat_message_bell(room text, seq bigint) RETURNS text
LANGUAGE sql VOLATILE {PINNED} AS $$
    SELECT json_build_object(
        'kind', 'message', 'room', room, 'seq', seq, 'at', extract(epoch FROM clock_timestamp())
    )::text
$$;

CREATE FUNCTION chat_room_readable(room text, viewer bigint) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE {PINNED} AS $$
    SELECT EXISTS (
        SELECT FROM chat_room r
        WHERE r.slug = room AND (
            NOT r.is_private
            OR EXISTS (
                SELECT FROM auth_user u
                WHERE u.id = viewer AND u.is_active AND (
                    u.is_staff
                    OR EXISTS (
                        SELECT FROM chat_room_members m
                        WHERE m.room_id = r.slug AND m.user_id = viewer
                    )
                )
            )
        )
    )
$$;

ALTER FUNCTION chat_iso(timestamptz) {PINNED};
ALTER FUNCTION chat_message_json(chat_chatmessage) {PINNED};
ALTER FUNCTION chat_record_change(text, bigint, text) {PINNED};
"""

UNDO_FUNCTIONS = """
DROP FUNCTION IF EXISTS chat_room_readable(text, bigint);
DROP FUNCTION IF EXISTS chat_message_bell(text, bigint);
ALTER FUNCTION chat_iso(timestamptz) RESET search_path;
ALTER FUNCTION chat_message_json(chat_chatmessage) RESET search_path;
ALTER FUNCTION chat_record_change(text, bigint, text) RESET search_path;
"""

# Migration 0002's payload function, no longer called once the trigger above is replaced.
DROP_OLD_PAYLOAD = "DROP FUNCTION chat_event_payload(text, bigint, chat_chatmessage);"
RESTORE_OLD_PAYLOAD = r"""
CREATE FUNCTION chat_event_payload(op text, seq bigint, m chat_chatmessage) RETURNS text
LANGUAGE plpgsql STABLE AS $$
DECLARE
    at double precision := extract(epoch FROM clock_timestamp());
    payload text;
BEGIN
    SELECT row_to_json(e)::text INTO payload FROM (
        SELECT m.room_id AS room, seq, op, m.id, at, chat_message_json(m) AS message
    ) AS e;
    IF octet_length(payload) >= 8000 THEN
        SELECT row_to_json(e)::text INTO payload FROM (
            SELECT m.room_id AS room, seq, op, m.id, at, true AS truncated
        ) AS e;
    END IF;
    RETURN payload;
END
$$;
"""

# TG_ARGV: the bell's kind, the payload field, and the column of OLD that fills it. Identical
# payloads in one transaction are folded by PostgreSQL: a room loses 100 members, one bell.
BELLS = f"""
CREATE FUNCTION chat_ring_access() RETURNS trigger
LANGUAGE plpgsql {PINNED} AS $$
BEGIN
    PERFORM pg_notify('chat', json_build_object(
        'kind', TG_ARGV[0], TG_ARGV[1], to_jsonb(OLD) -> TG_ARGV[2]
    )::text);
    RETURN NULL;
END
$$;

CREATE FUNCTION chat_ring_sessions() RETURNS trigger
LANGUAGE plpgsql {PINNED} AS $$
BEGIN
    -- No session keys in a payload: the listener asks which of its streams' sessions remain.
    PERFORM pg_notify('chat', '{{"kind": "sessions"}}');
    RETURN NULL;
END
$$;

CREATE TRIGGER chat_room_made_private AFTER UPDATE OF is_private ON chat_room
    FOR EACH ROW WHEN (NEW.is_private AND NOT OLD.is_private)
    EXECUTE FUNCTION chat_ring_access('access', 'room', 'slug');
CREATE TRIGGER chat_room_deleted AFTER DELETE ON chat_room
    FOR EACH ROW EXECUTE FUNCTION chat_ring_access('access', 'room', 'slug');
CREATE TRIGGER chat_member_removed AFTER DELETE OR UPDATE ON chat_room_members
    FOR EACH ROW EXECUTE FUNCTION chat_ring_access('access', 'room', 'room_id');
CREATE TRIGGER chat_user_access_changed AFTER UPDATE OF is_staff, is_active, password ON auth_user
    FOR EACH ROW WHEN (
        OLD.is_staff IS DISTINCT FROM NEW.is_staff OR OLD.is_active IS DISTINCT FROM NEW.is_active
        OR OLD.password IS DISTINCT FROM NEW.password
    )
    EXECUTE FUNCTION chat_ring_access('user', 'user', 'id');
CREATE TRIGGER chat_user_deleted AFTER DELETE ON auth_user
    FOR EACH ROW EXECUTE FUNCTION chat_ring_access('user', 'user', 'id');
CREATE TRIGGER chat_sessions_ended AFTER DELETE ON django_session
    FOR EACH STATEMENT EXECUTE FUNCTION chat_ring_sessions();
"""

UNDO_BELLS = """
DROP TRIGGER IF EXISTS chat_sessions_ended ON django_session;
DROP TRIGGER IF EXISTS chat_user_deleted ON auth_user;
DROP TRIGGER IF EXISTS chat_user_access_changed ON auth_user;
DROP TRIGGER IF EXISTS chat_member_removed ON chat_room_members;
DROP TRIGGER IF EXISTS chat_room_deleted ON chat_room;
DROP TRIGGER IF EXISTS chat_room_made_private ON chat_room;
DROP FUNCTION IF EXISTS chat_ring_sessions();
DROP FUNCTION IF EXISTS chat_ring_access();
"""


class Migration(migrations.Migration):
    dependencies = [
        ("chat", "0004_global_change_sequence"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("sessions", "0001_initial"),
    ]

    operations = [
        migrations.RunSQL(FUNCTIONS, UNDO_FUNCTIONS),
        pgtrigger.migrations.RemoveTrigger(
            model_name="chatmessage",
            name="chat_message_notify",
        ),
        pgtrigger.migrations.RemoveTrigger(
            model_name="room",
            name="chat_room_drop_log",
        ),
        pgtrigger.migrations.AddTrigger(
            model_name="chatmessage",
            trigger=pgtrigger.compiler.Trigger(
                name="chat_message_notify",
                sql=pgtrigger.compiler.UpsertTriggerSql(
                    declare="DECLARE m public.chat_chatmessage; op text; seq bigint;",
                    func="\n                    IF TG_OP = 'DELETE' THEN  -- hard: announced like a soft delete, text hidden\n                        m := OLD; m.deleted_at := coalesce(OLD.deleted_at, now()); op := 'deleted';\n                    ELSIF TG_OP = 'INSERT' THEN m := NEW; op := 'created';\n                    ELSIF OLD IS NOT DISTINCT FROM NEW THEN RETURN NULL;  -- a no-op UPDATE\n                    ELSIF NEW.deleted_at IS NOT NULL THEN m := NEW; op := 'deleted';\n                    ELSE m := NEW; op := 'updated';\n                    END IF;\n                    seq := public.chat_record_change(m.room_id, m.id, op);\n                    PERFORM pg_notify('chat', public.chat_message_bell(m.room_id, seq));\n                    RETURN NULL;\n                ",
                    hash="f10ba1456bcae2e802c7a9a4df7a7fcedfb5c62c",
                    operation="INSERT OR UPDATE OR DELETE",
                    pgid="pgtrigger_chat_message_notify_4bb22",
                    table="chat_chatmessage",
                    when="AFTER",
                ),
            ),
        ),
        pgtrigger.migrations.AddTrigger(
            model_name="room",
            trigger=pgtrigger.compiler.Trigger(
                name="chat_room_drop_log",
                sql=pgtrigger.compiler.UpsertTriggerSql(
                    func="DELETE FROM public.chat_messagechange WHERE room_id = OLD.slug; RETURN NULL;",
                    hash="c0dca901ad141e357bdc5afd9f8b8a79cb4fa804",
                    operation="DELETE",
                    pgid="pgtrigger_chat_room_drop_log_171ce",
                    table="chat_room",
                    when="AFTER",
                ),
            ),
        ),
        migrations.RunSQL(DROP_OLD_PAYLOAD, RESTORE_OLD_PAYLOAD),
        migrations.RunSQL(BELLS, UNDO_BELLS),
    ]
