"""Cursors from one sequence for all rooms, taken under the room's lock.

Before: ``max(seq) + 1`` per room. That restarted at 1 when a room was deleted and created
again (stale clients and the listener then skipped the new room's first events), and under
REPEATABLE READ a writer read ``max(seq)`` from its old snapshot and failed on a duplicate.
``nextval()`` is taken after the per-room advisory lock, which is held until COMMIT, so a
room's cursors still grow in commit order; they now have gaps (other rooms' values), which
the contract allows, and are never reused.
"""

from django.db import migrations

FORWARD = r"""
CREATE SEQUENCE chat_change_seq AS bigint;
SELECT setval('chat_change_seq', (SELECT coalesce(max(seq), 0) + 1 FROM chat_messagechange), false);

CREATE OR REPLACE FUNCTION chat_record_change(room text, message_id bigint, op text) RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    next_seq bigint;
BEGIN
    -- Held until COMMIT: the room's next writer takes its value only after we committed.
    PERFORM pg_advisory_xact_lock(1667785076, hashtext(room));  -- 1667785076 = 'chat'
    INSERT INTO chat_messagechange (room_id, seq, message_id, op)
        VALUES (room, nextval('chat_change_seq'), message_id, op)
        RETURNING seq INTO next_seq;
    RETURN next_seq;
END
$$;

-- to_char() is STABLE, so this is too (it was declared IMMUTABLE).
ALTER FUNCTION chat_iso(timestamptz) STABLE;
"""

BACKWARD = r"""
CREATE OR REPLACE FUNCTION chat_record_change(room text, message_id bigint, op text) RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    next_seq bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(1667785076, hashtext(room));
    SELECT coalesce(max(c.seq), 0) + 1 INTO next_seq
        FROM chat_messagechange c WHERE c.room_id = room;
    INSERT INTO chat_messagechange (room_id, seq, message_id, op)
        VALUES (room, next_seq, message_id, op);
    RETURN next_seq;
END
$$;
DROP SEQUENCE chat_change_seq;
"""


class Migration(migrations.Migration):
    dependencies = [("chat", "0003_lobby")]
    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
