"""Typing and presence (issue 13): two ephemeral signals, kept in UNLOGGED tables, rung as
bells, never written to the change log.

- ``chat_typing``: one row per (room, user), stamped when it last rang. The API's upsert
  only touches a row older than the throttle (chat/conversation.py), so a user rings a room
  at most once per throttle interval whatever the number of workers; the trigger
  ``chat_typing_rung`` rings ``{"kind": "typing", "room", "user"}`` for each row inserted or
  updated (psql may ring too). The listener believes a typing bell only if the row is fresh,
  the user active and allowed to read the room (chat/conversation_feeds.py).
- ``chat_presence_worker``: one row per server process, its ``expires_at`` pushed forward by
  each heartbeat; ``chat_presence``: (worker, room, user) while that process holds at least
  one stream of that user carrying that room. A worker whose row expired (killed, frozen,
  cut off) is deleted by any live worker's sweep, its presence rows with it (cascade).
  Every presence row inserted or deleted rings ``{"kind": "presence", "room"}``: the
  listener reads the room's online users and tells its streams who joined or left.
- UNLOGGED: no WAL for heartbeats and stream opens; after a PostgreSQL crash both come back
  empty, which is the truth (every stream was cut) until workers heartbeat again.
- Not Django models: only chat/presence.py, chat/conversation.py and the listener use them.
"""

from django.db import migrations

PINNED = "SET search_path = public, pg_temp"

FORWARD = f"""
CREATE UNLOGGED TABLE chat_typing (
    room_id text NOT NULL,
    user_id bigint NOT NULL,
    rung_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (room_id, user_id)
);
CREATE INDEX chat_typing_rung_at ON chat_typing (rung_at);  -- for pruning

CREATE FUNCTION chat_ring_typing() RETURNS trigger
LANGUAGE plpgsql {PINNED} AS $$
BEGIN
    PERFORM pg_notify('chat', json_build_object(
        'kind', 'typing', 'room', NEW.room_id, 'user', NEW.user_id,
        'at', extract(epoch FROM clock_timestamp())
    )::text);
    RETURN NULL;
END
$$;
CREATE TRIGGER chat_typing_rung AFTER INSERT OR UPDATE ON chat_typing
    FOR EACH ROW EXECUTE FUNCTION chat_ring_typing();

CREATE UNLOGGED TABLE chat_presence_worker (
    worker text PRIMARY KEY,  -- host:pid:random, chat/presence.py
    expires_at timestamptz NOT NULL
);
CREATE INDEX chat_presence_worker_expires_at ON chat_presence_worker (expires_at);

CREATE UNLOGGED TABLE chat_presence (
    worker text NOT NULL REFERENCES chat_presence_worker (worker) ON DELETE CASCADE,
    room_id text NOT NULL,  -- no foreign keys to rooms or users: a stream's close removes
    user_id bigint NOT NULL,  -- its row, and readers join what still exists
    PRIMARY KEY (worker, room_id, user_id)
);
CREATE INDEX chat_presence_room ON chat_presence (room_id);

-- One bell per room and transaction (identical payloads are folded): the listener reads
-- the room's online users itself, so the bell needs no user and a forged one costs a read.
CREATE FUNCTION chat_ring_presence() RETURNS trigger
LANGUAGE plpgsql {PINNED} AS $$
BEGIN
    PERFORM pg_notify('chat', json_build_object(
        'kind', 'presence', 'room', coalesce(NEW.room_id, OLD.room_id)
    )::text);
    RETURN NULL;
END
$$;
CREATE TRIGGER chat_presence_changed AFTER INSERT OR DELETE ON chat_presence
    FOR EACH ROW EXECUTE FUNCTION chat_ring_presence();
"""

BACKWARD = """
DROP TABLE IF EXISTS chat_presence;
DROP TABLE IF EXISTS chat_presence_worker;
DROP FUNCTION IF EXISTS chat_ring_presence();
DROP TABLE IF EXISTS chat_typing;
DROP FUNCTION IF EXISTS chat_ring_typing();
"""


class Migration(migrations.Migration):
    dependencies = [("chat", "0011_reactions")]
    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
