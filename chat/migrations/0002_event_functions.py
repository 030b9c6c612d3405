"""The SQL functions behind the notify trigger (chat/models/messages.py, ``chat_message_notify``).

One place shapes a message as JSON (``chat_message_json``): the live payload and the replay
from the log (chat/history.py) both call it, so live and replayed events have one format (a
replay shows the message as it is now). Field names are pinned against chat/events.py by
the tests. Migration 0004 replaced how chat_record_change numbers changes.
"""

from django.db import migrations

FUNCTIONS = r"""
-- ISO 8601 in UTC with microseconds, whatever the writer's session TimeZone is.
CREATE FUNCTION chat_iso(ts timestamptz) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"')
$$;

-- A message as the browser sees it. A deleted message keeps its row (moderators see it in
-- the admin) but its text is never sent again.
CREATE FUNCTION chat_message_json(m chat_chatmessage) RETURNS json
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT row_to_json(shown) FROM (SELECT
        m.id,
        m.room_id AS room,
        m.author,
        m.sender_id,
        CASE WHEN m.deleted_at IS NULL THEN m.text ELSE '' END AS text,
        chat_iso(m.created_at) AS created_at,
        chat_iso(m.edited_at) AS edited_at,
        chat_iso(m.deleted_at) AS deleted_at
    ) AS shown
    WHERE m.id IS NOT NULL  -- NULL for no row (a LEFT JOIN miss), not an object of nulls
$$;

-- Append a change to the log and return its per-room cursor. The advisory lock serialises
-- the room's writers until COMMIT, so cursors are handed out in commit order; max(seq) is
-- read after the lock is granted, and a VOLATILE function takes a fresh snapshot per
-- statement (READ COMMITTED), so it sees the previous holder's committed row.
CREATE FUNCTION chat_record_change(room text, message_id bigint, op text) RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    next_seq bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(1667785076, hashtext(room));  -- 1667785076 = 'chat'
    SELECT coalesce(max(c.seq), 0) + 1 INTO next_seq
        FROM chat_messagechange c WHERE c.room_id = room;
    INSERT INTO chat_messagechange (room_id, seq, message_id, op)
        VALUES (room, next_seq, message_id, op);
    RETURN next_seq;
END
$$;

-- The NOTIFY payload. NOTIFY refuses payloads of 8000 bytes or more *inside the writer's
-- transaction*; rather than abort the write, send a stub that the listener completes by
-- reading the row once. "at" is when the trigger ran, for latency figures.
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

DROP_FUNCTIONS = """
DROP FUNCTION IF EXISTS chat_event_payload(text, bigint, chat_chatmessage);
DROP FUNCTION IF EXISTS chat_record_change(text, bigint, text);
DROP FUNCTION IF EXISTS chat_message_json(chat_chatmessage);
DROP FUNCTION IF EXISTS chat_iso(timestamptz);
"""


class Migration(migrations.Migration):
    dependencies = [("chat", "0001_initial")]
    operations = [migrations.RunSQL(FUNCTIONS, DROP_FUNCTIONS)]
